// The sidecar data path: a raw `net` HTTP/1.1 reverse proxy.
//
// One ClientConn per client socket processes requests strictly in order (pipelined requests wait
// in the read buffer, like nginx). For each request: scan the head (framing.ts), ask the routing
// state for a decision, rewrite the head (drop hop-by-hop, add X-Forwarded-*), and open one
// Exchange per upstream attempt (primary, fallback, CONCURRENT shadow) on a pooled connection
// (upstream-pool.ts). Body bytes are forwarded as views of what was read, chunk framing as-is.
// The first response head decides: relay it, hold it (CONCURRENT, waiting for the other side),
// discard it, or fail over. Timeouts are deadlines on one coarse timer wheel (timers.ts).
//
// See sidecar/README.md "Data path" for limits, retry and smuggling rules.

import net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { FailureKind, RouteDecision, RoutingState, VersionTarget } from './routing-types.js';
import {
  BODY_LENGTH,
  BODY_NONE,
  BODY_UNTIL_CLOSE,
  BodyScanner,
  ERROR,
  HeadScanner,
  NEED_MORE,
  type BodyKind,
  type FramingErrorCode,
} from './framing.js';
import { UpstreamPool, type UpstreamConn, type UpstreamErrorKind, type UpstreamOwner } from './upstream-pool.js';
import { SocketWriter } from './socket-writer.js';
import { CONN_CLOSE, CONN_KEEP_ALIVE, CONN_UPGRADE, requestHead, responseHead } from './head-writer.js';
import { TimerWheel, now, type TimerItem } from './timers.js';
import { readIntoOwnBuffer, selfTest } from '../common/node-internals.js';

export interface ProxyLimits {
  maxHeaderBytes: number;
  maxHeaders: number;
  headerTimeoutMs: number;
  idleTimeoutMs: number;
  maxRetryBodyBytes: number;
  maxPipelined: number;
  /** A response of known length up to this size, to a request that could still fail over, is
   *  relayed only once it is complete: an upstream dying mid-body then costs a retry, not a
   *  truncated response. 0 = always stream. */
  maxBufferedResponseBytes: number;
  /** When every candidate version refused the connection (nothing of the request was sent), retry
   *  — re-routed — after 50, 100, 200, 400, 500… ms until this long after the first refusal,
   *  then answer 502. Masks brief blips such as a Docker daemon restart reloading its NAT rules.
   *  0 = answer 502 at once. */
  connectRetryMs: number;
}

export const DEFAULT_LIMITS: ProxyLimits = {
  maxHeaderBytes: 65536,
  maxHeaders: 100,
  headerTimeoutMs: 10000,
  idleTimeoutMs: 60000,
  maxRetryBodyBytes: 1048576,
  maxPipelined: 32,
  maxBufferedResponseBytes: 65536,
  connectRetryMs: 2000,
};

export interface ProxyOptions {
  routing: RoutingState;
  limits?: Partial<ProxyLimits>;
  log?: Logger;
}

export interface Proxy {
  readonly server: net.Server;
  /** Bind host:port, or with `fd`, listen on that inherited socket (already bound). */
  listen(port: number, host: string, fd?: number): Promise<AddressInfo>;
  close(graceMs?: number): Promise<void>;
}

export function createProxy(opts: ProxyOptions): Proxy {
  return new ProxyImpl(opts);
}

// ---- static strings, computed once ----

const CRLFCRLF = Buffer.from('\r\n\r\n', 'latin1');
const REASONS: Record<number, string> = {
  400: 'Bad Request', 405: 'Method Not Allowed', 408: 'Request Timeout', 431: 'Request Header Fields Too Large',
  500: 'Internal Server Error', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout',
};

function localResponse(status: number, body: string, close: boolean, keepAlive10: boolean, withBody: boolean): Buffer {
  const len = Buffer.byteLength(body);
  const head = `HTTP/1.1 ${status} ${REASONS[status] ?? 'Error'}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${len}\r\n` +
    (close ? CONN_CLOSE : keepAlive10 ? CONN_KEEP_ALIVE : '') + '\r\n';
  return Buffer.from(withBody ? head + body : head, 'utf8');
}

// Prebuilt fatal answers (always close).
const RESP_400 = localResponse(400, 'molt: bad request', true, false, true);
const RESP_408 = localResponse(408, 'molt: request header timeout', true, false, true);
const RESP_431 = localResponse(431, 'molt: request header too large', true, false, true);
const RESP_405_CONNECT = localResponse(405, 'molt: CONNECT not supported', true, false, true);

function errorResponseFor(code: FramingErrorCode | null): Buffer {
  return code === 'MOLT_ERR_HTTP_HEAD_TOO_LARGE' || code === 'MOLT_ERR_HTTP_TOO_MANY_HEADERS' ? RESP_431 : RESP_400;
}

function isRetryableMethod(m: string): boolean {
  return m === 'GET' || m === 'HEAD' || m === 'OPTIONS' || m === 'TRACE';
}

// request-side states
const RQ_IDLE = 0; // between requests, no byte of the next one seen
const RQ_HEAD = 1; // partial head buffered
const RQ_BODY = 2; // streaming the request body upstream
const RQ_DONE = 3; // request fully read; waiting for / relaying the response
const RQ_TUNNEL = 4; // after 101: raw bytes both ways
const RQ_CLOSED = 5;

// response-side states
const RS_NONE = 0; // undecided: no response bytes written to the client for this request
const RS_RELAY = 1;
const RS_DONE = 2;

// client timer kinds
const T_NONE = 0;
const T_HEADER = 1;
const T_IDLE = 2;
const T_LINGER = 3;
const LINGER_MS = 2000;
/** Body bytes up to this size that arrive with a head are copied into the head buffer (one write). */
const MERGE_MAX = 16 * 1024;

// exchange roles and states
const ROLE_PRIMARY = 0;
const ROLE_FALLBACK = 1;
const ROLE_SHADOW = 2;
const X_WAIT = 0; // waiting for the response head
const X_HOLD = 1; // head received, socket paused, waiting for the decision
const X_RELAY = 2;
const X_DISCARD = 3;
const X_DONE = 4;
const X_TUNNEL = 5;
const X_BUFFER = 6; // head received and kept; body being collected before anything is relayed

class ProxyImpl implements Proxy {
  readonly server: net.Server;
  readonly routing: RoutingState;
  readonly limits: ProxyLimits;
  readonly log: Logger | undefined;
  readonly wheel: TimerWheel;
  readonly pool: UpstreamPool;
  readonly conns = new Set<ClientConn>();
  closing = false;
  #closedResolve: (() => void) | null = null;
  // counters: plain fields, cheap when unused
  requests = 0;
  rejected = 0;
  retries = 0;
  staleRetries = 0;
  connectRetries = 0;
  shadowed = 0;

