// End-to-end benchmark: `npm run bench` (= `npm run build && node dist/bench/run.js [flags]`).
//
// A backend nginx (1 worker, small static body) sits behind each target; wrk (--latency) drives
// one target at a time, interleaved over several rounds, and each row reports the median of its
// rounds. Targets: direct, the molt sidecar (driven by bench/fake-controller.ts), nginx, HAProxy,
// Caddy and npm http-proxy; then one-connection latency, a multi-worker run and GRADUAL/CONCURRENT
// routing. Prints Markdown and writes it to bench/results/latest.md. Only prints: no thresholds.
// Flags: see USAGE; bench/README.md says what each row means.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchTable, FakeController, type BenchMode } from './fake-controller.js';
import {
  cpuTimes,
  freePort,
  startCaddy,
  startHaproxy,
  startHttpProxy,
  startNginxBackend,
  startNginxProxy,
  startRawPipe,
  startSidecar,
  stopAll,
  type Peer,
} from './peers.js';
import { formatSummary, summariseCpuProfile } from './profile.js';
import { runWrk, type WrkResult } from './wrk.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const RESULTS = path.join(REPO, 'bench', 'results');

const USAGE = `usage: node dist/bench/run.js [--quick] [--rounds N] [--duration S] [--connections C] [--workers N] [--profile] [--only-profile] [--no-write]
  --quick          1 round x 2 s per target (about a minute in all)
  --rounds N       interleaved rounds per target (default 3)
  --duration S     seconds per wrk run, 1..5 (default 5; the -c1 runs use the same)
  --connections C  wrk connections for the throughput runs (default 64)
  --workers N      worker processes for the multi-worker run (default min(4, max(2, CPUs)))
  --profile        afterwards, profile the sidecar (node --cpu-prof) during one 5 s wrk run
  --only-profile   only the profile run
  --only-main      only the 1-worker table and one-connection latency (molt, nginx, Node raw pipe)
  --no-write       do not write bench/results/latest.md`;

interface Options {
  rounds: number;
  duration: number;
  connections: number;
  workers: number;
  warmup: number;
  profile: boolean;
  onlyProfile: boolean;
  onlyMain: boolean;
  write: boolean;
  argv: string[];
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    rounds: 3,
    duration: 5,
    connections: 64,
    workers: Math.min(4, Math.max(2, os.availableParallelism())),
    warmup: 1,
    profile: false,
    onlyProfile: false,
    onlyMain: false,
    write: true,
    argv,
  };
  const int = (v: string | undefined, flag: string, min: number, max: number): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${flag} must be an integer ${min}..${max}, got "${v}"\n${USAGE}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    switch (a) {
      case '--quick': o.rounds = 1; o.duration = 2; break;
      case '--rounds': o.rounds = int(argv[++i], a, 1, 10); break;
      case '--duration': o.duration = int(argv[++i], a, 1, 5); break;
      case '--connections': o.connections = int(argv[++i], a, 1, 1024); break;
      case '--workers': o.workers = int(argv[++i], a, 1, 64); break;
      case '--profile': o.profile = true; break;
      case '--only-profile': o.profile = true; o.onlyProfile = true; break;
      case '--only-main': o.onlyMain = true; break;
      case '--no-write': o.write = false; break;
      case '-h': case '--help': console.log(USAGE); process.exit(0); break;
      default: throw new Error(`unknown argument "${a}"\n${USAGE}`);
    }
  }
  return o;
}

// ---- measuring ----

interface Target { label: string; peer: Peer }

interface Row {
  label: string;
  rps: number;
  p50Us: number;
  p99Us: number;
  errors: number;
  runs: number;
  /** Median CPU (user, sys) microseconds per request of the target's processes (proxy only, not the backend). */
  cpuUserUs: number;
  cpuSysUs: number;
}

