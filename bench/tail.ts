// Where molt's tail latency comes from (issue 14 item 1):
//   node dist/bench/tail.js [--rounds N] [--duration S] [--paced-ms MS] [--heap] [--env K=V ...]
// One backend nginx, one molt sidecar (1 process) started with `--trace-gc` and bench/probe.ts
// preloaded, one nginx proxy for reference. For wrk -c64, -c1 and a paced -c64 (each connection
// waits --paced-ms after every response, so both proxies get the same request rate, below either's
// capacity), molt and nginx are measured interleaved over N rounds; for each molt run the probe
// reports the event-loop delay percentiles and GC pauses of exactly that run, and the `--trace-gc`
// lines of that run are counted. With --heap, one more -c64 run under the sampling heap profiler
// (every allocation, also those a scavenge freed): top allocation sites and bytes per request.
// Prints Markdown. Nothing is asserted.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchTable, FakeController } from './fake-controller.js';
import { cpuTimes, freePort, startNginxBackend, startNginxProxy, startSidecar, stopAll, type Peer } from './peers.js';
import { runWrk, type WrkResult } from './wrk.js';

const PROBE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), 'probe.js');

interface Probe {
  eventLoopDelayMs: { p50: number; p90: number; p99: number; p999: number; max: number; mean: number; samples: number };
  gc: Record<string, { count: number; totalMs: number; maxMs: number }>;
}

