"""pytest fixtures for the gateway's own tests and for plugin authors (a pytest plugin,
loaded automatically once the gateway is installed: nothing to import or configure).

Real parts only: a real Redis, real HTTP servers, the real delivery engine.

* ``redis_url``: a real Redis for the session: ``REDIS_URL`` when set (its database is
  flushed before each test, so point it at a scratch index), else an embedded server.
* ``redis_client`` (or ``redis``): a client on it, flushed before each test.
* ``make_runtime(config_dict, plugins=[...])``: a :class:`gateway.runtime.Runtime` from a
  config given as a dict (as the TOML would parse), on the test Redis.
* ``make_client(config_dict)``: a Flask test client around such a runtime.
* ``gateway_config`` / ``gateway_plugins``: what ``app`` is built from; override them in
  your ``conftest.py`` or test module (the defaults: no sinks, private networks allowed so
  sinks may point at 127.0.0.1, and no extra plugins).
* ``app``: the gateway's Flask app for ``gateway_config``; ``client``: its test client.
* ``recording_sink``: a real HTTP server on 127.0.0.1 that records every request and
  answers from a script (see :class:`RecordingSink`).
* ``drain_deliveries(app_or_runtime)``: runs the real delivery engine in this process
  until nothing is ready to deliver; returns the attempt records.
* ``register_plugin(obj)``: register a plugin (module or object) for one test.

And one plain function, :func:`wait_until`, for what happens in other processes or threads
(a worker delivering, a server starting).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest
import redis as redis_lib

from gateway.hookspecs import hookimpl
from gateway.store import EmbeddedRedis, connect

if TYPE_CHECKING:  # pragma: no cover
    import flask
    from flask.testing import FlaskClient

    from gateway.runtime import Runtime

DEFAULT_WAIT_S = 30.0


def wait_until(predicate: Callable[[], Any], what: str = "condition", timeout: float = DEFAULT_WAIT_S,
               interval: float = 0.05) -> Any:
    """Call ``predicate`` every ``interval`` s until it returns something truthy, and return
    that; fail the test (AssertionError naming ``what``) after ``timeout`` s. A deadline, not
    a measurement: a pass returns as soon as the condition holds, however busy the machine."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis for the whole test session."""
    external = os.environ.get("REDIS_URL")
    if external:
        yield external
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), appendonly=False).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis_lib.Redis]:
    """A client on the test Redis, whose database is flushed before each test."""
    client = connect(redis_url)
    client.flushdb()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def redis(redis_client: redis_lib.Redis) -> redis_lib.Redis:
    """The same client as ``redis_client``, under the shorter name."""
    return redis_client


class PluginRegistry:
    """Plugins registered for one test, and the runtimes built during it."""

    def __init__(self) -> None:
        self.plugins: list[Any] = []
        self.runtimes: list[Runtime] = []

    def register(self, plugin: Any) -> Any:
        self.plugins.append(plugin)
        for runtime in self.runtimes:
            if not runtime.plugins.pm.is_registered(plugin):
                runtime.plugins.pm.register(plugin)
        return plugin

    def unregister_all(self) -> None:
        for runtime in self.runtimes:
            for plugin in self.plugins:
                if runtime.plugins.pm.is_registered(plugin):
                    runtime.plugins.pm.unregister(plugin)
        self.plugins.clear()
        self.runtimes.clear()


@pytest.fixture
def _gateway_plugin_registry() -> Iterator[PluginRegistry]:
    registry = PluginRegistry()
    try:
        yield registry
    finally:
        registry.unregister_all()


@pytest.fixture
def register_plugin(_gateway_plugin_registry: PluginRegistry) -> Callable[..., Any]:
    """``register_plugin(plugin)``: use a plugin (a module, or an object with
    ``@hookimpl`` methods) for this test only; it is gone afterwards.

    Every app or runtime built *after* the call includes it, so its sink types, event
    types, blueprints and commands exist there. Runtimes already built in this test get it
    too, for the observer hooks (``event_published``, ``delivery_attempted``), which take
    effect at once. To have it in the ``app`` fixture, override ``gateway_plugins``
    instead, or call ``register_plugin`` in a fixture that ``app`` is requested after.
    Returns the plugin.
    """
    return _gateway_plugin_registry.register


