// Per-endpoint ("host:port") pool of idle keep-alive upstream sockets.
//
// Each socket is wrapped once in an UpstreamConn that owns its listeners (bound once per socket,
// never per request) and its response scanners (reset in place per message). While in use,
// events go to the current owner; while idle, any event (data, EOF, error) means the socket is
// dead or misbehaving and it is destroyed and forgotten, so a dead socket is never handed out.
// Connect timeout, idle eviction and the owner's response timeout share one deadline on the
// shared timer wheel.

import net from 'node:net';
import { BodyScanner, HeadScanner } from './framing.js';
import { SocketWriter } from './socket-writer.js';
import { now, type TimerItem, type TimerWheel } from './timers.js';

export type UpstreamErrorKind = 'connect' | 'connect-timeout' | 'reset' | 'response-timeout';

export interface UpstreamOwner {
  onUpstreamConnect(c: UpstreamConn): void;
  /** `chunk` is a view of the conn's reused read buffer, valid only during this call: an owner that
   *  keeps it (or any view of it) beyond the call, including a write that did not flush, calls c.pin(). */
  onUpstreamData(c: UpstreamConn, chunk: Buffer): void;
  /** EOF from the upstream. The owner either finishes (until-close body) or lets 'close' report a reset. */
  onUpstreamEnd(c: UpstreamConn): void;
  /** Connection failed or died while owned. The conn is already destroyed and detached. */
  onUpstreamError(c: UpstreamConn, kind: UpstreamErrorKind, detail: string): void;
  onUpstreamDrain(c: UpstreamConn): void;
}

/** Idle connections are closed this long before the server would close them. */
const IDLE_MARGIN_MS = 1000;
/** A server seen closing idle connections early still gets them kept this long. */
const MIN_IDLE_MS = 500;

/** Per-connection read buffer (reused across reads until pinned). */
export const READ_BUFFER_BYTES = 32 * 1024;

const P_CONNECTING = 0;
const P_BUSY = 1;
const P_IDLE = 2;
const P_DEAD = 3;
const P_DETACHED = 4;

export interface UpstreamPoolOptions {
  wheel: TimerWheel;
  /** Idle sockets kept per endpoint. Default 128. */
  maxIdlePerEndpoint?: number;
  /** Idle sockets are closed after this long when the server did not say how long it keeps them
   *  (a `Keep-Alive: timeout=N` response header) and has not been seen closing one sooner. Default
   *  60000 ms, nginx's upstream keepalive_timeout. */
  idleTimeoutMs?: number;
  /** How long a learned (shorter) idle time holds for an endpoint before idleTimeoutMs applies again:
   *  a close that was no idle timeout (the server restarting) must not shorten it for good. Default 10 min. */
  learnedIdleTtlMs?: number;
  maxHeaderBytes?: number;
  maxHeaders?: number;
}

export class UpstreamConn implements TimerItem {
  readonly socket: net.Socket;
  /** Hot-path writes to `socket` (see socket-writer.ts); drains go to the owner like 'drain' does. */
  readonly writer: SocketWriter;
  readonly key: string;
  readonly pool: UpstreamPool;
  readonly head: HeadScanner;
  readonly body: BodyScanner;
  owner: UpstreamOwner | null = null;
  deadline = 0;
  /** Completed exchanges on this socket before the current one (> 0 = reused). */
  uses = 0;
  /** Bytes received during the current exchange. */
  received = 0;
  /** The server's advertised idle timeout (Keep-Alive: timeout=N) in ms; -1 = not advertised. */
  keepAliveMs = -1;
  /** performance.now() when this connection last went idle. */
  idleSince = 0;
  phase = P_CONNECTING;
  #error: Error | null = null;
  #buf: Buffer;
  #pinned = false;

