"""GET /metrics: what an operator's Prometheus sees."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from marshmallow import Schema, fields
from prometheus_client.parser import text_string_to_metric_families
from support.configs import write_config
from support.processes import free_port

from gateway import Event, Outcome, OutgoingRequest, Sink, SinkType, hookimpl, metrics
from gateway.events import iso_z

TICKET = {"event": "ticket.create", "data": {"subject": "Printer on fire", "message": "Again.",
                                             "customer_email": "ops@example.com"}}


class UrlOptions(Schema):
    url = fields.String(required=True)


class PlainSink(Sink):
    def render(self, event, target, delivery):
        return OutgoingRequest(url=target.url, body=event.envelope_bytes())

    def classify(self, response, target):
        return Outcome.delivered() if response.ok else Outcome.retry(f"HTTP {response.status_code}")


class PlainSinkPlugin:
    __name__ = "plain_sink_plugin"

    @hookimpl
    def register_sink_types(self, register):
        register(SinkType(name="plain", options_schema=UrlOptions, factory=PlainSink))


def config(**gateway):
    return {"gateway": gateway, "sinks": [
        {"name": "crm", "type": "plain", "url": "http://127.0.0.1:9/hook", "events": ["ticket.created"]},
        {"name": "audit", "type": "plain", "url": "http://127.0.0.1:9/audit", "events": ["*"]},
    ]}


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of an exposition, keyed by (name, labels)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def delta(before: dict, after: dict, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def scrape(client) -> dict:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    return samples(response.get_data(as_text=True))


def test_ticket_counts_requests_events_and_queue_depth(make_client):
    client = make_client(config(), plugins=[PlainSinkPlugin()])
    before = scrape(client)

    assert client.post("/api/webhooks/receive", json=TICKET).status_code == 201
    assert client.post("/api/webhooks/receive", data="x", content_type="text/plain").status_code == 415
    assert client.get("/no/such/page").status_code == 404
    assert client.open("/api/webhooks/receive", method="BREW").status_code == 405

    after = scrape(client)
    assert delta(before, after, "gateway_tickets_received_total") == 1
    assert delta(before, after, "gateway_events_published_total", event="ticket.created") == 1
    receive = "/api/webhooks/receive"
    for status in ("201", "415"):
        assert delta(before, after, "gateway_http_requests_total", endpoint=receive, method="POST",
                     status=status) == 1, status
    # Unrouted paths share one label value, so a scanner cannot blow up the series count.
    assert value(after, "gateway_http_requests_total", endpoint="unmatched", method="GET", status="404") >= 1
    assert not any("no/such" in str(labels) or "BREW" in str(labels) for _, labels in after)
    assert value(after, "gateway_http_requests_total", endpoint="unmatched", method="other",
                 status="405") >= 1
    # Nothing drains in this test: both subscribed sinks hold the one delivery each.
    assert value(after, "gateway_queue_depth", sink="crm") == 1
    assert value(after, "gateway_queue_depth", sink="audit") == 1
    assert value(after, "gateway_redis_up") == 1
    assert value(after, "gateway_open_circuits") == 0


def test_delivery_attempts_feed_outcomes_duration_and_latency(make_runtime):
    runtime = make_runtime(config(), plugins=[PlainSinkPlugin()])
    from gateway.web.app import create_app

    client = create_app(runtime).test_client()
    before = scrape(client)
    received = time.time() - 2.0
    event = Event.new("ticket.created", {"ticket": {}})
    # Received 2 s ago; the attempt started 0.5 s after that and took 42 ms.
    attempt = {"delivery_id": "dlv_1", "event_id": event.id, "event": event.name, "sink": "crm", "attempt": 1,
               "status_code": 200, "duration_ms": 42.0, "outcome": "delivered",
               "event_timestamp": iso_z(datetime.fromtimestamp(received, UTC)),
               "at": iso_z(datetime.fromtimestamp(received + 0.5, UTC))}
    runtime.metrics.observe_attempt(attempt)
    runtime.metrics.observe_attempt({**attempt, "status_code": 500, "outcome": "retry"})

    after = scrape(client)

    assert delta(before, after, "gateway_delivery_attempts_total", sink="crm", outcome="delivered") == 1
    assert delta(before, after, "gateway_delivery_attempts_total", sink="crm", outcome="retry") == 1
    assert delta(before, after, "gateway_delivery_attempt_duration_seconds_count", sink="crm") == 2
    fast = delta(before, after, "gateway_delivery_attempt_duration_seconds_bucket", sink="crm", le="0.05")
    assert fast == 2
    # Only the delivered attempt has a receive->delivered latency: to the attempt's end
    # (about 0.54 s), not to when the observer ran.
    assert delta(before, after, "gateway_delivery_latency_seconds_count", sink="crm") == 1
    assert delta(before, after, "gateway_delivery_latency_seconds_bucket", sink="crm", le="0.25") == 0
    assert delta(before, after, "gateway_delivery_latency_seconds_bucket", sink="crm", le="1.0") == 1


def test_circuit_and_pause_state_come_from_redis(make_client, redis_client):
    client = make_client(config(), plugins=[PlainSinkPlugin()])
    later_ms = int((time.time() + 600) * 1000)
    redis_client.hset("gw:sink:crm:state", mapping={"circuit_open_until": later_ms})
    redis_client.hset("gw:sink:audit:state", mapping={"paused": "1", "reason": "HTTP 410 Gone"})

    found = scrape(client)

    assert value(found, "gateway_circuit_open", sink="crm") == 1
    assert value(found, "gateway_circuit_open", sink="audit") == 0
    assert value(found, "gateway_sink_paused", sink="audit") == 1
    assert value(found, "gateway_open_circuits") == 1


def test_scrape_works_while_redis_is_down(make_client):
    client = make_client(config(redis_url="redis://127.0.0.1:1/0"), plugins=[PlainSinkPlugin()])

    found = scrape(client)

    assert value(found, "gateway_redis_up") == 0
    assert ("gateway_queue_depth", frozenset({("sink", "crm")})) not in found


def test_a_failing_recorder_never_breaks_a_request(make_client, monkeypatch, caplog):
    client = make_client(config(), plugins=[PlainSinkPlugin()])

    def broken(*args, **kwargs):
        raise RuntimeError("metrics bug")

    monkeypatch.setattr(metrics.Metrics, "observe_request", broken)
    monkeypatch.setattr(metrics.Metrics, "observe_event", broken)

    response = client.post("/api/webhooks/receive", json=TICKET)

    assert response.status_code == 201
    assert "metrics: recording request failed" in caplog.text


def test_prepare_multiprocess_dir_empties_a_previous_run(tmp_path, monkeypatch):
    from prometheus_client import values

    # Unset for the test, and restored afterwards (delenv records nothing to restore when the
    # variable is absent, which let the directory set below leak into later tests).
    monkeypatch.setenv(metrics.MULTIPROC_ENV, "")
    # It switches this process to shared files; the other tests here keep per-process values.
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)
    stale = tmp_path / "metrics"
    stale.mkdir()
    (stale / "counter_4242.db").write_bytes(b"old")

    path = metrics.prepare_multiprocess_dir(stale)

    assert path == stale.resolve() and list(path.iterdir()) == []
    assert os.environ[metrics.MULTIPROC_ENV] == str(path)
    assert values.ValueClass.__name__ == "MmapedValue"


def wait_until_serving(url: str, proc: subprocess.Popen, what: str, timeout: float = 60) -> requests.Response:
    """GET ``url`` until it answers; fail when ``proc`` exits or after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return requests.get(url, timeout=10)
        except (requests.ConnectionError, requests.Timeout):
            assert proc.poll() is None and time.monotonic() < deadline, f"{what} did not start"
            time.sleep(0.1)


