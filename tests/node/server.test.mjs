// `baton serve` driven by the official openai client, as a user would.
// Run by ctest (label integration) with BATON_BIN and BATON_FIXTURES set.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import OpenAI from 'openai';

const BIN = process.env.BATON_BIN;
const FIXTURES = process.env.BATON_FIXTURES;
const MODEL = 'tiny-llama3';
const expected = JSON.parse(readFileSync(`${FIXTURES}/${MODEL}/expected.json`, 'utf8'));

let server;
let base;
let client;

// Starts `baton serve` on a free port and resolves once it says it is ready.
function startServer() {
  return new Promise((resolve, reject) => {
    const proc = spawn(BIN, ['serve', '--model', `${FIXTURES}/${MODEL}`, '--port', '0',
                             '--threads', '2', '--log-level', 'warn', '--kv-cache-mb', '64']);
    let out = '';
    const timer = setTimeout(() => reject(new Error(`baton serve not ready in 60 s:\n${out}`)), 60000);
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/serving on (http:\/\/[^\s]+)\/v1/);
      if (m) {
        clearTimeout(timer);
        resolve({ proc, url: m[1] });
      }
    });
    proc.stderr.on('data', (d) => { out += d; });
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`baton serve exited ${code}:\n${out}`)); });
  });
}

async function post(path, body) {
  const r = await fetch(`${base}${path}`, { method: 'POST', body: JSON.stringify(body),
                                             headers: { 'content-type': 'application/json' } });
  return { status: r.status, headers: r.headers, json: await r.json() };
}

