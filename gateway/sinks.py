"""The public sink API: what a sink plugin implements and what the core hands it.

A sink plugin never does HTTP, signing, retries or logging itself. For one event it
*renders* a request and, once the core has sent it, *classifies* the response. The core
owns the mechanics (pooled HTTP, SSRF guard, timeouts, retries with jitter, Retry-After,
circuit breaker, delivery log), so every sink gets them right.

A plugin registers a :class:`SinkType` through the ``register_sink_types`` hook::

    from gateway import OutgoingRequest, Sink, SinkType, hookimpl, url_field

    class MyOptions(Schema):
        url = url_field(required=True)

    class MySink(Sink):
        def render(self, event, target, delivery):
            return OutgoingRequest(url=target.url, body=event.envelope_bytes(), sign=True,
                                   headers={"Content-Type": "application/json"})

    @hookimpl
    def register_sink_types(register):
        register(SinkType(name="mine", options_schema=MyOptions, factory=MySink))

``classify`` is optional: :meth:`Sink.classify` is the reference policy (2xx delivered,
410 gone, 408/425/429/5xx retried, any other answer given up).
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import flask
import marshmallow
from marshmallow import fields

from gateway.events import Catalog

if TYPE_CHECKING:  # pragma: no cover
    import redis

    from gateway.events import Event

T = TypeVar("T")


def url_field(**kwargs: Any) -> fields.URL:
    """A marshmallow field for an http(s) URL option. Hosts without a TLD (``localhost``,
    intranet names) are allowed: whether a destination may be reached is the SSRF guard's
    decision when it is sent to (``delivery.allow_private_networks``), not the schema's.
    Takes the keyword arguments of ``marshmallow.fields.URL`` (``required=True``...)."""
    return fields.URL(schemes={"http", "https"}, require_tld=False, **kwargs)


DEFAULT_USER_AGENT = "AI-Support-Autoresponder/1.0"
"""The product's ``User-Agent`` (the Webhooks Guide's header list): the core sends it with
every request whose sink sets none."""

RETRYABLE_STATUSES = frozenset({408, 425, 429})
"""The client-error statuses the reference policy retries: a timeout, "too early", and
"too many requests" mean "not now", not "never"."""


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
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


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
    """The four verdicts; build an :class:`Outcome` with its class methods rather than
    from these."""

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
        """Try again on the sink's retry schedule. The core honours the response's
        ``Retry-After`` (seconds or an HTTP date, capped at ``delivery.max_retry_after``);
        ``not_before`` (timezone-aware) replaces it when the destination says when to come
        back some other way."""
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


class RenderFailed(Exception):
    """Raise from :meth:`Sink.render` when the sink's *configuration* cannot make a request
    for this event (its template fails on it, say): the delivery fails at once, with the
    error ``code`` and ``message`` (say what to fix), without retries, and can be replayed
    once the configuration is fixed. Nothing is said against the destination (no circuit).
    Any other exception from ``render`` is a bug in the sink (``render_error``).

    .. versionadded:: 0.2"""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def describe(self) -> str:
        """The message as the delivery log shows it."""
        return self.message


class DestinationRefused(ValueError):
    """A URL the gateway would refuse to deliver to (:meth:`SinkContext.check_destination`);
    ``str()`` of it says why and what setting allows it, for the person who gave the URL."""


@dataclasses.dataclass(frozen=True)
class CreatedTicket:
    """What :meth:`SinkContext.create_ticket` did: the stored ``ticket`` (``id``,
    ``ticket_number``, ``subject``, ... as ``GET /api/tickets/<id>`` shows it) and whether
    it was ``replayed``: the idempotency key had created it before, nothing new was stored
    or published."""

    ticket: Mapping[str, Any]
    replayed: bool = False


class CoreServices(Protocol):
    """What the core does on a plugin's behalf, behind :class:`SinkContext`'s methods. The
    plugin API cannot import the layers that do it (it sits above none of them), so the
    process that builds the context provides them (:meth:`SinkContext.provide`)."""

    def check_destination(self, url: str) -> None:
        """Raise :class:`DestinationRefused` when deliveries to ``url`` would be refused."""

    def create_ticket(self, fields: Mapping[str, Any], source: str, idempotency_key: str | None) -> CreatedTicket:
        """Create a ticket through the receive endpoint's path."""

    def ticket_schema(self) -> marshmallow.Schema:
        """The schema a new ticket's fields are validated with."""

    def check_credential(self, given: str, match: Callable[[str], T | None], address: str | None) -> T | None:
        """``match(given)`` behind the credential throttle of ``address``."""


