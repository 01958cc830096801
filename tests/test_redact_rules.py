"""gateway.redact rule by rule, with examples: what the log filter's net catches, how URLs
and options are shown, and which secrets a request carried. (test_redact.py has the
delivery log's headers; test_logs.py what reaches the logs.)"""

from __future__ import annotations

import base64

import pytest

from gateway.redact import (
    HIDDEN,
    MASK,
    REDACTED,
    carries_secret,
    excerpt,
    plugin_error_text,
    public_value,
    redact,
    redact_url,
    redact_value,
    register_secrets,
    sent_secrets,
    shown_url,
    sink_secret_values,
    without_password,
)


@pytest.mark.parametrize(("text", "expected"), [
    ("key whsec_abcDEF123+/= used", f"key whsec_{REDACTED} used"),
    ("sig v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4= ok", f"sig v1,{REDACTED} ok"),
    ("got sha256=0123456789abcdef0123 here", f"got sha256={REDACTED} here"),
    ("hex 0123456789abcdef0123456789abcdef end", f"hex {REDACTED} end"),
    ("sent Bearer abc.def-ghi", f"sent Bearer {REDACTED}"),
    ("Authorization: Basic dXNlcjpwdw==", f"Authorization: {REDACTED} {REDACTED}"),
    ("url https://user:pa55@example.com/x", f"url https://{REDACTED}@example.com/x"),
    ('{"secret": "hunter2"}', f'{{"secret": "{REDACTED}"}}'),
    ("token=abc123;", f"token={REDACTED};"),
])
def test_the_log_filter_catches_what_looks_like_a_secret(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize("text", ["v1,short", "sha256=abc", "0123456789abcdef0123456789abcde",
                                  "dlv_0123456789abcdef0123456789abcdef", "nothing to see", ""])
def test_what_does_not_look_like_a_secret_is_kept(text: str) -> None:
    assert redact(text) == text


def test_registered_secrets_are_caught_anywhere_and_short_ones_are_ignored() -> None:
    register_secrets(["exact-secret-value-42", "tiny", None])
    assert redact("prefix exact-secret-value-42suffix") == f"prefix {REDACTED}suffix"
    assert redact("a tiny word") == "a tiny word"
    assert redact_value({"a": ["exact-secret-value-42", 3], "b": ("x",)}) == {"a": [REDACTED, 3], "b": ["x"]}
    assert redact_value(7) == 7


@pytest.mark.parametrize(("url", "secret", "shown"), [
    ("https://hooks.example.com/services/T0/B0/XYZ", False, f"https://hooks.example.com/services/{MASK}"),
    ("https://hooks.example.com/services/T0/B0/XYZ", True, f"https://hooks.example.com/{MASK}"),
    ("https://example.com/hook", False, f"https://example.com/{MASK}"),  # one segment can be the token
    ("https://example.com/hook/", False, f"https://example.com/{MASK}"),
    ("https://example.com/", False, "https://example.com"),
    ("https://example.com", True, "https://example.com"),
    ("https://u:p@example.com:8443/a?token=x#f", False, f"https://example.com:8443/{MASK}?{MASK}"),
    ("http://[::1]:9/x", False, f"http://[::1]:9/{MASK}"),
    ("http://[::1", False, MASK),
    ("https://example.com", False, "https://example.com"),
    ("https://example.com/a?token=x", False, f"https://example.com/{MASK}?{MASK}"),
    ("https://example.com/a#frag", False, f"https://example.com/{MASK}?{MASK}"),
    # An empty segment is no first segment to show: the token after it is masked whole,
    # and an empty segment after the first hides nothing that follows it.
    ("https://example.com//T0k3n", False, f"https://example.com/{MASK}"),
    ("https://example.com/services//T0k3n", False, f"https://example.com/services/{MASK}"),
])
def test_urls_are_shown_to_their_first_path_segment(url: str, secret: bool, shown: str) -> None:
    assert redact_url(url, secret=secret) == shown


def test_a_url_carries_a_secret_when_one_of_the_values_is_in_it() -> None:
    assert carries_secret("https://hooks.example.com/T/B/tok3n", ["", "tok3n"])
    assert not carries_secret("https://hooks.example.com/T/B/tok3n", ["", "other"])


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://:pw@host:6379/0", "redis://:***@host:6379/0"),
    ("redis://user:pw@host/0", "redis://user:***@host/0"),
    ("redis+sentinel://h:26379/m?sentinel_password=pw&db=1&x", "redis+sentinel://h:26379/m?sentinel_password=***&db=1&x"),
    ("redis://host:6379/0", "redis://host:6379/0"),
])
def test_passwords_leave_redis_urls(url: str, shown: str) -> None:
    assert without_password(url) == shown


@pytest.mark.parametrize(("key", "value", "secret", "shown"), [
    ("url", "https://hooks.example.com/T/B/X", True, f"https://hooks.example.com/{MASK}"),
    ("url", "https://example.com/a/b", False, f"https://example.com/a/{MASK}"),
    ("channel", "#support", False, "#support"),
    ("headers", {"X-Key": "v"}, True, {"X-Key": HIDDEN}),
    ("api_keys", [{"label": "zaps", "key": "k"}, "raw"], True, [{"label": "zaps", "key": HIDDEN}, HIDDEN]),
    ("token", "t0k", True, HIDDEN),
    ("token", None, True, None),
])
def test_option_values_are_shown_without_their_secrets(key: str, value: object, secret: bool,
                                                        shown: object) -> None:
    assert public_value(key, value, secret) == shown


