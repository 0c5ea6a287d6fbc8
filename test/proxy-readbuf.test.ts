// Upstream sockets read into one reused buffer per connection (upstream-pool.ts `onread`). Bytes
// that outlive a read callback (unflushed client writes, held CONCURRENT responses, partial heads,
// tunnels) must not be overwritten by the next read. These tests make every such case happen and
// compare the bytes the client gets with what the upstream sent.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import net from 'node:net';
import { once } from 'node:events';
import { createProxy } from '../sidecar/proxy.js';
import { Exchange } from '../sidecar/exchange.js';
import type { ClientConn } from '../sidecar/client-conn.js';
import type { UpstreamConn } from '../sidecar/upstream-pool.js';
import { BodyScanner, HeadScanner } from '../sidecar/framing.js';
import { FakeRouting, FakeTarget, type FakeRoute } from './helpers/fake-routing.js';
import { routingTo } from './helpers/real-routing.js';

const HOST = '127.0.0.1';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Deterministic bytes that differ everywhere (a reused buffer shows up as a mismatch). */
function pattern(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = seed * 2654435761 >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Raw upstream: `onRequest(sock, path)` answers each request head (no request bodies used here). */
async function rawBackend(t: TestContext, onRequest: (s: net.Socket, path: string) => void | Promise<void>): Promise<number> {
  const srv = net.createServer({ noDelay: true }, (s) => {
    let buf = '';
    let busy = Promise.resolve();
    s.on('error', () => {});
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      for (let i = buf.indexOf('\r\n\r\n'); i >= 0; i = buf.indexOf('\r\n\r\n')) {
        const head = buf.slice(0, i);
        buf = buf.slice(i + 4);
        const path = head.split(' ')[1]!;
        busy = busy.then(() => onRequest(s, path));
      }
    });
  });
  srv.listen(0, HOST);
  await once(srv, 'listening');
  t.after(() => srv.close());
  return (srv.address() as net.AddressInfo).port;
}

/** A proxy routing to `route`: one version → the real Routing class; fallback or shadow (injected
 *  decisions, failure statuses) → FakeRouting. */
async function proxy(t: TestContext, route: FakeRoute): Promise<number> {
  const single = !route.fallback && !route.shadow && route.primary.failureStatuses === null;
  const p = createProxy({ routing: single ? routingTo(...route.primary.endpoints) : new FakeRouting(route) });
  const a = await p.listen(0, HOST);
  t.after(() => p.close(100));
  return a.port;
}

const target = (id: string, port: number) => new FakeTarget(id, [{ host: HOST, port }]);

/** Reads until `need(bytes so far)` (the total byte count wanted, -1 = not known yet) is met,
 *  optionally not reading at all for `stallMs` first. */
async function readUntil(s: net.Socket, need: (b: Buffer) => number, stallMs = 0): Promise<Buffer> {
  if (stallMs > 0) { s.pause(); await sleep(stallMs); s.resume(); }
  const parts: Buffer[] = [];
  let n = 0;
  let want = -1;
  for await (const d of s) {
    parts.push(d as Buffer);
    n += (d as Buffer).length;
    if (want < 0 || n >= want) {
      const b = Buffer.concat(parts);
      parts.length = 0;
      parts.push(b);
      want = need(b);
      if (want >= 0 && n >= want) break;
    }
  }
  return Buffer.concat(parts);
}

/** Bytes needed for `count` responses with Content-Length (plus `extra` bytes after the last head); -1 = heads not all here. */
function responses(count: number, extra = 0): (b: Buffer) => number {
  return (b) => {
    let p = 0;
    for (let i = 0; i < count; i++) {
      const he = b.indexOf('\r\n\r\n', p);
      if (he < 0) return -1;
      const m = /Content-Length: (\d+)/i.exec(b.toString('latin1', p, he));
      p = he + 4 + (m ? Number(m[1]) : 0);
      if (i < count - 1 && b.length < p) return -1;
    }
    return p + extra;
  };
}

function bodyOf(raw: Buffer, start: number): { headEnd: number; head: string } {
  const headEnd = raw.indexOf('\r\n\r\n', start) + 4;
  return { headEnd, head: raw.toString('latin1', start, headEnd) };
}