class SinkContext:
    """What the core hands a plugin: every sink gets it as ``self.context``, and the
    ``event_published`` hook as ``context``. One per process; sinks must not do HTTP.

    * ``redis``: a ``redis.Redis`` client on the gateway's Redis, for a plugin's own state;
    * ``key_prefix`` and :meth:`key`: the gateway's key namespace (``gw:``);
    * ``public_url``: the gateway's ``public_url`` (for links), or None;
    * ``event_types``: the event catalogue: ``event_types.get(name)`` is the
      :class:`~gateway.EventType` (``title``, ``description``, ``sample``...), ``names()``
      every name, and ``name in event_types`` asks whether it exists;
    * :meth:`sinks`: the sinks this process runs, for a plugin's endpoints and hooks;
    * :meth:`check_destination`: the SSRF policy, for a URL a plugin is about to store;
    * :meth:`create_ticket` and :meth:`ticket_schema`: tickets from a plugin's endpoint,
      through the same path as the receive endpoint;
    * :meth:`check_credential`: a credential of the plugin's own (an API key), checked
      behind the gateway's guessing throttle.
    """

    def __init__(self, redis: redis.Redis, key_prefix: str, public_url: str | None = None, *,
                 event_types: Catalog | None = None, sinks: Mapping[str, Sink] | None = None) -> None:
        self.redis = redis
        self.key_prefix = key_prefix
        self.public_url = public_url
        self.event_types = event_types if event_types is not None else Catalog()
        # The runtime's own mapping, filled (and, for sinks managed at runtime, changed)
        # after the context is made: read it at each call, never copy it.
        self._sinks: Mapping[str, Sink] = sinks if sinks is not None else {}
        self._core: CoreServices | None = None

    def provide(self, core: CoreServices) -> None:
        """For the core, not plugins: bind the services behind this context's methods
        (the gateway's web app, CLI, worker and test fixtures do)."""
        self._core = core

    def _services(self) -> CoreServices:
        if self._core is None:
            raise RuntimeError("this SinkContext has no core services: use the one the gateway hands you "
                               "(sink.context, current_context(), the event_published hook's context)")
        return self._core

    def key(self, *parts: str) -> str:
        """A Redis key in the gateway's namespace: ``context.key("acme", "cursor")`` ->
        ``gw:acme:cursor``. Keep a plugin's keys under its own name."""
        return self.key_prefix + ":".join(parts)

    def sinks(self, type: str | None = None) -> list[Sink]:
        """The sinks this process runs, in configuration order, disabled ones included
        (``sink.options["enabled"]``); only those of the sink type ``type`` when given.
        A plugin's endpoints and hooks find their sinks here rather than in a registry of
        their own."""
        return [sink for sink in self._sinks.values() if type is None or sink.options.get("type") == type]

    def check_destination(self, url: str) -> None:
        """Raise :class:`DestinationRefused` when the gateway would refuse to deliver to
        ``url``: not http(s), or an address (or a host name resolving only to addresses)
        that the SSRF guard refuses: loopback, private, link-local, ... (unless
        ``delivery.allow_private_networks``). Call it before storing a URL someone gave you
        (a subscription's target): they hear "no" now, with the reason, instead of finding
        failed deliveries later. A name that does not resolve yet passes; the guard still
        judges the address at every delivery."""
        self._services().check_destination(url)

    def create_ticket(self, fields: Mapping[str, Any], *, source: str,
                      idempotency_key: str | None = None) -> CreatedTicket:
        """Create a ticket as ``POST /api/webhooks/receive`` does with ``{"event":
        "ticket.create", "data": fields}``: the same validation, ``TKT-<year>-<n>`` number,
        storage and ``ticket.created`` event with its deliveries, in one write. ``source``
        says who created it (``"zapier"``; the ticket's ``source``). An
        ``idempotency_key`` seen before from the same source (within
        ``gateway.idempotency_ttl``) with the same ``fields`` creates nothing and returns
        the first ticket with ``replayed=True``; with other fields it is refused (422
        ``idempotency_key_reused``, nothing of the first ticket shown); keys of different
        sources never collide.

        Raises :class:`ApiError`, ready for an endpoint to let through: 422
        ``validation_failed`` with one message list per field, 422
        ``idempotency_key_reused``, 400
        ``idempotency_key_invalid`` (empty, or over 255 characters), 503
        ``storage_unavailable`` when Redis is down (nothing was stored)."""
        return self._services().create_ticket(fields, source, idempotency_key)

    def check_credential(self, given: str, match: Callable[[str], T | None]) -> T | None:
        """Check a credential a client of a plugin's endpoint sent (``X-API-Key``...) behind
        the throttle that guards the admin token, so it cannot be guessed at speed::

            access = current_context().check_credential(header, lambda key: my_keys.get(key))
            if access is None:
                raise ApiError(401, "unauthorized", "...")

        ``match(given)`` says whom the credential belongs to, or None for a wrong one (compare
        in constant time: ``hmac.compare_digest``). A None counts as a failed attempt of the
        client's address (an IPv6 client's /64); wrong admin tokens and every plugin's wrong
        credentials count together. Once an address has had 10 in 15 minutes, this raises
        :class:`ApiError` 429 ``too_many_attempts`` (with ``Retry-After``) without calling
        ``match``, until the window ends; a right credential clears the count. Call it only
        with a credential the client sent (a missing one is not a guess). Works in a request
        served by the gateway's web app (it reads the client's address from it).

        .. versionadded:: 0.2"""
        return self._services().check_credential(given, match, flask.request.remote_addr)

    def ticket_schema(self) -> marshmallow.Schema:
        """The marshmallow schema :meth:`create_ticket` validates ``fields`` with (a fresh
        instance), to describe the fields to someone building a form: which are required,
        their ``validate.OneOf`` choices and ``load_default``, and ``metadata`` ``label``
        and ``description``."""
        return self._services().ticket_schema()


