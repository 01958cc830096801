"""Fuzzing ``POST /api/webhooks/receive`` (issue 7, item 5).

Hypothesis drives well over 10,000 generated requests through the Flask test client at a
real Redis. Every request must get a JSON answer below 500, and the ticket count in Redis
must move only for a 201: an invalid or wrongly signed request never creates a ticket.
Each strategy builds requests whose validity is known by construction, so the oracle is
independent of the code under test; where a request is certainly valid it must get a 201,
so the tests also fail if the endpoint starts refusing good input.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gateway import signing

SECRET = "fuzz-secret-\u00e9"  # non-ASCII on purpose: the key is the secret's UTF-8 bytes
WRONG_SECRET = "not-the-secret"
TOLERANCE = 300
MAX_BODY = 8192
RECEIVE = "/api/webhooks/receive"


# `make test` runs 15% of every budget (about 1,600 requests); `make test-slow` runs the
# full budgets, which add up to more than 10,000 requests.
BUDGET = pytest.mark.parametrize(
    "share", [pytest.param(0.15, id="quick"), pytest.param(1.0, id="full", marks=pytest.mark.slow)]
)


def fuzz(examples: int) -> settings:
    """Hypothesis settings for one fuzz test: no deadline (machines are noisy), no example
    database written into the repository, and fixtures shared across examples on purpose."""
    return settings(
        max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )


FIELDS = ("subject", "message", "customer_email", "customer_name", "priority", "category")
NULLABLE = {"customer_name", "category"}
PRIORITIES = ("low", "medium", "high", "urgent")

# --- strategies -------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
# Valid ticket text: no lone surrogates, and no NUL (refused with 422 since issue 13).
safe_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1, max_size=60)
latin1_text = st.text(st.characters(max_codepoint=255, exclude_characters="\r\n"), max_size=30)
non_objects = json_values.filter(lambda d: not isinstance(d, dict))
not_the_event = json_values.filter(lambda e: e != "ticket.create")
unknown_keys = st.text(max_size=12).filter(lambda k: k not in FIELDS)
bad_priorities = st.text(max_size=12).filter(lambda p: p not in PRIORITIES)
# For each ticket field, JSON values of a type it must refuse (null is fine where nullable).
latin1_bytes = st.binary(max_size=80).map(lambda b: b.decode("latin-1"))
bad_timestamps = st.sampled_from(["", "abc", "1e9", "12.5", " ", "0x10", "\u00bd"]) | latin1_text.filter(
    lambda t: not t.strip().lstrip("+-").isdigit()
)
wrong_type_for = {
    field: json_values.filter(lambda v, f=field: not isinstance(v, str) and not (v is None and f in NULLABLE))
    for field in FIELDS
}
emails = st.builds(
    "{}@{}.example.com".format,
    st.from_regex(r"[a-z0-9]{1,12}", fullmatch=True),
    st.from_regex(r"[a-z]{1,10}", fullmatch=True),
)


@st.composite
def valid_data(draw: st.DrawFn) -> dict[str, Any]:
    """``data`` of a ticket.create that the guide says must be accepted."""
    data: dict[str, Any] = {
        "subject": draw(safe_text),
        "message": draw(safe_text),
        "customer_email": draw(emails),
    }
    if draw(st.booleans()):
        data["customer_name"] = draw(st.none() | safe_text)
    if draw(st.booleans()):
        data["priority"] = draw(st.sampled_from(PRIORITIES))
    if draw(st.booleans()):
        data["category"] = draw(st.none() | safe_text)
    return data


def envelope(data: Any, event: Any = "ticket.create") -> dict[str, Any]:
    return {"event": event, "data": data}


def encode(doc: Any) -> bytes:
    return json.dumps(doc).encode("utf-8")


# --- the client and the oracle ----------------------------------------------------------


class Receiver:
    """Posts to the receive endpoint and checks the invariants every answer must keep."""

    def __init__(self, client: Any, redis: Any) -> None:
        self.client = client
        self.redis = redis
        self.requests = 0

    def counts(self) -> tuple[int, int]:
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard("gw:tickets")
            pipe.zcard("gw:events")
            tickets, events = pipe.execute()
        return tickets, events

    def post(
        self, body: bytes, headers: list[tuple[str, str]], *, may_create: bool, must_create: bool = False
    ) -> Any:
        """POST and assert: no 5xx, a JSON error for 4xx, a ticket only when allowed."""
        before = self.counts()
        # Each request from an address of its own (all loopback, as unsigned mode needs): the
        # fuzz sends thousands of wrong signatures, and one address would be throttled
        # (429) after 100; the throttle has its own tests (tests/web/test_auth_throttle.py).
        n = self.requests + 1
        address = f"127.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
        response = self.client.post(RECEIVE, data=body, headers=headers, environ_base={"REMOTE_ADDR": address})
        after = self.counts()
        self.requests += 1
        status = response.status_code
        assert status < 500, (status, response.get_data()[:500], headers, body[:300])
        doc = response.get_json(silent=True)
        assert isinstance(doc, dict), (status, response.get_data()[:300])
        if status >= 400:
            assert isinstance(doc.get("error"), str) and isinstance(doc.get("message"), str), doc
            assert "Traceback" not in doc["message"]
        created = after[0] - before[0]
        assert created == (1 if status == 201 else 0), (status, created)
        assert after[1] - before[1] == created, "an event was stored without its ticket (or the reverse)"
        if not may_create:
            assert status != 201, ("an invalid request created a ticket", doc, headers, body[:300])
        if must_create:
            assert status == 201, (doc, headers, body[:300])
            assert doc["ticket"]["ticket_number"].startswith("TKT-")
        return response


@pytest.fixture
def receiver(make_client: Callable[..., Any], redis_client: Any) -> Iterator[Receiver]:
    client = make_client(
        {"gateway": {"secret": SECRET, "signature_tolerance": TOLERANCE, "max_body_bytes": MAX_BODY}}
    )
    yield Receiver(client, redis_client)


@pytest.fixture
def open_receiver(make_client: Callable[..., Any], redis_client: Any) -> Iterator[Receiver]:
    """No secret configured: unsigned requests are accepted (with a start-up warning)."""
    yield Receiver(make_client({"gateway": {"max_body_bytes": MAX_BODY}}), redis_client)


def hex_headers(body: bytes, secret: str = SECRET) -> list[tuple[str, str]]:
    return [
        ("Content-Type", "application/json"),
        ("X-Webhook-Signature", signing.hex_signature(body, secret)),
    ]


def standard_headers(
    body: bytes, msg_id: str, timestamp: int | str, secret: str = SECRET
) -> list[tuple[str, str]]:
    return [
        ("Content-Type", "application/json"),
        ("webhook-id", msg_id),
        ("webhook-timestamp", str(timestamp)),
        ("webhook-signature", signing.standard_signature(msg_id, timestamp, body, [secret])),
    ]


# --- the fuzz tests ---------------------------------------------------------------------


@BUDGET
def test_random_bytes_never_create_tickets(receiver: Receiver, share: float) -> None:
    content_types = st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "text/plain",
            "application/cloudevents+json",
            "",
            "multipart/form-data",
            ";;;",
        ]
    )

    @fuzz(round(1600 * share))
    @given(
        body=st.binary(max_size=2 * MAX_BODY)
        | st.builds(lambda b: b'{"event":"ticket.create","data":' + b, st.binary(max_size=200)),
        content_type=content_types,
        signed=st.sampled_from(["right", "wrong", "none"]),
    )
    def run(body: bytes, content_type: str, signed: str) -> None:
        headers = [("Content-Type", content_type)] if content_type else []
        if signed != "none":
            headers.append(
                (
                    "X-Webhook-Signature",
                    signing.hex_signature(body, SECRET if signed == "right" else WRONG_SECRET),
                )
            )
        receiver.post(body, headers, may_create=False)

    run()
    assert receiver.requests >= round(1600 * share)


@BUDGET
def test_wrong_types_and_shapes_are_refused(receiver: Receiver, share: float) -> None:
    """Correctly signed bodies with one thing wrong: a field of the wrong type, a missing
    required field, an unknown key, a value out of range, a non-object body."""

    @st.composite
    def broken(draw: st.DrawFn) -> Any:
        data = draw(valid_data())
        how = draw(
            st.sampled_from(
                [
                    "field_type",
                    "missing",
                    "unknown_key",
                    "priority",
                    "event",
                    "data",
                    "top",
                    "too_long",
                    "empty",
                ]
            )
        )
        if how == "field_type":
            field = draw(st.sampled_from(FIELDS))
            data[field] = draw(wrong_type_for[field])
        elif how == "missing":
            del data[draw(st.sampled_from(("subject", "message", "customer_email")))]
        elif how == "unknown_key":
            data[draw(unknown_keys)] = draw(json_values)
        elif how == "priority":
            data["priority"] = draw(bad_priorities)
        elif how == "event":
            return envelope(data, draw(not_the_event))
        elif how == "data":
            return envelope(draw(non_objects))
        elif how == "top":
            shape = draw(st.sampled_from(["scalar", "no_event", "extra_key"]))
            if shape == "scalar":
                return draw(non_objects)
            return {"data": data} if shape == "no_event" else {**envelope(data), "extra": draw(json_values)}
        elif how == "too_long":
            field, limit = draw(
                st.sampled_from(
                    [("subject", 200), ("customer_name", 200), ("category", 100), ("customer_email", 254)]
                )
            )
            data[field] = "x" * (limit + 1 - (len("@example.com") if field == "customer_email" else 0)) + (
                "@example.com" if field == "customer_email" else ""
            )
        else:
            data[draw(st.sampled_from(("subject", "message", "customer_email")))] = ""
        return envelope(data)

    @fuzz(round(2000 * share))
    @given(doc=broken())
    def run(doc: Any) -> None:
        body = encode(doc)
        assume(len(body) <= MAX_BODY)
        response = receiver.post(body, hex_headers(body), may_create=False)
        assert response.status_code in (400, 422), response.get_json()

    run()
    assert receiver.requests >= round(1950 * share)


@BUDGET
def test_deep_and_huge_json(receiver: Receiver, share: float) -> None:
    """Nesting far beyond the parser's recursion limit, at the top or inside ``data``, and
    bodies around and over the size limit: 400, 413 or 422, never a crash."""

    @fuzz(round(500 * share))
    @given(
        depth=st.integers(1, 3000) | st.integers(1, 200_000),
        opener=st.sampled_from(["[", '{"a":']),
        where=st.sampled_from(["top", "data", "subject", "unknown"]),
        size=st.integers(201, 3 * MAX_BODY),
        huge=st.booleans(),
    )
    def run(depth: int, opener: str, where: str, size: int, huge: bool) -> None:
        if huge:
            # A subject of `size` characters: 422 when it fits the body limit, 413 when not.
            body = encode(
                envelope({"subject": "s" * size, "message": "m", "customer_email": "a@example.com"})
            )
        else:
            closer = "]" if opener == "[" else "}"
            nested = opener * depth + "1" + closer * depth
            if len(nested) > 3 * MAX_BODY:
                nested = nested[: 3 * MAX_BODY]  # cut off: now also unterminated
            valid = '"subject":"s","message":"m","customer_email":"a@example.com"'
            body = {
                "top": nested,
                "data": '{"event":"ticket.create","data":' + nested + "}",
                "subject": '{"event":"ticket.create","data":{"subject":' + nested + ',"message":"m",'
                '"customer_email":"a@example.com"}}',
                "unknown": '{"event":"ticket.create","data":{' + valid + ',"deep":' + nested + "}}",
            }[where].encode()
        response = receiver.post(body, hex_headers(body), may_create=False)
        if len(body) > MAX_BODY:
            assert response.status_code == 413 and response.get_json()["error"] == "payload_too_large"

    run()
    assert receiver.requests >= round(500 * share)


def _decodes(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@BUDGET
def test_invalid_utf8_and_lone_surrogates(receiver: Receiver, share: float) -> None:
    """Invalid UTF-8 bytes, or an unpaired \\uD800-style escape, inside an otherwise valid,
    correctly signed ticket: refused with a 400, nothing stored."""
    invalid_utf8 = st.sampled_from(
        [
            b"\xff",
            b"\xc0\xaf",
            b"\xed\xa0\x80",
            b"\xe2\x28\xa1",
            b"\xf8\x88\x80\x80\x80",
            b"\x80",
            b"\xc3",
            b"\xf4\x90\x80\x80",
        ]
    )
    lone = st.integers(0xD800, 0xDFFF).map(lambda c: f"\\u{c:04x}".encode())

    @fuzz(round(1300 * share))
    @given(
        data=valid_data(),
        field=st.sampled_from(["subject", "message", "customer_email"]),
        bad=st.lists(invalid_utf8 | lone, min_size=1, max_size=3),
        at=st.integers(0, 1000),
    )
    def run(data: dict[str, Any], field: str, bad: list[bytes], at: int) -> None:
        # A lone escape right after another's high half would pair up into a real character.
        assume(not (len(bad) > 1 and any(b.startswith(b"\\u") for b in bad)))
        marker = "\x00MARK\x00"
        value = data[field]
        cut = at % (len(value) + 1)
        data[field] = value[:cut] + marker + value[cut:]
        body = encode(envelope(data)).replace(json.dumps(marker)[1:-1].encode(), b"".join(bad))
        if not any(b.startswith(b"\\u") for b in bad):
            # Fragments can join into valid UTF-8 (b"\xc3" + b"\x80" is "À"): only a body
            # that really is not UTF-8 must be refused.
            assume(not _decodes(body))
        response = receiver.post(body, hex_headers(body), may_create=False)
        assert response.status_code == 400 and response.get_json()["error"] == "malformed_json"

    run()
    assert receiver.requests >= round(1250 * share)


@st.composite
def signature_values(draw: st.DrawFn, body: bytes) -> tuple[str, bool]:
    """An X-Webhook-Signature value and whether it is a correct one."""
    right = signing.hex_signature(body, SECRET)
    kind = draw(
        st.sampled_from(
            [
                "right",
                "prefixed",
                "upper",
                "padded",
                "wrong_secret",
                "truncated",
                "flipped",
                "garbage",
                "empty",
                "other_body",
            ]
        )
    )
    if kind == "right":
        return right, True
    if kind == "prefixed":
        return draw(st.sampled_from(["sha256=", "SHA256="])) + right, True
    if kind == "upper":
        return right.upper(), True
    if kind == "padded":
        return f" {right} ", True
    if kind == "wrong_secret":
        return signing.hex_signature(body, WRONG_SECRET), False
    if kind == "truncated":
        return right[: draw(st.integers(0, 63))], False
    if kind == "flipped":
        i = draw(st.integers(0, 63))
        return right[:i] + ("0" if right[i] != "0" else "1") + right[i + 1 :], False
    if kind == "other_body":
        return signing.hex_signature(body + b" ", SECRET), False
    if kind == "empty":
        return "", False
    # Header values arrive latin-1 decoded from the wire: any byte, as one character.
    garbage = draw(latin1_bytes).replace("\r", "").replace("\n", "")
    assume(garbage.strip().lower().removeprefix("sha256=") != right)
    return garbage, False


@BUDGET
def test_missing_duplicated_and_malformed_headers(receiver: Receiver, share: float) -> None:
    """A valid body under every mix of signature, Content-Type and Idempotency-Key headers.
    No correct signature anywhere -> no ticket; exactly one correct signature, a JSON
    Content-Type and a fresh (or no) key -> a ticket."""

    @st.composite
    def requests_(draw: st.DrawFn) -> tuple[bytes, list[tuple[str, str]], bool, bool]:
        body = encode(envelope(draw(valid_data())))
        signatures = draw(st.lists(signature_values(body), max_size=3))
        json_ct = draw(
            st.sampled_from(
                [
                    "application/json",
                    "application/json; charset=utf-8",
                    "APPLICATION/JSON",
                    "application/vnd.api+json",
                ]
            )
        )
        content_type = draw(
            st.sampled_from(
                [
                    None,
                    json_ct,
                    json_ct,
                    json_ct,
                    "text/plain",
                    "application/xml",
                    "json",
                    "application/json/x",
                    "\x00\xff",
                ]
            )
        )
        idem_kind = draw(st.sampled_from(["none", "none", "fresh", "empty", "long", "replayed", "binary"]))
        headers: list[tuple[str, str]] = []
        if content_type is not None:
            headers.append(("Content-Type", content_type))
        for value, _ in signatures:
            headers.append(("X-Webhook-Signature", value))
        idem_ok = True
        if idem_kind == "fresh":
            headers.append(("Idempotency-Key", uuid.uuid4().hex))
        elif idem_kind == "empty":
            headers.append(("Idempotency-Key", ""))
        elif idem_kind == "long":
            headers.append(("Idempotency-Key", "k" * draw(st.integers(256, 2000))))
            idem_ok = False
        elif idem_kind == "replayed":
            headers.append(("Idempotency-Key", "fuzz-replayed-key"))
            idem_ok = False  # the first use creates; every later one replays (200)
        elif idem_kind == "binary":
            key = draw(st.binary(min_size=1, max_size=40).map(lambda b: b.decode("latin-1")))
            headers.append(("Idempotency-Key", key.replace("\r", "").replace("\n", "") or "k"))
            idem_ok = False
        # A few extra, irrelevant or half Standard Webhooks headers, possibly duplicated.
        for name in draw(
            st.lists(
                st.sampled_from(
                    [
                        "webhook-timestamp",
                        "X-Webhook-Event",
                        "Content-Length-X",
                        "webhook-signature",
                        "Authorization",
                    ]
                ),
                max_size=2,
            )
        ):
            headers.append((name, draw(latin1_text)))
        random.Random(draw(st.integers(0, 2**32))).shuffle(headers)
        any_right = any(ok for _, ok in signatures)
        ct_ok = (
            content_type is not None
            and content_type != "\x00\xff"
            and "json" in content_type.lower()
            and content_type.lower().split(";")[0].strip() in ("application/json", "application/vnd.api+json")
        )
        must = (
            len(signatures) == 1
            and signatures[0][1]
            and ct_ok
            and idem_ok
            and not any(name.lower().startswith("webhook-") for name, _ in headers)
        )
        return body, headers, any_right, must

    @fuzz(round(2800 * share))
    @given(case=requests_())
    def run(case: tuple[bytes, list[tuple[str, str]], bool, bool]) -> None:
        body, headers, any_right, must = case
        has_std = any(name.lower() == "webhook-signature" for name, _ in headers)
        # Only a correct signature may create; a partial Standard Webhooks set never verifies.
        receiver.post(body, headers, may_create=any_right, must_create=must and not has_std)

    run()
    assert receiver.requests >= round(2700 * share)


@BUDGET
def test_standard_webhooks_timestamps_and_signatures(receiver: Receiver, share: float) -> None:
    """Standard Webhooks headers: a correct signature with a timestamp inside the 5-minute
    tolerance creates a ticket; outside it, or with anything wrong, nothing is created."""

    @st.composite
    def requests_(draw: st.DrawFn) -> tuple[bytes, list[tuple[str, str]], str]:
        body = encode(envelope(draw(valid_data())))
        msg_id = "msg_" + uuid.uuid4().hex
        now = int(time.time())
        kind = draw(
            st.sampled_from(
                [
                    "ok",
                    "ok",
                    "ok_whsec",
                    "late",
                    "early",
                    "bad_ts",
                    "wrong_secret",
                    "missing",
                    "extra_entries",
                    "v2_only",
                    "other_id",
                ]
            )
        )
        # Margins keep the verdict independent of the few seconds a run takes.
        offset = draw(st.integers(-(TOLERANCE - 30), TOLERANCE - 30))
        if kind in ("ok", "ok_whsec", "extra_entries"):
            secret = signing.whsec_form(SECRET) if kind == "ok_whsec" else SECRET
            headers = standard_headers(body, msg_id, now + offset, secret)
            if kind == "extra_entries":
                junk = draw(
                    st.lists(
                        st.sampled_from(["v1,AAAA", "v1a,xyz", "v2,abc", "garbage", "v1,"]),
                        min_size=1,
                        max_size=3,
                    )
                )
                name, value = headers[-1]
                parts = [*junk, value]
                random.Random(draw(st.integers(0, 2**32))).shuffle(parts)
                headers[-1] = (name, " ".join(parts))
            return body, headers, "create"
        if kind in ("late", "early"):
            skew = draw(st.integers(TOLERANCE + 30, 10**9))
            headers = standard_headers(body, msg_id, now + (skew if kind == "early" else -skew))
            return body, headers, "timestamp_out_of_tolerance"
        if kind == "bad_ts":
            ts = draw(bad_timestamps)
            return body, standard_headers(body, msg_id, ts), "refuse"
        if kind == "wrong_secret":
            return body, standard_headers(body, msg_id, now + offset, WRONG_SECRET), "signature_invalid"
        if kind == "v2_only":
            headers = standard_headers(body, msg_id, now + offset)
            headers[-1] = ("webhook-signature", headers[-1][1].replace("v1,", "v2,"))
            return body, headers, "signature_invalid"
        if kind == "other_id":
            headers = standard_headers(body, msg_id, now + offset)
            headers[1] = ("webhook-id", msg_id + "x")
            return body, headers, "signature_invalid"
        headers = standard_headers(body, msg_id, now + offset)
        drop = draw(st.sets(st.sampled_from([1, 2, 3]), min_size=1))
        return body, [h for i, h in enumerate(headers) if i not in drop], "refuse"

    @fuzz(round(1700 * share))
    @given(case=requests_())
    def run(case: tuple[bytes, list[tuple[str, str]], str]) -> None:
        body, headers, expect = case
        response = receiver.post(body, headers, may_create=expect == "create", must_create=expect == "create")
        if expect not in ("create", "refuse"):
            assert response.status_code == 401 and response.get_json()["error"] == expect, response.get_json()
        elif expect == "refuse":
            assert response.status_code in (400, 401), response.get_json()

    run()
    assert receiver.requests >= round(1700 * share)


@BUDGET
def test_unsigned_mode_random_documents(open_receiver: Receiver, share: float) -> None:
    """Without a secret, arbitrary JSON documents: only a well-formed ticket.create with the
    three required strings may create a ticket; valid tickets always do."""

    def plausible(doc: Any) -> bool:
        if not (isinstance(doc, dict) and set(doc) == {"event", "data"} and doc["event"] == "ticket.create"):
            return False
        data = doc["data"]
        return isinstance(data, dict) and all(
            isinstance(data.get(k), str) and data[k] for k in ("subject", "message", "customer_email")
        )

    @fuzz(round(1000 * share))
    @given(
        doc=json_values | st.builds(envelope, json_values) | st.builds(envelope, valid_data()),
        valid=st.booleans(),
        data=valid_data(),
    )
    def run(doc: Any, valid: bool, data: dict[str, Any]) -> None:
        if valid:
            body = encode(envelope(data))
            open_receiver.post(
                body, [("Content-Type", "application/json")], may_create=True, must_create=True
            )
        else:
            body = encode(doc)
            open_receiver.post(body, [("Content-Type", "application/json")], may_create=plausible(doc))

    run()
    assert open_receiver.requests >= round(1000 * share)
