// Runtime spike (issue 14 item 3): molt's own sidecar data path on Bun's socket API.
//   bun dist/bench/runtime-spike/sidecar-bun.js PORT CONTROL_SOCKET
// Not product code and not run by Node. It shares, unchanged and as compiled for Node, the
// sidecar's framing (sidecar/framing.ts: HeadScanner/BodyScanner), head rewriting
// (sidecar/head-writer.ts), routing (sidecar/routing.ts: createRoutingState, route(), failure
// bookkeeping) and control client (sidecar/control-client.ts over node:net, which Bun provides);
// what it replaces is the I/O layer: client-conn.ts/exchange.ts/upstream-pool.ts/socket-writer.ts
// become one loop on Bun.listen/Bun.connect (no node:net, no Node internals, no process.binding).
//
// What it does: keep-alive clients, requests in order (pipelined ones wait), routing per request
// (INSTANT/GRADUAL/SESSION decisions, Set-Cookie from the decision), request bodies streamed
// (Content-Length and chunked), responses relayed with their framing, a keep-alive upstream pool
// per endpoint (128 idle), 400/502/503 answers. What it leaves out (so its numbers are an upper
// bound for a full port): failover/retries, CONCURRENT duplication, buffering small responses for
// failover, timeouts, Upgrade, 1xx, recording, read backpressure (Bun 1.4 sockets have
// pause()/resume(), the spike does not use them: a slow reader makes the write queue grow), stats
// over the control socket beyond what ControlClient does by itself.

import { BODY_CHUNKED, BODY_LENGTH, BODY_NONE, BODY_UNTIL_CLOSE, BodyScanner, ERROR, HeadScanner, NEED_MORE, type BodyKind } from '../../sidecar/framing.js';
import { CONN_CLOSE, CONN_KEEP_ALIVE, RequestLines, requestHead, responseHead } from '../../sidecar/head-writer.js';
import { createRoutingState } from '../../sidecar/routing.js';
import type { RouteDecision, VersionTarget } from '../../sidecar/routing-types.js';
import { ControlClient } from '../../sidecar/control-client.js';

interface BunSocket<T> {
  data: T;
  write(b: Uint8Array): number;
  end(b?: Uint8Array): void;
  terminate?(): void;
  setNoDelay?(on: boolean): void;
}
declare const Bun: {
  listen<T>(o: { hostname: string; port: number; socket: Handlers<T> }): unknown;
  connect<T>(o: { hostname: string; port: number; data: T; socket: Handlers<T> }): Promise<BunSocket<T>>;
};
interface Handlers<T> {
  open?(s: BunSocket<T>): void;
  data(s: BunSocket<T>, b: Buffer): void;
  drain(s: BunSocket<T>): void;
  close(s: BunSocket<T>): void;
  end?(s: BunSocket<T>): void;
  error?(s: BunSocket<T>, e: Error): void;
  connectError?(s: BunSocket<T>, e: Error): void;
}

const MERGE_MAX = 16 * 1024;
const MAX_IDLE = 128;
const routing = createRoutingState();

/** Bytes the kernel did not take yet; written on 'drain'. */
class Out {
  q: Buffer[] = [];
  closeAfter = false;
  write(s: BunSocket<unknown> | null, b: Buffer): void {
    if (s === null || this.q.length > 0) { this.q.push(Buffer.from(b)); return; }
    const n = s.write(b);
    if (n < b.length) this.q.push(Buffer.from(b.subarray(Math.max(0, n))));
  }
  flush(s: BunSocket<unknown>): void {
    while (this.q.length > 0) {
      const b = this.q[0]!;
      const n = s.write(b);
      if (n < b.length) { this.q[0] = b.subarray(Math.max(0, n)); return; }
      this.q.shift();
    }
    if (this.closeAfter) s.end();
  }
}

class Up {
  sock: BunSocket<Up> | null = null;
  readonly head = new HeadScanner(false, 65536, 100);
  readonly body = new BodyScanner(65536);
  readonly out = new Out();
  client: Client | null = null;
  respBuf: Buffer | null = null;
  inBody = false;
  kind: BodyKind = BODY_NONE;
  status = 0;
  dead = false;
  constructor(readonly key: string) {}
}

const idle = new Map<string, Up[]>();

