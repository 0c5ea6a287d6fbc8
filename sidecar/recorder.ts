// Recording at the ingress (preflight, issue 11): per app, a bounded ring of recent exchanges.
//
// The hot path only copies bytes it already has in hand into a reused Capture: the request head
// as forwarded (hop-by-hop headers already dropped by the head writer), the request body and the
// response (head and body) up to limits. Nothing is parsed here; parsing, redaction and HAR happen
// off the hot path when someone asks (export, replay, shadow comparison).
//
// Memory is bounded whatever the traffic: every Capture has a fixed maximum size, the rings hold
// at most `entriesPerApp` of them per app, and at most `maxInFlight` are being filled at once (when
// the pool is empty the exchange is simply not recorded, and counted). A committed Capture goes into
// the ring slot and the capture it evicts goes back to the pool: no copy at commit.

import { copyBytes } from '../common/node-internals.js';

export interface RecorderLimits {
  /** Exchanges kept per app (the ring size). */
  entriesPerApp: number;
  /** Request and response heads longer than this are not recorded (the exchange is skipped). */
  maxHeadBytes: number;
  /** Bodies are kept up to this many bytes; longer ones are kept truncated and flagged. */
  maxBodyBytes: number;
  /** Exchanges being recorded at once (in flight). Beyond that, new exchanges are not recorded. */
  maxInFlight: number;
}

export const DEFAULT_RECORDER_LIMITS: RecorderLimits = {
  entriesPerApp: 500,
  maxHeadBytes: 16 * 1024,
  maxBodyBytes: 64 * 1024,
  maxInFlight: 256,
};

const INITIAL_CAPACITY = 2048;

/** One exchange's raw bytes. Reused: never keep a reference after commit()/abort(). */
export class Capture {
  /** Request head (as forwarded) followed by the request body bytes (as forwarded, chunked framing included). */
  req: Buffer = Buffer.allocUnsafe(INITIAL_CAPACITY);
  reqLen = 0;
  /** Request bytes seen in total (head + body); > reqLen means truncated. */
  reqTotal = 0;
  /** Response head + body bytes as relayed to the client. */
  res: Buffer = Buffer.allocUnsafe(INITIAL_CAPACITY);
  resLen = 0;
  resTotal = 0;
  /** Length of the request head within req (0 until set). */
  reqHeadLen = 0;
  /** Epoch ms when the request started. */
  startedAt = 0;
  /** Microseconds from request start to the response's completion. */
  durationMicros = 0;
  status = 0;
  /** Per-recorder sequence number, assigned at commit: readers ask for entries after the last they saw. */
  seq = 0;
  /** Monotonic ms (timers.now) at the request's start, for durationMicros. */
  t0 = 0;
  /** Head too long or otherwise not recordable: commit() drops it. */
  spoiled = false;
  /** Upper bound for req/res: head limit + body limit. */
  readonly max: number;

  constructor(max: number) {
    this.max = max;
  }

  reset(startedAt: number): void {
    this.reqLen = 0;
    this.reqTotal = 0;
    this.resLen = 0;
    this.resTotal = 0;
    this.reqHeadLen = 0;
    this.startedAt = startedAt;
    this.durationMicros = 0;
    this.status = 0;
    this.spoiled = false;
  }

  /** The forwarded request head (maybe followed by the first body bytes); must come first. */
  requestHead(buf: Buffer, maxHeadBytes = this.max): void {
    if (buf.length > maxHeadBytes) { this.spoiled = true; return; }
    this.appendRequest(buf, 0, buf.length);
    this.reqHeadLen = this.reqLen;
  }

  appendRequest(buf: Buffer, start: number, end: number): void {
    const n = end - start;
    this.reqTotal += n;
    const room = this.max - this.reqLen;
    if (room <= 0) return;
    const take = n < room ? n : room;
    if (this.reqLen + take > this.req.length) this.req = grow(this.req, this.reqLen, this.reqLen + take, this.max);
    copyBytes(buf, this.req, this.reqLen, start, start + take);
    this.reqLen += take;
  }

  appendResponse(buf: Buffer, start: number, end: number): void {
    const n = end - start;
    this.resTotal += n;
    const room = this.max - this.resLen;
    if (room <= 0) return;
    const take = n < room ? n : room;
    if (this.resLen + take > this.res.length) this.res = grow(this.res, this.resLen, this.resLen + take, this.max);
    copyBytes(buf, this.res, this.resLen, start, start + take);
    this.resLen += take;
  }

  get requestBytes(): Buffer {
    return this.req.subarray(0, this.reqLen);
  }

  get responseBytes(): Buffer {
    return this.res.subarray(0, this.resLen);
  }
}

function grow(b: Buffer, used: number, need: number, max: number): Buffer {
  let size = b.length * 2;
  while (size < need) size *= 2;
  if (size > max) size = max;
  const nb = Buffer.allocUnsafe(size);
  b.copy(nb, 0, 0, used);
  return nb;
}

