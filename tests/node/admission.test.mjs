// Admission control seen from a client: a full instance refuses at once, with
// a reason and Retry-After, instead of queueing without bound.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';

const BIN = process.env.BATON_BIN;
const FIXTURES = process.env.BATON_FIXTURES;
let server;
let base;

before(async () => {
  const proc = spawn(BIN, ['serve', '--model', `${FIXTURES}/tiny-llama3`, '--port', '0', '--threads', '1',
                           '--log-level', 'warn', '--kv-cache-mb', '64', '--max-in-flight', '1', '--max-waiting', '1']);
  server = proc;
  base = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`not ready:\n${out}`)), 60000);
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/serving on (http:\/\/[^\s]+)\/v1/);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    proc.stderr.on('data', (d) => { out += d; });
    proc.on('exit', (code) => reject(new Error(`exited ${code}:\n${out}`)));
  });
});

after(() => server.kill('SIGTERM'));

function completion(body, signal) {
  return fetch(`${base}/v1/completions`, {
    method: 'POST', signal, headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'tiny-llama3', prompt: 'The gateway', temperature: 0, ...body }),
  });
}

test('a full instance refuses at once with a reason and Retry-After, then serves again', async () => {
  const controller = new AbortController();
  const first = await completion({ max_tokens: 4000, ignore_eos: true, stream: true }, controller.signal);
  assert.equal(first.status, 200);
  const reader = first.body.getReader();
  await reader.read();  // the first request is now in flight

  const refused = await completion({ max_tokens: 4 });
  assert.equal(refused.status, 429);
  assert.ok(Number(refused.headers.get('retry-after')) >= 1);
  assert.equal(refused.headers.get('x-baton-reject-reason'), 'too_many_requests');
  const body = await refused.json();
  assert.equal(body.error.code, 'too_many_requests');

  controller.abort();
  await reader.cancel().catch(() => {});
  // Once the first request is cancelled the instance takes work again.
  const deadline = Date.now() + 30000;
  let status = 0;
  while (Date.now() < deadline) {
    const r = await completion({ max_tokens: 2 });
    status = r.status;
    await r.arrayBuffer();
    if (status === 200) break;
    assert.equal(status, 429);
    await new Promise((r) => setTimeout(r, 20));  // bounded by the deadline
  }
  assert.equal(status, 200);
  const metrics = await (await fetch(`${base}/metrics`)).text();
  assert.match(metrics, /baton:request_rejected_total\{reason="too_many_requests"\} [1-9]/);
});
