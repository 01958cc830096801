"""``POST /api/webhooks/receive``: the guide's incoming webhook, as its own WSGI application.

Mounted beside the Flask app (``werkzeug``'s DispatcherMiddleware, see
:func:`gateway.web.app.create_app`), so a ticket create costs the gateway's own work and
not Flask's request machinery. The contract is the guide's, checked in this order:
method (405) -> media type (415) -> body size (413) -> signature over the raw bytes (401)
-> JSON (400) -> event name (400) -> schema (422, one message list per dotted path) ->
Idempotency-Key (400) -> one atomic write (201), or 200 with the original ticket when the
Idempotency-Key / webhook-id was seen within ``idempotency_ttl`` with the same body (422
``idempotency_key_reused`` with another body); 503 when Redis is down
(``storage_unavailable``) or, with ``durability = "replicated"``, when the replicas did not
confirm the write in time (``replication_timeout``).

Being outside Flask, app-wide Flask hooks (``before_request``...) do not see this
endpoint; the request middleware (timing, access line, metrics) and ``trusted_proxies``
wrap it like every other.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import redis
from werkzeug.datastructures import EnvironHeaders
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wsgi import get_input_stream

from gateway import signing
from gateway.errors import (
    ApiError,
    http_error,
    internal_error,
    too_large,
    too_many_attempts,
)
from gateway.publish.schemas import ReceiveBody, TicketCreateData
from gateway.publish.tickets import body_digest, create_ticket
from gateway.storage.throttle import client_group, signature_throttle
from gateway.web.bodies import NOT_JSON, idempotency_key, is_json, load_or_422, parse_json
from gateway.web.instrumentation import ROUTE_KEY
from gateway.web.storage_errors import storage_error

if TYPE_CHECKING:  # pragma: no cover, no mutate (imports for annotations only)
    from gateway.runtime import Runtime

log = logging.getLogger("gateway.web")

PATH = "/api/webhooks/receive"
MAX_LOCKED_REMEMBERED = 10_000
NOT_GUESSES = frozenset({"signature_missing", "unsigned_not_allowed"})
"""401s that are not a wrong signature (none was sent), so the throttle does not count them."""
RECEIVE_BODY = ReceiveBody()
TICKET_DATA = TicketCreateData()
INCOMING_EVENTS = ("ticket.create",)
StartResponse = Callable[..., Any]


def verify_request_signature(body: bytes, headers: Any, secrets: Sequence[str], tolerance: int) -> str | None:
    """Accept the guide's X-Webhook-Signature, or Standard Webhooks headers, made with any of
    ``secrets`` (the current receive secret, and during a rotation's overlap the previous
    one); else 401. Returns the signed ``webhook-id`` of a Standard Webhooks request (None
    for X-Webhook-Signature, which signs no id)."""
    hex_header = headers.get("X-Webhook-Signature")
    if hex_header is not None:
        if not signing.verify_hex_signature(body, hex_header, secrets):
            raise ApiError(401, "signature_invalid",
                           "X-Webhook-Signature does not match the body: sign the exact bytes you send with "
                           "HMAC-SHA256 and the shared secret, hex-encoded.")
        return None
    if headers.get("webhook-signature") is not None:
        try:
            signing.verify_standard(body, headers, secrets, tolerance)
        except signing.StandardVerifyError as exc:
            raise ApiError(401, exc.code, str(exc)) from None
        return str(headers.get("webhook-id"))
    raise ApiError(401, "signature_missing", "A webhook secret is configured: send X-Webhook-Signature "
                   "(hex HMAC-SHA256 of the body) or Standard Webhooks headers.")


UNSIGNED_REFUSED = ("No receive secret is set, and unsigned webhooks are accepted only from the gateway's own "
                    "machine: set gateway.secret (or POST /api/receive-secret/rotate) and sign the request, "
                    "or set gateway.allow_unsigned = true.")


def is_loopback(address: str | None) -> bool:
    """True for a loopback address (``127.0.0.0/8``, ``::1``, IPv4-mapped ``::ffff:127.x``)."""
    try:
        parsed = ipaddress.ip_address((address or "").split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(parsed, "ipv4_mapped", None)
    return bool((mapped or parsed).is_loopback)


def accept(body: bytes, headers: Any, secrets: Sequence[str], tolerance: int) -> tuple[dict[str, Any], str | None]:
    """Every check after the media type, in the documented order: signature (401; none when
    ``secrets`` is empty), JSON (400), event name (400), schema (422), Idempotency-Key (400).
    Returns the validated ticket data and the idempotency key; raises :class:`ApiError`.

    A signed ``webhook-id`` is the idempotency key, whatever ``Idempotency-Key`` says: the
    header is not signed, so a captured request replayed with a fresh one is still the
    same message (the original ticket, not a new one)."""
    signed_id = verify_request_signature(body, headers, secrets, tolerance) if secrets else None
    doc = parse_json(body)
    if not isinstance(doc, dict):
        raise ApiError(400, "malformed_json", 'The body must be a JSON object: {"event": ..., "data": {...}}.')
    envelope = load_or_422(RECEIVE_BODY, doc)
    if envelope["event"] not in INCOMING_EVENTS:
        raise ApiError(400, "unknown_event", f"Unknown event {envelope['event'][:100]!r}; "
                       f"accepted: {', '.join(INCOMING_EVENTS)}.", {"event": ["Unknown event."]})
    data = load_or_422(TICKET_DATA, envelope["data"], prefix="data")
    return data, idempotency_key(headers, signed_id)


class ReceiveApp:
    """The WSGI application answering ``POST /api/webhooks/receive`` for one runtime."""

    def __init__(self, runtime: Runtime, ensure_ascii: bool = True) -> None:
        self.runtime = runtime
        self.ensure_ascii = ensure_ascii
        # Client groups locked out for wrong signatures, and when that ends (time.monotonic()):
        # learnt from this process's own failure counts, so a signed request that passes
        # costs no Redis read for the throttle (each process lets through at most one more
        # wrong guess after the shared count reached the limit).
        self._locked: dict[str, float] = {}

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            published = self._receive(environ)
        except ApiError as error:
            return self._answer(start_response, error.status, error.body(), error.headers.items())
        except HTTPException as error:  # from reading the body: 413, a client gone mid-body (400)
            return self._answer(start_response, *_http(error, self.runtime.settings.max_body_bytes))
        except redis.RedisError as exc:  # replicas not confirming included (ReplicationTimeout)
            down = storage_error(exc)
            return self._answer(start_response, down.status, down.body(), down.headers.items())
        except Exception:  # a bug: logged with its traceback, answered without
            log.exception("unhandled error")
            bug = internal_error()
            return self._answer(start_response, bug.status, bug.body(), ())
        ticket = published.ticket
        if published.replayed:
            return self._answer(start_response, 200, {"ticket": ticket}, [("Idempotent-Replayed", "true")])
        return self._answer(start_response, 201, {"ticket": ticket}, [("Location", f"/api/tickets/{ticket['id']}")])

    def _receive(self, environ: dict[str, Any]) -> Any:
        if environ.get("PATH_INFO", "") not in ("", "/"):
            raise http_error(404, "The requested URL was not found on the server.")
        if environ.get("REQUEST_METHOD") != "POST":
            raise http_error(405, "The method is not allowed for the requested URL.", {"Allow": "POST"})
        # Labelled by route only once it matched, as Flask does (a wrong method is "unmatched").
        environ[ROUTE_KEY] = PATH
        if not is_json(environ.get("CONTENT_TYPE")):
            raise ApiError(415, "unsupported_media_type", NOT_JSON)
        if self._locked:  # an empty dict costs nothing; the address is parsed only when needed
            self._refuse_if_locked(environ.get("REMOTE_ADDR"))
        runtime = self.runtime
        settings = runtime.settings
        body = _read_body(environ, settings.max_body_bytes)
        headers = EnvironHeaders(environ)
        tolerance = settings.signature_tolerance
        address = environ.get("REMOTE_ADDR")

        def judge(secrets: Sequence[str]) -> tuple[dict[str, Any], str | None]:
            # No secret: a try-out on this machine, unless the operator opened it on purpose.
            if not secrets and not (settings.allow_unsigned or is_loopback(address)):
                raise ApiError(401, "unsigned_not_allowed", UNSIGNED_REFUSED)
            return accept(body, headers, secrets, tolerance)

        view = runtime.integrations
        try:
            try:
                data, key = judge(view.receive_secrets())
            except ApiError as error:
                # Signed with a secret this process has not seen yet (rotated a moment ago in
                # another process)? One GET says; only refused requests pay for it.
                if error.status != 401 or runtime.refresh() is view:
                    raise
                data, key = judge(runtime.integrations.receive_secrets())
        except ApiError as error:
            if error.status == 401 and error.code not in NOT_GUESSES:
                self._count_failure(address)
            raise

        def recheck() -> None:
            # The integrations changed while this request was being stored: judge its
            # signature again by the receive secret as it is now.
            if runtime.integrations.receive_secrets():
                verify_request_signature(body, headers, runtime.integrations.receive_secrets(), tolerance)

        return create_ticket(runtime, data, key, recheck=recheck, body_hash=body_digest(body) if key else "")

    def _refuse_if_locked(self, address: str | None) -> None:
        """429 for a client group this process knows to be locked out for wrong signatures."""
        group = client_group(address)
        until = self._locked.get(group)
        if until is None:
            return
        left = until - time.monotonic()
        if left <= 0:
            del self._locked[group]
            return
        raise too_many_attempts(math.ceil(left), "signatures")

    def _count_failure(self, address: str | None) -> None:
        """Count a wrong signature of the client's group (one round trip, on refused requests
        only); 429 instead of the 401 once the group was already at the limit."""
        standing = signature_throttle(self.runtime.redis, self.runtime.keys, address).failed()
        if not standing.locked:
            return
        if len(self._locked) >= MAX_LOCKED_REMEMBERED:  # bounded: forget, the Redis count remains
            self._locked.clear()
        self._locked[client_group(address)] = time.monotonic() + standing.seconds_left
        if standing.failures > standing.limit:
            raise too_many_attempts(standing.seconds_left, "signatures")

    def _answer(self, start_response: StartResponse, status: int, doc: Any,
                headers: Iterable[tuple[str, str]]) -> Iterable[bytes]:
        # As Flask's jsonify writes it (compact, the app's ensure_ascii, a final newline).
        payload = (json.dumps(doc, separators=(",", ":"), ensure_ascii=self.ensure_ascii) + "\n").encode("utf-8")
        # The status line as werkzeug (and so Flask) writes it.
        start_response(f"{status} {HTTP_STATUS_CODES.get(status, 'UNKNOWN').upper()}", [
            ("Content-Type", "application/json"), ("Content-Length", str(len(payload))), *headers])
        return [payload]


def _read_body(environ: dict[str, Any], limit: int) -> bytes:
    """The whole body, at most ``limit`` bytes: 413 for a Content-Length over the limit (raised
    by werkzeug) and for a chunked body that goes past it; 400 for a body cut short."""
    stream = get_input_stream(environ, max_content_length=limit)
    body = stream.read()
    # A chunked body is cut at the limit without an error: one that reaches the limit may
    # have gone on, so it is refused (as gateway.web.bodies.read_body does for Flask).
    if not environ.get("CONTENT_LENGTH") and len(body) >= limit:
        raise RequestEntityTooLarge()
    return body


def _http(error: HTTPException, limit: int) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
    status = error.code or 400
    api = too_large(limit) if status == 413 else http_error(status, error.description or error.name)
    return status, api.body(), []


def receive_operation() -> None:
    """Create a ticket: the Webhooks Guide's incoming webhook.
    ---
    post:
      tags: [tickets]
      summary: Create a ticket (the guide's incoming webhook)
      description: >-
        When `gateway.secret` is set the request must carry `X-Webhook-Signature` (hex
        HMAC-SHA256 of the raw body, keyed with the secret) or Standard Webhooks headers
        (`webhook-id`, `webhook-timestamp`, `webhook-signature`). An `Idempotency-Key` (else
        `webhook-id`) seen within `idempotency_ttl` with the same body returns the original
        ticket with 200 and `Idempotent-Replayed: true`; nothing new is stored or published.
        The same key with a different body is refused: 422 `idempotency_key_reused`, with
        nothing of the original. A signed `webhook-id` (Standard Webhooks) is the key
        whatever `Idempotency-Key` says.
      security: [{}, {webhookSignature: []}]
      parameters:
        - name: Idempotency-Key
          in: header
          required: false
          schema: {type: string, minLength: 1, maxLength: 255}
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              required: [event, data]
              additionalProperties: false
              properties:
                event: {type: string, enum: [ticket.create]}
                data: TicketCreateData
      responses:
        201:
          description: The ticket, its ticket.created event and one delivery per subscribed sink are stored.
          headers:
            Location: {description: The ticket's URL in the admin API., schema: {type: string}}
          content:
            application/json:
              schema: {type: object, required: [ticket], properties: {ticket: TicketSchema}}
        200:
          description: The Idempotency-Key was seen before; the original ticket, nothing new stored.
          headers:
            Idempotent-Replayed: {schema: {type: string, enum: ["true"]}}
          content:
            application/json:
              schema: {type: object, required: [ticket], properties: {ticket: TicketSchema}}
        400: BadRequest
        401: Unauthorized
        413: PayloadTooLarge
        415: UnsupportedMediaType
        422: ValidationFailed
        503: StorageUnavailable
    """


