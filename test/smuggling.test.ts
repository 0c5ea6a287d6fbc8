// Request-smuggling corpus (test/fixtures/smuggling/corpus.json) through a real molt proxy to a real
// backend: CL.TE, TE.CL, TE.TE obfuscations, duplicate/bad Content-Length, chunk-size and extension
// tricks, obs-fold, bare CR/LF, NUL, over-long lines, look-alikes of framing/hop-by-hop/proxy header
// names (`Transfer_Encoding`), asterisk-form without OPTIONS, userinfo in absolute-form, control
// characters in the fields molt interprets. Every case hides `GET /smuggled`; molt must answer
// 400 (431 for size limits) with Connection: close and close the connection, and the backend must
// never see /smuggled — not even the start of it. Each case is delivered whole and split at fixed
// pseudo-random points (separate TCP reads), since body bytes arriving with the head take another path.
//
// Below the corpus: the same look-alikes against a raw backend that folds `_` to `-` in header names
// (CGI-style) and frames by the folded names — the desync molt has to prevent — and the inputs molt
// now forwards (HTTP/1.2 as HTTP/1.1, control characters in other field values, OPTIONS *), checked
// byte for byte at a raw backend.

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

/** Send the parts as separate reads; return everything the proxy wrote until it closed. A proxy that
 *  keeps the connection open fails the test after 5 s, or with `hangOk` returns what it wrote by then
 *  (closed: false), so the caller can first show what reached the backend. */
async function exchange(port: number, bytes: Buffer, cuts: number[], hangOk = false): Promise<{ text: string; closed: boolean }> {
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
  let hung = false;
  const timer = setTimeout(() => {
    hung = true;
    if (hangOk) sock.destroy();
    else sock.destroy(new Error('proxy did not close the connection'));
  }, hangOk ? 1000 : 5000);
  await closed;
  clearTimeout(timer);
  return { text: Buffer.concat(chunks).toString('latin1'), closed: !hung };
}

test(`smuggling corpus: ${corpus.length} cases, each rejected with close; the backend never sees /smuggled`, async (t) => {
  assert.ok(corpus.length >= 130, 'corpus loaded');
  for (const cat of ['lookalike', 'target', 'ctl', 'version']) assert.ok(corpus.some((c) => c.category === cat), cat);
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
      // molt's own refusal, not a backend's (a backend refusing too would hide a molt regression);
      // `alsoOk` statuses are the backend's answer by design.
      else if (last === c.status && !/\r\n\r\nmolt: [^\r\n]*$/.test(text)) failures.push(`${label}: the ${c.status} is not molt's: ${JSON.stringify(text.slice(-80))}`);
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

// ---- raw backend: optionally folds header names the CGI way, frames by the folded names ----

interface RawRequest { line: string; head: string; headers: [string, string][]; body: string }
interface RawBackend { port: number; requests: RawRequest[]; errors: string[] }

/** Fold a header name the way CGI-style environments do (RFC 3875 §4.1.18: "-" and "_" are the same). */
const cgiFold = (name: string): string => name.toLowerCase().replace(/_/g, '-');

/**
 * A keep-alive HTTP/1.1 server written on raw `net`, so it sees every byte: heads are recorded verbatim.
 * With `fold`, it looks up Content-Length / Transfer-Encoding after folding names, so `Transfer_Encoding:
 * chunked` frames the body for it (Transfer-Encoding wins over Content-Length, RFC 9112 §6.3). Every
 * request it parses is recorded and answered `200` with `ok <target>`.
 */
async function rawBackend(t: TestContext, fold: boolean): Promise<RawBackend> {
  const b: RawBackend = { port: 0, requests: [], errors: [] };
  const server = net.createServer((sock) => {
    sock.on('error', () => {});
    let buf = Buffer.alloc(0);
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const he = buf.indexOf('\r\n\r\n');
        if (he < 0) return;
        const head = buf.toString('latin1', 0, he + 4);
        const lines = head.slice(0, -4).split('\r\n');
        const headers = lines.slice(1).map((l): [string, string] => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()]);
        const get = (n: string): string | undefined => headers.find(([k]) => (fold ? cgiFold(k) : k.toLowerCase()) === n)?.[1];
        let p = he + 4;
        let body = '';
        if (get('transfer-encoding')?.toLowerCase() === 'chunked') {
          for (;;) {
            const le = buf.indexOf('\r\n', p);
            if (le < 0) return; // wait for more
            const size = parseInt(buf.toString('latin1', p, le), 16);
            if (!Number.isFinite(size)) { b.errors.push('bad chunk'); sock.destroy(); return; }
            if (size === 0) {
              const te = buf.indexOf('\r\n', le + 2);
              if (te < 0) return;
              p = te + 2; // no trailers in these tests: "0\r\n\r\n"
              break;
            }
            if (buf.length < le + 2 + size + 2) return;
            body += buf.toString('latin1', le + 2, le + 2 + size);
            p = le + 2 + size + 2;
          }
        } else {
          const n = Number(get('content-length') ?? '0');
          if (buf.length < p + n) return;
          body = buf.toString('latin1', p, p + n);
          p += n;
        }
        buf = buf.subarray(p);
        b.requests.push({ line: lines[0]!, head, headers, body });
        const target = lines[0]!.split(' ')[1] ?? '';
        sock.write(`HTTP/1.1 200 OK\r\nContent-Length: ${3 + target.length}\r\n\r\nok ${target}`);
      }
    });
  });
  server.listen(0, HOST);
  await once(server, 'listening');
  b.port = (server.address() as net.AddressInfo).port;
  t.after(() => server.close());
  return b;
}

