import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import { createProxy, type ProxyLimits } from '../sidecar/proxy.js';
import { FakeRouting, FakeTarget, type FakeRoute, type FakeTargetOptions } from './helpers/fake-routing.js';
import { routingTo } from './helpers/real-routing.js';
import type { RoutingState } from '../sidecar/routing-types.js';

const HOST = '127.0.0.1';

// ---- backends ----

interface SeenRequest { method: string; url: string; headers: http.IncomingHttpHeaders; rawHeaders: string[]; body: string }
interface Backend { port: number; server: http.Server; seen: SeenRequest[]; connections: number }

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, body: string) => void;

async function backend(t: TestContext, handler: Handler = (_q, s) => s.end('ok')): Promise<Backend> {
  const b: Backend = { port: 0, server: http.createServer(), seen: [], connections: 0 };
  b.server.on('connection', () => { b.connections++; });
  b.server.on('request', (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      b.seen.push({ method: req.method!, url: req.url!, headers: req.headers, rawHeaders: req.rawHeaders, body });
      handler(req, res, body);
    });
  });
  b.server.listen(0, HOST);
  await once(b.server, 'listening');
  b.port = (b.server.address() as net.AddressInfo).port;
  t.after(() => { b.server.closeAllConnections(); b.server.close(); });
  return b;
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  s.listen(0, HOST);
  await once(s, 'listening');
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

function target(id: string, port: number, o?: FakeTargetOptions): FakeTarget {
  return new FakeTarget(id, [{ host: HOST, port }], o);
}

async function proxyFor(t: TestContext, routing: RoutingState, limits?: Partial<ProxyLimits>): Promise<number> {
  const p = createProxy({ routing, limits });
  const a = await p.listen(0, HOST);
  t.after(() => p.close(100));
  return a.port;
}

/** A proxy in front of one backend, routed by the real Routing class (one INSTANT version). */
async function setupReal(t: TestContext, backendPort: number, limits?: Partial<ProxyLimits>): Promise<{ port: number }> {
  return { port: await proxyFor(t, routingTo({ host: HOST, port: backendPort }), limits) };
}

/** A proxy with FakeRouting: for tests that inject primary/fallback/shadow decisions, failure
 *  statuses or timeouts per version, or assert each recorded success/failure/mismatch. */
async function setup(t: TestContext, route: FakeRoute, limits?: Partial<ProxyLimits>): Promise<{ routing: FakeRouting; port: number }> {
  const routing = new FakeRouting(route);
  return { routing, port: await proxyFor(t, routing, limits) };
}

// ---- raw client with an independent response parser ----

interface Resp { status: number; headers: Record<string, string[]>; body: string; raw: string }

class Client {
  readonly sock: net.Socket;
  buf = Buffer.alloc(0);
  closed = false;
  #wake: (() => void) | null = null;
  readonly closedP: Promise<void>;

