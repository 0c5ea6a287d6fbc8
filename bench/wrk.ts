// Runs wrk (`--latency`) against one URL and parses what it prints: req/s, p50, p99, errors.
// wrk is an external binary (Debian package `wrk`); it runs as a child process so the
// orchestrator's event loop never competes with the load generator.

import { spawn } from 'node:child_process';

export interface WrkOptions {
  url: string;
  connections: number;
  threads: number;
  durationSeconds: number;
  /** wrk's per-request timeout; a request slower than this counts as a timeout error. */
  timeoutSeconds?: number;
  headers?: string[];
}

export interface WrkResult {
  requestsPerSec: number;
  /** Latency percentiles in microseconds. */
  p50Us: number;
  p99Us: number;
  requests: number;
  /** Non-2xx/3xx responses plus socket errors (connect, read, write, timeout). */
  errors: number;
}

export class WrkError extends Error {
  readonly code = 'MOLT_ERR_BENCH_WRK';
  constructor(message: string, readonly output: string) {
    super(message);
    this.name = 'WrkError';
  }
}

const UNIT_US: Record<string, number> = { us: 1, ms: 1000, s: 1_000_000, m: 60_000_000, h: 3_600_000_000 };

/** "812.00us", "1.23ms", "2.00s" -> microseconds. */
export function parseDuration(text: string): number {
  const m = /^([\d.]+)(us|ms|s|m|h)$/.exec(text.trim());
  if (!m) throw new WrkError(`cannot parse wrk duration "${text}"`, text);
  return Number(m[1]) * UNIT_US[m[2]];
}

/** "12.34k" -> 12340 (wrk prints counts with SI suffixes in some lines). */
function parseCount(text: string): number {
  const m = /^([\d.]+)([kMG]?)$/.exec(text.trim());
  if (!m) return Number.NaN;
  return Number(m[1]) * ({ '': 1, k: 1e3, M: 1e6, G: 1e9 } as Record<string, number>)[m[2]];
}

/** Parses the stdout of `wrk --latency`. */
export function parseWrkOutput(out: string): WrkResult {
  const rps = /^Requests\/sec:\s+([\d.]+)/m.exec(out);
  const p50 = /^\s+50%\s+(\S+)/m.exec(out);
  const p99 = /^\s+99%\s+(\S+)/m.exec(out);
  const total = /^\s+(\d+) requests in /m.exec(out);
  if (!rps || !p50 || !p99 || !total) throw new WrkError('unexpected wrk output (no Requests/sec or latency distribution)', out);
  let errors = 0;
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(out);
  if (non2xx) errors += Number(non2xx[1]);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  if (sock) errors += Number(sock[1]) + Number(sock[2]) + Number(sock[3]) + Number(sock[4]);
  return {
    requestsPerSec: Number(rps[1]),
    p50Us: parseDuration(p50[1]),
    p99Us: parseDuration(p99[1]),
    requests: Number.isNaN(parseCount(total[1])) ? 0 : parseCount(total[1]),
    errors,
  };
}

/** One wrk run. Rejects with WrkError if wrk fails or prints something unparsable. */
export function runWrk(o: WrkOptions): Promise<WrkResult> {
  const args = [
    '-t', String(o.threads),
    '-c', String(Math.max(o.connections, o.threads)),
    '-d', `${o.durationSeconds}s`,
    '--timeout', `${o.timeoutSeconds ?? 2}s`,
    '--latency',
  ];
  for (const h of o.headers ?? []) args.push('-H', h);
  args.push(o.url);
  return new Promise((resolve, reject) => {
    const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { err += d; });
    child.on('error', (e) => reject(new WrkError(`cannot run wrk: ${e.message}`, '')));
    child.on('close', (code) => {
      if (code !== 0) {
        reject(new WrkError(`wrk exited with ${code}: ${err.trim()}`, out + err));
        return;
      }
      try {
        resolve(parseWrkOutput(out));
      } catch (e) {
        reject(e);
      }
    });
  });
}