def test_a_request_carried_its_secrets_whole_and_token_by_token_longest_first() -> None:
    headers = {"webhook-signature": "v1,AAAAAAAAAAAA v1,BBBBBBBBBBBBBBBB", "X-Plain": "visible",
               "Authorization": "short"}
    found = sent_secrets(headers, ["conf-secret", ""], "https://u:p%40ss@example.com/x")
    basic = base64.b64encode(b"u:p@ss").decode()
    assert "v1,AAAAAAAAAAAA v1,BBBBBBBBBBBBBBBB" in found and "BBBBBBBBBBBBBBBB" in found
    assert "AAAAAAAAAAAA" in found and "conf-secret" in found and "p%40ss" in found and "p@ss" in found
    assert basic in found and "short" in found
    assert "visible" not in found and "" not in found and "v1" not in found
    assert found == sorted(found, key=len, reverse=True)


def test_a_plugins_error_text_hides_the_sinks_secrets_and_is_cut() -> None:
    error = RuntimeError("failed with key conf-secret-123 and Bearer abcdefgh")
    text = plugin_error_text(error, hidden=["conf-secret-123", ""])
    assert text == f"RuntimeError: failed with key {HIDDEN} and Bearer {REDACTED}"
    assert plugin_error_text(ValueError()) == "ValueError"
    cut = plugin_error_text(RuntimeError("x" * 600), limit=50)
    assert len(cut) == 50 and cut.endswith(MASK)
    assert len(plugin_error_text(RuntimeError("x" * 36), limit=50)) == 50


def test_a_response_excerpt_hides_what_was_sent_and_keeps_two_kilobytes() -> None:
    echoed = b"signature mismatch: got v1,SECRETSIG expected something"
    assert excerpt(echoed, ["v1,SECRETSIG"]) == f"signature mismatch: got {HIDDEN} expected something"
    long = excerpt(b"\xc3\xa9" * 2000)  # two bytes a character: never cut inside one
    assert len(long.encode()) == 2048 and long == "é" * 1024
    assert excerpt(b"\xff ok") == "\ufffd ok"


def test_a_lone_run_of_32_hex_digits_is_caught_and_a_url_is_not_secret_unless_said() -> None:
    assert redact("0123456789abcdef0123456789abcdef") == REDACTED
    assert redact_url("https://example.com/a/b") == f"https://example.com/a/{MASK}"


def test_a_shown_url_is_the_redacted_one_and_stays_so_when_remembered() -> None:
    url = "https://hooks.example.com/services/T0/B0/SECRET"
    for _ in range(2):
        assert shown_url(url) == f"https://hooks.example.com/services/{MASK}"
        assert shown_url(url, secret=True) == f"https://hooks.example.com/{MASK}"


def test_a_longer_secret_is_hidden_whole_even_when_a_shorter_one_is_inside_it() -> None:
    register_secrets(["inner-part", "inner-part-and-more-of-it"])
    assert redact("x inner-part-and-more-of-it y") == f"x {REDACTED} y"


def test_secrets_of_six_characters_are_registered_and_of_five_are_not() -> None:
    register_secrets(["6chars", "5char"])
    assert redact("a 6chars b 5char c") == f"a {REDACTED} b 5char c"


def test_header_tokens_of_eight_characters_count_as_sent_secrets_and_shorter_ones_do_not() -> None:
    found = sent_secrets({"X-Signature": "12345678 1234567"}, [], "https://example.com/")
    assert "12345678" in found and "1234567" not in found


def test_a_sinks_secret_values_are_its_secrets_its_secret_options_and_its_url_password(make_runtime) -> None:
    runtime = make_runtime({"sinks": [
        {"name": "zap", "type": "zapier", "events": ["*"], "secret": "zap-signing-secret",
         "api_keys": [{"label": "zaps-label", "key": "zapier-api-key-0123456789-abcdef"}]},
        {"name": "slack", "type": "slack", "events": ["*"],
         "url": "https://hooks.slack.com/services/T0/B0/slacktoken"},
        {"name": "hook", "type": "generic_webhook", "events": ["*"], "url": "https://user:url-pass-word@example.com/"}]})
    zap = sink_secret_values(runtime.sink_config("zap"))
    assert "zap-signing-secret" in zap and "zapier-api-key-0123456789-abcdef" in zap
    assert "zaps-label" not in zap
    assert "https://hooks.slack.com/services/T0/B0/slacktoken" in sink_secret_values(runtime.sink_config("slack"))
    assert "url-pass-word" in sink_secret_values(runtime.sink_config("hook"))


def test_defaults_cut_plugin_errors_at_500_characters_and_excerpts_at_2048_bytes() -> None:
    assert len(plugin_error_text(RuntimeError("x" * 600))) == 500
    exact = plugin_error_text(RuntimeError("x" * 486))  # "RuntimeError: " + 486: exactly the limit, kept whole
    assert len(exact) == 500 and exact.endswith("x")
    assert excerpt(b"a" * 3000) == "a" * 2048