/** What one ring entry looks like when read out (bytes copied: safe to keep). */
export interface RawExchange {
  app: string;
  seq: number;
  startedAt: number;
  durationMicros: number;
  status: number;
  request: Buffer;
  requestHeadLength: number;
  /** Request bytes beyond what was kept. */
  requestTruncated: boolean;
  response: Buffer;
  responseTruncated: boolean;
}

class Ring {
  readonly slots: Array<Capture | null>;
  /** Next slot to write; slots before it (circularly) are the newest. */
  next = 0;
  size = 0;
  recorded = 0;

  constructor(entries: number) {
    this.slots = new Array<Capture | null>(entries).fill(null);
  }
}

export interface RecorderCounters {
  /** Exchanges committed to a ring. */
  recorded: number;
  /** Exchanges not recorded because maxInFlight captures were in use. */
  skippedBusy: number;
  /** Exchanges not recorded because a head exceeded maxHeadBytes or the exchange did not complete. */
  skippedOther: number;
}

export class TrafficRecorder {
  readonly limits: RecorderLimits;
  readonly #pool: Capture[] = [];
  #inFlight = 0;
  readonly #rings = new Map<string, Ring>();
  readonly counters: RecorderCounters = { recorded: 0, skippedBusy: 0, skippedOther: 0 };
  #seq = 0;

  constructor(limits: Partial<RecorderLimits> = {}) {
    this.limits = { ...DEFAULT_RECORDER_LIMITS, ...limits };
  }

  /** A capture to fill for one exchange, or null (not recorded) when maxInFlight are in use. */
  begin(startedAt: number): Capture | null {
    if (this.#inFlight >= this.limits.maxInFlight) {
      this.counters.skippedBusy++;
      return null;
    }
    this.#inFlight++;
    const c = this.#pool.pop() ?? new Capture(this.limits.maxHeadBytes + this.limits.maxBodyBytes);
    c.reset(startedAt);
    return c;
  }

  /** The exchange did not complete (client gone, upstream failure answered locally, …). */
  abort(c: Capture): void {
    this.#inFlight--;
    this.counters.skippedOther++;
    this.#pool.push(c);
  }

  /** Keep the exchange in its app's ring; the evicted capture is reused. */
  commit(app: string, c: Capture): void {
    this.#inFlight--;
    if (c.spoiled || c.reqHeadLen === 0 || c.resLen === 0) {
      this.counters.skippedOther++;
      this.#pool.push(c);
      return;
    }
    let ring = this.#rings.get(app);
    if (ring === undefined) {
      ring = new Ring(this.limits.entriesPerApp);
      this.#rings.set(app, ring);
    }
    c.seq = ++this.#seq;
    const old = ring.slots[ring.next];
    ring.slots[ring.next] = c;
    ring.next = (ring.next + 1) % ring.slots.length;
    if (ring.size < ring.slots.length) ring.size++;
    ring.recorded++;
    this.counters.recorded++;
    if (old !== null && old !== undefined) this.#pool.push(old);
  }

  /** Forget apps no longer in the routing table (their memory goes back to the pool). */
  retainApps(apps: ReadonlySet<string>): void {
    for (const [name, ring] of this.#rings) {
      if (apps.has(name)) continue;
      for (const c of ring.slots) if (c !== null) this.#pool.push(c);
      this.#rings.delete(name);
    }
    // The pool never needs more than maxInFlight spare captures.
    if (this.#pool.length > this.limits.maxInFlight) this.#pool.length = this.limits.maxInFlight;
  }

  /** Up to `limit` most recent exchanges of an app with seq > afterSeq, oldest first, bytes copied. */
  recent(app: string, limit = Infinity, afterSeq = 0): RawExchange[] {
    const ring = this.#rings.get(app);
    if (ring === undefined) return [];
    const len = ring.slots.length;
    // Count the newest entries after afterSeq (seq grows along the ring).
    let n = 0;
    while (n < ring.size && n < limit && ring.slots[(ring.next - n - 1 + len * 2) % len]!.seq > afterSeq) n++;
    const out: RawExchange[] = [];
    for (let k = n; k >= 1; k--) {
      const c = ring.slots[(ring.next - k + len * 2) % len]!;
      out.push(snapshot(app, c));
    }
    return out;
  }

  /** The sequence number of the last committed exchange (0 = none yet). */
  get lastSeq(): number {
    return this.#seq;
  }

  /** Number of exchanges held for an app. */
  size(app: string): number {
    return this.#rings.get(app)?.size ?? 0;
  }

  /** Apps with a ring. */
  apps(): string[] {
    return [...this.#rings.keys()];
  }
}

export function snapshot(app: string, c: Capture): RawExchange {
  return {
    app,
    seq: c.seq,
    startedAt: c.startedAt,
    durationMicros: c.durationMicros,
    status: c.status,
    request: Buffer.from(c.requestBytes),
    requestHeadLength: c.reqHeadLen,
    requestTruncated: c.reqTotal > c.reqLen,
    response: Buffer.from(c.responseBytes),
    responseTruncated: c.resTotal > c.resLen,
  };
}