async function metric(name) {
  const text = await (await fetch(`${base}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(name + ' ') || l.startsWith(name + '{'));
  return line === undefined ? undefined : Number(line.split(' ').pop());
}

before(async () => {
  const s = await startServer();
  server = s.proc;
  base = s.url;
  client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 60000 });
});

after(() => {
  server.kill('SIGTERM');
});

test('health and models', async () => {
  assert.equal((await fetch(`${base}/health`)).status, 200);
  const models = await client.models.list();
  assert.deepEqual(models.data.map((m) => m.id), [MODEL]);
});

test('greedy completion equals transformers on token-id prompts', async () => {
  for (const c of expected.greedy) {
    const r = await client.completions.create({
      model: MODEL, prompt: c.prompt_ids, max_tokens: c.output_ids.length, temperature: 0,
      ignore_eos: true, skip_special_tokens: false,
    });
    const want = (await post('/detokenize', { tokens: c.output_ids })).json.prompt;
    assert.equal(r.choices[0].text, want, c.prompt);
    assert.equal(r.choices[0].finish_reason, 'length');
    assert.equal(r.usage.prompt_tokens, c.prompt_ids.length);
    assert.equal(r.usage.completion_tokens, c.output_ids.length);
    assert.equal(r.object, 'text_completion');
  }
});

test('text prompts are tokenized as transformers does', async () => {
  const c = expected.greedy[1];
  const tok = await post('/tokenize', { prompt: c.prompt });
  assert.deepEqual(tok.json.tokens, c.prompt_ids);
  const r = await client.completions.create({ model: MODEL, prompt: c.prompt, max_tokens: 4, temperature: 0, ignore_eos: true });
  assert.equal(r.usage.prompt_tokens, c.prompt_ids.length);
});

test('chat: streamed content equals the non-streamed reply, role first, usage last', async () => {
  const messages = [{ role: 'system', content: 'You answer briefly.' }, { role: 'user', content: 'What does relay mean?' }];
  const whole = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 20, temperature: 0 });
  assert.equal(whole.object, 'chat.completion');
  assert.equal(whole.choices[0].message.role, 'assistant');
  const stream = await client.chat.completions.create({
    model: MODEL, messages, max_tokens: 20, temperature: 0, stream: true, stream_options: { include_usage: true },
  });
  let text = '';
  let first = true;
  let usage;
  let finish;
  const ids = new Set();
  for await (const chunk of stream) {
    ids.add(chunk.id);
    if (chunk.usage) { usage = chunk.usage; assert.equal(chunk.choices.length, 0); continue; }
    const ch = chunk.choices[0];
    if (first) { assert.equal(ch.delta.role, 'assistant'); first = false; }
    text += ch.delta.content ?? '';
    if (ch.finish_reason) finish = ch.finish_reason;
  }
  assert.equal(ids.size, 1);
  assert.equal(text, whole.choices[0].message.content);
  assert.equal(finish, whole.choices[0].finish_reason);
  for (const k of ['prompt_tokens', 'completion_tokens', 'total_tokens']) assert.equal(usage[k], whole.usage[k]);
  // The second identical conversation reuses the first one's cached blocks.
  assert.ok(usage.prompt_tokens_details.cached_tokens > 0);
});

test('n > 1 with a seed is reproducible and indexes every choice', async () => {
  const req = { model: MODEL, prompt: 'The gateway', max_tokens: 12, n: 3, seed: 42, temperature: 1.0, ignore_eos: true };
  const a = await client.completions.create(req);
  const b = await client.completions.create(req);
  assert.deepEqual(a.choices.map((c) => c.index).sort(), [0, 1, 2]);
  assert.deepEqual(a.choices.map((c) => c.text), b.choices.map((c) => c.text));
  assert.equal(a.usage.completion_tokens, 36);
});

test('stop strings end the text and are never streamed', async () => {
  const base_req = { model: MODEL, prompt: 'What does relay mean?', max_tokens: 30, temperature: 0, ignore_eos: true };
  const full = (await client.completions.create(base_req)).choices[0].text;
  assert.ok(full.length > 10, full);
  const stop = full.slice(Math.floor(full.length / 2), Math.floor(full.length / 2) + 3);
  const cut = full.indexOf(stop);
  const r = await client.completions.create({ ...base_req, stop: [stop] });
  assert.equal(r.choices[0].text, full.slice(0, cut));
  assert.equal(r.choices[0].finish_reason, 'stop');
  const stream = await client.completions.create({ ...base_req, stop: [stop], stream: true });
  let streamed = '';
  for await (const chunk of stream) streamed += chunk.choices[0]?.text ?? '';
  assert.equal(streamed, full.slice(0, cut));
});

test('logprobs in both formats', async () => {
  const r = await client.completions.create({ model: MODEL, prompt: 'The gateway', max_tokens: 5, temperature: 0, logprobs: 2, ignore_eos: true });
  const lp = r.choices[0].logprobs;
  assert.equal(lp.tokens.length, 5);
  assert.equal(lp.token_logprobs.length, 5);
  for (const top of lp.top_logprobs) assert.equal(Object.keys(top).length <= 2, true);
  for (const v of lp.token_logprobs) assert.ok(v <= 0);
  const c = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4, temperature: 0, logprobs: true, top_logprobs: 3 });
  const content = c.choices[0].logprobs.content;
  assert.equal(content.length, c.usage.completion_tokens);
  for (const t of content) assert.equal(t.top_logprobs.length, 3);
});

test('bad input gets OpenAI errors naming the field', async () => {
  await assert.rejects(client.completions.create({ model: MODEL, prompt: 'x', temperature: 3.5 }), (e) => {
    assert.equal(e.status, 400);
    assert.equal(e.error?.param ?? e.param, 'temperature');
    return true;
  });
  await assert.rejects(client.completions.create({ model: 'no-such-model', prompt: 'x' }), (e) => e.status === 404);
  await assert.rejects(client.completions.create({ model: MODEL, prompt: 'x', max_tokens: 1 << 20 }), (e) => {
    assert.equal(e.status, 400);
    assert.equal(e.error?.param ?? e.param, 'max_tokens');
    return true;
  });
  const raw = await fetch(`${base}/v1/completions`, { method: 'POST', body: '{"model": ', headers: { 'content-type': 'application/json' } });
  assert.equal(raw.status, 400);
  assert.ok((await raw.json()).error.message.length > 0);
});

test('a cancelled stream frees its KV', async () => {
  const controller = new AbortController();
  const stream = await client.completions.create(
    { model: MODEL, prompt: 'The gateway', max_tokens: 4000, temperature: 0, ignore_eos: true, stream: true },
    { signal: controller.signal });
  let chunks = 0;
  // The client ends the iteration quietly once aborted.
  for await (const _ of stream) {
    if (++chunks === 3) controller.abort();
  }
  assert.ok(chunks >= 3 && chunks < 4000, `${chunks} chunks`);
  const deadline = Date.now() + 30000;
  let usage = await metric('baton:kv_cache_usage_perc');
  while (usage !== 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));  // polling a metric, bounded by the deadline
    usage = await metric('baton:kv_cache_usage_perc');
  }
  assert.equal(usage, 0);
  assert.ok((await metric('baton:request_success_total')) !== undefined);
});

test('metrics count what was served', async () => {
  const text = await (await fetch(`${base}/metrics`)).text();
  for (const name of ['baton:time_to_first_token_seconds_count', 'baton:request_queue_time_seconds_count',
                      'baton:e2e_request_latency_seconds_count', 'baton:generation_tokens_total']) {
    const v = await metric(name);
    assert.ok(v > 0, `${name} = ${v}\n${text}`);
  }
  assert.ok((await metric('baton:prompt_tokens_total')) > 0);
});
