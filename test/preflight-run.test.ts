// PreflightRun (controller/preflight.ts) against real HTTP servers: replay and shadow copies,
// structural diff with noise learning, isolation of unsafe methods, hooks, the verdicts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { PreflightRun, type PreflightRunConfig, type PreflightOutcome } from '../controller/preflight.js';
import { ShadowClient } from '../common/shadow-client.js';
import type { WireExchange } from '../common/protocol.js';
import type { TrafficAnswer } from '../controller/control-server.js';

interface Seen { method: string; url: string; shadow: string | undefined }

async function server(t: { after(fn: () => unknown): void }, handler: (req: http.IncomingMessage, res: http.ServerResponse) => void): Promise<{ port: number; seen: Seen[] }> {
  const seen: Seen[] = [];
  const s = http.createServer((req, res) => {
    seen.push({ method: req.method!, url: req.url!, shadow: req.headers['x-molt-shadow'] as string | undefined });
    req.resume();
    req.on('end', () => handler(req, res));
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  t.after(() => new Promise((r) => s.close(r)));
  return { port: (s.address() as AddressInfo).port, seen };
}

let counter = 0;
/** A JSON API: price per item, plus a timestamp and a request id that differ on every answer (noise). */
function shop(priceOf: (item: number) => number, status = 200) {
  return (req: http.IncomingMessage, res: http.ServerResponse) => {
    const item = Number(/\/items\/(\d+)/.exec(req.url ?? '')?.[1] ?? 0);
    const body = JSON.stringify({ item, price: priceOf(item), generatedAt: new Date().toISOString(), requestId: `r${++counter}` });
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(body);
  };
}

function recorded(method: string, target: string, body = '{}', status = 200): WireExchange {
  return {
    recorder: '0', seq: ++counter, startedAt: Date.now(), durationMicros: 1000,
    request: { method, target, httpVersion: 'HTTP/1.1', headers: [['Host', 'shop'], ['Accept', 'application/json']], body: '', bodyTruncated: false },
    response: { status, statusText: 'OK', httpVersion: 'HTTP/1.1', headers: [['content-type', 'application/json']], body: Buffer.from(body).toString('base64'), bodyTruncated: false },
  };
}

function config(over: Partial<PreflightRunConfig> = {}): PreflightRunConfig {
  return {
    maxDurationMs: 20_000,
    onNoTraffic: 'reject',
    replay: { requests: 50, set: {} },
    shadow: null,
    compare: { status: true, headers: ['content-type'], body: 'auto', ignore: [], noise: 'auto' },
    pass: { maxMismatchRate: 0, maxErrorRate: 0, maxLatencyRatio: 50 },
    unsafeMethods: false,
    hooks: [],
    ...over,
  };
}

async function run(t: { after(fn: () => unknown): void }, cfg: PreflightRunConfig, oldPort: number | null, newPort: number, traffic: WireExchange[], live: WireExchange[][] = []): Promise<PreflightRun> {
  const client = new ShadowClient();
  t.after(() => client.close());
  let calls = 0;
  const requestTraffic = async (_app: string, limit: number): Promise<TrafficAnswer> => {
    const batch = calls++ === 0 ? traffic.slice(-limit) : (live.shift() ?? []);
    return { exchanges: batch, cursor: { '0': counter }, recorded: traffic.length, skipped: 0 };
  };
  const r = new PreflightRun({
    app: 'shop', name: 'shop-v2', version: '2.0.0',
    endpoints: [{ host: '127.0.0.1', port: newPort }],
    serving: oldPort === null ? null : { name: 'shop-v1', version: '1.0.0', endpoints: [{ host: '127.0.0.1', port: oldPort }] },
  }, cfg, { requestTraffic, client, pollMs: 20 });
  t.after(() => r.stop());
  await new Promise<PreflightOutcome>((resolve) => r.start(() => { if (r.outcome.verdict !== 'Pending') resolve(r.outcome); }));
  return r;
}

const items = (n: number) => Array.from({ length: n }, (_, i) => recorded('GET', `/items/${i}`));

test('a v2 that changes one JSON field on one path is rejected with that path; timestamps and ids are noise', async (t) => {
  const v1 = await server(t, shop(() => 10));
  const v2 = await server(t, shop((i) => (i === 3 ? 11 : 10)));
  const r = await run(t, config(), v1.port, v2.port, items(8));
  assert.equal(r.outcome.verdict, 'Fail');
  assert.equal(r.outcome.reason, 'PreflightMismatch');
  const s = r.status();
  assert.equal(s.topMismatches[0]!.path, '$.price');
  assert.deepEqual(s.topMismatches[0]!.examples[0], { old: '10', new: '11' });
  assert.ok(!s.topMismatches.some((m) => m.path.includes('generatedAt') || m.path.includes('requestId')), 'noise is not reported');
  assert.ok(v2.seen.length > 0 && v2.seen.every((s) => s.shadow === '1'), 'every request to v2 carries x-molt-shadow: 1');
  assert.ok(v1.seen.every((s) => s.shadow === '1'), 'so does every request molt sends to the serving version');
});

test('a v2 whose only differences are a timestamp and a request id passes', async (t) => {
  const v1 = await server(t, shop(() => 10));
  const v2 = await server(t, shop(() => 10));
  const r = await run(t, config(), v1.port, v2.port, items(8));
  assert.equal(r.outcome.verdict, 'Pass', r.outcome.message);
  assert.equal(r.status().compared, 8);
  assert.equal(r.status().mismatched, 0);
});

test('a v2 that answers 500 is rejected with PreflightErrors; a recorded POST is never sent by default', async (t) => {
  const v1 = await server(t, shop(() => 10));
  const v2 = await server(t, shop(() => 10, 500));
  const r = await run(t, config(), v1.port, v2.port, [...items(3), recorded('POST', '/orders', '{"ok":true}', 201)]);
  assert.equal(r.outcome.verdict, 'Fail');
  assert.equal(r.outcome.reason, 'PreflightErrors');
  assert.ok(!v2.seen.some((s) => s.method === 'POST'), 'POST never reached v2');
  assert.ok(!v1.seen.some((s) => s.method === 'POST'), 'nor was it re-run on the serving version');
});

test('with unsafeMethods a POST goes to v2 only, compared with the recorded answer', async (t) => {
  const v1 = await server(t, shop(() => 10));
  const v2 = await server(t, (_req, res) => { res.writeHead(201, { 'content-type': 'application/json' }); res.end('{"ok":true}'); });
  const r = await run(t, config({ unsafeMethods: true, compare: { status: true, headers: [], body: 'auto', ignore: [], noise: 'auto' } }), v1.port, v2.port,
    [recorded('POST', '/orders', '{"ok":true}', 201)]);
  assert.equal(r.outcome.verdict, 'Pass', r.outcome.message);
  assert.deepEqual(v2.seen.map((s) => s.method), ['POST']);
  assert.equal(v1.seen.length, 0, 'an unsafe request is never run on the serving version');
});

test('shadow: live requests recorded after the start are copied; the verdict waits for minRequests', async (t) => {
  const v1 = await server(t, shop(() => 10));
  const v2 = await server(t, shop((i) => (i === 7 ? 99 : 10)));
  const liveBatch = [recorded('GET', '/items/1', JSON.stringify({ item: 1, price: 10 })), recorded('GET', '/items/7', JSON.stringify({ item: 7, price: 10 }))];
  const r = await run(t, config({ replay: null, shadow: { percent: 100, minRequests: 2 } }), v1.port, v2.port, [], [liveBatch]);
  assert.equal(r.outcome.verdict, 'Fail', r.outcome.message);
  assert.equal(r.status().topMismatches[0]!.path, '$.price');
});

test('no traffic: after maxDuration onNoTraffic decides, and the message says why', async (t) => {
  const v1 = await server(t, shop(() => 10));
  const v2 = await server(t, shop(() => 10));
  const r = await run(t, config({ replay: null, shadow: { percent: 100, minRequests: 5 }, maxDurationMs: 200 }), v1.port, v2.port, []);
  assert.equal(r.outcome.verdict, 'Fail');
  assert.equal(r.outcome.reason, 'NoTraffic');
  assert.match(r.outcome.message, /0 of 5/);
});

test('hooks: called with the evidence after the traffic tests pass; a non-2xx rejects with HookFailed', async (t) => {
  const v1 = await server(t, shop(() => 10));
  const v2 = await server(t, shop(() => 10));
  const bodies: unknown[] = [];
  const hook = http.createServer((req, res) => {
    let b = '';
    req.on('data', (c) => (b += c));
    req.on('end', () => { bodies.push(JSON.parse(b)); res.writeHead(bodies.length === 1 ? 204 : 503); res.end('migration not done'); });
  });
  await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
  t.after(() => new Promise((r) => hook.close(r)));
  const url = `http://127.0.0.1:${(hook.address() as AddressInfo).port}/check`;
  const ok = await run(t, config({ hooks: [{ url, timeoutMs: 2000 }] }), v1.port, v2.port, items(2));
  assert.equal(ok.outcome.verdict, 'Pass', ok.outcome.message);
  const evidence = bodies[0] as { app: string; version: string; name: string; phase: string; preflight: { compared: number } };
  assert.equal(evidence.app, 'shop');
  assert.equal(evidence.version, '2.0.0');
  assert.equal(evidence.phase, 'Testing');
  assert.equal(evidence.preflight.compared, 2);
  const bad = await run(t, config({ hooks: [{ url, timeoutMs: 2000 }] }), v1.port, v2.port, items(2));
  assert.equal(bad.outcome.verdict, 'Fail');
  assert.equal(bad.outcome.reason, 'HookFailed');
  assert.match(bad.outcome.message, /503: migration not done/);
});

test("an app's first version has nothing to compare with: hooks only", async (t) => {
  const v1 = await server(t, shop(() => 10));
  const r = await run(t, config(), null, v1.port, items(3));
  assert.equal(r.outcome.verdict, 'Pass');
  assert.equal(r.status().hooksOnly, true);
  assert.equal(v1.seen.length, 0, 'no traffic test ran');
});