  constructor(port: number) {
    this.sock = net.connect(port, HOST);
    this.sock.on('data', (d: Buffer) => { this.buf = Buffer.concat([this.buf, d]); this.#wake?.(); });
    this.closedP = new Promise((r) => this.sock.on('close', () => { this.closed = true; this.#wake?.(); r(); }));
    this.sock.on('error', () => {});
  }

  static async open(t: TestContext, port: number): Promise<Client> {
    const c = new Client(port);
    await once(c.sock, 'connect');
    t.after(() => c.sock.destroy());
    return c;
  }

  write(s: string | Buffer): void { this.sock.write(s); }

  async #waitMore(): Promise<void> {
    await new Promise<void>((r) => { this.#wake = r; });
    this.#wake = null;
  }

  /** Next response (interim 1xx included). noBody: the request was HEAD. */
  async response(noBody = false): Promise<Resp> {
    for (;;) {
      const r = this.#tryParse(noBody);
      if (r) return r;
      if (this.closed) throw new Error('connection closed; buffered: ' + JSON.stringify(this.buf.toString('latin1')));
      await this.#waitMore();
    }
  }

  async text(): Promise<string> {
    while (!this.closed) await this.#waitMore();
    return this.buf.toString('latin1');
  }

  async until(s: string): Promise<void> {
    while (!this.buf.includes(s)) {
      if (this.closed) throw new Error('closed before ' + s);
      await this.#waitMore();
    }
  }

  #tryParse(noBody: boolean): Resp | null {
    const b = this.buf;
    const he = b.indexOf('\r\n\r\n');
    if (he < 0) return null;
    const lines = b.toString('latin1', 0, he).split('\r\n');
    const status = Number(lines[0]!.split(' ')[1]);
    const headers: Record<string, string[]> = {};
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      const k = l.slice(0, i).toLowerCase();
      (headers[k] ??= []).push(l.slice(i + 1).trim());
    }
    let p = he + 4;
    let body = '';
    if (noBody || status < 200 || status === 204 || status === 304) {
      // no body
    } else if (headers['transfer-encoding']) {
      for (;;) {
        const le = b.indexOf('\r\n', p);
        if (le < 0) return null;
        const size = parseInt(b.toString('latin1', p, le), 16);
        if (b.length < le + 2 + size + 2) return null;
        body += b.toString('latin1', le + 2, le + 2 + size);
        p = le + 2 + size + 2;
        if (size === 0) break;
      }
    } else if (headers['content-length']) {
      const n = Number(headers['content-length'][0]);
      if (b.length < p + n) return null;
      body = b.toString('latin1', p, p + n);
      p += n;
    } else {
      if (!this.closed) return null;
      body = b.toString('latin1', p);
      p = b.length;
    }
    const raw = b.toString('latin1', 0, p);
    this.buf = b.subarray(p);
    return { status, headers, body, raw };
  }
}

function get(path: string, host = 'app.test', extra = ''): string {
  return `GET ${path} HTTP/1.1\r\nHost: ${host}\r\n${extra}\r\n`;
}

// ---- tests ----

test('keep-alive: several requests on one client connection reuse one upstream connection', async (t) => {
  const b = await backend(t, (q, s) => s.end('hello ' + q.url));
  const { port, routing } = await setup(t, { primary: target('v1', b.port) });
  const c = await Client.open(t, port);
  for (let i = 0; i < 3; i++) {
    c.write(get('/r' + i));
    const r = await c.response();
    assert.equal(r.status, 200);
    assert.equal(r.body, 'hello /r' + i);
    assert.deepEqual(r.headers['set-cookie'], ['molt-version=v1; Path=/']);
  }
  assert.equal(b.connections, 1);
  assert.equal(routing.successes.length, 3);
  assert.equal(routing.failures.length, 0);
  assert.equal(c.closed, false);
});

test('each request on one connection is routed on its own; no route → 503, connection kept', async (t) => {
  const a = await backend(t, (_q, s) => s.end('A'));
  const b = await backend(t, (_q, s) => s.end('B'));
  const routing = new FakeRouting();
  routing.routes.set('a.test', { primary: target('a1', a.port) });
  routing.routes.set('b.test', { primary: target('b1', b.port) });
  const port = await proxyFor(t, routing);
  const c = await Client.open(t, port);
  for (const [host, want] of [['a.test', 'A'], ['b.test:80', 'B'], ['A.TEST', 'A']] as const) {
    c.write(get('/', host, 'Cookie: x=1\r\n'));
    const r = await c.response();
    assert.equal(r.body, want);
  }
  c.write(get('/', 'nope.test'));
  const r = await c.response();
  assert.equal(r.status, 503);
  assert.equal(r.body, 'molt: no ready version serves host nope.test');
  c.write(get('/', 'a.test'));
  assert.equal((await c.response()).body, 'A');
  assert.deepEqual(routing.routed.map((x) => x.host), ['a.test', 'b.test:80', 'A.TEST', 'nope.test', 'a.test']);
  assert.equal(routing.routed[0]!.cookie, 'x=1');
  routing.revision = 0;
  routing.routes.clear();
  c.write(get('/'));
  const r2 = await c.response();
  assert.equal(r2.status, 503);
  assert.equal(r2.body, 'molt: no routing table yet');
});

test('pipelined requests are answered in order', async (t) => {
  const b = await backend(t, (q, s) => {
    const n = Number(q.url!.slice(1));
    setImmediate(() => s.end('r' + n)); // answer asynchronously
  });
  const { port } = await setupReal(t, b.port);
  const c = await Client.open(t, port);
  let all = '';
  for (let i = 0; i < 10; i++) all += get('/' + i);
  all += 'POST /10 HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\n\r\nabc';
  c.write(all);
  for (let i = 0; i < 11; i++) {
    const r = await c.response();
    assert.equal(r.body, 'r' + i);
  }
  assert.equal(b.seen[10]!.body, 'abc');
});

test('chunked upload and chunked download pass through', async (t) => {
  const b = await backend(t, (_q, s, body) => {
    s.write('got:');
    s.write(body);
    s.end(':end');
  });
  const { port } = await setupReal(t, b.port);
  const c = await Client.open(t, port);
  c.write('POST /up HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n');
  await new Promise((r) => setImmediate(r));
  c.write('6;ext=1\r\n world\r\n');
  c.write('0\r\n\r\n');
  const r = await c.response();
  assert.equal(r.status, 200);
  assert.deepEqual(r.headers['transfer-encoding'], ['chunked']);
  assert.equal(r.body, 'got:hello world:end');
  assert.equal(b.seen[0]!.body, 'hello world');
  c.write(get('/again'));
  assert.equal((await c.response()).status, 200);
  assert.equal(b.connections, 1);
});

test('HEAD, 204 and 304 responses have no body and the connection stays usable', async (t) => {
  const b = await backend(t, (q, s) => {
    if (q.url === '/204') { s.statusCode = 204; s.end(); return; }
    if (q.url === '/304') { s.statusCode = 304; s.end(); return; }
    s.setHeader('Content-Length', '11');
    s.end(q.method === 'HEAD' ? undefined : 'hello world');
  });
  const { port } = await setupReal(t, b.port);
  const c = await Client.open(t, port);
  c.write('HEAD / HTTP/1.1\r\nHost: app.test\r\n\r\n');
  const h = await c.response(true);
  assert.equal(h.status, 200);
  assert.deepEqual(h.headers['content-length'], ['11']);
  for (const code of [204, 304]) {
    c.write(get('/' + code));
    assert.equal((await c.response()).status, code);
  }
  c.write(get('/'));
  const r = await c.response();
  assert.equal(r.body, 'hello world');
  assert.equal(c.buf.length, 0);
});

test('Expect: 100-continue is forwarded and the upstream 100 relayed', async (t) => {
  const b = await backend(t, (_q, s, body) => s.end('len=' + body.length));
  const { port } = await setupReal(t, b.port);
  const c = await Client.open(t, port);
  c.write('POST /x HTTP/1.1\r\nHost: app.test\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n');
  const interim = await c.response();
  assert.equal(interim.status, 100);
  c.write('data');
  const r = await c.response();
  assert.equal(r.status, 200);
  assert.equal(r.body, 'len=4');
});

test('Connection: close from the client closes after the response; upstream close is not passed on', async (t) => {
  const b = await backend(t, (q, s) => {
    if (q.url === '/upclose') s.setHeader('Connection', 'close');
    s.setHeader('Content-Length', '2'); // node answers HTTP/1.0 requests until-close otherwise
    s.end('ok');
  });
  const { port } = await setupReal(t, b.port);
  const c = await Client.open(t, port);
  c.write(get('/upclose'));
  const r1 = await c.response();
  assert.equal(r1.headers['connection'], undefined);
  c.write(get('/', 'app.test', 'Connection: close\r\n'));
  const r2 = await c.response();
  assert.deepEqual(r2.headers['connection'], ['close']);
  await c.closedP;
  // HTTP/1.0 client: closes by default
  const d = await Client.open(t, port);
  d.write('GET / HTTP/1.0\r\nHost: app.test\r\n\r\n');
  assert.equal((await d.response()).body, 'ok');
  await d.closedP;
  // HTTP/1.0 keep-alive
  const e = await Client.open(t, port);
  e.write('GET / HTTP/1.0\r\nHost: app.test\r\nConnection: keep-alive\r\n\r\n');
  const r3 = await e.response();
  assert.deepEqual(r3.headers['connection'], ['keep-alive']);
  e.write('GET / HTTP/1.0\r\nHost: app.test\r\nConnection: keep-alive\r\n\r\n');
  assert.equal((await e.response()).body, 'ok');
});

test('response without length is read until close, then the client connection closes', async (t) => {
  const s = net.createServer((sock) => {
    sock.once('data', () => sock.end('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nstreamed until close'));
  });
  s.listen(0, HOST);
  await once(s, 'listening');
  t.after(() => s.close());
  const { port } = await setup(t, { primary: target('v1', (s.address() as net.AddressInfo).port) });
  const c = await Client.open(t, port);
  c.write(get('/'));
  const text = await c.text();
  assert.match(text, /^HTTP\/1.1 200 OK\r\n/);
  assert.match(text, /Connection: close\r\n/);
  assert.ok(text.endsWith('\r\n\r\nstreamed until close'));
});

test('Upgrade: after 101 raw bytes are piped both ways', async (t) => {
  const b = await backend(t);
  b.server.on('upgrade', (req, sock: net.Socket, head: Buffer) => {
    sock.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n');
    if (head.length) sock.write(head);
    sock.on('data', (d) => sock.write(d));
  });
  const { port, routing } = await setup(t, { primary: target('v1', b.port) });
  const c = await Client.open(t, port);
  c.write('GET /ws HTTP/1.1\r\nHost: app.test\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n');
  const r = await c.response();
  assert.equal(r.status, 101);
  assert.deepEqual(r.headers['upgrade'], ['echo']);
  assert.deepEqual(r.headers['connection'], ['upgrade']);
  c.write('ping-1');
  await c.until('ping-1');
  c.write('ping-2');
  await c.until('ping-2');
  assert.deepEqual(routing.successes, [{ id: 'v1', status: 101 }]);
});

test('Upgrade: a tunnel carries more than the socket buffers hold, both ways, with a slow reader', { timeout: 60_000 }, async (t) => {
  // Backpressure in both directions: while the slow side is not reading, the proxy must pause the
  // fast side and resume it on drain, never lose or reorder bytes, never stall for good.
  const MiB = 1024 * 1024;
  const DOWN = 48 * MiB;
  const UP = 24 * MiB;
  const pattern = (n: number): Buffer => { const b = Buffer.allocUnsafe(n); for (let i = 0; i < n; i++) b[i] = (i * 7 + 3) & 0xff; return b; };
  const down = pattern(DOWN);
  const up = pattern(UP);
  let upReceived = 0;
  let upOk = true;
  const b = await backend(t);
  b.server.on('upgrade', (_req, sock: net.Socket) => {
    t.after(() => sock.destroy()); // upgraded sockets are not closed by server.close()
    sock.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: bulk\r\nConnection: Upgrade\r\n\r\n');
    sock.write(down);
    // Read the upload slowly: pause for a while first so the proxy's upstream writes back up.
    sock.pause();
    setTimeout(() => sock.resume(), 300);
    sock.on('data', (d: Buffer) => {
      if (upOk && !d.equals(up.subarray(upReceived, upReceived + d.length))) upOk = false;
      upReceived += d.length;
    });
  });
  const { port } = await setupReal(t, b.port);
  const sock = net.connect(port, HOST);
  t.after(() => sock.destroy());
  await once(sock, 'connect');
  sock.write('GET /bulk HTTP/1.1\r\nHost: app.test\r\nUpgrade: bulk\r\nConnection: Upgrade\r\n\r\n');
  sock.write(up);
  sock.pause();
  await new Promise((r) => setTimeout(r, 300)); // the download backs up into the proxy meanwhile
  let got = Buffer.alloc(0);
  const chunks: Buffer[] = [];
  let total = 0;
  let headEnd = -1;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`stalled: ${total} bytes down, ${upReceived} up`)), 20_000);
    sock.on('data', (d: Buffer) => {
      chunks.push(d);
      total += d.length;
      if (headEnd < 0) {
        got = Buffer.concat(chunks);
        headEnd = got.indexOf('\r\n\r\n');
      }
      if (headEnd >= 0 && total - headEnd - 4 >= DOWN && upReceived >= UP) { clearTimeout(timer); resolve(); }
    });
    const poll = setInterval(() => {
      if (headEnd >= 0 && total - headEnd - 4 >= DOWN && upReceived >= UP) { clearInterval(poll); clearTimeout(timer); resolve(); }
    }, 50);
    sock.resume();
  });
  const all = Buffer.concat(chunks);
  assert.match(all.toString('latin1', 0, 12), /^HTTP\/1\.1 101/);
  const body = all.subarray(headEnd + 4);
  assert.equal(body.length, DOWN);
  assert.ok(body.equals(down), 'download bytes arrive intact and in order');
  assert.equal(upReceived, UP);
  assert.ok(upOk, 'upload bytes arrive intact and in order');
});

