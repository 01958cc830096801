// The Webhooks Guide's Node.js verifier, copied verbatim, run on one delivery.
// Input (stdin, JSON): {"body_base64": raw request body, "signature": X-Webhook-Signature, "secret": ...}
// Output: "valid" (exit 0) or "invalid" (exit 1).
const crypto = require('crypto');

// ---- verbatim from the guide ("Verifying Signatures", Node.js) ----
function verifySignature(payload, signature, secret) {
  const expected = crypto
    .createHmac('sha256', secret)
    .update(payload)
    .digest('hex');
  
  return crypto.timingSafeEqual(
    Buffer.from(signature),
    Buffer.from(expected)
  );
}
// ---- end of the guide's code ----

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  const delivery = JSON.parse(input);
  // As the guide's express handler does: express.raw() gives a Buffer, then toString().
  const payload = Buffer.from(delivery.body_base64, 'base64').toString();
  let ok = false;
  try {
    ok = verifySignature(payload, delivery.signature, delivery.secret);
  } catch (err) {
    ok = false; // timingSafeEqual throws when the lengths differ
  }
  process.stdout.write(ok ? 'valid\n' : 'invalid\n');
  process.exit(ok ? 0 : 1);
});
