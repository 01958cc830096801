"""Real parts shared by the core's tests, one module per kind of part:

* :mod:`support.processes`: gateway processes (``gateway web``, ``gateway run``, workers,
  ones a test may SIGKILL), the CLI as a subprocess, free ports, the process tree, and
  the suite's deadline for waiting on any of them.
* :mod:`support.servers`: local HTTP servers: a sink with scripted answers, a destination
  that can go down and come back, a bare server for the outbound client, the gateway
  served by gunicorn.
* :mod:`support.configs`: gateway configurations (dicts, and TOML files for processes).
* :mod:`support.plugins`: small sink types and observers registered by tests.
* :mod:`support.delivery`: the delivery engine driven in the test process, and what its
  Redis structures say.
* :mod:`support.console`: the admin console through Flask's test client (sign-in, CSRF).
* :mod:`support.load`: a steady load of careful clients, for the reliability tests.
* :mod:`support.plain_worker`: ``python -m support.plain_worker``, a worker process with
  the ``plain`` sink type of :mod:`support.plugins`.

setup.cfg puts ``tests/`` on ``sys.path`` (pytest's ``pythonpath``), so every test folder
imports these the same way: ``from support.servers import SinkServer``. The fixtures
(``make_client``, ``recording_sink``, ...) come from :mod:`gateway.testing`, the pytest
plugin third parties use too; the bundled plugins' tests use only that, never this package.
"""
