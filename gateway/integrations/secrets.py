"""Secrets the gateway generates: shown once, never stored anywhere but Redis."""

from __future__ import annotations

import base64
import os

from gateway.signing import WHSEC_PREFIX

SECRET_BYTES = 24


def new_secret() -> str:
    """``whsec_`` + base64 of 24 random bytes: a Standard Webhooks library takes it as it is
    (it signs with the decoded bytes), and the guide's verifiers take the whole string as
    their HMAC key, which is what X-Webhook-Signature is signed with."""
    return WHSEC_PREFIX + base64.b64encode(os.urandom(SECRET_BYTES)).decode("ascii")