function acquire(t: VersionTarget, c: Client): Up {
  const i = t.nextEndpoint();
  const key = t.endpointKeys[i]!;
  const list = idle.get(key);
  while (list !== undefined && list.length > 0) {
    const u = list.pop()!;
    if (u.dead) continue;
    u.client = c;
    u.head.reset();
    u.respBuf = null;
    u.inBody = false;
    return u;
  }
  const ep = t.endpoints[i]!;
  const u = new Up(key);
  u.client = c;
  Bun.connect<Up>({ hostname: ep.host, port: ep.port, data: u, socket: upHandlers }).catch(() => { u.dead = true; u.client?.upFailed(u); });
  return u;
}

function release(u: Up): void {
  u.client = null;
  let list = idle.get(u.key);
  if (list === undefined) { list = []; idle.set(u.key, list); }
  if (list.length >= MAX_IDLE || u.sock === null) { u.dead = true; u.sock?.end(); return; }
  list.push(u);
}

const upHandlers: Handlers<Up> = {
  open(s) { const u = s.data; u.sock = s; s.setNoDelay?.(true); u.out.flush(s); },
  data(s, b) { const u = s.data; if (u.client === null) { u.dead = true; s.end(); return; } u.client.upData(u, b); },
  drain(s) { s.data.out.flush(s); },
  end(s) { const u = s.data; if (u.client !== null && u.inBody && u.kind === BODY_UNTIL_CLOSE) u.client.finish(u, false); },
  close(s) { const u = s.data; u.dead = true; if (u.client !== null) u.client.upFailed(u); },
  error() { /* close follows */ },
  connectError(s) { const u = s.data; u.dead = true; if (u.client !== null) u.client.upFailed(u); },
};

const RESP_400 = Buffer.from('HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 17\r\nConnection: close\r\n\r\nmolt: bad request', 'latin1');
const RESP_502 = Buffer.from('HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: 19\r\nConnection: close\r\n\r\nmolt: upstream error', 'latin1');
const RESP_503 = Buffer.from('HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 23\r\n\r\nmolt: no routing table', 'latin1');

class Client {
  readonly head = new HeadScanner(true, 65536, 100);
  readonly body = new BodyScanner(65536);
  readonly out = new Out();
  pending: Buffer | null = null;
  state: 'idle' | 'body' | 'wait' | 'closed' = 'idle';
  up: Up | null = null;
  decision: RouteDecision | null = null;
  target: VersionTarget | null = null;
  isHead = false;
  keepAlive = true;
  v10 = false;
  startedAt = 0;
  readonly lines = new RequestLines('127.0.0.1');
  constructor(readonly sock: BunSocket<Client>) {}

  onData(b: Buffer): void {
    if (this.state === 'closed') return;
    if (this.state === 'body') {
      const n = this.body.execute(b, 0, b.length);
      if (n === ERROR) { this.fatal(RESP_400); return; }
      this.up!.out.write(this.up!.sock, n === b.length ? b : b.subarray(0, n));
      if (this.body.done) this.state = 'wait';
      if (n < b.length) this.pending = Buffer.from(b.subarray(n));
      return;
    }
    // Bun hands each read its own buffer; a rest kept across reads is copied anyway (rare).
    this.pending = this.pending === null ? b : Buffer.concat([this.pending, b]);
    if (this.state === 'idle') this.parse();
  }

  parse(): void {
    while (this.pending !== null && this.state === 'idle') {
      const buf = this.pending;
      const r = this.head.execute(buf, 0, buf.length);
      if (r === NEED_MORE) return;
      if (r === ERROR) { this.fatal(RESP_400); return; }
      this.pending = r === buf.length ? null : buf.subarray(r);
      this.start(buf, r);
    }
  }

  start(buf: Buffer, he: number): void {
    const h = this.head;
    const method = h.method;
    this.isHead = method === 'HEAD';
    this.v10 = h.versionMinor === 0;
    this.keepAlive = h.keepAlive;
    const kind = h.requestBodyKind;
    let first: Buffer | null = null;
    if (kind !== BODY_NONE) {
      this.body.reset(kind, h.contentLength);
      const p = this.pending;
      if (p !== null) {
        const n = this.body.execute(p, 0, p.length);
        if (n === ERROR) { this.fatal(RESP_400); return; }
        first = p.subarray(0, n);
        this.pending = n === p.length ? null : p.subarray(n);
      }
    }
    const d = routing.route(h.host, h.cookie, method);
    if (d === null) { this.out.write(this.sock, RESP_503); this.next(); return; }
    this.decision = d;
    this.target = d.primary;
    const merge = first !== null && first.length <= MERGE_MAX ? first : null;
    const out = requestHead(h, buf, 0, this.lines.for(h, h.host, false, this.v10), false, merge);
    void he;
    this.startedAt = performance.now();
    const u = acquire(d.primary, this);
    this.up = u;
    u.out.write(u.sock, out);
    if (first !== null && merge === null) u.out.write(u.sock, first);
    this.state = kind === BODY_NONE || this.body.done ? 'wait' : 'body';
  }

