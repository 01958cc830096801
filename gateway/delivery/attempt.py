"""One delivery attempt: render, sign, send, classify, record.

The drainer hands over a :class:`~gateway.storage.scripts.ClaimedDelivery` (the delivery's hash
and its event, read by the claim itself). The outcome is written by finish.lua: the attempt
record, the delivery's new status, the in-flight lease released, retention, hourly
counters, the sink's failure streak and circuit; attempts finishing together share one
round trip (:class:`~gateway.delivery.group_finish.GroupFinish`), and a retry goes in one
MULTI/EXEC with its rq job. What finish.lua reports this attempt changed (a circuit opened
or closed, the sink paused) is published as system events
(:mod:`gateway.publish.system_events`). Then the attempt is logged and counted, and
observers get the ``delivery_attempted`` hook.
A sink that raises in ``render`` or ``classify`` has a bug, which no retry fixes: the
delivery fails at once (``render_error`` / ``classify_error``, with the exception's type and
message) and can be replayed once the plugin is fixed; the traceback is logged at DEBUG.
It never costs the worker.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import redis

from gateway import signing
from gateway.delivery import attempt_store, hourly_stats, retry, wakeups
from gateway.delivery.circuit import CircuitSettings
from gateway.delivery.delivery_log import SINK_DELETED, SINK_DELETED_MESSAGE
from gateway.delivery.group_finish import GroupFinish
from gateway.delivery.http_client import DeliveryError
from gateway.events import Event, iso_from_ms, iso_z
from gateway.logs import log_attempt
from gateway.metrics import safely
from gateway.redact import (
    HIDDEN,
    carries_secret,
    excerpt,
    hide_headers,
    plugin_error_text,
    redact,
    sent_secrets,
    shown_url,
    sink_secret_values,
)
from gateway.sinks import DEFAULT_USER_AGENT, DeliveryInfo, Outcome, OutcomeKind, RenderFailed, Response, Sink, Target
from gateway.storage.connection import transient
from gateway.storage.layout import AttemptRecord
from gateway.storage.scripts import Finished, parse_finished

if TYPE_CHECKING:  # pragma: no cover
    from gateway.config import SinkConfig
    from gateway.delivery.http_client import OutboundClient
    from gateway.runtime import Runtime
    from gateway.storage.scripts import ClaimedDelivery

log = logging.getLogger("gateway.delivery")

INFLIGHT_MARGIN_MS = 15_000
"""How long past the sink's timeout an in-flight lease lasts before the sweeper assumes
the worker died and puts the delivery back."""
STATS_TTL_S = 26 * 3600
RECORD_RETRY_S = 0.5
"""How often an attempt's record is tried again while Redis is unavailable."""
RECORD_SLACK_S = 2.0
"""Stop trying that long before the in-flight lease ends, when a sweeper may requeue it."""


@dataclasses.dataclass
class Verdict:
    """What an attempt came to, before it is written."""

    status: str  # delivered | retrying | failed
    outcome: str  # delivered | retry | exhausted (no retries left) | give_up | gone | error
    status_code: int | None = None
    error: dict[str, str] | None = None
    next_attempt: datetime | None = None
    pause_reason: str = ""
    excerpt: str | None = None
    circuit: str = ""
    """What it tells the circuit breaker (AttemptRecord.circuit); "" = by the status:
    delivered is a success, anything else a failure of the destination."""


@dataclasses.dataclass(frozen=True)
class _SinkPlan:
    """What every attempt of one sink needs and that only changes with its config: worked
    out once per sink rather than once per attempt."""

    config: SinkConfig
    secrets: tuple[str, ...]
    """Every value to hide from the log (signing secrets, credentials, static headers)."""
    circuit: CircuitSettings


