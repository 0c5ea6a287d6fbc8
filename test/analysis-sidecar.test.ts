// Canary-analysis samples as the controller receives them (issue 12, docs/analysis.md): a real
// sidecar process (1 and 2 workers) behind a fake controller, two real backends. v2 (the canary)
// answers every request 30 ms late; v1 (the baseline) answers 500 to every 5th request and resets
// the connection on another 5th. CONCURRENT sends each GET to both, so both versions see the same
// requests and the counts are exact: what the stats line's `analysis` must show.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { line, onLines } from '../common/ndjson.js';
import fc from 'fast-check';
import { LatencyHistogram, mergeHistogramJSON } from '../common/latency-histogram.js';
import { AnalysisCounters, mergeAnalysisSamples } from '../sidecar/analysis-samples.js';
import {
  DEFAULT_FAILURE_POLICY, DEFAULT_TRANSITION, PROTOCOL_VERSION,
  type RoutingTable, type StatsMessage, type VersionStats,
} from '../common/protocol.js';

const MAIN = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'sidecar', 'main.js');
const N = 40;
const SLOW_MS = 30;

function tableOf(revision: number, ports: { v2: number; v1: number }): RoutingTable {
  const v = (id: string, version: string, port: number) => ({
    id, version, epoch: 1, state: 'serving' as const,
    transition: { ...DEFAULT_TRANSITION, mode: 'CONCURRENT' as const },
    failurePolicy: DEFAULT_FAILURE_POLICY,
    endpoints: [{ host: '127.0.0.1', port }], servingSince: 0, promoted: false,
  });
  return {
    revision,
    apps: [{ name: 'shop', hosts: [], default: true, versionCookie: 'mv', bucketCookie: 'mb', versions: [v('shop-v2', '2.0', ports.v2), v('shop-v1', '1.0', ports.v1)] }],
  };
}

/** Request n's fate on v1, by path (so a retried request meets the same fate). */
const v1Fate = (n: number): 'ok' | '500' | 'reset' => (n % 5 === 1 ? '500' : n % 5 === 3 ? 'reset' : 'ok');

async function backends(t: { after(fn: () => void): void }): Promise<{ v2: number; v1: number }> {
  const v2 = http.createServer((_req, res) => {
    setTimeout(() => { res.writeHead(200, { 'content-type': 'text/plain' }); res.end('v2'); }, SLOW_MS);
  });
  const v1 = http.createServer((req, res) => {
    const n = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('n'));
    const fate = v1Fate(n);
    if (fate === 'reset') { req.socket.destroy(); return; }
    res.writeHead(fate === '500' ? 500 : 200, { 'content-type': 'text/plain' });
    res.end('v1');
  });
  for (const s of [v2, v1]) { s.listen(0, '127.0.0.1'); await once(s, 'listening'); }
  t.after(() => { for (const s of [v2, v1]) { s.close(); s.closeAllConnections(); } });
  return { v2: (v2.address() as net.AddressInfo).port, v1: (v1.address() as net.AddressInfo).port };
}

interface Sidecar {
  port: number;
  stats: StatsMessage[];
  /** Resolves with the first stats message (after `from`) that satisfies pred; bounded. */
  statsWhere(pred: (m: StatsMessage) => boolean, from?: number): Promise<StatsMessage>;
  stop(): Promise<number | null>;
}

