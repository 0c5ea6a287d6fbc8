// Resource limits of the sidecar proxy under hostile load (docs/limits.md): thousands of idle
// connections, slowloris heads, huge bodies, deep pipelines. Memory is measured in a child process
// that runs only the proxy (clients and backend live in this process), so the numbers are the proxy's.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { once } from 'node:events';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createProxy, type ProxyLimits } from '../sidecar/proxy.js';
import { routingTo } from './helpers/real-routing.js';

const HOST = '127.0.0.1';
const DIST = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const MiB = 1024 * 1024;

// ---- a proxy in a child process, reporting its own memory ----

const CHILD = `
import { createProxy } from ${JSON.stringify(pathToFileURL(path.join(DIST, 'sidecar/proxy.js')).href)};
import { routingTo } from ${JSON.stringify(pathToFileURL(path.join(DIST, 'test/helpers/real-routing.js')).href)};
const routing = routingTo({ host: '127.0.0.1', port: Number(process.env.BACKEND_PORT) });
const proxy = createProxy({ routing, limits: JSON.parse(process.env.LIMITS) });
const { port } = await proxy.listen(0, '127.0.0.1');
let maxRss = 0;
const sample = () => { const r = process.memoryUsage.rss(); if (r > maxRss) maxRss = r; };
setInterval(sample, 10).unref();
process.on('message', (m) => {
  if (m === 'reset') { globalThis.gc?.(); sample(); maxRss = process.memoryUsage.rss(); process.send({ rss: maxRss }); }
  else if (m === 'stats') { globalThis.gc?.(); sample(); proxy.server.getConnections((e, n) => process.send({ rss: process.memoryUsage.rss(), maxRss, connections: n })); }
  else if (m === 'exit') proxy.close(0).then(() => process.exit(0));
});
process.send({ port });
`;

interface ChildProxy { port: number; child: ChildProcess; ask(m: string): Promise<{ rss: number; maxRss: number; connections: number }> }

async function childProxy(t: TestContext, backendPort: number, limits: Partial<ProxyLimits>): Promise<ChildProxy> {
  const child = spawn(process.execPath, ['--expose-gc', '--input-type=module', '-e', CHILD], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, BACKEND_PORT: String(backendPort), LIMITS: JSON.stringify(limits) },
  });
  t.after(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
  const [first] = await once(child, 'message') as [{ port: number }];
  const ask = async (m: string): Promise<{ rss: number; maxRss: number; connections: number }> => {
    const reply = once(child, 'message');
    child.send(m);
    return (await reply)[0] as { rss: number; maxRss: number; connections: number };
  };
  return { port: first.port, child, ask };
}

async function backend(t: TestContext, handler: http.RequestListener): Promise<number> {
  const server = http.createServer({ keepAliveTimeout: 30000 }, handler);
  server.listen(0, HOST);
  await once(server, 'listening');
  t.after(() => { server.closeAllConnections(); server.close(); });
  return (server.address() as net.AddressInfo).port;
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, HOST);
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/** Read one Content-Length response from a raw socket. */
function readResponse(s: net.Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const onData = (d: Buffer): void => {
      buf += d.toString('latin1');
      const he = buf.indexOf('\r\n\r\n');
      if (he < 0) return;
      const m = /content-length: (\d+)/i.exec(buf.slice(0, he));
      if (buf.length >= he + 4 + Number(m?.[1] ?? 0)) { s.off('data', onData); s.off('close', onClose); resolve(buf); }
    };
    const onClose = (): void => reject(new Error('closed before a response: ' + JSON.stringify(buf)));
    s.on('data', onData);
    s.once('close', onClose);
  });
}

// ---- tests ----