def _plugin_bug(sink: str, delivery_id: str, stage: str, exc: Exception, secrets: tuple[str, ...]) -> Verdict:
    """A sink's ``render`` or ``classify`` raised: a bug in the plugin, not a network
    failure, so retrying on the schedule would only repeat it for a day. The delivery fails
    now (replayable), its error says what was raised."""
    detail = plugin_error_text(exc, secrets)
    doing = "rendering" if stage == "render" else "classifying the response"
    log.warning("sink %s raised while %s delivery %s: %s", sink, doing, delivery_id, detail)
    log.debug("traceback of sink %s's %s for delivery %s", sink, stage, delivery_id, exc_info=exc)
    # Nothing said about the destination (it may have answered fine): no circuit counts it.
    return Verdict("failed", "error", error={"code": f"{stage}_error",
                                             "message": f"The sink raised {detail} while {doing}."},
                   circuit="none")


def _configuration_error(sink: str, delivery_id: str, exc: RenderFailed, secrets: tuple[str, ...]) -> Verdict:
    """The sink's configuration cannot render this event (:class:`~gateway.sinks.RenderFailed`,
    e.g. ``template_error``): as for a plugin's bug, no retry would help, so the delivery fails
    now (replayable once the configuration is fixed), under the code the sink gave."""
    message = exc.describe()
    for value in secrets:
        if value:
            message = message.replace(value, HIDDEN)
    message = redact(message)[:500]
    log.warning("sink %s could not render delivery %s: %s: %s", sink, delivery_id, exc.code, message)
    return Verdict("failed", "error", error={"code": exc.code, "message": message}, circuit="none")


def failure_description(record: Mapping[str, Any]) -> dict[str, Any]:
    """A failed attempt's record as the ``delivery`` of a ``delivery.failed`` summary
    (finish.lua keeps the last one per sink for the summary)."""
    error = record.get("error")
    return {"id": record.get("delivery_id"), "event": record.get("event"), "event_id": record.get("event_id"),
            "attempts": record.get("attempt"), "status_code": record.get("status_code"),
            "error": {"code": str(error.get("code", "")), "message": str(error.get("message", ""))}
            if isinstance(error, Mapping) else None,
            "failed_at": record.get("at")}


