import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, test } from 'node:test';
import type { HealthCheck } from '../controller/appversion.js';
import { MoltError } from '../common/errors.js';
import { isLoopbackHost, probe } from '../controller/runtime/health.js';

const hc = (over: Partial<HealthCheck> = {}): HealthCheck => ({ path: '/healthz', intervalMs: 100, timeoutMs: 1000, startupTimeoutMs: 5000, ...over });

let server: http.Server;
let port: number;
const seen: Array<{ url: string; connection: string | undefined; host: string | undefined }> = [];
const hanging = new Set<http.ServerResponse>();

before(async () => {
  server = http.createServer((req, res) => {
    seen.push({ url: req.url ?? '', connection: req.headers.connection, host: req.headers.host });
    switch (req.url) {
      case '/healthz':
        res.end('ok');
        break;
      case '/redirect':
        res.writeHead(302, { location: '/healthz' }).end();
        break;
      case '/fail':
        res.writeHead(500).end('boom');
        break;
      case '/hang':
        hanging.add(res);
        break;
      default:
        res.writeHead(404).end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as net.AddressInfo).port;
});

after(async () => {
  for (const res of hanging) res.destroy();
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const p = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return p;
}

test('HTTP: 2xx and 3xx are healthy; GET with Connection: close on the given path', async () => {
  seen.length = 0;
  assert.deepEqual(await probe({ host: '127.0.0.1', port }, hc()), { ok: true, detail: 'HTTP 200' });
  assert.deepEqual(await probe({ host: '127.0.0.1', port }, hc({ path: '/redirect' })), { ok: true, detail: 'HTTP 302' });
  assert.deepEqual(seen, [
    { url: '/healthz', connection: 'close', host: `127.0.0.1:${port}` },
    { url: '/redirect', connection: 'close', host: `127.0.0.1:${port}` },
  ]);
});

test('HTTP: 4xx and 5xx are unhealthy', async () => {
  assert.deepEqual(await probe({ host: '127.0.0.1', port }, hc({ path: '/fail' })), { ok: false, detail: 'HTTP 500' });
  assert.deepEqual(await probe({ host: '127.0.0.1', port }, hc({ path: '/missing' })), { ok: false, detail: 'HTTP 404' });
});

test('HTTP: a server that never answers fails after timeoutMs', async () => {
  const r = await probe({ host: '127.0.0.1', port }, hc({ path: '/hang', timeoutMs: 150 }));
  assert.equal(r.ok, false);
  assert.match(r.detail, /timed out after 150ms/);
});

test('HTTP and TCP: connection refused is unhealthy with the reason', async () => {
  const p = await closedPort();
  const h = await probe({ host: '127.0.0.1', port: p }, hc());
  assert.equal(h.ok, false);
  assert.match(h.detail, /ECONNREFUSED/);
  const t = await probe({ host: '127.0.0.1', port: p }, hc({ path: undefined }));
  assert.equal(t.ok, false);
  assert.match(t.detail, /ECONNREFUSED/);
});

test('TCP: a listening port is healthy; "localhost" is dialled as loopback', async () => {
  const { path: _omit, ...tcp } = hc();
  assert.deepEqual(await probe({ host: '127.0.0.1', port }, tcp), { ok: true, detail: 'TCP connect ok' });
  assert.deepEqual(await probe({ host: 'localhost', port }, tcp), { ok: true, detail: 'TCP connect ok' });
});

test('network rule: non-loopback hosts are refused before dialling', async () => {
  for (const host of ['10.0.0.1', '172.17.0.2', '192.168.1.1', 'example.com', '0.0.0.0', '::']) {
    await assert.rejects(probe({ host, port: 80 }, hc()), (err: unknown) => err instanceof MoltError && err.code === 'MOLT_ERR_VALIDATION' && err.message.includes(host));
  }
  assert.equal(isLoopbackHost('127.0.0.1'), true);
  assert.equal(isLoopbackHost('127.8.9.10'), true);
  assert.equal(isLoopbackHost('::1'), true);
  assert.equal(isLoopbackHost('[::1]'), true);
  assert.equal(isLoopbackHost('::ffff:127.0.0.1'), true);
  assert.equal(isLoopbackHost('LOCALHOST'), true);
  assert.equal(isLoopbackHost('128.0.0.1'), false);
});
