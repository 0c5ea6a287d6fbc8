// Mixed client load for the fault scenarios: several client connections, keep-alive and not, GET and
// POST, every request tagged with a unique x-req-id and recorded (start, end, status, who answered,
// error). Only ever talks to 127.0.0.1.

import http from 'node:http';

export interface RequestRecord {
  id: string;
  method: 'GET' | 'POST';
  path: string;
  keepAlive: boolean;
  start: number;
  end: number;
  status: number;
  /** Version that answered (x-served-by, else a 2xx body), '' when unknown. */
  servedBy: string;
  /** Transport error code/message, '' when an HTTP answer arrived. */
  error: string;
  /** First bytes of a 5xx body (the proxy's own errors say what went wrong). */
  detail?: string;
}

export interface WorkerSpec {
  method: 'GET' | 'POST';
  keepAlive: boolean;
  /** Paths to cycle through (default ['/']). */
  paths?: string[];
}

/** Two keep-alive GET connections, one GET per connection, one keep-alive POST, one POST per connection. */
export const DEFAULT_WORKERS: WorkerSpec[] = [
  { method: 'GET', keepAlive: true },
  { method: 'GET', keepAlive: true },
  { method: 'GET', keepAlive: false },
  { method: 'POST', keepAlive: true },
  { method: 'POST', keepAlive: false },
];

const POST_BODY = JSON.stringify({ order: 'book', qty: 1 });
const CLIENT_TIMEOUT_MS = 15_000;

export class MixedLoad {
  readonly records: RequestRecord[] = [];
  /** Totals, kept even when records are not (retain: false, for long runs). */
  total = 0;
  readonly errorKinds = new Map<string, number>();
  #stop = false;
  #done: Promise<void>[] = [];
  #agents: http.Agent[] = [];
  #seq = 0;

  constructor(readonly port: number, readonly workers: WorkerSpec[] = DEFAULT_WORKERS, readonly opts: { pauseMs?: number; prefix?: string; retain?: boolean } = {}) {}

  start(): this {
    this.workers.forEach((w, i) => this.#done.push(this.#worker(w, i)));
    return this;
  }

  async stop(): Promise<this> {
    this.#stop = true;
    await Promise.all(this.#done);
    for (const a of this.#agents) a.destroy();
    return this;
  }

  async #worker(w: WorkerSpec, index: number): Promise<void> {
    const agent = w.keepAlive ? new http.Agent({ keepAlive: true, maxSockets: 1 }) : false;
    if (agent) this.#agents.push(agent);
    const paths = w.paths ?? ['/'];
    const prefix = this.opts.prefix ?? 'r';
    let n = 0;
    while (!this.#stop) {
      const id = `${prefix}${index}-${++this.#seq}`;
      const rec = await this.#one(id, w, paths[n++ % paths.length]!, agent);
      this.total++;
      if (isClientError(rec)) this.errorKinds.set(`${rec.method} ${describeError(rec)}`, (this.errorKinds.get(`${rec.method} ${describeError(rec)}`) ?? 0) + 1);
      if (this.opts.retain !== false) this.records.push(rec);
      // A refused connection returns at once: pace retries so a dead listener is not hammered.
      const pause = rec.error ? 5 : (this.opts.pauseMs ?? 1);
      if (pause > 0) await new Promise((r) => setTimeout(r, pause));
    }
  }

  #one(id: string, w: WorkerSpec, path: string, agent: http.Agent | false): Promise<RequestRecord> {
    const start = Date.now();
    const base = { id, method: w.method, path, keepAlive: w.keepAlive, start };
    return new Promise((resolve) => {
      const headers: Record<string, string> = { 'x-req-id': id };
      if (w.method === 'POST') headers['content-type'] = 'application/json';
      if (!w.keepAlive) headers.connection = 'close';
      const req = http.request({ host: '127.0.0.1', port: this.port, path, method: w.method, headers, agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          // The fixture names itself in x-served-by; the busybox test images only in a 2xx body ("v1").
          const header = res.headers['x-served-by'];
          const servedBy = typeof header === 'string' ? header : status < 400 ? Buffer.concat(chunks).toString('utf8').trim().slice(0, 32) : '';
          const rec: RequestRecord = { ...base, end: Date.now(), status, servedBy, error: '' };
          if (status >= 500) rec.detail = Buffer.concat(chunks).toString('utf8').slice(0, 80);
          resolve(rec);
        });
        res.on('error', (err: NodeJS.ErrnoException) => resolve({ ...base, end: Date.now(), status: res.statusCode ?? 0, servedBy: '', error: err.code ?? err.message }));
      });
      req.on('error', (err: NodeJS.ErrnoException) => resolve({ ...base, end: Date.now(), status: 0, servedBy: '', error: err.code ?? err.message }));
      req.setTimeout(CLIENT_TIMEOUT_MS, () => req.destroy(Object.assign(new Error('client timeout'), { code: 'CLIENT_TIMEOUT' })));
      req.end(w.method === 'POST' ? POST_BODY : undefined);
    });
  }
}

/** A client-visible error: no HTTP answer, or a 5xx. */
export function isClientError(r: RequestRecord): boolean {
  return r.error !== '' || r.status >= 500 || r.status === 0;
}

export function describeError(r: RequestRecord): string {
  return r.error || `HTTP ${r.status}`;
}
