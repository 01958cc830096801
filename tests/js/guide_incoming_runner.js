// Runs the Webhooks Guide's "Signature Verification" Node.js example, kept verbatim in
// guide_incoming_signed_request.js, against a running gateway. Only what the example takes
// as given is defined here: webhookData, WEBHOOK_SECRET, and where "your-domain.com" is.
// Usage: node guide_incoming_runner.js <gateway base URL> <secret> <webhookData JSON>
// Prints {"status", "body"} of the gateway's answer as one JSON line.
const path = require('path');

const [gatewayUrl, secret, dataJson] = process.argv.slice(2);
globalThis.webhookData = JSON.parse(dataJson);
globalThis.WEBHOOK_SECRET = secret;

const realFetch = globalThis.fetch;
globalThis.fetch = (url, options) => {
  const target = url.replace('https://your-domain.com', gatewayUrl);
  const answered = realFetch(target, options).then(async (response) => {
    console.log(JSON.stringify({ status: response.status, body: await response.text() }));
  });
  answered.catch((error) => {
    console.error(error);
    process.exitCode = 1;
  });
  return answered;
};

require(path.join(__dirname, 'guide_incoming_signed_request.js'));
