"""``POST /api/webhooks/receive``: the guide's incoming webhook.

Order of checks: body size (Flask, 413) -> media type (415) -> signature over the raw
bytes (401) -> JSON (400) -> event name (400) -> schema (422) -> one atomic write (201), or
200 with the original ticket when the Idempotency-Key / webhook-id was seen within 24 h.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, current_app, jsonify, request
from marshmallow import ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from gateway import signing
from gateway.errors import ApiError
from gateway.events import Event, iso_z, utc_now
from gateway.hookspecs import hookimpl
from gateway.schemas import ReceiveBody, TicketCreateData

if TYPE_CHECKING:  # pragma: no cover
    from gateway.bus import Published
    from gateway.runtime import Runtime

bp = Blueprint("receive", __name__)
RECEIVE_BODY = ReceiveBody()
TICKET_DATA = TicketCreateData()
INCOMING_EVENTS = ("ticket.create",)
MAX_IDEMPOTENCY_KEY = 255


def is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def verify_request_signature(body: bytes, headers: Any, secret: str, tolerance: int) -> None:
    """Accept the guide's X-Webhook-Signature, or Standard Webhooks headers; else 401."""
    hex_header = headers.get("X-Webhook-Signature")
    if hex_header is not None:
        if not signing.verify_hex_signature(body, hex_header, [secret]):
            raise ApiError(401, "signature_invalid",
                           "X-Webhook-Signature does not match the body: sign the exact bytes you send with "
                           "HMAC-SHA256 and the shared secret, hex-encoded.")
        return
    if headers.get("webhook-signature") is not None:
        try:
            signing.verify_standard(body, headers, [secret], tolerance)
        except signing.StandardVerifyError as exc:
            raise ApiError(401, exc.code, str(exc)) from None
        return
    raise ApiError(401, "signature_missing", "A webhook secret is configured: send X-Webhook-Signature "
                   "(hex HMAC-SHA256 of the body) or Standard Webhooks headers.")


def read_body() -> bytes:
    """The raw request body; 413 when it is over MAX_CONTENT_LENGTH, chunked bodies included."""
    body = request.get_data(cache=False)
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    # Without a Content-Length (chunked), werkzeug stops reading at the limit and returns what
    # it has, silently: a body that reaches the limit may have gone on, so it is refused.
    if request.content_length is None and limit is not None and len(body) >= limit:
        raise RequestEntityTooLarge()
    return body


def parse_json(body: bytes) -> Any:
    """Decode a JSON body; 400 with a stable code when it is not valid JSON."""
    try:
        # JSON on the wire is UTF-8 (RFC 8259); json.loads(bytes) would also guess UTF-16/32.
        text = body.decode("utf-8-sig")
        doc = json.loads(text)
    except UnicodeDecodeError:
        raise ApiError(400, "malformed_json", "The body is not valid UTF-8.") from None
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "malformed_json", f"The body is not valid JSON: {exc}"[:300]) from None
    # json.loads turns an unpaired "\ud800" escape into a lone surrogate, which cannot be
    # encoded for Redis later (a 500); only such escapes can produce one, so check only then.
    if "\\ud" in text.lower():
        try:
            json.dumps(doc, ensure_ascii=False).encode("utf-8")
        except (UnicodeEncodeError, RecursionError):
            raise ApiError(400, "malformed_json", "The body has a \\u escape of an unpaired UTF-16 "
                           "surrogate, which is not a character.") from None
    return doc


def load_or_422(schema: Any, data: Any, prefix: str = "") -> dict[str, Any]:
    """Validate with ``schema``; 422 with one message list per field on failure."""
    try:
        return schema.load(data)
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        fields = {f"{prefix}{k}": v for k, v in messages.items()}
        raise ApiError(422, "validation_failed", "The request body has invalid fields.", fields) from None


