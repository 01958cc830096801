"""What the core does on plugins' behalf, behind :class:`gateway.sinks.SinkContext`'s
methods: the plugin API sits above none of the layers that do it, so every process that
builds a runtime binds them to its context here (:func:`provide`): the web app, the CLI
and the test fixtures. It also installs the system event reporter the lower layers report
through (:attr:`gateway.runtime.Runtime.reporter`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from marshmallow import Schema, ValidationError

from gateway.delivery.ssrf import destination_refusal
from gateway.errors import ApiError
from gateway.publish import system_events
from gateway.publish.schemas import TicketCreateData
from gateway.publish.tickets import create_ticket, document_digest
from gateway.sinks import CreatedTicket, DestinationRefused
from gateway.storage.throttle import credential_throttle

if TYPE_CHECKING:  # pragma: no cover
    from gateway.runtime import Runtime

T = TypeVar("T")
TICKET_DATA = TicketCreateData()
MAX_IDEMPOTENCY_KEY = 255
MAX_SOURCE = 32


def source_key(source: str, key: str) -> str:
    """A plugin's idempotency key, apart from every other source's and from the receive
    endpoint's: NUL cannot occur in an HTTP header, so no Idempotency-Key spells this."""
    return f"\x00{source}\x00{key}"


class RuntimeServices:
    """:class:`gateway.sinks.CoreServices` for one runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def check_destination(self, url: str) -> None:
        """The SSRF guard's policy, applied to a URL before it is stored."""
        if self.runtime.settings.delivery.allow_private_networks:
            return
        refusal = destination_refusal(url)
        if refusal is not None:
            raise DestinationRefused(refusal)

    def create_ticket(self, fields: Mapping[str, Any], source: str, idempotency_key: str | None) -> CreatedTicket:
        """The receive endpoint's path (:func:`gateway.publish.tickets.create_ticket`) for
        fields a plugin's endpoint received; errors as :class:`ApiError`."""
        if not source or len(source) > MAX_SOURCE:
            raise ValueError(f"source must be 1 to {MAX_SOURCE} characters, e.g. the plugin's name")
        if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
            raise ApiError(400, "idempotency_key_invalid",
                           f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters.")
        try:
            data = TICKET_DATA.load(fields)
        except ValidationError as exc:
            raise ApiError(422, "validation_failed", "The ticket has invalid fields.", exc.messages_dict) from None
        key = source_key(source, idempotency_key) if idempotency_key is not None else None
        # What the plugin was sent, in one canonical form: the same fields in another order
        # or spacing are the same request; other fields under the same key are refused.
        digest = document_digest(fields) if key else ""
        published = create_ticket(self.runtime, data, key, source, body_hash=digest)
        return CreatedTicket(ticket=published.ticket or {}, replayed=published.replayed)

    def ticket_schema(self) -> Schema:
        """A fresh :class:`TicketCreateData`."""
        return TicketCreateData()

    def check_credential(self, given: str, match: Callable[[str], T | None], address: str | None) -> T | None:
        """``match(given)`` behind the admin token's throttle (one count per address)."""
        throttle = credential_throttle(self.runtime.redis, self.runtime.keys, address)
        return throttle.check(given, match, "credentials")


def provide(runtime: Runtime) -> Runtime:
    """Bind the core's services to ``runtime``: the plugins' services behind its context, and
    the system events its engine and integration store report
    (:func:`gateway.publish.system_events.install`). Returns the runtime."""
    runtime.context.provide(RuntimeServices(runtime))
    return system_events.install(runtime)