test('2000 idle client connections: proxy memory stays bounded, the timeouts close every one', { timeout: 180_000 }, async (t) => {
  const bport = await backend(t, (_q, s) => s.end('ok'));
  // Timeouts long enough that opening 2000 connections on a loaded machine (SYN retries when the accept
  // queue overflows) finishes before the first one may close.
  const p = await childProxy(t, bport, { idleTimeoutMs: 12000, headerTimeoutMs: 15000 });
  const base = await p.ask('reset');
  const N = 2000;
  const socks: net.Socket[] = [];
  const closed: Promise<unknown>[] = [];
  t.after(() => { for (const s of socks) s.destroy(); });
  // Half never send a byte (header timeout, silent close), half are idle keep-alive after one request.
  for (let i = 0; i < N; i += 100) {
    const batch = await Promise.all(Array.from({ length: 100 }, () => {
      const c = connect(p.port);
      // Listen for the close at once: a socket the proxy closes before the whole batch has connected
      // would otherwise never resolve (this hung CI for half an hour).
      closed.push(c.then((s) => (s.destroyed ? undefined : new Promise<void>((resolve) => s.once('close', () => resolve())))));
      return c;
    }));
    for (const s of batch) {
      s.on('error', () => {});
      socks.push(s);
    }
  }
  const active = socks.filter((_s, i) => i % 2 === 1);
  for (let i = 0; i < active.length; i += 100) {
    await Promise.all(active.slice(i, i + 100).map(async (s) => {
      const r = readResponse(s);
      s.write('GET / HTTP/1.1\r\nHost: app.test\r\n\r\n');
      assert.match(await r, /^HTTP\/1\.1 200 /);
    }));
  }
  const loaded = await p.ask('stats');
  assert.equal(loaded.connections, N, 'all connections open and held by the proxy');
  const perConn = (loaded.rss - base.rss) / N;
  t.diagnostic(`proxy RSS +${((loaded.rss - base.rss) / MiB).toFixed(1)} MiB for ${N} connections (${(perConn / 1024).toFixed(1)} KiB each)`);
  // Sockets, scanners and buffers: a few KiB per idle connection, nowhere near a buffer per connection.
  assert.ok(loaded.rss - base.rss < 48 * MiB, `RSS grew ${((loaded.rss - base.rss) / MiB).toFixed(1)} MiB for ${N} connections (${(perConn / 1024).toFixed(1)} KiB each)`);
  // Every connection is closed by the proxy (the client never closes): idle timeout / header timeout.
  const received: string[] = [];
  for (const s of socks.filter((_s, i) => i % 2 === 0)) s.on('data', (d: Buffer) => received.push(d.toString('latin1')));
  await Promise.all(closed);
  assert.deepEqual(received, [], 'connections that never sent a byte are closed silently (no 408)');
  const after = await p.ask('stats');
  assert.equal(after.connections, 0);
});

test('slowloris: heads trickled a byte at a time get 408 + close at the header deadline, not later', async (t) => {
  let seen = 0;
  const bport = await backend(t, (_q, s) => { seen++; s.end('ok'); });
  const routing = routingTo({ host: HOST, port: bport });
  const proxy = createProxy({ routing, limits: { headerTimeoutMs: 1000 } });
  const { port } = await proxy.listen(0, HOST);
  t.after(() => proxy.close(0));
  const head = 'GET / HTTP/1.1\r\nHost: app.test\r\n' + 'X-Slow: ' + 'a'.repeat(200);
  const M = 100;
  const results = await Promise.all(Array.from({ length: M }, async () => {
    const s = await connect(port);
    s.on('error', () => {});
    let text = '';
    s.on('data', (d: Buffer) => { text += d.toString('latin1'); });
    const closed = once(s, 'close');
    let sent = 0;
    let open = true;
    void closed.then(() => { open = false; });
    // One byte every 50 ms: the whole head would take 12 s; each byte must not extend the deadline.
    while (open && sent < head.length) {
      s.write(head[sent]!);
      sent++;
      await new Promise((r) => setTimeout(r, 50));
    }
    await closed;
    return { text, sent };
  }));
  for (const r of results) {
    assert.match(r.text, /^HTTP\/1\.1 408 Request Timeout\r\n[\s\S]*Connection: close\r\n/);
    // 1000 ms deadline on a 500 ms wheel: closed after at most ~1.5 s of trickling (30 bytes), far from 12 s.
    assert.ok(r.sent < 60, `closed after ${r.sent} bytes`);
  }
  assert.equal(seen, 0, 'nothing reached the backend');
});

