// Requests molt originates for a preflight ("shadow copies" and replays, not CONCURRENT's duplicate
// requests): one request to one endpoint, marked `x-molt-shadow: 1`, response captured up to a
// body limit, latency measured. Runs off the client's path (after the client was answered), so it
// uses node:http with a keep-alive agent of bounded sockets.
//
//   const client = new ShadowClient({ maxSockets: 8 });
//   const r = await client.send({ host: '127.0.0.1', port: 8081 }, request, { timeoutMs: 5000 });
//   r.ok ? r.status : r.kind          // 'refused' | 'reset' | 'timeout' | 'protocol'
//
// ShadowDispatcher bounds how many run at once: offer() returns false when full, and the caller
// counts that copy as dropped. Nothing is ever queued.

import http from 'node:http';
import { HOP_BY_HOP_HEADERS, type HeaderPairs } from './har.js';

export const SHADOW_HEADER = 'x-molt-shadow';

export interface ShadowEndpoint {
  host: string;
  port: number;
}

export interface ShadowRequest {
  method: string;
  /** Origin-form "/path?query" (absolute-form is reduced to its path). */
  target: string;
  headers: ReadonlyArray<readonly [string, string]>;
  body?: Buffer;
}

export interface ShadowSendOptions {
  /** Header overrides (replay.headers.set): each replaces every header of that name (any case). */
  set?: Readonly<Record<string, string>>;
  /** Whole exchange: connect, send, response head and body. Default 10 s. */
  timeoutMs?: number;
  /** Response body bytes kept; beyond it the response is cut (bodyTruncated) and its socket closed. Default 1 MiB. */
  maxBodyBytes?: number;
}

export type ShadowFailureKind = 'refused' | 'reset' | 'timeout' | 'protocol';

export type ShadowResult =
  | { ok: true; status: number; headers: HeaderPairs; body: Buffer; bodyTruncated: boolean; latencyMs: number }
  | { ok: false; kind: ShadowFailureKind; message: string; latencyMs: number };

export interface ShadowClientOptions {
  /** Sockets per endpoint (in use + idle). Default 8. */
  maxSockets?: number;
  /** Idle sockets are closed after this long. Default 4 s (below Node's 5 s server keep-alive). */
  idleTimeoutMs?: number;
}

export const DEFAULT_SHADOW_TIMEOUT_MS = 10_000;
export const DEFAULT_SHADOW_MAX_BODY_BYTES = 1024 * 1024;

/** Not forwarded: connection-specific, or recomputed from the body we send. */
const DROPPED = new Set([...HOP_BY_HOP_HEADERS, 'content-length', SHADOW_HEADER]);
const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH']);

/**
 * The headers actually sent: hop-by-hop, Content-Length and any client-sent x-molt-shadow dropped,
 * overrides applied, `x-molt-shadow: 1` and Content-Length added, Host kept (or set from endpoint).
 */
export function shadowHeaders(req: ShadowRequest, endpoint: ShadowEndpoint, set: Readonly<Record<string, string>> = {}): string[] {
  const overrides = new Map(Object.entries(set).map(([k, v]) => [k.toLowerCase(), [k, v] as const]));
  const connectionNamed = new Set<string>();
  for (const [k, v] of req.headers) {
    if (k.toLowerCase() === 'connection') for (const t of v.split(',')) connectionNamed.add(t.trim().toLowerCase());
  }
  const flat: string[] = [];
  let host = false;
  for (const [k, v] of req.headers) {
    const lower = k.toLowerCase();
    if (DROPPED.has(lower) || connectionNamed.has(lower) || overrides.has(lower)) continue;
    if (lower === 'host') host = true;
    flat.push(k, v);
  }
  for (const [lower, [k, v]] of overrides) {
    if (DROPPED.has(lower)) continue;
    if (lower === 'host') host = true;
    flat.push(k, v);
  }
  if (!host) flat.unshift('Host', endpoint.host.includes(':') ? `[${endpoint.host}]:${endpoint.port}` : `${endpoint.host}:${endpoint.port}`);
  const bodyLength = req.body?.length ?? 0;
  if (bodyLength > 0 || BODY_METHODS.has(req.method.toUpperCase())) flat.push('Content-Length', String(bodyLength));
  flat.push(SHADOW_HEADER, '1');
  return flat;
}

function originForm(target: string): string {
  if (target.startsWith('/') || target === '*') return target;
  const m = /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i.exec(target);
  if (m) {
    const rest = target.slice(m[0].length);
    return rest.startsWith('/') ? rest : `/${rest}`;
  }
  return target;
}

function classify(err: NodeJS.ErrnoException): ShadowFailureKind {
  switch (err.code) {
    case 'ECONNREFUSED':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EADDRNOTAVAIL':
      return 'refused';
    case 'ECONNRESET':
    case 'EPIPE':
    case 'ECONNABORTED':
      return 'reset';
    case 'ETIMEDOUT':
      return 'timeout';
    default:
      return 'protocol';
  }
}

