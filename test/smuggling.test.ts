// Request-smuggling corpus (test/fixtures/smuggling/corpus.json) through a real molt proxy to a real
// backend: CL.TE, TE.CL, TE.TE obfuscations, duplicate/bad Content-Length, chunk-size and extension
// tricks, obs-fold, bare CR/LF, NUL, over-long lines. Every case hides `GET /smuggled`; molt must answer
// 400 (431 for size limits) with Connection: close and close the connection, and the backend must
// never see /smuggled — not even the start of it. Each case is delivered whole and split at fixed
// pseudo-random points (separate TCP reads), since body bytes arriving with the head take another path.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { once } from 'node:events';
import { createProxy } from '../sidecar/proxy.js';
import { routingTo } from './helpers/real-routing.js';
import { FIXTURES } from './helpers/molt.js';

const HOST = '127.0.0.1';

interface Case { category: string; name: string; raw: string; status: number; alsoOk?: number[]; note?: string }

function expand(raw: string): Buffer {
  const text = raw.replace(/\{\{REPEAT:([\s\S]*?):(\d+)\}\}/g, (_m, s: string, n: string) => s.repeat(Number(n)));
  return Buffer.from(text, 'latin1');
}

const corpus = (JSON.parse(fs.readFileSync(path.join(FIXTURES, 'smuggling', 'corpus.json'), 'utf8')) as { cases: Case[] }).cases;

interface Backend { port: number; started: string[]; completed: string[]; connections: number }

async function backend(t: TestContext): Promise<Backend> {
  const b: Backend = { port: 0, started: [], completed: [], connections: 0 };
  const server = http.createServer({ requireHostHeader: false }, (req, res) => {
    b.started.push(req.url ?? '');
    req.resume();
    req.on('end', () => { b.completed.push(req.url ?? ''); res.end('ok ' + req.url); });
  });
  server.on('connection', () => { b.connections++; });
  server.listen(0, HOST);
  await once(server, 'listening');
  b.port = (server.address() as net.AddressInfo).port;
  t.after(() => { server.closeAllConnections(); server.close(); });
  return b;
}

/** Deterministic split points (mulberry32). */
function cutsFor(len: number, seed: number): number[] {
  let a = (seed * 2654435761 + len) >>> 0;
  const r = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const n = 1 + Math.floor(r() * 3);
  return [...new Set(Array.from({ length: n }, () => 1 + Math.floor(r() * (len - 1))))].sort((x, y) => x - y);
}

/** Send the parts as separate reads; return everything the proxy wrote until it closed. */
async function exchange(port: number, bytes: Buffer, cuts: number[]): Promise<{ text: string; closed: boolean }> {
  const sock = net.connect(port, HOST);
  sock.on('error', () => {});
  const chunks: Buffer[] = [];
  sock.on('data', (d: Buffer) => chunks.push(d));
  const closed = once(sock, 'close');
  await once(sock, 'connect');
  let p = 0;
  for (const c of [...cuts, bytes.length]) {
    if (sock.destroyed) break;
    sock.write(bytes.subarray(p, c));
    p = c;
    await new Promise((r) => setTimeout(r, 3));
  }
  // Bounded: the proxy must close by itself; a hang fails the test after 5 s.
  const timer = setTimeout(() => sock.destroy(new Error('proxy did not close the connection')), 5000);
  await closed;
  clearTimeout(timer);
  return { text: Buffer.concat(chunks).toString('latin1'), closed: true };
}

test(`smuggling corpus: ${corpus.length} cases, each rejected with close; the backend never sees /smuggled`, async (t) => {
  assert.ok(corpus.length >= 80, 'corpus loaded');
  const b = await backend(t);
  const routing = routingTo({ host: HOST, port: b.port });
  const proxy = createProxy({ routing });
  const { port } = await proxy.listen(0, HOST);
  t.after(() => proxy.close(100));

  const failures: string[] = [];
  for (const c of corpus) {
    const bytes = expand(c.raw);
    const deliveries: number[][] = [[], cutsFor(bytes.length, 1), cutsFor(bytes.length, 2), cutsFor(bytes.length, 3)];
    for (const cuts of deliveries) {
      const label = `${c.category} / ${c.name} (cuts ${JSON.stringify(cuts)})`;
      const before = { started: b.started.length, completed: b.completed.length };
      const { text } = await exchange(port, bytes, cuts);
      const statuses = [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
      const last = statuses[statuses.length - 1];
      if (last !== c.status && !(c.alsoOk ?? []).includes(last ?? 0)) failures.push(`${label}: expected ${c.status} + close, got ${JSON.stringify(text.slice(0, 120))}`);
      else if (!/Connection: close\r\n/.test(text.slice(text.lastIndexOf('HTTP/1.1 ')))) failures.push(`${label}: ${c.status} without Connection: close`);
      const started = b.started.slice(before.started);
      const completed = b.completed.slice(before.completed);
      if (started.some((u) => u.includes('smuggled'))) failures.push(`${label}: backend saw ${JSON.stringify(started)}`);
      // Only a fully valid request ahead of the bad one may complete upstream.
      const allowed = c.note ? ['/first'] : [];
      if (JSON.stringify(completed) !== JSON.stringify(allowed)) failures.push(`${label}: backend completed ${JSON.stringify(completed)}`);
      // Whole delivery: the head is validated together with the body bytes that came with it, so
      // the backend sees nothing at all (except the good first request).
      if (cuts.length === 0 && JSON.stringify(started) !== JSON.stringify(allowed)) failures.push(`${label}: backend started ${JSON.stringify(started)}`);
    }
  }
  assert.deepEqual(failures, []);
  assert.ok(!b.started.includes('/smuggled'));
});

test('smuggling: a valid request after a rejected one on another connection is still served', async (t) => {
  const b = await backend(t);
  const routing = routingTo({ host: HOST, port: b.port });
  const proxy = createProxy({ routing });
  const { port } = await proxy.listen(0, HOST);
  t.after(() => proxy.close(100));
  const bad = await exchange(port, expand(corpus[0]!.raw), []);
  assert.match(bad.text, /^HTTP\/1\.1 400 /);
  const good = await exchange(port, Buffer.from('GET /ok HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n'), []);
  assert.match(good.text, /^HTTP\/1\.1 200 [\s\S]*ok \/ok$/);
  assert.deepEqual(b.completed, ['/ok']);
});
