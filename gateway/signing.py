"""Signatures, both directions, always over raw bytes and compared in constant time.

Two schemes:

* The guide's: ``X-Webhook-Signature`` = lowercase hex HMAC-SHA256 of the exact body,
  keyed with the secret string's UTF-8 bytes (a ``sha256=`` prefix is accepted on input).
* Standard Webhooks (https://www.standardwebhooks.com): ``webhook-signature`` =
  space-separated ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``; the key is the
  base64-decoded secret when it starts with ``whsec_``, else the secret's UTF-8 bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence

HEX_PREFIX = "sha256="
WHSEC_PREFIX = "whsec_"


def hex_signature(body: bytes, secret: str) -> str:
    """The guide's X-Webhook-Signature value for ``body``."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify_hex_signature(body: bytes, header: str | None, secrets: Sequence[str]) -> bool:
    """True when ``header`` is the hex signature of ``body`` under any of ``secrets``."""
    if not header:
        return False
    value = header.strip()
    if value[: len(HEX_PREFIX)].lower() == HEX_PREFIX:
        value = value[len(HEX_PREFIX):]
    given = value.lower().encode("ascii", "replace")
    ok = False
    for secret in secrets:
        # No early exit: the time taken must not say which secret (if any) matched.
        ok |= hmac.compare_digest(given, hex_signature(body, secret).encode("ascii"))
    return ok


def standard_key(secret: str) -> bytes:
    """The HMAC key Standard Webhooks uses for ``secret``."""
    if secret.startswith(WHSEC_PREFIX):
        try:
            return base64.b64decode(secret[len(WHSEC_PREFIX):], validate=True)
        except (binascii.Error, ValueError):
            pass
    return secret.encode("utf-8")


def whsec_form(secret: str) -> str:
    """The ``whsec_`` form of a plain secret, for consumers using a Standard Webhooks
    library: ``whsec_`` + base64(UTF-8 bytes of the secret). Signing with either form
    gives the same signature."""
    if secret.startswith(WHSEC_PREFIX):
        return secret
    return WHSEC_PREFIX + base64.b64encode(secret.encode("utf-8")).decode("ascii")


def standard_signature(msg_id: str, timestamp: int | str, body: bytes, secrets: Sequence[str]) -> str:
    """The ``webhook-signature`` header value: one ``v1,<base64>`` entry per secret."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(standard_key(s), signed, hashlib.sha256).digest()).decode("ascii")
        for s in secrets
    )


def signature_headers(body: bytes, delivery_id: str, secrets: Sequence[str],
                      now: float | None = None) -> dict[str, str]:
    """All signature headers for an outgoing delivery: X-Webhook-Signature (first secret)
    plus webhook-id / webhook-timestamp / webhook-signature (every secret, for rotation)."""
    if not secrets:
        return {}
    timestamp = int(now if now is not None else time.time())
    return {
        "X-Webhook-Signature": hex_signature(body, secrets[0]),
        "webhook-id": delivery_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": standard_signature(delivery_id, timestamp, body, secrets),
    }


class StandardVerifyError(Exception):
    """Why a Standard Webhooks signature was refused. ``code`` is a stable error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def verify_standard(body: bytes, headers: Mapping[str, str], secrets: Sequence[str], tolerance: int,
                    now: float | None = None) -> None:
    """Check Standard Webhooks headers; raises :class:`StandardVerifyError` when they fail."""
    msg_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signature = headers.get("webhook-signature")
    if not msg_id or not timestamp or not signature:
        raise StandardVerifyError("signature_missing", "webhook-id, webhook-timestamp and webhook-signature "
                                  "are all required.")
    try:
        ts = int(timestamp)
    except ValueError:
        raise StandardVerifyError("timestamp_invalid", "webhook-timestamp must be Unix seconds.") from None
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance:
        raise StandardVerifyError("timestamp_out_of_tolerance",
                                  f"webhook-timestamp is more than {tolerance} seconds from the server's clock.")
    given = [part.split(",", 1)[1].encode() for part in signature.split() if part.startswith("v1,")]
    ok = False
    for secret in secrets:
        expected = standard_signature(msg_id, timestamp, body, [secret])[3:].encode()
        for candidate in given:
            ok |= hmac.compare_digest(candidate, expected)
    if not ok:
        raise StandardVerifyError("signature_invalid", "webhook-signature does not match the body.")
