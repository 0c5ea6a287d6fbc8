import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import { describe, it, type TestContext } from 'node:test';
import { SHADOW_HEADER, ShadowClient, ShadowDispatcher, shadowHeaders, type ShadowResult } from '../common/shadow-client.js';

async function listen(t: TestContext, server: net.Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    (server as http.Server).closeAllConnections?.();
    server.close();
  });
  return (server.address() as net.AddressInfo).port;
}

/** Echoes what it received as JSON: method, url, raw headers, body. */
function echoServer(): http.Server {
  return http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.stringify({ method: req.method, url: req.url, headers: req.rawHeaders, body: Buffer.concat(chunks).toString() });
      res.writeHead(201, { 'content-type': 'application/json', 'x-echo': 'yes' });
      res.end(body);
    });
  });
}

function client(t: TestContext, opts: ConstructorParameters<typeof ShadowClient>[0] = {}): ShadowClient {
  const c = new ShadowClient(opts);
  t.after(() => c.close());
  return c;
}

function ok(r: ShadowResult): Extract<ShadowResult, { ok: true }> {
  assert.equal(r.ok, true, r.ok ? '' : `${r.kind}: ${r.message}`);
  return r as Extract<ShadowResult, { ok: true }>;
}

describe('shadowHeaders', () => {
  it('adds x-molt-shadow: 1 once, drops the client\'s, hop-by-hop and Content-Length, applies overrides', () => {
    const flat = shadowHeaders(
      {
        method: 'POST',
        target: '/',
        headers: [['Host', 'shop'], ['X-Molt-Shadow', 'evil'], ['Connection', 'keep-alive, X-Hop'], ['X-Hop', '1'], ['Content-Length', '99'], ['Transfer-Encoding', 'chunked'], ['Authorization', 'Bearer live'], ['authorization', 'Bearer again'], ['Accept', '*/*']],
        body: Buffer.from('abc'),
      },
      { host: '127.0.0.1', port: 1 },
      { authorization: 'Bearer test-token', 'X-New': 'n' },
    );
    const pairs: string[] = [];
    for (let i = 0; i < flat.length; i += 2) pairs.push(`${flat[i]}: ${flat[i + 1]}`);
    assert.deepEqual(pairs, ['Host: shop', 'Accept: */*', 'authorization: Bearer test-token', 'X-New: n', 'Content-Length: 3', `${SHADOW_HEADER}: 1`]);
  });

  it('sets Host from the endpoint when the request has none; Content-Length 0 for an empty POST only', () => {
    assert.deepEqual(shadowHeaders({ method: 'GET', target: '/', headers: [] }, { host: '::1', port: 8080 }), ['Host', '[::1]:8080', SHADOW_HEADER, '1']);
    assert.deepEqual(shadowHeaders({ method: 'post', target: '/', headers: [['host', 'h']] }, { host: 'x', port: 1 }), ['host', 'h', 'Content-Length', '0', SHADOW_HEADER, '1']);
  });
});