  constructor(opts: ProxyOptions) {
    this.routing = opts.routing;
    this.limits = { ...DEFAULT_LIMITS, ...opts.limits };
    this.log = opts.log;
    this.wheel = new TimerWheel();
    this.pool = new UpstreamPool({ wheel: this.wheel, maxHeaderBytes: this.limits.maxHeaderBytes, maxHeaders: this.limits.maxHeaders });
    this.server = net.createServer({ allowHalfOpen: true, noDelay: true }, (s) => this.#onConnection(s));
    this.server.on('error', (e) => this.log?.error({ err: e }, 'proxy server error'));
  }

  #onConnection(s: net.Socket): void {
    if (this.closing) { s.destroy(); return; }
    const c = new ClientConn(this, s);
    this.conns.add(c);
  }

  connClosed(c: ClientConn): void {
    this.conns.delete(c);
    if (this.closing && this.conns.size === 0 && this.#closedResolve !== null) this.#closedResolve();
  }

  async listen(port: number, host: string, fd?: number): Promise<AddressInfo> {
    // Node-internals fast paths are enabled only once their self-test passed (common/node-internals.ts).
    await selfTest();
    return new Promise((resolve, reject) => {
      const onErr = (e: Error): void => reject(e);
      this.server.once('error', onErr);
      const opts = fd !== undefined ? { fd } : { port, host };
      this.server.listen(opts, () => {
        this.server.off('error', onErr);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  async close(graceMs = 5000): Promise<void> {
    this.closing = true;
    const serverClosed = new Promise<void>((r) => this.server.close(() => r()));
    const allClosed = new Promise<void>((r) => { this.#closedResolve = r; });
    for (const c of [...this.conns]) c.shutdownIfIdle();
    this.pool.closeIdle();
    if (this.conns.size > 0) {
      let t: NodeJS.Timeout | undefined;
      const grace = new Promise<void>((r) => { t = setTimeout(r, graceMs); });
      await Promise.race([allClosed, grace]);
      clearTimeout(t);
      for (const c of [...this.conns]) c.socket.destroy();
    }
    this.pool.close();
    await serverClosed;
    this.wheel.close();
  }
}

/** One attempt to get a response from one upstream version. */
class Exchange implements UpstreamOwner {
  readonly client: ClientConn;
  readonly gen: number;
  readonly target: VersionTarget;
  readonly role: number;
  readonly isHead: boolean;
  conn: UpstreamConn | null = null;
  host = '';
  port = 0;
  key = '';
  queue: Buffer[] | null = null;
  queuedBytes = 0;
  written = false;
  requestDone = false;
  state = X_WAIT;
  status = 0;
  /** The response counted as a failure (status) or the exchange failed (error); recorded already. */
  failed = false;
  errKind: UpstreamErrorKind | 'protocol' | null = null;
  freshRetried = false;
  startedAt = now();
  respBuf: Buffer | null = null;
  headBuf: Buffer | null = null;
  headLen = 0;
  rest: Buffer | null = null;
  /** X_BUFFER: the body collected so far (our own copy), and how much of it is filled. */
  bodyBuf: Buffer | null = null;
  bodyFill = 0;
  bodyKind: BodyKind = BODY_NONE;
  reusable = false;
  /** Primary: a refused or reset connection not yet counted against this version (see #failed).
   *  Fallback: the primary whose failure waits for this exchange's outcome. */
  deferredDetail: string | null = null;
  deferredKind: FailureKind = 'connect';
  deferredFrom: Exchange | null = null;
  // orphaned shadow bookkeeping (request finished before the shadow answered)
  primaryStatus = 0;
  primaryTarget: VersionTarget | null = null;

  constructor(client: ClientConn, target: VersionTarget, role: number) {
    this.client = client;
    this.gen = client.gen;
    this.target = target;
    this.role = role;
    this.isHead = client.isHead;
  }

  start(chunks: Buffer[], fresh: boolean): void {
    const t = this.target;
    if (!fresh) {
      const i = t.nextEndpoint();
      const ep = t.endpoints[i]!;
      this.host = ep.host;
      this.port = ep.port;
      this.key = t.endpointKeys[i]!;
    }
    const pool = this.client.proxy.pool;
    const c = fresh
      ? pool.connect(this.key, this.host, this.port, t.connectTimeoutMs, this)
      : pool.acquire(this.key, this.host, this.port, t.connectTimeoutMs, this);
    this.conn = c;
    c.body.reset(BODY_NONE);
    if (c.connected) {
      this.#settleDeferred(true); // a pooled connection: this version is reachable
      this.#writeAll(c, chunks);
      if (this.requestDone || this.client.expectContinue) c.armResponseTimeout(t.responseTimeoutMs);
    } else {
      this.queue = chunks.slice();
      let n = 0;
      for (let i = 0; i < chunks.length; i++) n += chunks[i]!.length;
      this.queuedBytes = n;
    }
  }

  #writeAll(c: UpstreamConn, chunks: Buffer[]): void {
    const s = c.socket;
    if (chunks.length === 1) c.writer.write(chunks[0]!);
    else {
      s.cork();
      for (let i = 0; i < chunks.length; i++) s.write(chunks[i]!);
      s.uncork();
    }
    this.written = true;
  }

  /** Forward request bytes. False = stop reading from the client for now. */
  send(chunk: Buffer): boolean {
    const c = this.conn;
    if (c === null || this.state === X_DONE) return true;
    if (this.queue !== null) {
      this.queue.push(chunk);
      this.queuedBytes += chunk.length;
      return this.queuedBytes < this.client.proxy.limits.maxRetryBodyBytes;
    }
    this.written = true;
    return c.writer.write(chunk);
  }

  get needsDrain(): boolean {
    const c = this.conn;
    if (c === null || this.state === X_DONE) return false;
    if (this.queue !== null) return this.queuedBytes >= this.client.proxy.limits.maxRetryBodyBytes;
    return c.writer.needsDrain;
  }

  requestSent(): void {
    this.requestDone = true;
    const c = this.conn;
    if (c !== null && c.connected && this.state === X_WAIT) c.armResponseTimeout(this.target.responseTimeoutMs);
  }

  // ---- UpstreamOwner ----

  onUpstreamConnect(c: UpstreamConn): void {
    this.#settleDeferred(true);
    const q = this.queue;
    this.queue = null;
    this.queuedBytes = 0;
    if (q !== null && q.length > 0) this.#writeAll(c, q);
    if (this.requestDone || this.client.expectContinue) c.armResponseTimeout(this.target.responseTimeoutMs);
    if (this.gen === this.client.gen) this.client.maybeResume();
  }

  onUpstreamDrain(): void {
    if (this.state === X_TUNNEL) { this.client.socket.resume(); return; }
    if (this.gen === this.client.gen) this.client.maybeResume();
  }

  onUpstreamData(c: UpstreamConn, chunk: Buffer): void {
    switch (this.state) {
      case X_WAIT: this.#headData(c, chunk); break;
      case X_RELAY: this.client.relayData(this, chunk, 0); break;
      case X_DISCARD: this.#discardData(chunk, 0); return;
      case X_HOLD: this.rest = this.rest === null ? chunk : Buffer.concat([this.rest, chunk]); break;
      case X_BUFFER: this.#bufferData(c, chunk); break;
      case X_TUNNEL:
        if (!this.client.writer.write(chunk)) { this.client.relayPaused = true; c.socket.pause(); }
        break;
      default:
        return;
    }
    // `chunk` lives in c's reused read buffer. Still referenced after this call (a held head or
    // rest, a partial head, or client bytes not flushed synchronously: the Writable queue and libuv
    // keep views, not copies)? Then c's next read must go elsewhere.
    if (this.state === X_HOLD || this.state === X_BUFFER || this.respBuf !== null || !this.client.writer.flushed) c.pin();
  }

  #headData(c: UpstreamConn, chunk: Buffer): void {
    let buf = chunk;
    if (this.respBuf !== null) { buf = Buffer.concat([this.respBuf, chunk]); this.respBuf = null; }
    const h = c.head;
    const r = h.execute(buf, 0, buf.length);
    if (r === NEED_MORE) { this.respBuf = buf; return; }
    if (r === ERROR) { this.#protocolError(h.errorReason); return; }
    c.disarm();
    const st = h.status;
    if (st < 200 && st !== 101) {
      // Interim response (100 Continue, 103 Early Hints): relay to the client if this exchange may answer it.
      if (this.role !== ROLE_SHADOW && this.gen === this.client.gen) this.client.writeInterim(buf.subarray(0, r));
      h.reset();
      if (this.requestDone || this.client.expectContinue) c.armResponseTimeout(this.target.responseTimeoutMs);
      if (r < buf.length) this.#headData(c, buf.subarray(r));
      return;
    }
    this.status = st;
    this.headBuf = buf;
    this.headLen = r;
    this.rest = r < buf.length ? buf.subarray(r) : null;
    const kind = h.responseBodyKind(this.isHead);
    this.bodyKind = kind;
    c.body.reset(kind, h.contentLength);
    this.reusable = h.keepAlive && kind !== BODY_UNTIL_CLOSE && st !== 101 && !this.client.upgradeFor(this);
    if (this.target.isFailureStatus(st)) {
      this.failed = true;
      this.client.proxy.routing.recordFailure(this.target, 'status', 'status ' + st, now() - this.startedAt);
    }
    if (this.gen !== this.client.gen) { this.#orphanHead(); return; }
    this.client.onExchangeHead(this);
  }

  /** A shadow whose request already finished: compare, then drain. */
  #orphanHead(): void {
    if (this.primaryStatus !== 0 && this.primaryStatus !== this.status && this.primaryTarget !== null) {
      this.client.proxy.routing.recordMismatch(this.primaryTarget);
    }
    this.discard();
  }

  #protocolError(detail: string): void {
    const c = this.conn;
    if (c !== null) { this.conn = null; this.client.proxy.pool.destroy(c); }
    this.#failed('protocol', 'protocol ' + detail);
  }

  /** Collect the rest of a response of known length before relaying it (see maxBufferedResponseBytes).
   *  The head stays where it was read (its read buffer is pinned); body bytes are copied. The
   *  response timeout now covers the body too: an upstream stalling mid-body can still fail over. */
  startBuffering(): void {
    const c = this.conn!;
    this.state = X_BUFFER;
    this.bodyBuf = Buffer.allocUnsafe(c.head.contentLength);
    this.bodyFill = 0;
    c.armResponseTimeout(this.target.responseTimeoutMs);
    const r = this.rest;
    this.rest = null;
    if (r !== null) this.#bufferData(c, r);
  }

  #bufferData(c: UpstreamConn, chunk: Buffer): void {
    const b = c.body;
    const n = b.execute(chunk, 0, chunk.length);
    if (n === ERROR) { this.#protocolError(b.errorReason); return; }
    this.bodyFill += chunk.copy(this.bodyBuf!, this.bodyFill, 0, n);
    if (!b.done) return;
    c.disarm();
    if (n < chunk.length) this.reusable = false; // bytes after the response: don't trust the socket
    // Relay as if head and body had arrived together: the scanner runs again over the copy.
    b.reset(BODY_LENGTH, c.head.contentLength);
    this.rest = this.bodyBuf;
    this.bodyBuf = null;
    this.state = X_WAIT;
    if (this.gen === this.client.gen) this.client.bufferedResponse(this);
    else this.discard();
  }

  /** Hold the response: pause the socket until the client decides. */
  hold(): void {
    this.state = X_HOLD;
    if (this.conn !== null) this.conn.socket.pause();
  }

  /** Drain and drop the response; the socket goes back to the pool if it finishes cleanly. A failure
   *  response is dropped with its socket. */
  discard(): void {
    if (this.failed) { this.abort(); return; }
    this.state = X_DISCARD;
    const c = this.conn;
    if (c === null) return;
    if (c.socket.isPaused()) c.socket.resume();
    if (c.body.done) { this.complete(); return; }
    const r = this.rest;
    this.rest = null;
    if (r !== null) this.#discardData(r, 0);
  }

  #discardData(buf: Buffer, start: number): void {
    const c = this.conn!;
    const n = c.body.execute(buf, start, buf.length);
    if (n === ERROR) { this.#protocolError(c.body.errorReason); return; }
    if (c.body.done) {
      if (start + n < buf.length) this.reusable = false;
      this.complete();
    }
  }

  /** Stop now, destroying the socket. Nothing is recorded. */
  abort(): void {
    this.state = X_DONE;
    this.queue = null;
    const c = this.conn;
    if (c !== null) { this.conn = null; this.client.proxy.pool.destroy(c); }
  }

  /** The response finished cleanly (relayed or drained). */
  complete(): void {
    this.state = X_DONE;
    const c = this.conn;
    this.conn = null;
    if (c !== null) {
      if (this.reusable && this.requestDone) this.client.proxy.pool.release(c);
      else this.client.proxy.pool.destroy(c);
    }
    if (!this.failed) this.client.proxy.routing.recordSuccess(this.target, this.status, now() - this.startedAt);
  }

  onUpstreamEnd(c: UpstreamConn): void {
    if (this.state === X_TUNNEL) { this.client.socket.end(); return; }
    if (c.body.untilClose) {
      if (this.state === X_RELAY) { this.complete(); this.client.relayDone(this); return; }
      if (this.state === X_DISCARD) { this.complete(); return; }
      if (this.state === X_HOLD) { this.reusable = false; return; } // finishes when relayed/discarded
    }
    // Otherwise 'close' follows and reports a reset.
  }

  onUpstreamError(c: UpstreamConn, kind: UpstreamErrorKind, detail: string): void {
    this.conn = null;
    switch (this.state) {
      case X_TUNNEL:
        this.state = X_DONE;
        this.client.socket.end();
        return;
      case X_RELAY:
        this.state = X_DONE;
        if (c.body.untilClose) { this.complete(); this.client.relayDone(this); return; }
        this.client.proxy.routing.recordFailure(this.target, 'reset', detail, now() - this.startedAt);
        this.client.socket.destroy(); // response truncated: the client must notice
        return;
      case X_DISCARD:
      case X_HOLD:
        if (c.body.untilClose && this.state === X_DISCARD) { this.complete(); return; }
        this.state = X_DONE;
        if (!this.failed) {
          this.failed = true;
          this.client.proxy.routing.recordFailure(this.target, 'reset', detail, now() - this.startedAt);
        }
        if (this.gen === this.client.gen) this.client.onHeldLost(this);
        return;
      case X_BUFFER:
        this.bodyBuf = null;
        this.#failed(kind, detail); // nothing relayed yet: the client may still fail over
        return;
      case X_WAIT:
        break;
      default:
        return;
    }
    // No response head yet. A reused keep-alive socket that died before any response byte is
    // retried once on a fresh connection to the same endpoint (not an upstream failure).
    if (kind === 'reset' && c.reused && c.received === 0 && !this.freshRetried && this.gen === this.client.gen &&
        this.client.canResend(this)) {
      this.freshRetried = true;
      this.client.proxy.staleRetries++;
      this.respBuf = null;
      const chunks = this.client.resendChunks(this);
      this.written = false; // nothing of it reached the new connection (yet): a refused connect may be retried
      this.start(chunks, true);
      return;
    }
    this.#failed(kind, detail);
  }

  #failed(kind: UpstreamErrorKind | 'protocol', detail: string): void {
    this.state = X_DONE;
    this.errKind = kind;
    if (!this.failed) {
      this.failed = true;
      const refused = kind === 'connect';
      const deferredFrom = this.deferredFrom;
      this.#settleDeferred(!refused);
      if ((refused || kind === 'reset') && this.role === ROLE_PRIMARY && this.gen === this.client.gen && this.client.willFailOver(this)) {
        // Refused or reset: is it this version, or the way to every version (a Docker daemon
        // restart reloading NAT rules or killing docker-proxy)? The fallback's connect tells:
        // counted only if the fallback can be reached.
        this.deferredDetail = detail;
        this.deferredKind = kind;
      } else if (!(refused && deferredFrom !== null)) {
        this.client.proxy.routing.recordFailure(this.target, kind as FailureKind, detail, now() - this.startedAt);
      }
    }
    if (this.gen === this.client.gen) this.client.onExchangeFailed(this);
  }

  /** The fallback's outcome is known: count the primary's deferred failure (the fallback could be
   *  reached, so the primary itself is at fault) or drop it (refused too: infrastructure). */
  #settleDeferred(count: boolean): void {
    const p = this.deferredFrom;
    if (p === null) return;
    this.deferredFrom = null;
    const detail = p.deferredDetail;
    p.deferredDetail = null;
    if (count && detail !== null) this.client.proxy.routing.recordFailure(p.target, p.deferredKind, detail, now() - p.startedAt);
  }
}

/** Client request bytes read into one reused buffer per connection; 8 KiB: most heads fit, and it
 *  is the per-connection memory cost of an idle keep-alive client. */
const CLIENT_READ_BUFFER_BYTES = 8 * 1024;

/** Does this exchange still hold client bytes (queued for connect, or an unflushed upstream write)? */
function holdsClientBytes(ex: Exchange | null): boolean {
  if (ex === null) return false;
  if (ex.queue !== null) return true;
  const c = ex.conn;
  return c !== null && !c.writer.flushed;
}

class ClientConn implements TimerItem {
  readonly proxy: ProxyImpl;
  readonly socket: net.Socket;
  /** Hot-path writes to `socket` (socket-writer.ts). */
  readonly writer: SocketWriter;
  readonly head: HeadScanner;
  readonly body: BodyScanner;
  readonly limits: ProxyLimits;
  readonly clientIp: string;
  deadline = 0;
  timerKind = T_NONE;
  pending: Buffer | null = null;
  pendingStart = 0;
  reqState = RQ_IDLE;
  respState = RS_NONE;
  gen = 0;
  inParse = false;
  clientEnded = false;
  readPaused = false;
  relayPaused = false;
  // per request
  decision: RouteDecision | null = null;
  isHead = false;
  v10 = false;
  keepAlive = true;
  upgrade = false;
  expectContinue = false;
  retryableMethod = false;
  // what the request was routed by (kept for a delayed re-route); delayed connect retries so far and since when
  reqMethod = '';
  reqHost: string | undefined = undefined;
  reqCookie: string | undefined = undefined;
  connectRetries = 0;
  connectRetrySince = 0;
  retained: Buffer[] | null = null;
  retainedBytes = 0;
  shadowBytes = 0;
  ex: Exchange | null = null;
  shadow: Exchange | null = null;
  relay: Exchange | null = null;
  retried = false;
  primaryFailed = false;
  primaryStatus = 0;
  shadowStatus = 0;
  mismatchChecked = false;
  #rbuf: Buffer | null = null;
  #rpinned = false;

  constructor(proxy: ProxyImpl, socket: net.Socket) {
    this.proxy = proxy;
    this.socket = socket;
    this.writer = new SocketWriter(socket, () => this.#onDrain());
    this.limits = proxy.limits;
    this.head = new HeadScanner(true, this.limits.maxHeaderBytes, this.limits.maxHeaders);
    this.body = new BodyScanner(this.limits.maxHeaderBytes);
    const ip = socket.remoteAddress ?? '';
    this.clientIp = ip.startsWith('::ffff:') ? ip.slice(7) : ip;
    if (!readIntoOwnBuffer(socket, () => this.#nextReadBuffer(), (n, b) => this.#onRead(n, b))) {
      socket.on('data', (d: Buffer) => this.onData(d));
    }
    socket.on('end', () => this.#onEnd());
    socket.on('error', () => { /* 'close' follows */ });
    socket.on('close', () => this.#onClose());
    socket.on('drain', () => this.#onDrain());
    this.timerKind = T_HEADER;
    this.deadline = now() + this.limits.headerTimeoutMs;
    proxy.wheel.add(this);
  }

  // ---- reads into this connection's reused buffer (see readIntoOwnBuffer) ----

  #nextReadBuffer(): Buffer {
    let b = this.#rbuf;
    if (b === null || this.#rpinned) {
      this.#rpinned = false;
      b = this.#rbuf = Buffer.allocUnsafe(CLIENT_READ_BUFFER_BYTES);
    }
    return b;
  }

  #onRead(n: number, b: Buffer): boolean {
    this.onData(b.subarray(0, n));
    // The bytes are only valid until we return. Anything that still holds a view of them (an
    // unparsed rest, retained body for a retry, a queue waiting for connect, or an upstream write
    // that did not flush synchronously) gets to keep this buffer: the next read goes into a new one.
    if (this.pending !== null || (this.retained !== null && this.retained.length > 1) || holdsClientBytes(this.ex) ||
        holdsClientBytes(this.shadow) || (this.reqState === RQ_TUNNEL && holdsClientBytes(this.relay))) this.#rpinned = true;
    return true;
  }

  // ---- timers ----

  onTimeout(): void {
    const k = this.timerKind;
    this.timerKind = T_NONE;
    if (k === T_HEADER && this.reqState === RQ_HEAD) { this.#fatal(RESP_408); return; }
    if (k === T_HEADER || k === T_IDLE || k === T_LINGER) this.socket.destroy();
  }

  #arm(kind: number, ms: number): void {
    this.timerKind = kind;
    this.deadline = now() + ms;
  }

  #disarm(): void {
    this.timerKind = T_NONE;
    this.deadline = 0;
  }

  // ---- client socket events ----

  onData(chunk: Buffer): void {
    switch (this.reqState) {
      case RQ_TUNNEL: {
        const up = this.relay?.conn;
        if (up && !up.writer.write(chunk)) this.socket.pause();
        return;
      }
      case RQ_BODY:
        this.#bodyData(chunk, 0);
        return;
      case RQ_CLOSED:
        return;
      default:
        break;
    }
    if (this.pending === null) { this.pending = chunk; this.pendingStart = 0; }
    else { this.pending = Buffer.concat([this.pending.subarray(this.pendingStart), chunk]); this.pendingStart = 0; }
    if (this.reqState === RQ_DONE) { this.#boundPipeline(); return; }
    if (!this.inParse) this.#parseLoop();
  }

  /** While a request is in flight, stop reading once too much is queued behind it. */
  #boundPipeline(): void {
    const p = this.pending!;
    const len = p.length - this.pendingStart;
    let pause = len > this.limits.maxHeaderBytes;
    if (!pause) {
      let heads = 0;
      let i = p.indexOf(CRLFCRLF, this.pendingStart);
      while (i >= 0 && heads < this.limits.maxPipelined) { heads++; i = p.indexOf(CRLFCRLF, i + 4); }
      pause = heads >= this.limits.maxPipelined;
    }
    if (pause && !this.readPaused) { this.readPaused = true; this.socket.pause(); }
  }

  #onEnd(): void {
    this.clientEnded = true;
    switch (this.reqState) {
      case RQ_TUNNEL: this.relay?.conn?.socket.end(); return;
      case RQ_IDLE: if (this.pending === null) this.socket.end(); else this.socket.destroy(); return;
      case RQ_HEAD: case RQ_BODY: this.socket.destroy(); return;
      default: return; // RQ_DONE: answer, then end (see #responseDone)
    }
  }

  #onClose(): void {
    this.reqState = RQ_CLOSED;
    this.deadline = 0;
    this.proxy.wheel.remove(this);
    if (this.ex !== null && this.ex.state !== X_DONE) this.ex.abort();
    if (this.shadow !== null && this.shadow.state !== X_DONE) this.shadow.abort();
    if (this.relay !== null && this.relay.state !== X_DONE) this.relay.abort();
    this.pending = null;
    this.retained = null;
    this.proxy.connClosed(this);
  }

  #onDrain(): void {
    if (this.relayPaused) {
      this.relayPaused = false;
      const r = this.relay;
      if (r !== null && r.conn !== null) r.conn.socket.resume();
    }
  }

  shutdownIfIdle(): void {
    if (this.reqState === RQ_IDLE && this.pending === null) this.socket.end();
    if (this.reqState === RQ_IDLE) this.#arm(T_LINGER, LINGER_MS);
  }

  // ---- request side ----

  #parseLoop(): void {
    this.inParse = true;
    while (this.pending !== null && (this.reqState === RQ_IDLE || this.reqState === RQ_HEAD)) {
      const buf = this.pending;
      const start = this.pendingStart;
      const r = this.head.execute(buf, start, buf.length);
      if (r === NEED_MORE) {
        if (this.reqState === RQ_IDLE) {
          this.reqState = RQ_HEAD;
          this.#arm(T_HEADER, this.limits.headerTimeoutMs);
        }
        break;
      }
      if (r === ERROR) {
        this.proxy.rejected++;
        this.#fatal(errorResponseFor(this.head.errorCode));
        break;
      }
      const end = start + r;
      if (end === buf.length) this.pending = null;
      else this.pendingStart = end;
      this.#startRequest(buf, start, end);
    }
    this.inParse = false;
  }

  #startRequest(buf: Buffer, hs: number, he: number): void {
    const h = this.head;
    const proxy = this.proxy;
    proxy.requests++;
    this.#disarm();
    const method = h.method;
    if (method === 'CONNECT') { this.#fatal(RESP_405_CONNECT); return; }
    this.isHead = method === 'HEAD';
    this.v10 = h.versionMinor === 0;
    this.keepAlive = h.keepAlive && !proxy.closing;
    this.upgrade = h.isUpgrade;
    this.expectContinue = h.expectContinue;
    this.retryableMethod = isRetryableMethod(method);
    const bodyKind = h.requestBodyKind;
    const host = h.host;
    this.reqState = bodyKind === BODY_NONE ? RQ_DONE : RQ_BODY;

    // Validate body bytes that arrived with the head before any byte goes upstream, so a request
    // with broken framing in its first packet is rejected without the upstream seeing it.
    let first: Buffer | null = null;
    if (bodyKind !== BODY_NONE) {
      this.body.reset(bodyKind, h.contentLength);
      const p = this.pending;
      if (p !== null) {
        const s = this.pendingStart;
        const n = this.body.execute(p, s, p.length);
        if (n === ERROR) { proxy.rejected++; this.#fatal(RESP_400); return; }
        first = n === p.length && s === 0 ? p : p.subarray(s, s + n);
        if (s + n === p.length) this.pending = null;
        else this.pendingStart = s + n;
        if (this.body.done) this.reqState = RQ_DONE;
      }
    }

    this.reqMethod = method;
    this.reqHost = host;
    this.reqCookie = h.cookie;
    this.connectRetries = 0;
    const d = this.#route();
    if (d === null) return;
    this.decision = d;
    // A small first body piece travels in the same buffer as the head: one write, one syscall.
    const merge = first !== null && first.length <= MERGE_MAX ? first : null;
    if (merge !== null) first = null;
    const out = requestHead(h, buf, hs, host, this.clientIp, this.upgrade, this.v10, merge);

    const cl = h.contentLength;
    const fitsRetry = bodyKind !== BODY_LENGTH || cl <= this.limits.maxRetryBodyBytes;
    this.retained = this.retryableMethod && fitsRetry ? [out] : null;
    this.retainedBytes = 0;
    this.shadowBytes = 0;
    const sh = d.shadow;
    const dup = sh !== null && sh.routable && !this.upgrade && (bodyKind !== BODY_LENGTH || cl <= d.maxDuplicateBodyBytes);

    const ex = new Exchange(this, d.primary, ROLE_PRIMARY);
    this.ex = ex;
    ex.start([out], false);
    if (dup) {
      proxy.shadowed++;
      const s = new Exchange(this, sh, ROLE_SHADOW);
      this.shadow = s;
      s.start([out], false);
    }
    if (first !== null) this.#forward(first);
    if (this.reqState === RQ_DONE) this.#requestComplete();
    else if (this.pending !== null) {
      const p = this.pending;
      this.pending = null;
      this.#bodyData(p, this.pendingStart);
    }
  }

  /** Route the current request (reqHost, reqCookie, reqMethod); null = answered 503 already. */
  #route(): RouteDecision | null {
    const proxy = this.proxy;
    let d: RouteDecision | null;
    try {
      d = proxy.routing.route(this.reqHost, this.reqCookie, this.reqMethod);
    } catch (e) {
      proxy.log?.error({ err: e }, 'routing.route threw');
      d = null;
    }
    if (d === null) {
      // No app for this host, or its app has no ready version (the controller leaves such apps out).
      const msg = proxy.routing.revision === 0 ? 'molt: no routing table yet' : 'molt: no ready version serves host ' + (this.reqHost ?? '');
      this.#sendLocal(503, msg);
    }
    return d;
  }

  #bodyData(buf: Buffer, start: number): void {
    const n = this.body.execute(buf, start, buf.length);
    if (n === ERROR) { this.#badBody(); return; }
    if (n > 0) this.#forward(n === buf.length && start === 0 ? buf : buf.subarray(start, start + n));
    if (this.body.done && this.reqState === RQ_BODY) {
      this.reqState = RQ_DONE;
      if (start + n < buf.length) {
        this.pending = buf;
        this.pendingStart = start + n;
      }
      this.#requestComplete();
      if (this.pending !== null && this.reqState === RQ_DONE) this.#boundPipeline();
    }
  }

  #forward(chunk: Buffer): void {
    const r = this.retained;
    if (r !== null) {
      if (this.retainedBytes + chunk.length <= this.limits.maxRetryBodyBytes) {
        r.push(chunk);
        this.retainedBytes += chunk.length;
      } else this.retained = null;
    }
    let ok = true;
    const ex = this.ex;
    if (ex !== null) ok = ex.send(chunk);
    const s = this.shadow;
    if (s !== null && s.state !== X_DONE) {
      this.shadowBytes += chunk.length;
      if (this.shadowBytes > this.decision!.maxDuplicateBodyBytes) {
        // Too big to duplicate after all (chunked): the shadow is dropped, nothing recorded.
        s.abort();
        this.shadow = null;
        const p = this.ex;
        if (this.primaryFailed && this.respState === RS_NONE && p !== null && p.state === X_HOLD) this.#startRelay(p);
      } else if (!s.send(chunk)) ok = false;
    }
    if (!ok && !this.readPaused) { this.readPaused = true; this.socket.pause(); }
  }

  maybeResume(): void {
    if (!this.readPaused || this.reqState !== RQ_BODY) return;
    if (this.ex !== null && this.ex.needsDrain) return;
    if (this.shadow !== null && this.shadow.needsDrain) return;
    this.readPaused = false;
    this.socket.resume();
  }

  #requestComplete(): void {
    if (this.ex !== null) this.ex.requestSent();
    if (this.shadow !== null) this.shadow.requestSent();
    if (this.readPaused && this.pending === null) { this.readPaused = false; this.socket.resume(); }
  }