CONTEXT_EXTENSION = "gateway.context"
"""Where the web app keeps its :class:`SinkContext` (``app.extensions``)."""


def current_context() -> SinkContext:
    """The :class:`SinkContext` of the gateway app serving the current request: how a view
    of a plugin's blueprint (``register_blueprints``) reaches Redis, the event catalogue and
    the configured sinks. RuntimeError outside a request of the gateway's web app."""
    try:
        context = flask.current_app.extensions.get(CONTEXT_EXTENSION)
    except RuntimeError:  # Flask's "working outside of application context"
        context = None
    if not isinstance(context, SinkContext):
        raise RuntimeError("current_context() works in a request served by the gateway's web app "
                           "(a view of a blueprint registered with register_blueprints)")
    return context


class Sink:
    """One configured sink. Subclass it and implement :meth:`render`; override
    :meth:`classify` only where the destination's answers need more than the reference policy.

    The core builds one per process with ``factory(name, options, context)``: ``name`` is
    the sink's configured name, ``options`` its options as loaded by the sink type's schema
    (common options such as ``type``, ``events``, ``enabled`` and ``secret`` included),
    ``context`` the process's :class:`SinkContext`.
    """

    def __init__(self, name: str, options: Mapping[str, Any], context: SinkContext) -> None:
        self.name = name
        self.options = options
        self.context = context

    def targets(self, event: Event) -> list[Target]:
        """Where this event goes. Default: one target, the sink's ``url`` option. A fan-out
        sink returns one per destination (each its own delivery); it runs on the publishing
        request's path, so read from ``self.context.redis`` at most once."""
        return [Target(key="default", url=self.options["url"])]

    def current_target(self, target: Target) -> Target:
        """``target`` (stored with a delivery when it was created) as it should be attempted
        now: the core calls it before every attempt, so a delivery made before an admin
        edited the sink goes where the sink points now. Default: the ``default`` target
        follows the ``url`` option; any other target is kept as it was."""
        url = self.options.get("url")
        if target.key == "default" and isinstance(url, str) and url != target.url:
            return dataclasses.replace(target, url=url)
        return target

    def render(self, event: Event, target: Target, delivery: DeliveryInfo) -> OutgoingRequest:
        """Build the request for one event and target. An exception here is a bug in the
        sink: the delivery fails at once with the error ``render_error`` (replay it once
        the sink is fixed)."""
        raise NotImplementedError

    def classify(self, response: Response, target: Target) -> Outcome:
        """Judge a response: the reference policy, which the bundled sinks and the
        ``gateway new-plugin`` template follow.

        * 2xx: delivered;
        * 410 Gone: gone (the destination says it no longer exists; see :meth:`on_gone`);
        * 408, 425, 429 and 5xx: retried on the sink's schedule, after ``Retry-After`` when
          the answer has one: time may fix these (a busy or restarting receiver);
        * anything else (other 4xx, 3xx: redirects are never followed): given up, because
          the same request would get the same answer; the delivery is failed and can be
          replayed once the cause (a URL, a credential, the payload) is fixed.
        """
        status = response.status_code
        if response.ok:
            return Outcome.delivered()
        if status == 410:
            return Outcome.gone("HTTP 410 Gone: the destination says it no longer exists; fix the sink's url, "
                                "then resume the sink")
        if status >= 500 or status in RETRYABLE_STATUSES:
            return Outcome.retry(f"HTTP {status}")
        if 300 <= status < 400:
            return Outcome.give_up(f"HTTP {status}: redirect not followed; set the URL to the final address")
        return Outcome.give_up(f"HTTP {status}")

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
    max_in_flight, timeout, failure_threshold, rate_limit, ordering) are validated by the
    core and must not be redeclared. ``factory(name, options, context)`` builds a
    :class:`Sink` (the class itself usually). ``default_rate_limit`` (deliveries per second:
    per target for a ``fan_out`` type, else for the sink; None = unlimited) applies when a
    sink of this type does not set ``rate_limit``.
    """

    name: str
    options_schema: type[marshmallow.Schema]
    factory: Callable[[str, Mapping[str, Any], SinkContext], Sink]
    description: str = ""
    default_rate_limit: float | None = None
    secret_options: frozenset[str] = frozenset()
    """Option names whose values are secret (a Slack webhook URL, API keys, headers that
    carry credentials): never shown in the API, the CLI, the console, logs or the delivery
    log. ``secret`` and ``secrets`` always are."""
    signs: bool = False
    """True when the sink asks the core to sign its requests (``OutgoingRequest(sign=True)``):
    a sink of this type created through the sinks API without a ``secret`` gets one
    generated, shown once, and can have it rotated."""
    fan_out: bool = False
    """True for a sink whose :meth:`Sink.targets` returns several independent destinations
    (Zapier: one per subscription). The core then keeps the circuit breaker, the in-flight
    cap (``max_in_flight``) and the rate limit per target, so one dead destination never
    holds up the others. False (the default): they apply to the sink as a whole.

    .. versionadded:: 0.2"""
    plugin: str = ""
    """Set by the core: the plugin that registered it."""
