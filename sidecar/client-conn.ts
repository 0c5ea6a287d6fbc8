// One client connection: reads and scans requests, routes each, and answers it.
//
// Requests on a connection are processed strictly in order (pipelined requests wait in the read
// buffer, like nginx). For each request: scan the head (framing.ts), ask the routing state for a
// decision, rewrite the head (head-writer.ts), and open one Exchange per upstream attempt
// (exchange.ts: primary, fallback, CONCURRENT shadow). Body bytes are forwarded as views of what
// was read, chunk framing as-is. When an exchange answers or fails, exchange-policy.ts decides
// what happens (relay, hold, buffer, fail over, retry, answer 502/504) and this class carries it
// out; relaying the chosen response (and the Upgrade tunnel) is here too.
//
// States (string literals, exhaustive switches): RequestState for the request side, ResponseState
// for the response side, TimerKind for the one deadline on the proxy's timer wheel.

import type net from 'node:net';
import type { RouteDecision } from './routing-types.js';
import {
  BODY_LENGTH,
  BODY_NONE,
  BODY_UNTIL_CLOSE,
  BodyScanner,
  ERROR,
  HeadScanner,
  NEED_MORE,
  type FramingErrorCode,
} from './framing.js';
import type { UpstreamConn } from './upstream-pool.js';
import { SocketWriter } from './socket-writer.js';
import { CONN_CLOSE, CONN_KEEP_ALIVE, CONN_UPGRADE, RequestLines, requestHead, responseHead } from './head-writer.js';
import { now, type TimerItem } from './timers.js';
import { readIntoOwnBuffer } from '../common/node-internals.js';
import { Exchange } from './exchange.js';
import type { Capture } from './recorder.js';
import {
  connectRetryDelay,
  decide,
  finalErrorKind,
  newPolicyState,
  type Decision,
  type ErrorKind,
  type PolicyEvent,
  type PolicyState,
} from './exchange-policy.js';
import { DEBUG_ASSERTS, assert, unreachable } from './invariants.js';
import type { ProxyImpl, ProxyLimits } from './proxy.js';

/**
 * - idle: between requests, no byte of the next one seen
 * - head: a partial request head is buffered
 * - body: streaming the request body upstream
 * - done: request fully read; waiting for / relaying the response
 * - tunnel: after 101, raw bytes both ways
 * - closed: the connection is finished (closing or closed)
 */
export type RequestState = 'idle' | 'head' | 'body' | 'done' | 'tunnel' | 'closed';
/** none: nothing of a response written to the client for this request yet (undecided). */
export type ResponseState = 'none' | 'relay' | 'done';
/** What the connection's one deadline is for. */
export type TimerKind = 'none' | 'header' | 'idle' | 'linger';

// ---- static strings, computed once ----

const CRLFCRLF = Buffer.from('\r\n\r\n', 'latin1');
const EMPTY = Buffer.alloc(0);
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

const LINGER_MS = 2000;
/** Body bytes up to this size that arrive with a head are copied into the head buffer (one write). */
const MERGE_MAX = 16 * 1024;

/** Client request bytes read into one reused buffer per connection; 8 KiB: most heads fit, and it
 *  is the per-connection memory cost of an idle keep-alive client. */
const CLIENT_READ_BUFFER_BYTES = 8 * 1024;
/** While a request body larger than that streams: fewer, larger reads and upstream writes (a 1 MiB
 *  upload is 16 reads instead of 128); back to the small buffer once the body is through. */
const CLIENT_BODY_READ_BUFFER_BYTES = 64 * 1024;

/** Does this exchange still hold client bytes (queued for connect, or an unflushed upstream write)? */
function holdsClientBytes(ex: Exchange | null): boolean {
  if (ex === null) return false;
  if (ex.queue !== null) return true;
  const c = ex.conn;
  return c !== null && !c.writer.flushed;
}