def idempotency_key(headers: Any) -> str | None:
    """The Idempotency-Key header, else Standard Webhooks' webhook-id."""
    key = headers.get("Idempotency-Key") or headers.get("webhook-id")
    if key is not None and not (0 < len(key) <= MAX_IDEMPOTENCY_KEY):
        raise ApiError(400, "idempotency_key_invalid",
                       f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters.")
    return key


def accept(body: bytes, headers: Any, secret: str | None, tolerance: int) -> tuple[dict[str, Any], str | None]:
    """Every check after the media type, in the documented order: signature (401), JSON (400),
    event name (400), schema (422), Idempotency-Key (400). Returns the validated ticket
    data and the idempotency key; raises :class:`ApiError`."""
    if secret is not None:
        verify_request_signature(body, headers, secret, tolerance)
    doc = parse_json(body)
    if not isinstance(doc, dict):
        raise ApiError(400, "malformed_json", 'The body must be a JSON object: {"event": ..., "data": {...}}.')
    envelope = load_or_422(RECEIVE_BODY, doc)
    if envelope["event"] not in INCOMING_EVENTS:
        raise ApiError(400, "unknown_event", f"Unknown event {envelope['event'][:100]!r}; "
                       f"accepted: {', '.join(INCOMING_EVENTS)}.", {"event": ["Unknown event."]})
    data = load_or_422(TICKET_DATA, envelope["data"], prefix="data.")
    return data, idempotency_key(headers)


def new_ticket(data: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """A ticket from validated data; its ticket_number is assigned by the write."""
    from gateway.bus import TICKET_NUMBER_PLACEHOLDER

    return {
        "id": str(uuid.uuid4()),
        "ticket_number": TICKET_NUMBER_PLACEHOLDER,
        "subject": data["subject"],
        "message": data["message"],
        "status": "new",
        "priority": data["priority"],
        "category": data["category"],
        "customer_email": data["customer_email"],
        "customer_name": data["customer_name"],
        "source": "webhook",
        "created_at": iso_z(now),
    }


def create_ticket(runtime: Runtime, data: Mapping[str, Any], key: str | None) -> Published:
    """Store a new ticket with its ticket.created event and deliveries, in one write (or
    find the ticket an earlier request with ``key`` created). Raises redis.RedisError."""
    now = utc_now()
    ticket = new_ticket(data, now)
    event = Event.new("ticket.created", {"ticket": ticket}, timestamp=ticket["created_at"])
    return runtime.publisher.publish(event, ticket=ticket, idempotency_key=key, now=now)


@bp.post("/api/webhooks/receive")
def receive() -> tuple[Response, int] | Response:
    """Create a ticket: the Webhooks Guide's incoming webhook.
    ---
    post:
      tags: [tickets]
      summary: Create a ticket (the guide's incoming webhook)
      description: >-
        When `gateway.secret` is set the request must carry `X-Webhook-Signature` (hex
        HMAC-SHA256 of the raw body, keyed with the secret) or Standard Webhooks headers
        (`webhook-id`, `webhook-timestamp`, `webhook-signature`). An `Idempotency-Key` (else
        `webhook-id`) seen within `idempotency_ttl` returns the original ticket with 200 and
        `Idempotent-Replayed: true`; nothing new is stored or published.
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
    runtime = current_app.extensions["gateway"]
    settings = runtime.settings
    if not is_json(request.content_type):
        raise ApiError(415, "unsupported_media_type", "Send the body as JSON with Content-Type: application/json.")
    body = read_body()
    data, key = accept(body, request.headers, settings.secret, settings.signature_tolerance)
    published = create_ticket(runtime, data, key)
    response = jsonify({"ticket": published.ticket})
    if published.replayed:
        response.headers["Idempotent-Replayed"] = "true"
        return response, 200
    response.headers["Location"] = f"/api/tickets/{published.ticket['id']}"
    return response, 201


@hookimpl
def register_blueprints(register: Callable[[Blueprint], None]) -> None:
    register(bp)