test('X-Forwarded-* added, hop-by-hop headers stripped both ways, Set-Cookie appended', async (t) => {
  const b = await backend(t, (_q, s) => {
    s.setHeader('Connection', 'X-Internal');
    s.setHeader('X-Internal', 'secret');
    s.setHeader('Keep-Alive', 'timeout=5');
    s.setHeader('Proxy-Authenticate', 'Basic');
    s.setHeader('X-Kept', 'yes');
    s.end('ok');
  });
  const { port } = await setup(t, { primary: target('v1', b.port) });
  const c = await Client.open(t, port);
  c.write('GET /h HTTP/1.1\r\nHost: app.test:8080\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: 300\r\n' +
    'Proxy-Connection: keep-alive\r\nTE: trailers\r\nUpgrade: h2c\r\nProxy-Authorization: x\r\nX-Forwarded-For: 1.2.3.4\r\n' +
    'X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\nX-End: 1\r\n\r\n');
  const r = await c.response();
  assert.equal(r.status, 200);
  const h = b.seen[0]!.headers;
  for (const k of ['connection', 'x-secret', 'keep-alive', 'proxy-connection', 'te', 'upgrade', 'proxy-authorization']) {
    if (k === 'connection') continue; // node adds none; checked below
    assert.equal(h[k], undefined, k);
  }
  assert.equal(h['connection'], undefined);
  assert.equal(h['x-forwarded-for'], '1.2.3.4, 127.0.0.1');
  assert.equal(h['x-forwarded-proto'], 'http');
  assert.equal(h['x-forwarded-host'], 'app.test:8080');
  assert.equal(h['x-end'], '1');
  assert.equal(h['host'], 'app.test:8080');
  assert.equal(r.headers['x-internal'], undefined);
  assert.equal(r.headers['keep-alive'], undefined);
  assert.equal(r.headers['connection'], undefined);
  assert.equal(r.headers['proxy-authenticate'], undefined);
  assert.deepEqual(r.headers['x-kept'], ['yes']);
  assert.deepEqual(r.headers['set-cookie'], ['molt-version=v1; Path=/']);
});

