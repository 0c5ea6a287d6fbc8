// The preflight building blocks together, against real local HTTP servers (127.0.0.1 only):
// recorded exchanges -> redacted HAR -> fromHar -> replay (serving, noise probe, new) -> diff with
// noise -> tally -> verdict. The sidecar/controller wiring is not part of this test.
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import { describe, it, type TestContext } from 'node:test';
import { fromHar, redactExchange, toHar, type RecordedExchange } from '../common/har.js';
import { NoiseModel, compareOptions, DEFAULT_COMPARE_CONFIG } from '../common/preflight-diff.js';
import { replayPair } from '../common/preflight-pair.js';
import { PreflightTally, decide } from '../common/preflight-verdict.js';
import { SHADOW_HEADER, ShadowClient } from '../common/shadow-client.js';

type Flavour = 'same' | 'price' | 'error';
interface Seen {
  method: string;
  url: string;
  shadow: string | undefined;
  authorization: string | undefined;
}

/** A catalog: items with prices plus two fields that differ on every answer. */
async function catalog(t: TestContext, name: string, flavour: Flavour, seen: Seen[]): Promise<{ host: string; port: number }> {
  let n = 0;
  const server = http.createServer((req, res) => {
    seen.push({ method: req.method!, url: req.url!, shadow: req.headers[SHADOW_HEADER] as string | undefined, authorization: req.headers.authorization });
    req.resume();
    n++;
    if (flavour === 'error') {
      res.writeHead(500, { 'content-type': 'text/plain' }).end('boom');
      return;
    }
    const items = [{ id: 1, price: 4.5 }, { id: 2, price: 3.2 }, { id: 3, price: 3.9 }, { id: 4, price: flavour === 'price' ? 51 : 5.1 }];
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ generatedAt: `t-${name}-${n}`, requestId: `${name}-${n}`, page: new URL(req.url!, 'http://x').searchParams.get('page'), items }));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  return { host: '127.0.0.1', port: (server.address() as net.AddressInfo).port };
}

function recorded(): RecordedExchange[] {
  const get = (target: string): RecordedExchange => ({
    startedAt: Date.now(),
    request: { method: 'GET', target, httpVersion: '1.1', headers: [['Host', 'catalog'], ['Authorization', 'Bearer live-secret'], ['Accept', 'application/json']], body: Buffer.alloc(0), bodyTruncated: false },
    response: { status: 200, httpVersion: '1.1', headers: [['content-type', 'application/json']], body: Buffer.from('{}'), bodyTruncated: false },
    timings: { waitMs: 1, receiveMs: 0 },
  });
  return [get('/items'), get('/items?page=2'), get('/items?page=3'), get('/items')];
}

async function preflight(t: TestContext, flavour: Flavour) {
  const seenOld: Seen[] = [];
  const seenNew: Seen[] = [];
  const serving = await catalog(t, 'v1', 'same', seenOld);
  const candidate = await catalog(t, 'v2', flavour, seenNew);
  // What `molt traffic export` would write, and `molt traffic replay` read back.
  const har = JSON.parse(JSON.stringify(toHar(recorded().map((ex) => redactExchange(ex)), { host: 'catalog' })));
  const requests = fromHar(har).map((ex) => ex.request);
  const client = new ShadowClient({ maxSockets: 4 });
  t.after(() => client.close());
  const tally = new PreflightTally();
  const noise = new NoiseModel();
  for (const req of requests) {
    await replayPair(req, {
      client,
      serving,
      candidate,
      compare: compareOptions(DEFAULT_COMPARE_CONFIG),
      noise,
      send: { set: { authorization: 'Bearer test-token' }, timeoutMs: 5000 },
    }, tally);
  }
  const verdict = decide(tally, { maxMismatchRate: 0, maxErrorRate: 0 }, { minRequests: 4, elapsedMs: 0, maxDurationMs: 60_000, onNoTraffic: 'reject' });
  return { verdict, status: tally.status(verdict.verdict), seenOld, seenNew };
}

describe('preflight pipeline (building blocks only)', () => {
  it('a version whose only differences are a timestamp and a request id passes (noise learned from the serving version)', async (t) => {
    const r = await preflight(t, 'same');
    assert.equal(r.verdict.verdict, 'Pass', r.verdict.message);
    assert.deepEqual([r.status.compared, r.status.mismatched, r.status.errors], [4, 0, 0]);
    assert.equal(r.seenOld.length, 8, 'serving version asked twice per request (noise probe)');
    assert.equal(r.seenNew.length, 4);
  });

  it('a version that changes one price is rejected, with the path and the values as evidence', async (t) => {
    const r = await preflight(t, 'price');
    assert.equal(r.verdict.verdict, 'Fail');
    assert.equal(r.verdict.reason, 'PreflightMismatch');
    assert.deepEqual(r.status.topMismatches, [{ path: '$.items[*].price', count: 4, examples: [{ old: '5.1', new: '51' }] }]);
    assert.match(r.verdict.message, /\$\.items\[\*\]\.price/);
  });

  it('a version that answers 500 is rejected for errors', async (t) => {
    const r = await preflight(t, 'error');
    assert.equal(r.verdict.reason, 'PreflightErrors');
    assert.deepEqual([r.status.errors, r.status.compared], [4, 0]);
  });

  it('every request molt sent is marked x-molt-shadow: 1 and carries the test token, never the recorded secret', async (t) => {
    const r = await preflight(t, 'same');
    for (const s of [...r.seenOld, ...r.seenNew]) {
      assert.equal(s.shadow, '1');
      assert.equal(s.authorization, 'Bearer test-token');
    }
    assert.deepEqual(r.seenNew.map((s) => s.url), ['/items', '/items?page=2', '/items?page=3', '/items']);
  });
});