interface Load { connections: number; threads: number; duration: number }

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Warm every target up, then `rounds` rounds over all targets, rotating the order each round. */
async function measure(section: string, targets: Target[], load: Load, o: Options): Promise<Row[]> {
  const results = new Map<string, Array<WrkResult & { userUs: number; sysUs: number }>>(targets.map((t) => [t.label, []]));
  const wrk = (t: Target, duration: number) => runWrk({ url: t.peer.url, connections: load.connections, threads: load.threads, durationSeconds: duration });
  for (const t of targets) await wrk(t, o.warmup); // JIT, pools, keep-alive connections
  for (let r = 0; r < o.rounds; r++) {
    for (let i = 0; i < targets.length; i++) {
      const t = targets[(i + r) % targets.length];
      const before = cpuTimes(t.peer.child.pid);
      const res = await wrk(t, load.duration);
      const after = cpuTimes(t.peer.child.pid);
      const per = 1e6 / Math.max(1, res.requests);
      const cpuUs = (after.user - before.user + after.sys - before.sys) * per;
      results.get(t.label)!.push({ ...res, userUs: (after.user - before.user) * per, sysUs: (after.sys - before.sys) * per });
      process.stderr.write(`  [${section} ${r + 1}/${o.rounds}] ${t.label.padEnd(34)} ${Math.round(res.requestsPerSec).toString().padStart(7)} req/s  p50 ${fmtLat(res.p50Us).padStart(9)}  p99 ${fmtLat(res.p99Us).padStart(9)}  CPU/req ${Math.round(cpuUs).toString().padStart(4)} µs${res.errors ? `  errors ${res.errors}` : ''}\n`);
    }
  }
  return targets.map((t) => {
    const rs = results.get(t.label)!;
    return {
      label: t.label,
      rps: median(rs.map((x) => x.requestsPerSec)),
      p50Us: median(rs.map((x) => x.p50Us)),
      p99Us: median(rs.map((x) => x.p99Us)),
      errors: rs.reduce((n, x) => n + x.errors, 0),
      runs: rs.length,
      cpuUserUs: median(rs.map((x) => x.userUs)),
      cpuSysUs: median(rs.map((x) => x.sysUs)),
    };
  });
}

// ---- formatting ----

function fmtLat(us: number): string {
  if (us < 1000) return `${Math.round(us)} µs`;
  return `${(us / 1000).toFixed(us < 10_000 ? 2 : 1)} ms`;
}

function fmtCpu(r: Row): string {
  return `${Math.round(r.cpuUserUs + r.cpuSysUs)} µs (${Math.round(r.cpuUserUs)}+${Math.round(r.cpuSysUs)})`;
}

function fmtSigned(us: number): string {
  return `${us < 0 ? '−' : '+'}${fmtLat(Math.abs(us))}`;
}

