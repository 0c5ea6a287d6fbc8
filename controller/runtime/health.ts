// Readiness probing: one TCP connect or one HTTP GET per call, bounded by hc.timeoutMs. The caller
// (the controller) owns the schedule (hc.intervalMs, hc.startupTimeoutMs); a probe never retries.
//
// Containers and local processes are reached only through loopback (ports published on 127.0.0.1),
// so a probe of any other address for them is refused with MOLT_ERR_VALIDATION before any packet is
// sent. `servers` endpoints belong to the user and may be anywhere (loopbackOnly: false).

import http from 'node:http';
import net from 'node:net';
import type { HealthCheck } from '../appversion.js';
import { MoltError } from '../../common/errors.js';
import type { Endpoint } from '../../common/protocol.js';
import { isLoopbackHost } from '../net-util.js';

export { isLoopbackHost };

export interface ProbeResult {
  ok: boolean;
  /** "HTTP 200", "HTTP 500", "TCP connect ok", "connect ECONNREFUSED 127.0.0.1:8080", "timed out after 2000ms". */
  detail: string;
}

function dialHost(host: string): string {
  const h = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  // "localhost" could resolve anywhere through /etc/hosts; dial the loopback address itself.
  return h.toLowerCase() === 'localhost' ? '127.0.0.1' : h;
}

export function assertLoopback(endpoint: Endpoint): void {
  if (!isLoopbackHost(endpoint.host)) {
    throw new MoltError(
      'MOLT_ERR_VALIDATION',
      `refusing to probe ${endpoint.host}:${endpoint.port}: molt only dials loopback addresses ` +
        `(127.0.0.0/8, ::1); publish the port on 127.0.0.1 instead`,
      { path: 'endpoint.host' },
    );
  }
}

function errorDetail(err: unknown): string {
  const e = err as NodeJS.ErrnoException & { address?: string; port?: number };
  if (!e.code || !e.syscall) return e.message ?? String(err);
  const where = e.address ? ` ${e.address}${e.port ? `:${e.port}` : ''}` : '';
  return `${e.syscall} ${e.code}${where}`;
}

/** Probe one endpoint once. Resolves (never rejects) for every network outcome; throws MoltError only
 *  for a non-loopback host when loopbackOnly (the default). */
export async function probe(endpoint: Endpoint, hc: HealthCheck, opts: { loopbackOnly?: boolean } = { loopbackOnly: true }): Promise<ProbeResult> {
  // Containers and local processes are only ever published on loopback, so for them anything else
  // is a bug and is refused before dialling. `servers` endpoints are the user's own and may be remote.
  if (opts.loopbackOnly !== false) assertLoopback(endpoint);
  const host = dialHost(endpoint.host);
  const timeoutMs = Math.max(1, hc.timeoutMs);
  return hc.path === undefined ? probeTcp(host, endpoint.port, timeoutMs) : probeHttp(host, endpoint.port, hc.path, timeoutMs);
}

function probeTcp(host: string, port: number, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    let settled = false;
    const socket = net.connect({ host, port });
    const finish = (result: ProbeResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => finish({ ok: false, detail: `TCP connect timed out after ${timeoutMs}ms` }), timeoutMs);
    socket.once('connect', () => finish({ ok: true, detail: 'TCP connect ok' }));
    socket.once('error', (err) => finish({ ok: false, detail: errorDetail(err) }));
  });
}

function probeHttp(host: string, port: number, path: string, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    let settled = false;
    const hostHeader = net.isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
    const req = http.request({
      host,
      port,
      path: path.startsWith('/') ? path : `/${path}`,
      method: 'GET',
      agent: false,
      headers: { Host: hostHeader, Connection: 'close', 'User-Agent': 'molt-health/1' },
    });
    const finish = (result: ProbeResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => finish({ ok: false, detail: `HTTP GET ${path} timed out after ${timeoutMs}ms` }), timeoutMs);
    req.once('response', (res) => {
      const status = res.statusCode ?? 0;
      res.resume();
      finish({ ok: status >= 200 && status < 400, detail: `HTTP ${status}` });
    });
    req.once('error', (err) => finish({ ok: false, detail: errorDetail(err) }));
    req.end();
  });
}