export class ClientConn implements TimerItem {
  /** Recording of the current exchange (preflight; null when not recorded). */
  cap: Capture | null = null;
  readonly proxy: ProxyImpl;
  readonly socket: net.Socket;
  /** Hot-path writes to `socket` (socket-writer.ts). */
  readonly writer: SocketWriter;
  readonly head: HeadScanner;
  readonly body: BodyScanner;
  readonly limits: ProxyLimits;
  readonly clientIp: string;
  /** The X-Forwarded-* (and Connection) lines we add to this connection's requests, as bytes. */
  readonly #lines: RequestLines;
  /** The one-element chunk list an exchange starts with (read during start(), never kept). */
  readonly #startChunks: Buffer[] = [EMPTY];
  deadline = 0;
  timerKind: TimerKind = 'none';
  pending: Buffer | null = null;
  pendingStart = 0;
  reqState: RequestState = 'idle';
  respState: ResponseState = 'none';
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
  /** The forwarded head of a request that may be resent (retryable method, body small enough); null = not resendable. */
  retainedHead: Buffer | null = null;
  /** retainedHead and the body chunks forwarded so far, once there is a body chunk (null before: no array per body-less request). */
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
  /** Refilled before each exchange-policy decision (one object per connection, no per-event allocation). */
  readonly #ps: PolicyState;

  constructor(proxy: ProxyImpl, socket: net.Socket) {
    this.proxy = proxy;
    this.socket = socket;
    this.writer = new SocketWriter(socket, () => this.#onDrain());
    this.limits = proxy.limits;
    this.#ps = newPolicyState(this.limits.connectRetryMs);
    this.head = new HeadScanner(true, this.limits.maxHeaderBytes, this.limits.maxHeaders);
    this.body = new BodyScanner(this.limits.maxHeaderBytes);
    const ip = socket.remoteAddress ?? '';
    this.clientIp = ip.startsWith('::ffff:') ? ip.slice(7) : ip;
    this.#lines = new RequestLines(this.clientIp);
    if (!readIntoOwnBuffer(socket, () => this.#nextReadBuffer(), (n, b) => this.#onRead(n, b))) {
      socket.on('data', (d: Buffer) => this.onData(d));
    }
    socket.on('end', () => this.#onEnd());
    socket.on('error', () => { /* 'close' follows */ });
    socket.on('close', () => this.#onClose());
    socket.on('drain', () => this.#onDrain());
    this.timerKind = 'header';
    this.deadline = now() + this.limits.headerTimeoutMs;
    proxy.wheel.add(this);
  }

  // ---- reads into this connection's reused buffer (see readIntoOwnBuffer) ----

  #nextReadBuffer(): Buffer {
    let size = CLIENT_READ_BUFFER_BYTES;
    if (this.reqState === 'body') {
      const left = this.body.expected;
      if (left < 0 || left > CLIENT_READ_BUFFER_BYTES) size = CLIENT_BODY_READ_BUFFER_BYTES;
    }
    let b = this.#rbuf;
    if (b === null || this.#rpinned || b.length !== size) {
      this.#rpinned = false;
      b = this.#rbuf = Buffer.allocUnsafe(size);
    }
    return b;
  }

  #onRead(n: number, b: Buffer): boolean {
    this.onData(b.subarray(0, n));
    // The bytes are only valid until we return. Anything that still holds a view of them (an
    // unparsed rest, retained body for a retry, a queue waiting for connect, or an upstream write
    // that did not flush synchronously) gets to keep this buffer: the next read goes into a new one.
    if (this.pending !== null || this.retained !== null || holdsClientBytes(this.ex) ||
        holdsClientBytes(this.shadow) || (this.reqState === 'tunnel' && holdsClientBytes(this.relay))) this.#rpinned = true;
    return true;
  }

  // ---- timers ----

  onTimeout(): void {
    const k = this.timerKind;
    this.timerKind = 'none';
    switch (k) {
      case 'header':
        if (this.reqState === 'head') this.#fatal(RESP_408);
        else this.socket.destroy();
        return;
      case 'idle': case 'linger':
        this.socket.destroy();
        return;
      case 'none':
        return;
      default:
        unreachable(k);
    }
  }

  #arm(kind: TimerKind, ms: number): void {
    this.timerKind = kind;
    this.deadline = now() + ms;
  }

  #disarm(): void {
    this.timerKind = 'none';
    this.deadline = 0;
  }

  // ---- client socket events ----

  onData(chunk: Buffer): void {
    switch (this.reqState) {
      case 'tunnel': {
        const up = this.relay?.conn;
        if (up && !up.writer.write(chunk)) this.socket.pause();
        return;
      }
      case 'body':
        this.#bodyData(chunk, 0);
        return;
      case 'closed':
        return;
      case 'idle': case 'head': case 'done':
        break;
      default:
        unreachable(this.reqState);
    }
    if (this.pending === null) { this.pending = chunk; this.pendingStart = 0; }
    else { this.pending = Buffer.concat([this.pending.subarray(this.pendingStart), chunk]); this.pendingStart = 0; }
    if (this.reqState === 'done') { this.#boundPipeline(); return; }
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
      case 'tunnel': this.relay?.conn?.socket.end(); return;
      case 'idle': if (this.pending === null) this.socket.end(); else this.socket.destroy(); return;
      case 'head': case 'body': this.socket.destroy(); return;
      case 'done': return; // answer, then end (see #responseDone)
      case 'closed': return;
      default: unreachable(this.reqState);
    }
  }

  /** The exchange ends without a relayed response (local answer, tunnel, client gone): not recorded. */
  #dropCapture(): void {
    const cap = this.cap;
    if (cap === null) return;
    this.cap = null;
    this.proxy.recorder!.abort(cap);
  }