function fmtRps(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

function ratio(a: number, b: number): string {
  return b > 0 ? `${(a / b).toFixed(2)}×` : 'n/a';
}

function throughputTable(rows: Row[], refLabel: string, refName: string): string {
  const ref = rows.find((r) => r.label === refLabel);
  const out = [
    `| target | req/s | p50 | p99 | req/s vs ${refName} | p99 vs ${refName} | CPU/req usr+sys | errors |`,
    '|---|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of rows) {
    out.push(`| ${r.label} | ${fmtRps(r.rps)} | ${fmtLat(r.p50Us)} | ${fmtLat(r.p99Us)} | ${ref ? ratio(r.rps, ref.rps) : ''} | ${ref ? ratio(r.p99Us, ref.p99Us) : ''} | ${fmtCpu(r)} | ${r.errors} |`);
  }
  return out.join('\n');
}

function latencyTable(rows: Row[], directLabel: string): string {
  const d = rows.find((r) => r.label === directLabel)!;
  const out = [
    '| target | req/s | p50 | p99 | added p50 vs direct | added p99 vs direct | errors |',
    '|---|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of rows) {
    const same = r === d;
    out.push(`| ${r.label} | ${fmtRps(r.rps)} | ${fmtLat(r.p50Us)} | ${fmtLat(r.p99Us)} | ${same ? '—' : fmtSigned(r.p50Us - d.p50Us)} | ${same ? '—' : fmtSigned(r.p99Us - d.p99Us)} | ${r.errors} |`);
  }
  return out.join('\n');
}

function versionOf(cmd: string, args: string[], re: RegExp): string {
  try {
    const out = execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return re.exec(out)?.[1] ?? '?';
  } catch (e) {
    const err = e as { stderr?: string; stdout?: string };
    return re.exec(`${err.stdout ?? ''}${err.stderr ?? ''}`)?.[1] ?? 'missing';
  }
}

function nginxVersion(): string {
  try {
    // nginx -v prints to stderr and exits 0.
    const r = execFileSync('sh', ['-c', 'nginx -v 2>&1'], { encoding: 'utf8' });
    return /nginx\/(\S+)/.exec(r)?.[1] ?? '?';
  } catch {
    return 'missing';
  }
}

function machineLine(): string {
  const cpus = os.cpus();
  return [
    `${cpus[0]?.model.trim() ?? 'unknown CPU'} × ${os.availableParallelism()}`,
    `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
    `Linux ${os.release()}`,
    `node ${process.versions.node}`,
    `nginx ${nginxVersion()}`,
    `HAProxy ${versionOf('haproxy', ['-v'], /version (\S+)/i)}`,
    `Caddy ${versionOf('caddy', ['version'], /^v?(\S+)/)}`,
    `wrk ${versionOf('wrk', ['-v'], /wrk (\S+)/)}`,
  ].join(' · ');
}

const loadavg = () => os.loadavg().map((x) => x.toFixed(2)).join(' ');

// ---- the run ----

async function startMolt(root: string, name: string, mode: BenchMode, v1: number, v2: number, workers: number, nodeArgs: string[] = []): Promise<{ peer: Peer; ctl: FakeController }> {
  const socket = path.join(root, `${name}.sock`);
  const ctl = new FakeController(socket, benchTable(1, mode, { host: '127.0.0.1', port: v1 }, { host: '127.0.0.1', port: v2 }));
  await ctl.start();
  const peer = startSidecar(root, name, { port: await freePort(), controlSocket: socket, workers, nodeArgs });
  await ctl.waitForAck(1);
  return { peer, ctl };
}

async function profileSidecar(root: string, v1: number, o: Options): Promise<string> {
  const profDir = path.join(root, 'cpuprof');
  const { peer, ctl } = await startMolt(root, 'molt-profile', 'INSTANT', v1, v1, 1, ['--cpu-prof', '--cpu-prof-dir', profDir]);
  try {
    await peer.waitReady();
    await runWrk({ url: peer.url, connections: o.connections, threads: 1, durationSeconds: 1 });
    const res = await runWrk({ url: peer.url, connections: o.connections, threads: 1, durationSeconds: 5 });
    await peer.stop(); // SIGTERM: the sidecar exits 0 and node writes the profile
    const files = fs.existsSync(profDir) ? fs.readdirSync(profDir).filter((f) => f.endsWith('.cpuprofile')) : [];
    if (files.length === 0) return `(no .cpuprofile written in ${profDir})`;
    const file = path.join(profDir, files[0]);
    fs.mkdirSync(RESULTS, { recursive: true });
    const kept = path.join(RESULTS, 'sidecar.cpuprofile');
    fs.copyFileSync(file, kept);
    return [
      `Sidecar (1 process, INSTANT) under \`node --cpu-prof\`, wrk -t1 -c${o.connections} 5 s: ${fmtRps(res.requestsPerSec)} req/s (profiling overhead included). Profile kept in \`bench/results/sidecar.cpuprofile\` (open in Chrome DevTools).`,
      '',
      formatSummary(summariseCpuProfile(file, 15)),
      '',
      'Native `writeBuffer` self time includes the kernel inside write(2): on loopback that is the TCP receive path of the peer too, plus any preemption while in it. Compare the CPU/req column (user vs sys) for the JavaScript/runtime share.',
    ].join('\n');
  } finally {
    await peer.stop();
    await ctl.close();
  }
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'molt-bench-'));
  fs.chmodSync(root, 0o755); // nginx workers run as another user when we are root
  const controllers: FakeController[] = [];
  let ok = false;
  const onSignal = () => {
    process.stderr.write('\ninterrupted: stopping peers\n');
    void stopAll().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const started = new Date();
  const load0 = loadavg();
  const command = `node dist/bench/run.js${o.argv.length ? ' ' + o.argv.join(' ') : ''}`;
  const md: string[] = [
    '# molt end-to-end benchmark',
    '',
    `${started.toISOString()} · \`${command}\``,
    '',
    `Machine: ${machineLine()} · load average before ${load0}`,
    '',
  ];
  try {
    const [b1, b2, bN] = [await freePort(), await freePort(), await freePort()];
    process.stderr.write(`molt bench: temp dir ${root}\n`);
    const backend = startNginxBackend(root, 'backend', [b1, b2], 1);
    const backendN = startNginxBackend(root, `backend-${o.workers}w`, [bN], o.workers);
    await Promise.all([backend.waitReady(), backendN.waitReady()]);

    if (!o.onlyProfile) {
      const wrkMain: Load = { connections: o.connections, threads: 1, duration: o.duration };
      const wrkC1: Load = { connections: 1, threads: 1, duration: o.duration };
      const wrkMulti: Load = { connections: o.connections * 2, threads: 2, duration: o.duration };

      const molt = await startMolt(root, 'molt', 'INSTANT', b1, b2, 1);
      const gradual = await startMolt(root, 'molt-gradual', 'GRADUAL', b1, b2, 1);
      const concurrent = await startMolt(root, 'molt-concurrent', 'CONCURRENT', b1, b2, 1);
      const moltN = await startMolt(root, `molt-${o.workers}w`, 'INSTANT', bN, bN, o.workers);
      controllers.push(molt.ctl, gradual.ctl, concurrent.ctl, moltN.ctl);
      const direct: Target = { label: 'direct (backend nginx)', peer: backend };
      const moltT: Target = { label: 'molt sidecar (1 process)', peer: molt.peer };
      const nginxT: Target = { label: 'nginx proxy (1 worker, keepalive)', peer: startNginxProxy(root, 'nginx', await freePort(), [b1], 1) };
      const haproxyT: Target = { label: 'HAProxy (nbthread 1)', peer: startHaproxy(root, 'haproxy', await freePort(), b1) };
      const caddyT: Target = { label: 'Caddy (GOMAXPROCS=1)', peer: startCaddy(root, 'caddy', await freePort(), b1) };
      const httpProxyT: Target = { label: 'npm http-proxy (keep-alive agent)', peer: startHttpProxy(root, 'http-proxy', await freePort(), b1) };
      const pipeT: Target = { label: 'Node raw pipe (no parsing)', peer: startRawPipe(root, 'raw-pipe', await freePort(), b1) };
      const directN: Target = { label: `direct (backend nginx, ${o.workers} workers)`, peer: backendN };
      const moltNT: Target = { label: `molt sidecar (${o.workers} workers)`, peer: moltN.peer };
      const nginxNT: Target = { label: `nginx proxy (${o.workers} workers)`, peer: startNginxProxy(root, `nginx-${o.workers}w`, await freePort(), [bN], o.workers) };
      const gradualT: Target = { label: 'molt GRADUAL (50 % to v2)', peer: gradual.peer };
      const concurrentT: Target = { label: 'molt CONCURRENT (v2 + shadow v1)', peer: concurrent.peer };
      const splitT: Target = { label: 'nginx 2 upstreams round-robin', peer: startNginxProxy(root, 'nginx-split', await freePort(), [b1, b2], 1, 'split') };
      const mirrorT: Target = { label: 'nginx mirror (v2 + mirror v1)', peer: startNginxProxy(root, 'nginx-mirror', await freePort(), [b1, b2], 1, 'mirror') };
      const all = [moltT, nginxT, haproxyT, caddyT, httpProxyT, pipeT, moltNT, nginxNT, gradualT, concurrentT, splitT, mirrorT];
      await Promise.all(all.map((t) => t.peer.waitReady()));

      const main = await measure('1 worker', o.onlyMain ? [direct, moltT, nginxT, pipeT] : [direct, moltT, nginxT, haproxyT, caddyT, httpProxyT, pipeT], wrkMain, o);
      const c1 = await measure('-c1', o.onlyMain ? [direct, moltT, nginxT] : [direct, moltT, nginxT, haproxyT], wrkC1, o);
      const multi = o.onlyMain ? [] : await measure(`${o.workers} workers`, [directN, moltNT, nginxNT], wrkMulti, o);
      const modes = o.onlyMain ? [] : await measure('modes', [moltT, gradualT, splitT, concurrentT, mirrorT], wrkMain, o);

      const rowOf = (rows: Row[], t: Target): Row => rows.find((r) => r.label === t.label)!;
      const m1 = rowOf(main, moltT);
      const n1 = rowOf(main, nginxT);
      const mc = rowOf(c1, moltT);
      const nc = rowOf(c1, nginxT);
      const dc = rowOf(c1, direct);
      const mN = o.onlyMain ? m1 : rowOf(multi, moltNT);
      const nN = o.onlyMain ? n1 : rowOf(multi, nginxNT);
      const pipe = rowOf(main, pipeT);
      md.push(
        `Each row: median of ${o.rounds} round(s) × ${o.duration} s of \`wrk --latency\`, targets interleaved (order rotated each round) after a ${o.warmup} s warm-up each. Backend: nginx, ${'`return 200`'} of a 33-byte body, access log off. All on 127.0.0.1; wrk, backend and proxy share the machine's CPUs.`,
        '',
        `**molt / nginx (1 worker): ${ratio(m1.rps, n1.rps)} throughput, p99 ${fmtLat(m1.p99Us)} vs ${fmtLat(n1.p99Us)}; one connection: added p50 ${fmtSigned(mc.p50Us - dc.p50Us)} vs nginx ${fmtSigned(nc.p50Us - dc.p50Us)}${o.onlyMain ? '' : `; ${o.workers} workers: ${ratio(mN.rps, nN.rps)}`}. Node raw pipe / nginx: ${ratio(pipe.rps, n1.rps)}; molt / Node raw pipe: ${ratio(m1.rps, pipe.rps)}.**`,
        '',
        `## 1 worker / 1 thread each (wrk -t1 -c${o.connections})`,
        '',
        throughputTable(main, nginxT.label, 'nginx'),
        '',
        '## One connection: added latency (wrk -t1 -c1)',
        '',
        latencyTable(c1, direct.label),
        '',
        ...(o.onlyMain ? [] : [
          `## ${o.workers} workers (wrk -t2 -c${o.connections * 2}; backend nginx with ${o.workers} workers)`,
          '',
          throughputTable(multi, nginxNT.label, 'nginx'),
          '',
          `## Routing modes with two backend versions (1 process/worker each; wrk -t1 -c${o.connections}, no cookies kept)`,
          '',
          throughputTable(modes, moltT.label, 'molt INSTANT'),
          '',
        ]),
      );
      const counters = [molt, gradual, concurrent, moltN].map((m) => m.ctl.counters.failures).reduce((a, b) => a + b, 0);
      if (counters > 0) md.push(`Note: the sidecars reported ${counters} failure message(s) during the run (a backend error or timeout tripped a failure policy).`, '');
    }

    if (o.profile) {
      process.stderr.write('  [profile] sidecar under --cpu-prof, 5 s\n');
      md.push('## Sidecar CPU profile (top self time)', '', await profileSidecar(root, b1, o), '');
    }
    md.push(`Load average after: ${loadavg()} (finished ${new Date().toISOString()}, ${Math.round((Date.now() - started.getTime()) / 1000)} s).`, '');
    ok = true;
  } finally {
    await stopAll();
    for (const c of controllers) await c.close();
    if (ok) fs.rmSync(root, { recursive: true, force: true });
    else process.stderr.write(`molt bench: failed; configs and logs kept in ${root}\n`);
  }

  const text = md.join('\n');
  console.log(text);
  if (o.write) {
    fs.mkdirSync(RESULTS, { recursive: true });
    fs.writeFileSync(path.join(RESULTS, 'latest.md'), text);
    process.stderr.write(`molt bench: written to ${path.relative(process.cwd(), path.join(RESULTS, 'latest.md')) || 'bench/results/latest.md'}\n`);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`molt bench: ${(err as Error)?.message ?? String(err)}\n`);
  process.exitCode = 1;
});