test('huge bodies: 200 MB upload and 200 MB download stream through with bounded proxy memory', async (t) => {
  const SIZE = 200 * MiB;
  const block = Buffer.alloc(64 * 1024, 0x61);
  const bport = await backend(t, (req, res) => {
    if (req.method === 'GET') {
      res.writeHead(200, { 'content-length': String(SIZE) });
      let left = SIZE;
      const pump = (): void => {
        while (left > 0) {
          const n = Math.min(left, block.length);
          left -= n;
          if (!res.write(n === block.length ? block : block.subarray(0, n))) { res.once('drain', pump); return; }
        }
        res.end();
      };
      pump();
      return;
    }
    let n = 0;
    req.on('data', (c: Buffer) => { n += c.length; });
    req.on('end', () => res.end(String(n)));
  });
  const p = await childProxy(t, bport, {});
  const base = await p.ask('reset');

  // Upload: Content-Length and chunked, written with backpressure.
  for (const chunked of [false, true]) {
    const got = await new Promise<string>((resolve, reject) => {
      const req = http.request({ host: HOST, port: p.port, method: 'POST', path: '/up', agent: false, headers: chunked ? { 'transfer-encoding': 'chunked' } : { 'content-length': String(SIZE) } }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => { body += c; });
        res.on('end', () => resolve(body));
      });
      req.on('error', reject);
      let left = SIZE;
      const pump = (): void => {
        while (left > 0) {
          left -= block.length;
          if (!req.write(block)) { req.once('drain', pump); return; }
        }
        req.end();
      };
      pump();
    });
    assert.equal(got, String(SIZE), `backend received the whole ${chunked ? 'chunked' : 'Content-Length'} body`);
  }
  // Download.
  const down = await new Promise<number>((resolve, reject) => {
    http.get({ host: HOST, port: p.port, path: '/down', agent: false }, (res) => {
      let n = 0;
      res.on('data', (c: Buffer) => { n += c.length; });
      res.on('end', () => resolve(n));
    }).on('error', reject);
  });
  assert.equal(down, SIZE);
  const st = await p.ask('stats');
  const growth = st.maxRss - base.rss;
  t.diagnostic(`proxy peak RSS +${(growth / MiB).toFixed(1)} MiB while relaying 3 × 200 MB`);
  assert.ok(growth < 64 * MiB, `proxy RSS grew ${(growth / MiB).toFixed(1)} MiB while relaying 3 × 200 MB`);
});

interface ConnPeek { pending: Buffer | null; pendingStart: number; readPaused: boolean }

test('pipelining: 5000 requests in one stream are answered in order with bounded buffering', async (t) => {
  let inFlight = 0;
  let maxInFlight = 0;
  const bport = await backend(t, (req, res) => {
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    setImmediate(() => { inFlight--; res.end(req.url!.slice(2)); });
  });
  const routing = routingTo({ host: HOST, port: bport });
  const limits = { maxPipelined: 32, maxHeaderBytes: 65536 };
  const proxy = createProxy({ routing, limits });
  const { port } = await proxy.listen(0, HOST);
  t.after(() => proxy.close(0));
  const conns = (proxy as unknown as { conns: Set<ConnPeek> }).conns;

  const N = 5000;
  const s = await connect(port);
  t.after(() => s.destroy());
  let maxPending = 0;
  let paused = 0;
  let done = false;
  const peek = (): void => {
    for (const c of conns) {
      if (c.pending !== null) maxPending = Math.max(maxPending, c.pending.length - c.pendingStart);
      if (c.readPaused) paused++;
    }
    if (!done) setImmediate(peek);
  };
  peek();
  let text = '';
  let count = 0;
  const all = new Promise<void>((resolve) => {
    s.on('data', (d: Buffer) => {
      const chunk = d.toString('latin1');
      // Count status lines in the new bytes only (a status line may straddle two reads).
      const tail = text.slice(-16);
      count += ((tail + chunk).match(/HTTP\/1\.1 200 /g) ?? []).length - (tail.match(/HTTP\/1\.1 200 /g) ?? []).length;
      text += chunk;
      if (count >= N) resolve();
    });
  });
  const reqs: string[] = [];
  for (let i = 0; i < N; i++) reqs.push(`GET /p${i} HTTP/1.1\r\nHost: app.test\r\n\r\n`);
  const whole = Buffer.from(reqs.join(''));
  s.write(whole);
  await all;
  done = true;
  // In order: bodies are the request numbers.
  const bodies = text.split('HTTP/1.1 200 ').slice(1).map((r) => r.slice(r.indexOf('\r\n\r\n') + 4));
  assert.equal(bodies.length, N);
  for (let i = 0; i < N; i++) if (bodies[i] !== String(i)) assert.fail(`response ${i} is ${JSON.stringify(bodies[i])}`);
  assert.equal(maxInFlight, 1, 'one request at a time per client connection');
  assert.ok(paused > 0, 'the proxy stopped reading while requests queued');
  // At most maxHeaderBytes (or maxPipelined heads) plus one socket read are ever buffered.
  t.diagnostic(`max buffered ${maxPending} of ${whole.length} bytes; reads paused in ${paused} samples`);
  assert.ok(maxPending <= limits.maxHeaderBytes + 64 * 1024, `buffered ${maxPending} of ${whole.length} bytes`);
});