test('large pipelined responses to a client that stalls arrive intact (unflushed writes keep their bytes)', async (t) => {
  const sizes = [3 << 20, 1 << 20, 700_001];
  const bodies = sizes.map((n, i) => pattern(n, i + 1));
  const up = await rawBackend(t, async (s, path) => {
    const i = Number(path.slice(1));
    const b = bodies[i]!;
    s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${b.length}\r\n\r\n`);
    // many writes, so the proxy sees many reads while the client's socket is backed up
    for (let o = 0; o < b.length; o += 50_000) {
      if (!s.write(b.subarray(o, o + 50_000))) await once(s, 'drain');
    }
  });
  const port = await proxy(t, { primary: target('v1', up) });
  const c = net.connect(port, HOST);
  t.after(() => c.destroy());
  await once(c, 'connect');
  c.write('GET /0 HTTP/1.1\r\nHost: a\r\n\r\nGET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n');
  const raw = await readUntil(c, responses(3), 300);
  let p = 0;
  for (let i = 0; i < sizes.length; i++) {
    // the three responses arrive back to back; find each head and slice its body
    const { headEnd, head } = bodyOf(raw, p);
    const len = Number(/Content-Length: (\d+)/i.exec(head)![1]);
    assert.equal(len, sizes[i]);
    assert.equal(sha(raw.subarray(headEnd, headEnd + len)), sha(bodies[i]!), `body ${i}`);
    p = headEnd + len;
  }
});

test('small reads relayed while the client is backed up (writes queue below the high-water mark) arrive intact', async (t) => {
  const bulk = 16 << 20;
  const body = pattern(bulk + 300 * 500, 3);
  const up = await rawBackend(t, async (s) => {
    s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`);
    // Pieces well below the proxy's write high-water mark, each its own read: once the client's
    // socket is full, a write that does not flush leaves less than the mark queued and the proxy
    // keeps reading from this upstream while the queued bytes are still views of its read buffer.
    for (let o = 0; o < bulk; o += 8000) {
      if (!s.write(body.subarray(o, Math.min(o + 8000, bulk)))) await once(s, 'drain');
      await new Promise((r) => setImmediate(r));
    }
    for (let o = bulk; o < body.length; o += 500) {
      s.write(body.subarray(o, o + 500));
      await sleep(1);
    }
  });
  const port = await proxy(t, { primary: target('v1', up) });
  const c = net.connect(port, HOST);
  t.after(() => c.destroy());
  await once(c, 'connect');
  c.write('GET /s HTTP/1.1\r\nHost: a\r\n\r\n');
  c.pause();
  await sleep(700);
  const raw = await readUntil(c, responses(1));
  const { headEnd } = bodyOf(raw, 0);
  assert.equal(sha(raw.subarray(headEnd, headEnd + body.length)), sha(body));
});

test('a response head split into many small reads is reassembled intact', async (t) => {
  const body = pattern(40_000, 7);
  const up = await rawBackend(t, async (s) => {
    const head = `HTTP/1.1 200 OK\r\nX-Long: ${'v'.repeat(300)}\r\nContent-Length: ${body.length}\r\n\r\n`;
    for (let i = 0; i < head.length; i += 7) { s.write(head.slice(i, i + 7)); await sleep(1); }
    s.write(body.subarray(0, 10));
    await sleep(5);
    s.write(body.subarray(10));
  });
  const port = await proxy(t, { primary: target('v1', up) });
  const c = net.connect(port, HOST);
  t.after(() => c.destroy());
  await once(c, 'connect');
  c.write('GET /x HTTP/1.1\r\nHost: a\r\n\r\n');
  const raw = await readUntil(c, responses(1));
  const { headEnd, head } = bodyOf(raw, 0);
  assert.match(head, /^HTTP\/1\.1 200 OK\r\n/);
  assert.match(head, new RegExp(`X-Long: ${'v'.repeat(300)}\r\n`));
  assert.equal(sha(raw.subarray(headEnd, headEnd + body.length)), sha(body));
});