class AttemptRunner:
    """Runs attempts for one process; thread-safe (one per worker process)."""

    def __init__(self, runtime: Runtime, client: OutboundClient) -> None:
        self.runtime = runtime
        self.client = client
        self.finishes = GroupFinish(runtime.scripts.finish)
        self._plans: dict[str, _SinkPlan] = {}
        self._retention_s = int(runtime.settings.retention_days * 86400)

    def _plan(self, sink_config: SinkConfig) -> _SinkPlan:
        plan = self._plans.get(sink_config.name)
        if plan is None or plan.config is not sink_config:  # first attempt, or a new config
            plan = _SinkPlan(sink_config, tuple(sink_secret_values(sink_config)),
                             CircuitSettings.for_sink(self.runtime, sink_config))
            self._plans[sink_config.name] = plan
        return plan

    def run(self, claimed: ClaimedDelivery) -> dict[str, Any]:
        """Attempt ``claimed`` once and record the result; returns the attempt record."""
        fields = claimed.fields
        sink_name = fields.get("sink", "")
        attempt_no = int(fields.get("attempts") or 0) + 1
        round_attempts = int(fields.get("round_attempts") or 0) + 1
        started = time.monotonic()
        at = datetime.now(UTC)
        request_view: dict[str, Any] | None = None
        event: Event | None = None
        target_doc = json.loads(fields.get("target") or "{}")
        view = self.runtime.integrations
        if sink_name not in view.configs:
            # Created or deleted after this process's view was taken? Look before judging.
            view = self.runtime.refresh()
        if sink_name not in view.configs and sink_name in view.deleted:
            return self.cancel(claimed.id, sink_name)
        sink_config = view.configs.get(sink_name)
        sink = view.sinks.get(sink_name)
        if sink is None or sink_config is None:
            verdict = Verdict("failed", "error", error={
                "code": "sink_not_configured", "message": f"Sink {sink_name!r} is not configured on this worker."},
                circuit="none")
        elif claimed.event_json is None:
            verdict = Verdict("failed", "error", error={
                "code": "event_expired", "message": "The event is past its retention and can no longer be sent."},
                circuit="none")
        else:
            target = sink.current_target(Target.from_json(target_doc))
            event = Event.from_json(claimed.event_json)
            verdict, request_view = self._attempt(sink, sink_config, claimed.id, event, target, attempt_no,
                                                  round_attempts)
        duration_ms = round((time.monotonic() - started) * 1000, 1)
        record = {
            "delivery_id": claimed.id, "event_id": fields.get("event_id"), "event": fields.get("event"),
            "sink": sink_name, "target": target_doc.get("key"),
            "attempt": attempt_no, "at": iso_z(at), "duration_ms": duration_ms,
            "status_code": verdict.status_code, "outcome": verdict.outcome, "status": verdict.status,
            "error": verdict.error, "response_excerpt": verdict.excerpt, "request": request_view,
            "next_attempt_at": iso_z(verdict.next_attempt) if verdict.next_attempt else None,
            # When the event was received: metrics derive receive->delivered latency from it.
            "event_timestamp": event.timestamp if event is not None else None,
        }
        if fields.get("waited_for") and round_attempts == 1:
            # Ordered delivery: the first attempt after its ticket's previous delivery ended
            # says which one that was and how it ended (delivered, failed, cancelled...).
            record["waited_for"] = {"delivery_id": fields["waited_for"], "status": fields.get("waited_for_status")}
        # A fan-out sink's per-target state is keyed by the target's key as stored with the
        # delivery (claim.lua reads the same), whatever current_target made of its URL.
        lane = (target_doc.get("key") or "default") if sink_config is not None and sink_config.fan_out else ""
        lease_s = (sink_config.timeout if sink_config is not None else self.runtime.settings.delivery.timeout) + (
            INFLIGHT_MARGIN_MS / 1000)
        stored = attempt_store.pack(record, fields, claimed.event_json)
        self._record(started + lease_s - RECORD_SLACK_S, claimed.id, sink_name, sink_config, attempt_no,
                     round_attempts, verdict, record, stored, lane)
        log_attempt(record)
        safely("delivery attempt", lambda: self.runtime.metrics.observe_attempt(record))
        try:
            self.runtime.plugins.hook.delivery_attempted(attempt=record)
        except Exception:  # an observer's bug must not undo or repeat a recorded attempt
            log.exception("a delivery_attempted hook failed")
        return record

    def cancel(self, delivery_id: str, sink_name: str) -> dict[str, Any]:
        """End a delivery of a sink deleted through the API without attempting it: status
        ``cancelled``, reason ``sink_deleted`` (the in-flight lease the caller holds given back)."""
        self.runtime.scripts.cancel(sink_name, [delivery_id], SINK_DELETED, SINK_DELETED_MESSAGE, claimed=True)
        log.info("delivery %s of deleted sink %s cancelled", delivery_id, sink_name)
        return {"delivery_id": delivery_id, "sink": sink_name, "status": "cancelled", "outcome": "cancelled",
                "error": {"code": SINK_DELETED, "message": SINK_DELETED_MESSAGE}}

    def _attempt(self, sink: Sink, sink_config: SinkConfig, delivery_id: str, event: Event, target: Target,
                 attempt_no: int, round_attempts: int) -> tuple[Verdict, dict[str, Any] | None]:
        plan = self._plan(sink_config)
        secrets = plan.secrets
        try:
            request = sink.render(event, target, DeliveryInfo(delivery_id, attempt_no, sink_config.name))
        except RenderFailed as exc:
            return _configuration_error(sink_config.name, delivery_id, exc, secrets), None
        except Exception as exc:  # noqa: BLE001 - a plugin's bug is a failed attempt, not a dead worker
            return _plugin_bug(sink_config.name, delivery_id, "render", exc, secrets), None
        headers = dict(request.headers)
        if not any(name.lower() == "user-agent" for name in headers):
            # The guide's "all outgoing webhooks" header, rather than urllib3's own name.
            headers["User-Agent"] = DEFAULT_USER_AGENT
        signing_secrets = sink_config.signing_secrets()
        if request.sign and signing_secrets:
            headers.update(signing.signature_headers(request.body, delivery_id, signing_secrets))
        request = dataclasses.replace(request, headers=headers)
        shown = hide_headers(headers, secrets)
        hidden = sent_secrets(headers, secrets, request.url, shown)
        # The request as it went out, for the delivery log: the rendered body (a Slack
        # message, a Zapier flat payload...) bounded and with every secret it carried hidden,
        # kept in the attempt record finish.lua writes anyway (no extra round trip).
        request_view = {"method": request.method, "url": shown_url(request.url, carries_secret(request.url, secrets)),
                        "headers": shown, "body": excerpt(request.body, hidden) if request.body else "",
                        "body_bytes": len(request.body or b"")}
        try:
            response = self.client.send(request, timeout=sink_config.timeout)
        except DeliveryError as exc:
            if exc.code in retry.RETRYABLE_ERRORS:
                return self._failed_attempt(sink_config, round_attempts, None,
                                            {"code": exc.code, "message": exc.message}), request_view
            # ssrf_refused, invalid_url, invalid_request: our refusal to send (configuration),
            # not the destination failing, so no reason to open a circuit.
            return Verdict("failed", "give_up", error={"code": exc.code, "message": exc.message},
                           circuit="none"), request_view
        body_excerpt = ""
        if response.body:
            body_excerpt = excerpt(response.body, hidden)
        try:
            outcome = sink.classify(response, target)
        except Exception as exc:  # noqa: BLE001 - as for render
            verdict = _plugin_bug(sink_config.name, delivery_id, "classify", exc, secrets)
            verdict.status_code = response.status_code
            verdict.excerpt = body_excerpt
            return verdict, request_view
        verdict = self._judge(sink, sink_config, target, outcome, response, round_attempts)
        verdict.excerpt = body_excerpt
        return verdict, request_view

    def _judge(self, sink: Sink, sink_config: SinkConfig, target: Target, outcome: Outcome, response: Response,
               round_attempts: int) -> Verdict:
        code = response.status_code
        if outcome.kind is OutcomeKind.DELIVERED:
            return Verdict("delivered", "delivered", status_code=code)
        error = {"code": "http_status" if not response.ok else "rejected",
                 "message": outcome.reason or f"HTTP {code}"}
        if outcome.kind is OutcomeKind.RETRY:
            verdict = self._failed_attempt(sink_config, round_attempts, response, error, outcome)
            verdict.status_code = code
            return verdict
        if outcome.kind is OutcomeKind.GONE:
            error["code"] = "gone"
            pause = ""
            try:
                if sink.on_gone(target, outcome.reason):
                    pause = outcome.reason or f"HTTP {code}"
            except Exception as exc:  # noqa: BLE001 - as for render
                log.warning("sink %s failed in on_gone: %s", sink_config.name, type(exc).__name__)
            return Verdict("failed", "gone", status_code=code, error=error, pause_reason=pause)
        return Verdict("failed", "give_up", status_code=code, error=error,
                       pause_reason=(outcome.reason or f"HTTP {code}") if outcome.pause_sink else "")

    def _failed_attempt(self, sink_config: SinkConfig, round_attempts: int, response: Response | None,
                        error: dict[str, str], outcome: Outcome | None = None) -> Verdict:
        """A retryable failure: retrying at the next slot of the schedule, or failed when the
        schedule is exhausted."""
        delivery = self.runtime.settings.delivery
        delay = retry.retry_delay(sink_config.retry_schedule, round_attempts, delivery.retry_jitter)
        if delay is None:
            error = {**error, "message": f"{error['message']} (no retries left)"}
            return Verdict("failed", "exhausted", error=error)
        # Counted from now, when the answer (and its Retry-After) arrived, not from the start.
        now = datetime.now(UTC)
        asked = retry.not_before(outcome or Outcome.retry(""), response, now, delivery.max_retry_after)
        when = asked if asked is not None else now + timedelta(seconds=delay)
        return Verdict("retrying", "retry", error=error, next_attempt=when)

    def _record(self, deadline: float, *args: Any) -> None:
        """:meth:`_finish`, tried again while Redis is unavailable (a failover: the master is
        gone and no replica is promoted yet, or the one we reached was demoted) until the
        in-flight lease is about to end (``deadline``, monotonic): the attempt was made, and
        recording it spares the destination a second copy. Past the deadline the error goes
        up; the sweeper then puts the delivery back when its lease ends (at least once, never
        lost)."""
        while True:
            try:
                self._finish(*args)
                return
            except redis.RedisError as exc:
                if not transient(exc) or time.monotonic() + RECORD_RETRY_S > deadline:
                    raise
                log.warning("could not record the attempt of delivery %s (%s); trying again", args[0],
                            type(exc).__name__)
                time.sleep(RECORD_RETRY_S)

    def _finish(self, delivery_id: str, sink_name: str, sink_config: SinkConfig | None, attempt_no: int,
                round_attempts: int, verdict: Verdict, record: dict[str, Any], stored: str, lane: str) -> None:
        runtime = self.runtime
        circuit = self._plan(sink_config).circuit if sink_config is not None else CircuitSettings.for_sink(
            runtime, None)
        now = datetime.now(UTC)
        error_text = f"{verdict.error['code']}: {verdict.error['message']}" if verdict.error else ""
        attempt = AttemptRecord(
            id=delivery_id, sink=sink_name, now_ms=int(now.timestamp() * 1000),
            attempt_json=stored, status=verdict.status,
            attempts=attempt_no, round_attempts=round_attempts,
            next_attempt_at_ms=int(verdict.next_attempt.timestamp() * 1000) if verdict.next_attempt else None,
            last_status_code=verdict.status_code, last_error=error_text, retention_s=self._retention_s,
            circuit=verdict.circuit or ("success" if verdict.status == "delivered" else "failure"), lane=lane,
            max_in_flight=sink_config.max_in_flight if sink_config is not None else 1,
            failure_threshold=circuit.failure_threshold,
            cooldown_ms=circuit.cooldown_ms, max_cooldown_ms=circuit.max_cooldown_ms,
            pause_reason=verdict.pause_reason, hour=now.strftime("%Y%m%d%H"),
            latency_bucket=hourly_stats.bucket(record["duration_ms"]) if record.get("request") else "",
            stats_ttl_s=STATS_TTL_S,
            failure_json=json.dumps(failure_description(record), separators=(",", ":"),
                                    ensure_ascii=False) if verdict.status == "failed" else "",
        )
        if verdict.status == "retrying" and verdict.next_attempt is not None:
            finished = self._finish_with_retry(attempt, verdict.next_attempt)
        else:
            # Attempts finishing together share one round trip; this returns once ours is in.
            finished = self.finishes(attempt)
        if finished.open_until:
            log.warning("circuit of sink %s opened until %s", sink_name,
                        iso_from_ms(str(finished.open_until)))
            wakeups.schedule_wake(runtime, sink_name, finished.open_until)
        if verdict.pause_reason:
            log.warning("sink %s paused: %s", sink_name, verdict.pause_reason)
        # finish.lua told this attempt alone of the transitions it caused: this process
        # publishes them (never raises; a few round trips, only on a transition).
        runtime.reporter.after_attempt(sink_config, sink_name, record, lane, finished, verdict.pause_reason)

    def _finish_with_retry(self, attempt: AttemptRecord, when: datetime) -> Finished:
        """finish.lua and the rq job that requeues the delivery, in one MULTI/EXEC: a
        retrying delivery always has its retry scheduled. (Not grouped with other attempts:
        the MULTI/EXEC is this delivery's own.)"""
        runtime = self.runtime
        with runtime.redis.pipeline(transaction=True) as pipe:
            runtime.scripts.finish_on(pipe, attempt)
            wakeups.schedule_retry(runtime, pipe, attempt.id, attempt.attempts, when)
            replies = pipe.execute(raise_on_error=False)
        if isinstance(replies[0], redis.exceptions.NoScriptError):
            # Redis lost its script cache (restart): the retry job is in; record the attempt now.
            return runtime.scripts.finish([attempt])[0]
        if isinstance(replies[0], Exception):
            raise replies[0]
        return parse_finished(replies[0][0])
