// One attempt to get a response from one upstream version: the primary, the fallback after a
// failover, or the CONCURRENT shadow. An Exchange owns its pooled upstream connection while it
// runs (upstream-pool.ts UpstreamOwner): it sends the request bytes (queued until connected),
// scans the response head, and then relays, holds, buffers or discards the response as its
// client connection (client-conn.ts) decides. Failures are recorded against the version here;
// what happens next (failover, retry, CONCURRENT arbitration) is exchange-policy.ts's decision,
// asked through the client connection. States: ExchangeState in exchange-policy.ts.

import type { FailureKind, VersionTarget } from './routing-types.js';
import { BODY_LENGTH, BODY_NONE, BODY_UNTIL_CLOSE, ERROR, NEED_MORE, type BodyKind } from './framing.js';
import type { UpstreamConn, UpstreamErrorKind, UpstreamOwner } from './upstream-pool.js';
import { now } from './timers.js';
import type { ClientConn } from './client-conn.js';
import type { ErrorKind, ExchangeRole, ExchangeState } from './exchange-policy.js';
import { DEBUG_ASSERTS, assert, unreachable } from './invariants.js';

/** One attempt to get a response from one upstream version. */
export class Exchange implements UpstreamOwner {
  readonly client: ClientConn;
  readonly gen: number;
  readonly target: VersionTarget;
  readonly role: ExchangeRole;
  readonly isHead: boolean;
  conn: UpstreamConn | null = null;
  host = '';
  port = 0;
  key = '';
  queue: Buffer[] | null = null;
  queuedBytes = 0;
  written = false;
  requestDone = false;
  state: ExchangeState = 'wait';
  status = 0;
  /** The response counted as a failure (status) or the exchange failed (error); recorded already. */
  failed = false;
  errKind: ErrorKind | null = null;
  freshRetried = false;
  startedAt = now();
  respBuf: Buffer | null = null;
  headBuf: Buffer | null = null;
  headLen = 0;
  rest: Buffer | null = null;
  /** 'buffer': the body collected so far (our own copy), and how much of it is filled. */
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

  constructor(client: ClientConn, target: VersionTarget, role: ExchangeRole) {
    this.client = client;
    this.gen = client.gen;
    this.target = target;
    this.role = role;
    this.isHead = client.isHead;
  }

