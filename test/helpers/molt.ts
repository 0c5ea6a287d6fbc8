// Helpers for end-to-end tests: a temp workspace, free ports, an HTTP client that keeps cookies,
// and waiting for a condition without fixed sleeps.

import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../test/fixtures');

export function tempDir(prefix = 'molt-e2e-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export interface Reply {
  status: number;
  body: string;
  headers: http.IncomingHttpHeaders;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });

export function request(port: number, opts: { path?: string; method?: string; headers?: Record<string, string>; body?: string; agent?: http.Agent | false } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: opts.path ?? '/', method: opts.method ?? 'GET', headers: opts.headers, agent: opts.agent ?? agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(15000, () => req.destroy(new Error('client timeout')));
    req.end(opts.body);
  });
}

/** A client with a cookie jar, like a browser: keeps what Set-Cookie sent. */
export class CookieClient {
  cookies = new Map<string, string>();
  constructor(readonly port: number) {}
  async get(p = '/'): Promise<Reply> {
    const cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    const r = await request(this.port, { path: p, headers: cookie ? { cookie } : {} });
    const set = r.headers['set-cookie'] ?? [];
    for (const line of set) {
      const [pair, ...attrs] = line.split(';');
      const [k, v] = pair.trim().split('=');
      if (attrs.some((a) => /max-age=0\b/i.test(a.trim()))) this.cookies.delete(k);
      else this.cookies.set(k, v);
    }
    return r;
  }
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 30000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v as T;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}

/** Steady GET traffic until stopped: counts answers by body and every error. */
export class LoadGenerator {
  byBody = new Map<string, number>();
  errors: string[] = [];
  total = 0;
  #stop = false;
  #done: Promise<void>[] = [];
  constructor(readonly port: number, readonly concurrency = 4, readonly opts: { method?: string; body?: string; path?: string } = {}) {}
  start(): this {
    for (let i = 0; i < this.concurrency; i++) this.#done.push(this.#worker());
    return this;
  }
  async #worker(): Promise<void> {
    while (!this.#stop) {
      try {
        const r = await request(this.port, { method: this.opts.method, body: this.opts.body, path: this.opts.path });
        this.total++;
        if (r.status >= 500 || r.status === 0) this.errors.push(`${r.status} ${r.body.slice(0, 80)}`);
        else this.byBody.set(r.body, (this.byBody.get(r.body) ?? 0) + 1);
      } catch (err) {
        this.errors.push((err as Error).message);
      }
    }
  }
  async stop(): Promise<this> {
    this.#stop = true;
    await Promise.all(this.#done);
    return this;
  }
}

export function appVersionYaml(o: { name: string; app?: string; version: string; mode?: string; extraTransition?: string; runtime: string; healthPath?: string; failurePolicy?: string }): string {
  return `apiVersion: molt.dev/v1alpha1
kind: AppVersion
metadata:
  name: ${o.name}
spec:
  app: ${o.app ?? 'shop'}
  version: "${o.version}"
  transition:
    mode: ${o.mode ?? 'INSTANT'}
${o.extraTransition ?? ''}
  healthCheck:
    path: ${o.healthPath ?? '/healthz'}
    interval: 100ms
    timeout: 1s
    startupTimeout: 20s
${o.failurePolicy ?? ''}
${o.runtime}
`;
}

export function processRuntimeYaml(env: Record<string, string>, replicas = 1): string {
  const envLines = Object.entries(env).map(([k, v]) => `      ${k}: "${v}"`).join('\n');
  return `  process:
    command: ${process.execPath}
    args: [${JSON.stringify(path.join(FIXTURES, 'e2e-app.mjs'))}]
    replicas: ${replicas}
    env:
${envLines}`;
}
