"""One delivery attempt: render, sign, send, classify, record.

The drainer hands over a :class:`~gateway.scripts.ClaimedDelivery` (the delivery's hash
and its event, read by the claim itself). The outcome is written by finish.lua: the attempt
record, the delivery's new status, the in-flight lease released, retention, hourly
counters, the sink's failure streak and circuit; attempts finishing together share one
round trip (:class:`~gateway.scripts.GroupFinish`), and a retry goes in one MULTI/EXEC with
its rq job. Then observers get the ``delivery_attempted`` hook.
A sink that raises in ``render`` or ``classify`` costs a failed attempt with a clear error,
never the worker.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from gateway import retry, signing
from gateway.circuit import CircuitSettings, schedule_wake
from gateway.config import redact_url
from gateway.events import Event, iso_from_ms, iso_z
from gateway.sinks import DeliveryInfo, Outcome, OutcomeKind, Response, Sink, Target

if TYPE_CHECKING:  # pragma: no cover
    from gateway.config import SinkConfig
    from gateway.http import OutboundClient
    from gateway.runtime import Runtime
    from gateway.scripts import ClaimedDelivery, EngineScripts

log = logging.getLogger("gateway.delivery")

REQUEUE_JOB = "gateway.jobs.requeue"
EXCERPT_BYTES = 2048
INFLIGHT_MARGIN_MS = 15_000
"""How long past the sink's timeout an in-flight lease lasts before the sweeper assumes
the worker died and puts the delivery back."""
STATS_TTL_S = 26 * 3600
HIDDEN = "[hidden]"
_SENSITIVE_HEADER_WORDS = ("authorization", "signature", "secret", "token", "api-key", "apikey", "cookie",
                           "password")


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


@functools.lru_cache(maxsize=1024)
def _sensitive_name(name: str) -> bool:
    # Header names repeat from attempt to attempt (a sink renders the same ones each time).
    lowered = name.lower()
    return any(word in lowered for word in _SENSITIVE_HEADER_WORDS)


def hide_headers(headers: Mapping[str, str], secrets: Sequence[str]) -> dict[str, str]:
    """Request headers as the delivery log shows them: signature, credential and any header
    carrying a configured secret replaced by ``[hidden]``."""
    shown: dict[str, str] = {}
    for name, value in headers.items():
        if _sensitive_name(name) or any(s and s in value for s in secrets):
            shown[name] = HIDDEN
        else:
            shown[name] = value
    return shown


@functools.lru_cache(maxsize=256)
def _static_secrets(url: str, secrets: tuple[str, ...]) -> frozenset[str]:
    # The same for every attempt to one URL: worked out once, not per attempt.
    import base64
    from urllib.parse import unquote, urlsplit

    found = {s for s in secrets if s}
    parts = urlsplit(url)
    if parts.password:
        # The client sends URL credentials as Basic auth (gateway.http), so hide that form too.
        credentials = unquote(f"{parts.username or ''}:{parts.password}")
        found.update({parts.password, unquote(parts.password),
                      base64.b64encode(credentials.encode("latin-1", "replace")).decode(),
                      base64.b64encode(credentials.encode("utf-8")).decode()})
    return frozenset(found)


def sent_secrets(headers: Mapping[str, str], secrets: Sequence[str], url: str,
                 shown: Mapping[str, str] | None = None) -> list[str]:
    """Every secret value a request carried: the configured secrets, the URL's password, and
    each header value :func:`hide_headers` hides, whole and token by token (signatures and
    credentials: ``v1,<base64>`` entries, ``Basic <base64>``), longest first. ``shown`` is
    ``hide_headers(headers, secrets)`` when the caller has it already."""
    found = set(_static_secrets(url, tuple(secrets)))
    if shown is None:
        shown = hide_headers(headers, secrets)
    for name, value in shown.items():
        if value == HIDDEN and headers[name]:
            found.add(headers[name])
            found.update(part for part in headers[name].replace(",", " ").split() if len(part) >= 8)
    return sorted(found, key=len, reverse=True)


_REDACTED_URLS: dict[str, str] = {}


def _redacted_url(url: str) -> str:
    # A sink sends to the same few URLs over and over; redacting is a parse each time.
    shown = _REDACTED_URLS.get(url)
    if shown is None:
        if len(_REDACTED_URLS) >= 1024:
            _REDACTED_URLS.clear()
        shown = _REDACTED_URLS[url] = redact_url(url)
    return shown


def _excerpt(body: bytes, hidden: Sequence[str] = ()) -> str:
    # Destinations echo requests back (request inspectors, "signature mismatch: got ..."
    # errors): what we sent that is secret must not reach the delivery log that way.
    text = body.decode("utf-8", "replace")
    for value in hidden:
        text = text.replace(value, HIDDEN)
    return text.encode("utf-8")[:EXCERPT_BYTES].decode("utf-8", "ignore")


def _sink_secrets(options: Mapping[str, Any], configured: Sequence[str]) -> list[str]:
    found = [s for s in configured if s]
    for key in ("api_keys", "token", "password"):
        value = options.get(key)
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            found.extend(str(v) for v in value)
    # Static headers often carry credentials under names no word list catches
    # (X-Auth-Key, X-Partner): the sinks API hides their values, so the log does too.
    static = options.get("headers")
    if isinstance(static, Mapping):
        found.extend(str(v) for v in static.values() if v)
    return found


@dataclasses.dataclass(frozen=True)
class _SinkPlan:
    """What every attempt of one sink needs and that only changes with its config: worked
    out once per sink rather than once per attempt."""

    config: SinkConfig
    secrets: tuple[str, ...]
    """Every value to hide from the log (signing secrets, credentials, static headers)."""
    circuit: CircuitSettings


class AttemptRunner:
    """Runs attempts for one process; thread-safe (one per worker process)."""

    def __init__(self, runtime: Runtime, client: OutboundClient, scripts: EngineScripts) -> None:
        self.runtime = runtime
        self.client = client
        self.scripts = scripts
        self._plans: dict[str, _SinkPlan] = {}
        self._retention_s = int(runtime.settings.retention_days * 86400)

    def _plan(self, sink_config: SinkConfig) -> _SinkPlan:
        plan = self._plans.get(sink_config.name)
        if plan is None or plan.config is not sink_config:  # first attempt, or a new config
            plan = _SinkPlan(sink_config, tuple(_sink_secrets(sink_config.options, sink_config.secrets)),
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
        try:
            sink_config = self.runtime.sink_config(sink_name)
        except KeyError:
            sink_config = None
        sink = self.runtime.sinks.get(sink_name)
        if sink is None or sink_config is None:
            verdict = Verdict("failed", "error", error={
                "code": "sink_not_configured", "message": f"Sink {sink_name!r} is not configured on this worker."})
        elif claimed.event_json is None:
            verdict = Verdict("failed", "error", error={
                "code": "event_expired", "message": "The event is past its retention and can no longer be sent."})
        else:
            target = Target.from_json(target_doc)
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
        self._finish(claimed.id, sink_name, sink_config, attempt_no, round_attempts, verdict, record)
        try:
            self.runtime.plugins.hook.delivery_attempted(attempt=record)
        except Exception:  # an observer's bug must not undo or repeat a recorded attempt
            log.exception("a delivery_attempted hook failed")
        return record

    def _attempt(self, sink: Sink, sink_config: SinkConfig, delivery_id: str, event: Event, target: Target,
                 attempt_no: int, round_attempts: int) -> tuple[Verdict, dict[str, Any] | None]:
        from gateway.http import DeliveryError

        plan = self._plan(sink_config)
        secrets = plan.secrets
        try:
            request = sink.render(event, target, DeliveryInfo(delivery_id, attempt_no, sink_config.name))
        except Exception as exc:  # noqa: BLE001 - a plugin's bug is a failed attempt, not a dead worker
            log.warning("sink %s failed to render delivery %s: %s", sink_config.name, delivery_id,
                        type(exc).__name__)
            return self._failed_attempt(sink_config, round_attempts, None, {
                "code": "render_error", "message": f"The sink raised {type(exc).__name__} while rendering."}), None
        headers = dict(request.headers)
        if request.sign and sink_config.secrets:
            headers.update(signing.signature_headers(request.body, delivery_id, sink_config.secrets))
            request = dataclasses.replace(request, headers=headers)
        shown = hide_headers(headers, secrets)
        request_view = {"method": request.method, "url": _redacted_url(request.url), "headers": shown}
        try:
            response = self.client.send(request, timeout=sink_config.timeout)
        except DeliveryError as exc:
            if exc.code in retry.RETRYABLE_ERRORS:
                return self._failed_attempt(sink_config, round_attempts, None,
                                            {"code": exc.code, "message": exc.message}), request_view
            return Verdict("failed", "give_up", error={"code": exc.code, "message": exc.message}), request_view
        excerpt = _excerpt(response.body, sent_secrets(headers, secrets, request.url, shown)) if response.body else ""
        try:
            outcome = sink.classify(response, target)
        except Exception as exc:  # noqa: BLE001 - as for render
            log.warning("sink %s failed to classify a response: %s", sink_config.name, type(exc).__name__)
            verdict = self._failed_attempt(sink_config, round_attempts, response, {
                "code": "classify_error", "message": f"The sink raised {type(exc).__name__} while classifying."})
            verdict.excerpt = excerpt
            return verdict, request_view
        verdict = self._judge(sink, sink_config, target, outcome, response, round_attempts)
        verdict.excerpt = excerpt
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
        delay = retry.retry_delay(sink_config.retry_schedule, round_attempts, delivery["retry_jitter"])
        if delay is None:
            error = {**error, "message": f"{error['message']} (no retries left)"}
            return Verdict("failed", "exhausted", error=error)
        # Counted from now, when the answer (and its Retry-After) arrived, not from the start.
        now = datetime.now(UTC)
        asked = retry.not_before(outcome or Outcome.retry(""), response, now, delivery["max_retry_after"])
        when = asked if asked is not None else now + timedelta(seconds=delay)
        return Verdict("retrying", "retry", error=error, next_attempt=when)

    def _finish(self, delivery_id: str, sink_name: str, sink_config: SinkConfig | None, attempt_no: int,
                round_attempts: int, verdict: Verdict, record: dict[str, Any]) -> None:
        runtime = self.runtime
        circuit = self._plan(sink_config).circuit if sink_config is not None else CircuitSettings.for_sink(
            runtime, None)
        now = datetime.now(UTC)
        next_ms = int(verdict.next_attempt.timestamp() * 1000) if verdict.next_attempt else ""
        error_text = f"{verdict.error['code']}: {verdict.error['message']}" if verdict.error else ""
        # One finish.lua record (see the script's header for the order).
        values = [
            delivery_id, sink_name, int(now.timestamp() * 1000),
            json.dumps(record, separators=(",", ":"), ensure_ascii=False), verdict.status, attempt_no,
            round_attempts, next_ms, verdict.status_code if verdict.status_code is not None else "", error_text,
            self._retention_s, 1 if verdict.status == "delivered" else 0,
            circuit.failure_threshold, circuit.cooldown_ms, circuit.max_cooldown_ms, verdict.pause_reason,
            now.strftime("%Y%m%d%H"), STATS_TTL_S,
        ]
        if verdict.status == "retrying" and verdict.next_attempt is not None:
            opened_until = self._finish_with_retry(values, delivery_id, attempt_no, verdict.next_attempt)
        else:
            # Attempts finishing together share one round trip; this returns once ours is in.
            opened_until = self.scripts.finishes(values)
        if opened_until:
            log.warning("circuit of sink %s opened until %s", sink_name,
                        iso_from_ms(str(opened_until)))
            schedule_wake(runtime, sink_name, opened_until)
        if verdict.pause_reason:
            log.warning("sink %s paused: %s", sink_name, verdict.pause_reason)

    def _finish_with_retry(self, values: list[Any], delivery_id: str, attempt_no: int, when: datetime) -> int:
        """finish.lua and the rq job that requeues the delivery, in one MULTI/EXEC: a
        retrying delivery always has its retry scheduled. (Not grouped with other attempts:
        the MULTI/EXEC is this delivery's own.)"""
        import redis

        runtime = self.runtime
        with runtime.redis.pipeline(transaction=True) as pipe:
            # EVALSHA by hand: redis-py's Script in a pipeline costs a SCRIPT EXISTS round trip.
            pipe.evalsha(self.scripts.finish.sha, 0, self.scripts.prefix, *values)
            runtime.queue.enqueue_at(retry.rq_schedule_time(when), REQUEUE_JOB, delivery_id, str(attempt_no),
                                     job_id=f"retry-{delivery_id}-{attempt_no}", result_ttl=0, failure_ttl=86400,
                                     pipeline=pipe)
            replies = pipe.execute(raise_on_error=False)
        if isinstance(replies[0], redis.exceptions.NoScriptError):
            # Redis lost its script cache (restart): the retry job is in; record the attempt now.
            return self.scripts.finish_many([values])[0]
        if isinstance(replies[0], Exception):
            raise replies[0]
        return int(replies[0][0])