export class ShadowClient {
  readonly #agent: http.Agent;

  constructor(opts: ShadowClientOptions = {}) {
    const maxSockets = opts.maxSockets ?? 8;
    this.#agent = new http.Agent({
      keepAlive: true,
      maxSockets,
      maxFreeSockets: maxSockets,
      timeout: opts.idleTimeoutMs ?? 4000,
      scheduling: 'lifo',
    });
  }

  /** Never rejects: failures are results. */
  send(endpoint: ShadowEndpoint, req: ShadowRequest, opts: ShadowSendOptions = {}): Promise<ShadowResult> {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_SHADOW_TIMEOUT_MS;
    const maxBody = opts.maxBodyBytes ?? DEFAULT_SHADOW_MAX_BODY_BYTES;
    const started = process.hrtime.bigint();
    const elapsed = (): number => Number(process.hrtime.bigint() - started) / 1e6;
    return new Promise<ShadowResult>((resolve) => {
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      const finish = (r: ShadowResult): void => {
        if (settled) return;
        settled = true;
        if (timer) clearTimeout(timer);
        resolve(r);
      };
      const fail = (kind: ShadowFailureKind, message: string): void => finish({ ok: false, kind, message, latencyMs: elapsed() });
      let request: http.ClientRequest;
      try {
        request = http.request({
          host: endpoint.host,
          port: endpoint.port,
          method: req.method,
          path: originForm(req.target),
          headers: shadowHeaders(req, endpoint, opts.set) as unknown as http.OutgoingHttpHeaders,
          setHost: false,
          agent: this.#agent,
        });
      } catch (err) {
        fail('protocol', `request not sent: ${(err as Error).message}`);
        return;
      }
      timer = setTimeout(() => {
        fail('timeout', `no complete response within ${timeoutMs} ms`);
        request.destroy();
      }, timeoutMs);
      request.on('error', (err: NodeJS.ErrnoException) => {
        const kind = err.message === 'socket hang up' ? 'reset' : classify(err);
        fail(kind, err.code ? `${err.code}: ${err.message}` : err.message);
      });
      request.on('response', (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        let truncated = false;
        const headers: HeaderPairs = [];
        for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) headers.push([res.rawHeaders[i]!, res.rawHeaders[i + 1]!]);
        const done = (): void =>
          finish({ ok: true, status: res.statusCode ?? 0, headers, body: Buffer.concat(chunks, size), bodyTruncated: truncated, latencyMs: elapsed() });
        res.on('data', (chunk: Buffer) => {
          if (truncated) return;
          const room = maxBody - size;
          if (chunk.length > room) {
            if (room > 0) chunks.push(chunk.subarray(0, room));
            size = maxBody;
            truncated = true;
            done();
            res.destroy();
            return;
          }
          chunks.push(chunk);
          size += chunk.length;
        });
        res.on('end', done);
        res.on('aborted', () => fail('reset', 'response cut before its end'));
        res.on('error', (err: NodeJS.ErrnoException) => {
          if (!truncated) fail(err.code === 'ECONNRESET' || err.message === 'aborted' ? 'reset' : 'protocol', err.message);
        });
      });
      request.end(req.body && req.body.length > 0 ? req.body : undefined);
    });
  }

  /** Close idle sockets and refuse new ones. */
  close(): void {
    this.#agent.destroy();
  }
}

/**
 * Runs at most maxInFlight tasks at once. offer() starts a task now or returns false (the caller
 * counts a dropped copy); it never queues. A task's rejection is counted, not thrown.
 */
export class ShadowDispatcher {
  readonly maxInFlight: number;
  #inFlight = 0;
  #dropped = 0;
  #failed = 0;
  #idle: Array<() => void> = [];

  constructor(opts: { maxInFlight: number }) {
    if (!Number.isInteger(opts.maxInFlight) || opts.maxInFlight < 1) throw new RangeError(`maxInFlight must be a whole number >= 1, got ${opts.maxInFlight}`);
    this.maxInFlight = opts.maxInFlight;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  /** Offers refused because the dispatcher was full. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Tasks that threw or rejected (a bug in the task: ShadowClient.send never rejects). */
  get failed(): number {
    return this.#failed;
  }

  offer(task: () => Promise<unknown>): boolean {
    if (this.#inFlight >= this.maxInFlight) {
      this.#dropped++;
      return false;
    }
    this.#inFlight++;
    let p: Promise<unknown>;
    try {
      p = task();
    } catch {
      p = Promise.reject(new Error('task threw'));
    }
    p.then(
      () => this.#settle(),
      () => {
        this.#failed++;
        this.#settle();
      },
    );
    return true;
  }

  /** Resolves when nothing is in flight. */
  idle(): Promise<void> {
    if (this.#inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  #settle(): void {
    this.#inFlight--;
    if (this.#inFlight === 0) {
      const waiting = this.#idle;
      this.#idle = [];
      for (const w of waiting) w();
    }
  }
}