@pytest.fixture
def gunicorn_two_workers(tmp_path: Path, redis_url: str, redis_client, monkeypatch):
    """The app under gunicorn with two worker processes sharing a metrics directory."""
    from prometheus_client import values

    conf = tmp_path / "gateway.toml"
    conf.write_text(f'[gateway]\nredis_url = "{redis_url}"\ndata_dir = "{tmp_path / "data"}"\n')
    port = free_port()
    # prepare_multiprocess_dir sets the variable and switches this process to shared files:
    # both are undone after the test, so later tests keep per-process values.
    monkeypatch.setenv(metrics.MULTIPROC_ENV, "")
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)
    metrics_dir = tmp_path / "metrics"
    metrics.prepare_multiprocess_dir(metrics_dir)
    env = {**os.environ, "GATEWAY_CONFIG": str(conf)}
    gunicorn = Path(sys.executable).with_name("gunicorn")
    # --max-requests recycles workers, so the requests below are served by several processes
    # for certain, not merely by chance.
    proc = subprocess.Popen([str(gunicorn), "--workers", "2", "--max-requests", "10", "--bind",
                             f"127.0.0.1:{port}", "--log-level", "warning", "gateway.web.app:create_app()"],
                            env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(f"{base}/metrics", proc, "gunicorn")
    except AssertionError:
        proc.kill()
        pytest.fail(f"gunicorn did not start: {proc.stderr.read().decode()[-2000:]}")
    try:
        yield base, metrics_dir
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def test_counts_add_up_across_gunicorn_worker_processes(gunicorn_two_workers):
    base, metrics_dir = gunicorn_two_workers
    session = requests.Session()
    for _ in range(30):
        # A fresh connection each time, so both workers get a share of the requests.
        response = requests.post(f"{base}/api/webhooks/receive", json=TICKET, timeout=60,
                                 headers={"Connection": "close"})
        assert response.status_code == 201, response.text

    writers = {path.name for path in metrics_dir.glob("counter_*.db")}
    assert len(writers) >= 3, writers
    for _ in range(4):
        found = samples(session.get(f"{base}/metrics", timeout=60).text)
        assert value(found, "gateway_tickets_received_total") == 30
        assert value(found, "gateway_http_requests_total", endpoint="/api/webhooks/receive", method="POST",
                     status="201") == 30


def test_real_deliveries_are_counted_with_their_latency(make_runtime, recording_sink, drain_deliveries):
    from gateway.web.app import create_app

    sink = recording_sink.sink("hooked", type="plain", events=["ticket.created"])
    runtime = make_runtime({"delivery": {"allow_private_networks": True}, "sinks": [sink]},
                           plugins=[PlainSinkPlugin()])
    client = create_app(runtime).test_client()
    recording_sink.reply(503)
    before = scrape(client)
    for _ in range(3):
        assert client.post("/api/webhooks/receive", json=TICKET).status_code == 201
    assert value(scrape(client), "gateway_queue_depth", sink="hooked") == 3

    attempts = drain_deliveries(runtime)

    assert sorted(a["outcome"] for a in attempts) == ["delivered", "delivered", "retry"]
    after = scrape(client)
    assert delta(before, after, "gateway_delivery_attempts_total", sink="hooked", outcome="delivered") == 2
    assert delta(before, after, "gateway_delivery_attempts_total", sink="hooked", outcome="retry") == 1
    assert delta(before, after, "gateway_delivery_attempt_duration_seconds_count", sink="hooked") == 3
    assert delta(before, after, "gateway_delivery_latency_seconds_count", sink="hooked") == 2
    assert value(after, "gateway_queue_depth", sink="hooked") == 0
    assert value(after, "gateway_deliveries_in_flight", sink="hooked") == 0
    # The failed attempt waits in rq's scheduled registry for its retry time.
    assert value(after, "gateway_retry_backlog") == 1


RECORD_ATTEMPTS = """
from gateway.metrics import Metrics
metrics = Metrics()
for outcome in ("delivered", "delivered", "retry"):
    metrics.observe_attempt({"sink": "crm", "outcome": outcome, "duration_ms": 12})
"""


def test_metrics_server_serves_worker_processes_of_a_machine(tmp_path):
    """A worker-only machine: processes record into the shared directory, and
    `gateway metrics-server` serves their sum."""
    directory = tmp_path / "metrics"
    directory.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env[metrics.MULTIPROC_ENV] = str(directory)
    for _ in range(2):  # two "worker" processes
        subprocess.run([sys.executable, "-c", RECORD_ATTEMPTS], env=env, check=True, timeout=60)
    port = free_port()
    gateway = Path(sys.executable).with_name("gateway")
    proc = subprocess.Popen([str(gateway), "metrics-server", "--port", str(port)], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        text = wait_until_serving(f"http://127.0.0.1:{port}/metrics", proc, "metrics-server").text
    finally:
        proc.terminate()
        proc.wait(30)
    found = samples(text)
    assert value(found, "gateway_delivery_attempts_total", sink="crm", outcome="delivered") == 4
    assert value(found, "gateway_delivery_attempts_total", sink="crm", outcome="retry") == 2
    assert value(found, "gateway_delivery_attempt_duration_seconds_count", sink="crm") == 6


RACE_FIRST_USE = """
import threading
from gateway.config import Settings
from gateway.plugins import load_plugins
from gateway.runtime import Runtime
runtime = Runtime(Settings(), load_plugins(), "redis://127.0.0.1:1/0")  # never connects
barrier = threading.Barrier(32)
def attempt():
    barrier.wait()
    runtime.metrics.observe_attempt({"sink": "crm", "outcome": "delivered", "duration_ms": 1})
threads = [threading.Thread(target=attempt) for _ in range(32)]
for t in threads: t.start()
for t in threads: t.join()
"""


def test_threads_racing_to_the_first_metric_lose_no_count(tmp_path):
    """A worker's delivery threads all record their first attempt at once."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    env = {**os.environ, metrics.MULTIPROC_ENV: str(tmp_path)}
    for _ in range(3):
        subprocess.run([sys.executable, "-c", RACE_FIRST_USE], env=env, check=True, timeout=60)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))

    labels = {"sink": "crm", "outcome": "delivered"}
    found = registry.get_sample_value("gateway_delivery_attempts_total", labels)

    assert found == 96


COUNT_ACROSS_A_FORK = """
import os, sys
from gateway import metrics
from gateway.events import Event
metrics.ensure_multiprocess_dir(sys.argv[1])  # as `gateway worker` does
counted = metrics.Metrics()
event = Event.new("ticket.created", {})
counted.observe_event(event)
child = os.fork()
if child == 0:
    counted.observe_event(event)
    os._exit(0)
os.waitpid(child, 0)
counted.observe_event(event)
print(child)
"""


def test_counts_made_on_both_sides_of_a_fork_all_add_up(tmp_path):
    # A process that counted, forked, and went on counting beside its child (gunicorn's
    # master and workers, rq's work horses): each writes its own file, none loses a count.
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    env = {k: v for k, v in os.environ.items() if k != metrics.MULTIPROC_ENV}
    done = subprocess.run([sys.executable, "-c", COUNT_ACROSS_A_FORK, str(tmp_path)], env=env, check=True,
                          timeout=60, capture_output=True, text=True)
    child = int(done.stdout)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path / "metrics"))

    assert registry.get_sample_value("gateway_events_published_total", {"event": "ticket.created"}) == 3
    assert registry.get_sample_value("gateway_tickets_received_total") == 3
    assert (tmp_path / "metrics" / f"counter_{child}.db").exists()


def test_metrics_server_refuses_without_a_metrics_directory(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != metrics.MULTIPROC_ENV and not k.startswith("GATEWAY_")}
    gateway = Path(sys.executable).with_name("gateway")

    result = subprocess.run([str(gateway), "metrics-server"], env=env, cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)

    assert result.returncode == 1 and "No metrics directory" in result.stderr


def recorder_config(redis_url, data_dir, recording_sink):
    """A deployment on the test Redis whose one sink, "recorder", is the recording sink."""
    return {"gateway": {"redis_url": redis_url, "data_dir": str(data_dir),
                        "admin_token": "metrics-admin-token-0123456789ab"},
            "delivery": {"allow_private_networks": True},
            "sinks": [recording_sink.sink("recorder", type="generic_webhook", events=["ticket.created"])]}


def test_gateway_run_merges_web_and_worker_processes(tmp_path, redis_url, redis_client, recording_sink):
    """`gateway run`: tickets counted by the web processes and deliveries by the worker
    processes show up in the same scrape."""
    conf = write_config(tmp_path / "gateway.toml", recorder_config(redis_url, tmp_path / "data", recording_sink))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "PROMETHEUS_"))}
    gateway = Path(sys.executable).with_name("gateway")
    argv = [str(gateway), "--config", str(conf), "run", "--port", str(port), "--workers", "2",
            "--web-workers", "2"]
    proc = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(f"{base}/healthz", proc, "gateway run")
        for _ in range(6):
            assert requests.post(f"{base}/api/webhooks/receive", json=TICKET, timeout=60).status_code == 201
        recording_sink.wait_for(6, timeout=60)
        deadline = time.monotonic() + 30
        while True:
            found = samples(requests.get(f"{base}/metrics", timeout=60).text)
            delivered = value(found, "gateway_delivery_attempts_total", sink="recorder", outcome="delivered")
            if delivered == 6 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert value(found, "gateway_tickets_received_total") == 6
    assert delivered == 6, {k: v for k, v in found.items() if "attempts_total" in k[0]}
    assert value(found, "gateway_delivery_latency_seconds_count", sink="recorder") == 6


def test_a_worker_on_its_own_machine_is_served_by_metrics_server(tmp_path, make_client, redis_url,
                                                                  recording_sink):
    """The several-machines layout: `gateway worker` alone (no `gateway run`, no variable
    set) records into <data_dir>/metrics, and `gateway metrics-server` serves it."""
    data_dir = tmp_path / "data"
    config = recorder_config(redis_url, data_dir, recording_sink)
    client = make_client(config)
    for _ in range(3):
        assert client.post("/api/webhooks/receive", json=TICKET).status_code == 201
    conf = write_config(tmp_path / "gateway.toml", config)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "PROMETHEUS_"))}
    gateway = Path(sys.executable).with_name("gateway")
    subprocess.run([str(gateway), "--config", str(conf), "worker", "--burst"], env=env, cwd=tmp_path,
                   check=True, timeout=120, capture_output=True)
    assert len(recording_sink.wait_for(3)) == 3
    port = free_port()
    proc = subprocess.Popen([str(gateway), "--config", str(conf), "metrics-server", "--port", str(port)],
                            env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        text = wait_until_serving(f"http://127.0.0.1:{port}/metrics", proc, "metrics-server").text
    finally:
        proc.terminate()
        proc.wait(30)
    found = samples(text)
    assert value(found, "gateway_delivery_attempts_total", sink="recorder", outcome="delivered") == 3
    assert list((data_dir / "metrics").glob("counter_*.db"))


def test_a_damaged_metrics_file_gives_a_clear_503(make_client, tmp_path, monkeypatch, caplog):
    client = make_client(config(), plugins=[PlainSinkPlugin()])
    client.get("/healthz")  # this process's metrics exist before the variable is set
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(tmp_path))
    (tmp_path / "counter_1.db").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00" + b"\xff" * 24)

    response = client.get("/metrics")

    assert response.status_code == 503
    assert response.get_json()["error"] == "metrics_unavailable"
    assert "metrics: the scrape failed" in caplog.text