  constructor(pool: UpstreamPool, key: string, host: string, port: number, maxHeaderBytes: number, maxHeaders: number) {
    this.pool = pool;
    this.key = key;
    this.head = new HeadScanner(false, maxHeaderBytes, maxHeaders);
    this.body = new BodyScanner(maxHeaderBytes);
    // Reads go into this conn's own reused buffer (`onread`: no per-read allocation, no Readable
    // push/emit). The bytes are only valid until the callback returns: an owner that keeps a reference
    // (stores a view, or a client write did not flush synchronously) calls pin(), and the next read
    // goes into a fresh buffer while the old one stays with whoever holds it.
    this.#buf = Buffer.allocUnsafe(READ_BUFFER_BYTES);
    const s = net.connect({
      host, port, noDelay: true,
      onread: { buffer: () => this.#nextBuffer(), callback: (n: number, b: Uint8Array) => this.#onRead(n, b as Buffer) },
    });
    this.socket = s;
    this.writer = new SocketWriter(s, () => { if (this.owner !== null) this.owner.onUpstreamDrain(this); });
    s.on('connect', () => this.#onConnect());
    s.on('end', () => this.#onEnd());
    s.on('error', (e: Error) => { this.#error = e; });
    s.on('close', () => this.#onClose());
    s.on('drain', () => { if (this.owner !== null) this.owner.onUpstreamDrain(this); });
  }

  get connected(): boolean { return this.phase !== P_CONNECTING; }
  get reused(): boolean { return this.uses > 0; }

  get alive(): boolean {
    const s = this.socket;
    return !s.destroyed && s.readyState === 'open' && !s.readableEnded && !s.writableEnded;
  }

  /** Arm the response timeout (time to the response head) for the current exchange. */
  armResponseTimeout(ms: number): void {
    this.deadline = ms > 0 ? now() + ms : 0;
  }

  disarm(): void { this.deadline = 0; }

  onTimeout(): void {
    if (this.phase === P_CONNECTING) this.#fail('connect-timeout', 'connect timeout');
    else if (this.phase === P_BUSY) this.#fail('response-timeout', 'response timeout');
    else if (this.phase === P_IDLE) this.pool.destroy(this);
  }

  /** Take the socket out of pool management for good (after a 101 the bytes are a raw tunnel). */
  detach(): void {
    this.phase = P_DETACHED;
    this.deadline = 0;
    this.pool._forget(this);
  }

  #onConnect(): void {
    if (this.phase !== P_CONNECTING) return;
    this.phase = P_BUSY;
    this.deadline = 0;
    if (this.owner !== null) this.owner.onUpstreamConnect(this);
  }

  /** The bytes of the current read must outlive the read callback: the next read uses a new buffer. */
  pin(): void { this.#pinned = true; }

  #nextBuffer(): Buffer {
    if (this.#pinned) {
      this.#pinned = false;
      this.#buf = Buffer.allocUnsafe(READ_BUFFER_BYTES);
    }
    return this.#buf;
  }

  #onRead(n: number, b: Buffer): boolean {
    const o = this.owner;
    if (o === null) { this.pool.destroy(this); return false; } // bytes on an idle socket: unusable
    this.received += n;
    o.onUpstreamData(this, b.subarray(0, n));
    return true;
  }

  #onEnd(): void {
    const o = this.owner;
    if (o === null) {
      if (this.phase === P_IDLE) this.pool._closedWhileIdle(this);
      this.pool.destroy(this);
      return;
    }
    o.onUpstreamEnd(this);
  }

  #onClose(): void {
    const wasConnecting = this.phase === P_CONNECTING;
    if (this.phase !== P_DEAD) {
      this.phase = P_DEAD;
      this.deadline = 0;
      this.pool._forget(this);
    }
    const o = this.owner;
    if (o === null) return;
    this.owner = null;
    const e = this.#error as (Error & { code?: string }) | null;
    const detail = e?.code ? e.code : e ? e.message : 'connection closed';
    o.onUpstreamError(this, wasConnecting ? 'connect' : 'reset', wasConnecting ? `connect ${detail}` : detail);
  }

  #fail(kind: UpstreamErrorKind, detail: string): void {
    const o = this.owner;
    this.owner = null;
    this.pool.destroy(this);
    if (o !== null) o.onUpstreamError(this, kind, detail);
  }
}

export class UpstreamPool {
  readonly wheel: TimerWheel;
  readonly maxIdlePerEndpoint: number;
  readonly idleTimeoutMs: number;
  readonly maxHeaderBytes: number;
  readonly maxHeaders: number;
  #idle = new Map<string, UpstreamConn[]>();
  readonly learnedIdleTtlMs: number;
  /** Per endpoint: how long its server was seen keeping an idle connection, minus the margin, and
   *  until when that holds (performance.now() ms). */
  #learnedIdle = new Map<string, { ms: number; until: number }>();
  #all = new Set<UpstreamConn>();
  #closed = false;
  // counters (plain fields, read by stats)
  created = 0;
  reusedCount = 0;
  evicted = 0;

  constructor(opts: UpstreamPoolOptions) {
    this.wheel = opts.wheel;
    this.maxIdlePerEndpoint = opts.maxIdlePerEndpoint ?? 128;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 60_000;
    this.learnedIdleTtlMs = opts.learnedIdleTtlMs ?? 600_000;
    this.maxHeaderBytes = opts.maxHeaderBytes ?? 64 * 1024;
    this.maxHeaders = opts.maxHeaders ?? 100;
  }

