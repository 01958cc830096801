// Runs the Zapier CLI app of docs/zapier.md (index.js, built from the page's code blocks)
// with Zapier's own app tester (zapier-platform-core's createAppTester) against a live
// gateway: GATEWAY_URL, API_KEY (labelled API_KEY_LABEL). Every step is a Zapier
// operation, run as Zapier runs it; a failed check exits non-zero with what was seen.
'use strict';

const assert = require('node:assert/strict');
const http = require('node:http');
const { createAppTester } = require('zapier-platform-core');
// What `zapier validate` checks of the definition: Zapier's schema (zapier-platform-schema).
const { compileApp, validateApp } = require('zapier-platform-core/src/tools/schema');

const App = require('./index');

const appTester = createAppTester(App);
const authData = { gateway_url: process.env.GATEWAY_URL, api_key: process.env.API_KEY };
const sorted = (item) => Object.keys(item).sort();

// Plays Zapier's hook receiver: the URL a Zap subscribes with.
const hooks = [];
const receiver = http.createServer((request, response) => {
  let body = '';
  request.on('data', (chunk) => { body += chunk; });
  request.on('end', () => {
    hooks.push(JSON.parse(body));
    response.writeHead(200, { 'Content-Type': 'application/json' });
    response.end('{"status":"success"}');
  });
});

const waitFor = async (predicate, what) => {
  for (let tries = 0; tries < 600; tries += 1) {
    if (predicate()) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
};

const main = async () => {
  await new Promise((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  const targetUrl = `http://127.0.0.1:${receiver.address().port}/hooks/standard/1/abc/`;
  const steps = {};

  const problems = validateApp(compileApp(App));
  assert.deepEqual(problems, [], `the app definition does not validate: ${JSON.stringify(problems)}`);

  // Authentication: the connection test reveals who the key is, and no URL.
  const me = await appTester(App.authentication.test, { authData });
  assert.equal(me.label, process.env.API_KEY_LABEL);
  assert.ok(me.events.includes('ticket.created'));
  assert.ok(!JSON.stringify(me).includes('http'), `the connection test shows a URL: ${JSON.stringify(me)}`);
  steps.connection_test = me;

  // Trigger: subscribe (REST Hook), then sample items before anything happened.
  const trigger = App.triggers.ticket_created.operation;
  const subscribeData = await appTester(trigger.performSubscribe, { authData, targetUrl });
  assert.match(subscribeData.id, /^sub_/);
  const [placeholder] = await appTester(trigger.performList, { authData });
  const [again] = await appTester(trigger.performList, { authData });
  assert.deepEqual(again, placeholder, 'a placeholder sample must not change between calls');
  assert.equal(placeholder.id, placeholder.event_id);

  // Action: the form from the gateway, then Create ticket (twice with one deduplication key).
  const inputFields = await appTester(App.creates.create_ticket.operation.inputFields, { authData });
  const byKey = Object.fromEntries(inputFields.map((field) => [field.key, field]));
  assert.deepEqual(inputFields.filter((f) => f.required).map((f) => f.key), ['subject', 'message', 'customer_email']);
  assert.deepEqual(byKey.priority.choices.map((c) => c.value), ['low', 'medium', 'high', 'urgent']);
  const inputData = { subject: 'Order 1182 arrived broken', message: 'The box was crushed.',
                      customer_email: 'kim@example.com', priority: 'high', idempotency_key: 'form-entry-77' };
  const ticket = await appTester(App.creates.create_ticket.operation.perform, { authData, inputData });
  assert.match(ticket.ticket_number, /^TKT-\d{4}-\d+$/);
  assert.equal(ticket.source, 'zapier');
  const twice = await appTester(App.creates.create_ticket.operation.perform, { authData, inputData });
  assert.equal(twice.id, ticket.id, 'the same deduplication key created a second ticket');
  steps.created_ticket = ticket;

  // The ticket.created of that ticket reaches the Zap's URL: perform turns it into one item.
  await waitFor(() => hooks.length >= 1, 'the live delivery to the hook URL');
  const delivered = hooks[0];
  assert.equal(delivered.ticket_id, ticket.id);
  const items = await appTester(trigger.perform, { authData, cleanedRequest: delivered });
  assert.equal(items.length, 1);
  assert.equal(items[0].id, delivered.event_id, 'a trigger item needs a stable id');
  assert.deepEqual(sorted(placeholder), sorted(delivered), 'the sample\'s keys differ from the live item\'s');
  const [recent] = await appTester(trigger.performList, { authData });
  assert.equal(recent.id, delivered.id);
  steps.live_item = delivered;

  // Unsubscribe, and again (as when the gateway already removed it after a 410): both done.
  await appTester(trigger.performUnsubscribe, { authData, subscribeData });
  await appTester(trigger.performUnsubscribe, { authData, subscribeData });

  receiver.close();
  process.stdout.write(`${JSON.stringify(steps)}\n`);
};

main().catch((error) => {
  receiver.close();
  process.stderr.write(`${error.stack || error}\n`);
  process.exit(1);
});
