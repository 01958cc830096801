"""The Webhooks Guide's code, filled in for this gateway: the verifiers a receiver pastes
for an integration's secret, and the signed senders for the receive endpoint.

The code is the guide's own (its ``verifySignature`` / ``verify_signature`` and its Node.js
sender), with the secret and the URL put in, so what an admin copies is what the guide
documents. Values are embedded as JSON string literals, valid in JavaScript and Python alike.
"""

from __future__ import annotations

import json

RECEIVE_PATH = "/api/webhooks/receive"
SECRET_PLACEHOLDER = "YOUR_WEBHOOK_SECRET"

_NODE_VERIFIER = """const crypto = require('crypto');

const WEBHOOK_SECRET = {secret};

function verifySignature(payload, signature, secret) {{
  const expected = crypto
    .createHmac('sha256', secret)
    .update(payload)
    .digest('hex');

  return crypto.timingSafeEqual(
    Buffer.from(signature),
    Buffer.from(expected)
  );
}}

// In your webhook handler
app.post('/webhook', express.raw({{ type: 'application/json' }}), (req, res) => {{
  const signature = req.headers['x-webhook-signature'];
  const payload = req.body.toString();

  if (!verifySignature(payload, signature, WEBHOOK_SECRET)) {{
    return res.status(401).json({{ error: 'Invalid signature' }});
  }}

  const data = JSON.parse(payload);
  // Process webhook...
}});
"""

_PYTHON_VERIFIER = """import hmac
import hashlib

WEBHOOK_SECRET = {secret}

def verify_signature(payload, signature, secret):
    expected = hmac.new(
        secret.encode(),
        payload.encode(),
        hashlib.sha256
    ).hexdigest()

    return hmac.compare_digest(signature, expected)

# verify_signature(request_body_text, request.headers["X-Webhook-Signature"], WEBHOOK_SECRET)
"""

_NODE_SENDER = """const crypto = require('crypto');

const WEBHOOK_SECRET = {secret};
const webhookData = {{
  event: 'ticket.create',
  data: {{
    subject: 'Support Request',
    message: 'Customer message here',
    customer_email: 'customer@example.com'
  }}
}};

const payload = JSON.stringify(webhookData);
const signature = crypto
  .createHmac('sha256', WEBHOOK_SECRET)
  .update(payload)
  .digest('hex');

fetch({url}, {{
  method: 'POST',
  headers: {{
    'Content-Type': 'application/json',
    'X-Webhook-Signature': signature
  }},
  body: payload
}});
"""

_CURL_BODY = ('{"event":"ticket.create","data":{"subject":"Test Ticket","message":"This is a test",'
              '"customer_email":"test@example.com"}}')


def _literal(text: str) -> str:
    return json.dumps(text)


def verifiers(secret: str) -> dict[str, str]:
    """The guide's receiver-side verifiers (Node.js, Python) with ``secret`` filled in."""
    return {"Node.js": _NODE_VERIFIER.format(secret=_literal(secret)),
            "Python": _PYTHON_VERIFIER.format(secret=_literal(secret))}


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def senders(base_url: str, secret: str | None) -> dict[str, str]:
    """A ready-to-paste signed ``curl`` and the guide's Node.js sender for this gateway's
    receive endpoint (``secret`` None: unsigned curl, and a placeholder in the sender)."""
    url = base_url.rstrip("/") + RECEIVE_PATH
    body = _shell_quote(_CURL_BODY)
    if secret is None:
        curl = (f"curl -X POST {_shell_quote(url)} \\\n  -H 'Content-Type: application/json' \\\n"
                f"  -d {body}\n")
    else:
        curl = (f"WEBHOOK_SECRET={_shell_quote(secret)}\nBODY={body}\n"
                "SIGNATURE=$(printf '%s' \"$BODY\" | openssl dgst -sha256 -hmac \"$WEBHOOK_SECRET\" | sed 's/^.* //')\n"
                f"curl -X POST {_shell_quote(url)} \\\n  -H 'Content-Type: application/json' \\\n"
                "  -H \"X-Webhook-Signature: $SIGNATURE\" \\\n  -d \"$BODY\"\n")
    node = _NODE_SENDER.format(secret=_literal(secret or SECRET_PLACEHOLDER), url=_literal(url))
    return {"curl": curl, "Node.js": node}
