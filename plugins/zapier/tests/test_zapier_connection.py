"""Zapier's connection test, ``GET /api/zapier/me``: who a key is, without a URL in sight;
and labelled keys, so an admin can tell Zaps apart and revoke one key."""

from __future__ import annotations

from typing import Any

import pytest

from gateway import ConfigError

MARKETING, SUPPORT = "zk_" + "m" * 29, "zk_" + "p" * 29
ADMIN = "connection-admin-token-012345678"
HOOK = "https://hooks.zapier.com/hooks/standard/123/secret-token/"


def config(*keys: Any, events: tuple[str, ...] = ("ticket.created", "ticket.resolved")) -> dict[str, Any]:
    return {"gateway": {"admin_token": ADMIN},
            "sinks": [{"name": "zapier", "type": "zapier", "events": list(events),
                       "api_keys": list(keys) or [{"label": "marketing", "key": MARKETING}, SUPPORT]}]}


def me(client: Any, key: str) -> Any:
    return client.get("/api/zapier/me", headers={"X-API-Key": key})


def test_me_says_which_sink_label_and_events_and_shows_no_url(make_client: Any) -> None:
    client = make_client(config())
    client.post("/api/zapier/hooks", json={"hookUrl": HOOK, "event": "ticket.created"},
                headers={"X-API-Key": MARKETING})

    response = me(client, MARKETING)

    assert response.status_code == 200
    assert response.get_json() == {"sink": "zapier", "label": "marketing",
                                   "events": ["ticket.created", "ticket.resolved"], "create_tickets": True}
    assert "hooks.zapier.com" not in response.get_data(as_text=True)
    assert me(client, SUPPORT).get_json()["label"] is None


def test_me_spells_out_every_event_for_a_star(make_client: Any) -> None:
    client = make_client(config(MARKETING, events=("*",)))

    events = me(client, MARKETING).get_json()["events"]

    assert len(events) == 10 and "feedback.received" in events


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "zk_" + "n" * 29}])
def test_me_without_a_known_key_is_401(make_client: Any, headers: dict[str, str]) -> None:
    response = make_client(config()).get("/api/zapier/me", headers=headers)

    assert (response.status_code, response.get_json()["error"]) == (401, "unauthorized")


def test_a_subscription_remembers_the_label_of_its_key(make_client: Any) -> None:
    client = make_client(config())
    made = client.post("/api/zapier/hooks", json={"hookUrl": HOOK, "event": "ticket.created"},
                       headers={"X-API-Key": MARKETING})

    assert made.get_json()["key_label"] == "marketing"
    [listed] = client.get("/api/zapier/hooks", headers={"X-API-Key": SUPPORT}).get_json()["hooks"]
    assert listed["key_label"] == "marketing"


def test_revoking_a_key_locks_out_that_key_alone(make_client: Any) -> None:
    before = make_client(config())
    assert me(before, MARKETING).status_code == 200

    after = make_client(config(SUPPORT))

    assert me(after, MARKETING).status_code == 401
    assert me(after, SUPPORT).status_code == 200


def test_the_sinks_api_shows_labels_never_keys(make_client: Any) -> None:
    client = make_client(config())

    response = client.get("/api/sinks", headers={"Authorization": f"Bearer {ADMIN}"})

    [sink] = response.get_json()["sinks"]
    assert sink["options"]["api_keys"] == [{"label": "marketing", "key": "[hidden]"},
                                           {"label": None, "key": "[hidden]"}]
    assert MARKETING not in response.get_data(as_text=True) and SUPPORT not in response.get_data(as_text=True)


@pytest.mark.parametrize(("keys", "says"), [
    ([{"label": "a", "key": MARKETING}, {"label": "a", "key": SUPPORT}], "Each label may be used once."),
    ([MARKETING, {"label": "again", "key": MARKETING}], "The same key is listed twice."),
    ([{"label": "short", "key": "zk_123"}], "key: a string of 16 to 200 characters."),
    ([{"name": "x", "key": MARKETING}], "Unknown key(s) name"),
    ([{"label": "bad/label", "key": MARKETING}], "label: use letters"),
    ([42], "Give the key as a string"),
])
def test_bad_keys_are_config_errors_naming_the_field(make_runtime: Any, keys: list[Any], says: str) -> None:
    with pytest.raises(ConfigError) as error:
        make_runtime(config(*keys))

    [(path, messages)] = error.value.errors.items()
    assert path.startswith("sinks[0].api_keys") and says in " ".join(messages)
