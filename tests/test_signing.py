"""gateway.signing at its edges, with the clock given: the Standard Webhooks tolerance is
inclusive (exactly ``tolerance`` seconds off is accepted, one more is refused) in both
directions, only ``v1,`` entries count, and the guide's hex signature takes an optional
``sha256=`` prefix in any case. (tests/web/test_receive_signatures.py checks the same
through ``POST /api/webhooks/receive``; the clock cannot be pinned there.)"""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from gateway.signing import (
    StandardVerifyError,
    hex_signature,
    signature_headers,
    standard_key,
    standard_signature,
    verify_hex_signature,
    verify_standard,
    whsec_form,
)

SECRET = "signing-secret"
BODY = b'{"event":"ticket.create","data":{}}'
SIGNED_AT = 1_700_000_000


def headers(timestamp: int = SIGNED_AT, signature: str | None = None, msg_id: str = "msg_1") -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": signature or standard_signature(msg_id, timestamp, BODY, [SECRET])}


def raw_v1(secret: str = SECRET, timestamp: int = SIGNED_AT, msg_id: str = "msg_1") -> str:
    digest = hmac.new(secret.encode(), f"{msg_id}.{timestamp}.".encode() + BODY, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


@pytest.mark.parametrize("offset", [0, 1, 299, 300, -1, -299, -300])
def test_a_timestamp_within_the_tolerance_is_accepted_up_to_and_including_its_edge(offset: int) -> None:
    verify_standard(BODY, headers(), [SECRET], tolerance=300, now=SIGNED_AT + offset)


@pytest.mark.parametrize("offset", [301, -301, 300.5, -300.5, 86_400, -86_400])
def test_a_timestamp_past_the_tolerance_is_refused_either_way(offset: float) -> None:
    with pytest.raises(StandardVerifyError) as refused:
        verify_standard(BODY, headers(), [SECRET], tolerance=300, now=SIGNED_AT + offset)
    assert refused.value.code == "timestamp_out_of_tolerance"
    assert "300 seconds" in str(refused.value)


def test_the_tolerance_is_the_one_given() -> None:
    verify_standard(BODY, headers(), [SECRET], tolerance=10, now=SIGNED_AT + 10)
    with pytest.raises(StandardVerifyError):
        verify_standard(BODY, headers(), [SECRET], tolerance=10, now=SIGNED_AT + 11)


@pytest.mark.parametrize("entries", [
    pytest.param(["v1,{good}"], id="one"),
    pytest.param(["v1,{bad}", "v1,{good}"], id="matching-last"),
    pytest.param(["v1,{good}", "v1,{bad}"], id="matching-first"),
    pytest.param(["v1,{bad}", "v1,{good}", "v1,{other}"], id="matching-in-the-middle"),
    pytest.param(["v2,{bad}", "v1,{good}"], id="after-a-v2"),
])
def test_any_matching_v1_entry_is_enough(entries: list[str]) -> None:
    values = {"good": raw_v1(), "bad": raw_v1("wrong-secret"), "other": raw_v1("third-secret")}
    verify_standard(BODY, headers(signature=" ".join(e.format(**values) for e in entries)), [SECRET],
                    tolerance=300, now=SIGNED_AT)


@pytest.mark.parametrize("signature", [
    pytest.param("v2,{good}", id="right-value-labelled-v2"),
    pytest.param("v1a,{good}", id="right-value-labelled-v1a"),
    pytest.param("{good}", id="no-version"),
    pytest.param("v1,{bad} v2,{good}", id="only-the-v2-matches"),
    pytest.param("v1,{bad} v1,{other}", id="no-v1-matches"),
    pytest.param("v1,", id="empty-v1"),
    pytest.param("v1,{good},{good}", id="right-value-with-more-after-it"),
])
def test_only_v1_entries_count(signature: str) -> None:
    values = {"good": raw_v1(), "bad": raw_v1("wrong-secret"), "other": raw_v1("third-secret")}
    with pytest.raises(StandardVerifyError) as refused:
        verify_standard(BODY, headers(signature=signature.format(**values)), [SECRET], tolerance=300, now=SIGNED_AT)
    assert refused.value.code == "signature_invalid"


def test_any_of_several_secrets_verifies_and_the_signature_covers_id_timestamp_and_body() -> None:
    signed = headers(signature=f"v1,{raw_v1('old-secret')}")
    verify_standard(BODY, signed, ["new-secret", "old-secret"], tolerance=300, now=SIGNED_AT)
    for changed in ({**signed, "webhook-id": "msg_2"}, {**signed, "webhook-timestamp": str(SIGNED_AT + 1)}):
        with pytest.raises(StandardVerifyError):
            verify_standard(BODY, changed, ["new-secret", "old-secret"], tolerance=300, now=SIGNED_AT)
    with pytest.raises(StandardVerifyError):
        verify_standard(BODY + b" ", signed, ["new-secret", "old-secret"], tolerance=300, now=SIGNED_AT)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_each_standard_header_is_required(missing: str) -> None:
    partial = {k: v for k, v in headers().items() if k != missing}
    with pytest.raises(StandardVerifyError) as refused:
        verify_standard(BODY, partial, [SECRET], tolerance=300, now=SIGNED_AT)
    assert refused.value.code == "signature_missing"


def test_a_timestamp_that_is_not_a_number_is_its_own_error() -> None:
    with pytest.raises(StandardVerifyError) as refused:
        verify_standard(BODY, headers() | {"webhook-timestamp": "yesterday"}, [SECRET], tolerance=300, now=SIGNED_AT)
    assert refused.value.code == "timestamp_invalid"


@pytest.mark.parametrize("prefix", ["", "sha256=", "SHA256=", "Sha256="])
def test_the_hex_signature_may_carry_a_sha256_prefix_in_any_case(prefix: str) -> None:
    assert verify_hex_signature(BODY, prefix + hex_signature(BODY, SECRET), [SECRET])


@pytest.mark.parametrize("header", ["", "sha256=", "sha1=" + hex_signature(BODY, SECRET),
                                    hex_signature(BODY, SECRET)[:-1], hex_signature(BODY, SECRET) + "0",
                                    hex_signature(BODY, "wrong-secret")])
def test_anything_but_the_hex_signature_is_refused(header: str) -> None:
    assert not verify_hex_signature(BODY, header, [SECRET])


def test_the_hex_signature_of_any_rotation_secret_verifies() -> None:
    assert verify_hex_signature(BODY, hex_signature(BODY, "old-secret"), ["new-secret", "old-secret"])
    assert not verify_hex_signature(BODY, hex_signature(BODY, "old-secret"), ["new-secret"])
    assert not verify_hex_signature(BODY, None, [SECRET])


def test_outgoing_headers_sign_with_the_first_secret_and_list_every_one() -> None:
    sent = signature_headers(BODY, "dlv_1", ["new-secret", "old-secret"], now=SIGNED_AT + 0.9)
    assert sent["X-Webhook-Signature"] == hex_signature(BODY, "new-secret")
    assert sent["webhook-id"] == "dlv_1" and sent["webhook-timestamp"] == str(SIGNED_AT)
    assert sent["webhook-signature"].split(" ") == [f"v1,{raw_v1(s, msg_id='dlv_1')}"
                                                   for s in ("new-secret", "old-secret")]
    assert signature_headers(BODY, "dlv_1", []) == {}


def test_whsec_form_is_the_base64_of_a_plain_secret_and_leaves_a_whsec_secret_alone() -> None:
    assert whsec_form("s3cr3t") == "whsec_czNjcjN0"  # docs/signatures.md's example
    assert whsec_form("whsec_czNjcjN0") == "whsec_czNjcjN0"
    # Signing with either form gives the same webhook-signature.
    assert standard_signature("m", 1, BODY, ["s3cr3t"]) == standard_signature("m", 1, BODY, [whsec_form("s3cr3t")])


@pytest.mark.parametrize("secret", ["whsec_czNj$cjN0", "whsec_czNjcjN", "whsec_é"])
def test_a_whsec_secret_that_is_not_strict_base64_is_used_as_its_plain_bytes(secret: str) -> None:
    # Not silently "repaired" (dropping the bad characters would make another key than the
    # receiver's library derives): the secret string's bytes, as for any plain secret.
    assert standard_key(secret) == secret.encode()