  upData(u: Up, b: Buffer): void {
    if (!u.inBody) {
      let buf = b;
      if (u.respBuf !== null) { buf = Buffer.concat([u.respBuf, b]); u.respBuf = null; }
      const h = u.head;
      const r = h.execute(buf, 0, buf.length);
      if (r === NEED_MORE) { u.respBuf = Buffer.from(buf); return; }
      if (r === ERROR || h.status < 200) { this.upFailed(u); return; }
      u.status = h.status;
      const kind = h.responseBodyKind(this.isHead);
      u.kind = kind;
      u.body.reset(kind, h.contentLength);
      if (kind === BODY_UNTIL_CLOSE) this.keepAlive = false;
      const rest = r < buf.length ? buf.subarray(r) : null;
      const n = rest !== null ? u.body.execute(rest, 0, rest.length) : 0;
      if (n === ERROR) { this.upFailed(u); return; }
      const conn = !this.keepAlive ? CONN_CLOSE : this.v10 ? CONN_KEEP_ALIVE : '';
      const extra = this.decision!.responseHeaders(this.target!);
      if (rest === null || n <= MERGE_MAX) this.out.write(this.sock, responseHead(h, buf, false, conn, extra, rest, n));
      else {
        this.out.write(this.sock, responseHead(h, buf, false, conn, extra, null, 0));
        this.out.write(this.sock, rest.subarray(0, n));
      }
      u.inBody = true;
      if (kind === BODY_NONE || u.body.done) this.finish(u, kind !== BODY_UNTIL_CLOSE && h.keepAlive && (rest === null || n === rest.length));
      return;
    }
    const n = u.body.execute(b, 0, b.length);
    if (n === ERROR) { this.upFailed(u); return; }
    this.out.write(this.sock, n === b.length ? b : b.subarray(0, n));
    if (u.body.done) this.finish(u, u.head.keepAlive && n === b.length);
  }

  finish(u: Up, reusable: boolean): void {
    routing.recordSuccess(this.target!, u.status, performance.now() - this.startedAt);
    this.up = null;
    if (reusable && this.state === 'wait') release(u);
    else { u.client = null; u.dead = true; u.sock?.end(); }
    this.next();
  }

  next(): void {
    if (!this.keepAlive || this.state === 'body') { this.state = 'closed'; this.out.closeAfter = true; this.out.flush(this.sock); return; }
    this.head.reset();
    this.decision = null;
    this.state = 'idle';
    if (this.pending !== null) this.parse();
  }

  upFailed(u: Up): void {
    if (this.up !== u) return;
    this.up = null;
    u.client = null;
    if (this.target !== null) routing.recordFailure(this.target, 'reset', 'upstream failed', performance.now() - this.startedAt);
    if (u.inBody) { this.state = 'closed'; this.sock.end(); return; }
    this.fatal(RESP_502);
  }

  fatal(resp: Buffer): void {
    this.state = 'closed';
    this.pending = null;
    this.out.write(this.sock, resp);
    this.out.closeAfter = true;
    this.out.flush(this.sock);
  }

  closed(): void {
    this.state = 'closed';
    const u = this.up;
    this.up = null;
    if (u !== null) { u.client = null; u.dead = true; u.sock?.end(); }
  }
}

const port = Number(process.argv[2]);
const control = process.argv[3];
if (!Number.isInteger(port) || !control) {
  process.stderr.write('usage: bun dist/bench/runtime-spike/sidecar-bun.js PORT CONTROL_SOCKET\n');
  process.exit(2);
}
const client = new ControlClient({
  socketPath: control,
  apply: (table) => routing.apply(table),
  revision: () => routing.revision,
  stats: () => routing.stats(),
});
routing.onFailure = (msg) => client.reportFailure(msg);
client.start();

Bun.listen<Client>({
  hostname: '127.0.0.1',
  port,
  socket: {
    open(s) { s.setNoDelay?.(true); s.data = new Client(s); },
    data(s, b) { s.data.onData(b); },
    drain(s) { s.data.out.flush(s); },
    close(s) { s.data.closed(); },
    error() { /* close follows */ },
  },
});
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
void BODY_LENGTH; void BODY_CHUNKED;
