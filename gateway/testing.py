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
  until nothing is ready to deliver; returns the attempt records. With
  ``run_due_retries=True`` it also skips ahead through the scheduled retries ("429, then
  200" without sleeping).
* ``register_plugin(obj)``: register a plugin (module or object) for one test.
* ``event_samples``: the sample ``data`` of every event type, by name (for ``Event.new``).
* ``gateway_worker(config_dict, *args)``: a real ``gateway worker`` process on that config
  (a :class:`GatewayProcess`), stopped at teardown; ``"--burst"`` delivers what is ready
  and exits.

And plain functions:

* :func:`wait_until`, for what happens in other processes or threads (a worker
  delivering, a server starting).
* :func:`check_config`: validate a config dict as ``gateway config check`` does; the
  settings, or :class:`gateway.ConfigError` naming each bad field by path.
* :func:`write_config`: write a config dict as a TOML file, for a gateway process.
* :func:`child_env`: the environment for a gateway process you start yourself.
* :func:`send_request`: send what a sink rendered, signed as the delivery engine signs,
  through the gateway's own HTTP client: what a receiver gets, without the engine.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import pytest
import redis as redis_lib

from gateway.hookspecs import hookimpl
from gateway.sinks import RenderFailed
from gateway.storage.connection import connect
from gateway.storage.embedded import EmbeddedRedis

if TYPE_CHECKING:  # pragma: no cover
    import flask
    from flask.testing import FlaskClient

    from gateway.config import Settings
    from gateway.runtime import Runtime
    from gateway.sinks import DeliveryInfo, OutgoingRequest, Response

DEFAULT_WAIT_S = 30.0
PROCESS_EXIT_S = 60.0
"""How long :meth:`GatewayProcess.wait` waits for a process to exit by itself (a burst
worker on a busy CI machine)."""


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


def _on_test_redis(config: Mapping[str, Any] | None, redis_url: str, tmp_path: Path) -> dict[str, Any]:
    """``config`` with ``gateway.redis_url`` and ``gateway.data_dir`` defaulting to the test
    Redis and ``tmp_path/data``: the same for every runtime and process of one test."""
    config = dict(config or {})
    gateway_section = dict(config.get("gateway") or {})
    gateway_section.setdefault("redis_url", redis_url)
    gateway_section.setdefault("data_dir", str(tmp_path / "data"))
    config["gateway"] = gateway_section
    return config


@pytest.fixture
def make_runtime(redis_client: redis_lib.Redis, redis_url: str, tmp_path: Any,
                 _gateway_plugin_registry: PluginRegistry) -> Callable[..., Any]:
    """Build a Runtime from a config dict on the test Redis."""
    from gateway.config import parse_config
    from gateway.plugins import load_plugins
    from gateway.publish import plugin_services
    from gateway.runtime import Runtime

    def build(config: dict[str, Any] | None = None, plugins: list[Any] | None = None) -> Runtime:
        config = _on_test_redis(config, redis_url, tmp_path)
        extra = list(plugins or [])
        extra += [p for p in _gateway_plugin_registry.plugins if p not in extra]
        loaded = load_plugins(extra=extra)
        runtime = plugin_services.provide(Runtime.from_settings(parse_config(config, loaded), loaded))
        _gateway_plugin_registry.runtimes.append(runtime)
        return runtime

    return build


@pytest.fixture
def make_client(make_runtime: Callable[..., Any]) -> Callable[..., Any]:
    """A Flask test client for a config dict."""
    from gateway.web.app import create_app

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
    from gateway.web.app import create_app

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
    the scripted replies in order (:meth:`reply`), then with :attr:`default` (200 ``ok``
    unless given). The ``recording_sink`` fixture is one; for more, use it as a context
    manager: ``with RecordingSink() as second: ...`` starts it and stops it.
    """

    def __init__(self, default: Reply | None = None) -> None:
        self.requests: list[RecordedRequest] = []
        self.default = default or Reply()
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
        """Start serving (in a daemon thread)."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


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

MAX_RETRY_ROUNDS = 100
"""How often ``drain_deliveries(..., run_due_retries=True)`` skips ahead at most: a bound
for a test whose destination never stops failing (a schedule has at most 50 retries)."""


@pytest.fixture
def drain_deliveries() -> Callable[..., list[dict[str, Any]]]:
    """``drain_deliveries(app_or_runtime, concurrency=4, run_due_retries=False)``: run the
    real delivery engine (``gateway worker --burst``) in this process until nothing is ready
    to deliver, then return the attempt records made meanwhile, oldest first (the delivery
    log's format: ``delivery_id``, ``sink``, ``status_code``, ``outcome``, ``status``,
    ``next_attempt_at``, ...).

    Retries are scheduled for later (the schedule, or the destination's ``Retry-After``).
    By default they stay scheduled. With ``run_due_retries=True`` the engine's clock skips
    ahead instead of waiting: whenever nothing else is ready, the scheduled retries run at
    once, as if their time had come, until none is left (delivered, given up, or the
    schedule exhausted). The records still say when each retry was due
    (``next_attempt_at``), so a test can check that ``Retry-After`` was honoured::

        recording_sink.reply(Reply(429, headers={"Retry-After": "120"}))   # then 200
        attempts = drain_deliveries(app, run_due_retries=True)
        assert [a["outcome"] for a in attempts] == ["retry", "delivered"]

    Only the retry timers skip: a circuit breaker's cool-down and rate limits keep real
    time.

    A sink whose ``render`` or ``classify`` raises has a bug: the engine records it as a
    failed attempt (``render_error`` / ``classify_error``) as in production, and then, by
    default, ``drain_deliveries`` raises that very exception, with its traceback into the
    plugin's code, so the test fails on the line at fault. Pass
    ``raise_sink_errors=False`` to get the attempt records instead (a test of that case)."""
    from gateway.delivery.worker import build_worker

    def drain(target: Any, concurrency: int = 4, run_due_retries: bool = False,
              raise_sink_errors: bool = True) -> list[dict[str, Any]]:
        runtime = target.extensions["gateway"] if hasattr(target, "wsgi_app") else target
        attempts: list[dict[str, Any]] = []
        recorder = _AttemptRecorder(attempts)
        runtime.plugins.pm.register(recorder)
        # rq installs its own SIGINT/SIGTERM handlers; give pytest its own back afterwards.
        saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            with _SinkErrors(runtime) as sink_errors:
                for _ in range(MAX_RETRY_ROUNDS):
                    build_worker(runtime, concurrency).work(burst=True)
                    if not run_due_retries or not _run_scheduled_retries(runtime):
                        break
        finally:
            for sig, handler in saved.items():
                signal.signal(sig, handler)
            runtime.plugins.pm.unregister(recorder)
        if raise_sink_errors and sink_errors.raised:
            sink, stage, error = sink_errors.raised[0]
            error.add_note(f"gateway.testing: raised by sink {sink!r} in {stage}(); the engine recorded a failed "
                           f"{stage}_error attempt (drain_deliveries(..., raise_sink_errors=False) returns it)")
            raise error
        return attempts

    return drain


class _SinkErrors:
    """Notes the exceptions sinks' ``render``/``classify`` raise while the engine runs
    (observing only: the engine still sees and records them)."""

    STAGES = ("render", "classify")

    def __init__(self, runtime: Runtime) -> None:
        self.sinks = list(runtime.sinks.items())
        self.raised: list[tuple[str, str, BaseException]] = []
        self._lock = threading.Lock()

    def _watch(self, name: str, stage: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def watched(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except RenderFailed:
                raise  # the sink's configuration, not a bug: the attempt records it, that's all
            except Exception as exc:
                with self._lock:
                    self.raised.append((name, stage, exc))
                raise

        return watched

    def __enter__(self) -> _SinkErrors:
        for name, sink in self.sinks:
            for stage in self.STAGES:
                setattr(sink, stage, self._watch(name, stage, getattr(sink, stage)))
        return self

    def __exit__(self, *exc_info: object) -> None:
        for _, sink in self.sinks:
            for stage in self.STAGES:
                vars(sink).pop(stage, None)  # the class's method again


def _run_scheduled_retries(runtime: Runtime) -> bool:
    """Run now the retry jobs rq's scheduler holds for later (what the scheduler does when
    their time comes: requeue the delivery); False when there were none."""
    from rq.job import Job
    from rq.registry import ScheduledJobRegistry
    from rq.serializers import JSONSerializer

    from gateway.delivery import wakeups

    registry = ScheduledJobRegistry(queue=runtime.queue)  # type: ignore[no-untyped-call]
    ids = registry.get_job_ids(cleanup=False)
    jobs = [job for job in Job.fetch_many(ids, connection=runtime.redis, serializer=JSONSerializer)
            if job is not None and job.func_name == wakeups.REQUEUE_JOB]
    for job in jobs:
        registry.remove(job, delete_job=True)
    if jobs:
        wakeups.requeue(runtime, "retry", [(str(job.args[0]), str(job.args[1])) for job in jobs])
    return bool(jobs)


class _AttemptRecorder:
    def __init__(self, attempts: list[dict[str, Any]]) -> None:
        self.attempts = attempts
        self.lock = threading.Lock()

    @hookimpl
    def delivery_attempted(self, attempt: dict[str, Any]) -> None:
        with self.lock:
            self.attempts.append(attempt)


# -- event samples -----------------------------------------------------------------------------

@pytest.fixture
def event_samples(_gateway_plugin_registry: PluginRegistry) -> dict[str, dict[str, Any]]:
    """The sample ``data`` of every event type the installed plugins (and those given to
    ``register_plugin`` before) declare, by event name: realistic data for
    ``Event.new(name, event_samples[name])``. A copy: change it freely."""
    from gateway.plugins import load_plugins

    loaded = load_plugins(extra=list(_gateway_plugin_registry.plugins))
    return {event_type.name: copy.deepcopy(dict(event_type.sample)) for event_type in loaded.catalog}


# -- configuration -----------------------------------------------------------------------------

def check_config(config: Mapping[str, Any], plugins: Sequence[Any] = ()) -> Settings:
    """Validate ``config`` (a dict as the TOML would parse) with the installed plugins and
    ``plugins``, as ``gateway config check`` does, and return the settings: for a sink,
    ``check_config(...).sinks[0].options`` are its options as your sink gets them.

    Raises :class:`gateway.ConfigError` when anything is wrong; its ``errors`` maps each bad
    field's path (``sinks[0].url``) to its messages. Needs no Redis.
    """
    from gateway.config import parse_config
    from gateway.plugins import load_plugins

    return parse_config(config, load_plugins(extra=list(plugins)))


def write_config(path: str | os.PathLike[str], config: Mapping[str, Any]) -> Path:
    """Write ``config`` (a dict as the TOML would parse: ``gateway`` and ``delivery`` tables,
    a ``sinks`` list) to ``path`` as TOML, for a gateway process's ``--config``; returns the
    path. Needs ``tomli-w`` (the gateway's ``test`` extra)."""
    import tomli_w  # only the test extra installs it; importing this plugin must not need it

    written = Path(path)
    written.write_text(tomli_w.dumps(dict(config)), encoding="utf-8")
    return written


# -- sending what a sink rendered ----------------------------------------------------------------

def send_request(request: OutgoingRequest, delivery: DeliveryInfo, secrets: Sequence[str] = (),
                 timeout: float = 10.0) -> Response:
    """Send ``request`` (what your sink's ``render`` returned for ``delivery``) as the delivery
    engine sends it: signed with ``secrets`` when ``request.sign`` is true (the sink's
    ``secret``/``secrets``, first one current), through the gateway's own HTTP client with
    private networks allowed, so it can reach a :class:`RecordingSink`. Returns the answer.

    For tests of what a receiver gets (bytes, headers, signatures); the engine's retries,
    log and bookkeeping are not involved: use ``drain_deliveries`` for those. Raises the
    client's error when no answer came (refused, timed out).
    """
    from gateway import signing
    from gateway.delivery.http_client import OutboundClient

    if request.sign and secrets:
        headers = {**request.headers, **signing.signature_headers(request.body, delivery.id, list(secrets))}
        request = dataclasses.replace(request, headers=headers)
    with OutboundClient(allow_private_networks=True) as client:
        return client.send(request, timeout=timeout)


# -- gateway processes -------------------------------------------------------------------------

def child_env(**extra: str) -> dict[str, str]:
    """The environment for a gateway process a test starts: this one without
    ``GATEWAY_REDIS_URL`` and ``GATEWAY_CONFIG`` (which would point it at another
    deployment's Redis or config), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in ("GATEWAY_REDIS_URL", "GATEWAY_CONFIG")}
    env.update(extra)
    return env


@dataclasses.dataclass
class GatewayProcess:
    """A process a test started (a ``gateway worker``, a server), its output (stdout and
    stderr together) going to the file ``log_path``. Start one with :meth:`start`."""

    process: subprocess.Popen[bytes]
    log_path: Path

    @classmethod
    def start(cls, argv: Sequence[str], log_path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None,
              cwd: str | os.PathLike[str] | None = None, new_session: bool = False) -> Self:
        """Start ``argv`` (e.g. ``[sys.executable, "-m", "gateway", "worker", ...]``) with its
        output appended to ``log_path`` and no stdin. ``env`` defaults to :func:`child_env`;
        with ``new_session`` it leads its own process group (to signal its children too)."""
        path = Path(log_path)
        with path.open("ab") as out:
            process = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env=dict(env) if env is not None else child_env(), cwd=cwd,
                                       start_new_session=new_session)
        return cls(process, path)

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    def alive(self) -> bool:
        """True while the process has not exited."""
        return self.process.poll() is None

    def output(self) -> str:
        """Everything the process has written so far."""
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout: float = PROCESS_EXIT_S) -> int:
        """Wait until the process exits by itself and return its exit code; fail the test,
        with the process's output, if it still runs after ``timeout`` s."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the process still runs after {timeout:.0f}s:\n{self.output()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Send ``sig`` (unless it has exited already) and wait for the process to exit;
        SIGKILL it after ``timeout`` s. Returns its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@pytest.fixture
def gateway_worker(redis_url: str, tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    """``gateway_worker(config, *args)``: a real worker process, ``python -m gateway worker
    --config <file> <args>``, on ``config`` (a dict as the TOML would parse, written to a
    file under ``tmp_path``; ``gateway.redis_url`` and ``gateway.data_dir`` default as in
    ``make_runtime``, so give both the same dict). Returns its :class:`GatewayProcess`;
    any still running at teardown is stopped.

    The process loads the installed plugins only, not those of ``register_plugin`` or
    ``gateway_plugins``. With ``"--burst"`` it delivers what is ready, then exits:
    ``assert gateway_worker(config, "--burst").wait() == 0``.
    """
    started: list[GatewayProcess] = []

    def start(config: Mapping[str, Any], *args: str) -> GatewayProcess:
        name = f"gateway-worker-{len(started)}"
        path = write_config(tmp_path / f"{name}.toml", _on_test_redis(config, redis_url, tmp_path))
        worker = GatewayProcess.start([sys.executable, "-m", "gateway", "worker", "--config", str(path), *args],
                                      tmp_path / f"{name}.log")
        started.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in started:
            worker.stop()