@pytest.fixture
def make_runtime(redis_client: redis_lib.Redis, redis_url: str, tmp_path: Any,
                 _gateway_plugin_registry: PluginRegistry) -> Callable[..., Any]:
    """Build a Runtime from a config dict on the test Redis."""
    from gateway.config import parse_config
    from gateway.plugins import load_plugins
    from gateway.runtime import Runtime

    def build(config: dict[str, Any] | None = None, plugins: list[Any] | None = None) -> Runtime:
        config = dict(config or {})
        gateway_section = dict(config.get("gateway") or {})
        gateway_section.setdefault("redis_url", redis_url)
        gateway_section.setdefault("data_dir", str(tmp_path / "data"))
        config["gateway"] = gateway_section
        extra = list(plugins or [])
        extra += [p for p in _gateway_plugin_registry.plugins if p not in extra]
        loaded = load_plugins(extra=extra)
        runtime = Runtime.from_settings(parse_config(config, loaded), loaded)
        _gateway_plugin_registry.runtimes.append(runtime)
        return runtime

    return build


@pytest.fixture
def make_client(make_runtime: Callable[..., Any]) -> Callable[..., Any]:
    """A Flask test client for a config dict."""
    from gateway.app import create_app

    def build(config: dict[str, Any] | None = None, plugins: list[Any] | None = None) -> Any:
        app = create_app(make_runtime(config, plugins))
        app.testing = True
        return app.test_client()

    return build


# -- app and client ----------------------------------------------------------------------------

@pytest.fixture
def gateway_config() -> dict[str, Any]:
    """The configuration (as the TOML would parse) that ``app`` is built from. Override it::

        @pytest.fixture
        def gateway_config(recording_sink):
            return {"delivery": {"allow_private_networks": True},
                    "sinks": [recording_sink.sink("rec", type="my_sink", events=["*"])]}

    ``gateway.redis_url`` and ``gateway.data_dir`` are filled in for the test Redis.
    """
    return {"delivery": {"allow_private_networks": True}}


@pytest.fixture
def gateway_plugins() -> list[Any]:
    """Extra plugins (modules or objects) that ``app`` loads besides the installed ones.
    Override it to test a plugin that is not installed (yet)."""
    return []


@pytest.fixture
def app(make_runtime: Callable[..., Any], gateway_config: dict[str, Any],
        gateway_plugins: list[Any]) -> flask.Flask:
    """The gateway's Flask app, built from ``gateway_config`` with ``gateway_plugins`` on the
    test Redis; its runtime is ``app.extensions["gateway"]``."""
    from gateway.app import create_app

    application = create_app(make_runtime(gateway_config, gateway_plugins))
    application.testing = True
    return application


@pytest.fixture
def client(app: flask.Flask) -> FlaskClient:
    """A test client for ``app``."""
    return app.test_client()


# -- a recording HTTP sink ---------------------------------------------------------------------

@dataclasses.dataclass
class Reply:
    """One scripted answer of a :class:`RecordingSink`: status, body, headers, and a delay in
    seconds before answering (a slow destination)."""

    status: int = 200
    body: bytes | str = b"ok"
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    delay: float = 0.0


@dataclasses.dataclass(frozen=True)
class RecordedRequest:
    """A request a :class:`RecordingSink` received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float

    def header(self, name: str) -> str | None:
        """A header's value, looked up case-insensitively."""
        lowered = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == lowered), None)

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