describe('ShadowClient', () => {
  it('sends the request as given (marked), captures status, headers and body, measures latency', async (t) => {
    const port = await listen(t, echoServer());
    const r = ok(await client(t).send(
      { host: '127.0.0.1', port },
      { method: 'PUT', target: 'http://shop.example/items/1?x=1', headers: [['Host', 'shop.example'], ['X-Molt-Shadow', '0'], ['Cookie', 'a=1']], body: Buffer.from('{"p":2}') },
      { set: { cookie: 'a=test' } },
    ));
    assert.equal(r.status, 201);
    assert.ok(r.headers.some(([k, v]) => k === 'x-echo' && v === 'yes'));
    assert.equal(r.bodyTruncated, false);
    assert.ok(r.latencyMs > 0);
    const seen = JSON.parse(r.body.toString()) as { method: string; url: string; headers: string[]; body: string };
    assert.equal(seen.method, 'PUT');
    assert.equal(seen.url, '/items/1?x=1');
    assert.equal(seen.body, '{"p":2}');
    const names = seen.headers.filter((_, i) => i % 2 === 0).map((h) => h.toLowerCase());
    assert.equal(names.filter((n) => n === SHADOW_HEADER).length, 1);
    assert.equal(seen.headers[seen.headers.findIndex((h) => h.toLowerCase() === SHADOW_HEADER) + 1], '1');
    assert.equal(seen.headers[seen.headers.findIndex((h) => h.toLowerCase() === 'cookie') + 1], 'a=test');
    assert.equal(seen.headers[seen.headers.findIndex((h) => h.toLowerCase() === 'host') + 1], 'shop.example');
  });

  it('keeps at most maxBodyBytes of the body and says it was cut', async (t) => {
    const big = Buffer.alloc(256 * 1024, 'x');
    const port = await listen(t, http.createServer((_req, res) => res.end(big)));
    const r = ok(await client(t).send({ host: '127.0.0.1', port }, { method: 'GET', target: '/', headers: [] }, { maxBodyBytes: 1000 }));
    assert.equal(r.body.length, 1000);
    assert.equal(r.bodyTruncated, true);
    const whole = ok(await client(t).send({ host: '127.0.0.1', port }, { method: 'GET', target: '/', headers: [] }));
    assert.equal(whole.body.length, big.length);
    assert.equal(whole.bodyTruncated, false);
  });

  it('reuses keep-alive sockets and never opens more than maxSockets', async (t) => {
    let connections = 0;
    let open = 0;
    let maxOpen = 0;
    const server = http.createServer((_req, res) => setImmediate(() => res.end('ok')));
    server.on('connection', (s: net.Socket) => {
      connections++;
      maxOpen = Math.max(maxOpen, ++open);
      s.on('close', () => open--);
    });
    const port = await listen(t, server);
    const c = client(t, { maxSockets: 2 });
    ok(await c.send({ host: '127.0.0.1', port }, { method: 'GET', target: '/', headers: [] }));
    ok(await c.send({ host: '127.0.0.1', port }, { method: 'GET', target: '/', headers: [] }));
    assert.equal(connections, 1, 'second request on the same socket');
    const all = await Promise.all(Array.from({ length: 20 }, () => c.send({ host: '127.0.0.1', port }, { method: 'GET', target: '/', headers: [] })));
    assert.ok(all.every((r) => r.ok));
    assert.ok(maxOpen <= 2, `at most 2 sockets open at once, saw ${maxOpen}`);
  });

  it('refused, reset, timeout and protocol errors are results, not exceptions', async (t) => {
    const gone = net.createServer();
    const gonePort = await listen(t, gone);
    gone.close();
    await once(gone, 'close');

    const reset = net.createServer((s) => s.once('data', () => s.resetAndDestroy()));
    const resetPort = await listen(t, reset);
    const hang = net.createServer((s) => s.on('data', () => {}));
    const hangPort = await listen(t, hang);
    const garbage = net.createServer((s) => s.once('data', () => s.end('HELLO THERE\r\n\r\n')));
    const garbagePort = await listen(t, garbage);
    const cut = net.createServer((s) => s.once('data', () => s.end('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this')));
    const cutPort = await listen(t, cut);

    const c = client(t);
    const get = (port: number, timeoutMs = 5000) => c.send({ host: '127.0.0.1', port }, { method: 'GET', target: '/', headers: [] }, { timeoutMs });
    const kinds = await Promise.all([get(gonePort), get(resetPort), get(hangPort, 150), get(garbagePort), get(cutPort)]);
    assert.deepEqual(kinds.map((r) => (r.ok ? 'ok' : r.kind)), ['refused', 'reset', 'timeout', 'protocol', 'reset']);
    for (const r of kinds) assert.ok(r.latencyMs >= 0);
  });

  it('an invalid target is a protocol result, not a throw', async (t) => {
    const r = await client(t).send({ host: '127.0.0.1', port: 9 }, { method: 'GET', target: '/a b', headers: [] });
    assert.equal(r.ok ? 'ok' : r.kind, 'protocol');
  });
});

describe('ShadowDispatcher', () => {
  it('runs at most maxInFlight at once; offers beyond are refused and counted, never queued', async () => {
    const d = new ShadowDispatcher({ maxInFlight: 2 });
    const release: Array<() => void> = [];
    let started = 0;
    const task = () => {
      started++;
      return new Promise<void>((r) => release.push(r));
    };
    assert.equal(d.offer(task), true);
    assert.equal(d.offer(task), true);
    assert.equal(d.offer(task), false);
    assert.equal(d.offer(task), false);
    assert.deepEqual([started, d.inFlight, d.dropped], [2, 2, 2]);
    release.shift()!();
    await new Promise((r) => setImmediate(r));
    assert.equal(d.inFlight, 1);
    assert.equal(d.offer(task), true);
    assert.equal(started, 3, 'a refused task was never started later');
    const idle = d.idle();
    for (const r of release.splice(0)) r();
    await idle;
    assert.equal(d.inFlight, 0);
  });

  it('a task that throws or rejects frees its slot and is counted', async () => {
    const d = new ShadowDispatcher({ maxInFlight: 1 });
    assert.equal(d.offer(() => { throw new Error('x'); }), true);
    await d.idle();
    assert.equal(d.offer(() => Promise.reject(new Error('y'))), true);
    await d.idle();
    assert.deepEqual([d.inFlight, d.failed, d.dropped], [0, 2, 0]);
    assert.throws(() => new ShadowDispatcher({ maxInFlight: 0 }), RangeError);
  });
});
