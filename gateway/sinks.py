"""The public sink API: what a sink plugin implements and what the core hands it.

A sink plugin never does HTTP, signing, retries or logging itself. For one event it
*renders* a request and, once the core has sent it, *classifies* the response. The core
owns the mechanics (pooled HTTP, SSRF guard, timeouts, retries with jitter, circuit
breaker, delivery log), so every sink gets them right.

A plugin registers a :class:`SinkType` through the ``register_sink_types`` hook::

    from gateway import hookimpl, SinkType, Sink, OutgoingRequest, Outcome

    class MySink(Sink):
        def render(self, event, target, delivery):
            return OutgoingRequest(url=self.options["url"], body=event.envelope_bytes())

        def classify(self, response, target):
            return Outcome.delivered() if response.ok else Outcome.retry(f"HTTP {response.status_code}")

    @hookimpl
    def register_sink_types(register):
        register(SinkType(name="mine", options_schema=MyOptions, factory=MySink))
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import marshmallow

if TYPE_CHECKING:  # pragma: no cover
    import redis

    from gateway.events import Event


@dataclasses.dataclass(frozen=True)
class Target:
    """One destination of a sink for one event.

    Most sinks have exactly one target (their configured URL). A fan-out sink such as
    Zapier returns one per subscription; each becomes its own delivery with its own
    retries and log entries. ``key`` identifies the target within the sink (e.g. the
    subscription id) and ``url`` is where the request goes.
    """

    key: str
    url: str
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe form, stored with the delivery."""
        return {"key": self.key, "url": self.url, "extra": dict(self.extra)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Target:
        """The inverse of :meth:`to_json`."""
        return cls(key=data["key"], url=data["url"], extra=dict(data.get("extra") or {}))


@dataclasses.dataclass(frozen=True)
class DeliveryInfo:
    """What a sink may know about the delivery it renders for."""

    id: str
    """The delivery id: the same on every retry and replay (X-Webhook-Delivery, webhook-id)."""
    attempt: int
    """1 for the first attempt, 2 for the first retry, ..."""
    sink: str


@dataclasses.dataclass
class OutgoingRequest:
    """A request rendered by a sink. The core adds nothing it was not asked to, except
    that it signs the body when the sink asks (``sign=True``) and a secret is configured."""

    url: str
    body: bytes
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    method: str = "POST"
    sign: bool = False
    """Ask the core to add X-Webhook-Signature and the Standard Webhooks headers,
    computed over ``body`` with the sink's ``secret``/``secrets`` options."""

    @staticmethod
    def json_body(payload: Any) -> bytes:
        """Compact JSON bytes, as the guide's ``JSON.stringify`` would produce."""
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclasses.dataclass(frozen=True)
class Response:
    """The response to an outgoing request, as a sink's ``classify`` sees it."""

    status_code: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def ok(self) -> bool:
        """True for a 2xx status."""
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        """The body decoded as UTF-8, with undecodable bytes replaced."""
        return self.body.decode("utf-8", "replace")

    def header(self, name: str) -> str | None:
        """A header's value, looked up case-insensitively."""
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return None


class OutcomeKind(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    GIVE_UP = "give_up"
    GONE = "gone"


@dataclasses.dataclass(frozen=True)
class Outcome:
    """A sink's verdict on one response. Build it with the class methods."""

    kind: OutcomeKind
    reason: str = ""
    not_before: datetime | None = None
    pause_sink: bool = False

    @classmethod
    def delivered(cls) -> Outcome:
        """The destination accepted the event."""
        return cls(OutcomeKind.DELIVERED)

    @classmethod
    def retry(cls, reason: str, not_before: datetime | None = None) -> Outcome:
        """Try again on the retry schedule, and not before ``not_before`` when given
        (e.g. from Retry-After)."""
        return cls(OutcomeKind.RETRY, reason, not_before)

    @classmethod
    def give_up(cls, reason: str, pause_sink: bool = False) -> Outcome:
        """Stop retrying this delivery: it is marked failed (and can be replayed).
        With ``pause_sink`` the whole sink is paused with ``reason`` until resumed."""
        return cls(OutcomeKind.GIVE_UP, reason, pause_sink=pause_sink)

    @classmethod
    def gone(cls, reason: str) -> Outcome:
        """The destination no longer exists (HTTP 410). The core stops retrying and calls
        :meth:`Sink.on_gone`, which by default pauses the sink."""
        return cls(OutcomeKind.GONE, reason)


@dataclasses.dataclass(frozen=True)
class SinkContext:
    """Core services a sink may use. Sinks must not do HTTP themselves."""

    redis: redis.Redis
    key_prefix: str
    public_url: str | None

    def key(self, *parts: str) -> str:
        """A Redis key in the gateway's namespace, e.g. ``ctx.key("zapier", "subs")``."""
        return self.key_prefix + ":".join(parts)


class Sink:
    """One configured sink. Subclass it and implement :meth:`render` and :meth:`classify`.

    ``name`` is the sink's configured name, ``options`` its options as loaded by the sink
    type's schema (common options such as ``events`` and ``secret`` included).
    """

    def __init__(self, name: str, options: Mapping[str, Any], context: SinkContext) -> None:
        self.name = name
        self.options = options
        self.context = context

    def targets(self, event: Event) -> list[Target]:
        """Where this event goes. Default: one target, the sink's ``url`` option."""
        return [Target(key="default", url=self.options["url"])]

    def render(self, event: Event, target: Target, delivery: DeliveryInfo) -> OutgoingRequest:
        """Build the request for one event and target."""
        raise NotImplementedError

    def classify(self, response: Response, target: Target) -> Outcome:
        """Judge a response. Default: 2xx delivered, 410 gone, anything else retried."""
        if response.ok:
            return Outcome.delivered()
        if response.status_code == 410:
            return Outcome.gone("HTTP 410 Gone")
        return Outcome.retry(f"HTTP {response.status_code}")

    def on_gone(self, target: Target, reason: str) -> bool:
        """Called after a :meth:`Outcome.gone` verdict. Return True to pause the whole sink
        (the default); a fan-out sink drops just that target and returns False."""
        return True

    def sample_event(self, event_name: str) -> dict[str, Any] | None:
        """Optional realistic ``data`` for ``send-test``; None uses the catalogue's sample."""
        return None


@dataclasses.dataclass(frozen=True)
class SinkType:
    """A kind of sink a plugin provides.

    ``options_schema`` validates the type's own options in a ``[[sinks]]`` table; the
    common keys (name, type, events, enabled, secret, secrets, retry_schedule,
    max_in_flight, timeout, failure_threshold, rate_limit) are validated by the core and
    must not be redeclared. ``default_rate_limit`` (deliveries per second per target,
    None = unlimited) applies when a sink of this type does not set ``rate_limit``.
    """

    name: str
    options_schema: type[marshmallow.Schema]
    factory: Callable[[str, Mapping[str, Any], SinkContext], Sink]
    description: str = ""
    default_rate_limit: float | None = None
    plugin: str = ""
    """Set by the core: the plugin that registered it."""