  #onClose(): void {
    this.#dropCapture();
    this.reqState = 'closed';
    this.deadline = 0;
    this.proxy.wheel.remove(this);
    if (this.ex !== null && this.ex.state !== 'done') this.ex.abort();
    if (this.shadow !== null && this.shadow.state !== 'done') this.shadow.abort();
    if (this.relay !== null && this.relay.state !== 'done') this.relay.abort();
    this.pending = null;
    this.retainedHead = null;
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
    if (this.reqState === 'idle' && this.pending === null) this.socket.end();
    if (this.reqState === 'idle') this.#arm('linger', LINGER_MS);
  }

  // ---- request side ----

  #parseLoop(): void {
    this.inParse = true;
    while (this.pending !== null && (this.reqState === 'idle' || this.reqState === 'head')) {
      const buf = this.pending;
      const start = this.pendingStart;
      const r = this.head.execute(buf, start, buf.length);
      if (r === NEED_MORE) {
        if (this.reqState === 'idle') {
          this.reqState = 'head';
          this.#arm('header', this.limits.headerTimeoutMs);
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
    this.reqState = bodyKind === BODY_NONE ? 'done' : 'body';

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
        if (this.body.done) this.reqState = 'done';
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
    const out = requestHead(h, buf, hs, this.#lines.for(h, host, this.upgrade, this.v10), this.upgrade, merge);
    const rec = proxy.recorder;
    if (rec !== null && !this.upgrade) {
      // The request as forwarded (hop-by-hop headers already dropped); kept only if it completes.
      const cap = rec.begin(Date.now());
      if (cap !== null) { cap.requestHead(out); cap.t0 = now(); }
      this.cap = cap;
    }

    const cl = h.contentLength;
    const fitsRetry = bodyKind !== BODY_LENGTH || cl <= this.limits.maxRetryBodyBytes;
    this.retainedHead = this.retryableMethod && fitsRetry ? out : null;
    this.retained = null;
    this.retainedBytes = 0;
    this.shadowBytes = 0;
    const sh = d.shadow;
    const dup = sh !== null && sh.routable && !this.upgrade && (bodyKind !== BODY_LENGTH || cl <= d.maxDuplicateBodyBytes);

    const one = this.#startChunks;
    one[0] = out;
    const ex = new Exchange(this, d.primary, 'primary');
    this.ex = ex;
    ex.start(one, false);
    if (dup) {
      proxy.shadowed++;
      const s = new Exchange(this, sh, 'shadow');
      this.shadow = s;
      s.start(one, false);
    }
    one[0] = EMPTY;
    if (first !== null) this.#forward(first);
    if (this.reqState === 'done') this.#requestComplete();
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
    if (this.body.done && this.reqState === 'body') {
      this.reqState = 'done';
      if (start + n < buf.length) {
        this.pending = buf;
        this.pendingStart = start + n;
      }
      this.#requestComplete();
      if (this.pending !== null && this.reqState === 'done') this.#boundPipeline();
    }
  }

  #forward(chunk: Buffer): void {
    if (this.cap !== null) this.cap.appendRequest(chunk, 0, chunk.length);
    const rh = this.retainedHead;
    if (rh !== null) {
      if (this.retainedBytes + chunk.length <= this.limits.maxRetryBodyBytes) {
        if (this.retained === null) this.retained = [rh, chunk];
        else this.retained.push(chunk);
        this.retainedBytes += chunk.length;
      } else {
        this.retainedHead = null;
        this.retained = null;
      }
    }
    let ok = true;
    const ex = this.ex;
    if (ex !== null) ok = ex.send(chunk);
    const s = this.shadow;
    if (s !== null && s.state !== 'done') {
      this.shadowBytes += chunk.length;
      if (this.shadowBytes > this.decision!.maxDuplicateBodyBytes) {
        // Too big to duplicate after all (chunked): the shadow is dropped, nothing recorded.
        s.abort();
        this.shadow = null;
        this.#carryOut('shadow-dropped', s);
      } else if (!s.send(chunk)) ok = false;
    }
    if (!ok && !this.readPaused) { this.readPaused = true; this.socket.pause(); }
  }

  maybeResume(): void {
    if (!this.readPaused || this.reqState !== 'body') return;
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
    if (this.respState === 'none') this.#fatal(RESP_400);
    else this.socket.destroy();
  }

  /** Answer with a prebuilt response and close: the connection's framing can't be trusted anymore. */
  #fatal(resp: Buffer): void {
    this.reqState = 'closed';
    this.respState = 'done';
    this.pending = null;
    if (!this.socket.writable) { this.socket.destroy(); return; }
    this.socket.end(resp);
    this.#arm('linger', LINGER_MS);
  }

  #sendLocal(status: number, msg: string): void {
    const close = !this.keepAlive || this.reqState !== 'done' || this.clientEnded || this.proxy.closing;
    if (close) this.keepAlive = false;
    this.socket.write(localResponse(status, msg, close, this.v10, !this.isHead));
    this.respState = 'done';
    this.#responseDone();
  }

  // ---- what happens after an exchange answers or fails: exchange-policy.ts decides ----

  /** Ask the policy what to do about `ev` on `ex` (an exchange of this connection). */
  decide(ev: PolicyEvent, ex: Exchange): Decision {
    return decide(ev, this.#policyState(ev, ex));
  }

  #policyState(ev: PolicyEvent, ex: Exchange): PolicyState {
    const s = this.#ps;
    const current = ex.gen === this.gen;
    s.role = ex.role;
    s.current = current;
    s.failed = ex.failed;
    s.written = ex.written;
    s.queued = ex.queue !== null;
    s.errKind = ex.errKind;
    s.blamePending = ex.deferredFrom !== null;
    if (!current) return s; // an orphaned shadow: the rest describes another request
    const m = this.ex;
    const sh = this.shadow;
    if (DEBUG_ASSERTS) {
      assert.ok(ev === 'shadow-dropped' || ex === (ex.role === 'shadow' ? sh : m), 'the subject is this request\'s main or shadow exchange');
      assert.ok(m !== null && this.decision !== null, 'a request with exchanges has a main exchange and a decision');
    }
    s.smallIncomplete = ev === 'head' && this.#smallIncomplete(ex);
    s.responded = this.respState !== 'none';
    s.requestDone = this.reqState === 'done';
    s.retryableMethod = this.retryableMethod;
    s.upgrade = this.upgrade;
    s.retained = this.retainedHead !== null;
    s.retried = this.retried;
    const d = this.decision!;
    const fb = d.fallback;
    s.fallbackUsable = fb !== null && fb.routable && fb !== d.primary;
    s.primaryFailed = this.primaryFailed;
    s.mainState = m === null ? 'none' : m.state;
    s.mainWritten = m !== null && m.written;
    s.mainQueued = m !== null && m.queue !== null;
    s.mainErrKind = m === null ? null : m.errKind;
    s.shadowState = sh === null ? 'none' : sh.state;
    s.shadowFailed = sh !== null && sh.failed;
    s.connectRetries = this.connectRetries;
    s.firstRefusalAt = this.connectRetrySince;
    s.now = ev === 'failed' ? now() : 0; // the clock only on the failure path (connect retries)
    return s;
  }

  /** A response of known length, small enough to collect first, whose body is not complete yet. */
  #smallIncomplete(ex: Exchange): boolean {
    if (ex.bodyKind !== BODY_LENGTH || ex.status === 101) return false;
    const c = ex.conn!;
    if (c.body.done) return false;
    const len = c.head.contentLength;
    return len <= this.limits.maxBufferedResponseBytes && !(ex.rest !== null && ex.rest.length >= len);
  }

  /** A response head arrived on `ex` (a current exchange). */
  onExchangeHead(ex: Exchange): void {
    // CONCURRENT: compare statuses (also for a shadow answering after the request finished, see Exchange).
    if (ex.role === 'shadow') {
      this.shadowStatus = ex.status;
      this.#checkMismatch();
    } else if (ex.role === 'primary') {
      this.primaryStatus = ex.status;
      const shadow = this.shadow;
      if (shadow !== null) { shadow.primaryStatus = ex.status; shadow.primaryTarget = ex.target; }
      this.#checkMismatch();
    }
    this.#carryOut('head', ex);
  }

  /** `ex` (a current exchange) failed without a usable response head (connect error, timeout, reset). */
  onExchangeFailed(ex: Exchange): void {
    this.#carryOut('failed', ex);
  }

  /** A held response (CONCURRENT) died before it was chosen. */
  onHeldLost(ex: Exchange): void {
    this.#carryOut('held-lost', ex);
  }

  #carryOut(ev: PolicyEvent, ex: Exchange): void {
    const d = this.decide(ev, ex);
    switch (d) {
      case 'ignore':
        return;
      case 'hold':
        ex.hold();
        return;
      case 'discard':
        ex.discard();
        return;
      case 'relay':
        if (ex.role === 'shadow') {
          const p = this.ex;
          if (p !== null && p.state !== 'done') p.abort();
        } else {
          const s = this.shadow;
          if (s !== null && s.state === 'hold') s.discard();
        }
        this.#startRelay(ex);
        return;
      case 'buffer':
        if (DEBUG_ASSERTS) assert.ok(this.shadow === null || this.shadow.state === 'done', 'no buffering while a shadow runs');
        ex.startBuffering();
        return;
      case 'failover':
        if (ev === 'head') ex.abort(); // a failed exchange is done already, and its queue is what the fallback resends
        this.#startFallback(ex);
        return;
      case 'await-shadow':
        this.primaryFailed = true;
        if (ev === 'head') ex.hold();
        return;
      case 'use-shadow':
        this.primaryFailed = true;
        if (ev === 'head') ex.abort();
        this.#startRelay(this.shadow!);
        return;
      case 'use-primary':
        if (ev === 'head') ex.discard();
        this.#startRelay(this.ex!);
        return;
      case 'retry-connect':
      case 'error':
        this.#finalError(d, finalErrorKind(ev, this.#ps));
        return;
      case 'record': case 'defer': case 'retry-fresh': case 'fail':
        // answers to 'failing' and 'stale-reset', which the exchange asks itself
        throw new Error(`exchange-policy: '${d}' is not an answer to '${ev}'`);
      default:
        unreachable(d);
    }
  }

  resendChunks(ex: Exchange): Buffer[] {
    if (!ex.written && ex.queue !== null) return ex.queue;
    return this.retained ?? [this.retainedHead!];
  }

  #startFallback(old: Exchange): void {
    this.retried = true;
    this.proxy.retries++;
    const chunks = this.resendChunks(old);
    const ex = new Exchange(this, this.decision!.fallback!, 'fallback');
    if (old.deferredDetail !== null) ex.deferredFrom = old;
    this.ex = ex;
    if (this.reqState === 'done') ex.requestDone = true;
    ex.start(chunks, false);
  }

  // ---- response side ----

  upgradeFor(ex: Exchange): boolean {
    return ex.gen === this.gen && this.upgrade;
  }

  writeInterim(head: Buffer): void {
    if (this.respState === 'none') this.socket.write(head);
  }

  #checkMismatch(): void {
    if (this.mismatchChecked || this.primaryStatus === 0 || this.shadowStatus === 0) return;
    this.mismatchChecked = true;
    if (this.primaryStatus !== this.shadowStatus) this.proxy.routing.recordMismatch(this.decision!.primary);
  }

  /** A buffered response is complete: relay it now. */
  bufferedResponse(ex: Exchange): void {
    if (this.respState !== 'none' || ex !== this.ex) { ex.discard(); return; }
    this.#startRelay(ex);
  }

  /** No version answered: retry later (every version refused, nothing sent), or 502/504. */
  #finalError(d: 'retry-connect' | 'error', kind: ErrorKind | null): void {
    if (this.shadow !== null && this.shadow.state !== 'done') this.shadow.abort();
    if (d === 'retry-connect') { this.#retryConnectLater(); return; }
    const timeout = kind === 'connect-timeout' || kind === 'response-timeout';
    const msg = kind === 'connect' ? 'molt: upstream connect failed' : timeout ? 'molt: upstream timeout' : 'molt: upstream error';
    this.#sendLocal(timeout ? 504 : 502, msg);
  }

  /** Connection refused everywhere and nothing sent: try again a little later (connectRetryMs). */
  #retryConnectLater(): void {
    const ex = this.ex!;
    const n = this.connectRetries;
    if (DEBUG_ASSERTS) assert.ok(ex.queue !== null && !ex.written && this.#ps.now > 0, 'a connect retry resends queued bytes, decided with the time');
    if (n === 0) this.connectRetrySince = this.#ps.now;
    this.connectRetries++;
    this.proxy.connectRetries++;
    const chunks = ex.queue!;
    const gen = this.gen;
    setTimeout(() => this.#retryConnect(gen, chunks), connectRetryDelay(n));
  }

  #retryConnect(gen: number, chunks: Buffer[]): void {
    if (gen !== this.gen || this.reqState !== 'done' || this.respState !== 'none') return; // client gone meanwhile
    const d = this.#route();
    if (d === null) return;
    // Routing may have changed meanwhile (the refusing version rolled back): a fresh decision, the
    // fallback available again, no shadow (CONCURRENT duplicates only first attempts).
    this.decision = d;
    this.retried = false;
    this.primaryFailed = false;
    this.shadow = null;
    const ex = new Exchange(this, d.primary, 'primary');
    this.ex = ex;
    ex.requestDone = true;
    ex.start(chunks, false);
  }

  #startRelay(ex: Exchange): void {
    if (DEBUG_ASSERTS) {
      assert.equal(this.respState, 'none', 'one response per request');
      assert.ok(ex.gen === this.gen && ex.conn !== null && ex.headBuf !== null, 'the relayed exchange is current and has a head and a connection');
    }
    this.respState = 'relay';
    this.relay = ex;
    ex.state = 'relay';
    const c = ex.conn!;
    const sock = this.socket;
    const isUpgrade = ex.status === 101;
    if (isUpgrade && !this.upgrade) { ex.abort(); this.proxy.routing.recordFailure(ex.target, 'protocol', 'unexpected 101', 0); sock.destroy(); return; }
    if (this.reqState !== 'done' || ex.bodyKind === BODY_UNTIL_CLOSE || this.clientEnded || this.proxy.closing) this.keepAlive = false;
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
      const headAndBody = this.#buildResponseHead(ex, false, r, n);
      if (this.cap !== null) this.cap.appendResponse(headAndBody, 0, headAndBody.length);
      if (!this.writer.write(headAndBody) && !c.body.done) { this.relayPaused = true; c.socket.pause(); }
      if (c.body.done) {
        if (n < r.length) ex.reusable = false;
        ex.complete();
        this.relayDone(ex);
      }
      return;
    }
    sock.cork();
    const head = this.#buildResponseHead(ex, false, null, 0);
    if (this.cap !== null) this.cap.appendResponse(head, 0, head.length);
    sock.write(head);
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
    if (n > 0 && this.cap !== null) this.cap.appendResponse(buf, start, start + n);
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
    this.#dropCapture();
    c.detach();
    ex.state = 'tunnel';
    this.reqState = 'tunnel';
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
    const cap = this.cap;
    if (cap !== null) {
      this.cap = null;
      cap.status = ex.status;
      cap.durationMicros = Math.round((now() - cap.t0) * 1000);
      this.proxy.recorder!.commit(ex.target.app, cap);
    }
    this.relay = null;
    this.relayPaused = false;
    this.respState = 'done';
    this.#responseDone();
  }

  #responseDone(): void {
    this.#dropCapture();
    if (this.reqState === 'closed') return;
    const s = this.shadow;
    if (s !== null && s.state === 'hold') s.discard();
    if (this.reqState !== 'done' || !this.keepAlive || this.clientEnded || this.proxy.closing) {
      this.reqState = 'closed';
      if (s !== null && s.state !== 'done') s.abort();
      this.pending = null;
      this.socket.end();
      this.#arm('linger', LINGER_MS);
      return;
    }
    // Next request. An unfinished shadow keeps running on its own (orphaned by the gen bump).
    this.head.reset();
    this.gen++;
    this.decision = null;
    this.ex = null;
    this.shadow = null;
    this.retainedHead = null;
    this.retained = null;
    this.retried = false;
    this.primaryFailed = false;
    this.primaryStatus = 0;
    this.shadowStatus = 0;
    this.mismatchChecked = false;
    this.reqState = 'idle';
    this.respState = 'none';
    this.#arm('idle', this.limits.idleTimeoutMs);
    if (this.readPaused) { this.readPaused = false; this.socket.resume(); }
    if (this.pending !== null && !this.inParse) this.#parseLoop();
    // Still a full pipeline queued behind the next request: keep reading paused (the resume above
    // takes effect on the next tick, so no read happens in between), or every response would let one
    // more socket read into `pending` and a client could make it grow without bound.
    if ((this.reqState as RequestState) === 'done' && this.pending !== null) this.#boundPipeline();
  }
}