async function proxyTo(t: TestContext, port: number): Promise<number> {
  const routing = routingTo({ host: HOST, port });
  const proxy = createProxy({ routing });
  const l = await proxy.listen(0, HOST);
  t.after(() => proxy.close(100));
  return l.port;
}

const SMUGGLED = 'GET /smuggled HTTP/1.1\r\nHost: app.test\r\n\r\n';
const DELIVERIES = (len: number): number[][] => [[], cutsFor(len, 11), cutsFor(len, 12), Array.from({ length: Math.min(len - 1, 40) }, (_v, i) => i + 1)];

test('look-alikes vs a backend that folds "_" to "-": 400 + close, the backend sees nothing smuggled', async (t) => {
  const b = await rawBackend(t, true);
  const port = await proxyTo(t, b.port);

  // The folding backend is a real desync target: sent to it directly, one stream becomes two requests.
  const clte = `POST /a HTTP/1.1\r\nHost: app.test\r\nContent-Length: ${5 + SMUGGLED.length}\r\nTransfer_Encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`;
  const direct = net.connect(b.port, HOST);
  direct.on('error', () => {});
  await once(direct, 'connect');
  direct.write(clte);
  for (let i = 0; i < 100 && b.requests.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
  direct.destroy();
  assert.deepEqual(b.requests.map((r) => r.line), ['POST /a HTTP/1.1', 'GET /smuggled HTTP/1.1'], 'the backend desyncs when it gets the bytes');
  b.requests.length = 0;

  const attacks = [
    clte,
    // TE.CL: molt would read the chunked body, the backend 4 bytes of it and then a request.
    `POST /b HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nContent_Length: 4\r\n\r\n${SMUGGLED.length.toString(16)}\r\n${SMUGGLED}\r\n0\r\n\r\n`,
    // molt would see no body and forward the next request, the backend would swallow it as a body.
    `GET /c HTTP/1.1\r\nHost: app.test\r\ncontent_length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`,
    `POST /d HTTP/1.1\r\nHost: app.test\r\nContent-Length: ${5 + SMUGGLED.length}\r\nTRANSFER_ENCODING: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`,
    // A valid request first: it is served; the look-alike behind it is refused.
    `GET /first HTTP/1.1\r\nHost: app.test\r\n\r\nPOST /e HTTP/1.1\r\nHost: app.test\r\nContent-Length: ${5 + SMUGGLED.length}\r\nTransfer_Encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`,
  ];
  for (const raw of attacks) {
    const bytes = Buffer.from(raw, 'latin1');
    for (const cuts of DELIVERIES(bytes.length)) {
      const label = `${JSON.stringify(raw.slice(0, 70))} cuts ${JSON.stringify(cuts)}`;
      b.requests.length = 0;
      const { text, closed } = await exchange(port, bytes, cuts, true);
      const first = raw.startsWith('GET /first');
      // Wait out a backend answer still in flight, then: nothing but /first reached the backend.
      await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(b.requests.map((r) => r.line), first ? ['GET /first HTTP/1.1'] : [], `backend parsed: ${label}`);
      assert.match(text, first ? /^HTTP\/1\.1 200 [\s\S]*ok \/firstHTTP\/1\.1 400 Bad Request\r\n/ : /^HTTP\/1\.1 400 Bad Request\r\n/, label);
      assert.match(text.slice(text.lastIndexOf('HTTP/1.1 ')), /Connection: close\r\n/, label);
      assert.ok(closed, `proxy closed the connection: ${label}`);
    }
  }
  assert.deepEqual(b.errors, []);

  // Legitimate framing still reaches the folding backend intact (it is not simply blind).
  const ok = Buffer.from(`POST /ok HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nX-Under_Score: 1\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n`, 'latin1');
  for (const cuts of DELIVERIES(ok.length)) {
    b.requests.length = 0;
    const { text } = await exchange(port, ok, cuts);
    assert.match(text, /^HTTP\/1\.1 200 [\s\S]*ok \/ok$/);
    assert.deepEqual(b.requests.map((r) => [r.line, r.body]), [['POST /ok HTTP/1.1', 'hello']]);
    assert.match(b.requests[0]!.head, /\r\nX-Under_Score: 1\r\n/, 'other names with "_" pass unchanged');
  }
});

test('look-alike response headers are dropped before the client; framing comes from the real ones', async (t) => {
  const up = net.createServer((sock) => {
    sock.on('error', () => {});
    sock.once('data', () => {
      sock.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer_Encoding: chunked\r\nContent.Length: 99\r\nKeep_Alive: timeout=1\r\nX_Other: kept\r\n\r\nok');
    });
  });
  up.listen(0, HOST);
  await once(up, 'listening');
  t.after(() => up.close());
  const port = await proxyTo(t, (up.address() as net.AddressInfo).port);
  const { text } = await exchange(port, Buffer.from('GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n'), []);
  assert.match(text, /^HTTP\/1\.1 200 OK\r\n/);
  assert.match(text, /\r\nContent-Length: 2\r\n/);
  assert.match(text, /\r\nX_Other: kept\r\n/);
  assert.doesNotMatch(text, /Transfer_Encoding|Content\.Length|Keep_Alive/);
  assert.match(text, /\r\n\r\nok$/);
});

test('now forwarded: HTTP/1.2 as HTTP/1.1, control characters in other field values byte for byte, OPTIONS *', async (t) => {
  const b = await rawBackend(t, false);
  const port = await proxyTo(t, b.port);
  let ctl = '';
  for (let c = 1; c < 0x20; c++) if (c !== 9 && c !== 10 && c !== 13) ctl += String.fromCharCode(c);
  ctl += '\x7f';
  const cases: [string, (r: RawRequest) => void][] = [
    ['GET /v12 HTTP/1.2\r\nHost: app.test\r\nX-Version: HTTP/1.2\r\nConnection: close\r\n\r\n', (r) => {
      assert.equal(r.line, 'GET /v12 HTTP/1.1');
      assert.match(r.head, /\r\nX-Version: HTTP\/1\.2\r\n/, 'only the request line is rewritten');
    }],
    ['POST /v19 HTTP/1.9\r\nHost: app.test\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc', (r) => {
      assert.equal(r.line, 'POST /v19 HTTP/1.1');
      assert.equal(r.body, 'abc');
    }],
    [`GET /ctl HTTP/1.1\r\nHost: app.test\r\nX-Ctl: a${ctl}b\r\nUser-Agent: \x01\x7f\r\nConnection: close\r\n\r\n`, (r) => {
      assert.ok(r.head.includes(`\r\nX-Ctl: a${ctl}b\r\n`), JSON.stringify(r.head));
      assert.ok(r.head.includes('\r\nUser-Agent: \x01\x7f\r\n'));
    }],
    ['OPTIONS * HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n', (r) => assert.equal(r.line, 'OPTIONS * HTTP/1.1')],
    ['GET http://app.test/a@b?c=@ HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n', (r) => assert.equal(r.line, 'GET http://app.test/a@b?c=@ HTTP/1.1')],
  ];
  for (const [raw, check] of cases) {
    const bytes = Buffer.from(raw, 'latin1');
    for (const cuts of DELIVERIES(bytes.length)) {
      b.requests.length = 0;
      const { text } = await exchange(port, bytes, cuts);
      const label = `${JSON.stringify(raw.slice(0, 40))} cuts ${JSON.stringify(cuts)}`;
      assert.match(text, /^HTTP\/1\.1 200 OK\r\n/, label);
      assert.equal(b.requests.length, 1, label);
      check(b.requests[0]!);
    }
  }
});

test('HTTP/1.2 reaches a Node backend, which itself refuses HTTP/1.2: the version is rewritten', async (t) => {
  const b = await backend(t);
  const port = await proxyTo(t, b.port);
  const bytes = Buffer.from('GET /n HTTP/1.2\r\nHost: app.test\r\nConnection: close\r\n\r\n', 'latin1');
  for (const cuts of DELIVERIES(bytes.length)) {
    const { text } = await exchange(port, bytes, cuts);
    assert.match(text, /^HTTP\/1\.1 200 [\s\S]*ok \/n$/);
  }
  assert.deepEqual(b.completed, ['/n', '/n', '/n', '/n']);
});