async function startSidecar(t: { after(fn: () => unknown): void }, workers: number, env: Record<string, string>, ports: { v2: number; v1: number }): Promise<Sidecar> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'molt-an-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const socketPath = path.join(dir, 'control.sock');
  const stats: StatsMessage[] = [];
  let acked = false;
  const conns = new Set<net.Socket>();
  const ctl = net.createServer((s) => {
    conns.add(s);
    s.on('error', () => {});
    s.write(line({ type: 'hello', protocol: PROTOCOL_VERSION, role: 'controller', pid: 1 }));
    onLines(s, (l) => {
      const m = JSON.parse(l);
      if (m.type === 'hello') s.write(line({ type: 'routes', table: tableOf(3, ports) }));
      if (m.type === 'ack' && m.revision === 3) acked = true;
      if (m.type === 'stats') stats.push(m);
    });
  });
  ctl.listen(socketPath);
  await once(ctl, 'listening');
  t.after(() => new Promise<void>((r) => { for (const c of conns) c.destroy(); ctl.close(() => r()); }));

  const child = spawn(process.execPath, [MAIN, '--listen', '127.0.0.1:0', '--control', socketPath, '--workers', String(workers), '--log-level', 'info'], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, MOLT_LOG_FORMAT: 'json', ...env },
  });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => { stderr += d; });
  t.after(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });

  const until = async (what: string, pred: () => boolean) => {
    const deadline = Date.now() + 20_000; // bounded: a failure must not keep the test alive
    while (!pred()) {
      if (child.exitCode !== null) throw new Error(`sidecar exited (${child.exitCode}) while waiting for ${what}:\n${stderr}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}:\n${stderr}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  await until('the table ack', () => acked);
  await until('"sidecar listening"', () => /"msg":"sidecar listening"/.test(stderr));
  const port = JSON.parse(stderr.split('\n').find((l) => l.includes('"sidecar listening"'))!).port as number;
  return {
    port,
    stats,
    async statsWhere(pred, from = 0) {
      let found: StatsMessage | undefined;
      const last = () => JSON.stringify(stats.at(-1)?.versions.map((v) => ({ id: v.versionId, requests: v.requests, errors: v.errors, analysis: v.analysis && { ...v.analysis, latency: v.analysis.latency.count } })));
      await until('stats', () => (found = stats.slice(from).find(pred)) !== undefined).catch((err: Error) => {
        throw new Error(`${err.message}\nlast stats: ${last()}`);
      });
      return found!;
    },
    async stop() {
      child.kill('SIGTERM');
      const [code] = await once(child, 'exit');
      return code as number | null;
    },
  };
}

/**
 * N sequential GETs, paths /?n=0..N-1, each on a new keep-alive connection (so they spread over the
 * workers) that stays open until the end: a CONCURRENT duplicate still running when its client
 * connection closes is aborted and counted nowhere, while on an open connection it finishes and is
 * counted. (A client sending `Connection: close` may thus leave the slower side's tail uncounted.)
 */
async function drive(t: { after(fn: () => void): void }, port: number): Promise<string[]> {
  const bodies: string[] = [];
  const agents: http.Agent[] = [];
  t.after(() => { for (const a of agents) a.destroy(); });
  for (let n = 0; n < N; n++) {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    agents.push(agent);
    bodies.push(await new Promise<string>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port, path: `/?n=${n}`, agent, headers: { host: 'shop.local' } }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve(`${res.statusCode} ${body}`));
      });
      req.on('error', reject);
    }));
  }
  return bodies;
}

const version = (m: StatsMessage, id: string): VersionStats => m.versions.find((v) => v.versionId === id)!;

// What v1 must have counted for N requests.
const V1_500 = Array.from({ length: N }, (_, n) => v1Fate(n)).filter((f) => f === '500').length;
const V1_RESET = Array.from({ length: N }, (_, n) => v1Fate(n)).filter((f) => f === 'reset').length;

test('summing two workers\' samples equals recording everything in one', () => {
  const sample = fc.array(fc.tuple(fc.constantFrom(200, 201, 302, 404, 500, 503), fc.integer({ min: 0, max: 70_000_000 }), fc.boolean()), { maxLength: 300 });
  fc.assert(fc.property(sample, sample, (xs, ys) => {
    const a = new AnalysisCounters();
    const b = new AnalysisCounters();
    const all = new AnalysisCounters();
    for (const [list, c] of [[xs, a], [ys, b]] as const) {
      for (const [status, micros, answered] of list) {
        for (const target of [c, all]) {
          if (answered) target.response(status, micros);
          else target.noResponse++;
        }
      }
    }
    const merged = mergeAnalysisSamples(a.snapshot(), b.snapshot());
    assert.deepEqual(merged, all.snapshot());
    // the sparse merge is LatencyHistogram.merge on the wire form
    assert.deepEqual(mergeHistogramJSON(a.snapshot().latency, b.snapshot().latency),
      LatencyHistogram.fromJSON(a.snapshot().latency).merge(LatencyHistogram.fromJSON(b.snapshot().latency)).toJSON());
  }), { numRuns: 200 });
  assert.throws(() => mergeHistogramJSON({ layout: 'other' } as never, new LatencyHistogram().toJSON()), (e: { code?: string }) => e.code === 'MOLT_ERR_PROTOCOL');
});

for (const workers of [1, 2]) {
  test(`analysis samples in the stats line (--workers ${workers}): the 30 ms slower version and the 500s show, counts exact`, { timeout: 60_000 }, async (t) => {
    const ports = await backends(t);
    const sc = await startSidecar(t, workers, {}, ports);
    const answers = await drive(t, sc.port);
    // The client always gets v2's answer (the primary); v1 runs as the CONCURRENT duplicate.
    assert.deepEqual(new Set(answers), new Set(['200 v2']));

    // Wait for a stats line that has counted every request of both versions (summed over workers).
    const m = await sc.statsWhere((s) => version(s, 'shop-v2')?.analysis?.requests === N && version(s, 'shop-v1')?.analysis?.requests === N);
    const v2 = version(m, 'shop-v2').analysis!;
    const v1 = version(m, 'shop-v1').analysis!;

    assert.deepEqual(v2.statuses, [200, N]);
    assert.equal(v2.noResponse, 0);
    assert.deepEqual(v1.statuses, [200, N - V1_500 - V1_RESET, 500, V1_500]);
    assert.equal(v1.noResponse, V1_RESET, 'a reset before any response head is a request without a status');
    // Latency is recorded for every response head: one per status counted.
    assert.equal(v2.latency.count, N);
    assert.equal(v1.latency.count, N - V1_RESET);

    // The latency shift: every v2 answer waited 30 ms in the backend; v1 answered at once.
    const h2 = LatencyHistogram.fromJSON(v2.latency);
    const h1 = LatencyHistogram.fromJSON(v1.latency);
    assert.ok(h2.quantile(0) >= (SLOW_MS - 2) * 1000, `v2's fastest answer ${h2.quantile(0)} µs includes the 30 ms delay`);
    assert.ok(h1.quantile(0.5) < h2.quantile(0.5), `v1 median ${h1.quantile(0.5)} µs below v2 median ${h2.quantile(0.5)} µs`);

    // Cumulative: a later line never counts less (the controller subtracts snapshots).
    const later = await sc.statsWhere(() => true, sc.stats.indexOf(m) + 1);
    assert.ok(version(later, 'shop-v2').analysis!.requests >= N);
    assert.equal(await sc.stop(), 0);
  });
}

test('MOLT_ANALYSIS_SAMPLES=off: no analysis in the stats line, the other counters as before', { timeout: 60_000 }, async (t) => {
  const ports = await backends(t);
  const sc = await startSidecar(t, 2, { MOLT_ANALYSIS_SAMPLES: 'off' }, ports);
  await drive(t, sc.port);
  const m = await sc.statsWhere((s) => version(s, 'shop-v2')?.requests === N);
  for (const v of m.versions) assert.equal('analysis' in v, false, `${v.versionId} has no analysis`);
  assert.ok(version(m, 'shop-v1').errors >= V1_500, 'v1 errors still counted');
  assert.equal(await sc.stop(), 0);
});

test('MOLT_ANALYSIS_SAMPLES with another value than on/off: usage error, exit 2', { timeout: 20_000 }, async () => {
  const child = spawn(process.execPath, [MAIN, '--listen', '127.0.0.1:0', '--control', '/nonexistent/control.sock'], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, MOLT_ANALYSIS_SAMPLES: 'false' },
  });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => { stderr += d; });
  const [code] = await once(child, 'exit');
  assert.equal(code, 2);
  assert.match(stderr, /MOLT_ANALYSIS_SAMPLES must be "on" or "off", got "false"/);
});