class RecordingSink:
    """A real HTTP server on 127.0.0.1 (a free port) playing a destination.

    It records every request (any method, any path) in :attr:`requests` and answers with
    the scripted replies in order (:meth:`reply`), then with :attr:`default` (200 ``ok``).
    """

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.default = Reply()
        self._script: collections.deque[Reply] = collections.deque()
        self._changed = threading.Condition()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = dict(self.headers.items())
                recorded = RecordedRequest(self.command, self.path, headers, body, time.time())
                with sink._changed:
                    reply = sink._script.popleft() if sink._script else sink.default
                    sink.requests.append(recorded)
                    sink._changed.notify_all()
                if reply.delay:
                    time.sleep(reply.delay)
                payload = reply.body.encode() if isinstance(reply.body, str) else reply.body
                try:
                    self.send_response(reply.status)
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:  # the gateway gave up waiting (a timeout test)
                    pass

            do_POST = do_PUT = do_PATCH = do_DELETE = do_GET = _handle  # noqa: N815 - http.server's naming

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="recording-sink", daemon=True)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        """A URL to configure as a sink's ``url``: ``<base_url>/hook``."""
        return f"{self.base_url}/hook"

    def sink(self, name: str = "recorder", type: str = "generic_webhook", events: list[str] | None = None,
             **options: Any) -> dict[str, Any]:
        """A ``[[sinks]]`` table pointing at this server, for ``gateway_config``."""
        return {"name": name, "type": type, "url": self.url, "events": events or ["*"], **options}

    def reply(self, *replies: Reply | int) -> RecordingSink:
        """Queue answers for the next requests, in order (an int is a status with body ``ok``)."""
        with self._changed:
            self._script.extend(r if isinstance(r, Reply) else Reply(status=r) for r in replies)
        return self

    def wait_for(self, count: int = 1, timeout: float = DEFAULT_WAIT_S) -> list[RecordedRequest]:
        """Wait until at least ``count`` requests arrived; fail the test after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"the recording sink got {len(self.requests)} request(s), expected {count}, "
                                f"within {timeout}s")
                self._changed.wait(left)
            return list(self.requests)

    def start(self) -> RecordingSink:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def recording_sink() -> Iterator[RecordingSink]:
    """A :class:`RecordingSink`: point a sink at ``recording_sink.url`` (or use
    ``recording_sink.sink(...)`` in ``gateway_config``), script answers with
    ``recording_sink.reply(500, Reply(429, headers={"Retry-After": "1"}), ...)``, and read
    ``recording_sink.requests`` or ``recording_sink.wait_for(n)``."""
    sink = RecordingSink().start()
    try:
        yield sink
    finally:
        sink.stop()


# -- the delivery engine, in process -----------------------------------------------------------

@pytest.fixture
def drain_deliveries() -> Callable[..., list[dict[str, Any]]]:
    """``drain_deliveries(app_or_runtime, concurrency=4)``: run the real delivery engine
    (``gateway worker --burst``) in this process until nothing is ready to deliver, then
    return the attempt records made meanwhile (the delivery log's format: ``delivery_id``,
    ``sink``, ``status_code``, ``outcome``, ``status``, ...). Retries scheduled for later
    stay scheduled; call it again after their time to run them."""
    from gateway.worker import build_worker

    def drain(target: Any, concurrency: int = 4) -> list[dict[str, Any]]:
        runtime = target.extensions["gateway"] if hasattr(target, "extensions") else target
        attempts: list[dict[str, Any]] = []
        recorder = _AttemptRecorder(attempts)
        runtime.plugins.pm.register(recorder)
        # rq installs its own SIGINT/SIGTERM handlers; give pytest its own back afterwards.
        saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            build_worker(runtime, concurrency).work(burst=True)
        finally:
            for sig, handler in saved.items():
                signal.signal(sig, handler)
            runtime.plugins.pm.unregister(recorder)
        return attempts

    return drain


class _AttemptRecorder:
    def __init__(self, attempts: list[dict[str, Any]]) -> None:
        self.attempts = attempts
        self.lock = threading.Lock()

    @hookimpl
    def delivery_attempted(self, attempt: dict[str, Any]) -> None:
        with self.lock:
            self.attempts.append(attempt)