  #badBody(): void {
    this.proxy.rejected++;
    if (this.ex !== null) this.ex.abort();
    if (this.shadow !== null) this.shadow.abort();
    if (this.respState === RS_NONE) this.#fatal(RESP_400);
    else this.socket.destroy();
  }

  /** Answer with a prebuilt response and close: the connection's framing can't be trusted anymore. */
  #fatal(resp: Buffer): void {
    this.reqState = RQ_CLOSED;
    this.respState = RS_DONE;
    this.pending = null;
    if (!this.socket.writable) { this.socket.destroy(); return; }
    this.socket.end(resp);
    this.#arm(T_LINGER, LINGER_MS);
  }

  #sendLocal(status: number, msg: string): void {
    const close = !this.keepAlive || this.reqState !== RQ_DONE || this.clientEnded || this.proxy.closing;
    if (close) this.keepAlive = false;
    this.socket.write(localResponse(status, msg, close, this.v10, !this.isHead));
    this.respState = RS_DONE;
    this.#responseDone();
  }

  // ---- retry support ----

  canResend(ex: Exchange): boolean {
    if (this.upgrade && ex.written) return false;
    if (!this.retryableMethod && ex.written) return false;
    return this.retained !== null || (!ex.written && ex.queue !== null);
  }

  resendChunks(ex: Exchange): Buffer[] {
    if (!ex.written && ex.queue !== null) return ex.queue;
    return this.retained!;
  }

  #canFailover(ex: Exchange): boolean {
    if (this.retried || ex.role !== ROLE_PRIMARY || this.respState !== RS_NONE) return false;
    const d = this.decision!;
    const fb = d.fallback;
    if (fb === null || !fb.routable || fb === d.primary) return false;
    return this.canResend(ex);
  }

  /** Will a failure of this exchange (before any response) be retried on the fallback? */
  willFailOver(ex: Exchange): boolean {
    return this.shadow === null && this.#canFailover(ex);
  }

  #startFallback(old: Exchange): void {
    this.retried = true;
    this.proxy.retries++;
    const chunks = this.resendChunks(old);
    const ex = new Exchange(this, this.decision!.fallback!, ROLE_FALLBACK);
    if (old.deferredDetail !== null) ex.deferredFrom = old;
    this.ex = ex;
    if (this.reqState === RQ_DONE) ex.requestDone = true;
    ex.start(chunks, false);
  }

  // ---- response side ----

  upgradeFor(ex: Exchange): boolean {
    return ex.gen === this.gen && this.upgrade;
  }

  writeInterim(head: Buffer): void {
    if (this.respState === RS_NONE) this.socket.write(head);
  }

  #checkMismatch(): void {
    if (this.mismatchChecked || this.primaryStatus === 0 || this.shadowStatus === 0) return;
    this.mismatchChecked = true;
    if (this.primaryStatus !== this.shadowStatus) this.proxy.routing.recordMismatch(this.decision!.primary);
  }

  onExchangeHead(ex: Exchange): void {
    const shadow = this.shadow;
    if (ex.role === ROLE_SHADOW) {
      this.shadowStatus = ex.status;
      this.#checkMismatch();
      if (this.respState !== RS_NONE) { ex.discard(); return; }
      if (this.primaryFailed) {
        const p = this.ex;
        if (ex.failed && p !== null && p.state === X_HOLD) { ex.discard(); this.#startRelay(p); return; }
        if (p !== null && p.state !== X_DONE) p.abort();
        this.#startRelay(ex);
        return;
      }
      ex.hold();
      return;
    }
    if (ex.role === ROLE_PRIMARY) {
      this.primaryStatus = ex.status;
      if (shadow !== null) { shadow.primaryStatus = ex.status; shadow.primaryTarget = ex.target; }
      this.#checkMismatch();
    }
    if (ex.failed) {
      if (shadow !== null && shadow.state !== X_DONE && ex.role === ROLE_PRIMARY) {
        this.primaryFailed = true;
        if (shadow.state === X_HOLD) {
          if (!shadow.failed) { ex.abort(); this.#startRelay(shadow); }
          else { shadow.discard(); this.#startRelay(ex); }
        } else ex.hold();
        return;
      }
      if (this.#canFailover(ex)) { ex.abort(); this.#startFallback(ex); return; }
    }
    if (shadow !== null && shadow.state === X_HOLD) shadow.discard();
    if (this.#shouldBuffer(ex, shadow)) { ex.startBuffering(); return; }
    this.#startRelay(ex);
  }

  /** Buffer a small response of known length that is not complete yet, when the request could still
   *  fail over if the upstream dies before the body is complete (CONCURRENT keeps its own rules). */
  #shouldBuffer(ex: Exchange, shadow: Exchange | null): boolean {
    if (ex.bodyKind !== BODY_LENGTH || ex.status === 101 || (shadow !== null && shadow.state !== X_DONE)) return false;
    const c = ex.conn!;
    if (c.body.done) return false;
    const len = c.head.contentLength;
    if (len > this.limits.maxBufferedResponseBytes || (ex.rest !== null && ex.rest.length >= len)) return false;
    return this.#canFailover(ex);
  }

  /** A buffered response is complete: relay it now. */
  bufferedResponse(ex: Exchange): void {
    if (this.respState !== RS_NONE || ex !== this.ex) { ex.discard(); return; }
    this.#startRelay(ex);
  }

  /** An exchange without a response head failed (connect error, timeout, reset). */
  onExchangeFailed(ex: Exchange): void {
    if (this.respState !== RS_NONE) return;
    const shadow = this.shadow;
    if (ex.role === ROLE_SHADOW) {
      if (!this.primaryFailed) return;
      const p = this.ex;
      if (p !== null && p.state === X_HOLD) { this.#startRelay(p); return; }
      this.#finalError(p !== null && p.errKind !== null ? p.errKind : ex.errKind);
      return;
    }
    if (shadow !== null && shadow.state !== X_DONE && ex.role === ROLE_PRIMARY) {
      this.primaryFailed = true;
      if (shadow.state === X_HOLD) this.#startRelay(shadow);
      return;
    }
    if (this.#canFailover(ex)) { this.#startFallback(ex); return; }
    this.#finalError(ex.errKind);
  }

  /** A held response (CONCURRENT) died before it was chosen. */
  onHeldLost(ex: Exchange): void {
    if (this.respState !== RS_NONE) return;
    if (ex.role === ROLE_SHADOW) {
      if (this.primaryFailed) {
        const p = this.ex;
        if (p !== null && p.state === X_HOLD) this.#startRelay(p);
        else this.#finalError('reset');
      }
      return;
    }
    const s = this.shadow;
    if (s !== null && s.state === X_HOLD) this.#startRelay(s);
    else if (s === null || s.state === X_DONE) this.#finalError('reset');
  }

  #finalError(kind: UpstreamErrorKind | 'protocol' | null): void {
    if (this.shadow !== null && this.shadow.state !== X_DONE) this.shadow.abort();
    if (kind === 'connect' && this.#retryConnectLater()) return;
    const timeout = kind === 'connect-timeout' || kind === 'response-timeout';
    const msg = kind === 'connect' ? 'molt: upstream connect failed' : timeout ? 'molt: upstream timeout' : 'molt: upstream error';
    this.#sendLocal(timeout ? 504 : 502, msg);
  }

  /** Connection refused everywhere and nothing sent: try again a little later (connectRetryMs). */
  #retryConnectLater(): boolean {
    const ex = this.ex;
    if (ex === null || ex.written || ex.queue === null || this.reqState !== RQ_DONE) return false;
    const delay = Math.min(50 << this.connectRetries, 500);
    const t = now();
    if (this.connectRetries === 0) this.connectRetrySince = t;
    if (t + delay - this.connectRetrySince > this.limits.connectRetryMs) return false;
    this.connectRetries++;
    this.proxy.connectRetries++;
    const chunks = ex.queue;
    const gen = this.gen;
    setTimeout(() => this.#retryConnect(gen, chunks), delay);
    return true;
  }

  #retryConnect(gen: number, chunks: Buffer[]): void {
    if (gen !== this.gen || this.reqState !== RQ_DONE || this.respState !== RS_NONE) return; // client gone meanwhile
    const d = this.#route();
    if (d === null) return;
    // Routing may have changed meanwhile (the refusing version rolled back): a fresh decision, the
    // fallback available again, no shadow (CONCURRENT duplicates only first attempts).
    this.decision = d;
    this.retried = false;
    this.primaryFailed = false;
    this.shadow = null;
    const ex = new Exchange(this, d.primary, ROLE_PRIMARY);
    this.ex = ex;
    ex.requestDone = true;
    ex.start(chunks, false);
  }

  #startRelay(ex: Exchange): void {
    this.respState = RS_RELAY;
    this.relay = ex;
    ex.state = X_RELAY;
    const c = ex.conn!;
    const sock = this.socket;
    const isUpgrade = ex.status === 101;
    if (isUpgrade && !this.upgrade) { ex.abort(); this.proxy.routing.recordFailure(ex.target, 'protocol', 'unexpected 101', 0); sock.destroy(); return; }
    if (this.reqState !== RQ_DONE || ex.bodyKind === BODY_UNTIL_CLOSE || this.clientEnded || this.proxy.closing) this.keepAlive = false;
    if (isUpgrade) {
      sock.cork();
      sock.write(this.#buildResponseHead(ex, true, null, 0));
      this.#startTunnel(ex, c);
      sock.uncork();
      return;
    }
    if (c.socket.isPaused()) c.socket.resume();
    const r = ex.rest;
    ex.rest = null;
    if (r !== null && r.length <= MERGE_MAX && !c.body.done) {
      // Common case: head and a small body arrived together. One buffer, one write.
      const n = c.body.execute(r, 0, r.length);
      if (n === ERROR) { this.#badResponseBody(ex); return; }
      if (!this.writer.write(this.#buildResponseHead(ex, false, r, n)) && !c.body.done) { this.relayPaused = true; c.socket.pause(); }
      if (c.body.done) {
        if (n < r.length) ex.reusable = false;
        ex.complete();
        this.relayDone(ex);
      }
      return;
    }
    sock.cork();
    sock.write(this.#buildResponseHead(ex, false, null, 0));
    if (c.body.done) {
      if (r !== null) ex.reusable = false;
      ex.complete();
      this.relayDone(ex);
    } else if (r !== null) this.relayData(ex, r, 0);
    sock.uncork();
  }

  #badResponseBody(ex: Exchange): void {
    ex.abort();
    this.proxy.routing.recordFailure(ex.target, 'protocol', 'bad response body framing', now() - ex.startedAt);
    this.socket.destroy();
  }

  #buildResponseHead(ex: Exchange, isUpgrade: boolean, tail: Buffer | null, tailLen: number): Buffer {
    const connection = isUpgrade ? CONN_UPGRADE : !this.keepAlive ? CONN_CLOSE : this.v10 ? CONN_KEEP_ALIVE : '';
    return responseHead(ex.conn!.head, ex.headBuf!, isUpgrade, connection, this.decision!.responseHeaders(ex.target), tail, tailLen);
  }

  relayData(ex: Exchange, buf: Buffer, start: number): void {
    const c = ex.conn!;
    const b = c.body;
    const n = b.execute(buf, start, buf.length);
    if (n === ERROR) { this.#badResponseBody(ex); return; }
    if (n > 0 && !this.writer.write(n === buf.length && start === 0 ? buf : buf.subarray(start, start + n))) {
      this.relayPaused = true;
      c.socket.pause();
    }
    if (b.done) {
      if (start + n < buf.length) ex.reusable = false; // bytes after the response: don't trust the socket
      ex.complete();
      this.relayDone(ex);
    }
  }

  #startTunnel(ex: Exchange, c: UpstreamConn): void {
    c.detach();
    ex.state = X_TUNNEL;
    this.reqState = RQ_TUNNEL;
    this.proxy.routing.recordSuccess(ex.target, 101, now() - ex.startedAt);
    const r = ex.rest;
    ex.rest = null;
    if (r !== null) this.socket.write(r);
    if (this.pending !== null) {
      c.socket.write(this.pending.subarray(this.pendingStart));
      this.pending = null;
    }
    if (c.socket.isPaused()) c.socket.resume();
    if (this.readPaused) { this.readPaused = false; this.socket.resume(); }
    if (this.clientEnded) c.socket.end();
  }

  relayDone(ex: Exchange): void {
    if (ex !== this.relay) return;
    this.relay = null;
    this.relayPaused = false;
    this.respState = RS_DONE;
    this.#responseDone();
  }

  #responseDone(): void {
    if (this.reqState === RQ_CLOSED) return;
    const s = this.shadow;
    if (s !== null && s.state === X_HOLD) s.discard();
    if (this.reqState !== RQ_DONE || !this.keepAlive || this.clientEnded || this.proxy.closing) {
      this.reqState = RQ_CLOSED;
      if (s !== null && s.state !== X_DONE) s.abort();
      this.pending = null;
      this.socket.end();
      this.#arm(T_LINGER, LINGER_MS);
      return;
    }
    // Next request. An unfinished shadow keeps running on its own (orphaned by the gen bump).
    this.head.reset();
    this.gen++;
    this.decision = null;
    this.ex = null;
    this.shadow = null;
    this.retained = null;
    this.retried = false;
    this.primaryFailed = false;
    this.primaryStatus = 0;
    this.shadowStatus = 0;
    this.mismatchChecked = false;
    this.reqState = RQ_IDLE;
    this.respState = RS_NONE;
    this.#arm(T_IDLE, this.limits.idleTimeoutMs);
    if (this.readPaused) { this.readPaused = false; this.socket.resume(); }
    if (this.pending !== null && !this.inParse) this.#parseLoop();
    // Still a full pipeline queued behind the next request: keep reading paused (the resume above
    // takes effect on the next tick, so no read happens in between), or every response would let one
    // more socket read into `pending` and a client could make it grow without bound.
    if (this.reqState === RQ_DONE && this.pending !== null) this.#boundPipeline();
  }
}