  get idleCount(): number {
    let n = 0;
    for (const l of this.#idle.values()) n += l.length;
    return n;
  }

  get openCount(): number { return this.#all.size; }

  /**
   * An idle connection to `key` if one is alive, else a new one (owner.onUpstreamConnect fires when
   * it connects). The connect timeout is armed here.
   */
  acquire(key: string, host: string, port: number, connectTimeoutMs: number, owner: UpstreamOwner): UpstreamConn {
    const list = this.#idle.get(key);
    if (list !== undefined) {
      while (list.length > 0) {
        const c = list.pop()!;
        if (!c.alive) { this.destroy(c); continue; }
        c.phase = P_BUSY;
        c.owner = owner;
        c.deadline = 0;
        c.received = 0;
        c.head.reset();
        this.reusedCount++;
        return c;
      }
    }
    return this.connect(key, host, port, connectTimeoutMs, owner);
  }

  /** Always a fresh connection (used for the one retry after a reused socket turned out dead). */
  connect(key: string, host: string, port: number, connectTimeoutMs: number, owner: UpstreamOwner): UpstreamConn {
    const c = new UpstreamConn(this, key, host, port, this.maxHeaderBytes, this.maxHeaders);
    c.owner = owner;
    c.deadline = connectTimeoutMs > 0 ? now() + connectTimeoutMs : 0;
    this.#all.add(c);
    this.wheel.add(c);
    this.created++;
    return c;
  }

  /** Return a connection whose exchange finished cleanly. Not reusable → destroyed. */
  release(c: UpstreamConn): void {
    if (c.phase !== P_BUSY || this.#closed || !c.alive) { this.destroy(c); return; }
    let list = this.#idle.get(c.key);
    if (list === undefined) { list = []; this.#idle.set(c.key, list); }
    if (list.length >= this.maxIdlePerEndpoint) { this.destroy(c); return; }
    const keep = this.idleFor(c);
    if (keep <= 0) { this.destroy(c); return; }
    c.owner = null;
    c.phase = P_IDLE;
    c.uses++;
    c.idleSince = now();
    c.deadline = c.idleSince + keep;
    if (c.socket.isPaused()) c.socket.resume(); // keep reading so EOF/RST while idle is seen
    list.push(c);
  }

  /**
   * How long `c` may sit idle. A connection is never sent a request when its server may be closing it
   * (the request would meet a reset; a non-idempotent one cannot be resent): so IDLE_MARGIN_MS less
   * than the server's advertised Keep-Alive timeout, or than the shortest idle time after which this
   * endpoint's server was seen closing one; otherwise idleTimeoutMs.
   */
  idleFor(c: UpstreamConn): number {
    let ms = this.idleTimeoutMs;
    if (c.keepAliveMs >= 0) ms = Math.min(ms, c.keepAliveMs - IDLE_MARGIN_MS);
    const learned = this.#learnedIdle.get(c.key);
    if (learned !== undefined) {
      if (learned.until > now()) ms = Math.min(ms, learned.ms);
      else this.#learnedIdle.delete(c.key);
    }
    return ms;
  }

  /** @internal the server closed idle connection `c`: keep this endpoint's next ones for less. */
  _closedWhileIdle(c: UpstreamConn): void {
    const t = now();
    const keep = Math.max(MIN_IDLE_MS, t - c.idleSince - IDLE_MARGIN_MS);
    const prev = this.#learnedIdle.get(c.key);
    if (prev === undefined || prev.until <= t || keep < prev.ms) this.#learnedIdle.set(c.key, { ms: keep, until: t + this.learnedIdleTtlMs });
  }

  destroy(c: UpstreamConn): void {
    c.owner = null;
    if (c.phase === P_IDLE) this.evicted++;
    if (c.phase !== P_DEAD) {
      c.phase = P_DEAD;
      c.deadline = 0;
      this._forget(c);
    }
    c.socket.destroy();
  }

  /** @internal bookkeeping when a conn dies or is detached. */
  _forget(c: UpstreamConn): void {
    this.#all.delete(c);
    this.wheel.remove(c);
    const list = this.#idle.get(c.key);
    if (list !== undefined) {
      const i = list.indexOf(c);
      if (i >= 0) list.splice(i, 1);
    }
  }

  /** Close idle connections now; busy ones are destroyed by their owners. */
  closeIdle(): void {
    for (const list of this.#idle.values()) {
      for (const c of list.slice()) this.destroy(c);
    }
    this.#idle.clear();
  }

  close(): void {
    this.#closed = true;
    this.closeIdle();
    for (const c of [...this.#all]) this.destroy(c);
  }
}
