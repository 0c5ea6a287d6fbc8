// Runs wrk (`--latency`) against one URL and parses what it prints: req/s, p50, p99, errors, plus
// what a small Lua script adds (p99.9, bytes read, exact duration). wrk is an external binary
// (Debian package `wrk`); it runs as a child process so the orchestrator's event loop never
// competes with the load generator. It is started through `sh` so that its file-descriptor limit
// can be raised (thousands of connections) and its own CPU time read (`times`).

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface WrkOptions {
  url: string;
  connections: number;
  threads: number;
  durationSeconds: number;
  /** wrk's per-request timeout; a request slower than this counts as a timeout error. */
  timeoutSeconds?: number;
  headers?: string[];
  /** Send every request as `method` with a body of this many bytes (an upload benchmark). */
  method?: string;
  bodyBytes?: number;
  /** Per connection, wait this many ms after a response before the next request (paced load). */
  delayMs?: number;
  /** Run wrk on these CPUs only (`taskset -c`), e.g. "1". */
  cpus?: string;
}

export interface WrkResult {
  requestsPerSec: number;
  /** Latency percentiles in microseconds. */
  p50Us: number;
  p99Us: number;
  p999Us: number;
  /** The slowest request of the run (0 if unknown). */
  maxUs: number;
  requests: number;
  /** Response bytes read (heads included) and the run's exact duration. */
  bytesRead: number;
  durationUs: number;
  /** Non-2xx/3xx responses plus socket errors (connect, read, write, timeout). */
  errors: number;
  /** CPU seconds wrk itself used (user + sys), 0 if unknown. */
  wrkCpuSec: number;
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

/** "0m1.234000s" (sh `times`) -> seconds. */
function parseTimes(text: string): number {
  const m = /^(\d+)m([\d.]+)s$/.exec(text.trim());
  return m ? Number(m[1]) * 60 + Number(m[2]) : 0;
}

/** Parses the stdout of `wrk --latency` (and our script's MOLT line, and sh's `times`, if present). */
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
  const extra = /^MOLT p999=(\d+) bytes=(\d+) duration=(\d+)(?: max=(\d+))?/m.exec(out);
  const times = /(\d+m[\d.]+s) (\d+m[\d.]+s)\n(\d+m[\d.]+s) (\d+m[\d.]+s)\s*$/.exec(out);
  const p99Us = parseDuration(p99[1]);
  return {
    requestsPerSec: Number(rps[1]),
    p50Us: parseDuration(p50[1]),
    p99Us,
    p999Us: extra ? Number(extra[1]) : p99Us,
    maxUs: extra?.[4] !== undefined ? Number(extra[4]) : 0,
    requests: Number.isNaN(parseCount(total[1])) ? 0 : parseCount(total[1]),
    bytesRead: extra ? Number(extra[2]) : 0,
    durationUs: extra ? Number(extra[3]) : 0,
    errors,
    wrkCpuSec: times ? parseTimes(times[3]) + parseTimes(times[4]) : 0,
  };
}

function luaScript(o: WrkOptions): string {
  const lines: string[] = [];
  if (o.method !== undefined) lines.push(`wrk.method = "${o.method}"`);
  if (o.bodyBytes !== undefined && o.bodyBytes > 0) {
    lines.push(`wrk.body = string.rep("m", ${o.bodyBytes})`, 'wrk.headers["Content-Type"] = "application/octet-stream"');
  }
  if (o.delayMs !== undefined && o.delayMs > 0) lines.push(`function delay() return ${o.delayMs} end`);
  lines.push(
    'function done(summary, latency, requests)',
    '  io.write(string.format("MOLT p999=%d bytes=%d duration=%d max=%d\\n", latency:percentile(99.9), summary.bytes, summary.duration, latency.max))',
    'end',
  );
  return lines.join('\n') + '\n';
}

/** Raise the soft fd limit (thousands of sockets), then exec; `times` after wrk reports its CPU. */
export const RAISE_NOFILE = 'ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null';

/** One wrk run. Rejects with WrkError if wrk fails or prints something unparsable. */
export function runWrk(o: WrkOptions): Promise<WrkResult> {
  const script = path.join(os.tmpdir(), `molt-wrk-${process.pid}-${Math.random().toString(36).slice(2)}.lua`);
  fs.writeFileSync(script, luaScript(o));
  const args = [
    '-t', String(o.threads),
    '-c', String(Math.max(o.connections, o.threads)),
    '-d', `${o.durationSeconds}s`,
    '--timeout', `${o.timeoutSeconds ?? 2}s`,
    '--latency',
    '-s', script,
  ];
  for (const h of o.headers ?? []) args.push('-H', h);
  args.push(o.url);
  const wrk = o.cpus !== undefined ? `taskset -c ${o.cpus} wrk` : 'wrk';
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', `${RAISE_NOFILE}; ${wrk} "$@"; rc=$?; times; exit $rc`, 'wrk', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { err += d; });
    child.on('error', (e) => { fs.rmSync(script, { force: true }); reject(new WrkError(`cannot run wrk: ${e.message}`, '')); });
    child.on('close', (code) => {
      fs.rmSync(script, { force: true });
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