  /** Send `chunks` (the request so far) on a pooled or new connection. `chunks` is read during this
   *  call only (queued as a copy of the list until connected): the caller may reuse the array. */
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
    if (c === null || this.state === 'done') return true;
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
    if (c === null || this.state === 'done') return false;
    if (this.queue !== null) return this.queuedBytes >= this.client.proxy.limits.maxRetryBodyBytes;
    return c.writer.needsDrain;
  }

  requestSent(): void {
    this.requestDone = true;
    const c = this.conn;
    if (c !== null && c.connected && this.state === 'wait') c.armResponseTimeout(this.target.responseTimeoutMs);
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
    if (this.state === 'tunnel') { this.client.socket.resume(); return; }
    if (this.gen === this.client.gen) this.client.maybeResume();
  }

  onUpstreamData(c: UpstreamConn, chunk: Buffer): void {
    switch (this.state) {
      case 'wait': this.#headData(c, chunk); break;
      case 'relay': this.client.relayData(this, chunk, 0); break;
      case 'discard': this.#discardData(chunk, 0); return;
      case 'hold': this.rest = this.rest === null ? chunk : Buffer.concat([this.rest, chunk]); break;
      case 'buffer': this.#bufferData(c, chunk); break;
      case 'tunnel':
        if (!this.client.writer.write(chunk)) { this.client.relayPaused = true; c.socket.pause(); }
        break;
      case 'done':
        return;
      default:
        unreachable(this.state);
    }
    // `chunk` lives in c's reused read buffer. Still referenced after this call (a held head or
    // rest, a partial head, or client bytes not flushed synchronously: the Writable queue and libuv
    // keep views, not copies)? Then c's next read must go elsewhere.
    if (this.state === 'hold' || this.state === 'buffer' || this.respBuf !== null || !this.client.writer.flushed) c.pin();
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
      if (this.role !== 'shadow' && this.gen === this.client.gen) this.client.writeInterim(buf.subarray(0, r));
      h.reset();
      if (this.requestDone || this.client.expectContinue) c.armResponseTimeout(this.target.responseTimeoutMs);
      if (r < buf.length) this.#headData(c, buf.subarray(r));
      return;
    }
    // The server's idle timeout, once per connection (upstream-pool.ts idleFor).
    if (c.uses === 0) {
      const t = h.keepAliveTimeout();
      if (t >= 0) c.keepAliveMs = t * 1000;
    }
    this.status = st;
    this.headBuf = buf;
    this.headLen = r;
    this.rest = r < buf.length ? buf.subarray(r) : null;
    const kind = h.responseBodyKind(this.isHead);
    this.bodyKind = kind;
    c.body.reset(kind, h.contentLength);
    this.reusable = h.keepAlive && kind !== BODY_UNTIL_CLOSE && st !== 101 && !this.client.upgradeFor(this);
    // Canary analysis: every final head of this version, client request or CONCURRENT duplicate,
    // with its latency to the head (docs/analysis.md). A histogram and an array increment.
    const samples = this.target.samples;
    if (samples != null) samples.response(st, (now() - this.startedAt) * 1000);
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
    if (DEBUG_ASSERTS) assert.ok(this.state === 'wait' && this.role !== 'shadow', 'only a main response that just got its head is buffered');
    this.state = 'buffer';
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
    this.state = 'wait';
    if (this.gen === this.client.gen) this.client.bufferedResponse(this);
    else this.discard();
  }

  /** Hold the response: pause the socket until the client decides. */
  hold(): void {
    if (DEBUG_ASSERTS) assert.equal(this.state, 'wait', 'only a response that just got its head is held');
    this.state = 'hold';
    if (this.conn !== null) this.conn.socket.pause();
  }

  /** Drain and drop the response; the socket goes back to the pool if it finishes cleanly. A failure
   *  response is dropped with its socket. */
  discard(): void {
    if (this.failed) { this.abort(); return; }
    this.state = 'discard';
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
    this.state = 'done';
    this.queue = null;
    const c = this.conn;
    if (c !== null) { this.conn = null; this.client.proxy.pool.destroy(c); }
  }

  /** The response finished cleanly (relayed or drained). */
  complete(): void {
    this.state = 'done';
    const c = this.conn;
    this.conn = null;
    if (c !== null) {
      if (this.reusable && this.requestDone) this.client.proxy.pool.release(c);
      else this.client.proxy.pool.destroy(c);
    }
    if (!this.failed) this.client.proxy.routing.recordSuccess(this.target, this.status, now() - this.startedAt);
  }

  onUpstreamEnd(c: UpstreamConn): void {
    if (this.state === 'tunnel') { this.client.socket.end(); return; }
    if (c.body.untilClose) {
      if (this.state === 'relay') { this.complete(); this.client.relayDone(this); return; }
      if (this.state === 'discard') { this.complete(); return; }
      if (this.state === 'hold') { this.reusable = false; return; } // finishes when relayed/discarded
    }
    // Otherwise 'close' follows and reports a reset.
  }

  onUpstreamError(c: UpstreamConn, kind: UpstreamErrorKind, detail: string): void {
    this.conn = null;
    switch (this.state) {
      case 'tunnel':
        this.state = 'done';
        this.client.socket.end();
        return;
      case 'relay':
        this.state = 'done';
        if (c.body.untilClose) { this.complete(); this.client.relayDone(this); return; }
        this.client.proxy.routing.recordFailure(this.target, 'reset', detail, now() - this.startedAt);
        this.client.socket.destroy(); // response truncated: the client must notice
        return;
      case 'discard':
      case 'hold':
        if (c.body.untilClose && this.state === 'discard') { this.complete(); return; }
        this.state = 'done';
        if (!this.failed) {
          this.failed = true;
          this.client.proxy.routing.recordFailure(this.target, 'reset', detail, now() - this.startedAt);
        }
        if (this.gen === this.client.gen) this.client.onHeldLost(this);
        return;
      case 'buffer':
        this.bodyBuf = null;
        this.#failed(kind, detail); // nothing relayed yet: the client may still fail over
        return;
      case 'wait':
        break;
      case 'done':
        return;
      default:
        unreachable(this.state);
    }
    // No response head yet. A reused keep-alive socket that died before any response byte is
    // retried once on a fresh connection to the same endpoint (not an upstream failure).
    if (kind === 'reset' && c.reused && c.received === 0 && !this.freshRetried && this.client.decide('stale-reset', this) === 'retry-fresh') {
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

  #failed(kind: ErrorKind, detail: string): void {
    this.state = 'done';
    this.errKind = kind;
    if (!this.failed) {
      this.failed = true;
      // Count it now, later (a refused or reset primary: once the fallback's connect tells whether
      // it is this version or the way to every version), or not at all (see exchange-policy.ts).
      const blame = this.client.decide('failing', this);
      this.#settleDeferred(kind !== 'connect');
      if (blame === 'defer') {
        this.deferredDetail = detail;
        this.deferredKind = kind as FailureKind;
      } else if (blame === 'record') {
        this.#noResponse();
        this.client.proxy.routing.recordFailure(this.target, kind as FailureKind, detail, now() - this.startedAt);
      } else if (DEBUG_ASSERTS) assert.equal(blame, 'ignore');
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
    if (count && detail !== null) {
      p.#noResponse();
      this.client.proxy.routing.recordFailure(p.target, p.deferredKind, detail, now() - p.startedAt);
    }
  }

  /** Canary analysis: this attempt is counted as the version's failure and got no status (a failure
   *  after the head, e.g. a body cut short, is already counted under its status). Same blame as the
   *  failure policy: a refusal that turns out to be the way to every version is not counted. */
  #noResponse(): void {
    const samples = this.target.samples;
    if (samples != null && this.status === 0) samples.noResponse++;
  }
}

