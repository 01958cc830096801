"""Module names from before the 0.2 layout import their new homes for one release, with a
DeprecationWarning (gateway._renamed): plugins importing them, `gunicorn gateway.wsgi:app`,
and retries queued in Redis before an upgrade under the rq job name gateway.jobs.requeue."""

from __future__ import annotations

import importlib
import sys

import pytest

from gateway._renamed import RENAMED


@pytest.mark.parametrize(("old", "new"), sorted(RENAMED.items()))
def test_an_old_name_is_the_new_module_with_a_warning(old: str, new: str) -> None:
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} is now {new}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)


def test_rq_finds_a_job_queued_under_its_old_name() -> None:
    from rq.utils import import_attribute

    from gateway.delivery import jobs

    sys.modules.pop("gateway.jobs", None)
    with pytest.warns(DeprecationWarning):
        assert import_attribute("gateway.jobs.requeue") is jobs.requeue