const median = (xs: number[]): number => { if (xs.length === 0) return 0; const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2; };
const f1 = (x: number): string => x.toFixed(x < 10 ? 2 : 1);
const lat = (us: number): string => (us < 1000 ? `${Math.round(us)} µs` : `${(us / 1000).toFixed(2)} ms`);

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  let rounds = 5;
  let duration = 5;
  let pacedMs = 20;
  let heap = false;
  const env: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--rounds') rounds = Number(argv[++i]);
    else if (a === '--duration') duration = Number(argv[++i]);
    else if (a === '--paced-ms') pacedMs = Number(argv[++i]);
    else if (a === '--heap') heap = true;
    else if (a === '--env') { const kv = argv[++i]!; const k = kv.indexOf('='); env[kv.slice(0, k)] = kv.slice(k + 1); }
    else throw new Error(`unknown argument ${a}`);
  }
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'molt-tail-'));
  fs.chmodSync(root, 0o755);
  const probeOut = path.join(root, 'probe.json');
  let ctl: FakeController | null = null;
  const started = Date.now();
  const load0 = os.loadavg().map((x) => x.toFixed(2)).join(' ');
  try {
    const b = await freePort();
    const backend = startNginxBackend(root, 'backend', [b], 1);
    await backend.waitReady();
    const sock = path.join(root, 'ctl.sock');
    ctl = new FakeController(sock, benchTable(1, 'INSTANT', { host: '127.0.0.1', port: b }, { host: '127.0.0.1', port: b }));
    await ctl.start();
    const molt = startSidecar(root, 'molt', {
      port: await freePort(), controlSocket: sock, workers: 1,
      nodeArgs: ['--trace-gc', '--import', PROBE],
      env: { MOLT_PROBE_OUT: probeOut, ...env },
    });
    const nginx = startNginxProxy(root, 'nginx', await freePort(), [b], 1);
    await Promise.all([molt.waitReady(), nginx.waitReady()]);
    let mark = 0;
    const window = async (p: Peer): Promise<{ probe: Probe; scavengeLines: number }> => {
      const target = ++mark;
      const before = fs.readFileSync(p.logFile, 'utf8').length;
      p.child.kill('SIGUSR2');
      const deadline = Date.now() + 10_000;
      for (;;) {
        const log = fs.readFileSync(p.logFile, 'utf8');
        const i = log.indexOf(`MOLT-PROBE-MARK ${target}\n`);
        if (i >= 0) {
          const prev = log.lastIndexOf('MOLT-PROBE-MARK ', i - 1);
          const text = log.slice(prev >= 0 ? prev : 0, i);
          void before;
          return { probe: JSON.parse(fs.readFileSync(probeOut, 'utf8')) as Probe, scavengeLines: (text.match(/Scavenge/g) ?? []).length };
        }
        if (Date.now() > deadline) throw new Error(`probe did not answer SIGUSR2; see ${p.logFile}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };

    const loads = [
      { name: 'wrk -t1 -c64', connections: 64, delayMs: 0 },
      { name: 'wrk -t1 -c1', connections: 1, delayMs: 0 },
      { name: `wrk -t1 -c64, paced (${pacedMs} ms between a response and the next request per connection)`, connections: 64, delayMs: pacedMs },
    ];
    const md: string[] = [
      `# Tail latency: molt vs nginx (bench/tail.ts)`,
      '',
      `${new Date(started).toISOString()} · \`node dist/bench/tail.js ${argv.join(' ')}\` · ${rounds} interleaved rounds × ${duration} s · load average before ${load0}${Object.keys(env).length ? ` · molt env ${JSON.stringify(env)}` : ''}`,
      '',
    ];
    for (const l of loads) {
      const res: Record<string, Array<WrkResult & { cpuUs: number; probe?: Probe; scav?: number }>> = { molt: [], nginx: [] };
      const targets: Array<[string, Peer]> = [['molt', molt], ['nginx', nginx]];
      for (const [, p] of targets) await runWrk({ url: p.url, connections: l.connections, threads: 1, durationSeconds: 1, delayMs: l.delayMs });
      for (let r = 0; r < rounds; r++) {
        for (let k = 0; k < 2; k++) {
          const [name, p] = targets[(k + r) % 2]!;
          if (name === 'molt') await window(p); // start a fresh window
          const c0 = cpuTimes(p.child.pid);
          const w = await runWrk({ url: p.url, connections: l.connections, threads: 1, durationSeconds: duration, delayMs: l.delayMs });
          const c1 = cpuTimes(p.child.pid);
          const cpuUs = (c1.user - c0.user + c1.sys - c0.sys) * 1e6 / Math.max(1, w.requests);
          const row: WrkResult & { cpuUs: number; probe?: Probe; scav?: number } = { ...w, cpuUs };
          if (name === 'molt') { const pw = await window(p); row.probe = pw.probe; row.scav = pw.scavengeLines; }
          res[name]!.push(row);
          process.stderr.write(`  [${l.name} ${r + 1}/${rounds}] ${name.padEnd(6)} ${Math.round(w.requestsPerSec)} req/s p50 ${lat(w.p50Us)} p99 ${lat(w.p99Us)} p99.9 ${lat(w.p999Us)}${row.probe ? ` · ELD p99 ${f1(row.probe.eventLoopDelayMs.p99)} ms · scavenges ${row.probe.gc.scavenge?.count ?? 0}` : ''}\n`);
        }
      }
      const m = res.molt!;
      const n = res.nginx!;
      const med = (xs: typeof m, f: (x: (typeof m)[number]) => number) => median(xs.map(f));
      const scav = (x: (typeof m)[number]) => (x.probe?.gc.scavenge?.count ?? 0) * 1e4 / Math.max(1, x.requests);
      md.push(
        `## ${l.name}`,
        '',
        '| | req/s | p50 | p99 | p99.9 | CPU/req |',
        '|---|---:|---:|---:|---:|---:|',
        `| molt | ${Math.round(med(m, (x) => x.requestsPerSec))} | ${lat(med(m, (x) => x.p50Us))} | ${lat(med(m, (x) => x.p99Us))} | ${lat(med(m, (x) => x.p999Us))} | ${med(m, (x) => x.cpuUs).toFixed(1)} µs |`,
        `| nginx | ${Math.round(med(n, (x) => x.requestsPerSec))} | ${lat(med(n, (x) => x.p50Us))} | ${lat(med(n, (x) => x.p99Us))} | ${lat(med(n, (x) => x.p999Us))} | ${med(n, (x) => x.cpuUs).toFixed(1)} µs |`,
        `| molt / nginx | ${(med(m, (x) => x.requestsPerSec) / med(n, (x) => x.requestsPerSec)).toFixed(2)}× | ${(med(m, (x) => x.p50Us) / med(n, (x) => x.p50Us)).toFixed(2)}× | ${(med(m, (x) => x.p99Us) / med(n, (x) => x.p99Us)).toFixed(2)}× | ${(med(m, (x) => x.p999Us) / med(n, (x) => x.p999Us)).toFixed(2)}× | |`,
        '',
        `molt inside (medians over the rounds): scavenges per 10k requests ${med(m, scav).toFixed(2)} (\`--trace-gc\` lines: ${med(m, (x) => (x.scav ?? 0) * 1e4 / Math.max(1, x.requests)).toFixed(2)}), mean scavenge ${f1(med(m, (x) => { const g = x.probe?.gc.scavenge; return g ? g.totalMs / g.count : 0; }))} ms, longest ${f1(med(m, (x) => x.probe?.gc.scavenge?.maxMs ?? 0))} ms, share of the run spent in scavenges ${(med(m, (x) => (x.probe?.gc.scavenge?.totalMs ?? 0) / (duration * 10))).toFixed(2)} %; mark-compact per run ${med(m, (x) => x.probe?.gc['mark-compact']?.count ?? 0)}; event-loop delay p50 ${f1(med(m, (x) => x.probe!.eventLoopDelayMs.p50))} ms, p99 ${f1(med(m, (x) => x.probe!.eventLoopDelayMs.p99))} ms, p99.9 ${f1(med(m, (x) => x.probe!.eventLoopDelayMs.p999))} ms, max ${f1(med(m, (x) => x.probe!.eventLoopDelayMs.max))} ms.`,
        '',
      );
    }
    if (heap) {
      await molt.stop();
      const hp = path.join(root, 'probe-heap.json');
      const mh = startSidecar(root, 'molt-heap', { port: await freePort(), controlSocket: sock, workers: 1, nodeArgs: ['--import', PROBE], env: { MOLT_PROBE_OUT: hp, MOLT_PROBE_HEAP: '1', ...env } });
      await mh.waitReady();
      await runWrk({ url: mh.url, connections: 64, threads: 1, durationSeconds: 2 });
      mh.child.kill('SIGUSR2');
      await new Promise((r) => setTimeout(r, 1000));
      const w = await runWrk({ url: mh.url, connections: 64, threads: 1, durationSeconds: duration });
      const before = fs.existsSync(hp) ? fs.statSync(hp).mtimeMs : 0;
      mh.child.kill('SIGUSR2');
      const deadline = Date.now() + 15_000;
      while ((!fs.existsSync(hp) || fs.statSync(hp).mtimeMs === before) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      const h = JSON.parse(fs.readFileSync(hp + '.heap.json', 'utf8')) as { totalBytes: number; top: Array<{ site: string; bytes: number }> };
      const reqs = w.requests + 0; // the window also saw the 1 s pause (no traffic)
      md.push(
        '## Heap allocations per request (sampling heap profiler, every allocation, wrk -c64)',
        '',
        `${w.requests} requests in the window (${Math.round(w.requestsPerSec)} req/s under the profiler): ${(h.totalBytes / Math.max(1, reqs)).toFixed(0)} bytes allocated per request (sampled every 4 KiB, scaled).`,
        '',
        '| bytes/request | site ← caller |',
        '|---:|---|',
        ...h.top.slice(0, 25).map((t) => `| ${(t.bytes / Math.max(1, reqs)).toFixed(1)} | \`${t.site}\` |`),
        '',
      );
      fs.copyFileSync(hp + '.heap.json', path.join(path.dirname(PROBE), '..', '..', 'bench', 'results', 'tail-heap.json'));
    }
    md.push(`Load average after: ${os.loadavg().map((x) => x.toFixed(2)).join(' ')} (${Math.round((Date.now() - started) / 1000)} s).`);
    console.log(md.join('\n'));
  } finally {
    await stopAll();
    await ctl?.close();
    fs.rmSync(root, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => { console.error(e); process.exitCode = 1; });