test('CONCURRENT: a held shadow response (head and body bytes kept across reads) is relayed intact', async (t) => {
  // End to end only; whether the held bytes are pinned is decided deterministically by the
  // stand-in connection tests at the end of this file.
  const shadowBody = pattern(200_000, 11);
  let shadowHeadSent!: () => void;
  const shadowAnswered = new Promise<void>((r) => { shadowHeadSent = r; });
  const primary = await rawBackend(t, async (s) => {
    await shadowAnswered; // the shadow answers first and is held
    s.write('HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\ndown');
  });
  const shadow = await rawBackend(t, async (s) => {
    s.write(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nX-Shadow: yes\r\nContent-Length: ${shadowBody.length}\r\n\r\n`), shadowBody.subarray(0, 1000)]), () => shadowHeadSent());
    await sleep(20);
    s.write(shadowBody.subarray(1000, 5000));
    await sleep(20);
    s.write(shadowBody.subarray(5000));
  });
  // Meanwhile another request on another connection keeps the same upstreams' buffers busy.
  const port = await proxy(t, { primary: target('v2', primary), shadow: target('v1', shadow) });
  const c = net.connect(port, HOST);
  t.after(() => c.destroy());
  await once(c, 'connect');
  c.write('GET /h HTTP/1.1\r\nHost: a\r\n\r\n');
  const raw = await readUntil(c, responses(1));
  const { headEnd, head } = bodyOf(raw, 0);
  assert.match(head, /^HTTP\/1\.1 200 OK\r\n/);
  assert.match(head, /X-Shadow: yes/);
  assert.equal(sha(raw.subarray(headEnd, headEnd + shadowBody.length)), sha(shadowBody));
});

test('Upgrade tunnel: a burst from the upstream to a stalled client arrives intact', async (t) => {
  const burst = pattern(2 << 20, 5);
  const up = await rawBackend(t, async (s) => {
    s.write('HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n');
    s.write(burst.subarray(0, 100)); // may arrive with the head
    await sleep(5);
    for (let o = 100; o < burst.length; o += 64_000) {
      if (!s.write(burst.subarray(o, o + 64_000))) await once(s, 'drain');
    }
  });
  const port = await proxy(t, { primary: target('v1', up) });
  const c = net.connect(port, HOST);
  t.after(() => c.destroy());
  await once(c, 'connect');
  c.write('GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n');
  const raw = await readUntil(c, responses(1, burst.length), 300);
  const { headEnd, head } = bodyOf(raw, 0);
  assert.match(head, /^HTTP\/1\.1 101 /);
  assert.equal(sha(raw.subarray(headEnd, headEnd + burst.length)), sha(burst));
});

// ---- client side: request bytes read into the client connection's reused buffer ----

/** Upstream that reads each request (Content-Length body) and answers with the body's sha256.
 *  `stallMs`: do not read at all for that long after the connection opens. `status(path)`: answer code. */
async function hashBackend(t: TestContext, stallMs = 0, status: (path: string) => number = () => 200): Promise<{ port: number; seen: string[] }> {
  const seen: string[] = [];
  const srv = net.createServer({ noDelay: true }, async (s) => {
    s.on('error', () => {});
    if (stallMs > 0) { s.pause(); await sleep(stallMs); s.resume(); }
    let buf = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const he = buf.indexOf('\r\n\r\n');
        if (he < 0) return;
        const head = buf.toString('latin1', 0, he);
        const len = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0);
        if (buf.length < he + 4 + len) return;
        const h = sha(buf.subarray(he + 4, he + 4 + len));
        const path = head.split(' ')[1]!;
        buf = buf.subarray(he + 4 + len);
        seen.push(path + ' ' + h);
        const code = status(path);
        s.write(`HTTP/1.1 ${code} X\r\nContent-Length: ${h.length}\r\n\r\n${h}`);
      }
    });
  });
  srv.listen(0, HOST);
  await once(srv, 'listening');
  t.after(() => srv.close());
  return { port: (srv.address() as net.AddressInfo).port, seen };
}

/** Writes `b` in `piece`-byte writes, each its own read on the proxy (a macrotask apart). */
async function writePieces(s: net.Socket, b: Buffer, piece: number): Promise<void> {
  for (let o = 0; o < b.length; o += piece) {
    if (!s.write(b.subarray(o, o + piece))) await once(s, 'drain');
    await new Promise((r) => setImmediate(r));
  }
}

test('a large upload to an upstream that stalls arrives intact (unflushed upstream writes keep their bytes)', async (t) => {
  const body = pattern(16 << 20, 21);
  const up = await hashBackend(t, 700);
  const port = await proxy(t, { primary: target('v1', up.port) });
  const c = net.connect({ port, host: HOST, noDelay: true });
  t.after(() => c.destroy());
  await once(c, 'connect');
  c.write(`POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: ${body.length}\r\n\r\n`);
  await writePieces(c, body, 4000);
  const raw = await readUntil(c, responses(1));
  assert.equal(raw.toString('latin1', raw.indexOf('\r\n\r\n') + 4), sha(body));
});

test('pipelined requests split at every boundary are parsed from kept bytes intact', async (t) => {
  const up = await hashBackend(t);
  const port = await proxy(t, { primary: target('v1', up.port) });
  const c = net.connect({ port, host: HOST, noDelay: true });
  t.after(() => c.destroy());
  await once(c, 'connect');
  const bodies = [pattern(3000, 31), pattern(10, 32), pattern(20_000, 33)];
  const wire = Buffer.concat(bodies.map((b, i) => Buffer.concat([
    Buffer.from(`POST /p${i} HTTP/1.1\r\nHost: a\r\nX-Pad: ${'z'.repeat(500 + i)}\r\nContent-Length: ${b.length}\r\n\r\n`), b])));
  await writePieces(c, wire, 97);
  const raw = await readUntil(c, responses(3));
  const hashes = raw.toString('latin1').split(/HTTP\/1\.1 200 X\r\n[^]*?\r\n\r\n/).filter(Boolean);
  assert.deepEqual(hashes, bodies.map(sha));
  assert.deepEqual(up.seen, bodies.map((b, i) => `/p${i} ${sha(b)}`));
});

test('failover resends a retained request body (kept across reads) intact', async (t) => {
  const body = pattern(200_000, 41);
  const primary = await hashBackend(t, 0, () => 500);
  const fallback = await hashBackend(t);
  const port = await proxy(t, { primary: new FakeTarget('v2', [{ host: HOST, port: primary.port }], { failureStatuses: [500] }), fallback: target('v1', fallback.port) });
  const c = net.connect({ port, host: HOST, noDelay: true });
  t.after(() => c.destroy());
  await once(c, 'connect');
  // GET is retryable, so its body is retained for the fallback.
  c.write(`GET /r HTTP/1.1\r\nHost: a\r\nContent-Length: ${body.length}\r\n\r\n`);
  await writePieces(c, body, 3000);
  const raw = await readUntil(c, responses(1));
  assert.match(raw.toString('latin1'), /^HTTP\/1\.1 200 /);
  assert.deepEqual(primary.seen, [`/r ${sha(body)}`]);
  assert.deepEqual(fallback.seen, [`/r ${sha(body)}`]);
});

// ---- the pin rule itself, deterministically ----
//
// The end-to-end tests above need the kernel and the scheduler to line up before a missing pin
// shows (a held response is only damaged when the client socket is backed up at the moment it is
// relayed). Here an Exchange gets its reads from a stand-in connection that does what
// UpstreamConn's `onread` does to an unpinned buffer: the next read overwrites it. Every case in
// which an exchange keeps read bytes past the read callback must pin.

/** A stand-in UpstreamConn: one reused read buffer, overwritten by the next read unless pinned. */
class ReusingConn {
  readonly head = new HeadScanner(false, 65536, 100);
  readonly body = new BodyScanner(65536);
  readonly buf = Buffer.alloc(32 * 1024);
  pinned = false;
  paused = false;
  readonly socket = {
    pause: () => { this.paused = true; },
    resume: () => { this.paused = false; },
    isPaused: () => this.paused,
  };
  disarm(): void {}
  armResponseTimeout(): void {}
  pin(): void { this.pinned = true; }
  /** Deliver `bytes` as one read into the reused buffer (a new buffer if the last one was pinned). */
  read(ex: Exchange, bytes: Buffer): void {
    const b = this.pinned ? Buffer.alloc(this.buf.length) : this.buf;
    if (this.pinned) { this.pinned = false; (this as { buf: Buffer }).buf = b; }
    bytes.copy(b);
    ex.onUpstreamData(this as unknown as UpstreamConn, b.subarray(0, bytes.length));
  }
  /** What the kernel's next read would do to an unpinned buffer. */
  scribble(): void { if (!this.pinned) this.buf.fill(0x78); }
}

/** The client side of an exchange, reduced to what Exchange calls; `onHead` decides like the policy would. */
function standInClient(onHead: (ex: Exchange) => void) {
  const relayed: Buffer[] = [];
  const routing = new FakeRouting();
  return {
    relayed,
    routing,
    gen: 0, isHead: false, expectContinue: false, upgrade: false,
    writer: { flushed: true, write: (b: Buffer) => { relayed.push(b); return true; } },
    proxy: { routing, pool: { destroy: () => {}, release: () => {} }, limits: { maxRetryBodyBytes: 1 << 20 } },
    upgradeFor: () => false,
    writeInterim: () => {},
    onExchangeHead: onHead,
    relayData(ex: Exchange, b: Buffer): void { relayed.push(b); },
    relayDone: () => {},
    maybeResume: () => {},
    bufferedResponse: (ex: Exchange) => { relayed.push(Buffer.from(ex.headBuf!.subarray(0, ex.headLen))); },
  };
}

function exchangeOn(client: ReturnType<typeof standInClient>, conn: ReusingConn, role: 'primary' | 'shadow'): Exchange {
  const ex = new Exchange(client as unknown as ClientConn, new FakeTarget(role, [{ host: HOST, port: 1 }]), role);
  ex.conn = conn as unknown as UpstreamConn;
  ex.requestDone = true;
  ex.written = true;
  return ex;
}

const HEAD = 'HTTP/1.1 200 OK\r\nX-Shadow: yes\r\nContent-Length: 5000\r\n\r\n';

test('a held CONCURRENT response keeps its head and body bytes when the connection reads again (pinned)', () => {
  const conn = new ReusingConn();
  const client = standInClient((ex) => ex.hold()); // the shadow answered first: held until the primary decides
  const ex = exchangeOn(client, conn, 'shadow');
  const body = pattern(1000, 51);
  conn.read(ex, Buffer.concat([Buffer.from(HEAD), body]));
  assert.equal(ex.state, 'hold');
  assert.equal(conn.paused, true, 'a held response pauses its socket');
  conn.scribble();
  assert.equal(ex.headBuf!.toString('latin1', 0, ex.headLen), HEAD, 'held head intact');
  assert.equal(sha(ex.rest!), sha(body), 'held body bytes intact');
});

test('a response being collected (small, could still fail over) keeps its head when the connection reads again (pinned)', () => {
  const conn = new ReusingConn();
  const client = standInClient((ex) => ex.startBuffering());
  const ex = exchangeOn(client, conn, 'primary');
  const body = pattern(5000, 52);
  conn.read(ex, Buffer.concat([Buffer.from(HEAD), body.subarray(0, 1500)]));
  assert.equal(ex.state, 'buffer');
  conn.scribble();
  conn.read(ex, body.subarray(1500));
  assert.equal(client.relayed.length, 1, 'the collected response was handed over once complete');
  assert.equal(client.relayed[0]!.toString('latin1'), HEAD, 'kept head intact');
  assert.equal(sha(ex.rest!), sha(body), 'collected body intact');
});

test('a response head split across reads is reassembled from kept bytes (pinned)', () => {
  const conn = new ReusingConn();
  const heads: string[] = [];
  const client = standInClient((ex) => { heads.push(ex.headBuf!.toString('latin1', 0, ex.headLen)); ex.hold(); });
  const ex = exchangeOn(client, conn, 'shadow');
  conn.read(ex, Buffer.from(HEAD.slice(0, 20)));
  conn.scribble();
  conn.read(ex, Buffer.from(HEAD.slice(20)));
  assert.deepEqual(heads, [HEAD]);
});

test('body bytes relayed to a client that did not take them at once stay intact (pinned)', () => {
  const conn = new ReusingConn();
  const client = standInClient((ex) => { ex.state = 'relay'; });
  const ex = exchangeOn(client, conn, 'primary');
  conn.read(ex, Buffer.from(HEAD));
  client.writer.flushed = false; // the client socket is backed up: writes keep views
  const piece = pattern(2000, 53);
  conn.read(ex, piece);
  conn.scribble();
  assert.equal(sha(client.relayed.at(-1)!), sha(piece));
});