test('X-Forwarded-* lines follow each request on one keep-alive connection (Host, client X-Forwarded-For, HTTP/1.0)', async (t) => {
  // A length on every answer: Node ends an HTTP/1.0 answer without one by closing.
  const b = await backend(t, (_q, s) => { s.setHeader('Content-Length', 2); s.end('ok'); });
  const { port } = await setup(t, { primary: target('v1', b.port) });
  const c = await Client.open(t, port);
  // The added lines are kept per connection and reused while they stay the same: every change
  // must still show up in the very next request.
  const sent: Array<[string, string]> = [
    ['/1', 'GET /1 HTTP/1.1\r\nHost: a.test\r\n\r\n'],
    ['/2', 'GET /2 HTTP/1.1\r\nHost: a.test\r\n\r\n'],
    ['/3', 'GET /3 HTTP/1.1\r\nHost: b.test:81\r\n\r\n'],
    ['/4', 'GET /4 HTTP/1.1\r\nHost: b.test:81\r\nX-Forwarded-For: 9.9.9.9\r\n\r\n'],
    ['/5', 'GET /5 HTTP/1.1\r\nHost: b.test:81\r\n\r\n'],
    ['/6', 'GET /6 HTTP/1.0\r\nHost: b.test:81\r\nConnection: keep-alive\r\n\r\n'],
    ['/7', 'GET /7 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n'],
    ['/8', 'GET /8 HTTP/1.1\r\nHost: a.test\r\n\r\n'],
  ];
  for (const [, raw] of sent) {
    c.write(raw);
    assert.equal((await c.response()).status, 200);
  }
  const seen = b.seen.map((x) => [x.url, x.headers['x-forwarded-host'], x.headers['x-forwarded-for'], x.headers['x-forwarded-proto']]);
  assert.deepEqual(seen, [
    ['/1', 'a.test', '127.0.0.1', 'http'],
    ['/2', 'a.test', '127.0.0.1', 'http'],
    ['/3', 'b.test:81', '127.0.0.1', 'http'],
    ['/4', 'b.test:81', '9.9.9.9, 127.0.0.1', 'http'],
    ['/5', 'b.test:81', '127.0.0.1', 'http'],
    ['/6', 'b.test:81', '127.0.0.1', 'http'],
    ['/7', undefined, '127.0.0.1', 'http'],
    ['/8', 'a.test', '127.0.0.1', 'http'],
  ]);
  // HTTP/1.0 keep-alive is forwarded with an explicit keep-alive; the HTTP/1.1 requests around it without.
  assert.deepEqual(b.seen.map((x) => x.headers['connection']), [undefined, undefined, undefined, undefined, undefined, 'keep-alive', 'keep-alive', undefined]);
});

