// How long the sidecar keeps idle upstream connections (sidecar/upstream-pool.ts idleFor): long
// enough that a burst after a quiet spell does not start by reconnecting, never so long that a
// request is sent on a connection its server is closing. Each server below is observed from its
// own side: a FIN from the proxy ('end' on the server's socket) means the proxy closed first.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import { createProxy } from '../sidecar/proxy.js';
import { TimerWheel } from '../sidecar/timers.js';
import { UpstreamPool, type UpstreamConn, type UpstreamOwner } from '../sidecar/upstream-pool.js';
import { routingTo } from './helpers/real-routing.js';

const HOST = '127.0.0.1';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Conn { closedBy: 'proxy' | 'server' | null }

/** A raw HTTP/1.1 server: answers every request with `extraHeaders` and a 2-byte body; closes a
 *  connection idle for `idleCloseMs` (0 = never) without saying so in advance. */
async function rawServer(t: TestContext, extraHeaders: string, idleCloseMs: number): Promise<{ port: number; conns: Conn[] }> {
  const conns: Conn[] = [];
  const srv = net.createServer((s) => {
    const c: Conn = { closedBy: null };
    conns.push(c);
    let timer: NodeJS.Timeout | undefined;
    const arm = (): void => {
      clearTimeout(timer);
      if (idleCloseMs > 0) timer = setTimeout(() => { if (c.closedBy === null) c.closedBy = 'server'; s.end(); }, idleCloseMs);
    };
    let buf = '';
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      let i;
      while ((i = buf.indexOf('\r\n\r\n')) >= 0) {
        buf = buf.slice(i + 4);
        s.write(`HTTP/1.1 200 OK\r\nContent-Length: 2\r\n${extraHeaders}\r\nok`);
        arm();
      }
    });
    s.on('end', () => { if (c.closedBy === null) c.closedBy = 'proxy'; clearTimeout(timer); s.end(); });
    s.on('close', () => clearTimeout(timer));
    s.on('error', () => {});
    arm();
  });
  srv.listen(0, HOST);
  await once(srv, 'listening');
  t.after(() => srv.close());
  return { port: (srv.address() as net.AddressInfo).port, conns };
}

async function proxyTo(t: TestContext, port: number): Promise<number> {
  const p = createProxy({ routing: routingTo({ host: HOST, port }) });
  const a = await p.listen(0, HOST);
  t.after(() => p.close(100));
  return a.port;
}

async function get(port: number): Promise<number> {
  const agent = new http.Agent({ keepAlive: false });
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
    http.get({ host: HOST, port, path: '/', agent }, resolve).on('error', reject);
  });
  res.resume();
  await once(res, 'end');
  return res.statusCode!;
}

test('an upstream connection stays open across a quiet spell longer than 4 s when the server says nothing (a burst does not reconnect)', async (t) => {
  const s = await rawServer(t, '', 0);
  const port = await proxyTo(t, s.port);
  assert.equal(await get(port), 200);
  await sleep(5500);
  assert.equal(await get(port), 200);
  assert.equal(s.conns.length, 1, 'the second request reused the first connection');
  assert.equal(s.conns[0]!.closedBy, null);
});

test('Keep-Alive: timeout=N from the server: the proxy closes the idle connection before the server does', async (t) => {
  const s = await rawServer(t, 'Keep-Alive: timeout=3\r\n', 3000);
  const port = await proxyTo(t, s.port);
  assert.equal(await get(port), 200);
  await sleep(3800);
  assert.equal(s.conns.length, 1);
  assert.equal(s.conns[0]!.closedBy, 'proxy', 'closed by the proxy ahead of the advertised 3 s');
  // Node's own server advertises its keepAliveTimeout the same way.
  const srv = http.createServer((_q, r) => r.end('ok'));
  srv.keepAliveTimeout = 3000;
  let proxyClosed = 0;
  srv.on('connection', (sock: net.Socket) => sock.on('end', () => { proxyClosed++; }));
  srv.listen(0, HOST);
  await once(srv, 'listening');
  t.after(() => { srv.closeAllConnections(); srv.close(); });
  const port2 = await proxyTo(t, (srv.address() as net.AddressInfo).port);
  assert.equal(await get(port2), 200);
  await sleep(3800);
  assert.equal(proxyClosed, 1, 'the proxy closed its idle connection to the Node server first');
});

test('a server that closes idle connections without saying so: after the first such close the proxy closes its next ones first', async (t) => {
  const s = await rawServer(t, '', 2500);
  const port = await proxyTo(t, s.port);
  assert.equal(await get(port), 200);
  await sleep(3000);
  assert.equal(s.conns[0]!.closedBy, 'server', 'nothing known yet: the server closes the first one');
  assert.equal(await get(port), 200);
  assert.equal(s.conns.length, 2, 'a new connection (the first was closed)');
  await sleep(3000);
  assert.equal(s.conns[1]!.closedBy, 'proxy', 'learned: the proxy closes before the server\'s 2.5 s');
});

test('a learned shorter idle time expires (a server restart closing idle connections does not shorten them for good)', async (t) => {
  const s = await rawServer(t, '', 1200);
  const wheel = new TimerWheel();
  const pool = new UpstreamPool({ wheel, learnedIdleTtlMs: 1500 });
  t.after(() => { pool.close(); wheel.close(); });
  const key = `${HOST}:${s.port}`;
  const owner: UpstreamOwner = {
    onUpstreamConnect(c: UpstreamConn) { c.socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'); },
    onUpstreamData(c: UpstreamConn) { pool.release(c); }, // the 2-byte answer comes in one read
    onUpstreamEnd() {},
    onUpstreamError() {},
    onUpstreamDrain() {},
  };
  const first = pool.acquire(key, HOST, s.port, 2000, owner);
  assert.equal(pool.idleFor(first), 60_000, 'nothing learned yet: the default');
  await sleep(1700); // idle, then closed by the server at 1.2 s
  assert.equal(s.conns[0]!.closedBy, 'server');
  const second = pool.acquire(key, HOST, s.port, 2000, owner);
  assert.ok(pool.idleFor(second) <= 500, `learned from the close: ${pool.idleFor(second)} ms`);
  await sleep(1600);
  assert.equal(pool.idleFor(second), 60_000, 'the learned time expired');
});
