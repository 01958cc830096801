"""gateway.redact on its own: which request headers the delivery log hides, and text that
must come through redaction unchanged. (What reaches the logs is in test_logs.py.)"""

from gateway.redact import hide_headers, redact


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