const MALFORMED: [string, string][] = [
  ['CL and TE', 'POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
  ['duplicate CL', 'POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab'],
  ['TE obfuscation', 'POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n'],
  ['obs-fold', 'GET / HTTP/1.1\r\nHost: app.test\r\nX: a\r\n b\r\n\r\n'],
  ['bare LF', 'GET / HTTP/1.1\nHost: app.test\n\n'],
  ['space before colon', 'GET / HTTP/1.1\r\nHost : app.test\r\n\r\n'],
  ['NUL in head', 'GET /\x00 HTTP/1.1\r\nHost: app.test\r\n\r\n'],
  ['bad version', 'GET / HTTP/2.0\r\nHost: app.test\r\n\r\n'], // HTTP/1.2 … 1.9 are served as HTTP/1.1
  ['missing host', 'GET / HTTP/1.1\r\n\r\n'],
  ['bad chunk size', 'POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n'],
  ['no CRLF after chunk', 'POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n'],
  ['CONNECT', 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n'],
];

for (const [name, raw] of MALFORMED) {
  test(`malformed request (${name}) → 4xx + close, upstream sees nothing`, async (t) => {
    const b = await backend(t);
    const { port } = await setupReal(t, b.port);
    const c = await Client.open(t, port);
    c.write(Buffer.from(raw, 'latin1'));
    const text = await c.text();
    assert.match(text, /^HTTP\/1.1 4\d\d /);
    assert.match(text, /Connection: close\r\n/);
    assert.equal(b.connections, 0);
    assert.equal(b.seen.length, 0);
  });
}

test('smuggling: a bad second request after a good one is never forwarded', async (t) => {
  const b = await backend(t, (q, s) => s.end('saw ' + q.url));
  const { port } = await setupReal(t, b.port);
  const c = await Client.open(t, port);
  c.write('POST /first HTTP/1.1\r\nHost: app.test\r\nContent-Length: 0\r\n\r\n' +
    'GET /smuggled HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n');
  const r = await c.response();
  assert.equal(r.body, 'saw /first');
  const rest = await c.text();
  assert.match(rest, /^HTTP\/1.1 400 /);
  assert.deepEqual(b.seen.map((x) => x.url), ['/first']);
});

test('header too large → 431 and close', async (t) => {
  const b = await backend(t);
  const { port } = await setupReal(t, b.port, { maxHeaderBytes: 1024 });
  const c = await Client.open(t, port);
  c.write('GET / HTTP/1.1\r\nHost: app.test\r\nX: ' + 'a'.repeat(2000) + '\r\n\r\n');
  assert.match(await c.text(), /^HTTP\/1.1 431 /);
  assert.equal(b.connections, 0);
});

test('slowloris: incomplete head → 408 and close; idle keep-alive → silent close', async (t) => {
  const b = await backend(t);
  const { port } = await setupReal(t, b.port, { headerTimeoutMs: 200, idleTimeoutMs: 200 });
  const c = await Client.open(t, port);
  c.write('GET / HTTP/1.1\r\nHost: app');
  const text = await c.text();
  assert.match(text, /^HTTP\/1.1 408 /);
  assert.equal(b.connections, 0);
  const d = await Client.open(t, port);
  d.write(get('/'));
  assert.equal((await d.response()).status, 200);
  assert.equal(await d.text(), '');
});

// ---- failover ----

async function failoverCase(t: TestContext, primaryPort: number, primaryOpts?: FakeTargetOptions) {
  const fb = await backend(t, (_q, s) => s.end('from fallback'));
  const { port, routing } = await setup(t, { primary: target('v2', primaryPort, primaryOpts), fallback: target('v1', fb.port) });
  return { fb, port, routing };
}

test('failover: primary refusing connections → GET and even POST get the fallback (nothing was sent)', async (t) => {
  const { port, routing, fb } = await failoverCase(t, await closedPort());
  const c = await Client.open(t, port);
  c.write(get('/'));
  const r = await c.response();
  assert.equal(r.status, 200);
  assert.equal(r.body, 'from fallback');
  assert.deepEqual(r.headers['set-cookie'], ['molt-version=v1; Path=/']);
  c.write('POST /p HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\n\r\nxyz');
  const r2 = await c.response();
  assert.equal(r2.body, 'from fallback');
  assert.equal(fb.seen[1]!.body, 'xyz');
  assert.deepEqual(routing.failures.map((f) => [f.id, f.kind]), [['v2', 'connect'], ['v2', 'connect']]);
  assert.deepEqual(routing.successes, [{ id: 'v1', status: 200 }, { id: 'v1', status: 200 }]);
});

test('failover: primary 500 → GET answered by the fallback; POST gets the 500 as-is', async (t) => {
  const p = await backend(t, (_q, s) => { s.statusCode = 500; s.end('boom'); });
  const { port, routing, fb } = await failoverCase(t, p.port);
  const c = await Client.open(t, port);
  c.write(get('/'));
  const r = await c.response();
  assert.equal(r.status, 200);
  assert.equal(r.body, 'from fallback');
  c.write('POST /p HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\n\r\nxyz');
  const r2 = await c.response();
  assert.equal(r2.status, 500);
  assert.equal(r2.body, 'boom');
  assert.deepEqual(r2.headers['set-cookie'], ['molt-version=v2; Path=/']);
  assert.equal(fb.seen.length, 1);
  assert.deepEqual(routing.failures.map((f) => [f.id, f.kind]), [['v2', 'status'], ['v2', 'status']]);
});

test('failover: hanging primary → response timeout → fallback', async (t) => {
  const p = await backend(t, () => { /* never answers */ });
  const { port, routing } = await failoverCase(t, p.port, { responseTimeoutMs: 200 });
  const c = await Client.open(t, port);
  c.write(get('/'));
  const r = await c.response();
  assert.equal(r.body, 'from fallback');
  assert.deepEqual(routing.failures.map((f) => [f.id, f.kind]), [['v2', 'response-timeout']]);
});

test('failover: primary resets the connection → GET to fallback; POST gets 502', async (t) => {
  const p = await backend(t, (q) => q.socket.destroy());
  const { port, routing, fb } = await failoverCase(t, p.port);
  const c = await Client.open(t, port);
  c.write(get('/'));
  assert.equal((await c.response()).body, 'from fallback');
  c.write('POST /p HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\n\r\nxyz');
  const r = await c.response();
  assert.equal(r.status, 502);
  assert.equal(fb.seen.length, 1);
  assert.deepEqual(routing.failures.map((f) => [f.id, f.kind]), [['v2', 'reset'], ['v2', 'reset']]);
});

test('failover: primary dies mid-body → a small GET response is retried on the fallback, never truncated; POST is truncated', { timeout: 30_000 }, async (t) => {
  // The head and the first half of the body go out, then the connection is reset: the kind of
  // crash a client would otherwise see as a cut-off response.
  const p = await backend(t, (q, s) => {
    s.writeHead(200, { 'content-length': '20' });
    s.write('0123456789');
    setTimeout(() => q.socket.destroy(), 50);
  });
  const { port, routing, fb } = await failoverCase(t, p.port);
  const c = await Client.open(t, port);
  c.write(get('/'));
  const r = await c.response();
  assert.equal(r.status, 200);
  assert.equal(r.body, 'from fallback');
  assert.equal(r.raw.includes('0123456789'), false, 'nothing of the dying response reached the client');
  assert.deepEqual(routing.failures.map((f) => [f.id, f.kind]), [['v2', 'reset']]);
  // A POST can't be resent: it is relayed as it comes and the client sees the truncation.
  const c2 = await Client.open(t, port);
  c2.write('POST /p HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\n\r\nxyz');
  const text = await c2.text();
  assert.match(text, /^HTTP\/1\.1 200/);
  assert.ok(text.endsWith('0123456789'), 'POST gets the partial response, then the connection closes');
  assert.equal(fb.seen.length, 1);
});

test('failover: primary stalls mid-body → response timeout → the GET is answered by the fallback', { timeout: 30_000 }, async (t) => {
  const p = await backend(t, (_q, s) => {
    s.writeHead(200, { 'content-length': '20' });
    s.write('0123456789'); // ... and never the rest
  });
  const { port, routing } = await failoverCase(t, p.port, { responseTimeoutMs: 300 });
  const c = await Client.open(t, port);
  c.write(get('/'));
  const r = await c.response();
  assert.equal(r.body, 'from fallback');
  assert.deepEqual(routing.failures.map((f) => [f.id, f.kind]), [['v2', 'response-timeout']]);
});

test('responses are streamed, not buffered, when there is no fallback or they are larger than the buffer limit', { timeout: 30_000 }, async (t) => {
  // The client must see the head and the first bytes while the upstream is still sending.
  let finish: (() => void) | null = null;
  const slow: Handler = (_q, s) => {
    s.writeHead(200, { 'content-length': '20' });
    s.write('0123456789');
    finish = () => s.end('abcdefghij');
  };
  const alone = await backend(t, slow);
  const { port } = await setup(t, { primary: target('v2', alone.port) });
  const c = await Client.open(t, port);
  c.write(get('/'));
  await c.until('0123456789');
  finish!();
  assert.equal((await c.response()).body, '0123456789abcdefghij');

  const p = await backend(t, slow);
  const fb = await backend(t, (_q, s) => s.end('from fallback'));
  const routing = new FakeRouting({ primary: target('v2', p.port), fallback: target('v1', fb.port) });
  const port2 = await proxyFor(t, routing, { maxBufferedResponseBytes: 10 });
  const c2 = await Client.open(t, port2);
  c2.write(get('/'));
  await c2.until('0123456789');
  finish!();
  assert.equal((await c2.response()).body, '0123456789abcdefghij');
});

test('connection refused by every version: the request is retried for connectRetryMs, then 502', { timeout: 30_000 }, async (t) => {
  // Both versions refuse (a Docker daemon restart reloading its NAT rules looks like this); the
  // previous version comes back 300 ms later and answers the waiting GET and POST.
  const [p2, p1] = [await closedPort(), await closedPort()];
  const routing = new FakeRouting({ primary: target('v2', p2), fallback: target('v1', p1) });
  const port = await proxyFor(t, routing, { connectRetryMs: 3000 });
  const c = await Client.open(t, port);
  const c2 = await Client.open(t, port);
  c.write(get('/'));
  c2.write('POST /order HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n\r\nhello');
  await new Promise((r) => setTimeout(r, 300));
  const late = http.createServer((q, s) => { let b = ''; q.on('data', (d) => (b += d)); q.on('end', () => s.end(`late ${q.method} ${b}`)); });
  late.listen(p1, HOST);
  await once(late, 'listening');
  t.after(() => { late.closeAllConnections(); late.close(); });
  const r = await c.response();
  assert.equal(r.status, 200);
  assert.equal(r.body, 'late GET ');
  const r2 = await c2.response();
  assert.equal(r2.status, 200);
  assert.equal(r2.body, 'late POST hello', 'the POST body is sent once, to the version that answered');
  // While both refused, nothing was counted against either (the path was down, not a version);
  // once v1 answered and v2 still refused, v2's refusals counted: once per request.
  assert.deepEqual(routing.failures.map((f) => [f.id, f.kind]), [['v2', 'connect'], ['v2', 'connect']]);

  // Nothing comes back: 502 once the budget is spent (and not much later).
  const routing2 = new FakeRouting({ primary: target('v2', await closedPort()), fallback: target('v1', await closedPort()) });
  const port2 = await proxyFor(t, routing2, { connectRetryMs: 400 });
  const c3 = await Client.open(t, port2);
  const started = Date.now();
  c3.write(get('/'));
  const r3 = await c3.response();
  assert.equal(r3.status, 502);
  const took = Date.now() - started;
  assert.ok(took >= 300 && took < 3000, `502 after the retry budget, took ${took} ms`);
  assert.deepEqual(routing2.failures, [], 'everything refused: no version is blamed');
});

test('no fallback: connect error → 502, timeout → 504', async (t) => {
  const { port } = await setup(t, { primary: target('v2', await closedPort()) });
  const c = await Client.open(t, port);
  c.write(get('/'));
  const r = await c.response();
  assert.equal(r.status, 502);
  assert.equal(r.body, 'molt: upstream connect failed');
  const p = await backend(t, () => {});
  const s2 = await setup(t, { primary: target('v2', p.port, { responseTimeoutMs: 100 }) });
  const d = await Client.open(t, s2.port);
  d.write(get('/'));
  assert.equal((await d.response()).status, 504);
});

test('a reused upstream socket that died is retried once on a fresh connection', async (t) => {
  // Answers the first request on each connection, then drops the connection on the next one.
  let conns = 0;
  const s = net.createServer((sock) => {
    conns++;
    let n = 0;
    sock.on('data', () => {
      if (n++ === 0) sock.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
      else sock.destroy();
    });
  });
  s.listen(0, HOST);
  await once(s, 'listening');
  t.after(() => s.close());
  const { port, routing } = await setup(t, { primary: target('v1', (s.address() as net.AddressInfo).port) });
  const c = await Client.open(t, port);
  for (let i = 0; i < 3; i++) {
    c.write(get('/'));
    assert.equal((await c.response()).body, 'ok');
  }
  assert.equal(conns, 3);
  assert.equal(routing.failures.length, 0);
});

// ---- CONCURRENT ----

test('CONCURRENT: GET goes to both, client gets the primary; mismatch counted; POST not duplicated', async (t) => {
  const p = await backend(t, (_q, s) => s.end('new'));
  const sh = await backend(t, (q, s) => { s.statusCode = q.url === '/diff' ? 404 : 200; s.end('old'); });
  const { port, routing } = await setup(t, { primary: target('v2', p.port), shadow: target('v1', sh.port) });
  const c = await Client.open(t, port);
  c.write(get('/same'));
  const r = await c.response();
  assert.equal(r.body, 'new');
  assert.deepEqual(r.headers['set-cookie'], ['molt-version=v2; Path=/']);
  c.write(get('/diff'));
  assert.equal((await c.response()).body, 'new');
  c.write('POST /p HTTP/1.1\r\nHost: app.test\r\nContent-Length: 2\r\n\r\nhi');
  assert.equal((await c.response()).body, 'new');
  c.write(get('/last'));
  await c.response();
  // the shadow may still be draining: wait until it has seen /last
  while (sh.seen.length < 3 || routing.successes.length < 7) await new Promise((r2) => setImmediate(r2));
  assert.deepEqual(p.seen.map((x) => x.url), ['/same', '/diff', '/p', '/last']);
  assert.deepEqual(sh.seen.map((x) => x.url), ['/same', '/diff', '/last']);
  assert.deepEqual(routing.mismatches, ['v2']);
});

test('CONCURRENT: primary fails → client gets the shadow answer; big bodies not duplicated', async (t) => {
  const p = await backend(t, (_q, s) => { s.statusCode = 503; s.end('down'); });
  const sh = await backend(t, (_q, s, body) => s.end('old ' + body.length));
  const { port, routing } = await setup(t, {
    primary: target('v2', p.port), shadow: target('v1', sh.port), shadowSafeOnly: false, maxDuplicateBodyBytes: 10,
  });
  const c = await Client.open(t, port);
  c.write(get('/'));
  const r = await c.response();
  assert.equal(r.status, 200);
  assert.equal(r.body, 'old 0');
  assert.deepEqual(r.headers['set-cookie'], ['molt-version=v1; Path=/']);
  assert.deepEqual(routing.mismatches, ['v2']);
  c.write('POST /big HTTP/1.1\r\nHost: app.test\r\nContent-Length: 20\r\n\r\n' + 'x'.repeat(20));
  const r2 = await c.response();
  assert.equal(r2.status, 503);
  assert.equal(sh.seen.length, 1);
});

test('close(grace) lets an in-flight request finish and closes idle connections', async (t) => {
  let release: () => void = () => {};
  const b = await backend(t, (_q, s) => { release = () => s.end('late'); });
  const routing = new FakeRouting({ primary: target('v1', b.port) });
  const proxy = createProxy({ routing });
  const { port } = await proxy.listen(0, HOST);
  const busy = await Client.open(t, port);
  const idle = await Client.open(t, port);
  busy.write(get('/'));
  while (b.seen.length === 0) await new Promise((r) => setImmediate(r));
  const closing = proxy.close(5000);
  await idle.closedP;
  release();
  const r = await busy.response();
  assert.equal(r.body, 'late');
  assert.deepEqual(r.headers['connection'], ['close']);
  await closing;
  await busy.closedP;
});
