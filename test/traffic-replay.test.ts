// `molt traffic` building blocks: the recording exported as redacted HAR 1.2, and a HAR replayed
// against a version, compared with another version or with the recorded answers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { WireExchange } from '../common/protocol.js';
import { fromHar } from '../common/har.js';
import { replayExchanges, trafficToHar } from '../controller/traffic.js';
import type { VersionStatus } from '../controller/controller-api.js';

function wire(target: string, body: string): WireExchange {
  return {
    recorder: '0', seq: 1, startedAt: Date.parse('2026-12-01T10:00:00Z'), durationMicros: 2500,
    request: { method: 'GET', target, httpVersion: 'HTTP/1.1', headers: [['Host', 'shop.example'], ['Authorization', 'Bearer s3cret'], ['Cookie', 'sid=abc']], body: '', bodyTruncated: false },
    response: { status: 200, statusText: 'OK', httpVersion: 'HTTP/1.1', headers: [['Content-Type', 'application/json'], ['Set-Cookie', 'sid=def']], body: Buffer.from(body).toString('base64'), bodyTruncated: false },
  };
}

async function api(t: { after(fn: () => unknown): void }, price: number): Promise<VersionStatus> {
  const s = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ path: req.url, price }));
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  t.after(() => new Promise((r) => s.close(r)));
  const port = (s.address() as AddressInfo).port;
  return { name: `shop-${price}`, app: 'shop', version: String(price), endpoints: [{ host: '127.0.0.1', port }] } as VersionStatus;
}

test('export: HAR 1.2 with secrets redacted, readable back', () => {
  const har = trafficToHar({ exchanges: [wire('/a?x=1', '{"price":1}')], cursor: {}, recorded: 1, skipped: 0 }, 'shop.example');
  assert.equal(har.log.version, '1.2');
  const e = har.log.entries[0]!;
  assert.equal(e.request.url, 'http://shop.example/a?x=1');
  const text = JSON.stringify(har);
  assert.ok(!text.includes('s3cret') && !text.includes('sid=abc') && !text.includes('sid=def'), 'Authorization, Cookie and Set-Cookie are redacted');
  const back = fromHar(JSON.parse(text));
  assert.equal(back[0]!.request.target, '/a?x=1');
  assert.equal(back[0]!.response!.body.toString(), '{"price":1}');
});

test('replay: against another version, a changed field is found; against the recording, a match passes', async (t) => {
  const v1 = await api(t, 10);
  const v2 = await api(t, 12);
  const har = trafficToHar({ exchanges: [wire('/a', JSON.stringify({ path: '/a', price: 10 })), wire('/b', JSON.stringify({ path: '/b', price: 10 }))], cursor: {}, recorded: 2, skipped: 0 }, 'shop.example');
  const exchanges = fromHar(JSON.parse(JSON.stringify(har)));
  const progress: number[] = [];
  const bad = await replayExchanges(exchanges, { app: 'shop', to: v2, compareWith: v1, onProgress: (d) => progress.push(d) });
  assert.equal(bad.outcome.verdict, 'Fail');
  assert.equal(bad.status.topMismatches[0]!.path, '$.price');
  assert.deepEqual(progress, [1, 2]);
  const good = await replayExchanges(exchanges, { app: 'shop', to: v1 });
  assert.equal(good.outcome.verdict, 'Pass', good.outcome.message);
  assert.equal(good.status.compared, 2);
});
