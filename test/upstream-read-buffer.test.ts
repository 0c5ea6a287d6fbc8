// Upstream read buffers (sidecar/upstream-pool.ts): every upstream connection reads into its own
// reused buffer, and an owner that keeps a view of the bytes past the read callback pins it (the
// next read goes into a new buffer). Node picks a socket's next read buffer right after the
// previous read callback, so a buffer must never be written again while an owner holds a view of
// it. These tests run real sockets over 127.0.0.1 with owners that keep views (and pin) or copy,
// interleave reads on many connections, and compare every byte with what the server sent.
// (A design with one landing buffer shared by idle connections was measured and dropped: see
// bench/README.md "Memory at 5,000 connections".)

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import net from 'node:net';
import { once } from 'node:events';
import { TimerWheel } from '../sidecar/timers.js';
import { READ_BUFFER_BYTES, UpstreamPool, type UpstreamConn, type UpstreamOwner } from '../sidecar/upstream-pool.js';

const HOST = '127.0.0.1';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Deterministic bytes that differ everywhere (bytes from another read show up as a mismatch). */
function pattern(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

/** A server whose accepted sockets the test writes to directly, found by the client's local port. */
async function server(t: TestContext): Promise<{ port: number; peer: (c: UpstreamConn) => Promise<net.Socket> }> {
  const byPort = new Map<number, net.Socket>();
  const srv = net.createServer({ noDelay: true }, (s) => {
    s.on('error', () => {});
    byPort.set(s.remotePort!, s);
  });
  srv.listen(0, HOST);
  await once(srv, 'listening');
  t.after(() => { for (const s of byPort.values()) s.destroy(); srv.close(); });
  const port = (srv.address() as net.AddressInfo).port;
  const peer = async (c: UpstreamConn): Promise<net.Socket> => {
    for (let i = 0; i < 400; i++) {
      const s = c.socket.localPort !== undefined ? byPort.get(c.socket.localPort) : undefined;
      if (s !== undefined) return s;
      await sleep(5);
    }
    throw new Error('server side of the connection never showed up');
  };
  return { port, peer };
}

type Mode = 'pin' | 'copy';

/** An owner that expects `expect` bytes: keeps views and pins ('pin') or copies ('copy'), then releases or keeps the conn. */
class Receiver implements UpstreamOwner {
  readonly kept: Buffer[] = [];
  got = 0;
  done = false;
  reads = 0;
  connected = false;
  constructor(readonly pool: UpstreamPool, readonly expect: number, readonly mode: Mode, readonly releaseWhenDone = true) {}
  onUpstreamConnect(): void { this.connected = true; }
  onUpstreamData(c: UpstreamConn, chunk: Buffer): void {
    this.reads++;
    this.got += chunk.length;
    if (this.mode === 'pin') { this.kept.push(chunk); c.pin(); } else this.kept.push(Buffer.from(chunk));
    if (this.got >= this.expect) {
      this.done = true;
      if (this.releaseWhenDone) this.pool.release(c); // inside the read callback, as Exchange.complete() does
    }
  }
  onUpstreamEnd(): void {}
  onUpstreamError(_c: UpstreamConn, kind: string, detail: string): void { throw new Error(`unexpected upstream error ${kind}: ${detail}`); }
  onUpstreamDrain(): void {}
  bytes(): Buffer { return Buffer.concat(this.kept); }
}

async function until(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

function newPool(t: TestContext): UpstreamPool {
  const wheel = new TimerWheel();
  const pool = new UpstreamPool({ wheel });
  t.after(() => { pool.close(); wheel.close(); });
  return pool;
}

test('interleaved responses on many connections, kept (pinned) or copied, over reused connections: every byte intact', async (t) => {
  const { port, peer } = await server(t);
  const pool = newPool(t);
  const N = 40;
  const key = `${HOST}:${port}`;
  for (let round = 0; round < 4; round++) {
    // Alternate modes so pinned and reused private buffers and the landing buffer all meet.
    const rx = Array.from({ length: N }, (_, i) => new Receiver(pool, 3000 + 997 * ((i + round) % 7), (i + round) % 3 === 0 ? 'copy' : 'pin'));
    const conns = rx.map((r) => pool.acquire(key, HOST, port, 5000, r));
    await until('all connected', () => conns.every((c, i) => c.reused || rx[i].connected));
    const socks = await Promise.all(conns.map(peer));
    const payload = rx.map((r, i) => pattern(r.expect, round * 1000 + i + 1));
    // Three pieces per response, written round-robin across the connections, yielding between
    // pieces so reads of different connections interleave.
    for (let piece = 0; piece < 3; piece++) {
      for (let i = 0; i < N; i++) {
        const p = payload[i];
        const from = Math.floor((p.length * piece) / 3);
        const to = Math.floor((p.length * (piece + 1)) / 3);
        socks[i].write(p.subarray(from, to));
      }
      await sleep(5);
    }
    await until(`round ${round} complete`, () => rx.every((r) => r.done));
    for (let i = 0; i < N; i++) assert.equal(sha(rx[i].bytes()), sha(payload[i]), `round ${round}, connection ${i} (${rx[i].mode}, ${rx[i].reads} reads)`);
    if (round > 0) assert.ok(conns.some((c) => c.reused), 'connections were reused');
  }
});

test('a response split into many small reads, kept across reads while other connections read: intact', async (t) => {
  const { port, peer } = await server(t);
  const pool = newPool(t);
  const key = `${HOST}:${port}`;
  const body = pattern(20_000, 7);
  const held = new Receiver(pool, body.length, 'pin');
  const c = pool.acquire(key, HOST, port, 5000, held);
  const others = Array.from({ length: 8 }, () => new Receiver(pool, 500, 'copy', false));
  const oc = others.map((r) => pool.acquire(key, HOST, port, 5000, r));
  const s = await peer(c);
  const os = await Promise.all(oc.map(peer));
  for (let off = 0, k = 0; off < body.length; off += 700, k++) {
    s.write(body.subarray(off, Math.min(off + 700, body.length)));
    // Meanwhile other connections read (their first reads land in the landing buffer).
    os[k % os.length].write(pattern(50, 100 + k));
    const before = held.reads;
    await until('the piece was read', () => held.reads > before || held.done);
  }
  await until('done', () => held.done);
  assert.ok(held.reads > 10, `split into ${held.reads} reads`);
  assert.equal(sha(held.bytes()), sha(body));
});

test('bytes a client keeps from its first read survive stray bytes on idle connections and first reads elsewhere', async (t) => {
  const { port, peer } = await server(t);
  const pool = newPool(t);
  const key = `${HOST}:${port}`;
  // Some idle connections (their next read would land in the landing buffer).
  const warm = Array.from({ length: 6 }, () => new Receiver(pool, 10, 'copy'));
  const wc = warm.map((r) => pool.acquire(key, HOST, port, 5000, r));
  const ws = await Promise.all(wc.map(peer));
  ws.forEach((s, i) => s.write(pattern(10, 200 + i)));
  await until('warm-up responses', () => warm.every((r) => r.done));
  assert.equal(pool.idleCount, 6);
  // A held response: one read, kept without copying (pinned), the connection stays busy.
  const first = pattern(1500, 9);
  const held = new Receiver(pool, 1_000_000, 'pin', false);
  const hc = pool.acquire(key, HOST, port, 5000, held); // reuses an idle connection
  assert.equal(hc.reused, true);
  const hs = ws[wc.indexOf(hc)];
  hs.write(first);
  await until('held read', () => held.got === first.length);
  // Stray bytes on the other idle connections (those are destroyed) and first reads on new ones.
  for (const [i, s] of ws.entries()) if (wc[i] !== hc) s.write(pattern(4000, 300 + i));
  const fresh = Array.from({ length: 4 }, () => new Receiver(pool, 4000, 'copy'));
  const fc = fresh.map((r) => pool.connect(key, HOST, port, 5000, r)); // new connections: their first read lands in the landing buffer
  const fs = await Promise.all(fc.map(peer));
  fs.forEach((s, i) => s.write(pattern(4000, 400 + i)));
  await until('fresh responses', () => fresh.every((r) => r.done));
  await until('stray-byte connections destroyed', () => pool.openCount === 1 + fresh.length);
  assert.equal(sha(held.bytes()), sha(first), 'the kept first read was not overwritten');
  fresh.forEach((r, i) => assert.equal(sha(r.bytes()), sha(pattern(4000, 400 + i))));
});

test('big bodies (1 MiB) streamed through private buffers, kept or copied, two at once: intact', async (t) => {
  const { port, peer } = await server(t);
  const pool = newPool(t);
  const key = `${HOST}:${port}`;
  const bodies = [pattern(1 << 20, 11), pattern(1 << 20, 12)];
  const rx = [new Receiver(pool, 1 << 20, 'pin'), new Receiver(pool, 1 << 20, 'copy')];
  const cs = rx.map((r) => pool.acquire(key, HOST, port, 5000, r));
  const ss = await Promise.all(cs.map(peer));
  ss.forEach((s, i) => s.write(bodies[i]));
  await until('both bodies', () => rx.every((r) => r.done), 20_000);
  rx.forEach((r, i) => assert.equal(sha(r.bytes()), sha(bodies[i]), r.mode));
  assert.ok(rx[1].reads > 1 && rx[1].kept.every((k) => k.length <= READ_BUFFER_BYTES), 'read in buffer-sized pieces');
});
