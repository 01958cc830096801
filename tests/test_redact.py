"""gateway.redact on its own: which request headers the delivery log hides, and text that
must come through redaction unchanged. (What reaches the logs is in test_logs.py.)"""

from gateway.redact import hide_headers, redact, redact_url


def test_secret_bearing_headers_are_hidden():
    shown = hide_headers({"Content-Type": "application/json", "X-Webhook-Signature": "abc",
                          "webhook-signature": "v1,xyz", "Authorization": "Bearer t", "X-Custom": "key=s3cret",
                          "X-Webhook-Event": "ticket.created"}, ["s3cret"])
    assert shown == {"Content-Type": "application/json", "X-Webhook-Signature": "[hidden]",
                     "webhook-signature": "[hidden]", "Authorization": "[hidden]", "X-Custom": "[hidden]",
                     "X-Webhook-Event": "ticket.created"}


def test_ids_and_ordinary_text_survive_redaction():
    text = "delivery dlv_0123456789abcdef0123456789abcdef of evt_fedcba9876543210fedcba9876543210 sent"
    assert redact(text) == text


def test_a_url_shows_its_host_and_at_most_a_first_segment_that_more_path_follows():
    # Issue 13: a one-segment path was shown whole, and it can be the credential itself.
    assert redact_url("https://webhook.site/6c1f3c1e-token") == "https://webhook.site/…"
    assert redact_url("https://example.com/hook/") == "https://example.com/…"
    assert redact_url("https://example.com/services/T0/B0/s3cret") == "https://example.com/services/…"
    assert redact_url("https://example.com/a/b") == "https://example.com/a/…"
    assert redact_url("https://example.com/") == "https://example.com"
    assert redact_url("https://user:pw@example.com:8443/x?token=1#f") == "https://example.com:8443/…?…"
    # IPv6 hosts keep their brackets, so the port stays readable as a port.
    assert redact_url("http://[2001:db8::1]:8080/hooks/abc") == "http://[2001:db8::1]:8080/hooks/…"
    assert redact_url("http://[::1]/t0ken") == "http://[::1]/…"
    assert redact_url("https://example.com/services/x", secret=True) == "https://example.com/…"
