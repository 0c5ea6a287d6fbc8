// End-to-end benchmark: `npm run bench` (= `npm run build && node dist/bench/run.js [flags]`).
//
// A backend nginx (1 worker, small static body) sits behind each target; wrk (--latency) drives
// one target at a time, interleaved over several rounds, and each row reports the median of its
// rounds. Sections (--only): main (direct, the molt sidecar driven by bench/fake-controller.ts,
// nginx, HAProxy, Caddy if installed, npm http-proxy, the Node raw pipe), c1 (one connection),
// bodies (64 KiB / 1 MiB responses, 1 MiB uploads), c5000 (5,000 connections, RSS), modes
// (GRADUAL/CONCURRENT vs nginx), features (recording, analysis samples, preflight shadowing),
// workers (1 and N workers vs nginx, CPU accounted per process). Prints Markdown and writes it
// to bench/results/latest.md, summary table first. Only prints: no thresholds.
// Flags: see USAGE; bench/README.md says what each row means.

import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchTable, FakeController, type BenchMode } from './fake-controller.js';
import {
  cpuTimes,
  freePort,
  hasCommand,
  listenOverflows,
  rssKiB,
  PROXY_BACKLOG,
  somaxconn,
  SIDECAR_MAIN,
  startCaddy,
  startHaproxy,
  startHttpProxy,
  startNginxBackend,
  startNginxProxy,
  startRawPipe,
  startShadowController,
  startSidecar,
  stopAll,
  type Peer,
} from './peers.js';
import { formatSummary, summariseCpuProfile } from './profile.js';
import { runWrk, type WrkResult } from './wrk.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const RESULTS = path.join(REPO, 'bench', 'results');

const SECTIONS = ['main', 'c1', 'bodies', 'c5000', 'modes', 'features', 'workers', 'dashboard'] as const;
type Section = typeof SECTIONS[number];

const USAGE = `usage: node dist/bench/run.js [--quick] [--rounds N] [--duration S] [--connections C] [--workers N] [--only LIST] [--profile] [--only-profile] [--no-write]
  --quick          1 round x 2 s per target (about 3 minutes in all)
  --rounds N       interleaved rounds per target (default 3)
  --duration S     seconds per wrk run, 1..5 (default 5; the -c1 runs use the same)
  --connections C  wrk connections for the throughput runs (default 64)
  --workers N      worker processes for the multi-core section (default 2; compared with 1)
  --only LIST      comma-separated sections: ${SECTIONS.join(',')}
  --profile        afterwards, profile the sidecar (node --cpu-prof) during one 5 s wrk run
  --only-profile   only the profile run
  --only-main      same as --only main,c1
  --no-write       do not write bench/results/latest.md`;

interface Options {
  rounds: number;
  duration: number;
  connections: number;
  workers: number;
  warmup: number;
  profile: boolean;
  onlyProfile: boolean;
  sections: Set<Section>;
  write: boolean;
  argv: string[];
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    rounds: 3,
    duration: 5,
    connections: 64,
    workers: 2,
    warmup: 1,
    profile: false,
    onlyProfile: false,
    sections: new Set(SECTIONS),
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
      case '--workers': o.workers = int(argv[++i], a, 2, 64); break;
      case '--profile': o.profile = true; break;
      case '--only-profile': o.profile = true; o.onlyProfile = true; o.sections = new Set(); break;
      case '--only-main': o.sections = new Set(['main', 'c1']); break;
      case '--only': {
        const list = (argv[++i] ?? '').split(',').filter(Boolean);
        const bad = list.filter((x) => !(SECTIONS as readonly string[]).includes(x));
        if (list.length === 0 || bad.length > 0) throw new Error(`--only takes sections from ${SECTIONS.join(',')}, got "${argv[i]}"\n${USAGE}`);
        o.sections = new Set(list as Section[]);
        break;
      }
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
  p999Us: number;
  /** Median bytes per second: response bytes read, or request bodies sent for uploads. */
  bytesPerSec: number;
  errors: number;
  runs: number;
  /** Median CPU (user, sys) microseconds per request of the target's processes (proxy only, not the backend). */
  cpuUserUs: number;
  cpuSysUs: number;
  /** Median CPU µs per request of wrk and of the backend nginx (when the section names one). */
  wrkCpuUs: number;
  backendCpuUs: number;
  /** Median of the highest resident memory seen during each run, and before the first run (KiB; 0 = not sampled). */
  rssPeakKiB: number;
  rssIdleKiB: number;
  /** Median count of connections the kernel dropped from a full listen queue during a run (c5000 only). */
  overflows: number;
  /** Per round (in round order): p50, p99 and p99.9 of that round's run, for differences paired within a round. */
  p50s: number[];
  p99s: number[];
  p999s: number[];
}

interface Load {
  connections: number;
  threads: number;
  duration: number;
  /** Request path (default "/"). */
  path?: string;
  /** POST this many body bytes per request (upload run). */
  uploadBytes?: number;
  /** Sample the target's resident memory during the runs. */
  sampleRss?: boolean;
  /** The backend whose CPU time is charged per request in the backend column. */
  backend?: Peer;
  /** Warm-up seconds (default: the run's warm-up). */
  warmup?: number;
  /** Seconds of load right before every measured run of a target (default 1; 0 = none). */
  rewarm?: number;
  /** wrk's per-request timeout (default 2 s). */
  timeoutSeconds?: number;
}

function median(xs: number[]): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

interface Run extends WrkResult { userUs: number; sysUs: number; backendUs: number; wrkUs: number; bps: number; rssPeak: number; overflows: number }

/**
 * Warm every target up, then `rounds` rounds over all targets, rotating the order each round. Each
 * measured run comes right after a short load on the same target (`rewarm`), so every proxy is
 * measured in steady state (warm upstream keep-alive connections, warm JIT) whatever ran before. A
 * burst after idle has its own row.
 */
async function measure(section: string, targets: Target[], load: Load, o: Options): Promise<Row[]> {
  const results = new Map<string, Run[]>(targets.map((t) => [t.label, []]));
  const idle = new Map<string, number>();
  const wrk = (t: Target, duration: number) => runWrk({
    url: t.peer.url.replace(/\/$/, load.path ?? '/'),
    connections: load.connections,
    threads: load.threads,
    durationSeconds: duration,
    timeoutSeconds: load.timeoutSeconds ?? 2,
    ...(load.uploadBytes ? { method: 'POST', bodyBytes: load.uploadBytes } : {}),
  });
  for (const t of targets) {
    if (load.sampleRss) idle.set(t.label, rssKiB(t.peer.child.pid));
    await wrk(t, load.warmup ?? o.warmup); // JIT, pools, keep-alive connections
  }
  for (let r = 0; r < o.rounds; r++) {
    for (let i = 0; i < targets.length; i++) {
      const t = targets[(i + r) % targets.length];
      const pid = t.peer.child.pid;
      const rewarm = load.rewarm ?? 1;
      if (rewarm > 0) await wrk(t, rewarm);
      let rssPeak = 0;
      const sampler = load.sampleRss ? setInterval(() => { rssPeak = Math.max(rssPeak, rssKiB(pid)); }, 250) : null;
      const ovBefore = load.sampleRss ? listenOverflows() : 0;
      const before = cpuTimes(pid);
      const bBefore = load.backend && load.backend !== t.peer ? cpuTimes(load.backend.child.pid) : null;
      const res = await wrk(t, load.duration);
      const after = cpuTimes(pid);
      const bAfter = bBefore !== null ? cpuTimes(load.backend!.child.pid) : null;
      if (sampler !== null) { clearInterval(sampler); rssPeak = Math.max(rssPeak, rssKiB(pid)); }
      const overflows = load.sampleRss ? listenOverflows() - ovBefore : 0;
      const per = 1e6 / Math.max(1, res.requests);
      const cpuUs = (after.user - before.user + after.sys - before.sys) * per;
      const backendUs = bBefore !== null ? (bAfter!.user - bBefore.user + bAfter!.sys - bBefore.sys) * per : 0;
      const secs = res.durationUs > 0 ? res.durationUs / 1e6 : load.duration;
      const bps = load.uploadBytes ? res.requests * load.uploadBytes / secs : res.bytesRead / secs;
      results.get(t.label)!.push({ ...res, userUs: (after.user - before.user) * per, sysUs: (after.sys - before.sys) * per, backendUs, wrkUs: res.wrkCpuSec * per, bps, rssPeak, overflows });
      process.stderr.write(`  [${section} ${r + 1}/${o.rounds}] ${t.label.padEnd(38)} ${Math.round(res.requestsPerSec).toString().padStart(7)} req/s  p50 ${fmtLat(res.p50Us).padStart(9)}  p99 ${fmtLat(res.p99Us).padStart(9)}  p99.9 ${fmtLat(res.p999Us).padStart(9)}  CPU/req ${Math.round(cpuUs).toString().padStart(4)} µs${load.path && load.path !== '/' ? `  ${fmtBytes(bps)}/s` : ''}${rssPeak ? `  RSS ${fmtKiB(rssPeak)}` : ''}${res.errors ? `  errors ${res.errors}` : ''}\n`);
    }
  }
  return targets.map((t) => {
    const rs = results.get(t.label)!;
    return {
      label: t.label,
      rps: median(rs.map((x) => x.requestsPerSec)),
      p50Us: median(rs.map((x) => x.p50Us)),
      p99Us: median(rs.map((x) => x.p99Us)),
      p999Us: median(rs.map((x) => x.p999Us)),
      p50s: rs.map((x) => x.p50Us),
      p99s: rs.map((x) => x.p99Us),
      p999s: rs.map((x) => x.p999Us),
      bytesPerSec: median(rs.map((x) => x.bps)),
      errors: rs.reduce((n, x) => n + x.errors, 0),
      runs: rs.length,
      cpuUserUs: median(rs.map((x) => x.userUs)),
      cpuSysUs: median(rs.map((x) => x.sysUs)),
      wrkCpuUs: median(rs.map((x) => x.wrkUs)),
      backendCpuUs: median(rs.map((x) => x.backendUs)),
      rssPeakKiB: median(rs.map((x) => x.rssPeak)),
      rssIdleKiB: idle.get(t.label) ?? 0,
      overflows: median(rs.map((x) => x.overflows)),
    };
  });
}

// ---- formatting ----

function fmtLat(us: number): string {
  if (us < 1000) return `${Math.round(us)} µs`;
  if (us < 1_000_000) return `${(us / 1000).toFixed(us < 10_000 ? 2 : 1)} ms`;
  return `${(us / 1e6).toFixed(2)} s`;
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

function fmtBytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(0)} MiB`;
  return `${(n / 1024).toFixed(0)} KiB`;
}

function fmtKiB(kib: number): string {
  return kib >= 1024 ? `${(kib / 1024).toFixed(0)} MiB` : `${kib} KiB`;
}

function ratio(a: number, b: number): string {
  return b > 0 ? `${(a / b).toFixed(2)}×` : 'n/a';
}

function throughputTable(rows: Row[], refLabel: string, refName: string): string {
  const ref = rows.find((r) => r.label === refLabel);
  const out = [
    `| target | req/s | p50 | p99 | p99.9 | req/s vs ${refName} | p99 vs ${refName} | CPU/req usr+sys | errors |`,
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of rows) {
    out.push(`| ${r.label} | ${fmtRps(r.rps)} | ${fmtLat(r.p50Us)} | ${fmtLat(r.p99Us)} | ${fmtLat(r.p999Us)} | ${ref ? ratio(r.rps, ref.rps) : ''} | ${ref ? ratio(r.p99Us, ref.p99Us) : ''} | ${fmtCpu(r)} | ${r.errors} |`);
  }
  return out.join('\n');
}

function bytesTable(rows: Row[], refLabel: string): string {
  const ref = rows.find((r) => r.label === refLabel);
  const out = [
    '| target | bytes/s | vs nginx | req/s | p50 | p99 | CPU/req usr+sys | errors |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of rows) {
    out.push(`| ${r.label} | ${fmtBytes(r.bytesPerSec)}/s | ${ref ? ratio(r.bytesPerSec, ref.bytesPerSec) : ''} | ${fmtRps(r.rps)} | ${fmtLat(r.p50Us)} | ${fmtLat(r.p99Us)} | ${fmtCpu(r)} | ${r.errors} |`);
  }
  return out.join('\n');
}

function connectionsTable(rows: Row[], refLabel: string): string {
  const ref = rows.find((r) => r.label === refLabel);
  const out = [
    '| target | req/s | p50 | p99 | p99.9 | p99 vs nginx | RSS before | RSS peak (median) | RSS vs nginx | CPU/req | listen-queue drops | errors |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of rows) {
    out.push(`| ${r.label} | ${fmtRps(r.rps)} | ${fmtLat(r.p50Us)} | ${fmtLat(r.p99Us)} | ${fmtLat(r.p999Us)} | ${ref ? ratio(r.p99Us, ref.p99Us) : ''} | ${fmtKiB(r.rssIdleKiB)} | ${fmtKiB(r.rssPeakKiB)} | ${ref ? ratio(r.rssPeakKiB, ref.rssPeakKiB) : ''} | ${fmtCpu(r)} | ${fmtRps(r.overflows)} | ${r.errors} |`);
  }
  return out.join('\n');
}

function featureTable(rows: Row[], refLabel: string): string {
  const ref = rows.find((r) => r.label === refLabel)!;
  const out = [
    '| target | req/s | p50 | p99 | p99.9 | CPU/req usr+sys | CPU/req vs default | req/s vs default | p99 vs default | errors |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of rows) {
    const dCpu = r.cpuUserUs + r.cpuSysUs - ref.cpuUserUs - ref.cpuSysUs;
    out.push(`| ${r.label} | ${fmtRps(r.rps)} | ${fmtLat(r.p50Us)} | ${fmtLat(r.p99Us)} | ${fmtLat(r.p999Us)} | ${fmtCpu(r)} | ${r === ref ? '—' : `${dCpu < 0 ? '−' : '+'}${Math.abs(dCpu).toFixed(1)} µs`} | ${ratio(r.rps, ref.rps)} | ${ratio(r.p99Us, ref.p99Us)} | ${r.errors} |`);
  }
  return out.join('\n');
}

function workersTable(rows: Row[]): string {
  const out = [
    '| target | req/s | p50 | p99 | CPU/req: proxy | backend | wrk | all three | cores busy | req/s if the proxy had its cores alone | errors |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of rows) {
    const proxy = r.cpuUserUs + r.cpuSysUs;
    const all = proxy + r.backendCpuUs + r.wrkCpuUs;
    const n = r.label.startsWith('direct') ? undefined : /(\d+) (?:workers?|process(?:es)?)/.exec(r.label)?.[1];
    const alone = n !== undefined && proxy > 0 ? fmtRps(Number(n) * 1e6 / proxy) : '—';
    out.push(`| ${r.label} | ${fmtRps(r.rps)} | ${fmtLat(r.p50Us)} | ${fmtLat(r.p99Us)} | ${Math.round(proxy)} µs | ${Math.round(r.backendCpuUs)} µs | ${Math.round(r.wrkCpuUs)} µs | ${Math.round(all)} µs | ${(all * r.rps / 1e6).toFixed(2)} | ${alone} | ${r.errors} |`);
  }
  return out.join('\n');
}

/** Seconds of no traffic before a burst-after-idle run: longer than molt's 4 s upstream idle timeout. */
const IDLE_BEFORE_BURST_S = 5;

/**
 * What the first second of traffic after a quiet spell looks like: per round, every target idle for
 * IDLE_BEFORE_BURST_S, then a 1 s run each (new client connections; molt's upstream pool is empty by
 * then, nginx's is not). Medians of p99, p99.9 and the slowest request.
 */
async function burstAfterIdle(targets: Target[], connections: number, o: Options): Promise<Array<{ label: string; p99Us: number; p999Us: number; maxUs: number }>> {
  const runs = new Map<string, WrkResult[]>(targets.map((t) => [t.label, []]));
  for (let r = 0; r < o.rounds; r++) {
    await new Promise((res) => setTimeout(res, IDLE_BEFORE_BURST_S * 1000));
    for (let i = 0; i < targets.length; i++) {
      const t = targets[(i + r) % targets.length]!;
      const w = await runWrk({ url: t.peer.url, connections, threads: 1, durationSeconds: 1, timeoutSeconds: 2 });
      runs.get(t.label)!.push(w);
      process.stderr.write(`  [burst after idle ${r + 1}/${o.rounds}] ${t.label.padEnd(38)} p99 ${fmtLat(w.p99Us).padStart(9)}  p99.9 ${fmtLat(w.p999Us).padStart(9)}  max ${fmtLat(w.maxUs).padStart(9)}\n`);
    }
  }
  return targets.map((t) => {
    const rs = runs.get(t.label)!;
    return { label: t.label, p99Us: median(rs.map((x) => x.p99Us)), p999Us: median(rs.map((x) => x.p999Us)), maxUs: median(rs.map((x) => x.maxUs)) };
  });
}

/** Median over rounds of `xs[k] - base[k]`: a difference paired within each round (the machine's
 *  state moves between rounds more than between two runs of one round). */
function pairedMedian(xs: number[], base: number[]): number {
  return median(xs.map((x, k) => x - (base[k] ?? 0)));
}

function latencyTable(rows: Row[], directLabel: string): string {
  const d = rows.find((r) => r.label === directLabel)!;
  const out = [
    '| target | req/s | p50 | p99 | p99.9 | added p50 vs direct | added p99 vs direct | added p99.9 vs direct | errors |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of rows) {
    const same = r === d;
    out.push(`| ${r.label} | ${fmtRps(r.rps)} | ${fmtLat(r.p50Us)} | ${fmtLat(r.p99Us)} | ${fmtLat(r.p999Us)} | ${same ? '—' : fmtSigned(pairedMedian(r.p50s, d.p50s))} | ${same ? '—' : fmtSigned(pairedMedian(r.p99s, d.p99s))} | ${same ? '—' : fmtSigned(pairedMedian(r.p999s, d.p999s))} | ${r.errors} |`);
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
    `Caddy ${hasCommand('caddy') ? versionOf('caddy', ['version'], /^v?(\S+)/) : 'not installed (row skipped)'}`,
    `wrk ${versionOf('wrk', ['-v'], /wrk (\S+)/)}`,
  ].join(' · ');
}

const loadavg = () => os.loadavg().map((x) => x.toFixed(2)).join(' ');

/** Does this build's sidecar read MOLT_ANALYSIS_SAMPLES (the switch another change adds)? */
function analysisSwitchPresent(): boolean {
  const dir = path.dirname(SIDECAR_MAIN);
  try {
    return fs.readdirSync(dir).some((f) => f.endsWith('.js') && fs.readFileSync(path.join(dir, f), 'utf8').includes('MOLT_ANALYSIS_SAMPLES'));
  } catch {
    return false;
  }
}

// ---- the run ----

async function startMolt(root: string, name: string, mode: BenchMode, v1: number, v2: number, workers: number, nodeArgs: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<{ peer: Peer; ctl: FakeController }> {
  const socket = path.join(root, `${name}.sock`);
  const ctl = new FakeController(socket, benchTable(1, mode, { host: '127.0.0.1', port: v1 }, { host: '127.0.0.1', port: v2 }));
  await ctl.start();
  const peer = startSidecar(root, name, { port: await freePort(), controlSocket: socket, workers, nodeArgs, env });
  await ctl.waitForAck(1);
  return { peer, ctl };
}

/** A sidecar whose controller is bench/shadow-controller.ts (preflight shadow copies at 100 %). */
async function startShadowedMolt(root: string, serving: number, candidate: number): Promise<{ peer: Peer; controller: Peer; statusFile: string }> {
  const socket = path.join(root, 'molt-shadowed.sock');
  const statusFile = path.join(root, 'shadow-status.json');
  const controller = startShadowController(root, 'shadow-controller', socket, serving, candidate, statusFile);
  const deadline = Date.now() + 10_000;
  while (!fs.existsSync(socket)) {
    if (Date.now() > deadline || controller.child.exitCode !== null) throw new Error(`shadow controller did not listen on ${socket}; see ${controller.logFile}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const peer = startSidecar(root, 'molt-shadowed', { port: await freePort(), controlSocket: socket, workers: 1 });
  return { peer, controller, statusFile };
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
  const has = (s: Section) => o.sections.has(s);
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
    `Each row: median of ${o.rounds} round(s) × ${o.duration} s of \`wrk --latency\` (p99.9 from wrk's histogram via a Lua \`done()\`), targets of a section interleaved (order rotated each round) after a ${o.warmup} s warm-up each; every measured run follows 1 s of load on the same target, so each proxy is measured in steady state (upstream keep-alive connections open; the burst-after-idle row shows the other case). Backend: nginx, \`return 200\` of a 33-byte body (static files for the body sections), access log off. All on 127.0.0.1; wrk, backend and proxy share the machine's CPUs: **compare rows of one section, not numbers across sections or runs**. The load average above says how busy the machine was with other work.`,
    '',
  ];
  const summary: string[] = [];
  try {
    const [b1, b2, bN] = [await freePort(), await freePort(), await freePort()];
    process.stderr.write(`molt bench: temp dir ${root}\n`);
    const backend = startNginxBackend(root, 'backend', [b1, b2], 1);
    const backendN = startNginxBackend(root, `backend-${o.workers}w`, [bN], o.workers);
    await Promise.all([backend.waitReady(), backendN.waitReady()]);

    if (o.sections.size > 0) {
      const c = o.connections;
      const wrkMain: Load = { connections: c, threads: 1, duration: o.duration };
      const wrkC1: Load = { connections: 1, threads: 1, duration: o.duration };
      const wrkMulti: Load = { connections: c * 2, threads: 2, duration: o.duration, backend: backendN };

      const molt = await startMolt(root, 'molt', 'INSTANT', b1, b2, 1);
      controllers.push(molt.ctl);
      const direct: Target = { label: 'direct (backend nginx)', peer: backend };
      const moltT: Target = { label: 'molt sidecar (1 process)', peer: molt.peer };
      const nginxT: Target = { label: 'nginx proxy (1 worker, keepalive)', peer: startNginxProxy(root, 'nginx', await freePort(), [b1], 1) };
      const pipeT: Target = { label: 'Node raw pipe (no parsing)', peer: startRawPipe(root, 'raw-pipe', await freePort(), b1) };
      const all: Target[] = [moltT, nginxT, pipeT];
      const lazy = async <T>(cond: boolean, f: () => Promise<T>): Promise<T | null> => (cond ? f() : null);

      const haproxyT = await lazy(has('main') || has('c1'), async () => ({ label: 'HAProxy (nbthread 1)', peer: startHaproxy(root, 'haproxy', await freePort(), b1) }));
      const caddyT = await lazy(has('main') && hasCommand('caddy'), async () => ({ label: 'Caddy (GOMAXPROCS=1)', peer: startCaddy(root, 'caddy', await freePort(), b1) }));
      const httpProxyT = await lazy(has('main'), async () => ({ label: 'npm http-proxy (keep-alive agent)', peer: startHttpProxy(root, 'http-proxy', await freePort(), b1) }));
      const modes = await lazy(has('modes'), async () => {
        const gradual = await startMolt(root, 'molt-gradual', 'GRADUAL', b1, b2, 1);
        const concurrent = await startMolt(root, 'molt-concurrent', 'CONCURRENT', b1, b2, 1);
        controllers.push(gradual.ctl, concurrent.ctl);
        return {
          ctls: [gradual.ctl, concurrent.ctl],
          gradualT: { label: 'molt GRADUAL (50 % to v2)', peer: gradual.peer },
          concurrentT: { label: 'molt CONCURRENT (v2 + shadow v1)', peer: concurrent.peer },
          splitT: { label: 'nginx 2 upstreams round-robin', peer: startNginxProxy(root, 'nginx-split', await freePort(), [b1, b2], 1, 'split') },
          mirrorT: { label: 'nginx mirror (v2 + mirror v1)', peer: startNginxProxy(root, 'nginx-mirror', await freePort(), [b1, b2], 1, 'mirror') },
        };
      });
      const analysisSwitch = analysisSwitchPresent();
      const features = await lazy(has('features'), async () => {
        const recOff = await startMolt(root, 'molt-recording-off', 'INSTANT', b1, b2, 1, [], { MOLT_RECORDING: 'off' });
        const samplesOff = await startMolt(root, 'molt-samples-off', 'INSTANT', b1, b2, 1, [], { MOLT_ANALYSIS_SAMPLES: 'off' });
        const shadowed = await startShadowedMolt(root, b1, b2);
        controllers.push(recOff.ctl, samplesOff.ctl);
        return {
          recOffT: { label: 'molt, recording off (MOLT_RECORDING=off)', peer: recOff.peer },
          samplesOffT: { label: `molt, analysis samples off (MOLT_ANALYSIS_SAMPLES=off${analysisSwitch ? '' : '; switch not in this build'})`, peer: samplesOff.peer },
          shadowT: { label: 'molt + preflight shadow 100 % (controller sends copies)', peer: shadowed.peer },
          shadowed,
        };
      });
      const multi = await lazy(has('workers'), async () => {
        const m1 = await startMolt(root, 'molt-1w', 'INSTANT', bN, bN, 1);
        const mN = await startMolt(root, `molt-${o.workers}w`, 'INSTANT', bN, bN, o.workers);
        controllers.push(m1.ctl, mN.ctl);
        return {
          directNT: { label: `direct (backend nginx, ${o.workers} workers)`, peer: backendN },
          molt1T: { label: 'molt sidecar (1 process)', peer: m1.peer },
          nginx1T: { label: 'nginx proxy (1 worker)', peer: startNginxProxy(root, 'nginx-1w', await freePort(), [bN], 1) },
          moltNT: { label: `molt sidecar (${o.workers} workers)`, peer: mN.peer },
          nginxNT: { label: `nginx proxy (${o.workers} workers)`, peer: startNginxProxy(root, `nginx-${o.workers}w`, await freePort(), [bN], o.workers) },
        };
      });
      for (const t of [haproxyT, caddyT, httpProxyT]) if (t) all.push(t);
      if (modes) all.push(modes.gradualT, modes.concurrentT, modes.splitT, modes.mirrorT);
      if (features) all.push(features.recOffT, features.samplesOffT, features.shadowT);
      if (multi) all.push(multi.molt1T, multi.nginx1T, multi.moltNT, multi.nginxNT);
      await Promise.all(all.map((t) => t.peer.waitReady()));

      const rowOf = (rows: Row[], t: Target): Row => rows.find((r) => r.label === t.label)!;
      const opt = <T>(x: T | null): T[] => (x ? [x] : []);

      if (has('main')) {
        const main = await measure('1 worker', [direct, moltT, nginxT, ...opt(haproxyT), ...opt(caddyT), ...opt(httpProxyT), pipeT], wrkMain, o);
        const m1 = rowOf(main, moltT);
        const n1 = rowOf(main, nginxT);
        const pipe = rowOf(main, pipeT);
        summary.push(`| small responses, wrk -c${c} | req/s | ${fmtRps(m1.rps)} | ${fmtRps(n1.rps)} | ${ratio(m1.rps, n1.rps)} (raw pipe ${ratio(pipe.rps, n1.rps)}) |`);
        summary.push(`| small responses, wrk -c${c} | p99 / p99.9 | ${fmtLat(m1.p99Us)} / ${fmtLat(m1.p999Us)} | ${fmtLat(n1.p99Us)} / ${fmtLat(n1.p999Us)} | ${ratio(m1.p99Us, n1.p99Us)} / ${ratio(m1.p999Us, n1.p999Us)} (raw pipe ${ratio(pipe.p99Us, n1.p99Us)} / ${ratio(pipe.p999Us, n1.p999Us)}) |`);
        summary.push(`| small responses, wrk -c${c} | CPU per request | ${Math.round(m1.cpuUserUs + m1.cpuSysUs)} µs | ${Math.round(n1.cpuUserUs + n1.cpuSysUs)} µs | ${ratio(m1.cpuUserUs + m1.cpuSysUs, n1.cpuUserUs + n1.cpuSysUs)} |`);
        md.push(
          `**1 worker: molt / nginx ${ratio(m1.rps, n1.rps)} throughput, p99 ${fmtLat(m1.p99Us)} vs ${fmtLat(n1.p99Us)} (${ratio(m1.p99Us, n1.p99Us)}), p99.9 ${fmtLat(m1.p999Us)} vs ${fmtLat(n1.p999Us)}. Node raw pipe / nginx: ${ratio(pipe.rps, n1.rps)}; molt / Node raw pipe: ${ratio(m1.rps, pipe.rps)}.**`,
          '',
          `## 1 worker / 1 thread each (wrk -t1 -c${c})`,
          '',
          throughputTable(main, nginxT.label, 'nginx'),
          '',
        );
        const burst = await burstAfterIdle([moltT, nginxT], c, o);
        const [mb, nb] = [burst[0]!, burst[1]!];
        summary.push(`| first 1 s after ${IDLE_BEFORE_BURST_S} s idle, wrk -c${c} | p99.9 / slowest | ${fmtLat(mb.p999Us)} / ${fmtLat(mb.maxUs)} | ${fmtLat(nb.p999Us)} / ${fmtLat(nb.maxUs)} | ${ratio(mb.p999Us, nb.p999Us)} / ${ratio(mb.maxUs, nb.maxUs)} |`);
        md.push(
          `### Burst after ${IDLE_BEFORE_BURST_S} s idle (wrk -t1 -c${c}, 1 s)`,
          '',
          `The rows above are steady state: each run follows a 1 s load on the same target. Here every target sat idle for ${IDLE_BEFORE_BURST_S} s first, so the run starts with ${c} new client connections. Both keep their upstream connections across the pause (the backend nginx sends no Keep-Alive timeout: molt keeps idle upstream connections 60 s then, nginx 60 s). Medians of ${o.rounds} round(s).`,
          '',
          '| target | p99 | p99.9 | slowest request |',
          '|---|---:|---:|---:|',
          ...burst.map((b) => `| ${b.label} | ${fmtLat(b.p99Us)} | ${fmtLat(b.p999Us)} | ${fmtLat(b.maxUs)} |`),
          '',
        );
      }
      if (has('c1')) {
        const c1 = await measure('-c1', [direct, moltT, nginxT, ...opt(haproxyT)], wrkC1, o);
        const mc = rowOf(c1, moltT);
        const nc = rowOf(c1, nginxT);
        const dc = rowOf(c1, direct);
        const added = (r: Row, k: 'p50s' | 'p99s'): number => pairedMedian(r[k], dc[k]);
        summary.push(`| one connection | added p50 / p99 | ${fmtSigned(added(mc, 'p50s'))} / ${fmtSigned(added(mc, 'p99s'))} | ${fmtSigned(added(nc, 'p50s'))} / ${fmtSigned(added(nc, 'p99s'))} | added p99 ${ratio(added(mc, 'p99s'), added(nc, 'p99s'))} |`);
        md.push('## One connection: added latency (wrk -t1 -c1)', '', latencyTable(c1, direct.label), '');
      }
      if (has('bodies')) {
        md.push(
          '## Big bodies (wrk -t1 -c16)',
          '',
          'Response bodies: `GET /64k` and `GET /1m`, static files served by the backend nginx (`sendfile on`). Upload: `POST /upload` with a 1 MiB body, answered by `return 200` (the backend reads and discards the body). bytes/s counts response bytes read by wrk (heads included) for downloads, request body bytes for the upload. nginx proxy: default `proxy_buffering on` (responses over its 64 KiB of memory buffers spill to a temp file), `client_body_buffer_size 2m` (uploads buffered in memory, then sent), `client_max_body_size 8m`. molt streams both ways; a response of ≤ 64 KiB (`maxBufferedResponseBytes`) to a GET is collected before it is relayed (so a failover is still possible), bigger ones stream.',
          '',
        );
        const bodyTargets = [direct, moltT, nginxT, pipeT];
        const base: Load = { connections: 16, threads: 1, duration: o.duration };
        for (const [title, load] of [
          ['64 KiB responses', { ...base, path: '/64k' }],
          ['1 MiB responses', { ...base, path: '/1m' }],
          ['1 MiB uploads', { ...base, path: '/upload', uploadBytes: 1 << 20 }],
        ] as Array<[string, Load]>) {
          const rows = await measure(title, bodyTargets, load, o);
          const m = rowOf(rows, moltT);
          const n = rowOf(rows, nginxT);
          summary.push(`| ${title}, wrk -c16 | bytes/s | ${fmtBytes(m.bytesPerSec)}/s | ${fmtBytes(n.bytesPerSec)}/s | ${ratio(m.bytesPerSec, n.bytesPerSec)} |`);
          md.push(`### ${title}`, '', bytesTable(rows, nginxT.label), '');
        }
      }
      if (has('c5000')) {
        const rows = await measure('5000 conns', [direct, moltT, nginxT, pipeT], { connections: 5000, threads: 1, duration: Math.max(8, o.duration), warmup: 3, sampleRss: true, timeoutSeconds: 10 }, o);
        const m = rowOf(rows, moltT);
        const n = rowOf(rows, nginxT);
        summary.push(`| 5,000 keep-alive connections | p50 / p99 | ${fmtLat(m.p50Us)} / ${fmtLat(m.p99Us)} | ${fmtLat(n.p50Us)} / ${fmtLat(n.p99Us)} | p99 ${ratio(m.p99Us, n.p99Us)}, req/s ${ratio(m.rps, n.rps)} |`);
        summary.push(`| 5,000 keep-alive connections | peak RSS | ${fmtKiB(m.rssPeakKiB)} | ${fmtKiB(n.rssPeakKiB)} | ${ratio(m.rssPeakKiB, n.rssPeakKiB)} |`);
        md.push(
          `## 5,000 concurrent keep-alive connections (wrk -t1 -c5000, ${Math.max(8, o.duration)} s runs after a 3 s warm-up)`,
          '',
          `wrk opens its 5,000 connections at once at the start of every run. Every listener in this section has a listen backlog of ${PROXY_BACKLOG} (molt's default \`--backlog\`; \`listen … backlog=${PROXY_BACKLOG}\` for nginx; the raw pipe's \`server.listen({ backlog })\`; the backend nginx too; Linux caps it at net.core.somaxconn, ${somaxconn()} here), so the kernel should drop no connection attempt from a full listen queue (the "listen-queue drops" column: TcpExt ListenOverflows during the run, all sockets, expected 0) and no client waits out a SYN retry (1 s, 3 s…): p99 is request processing under 5,000 connections, not connection setup. With Node's and nginx's default backlog of 511, thousands of SYNs per run were dropped and the retries were most of the p99. wrk's request timeout is 10 s in this section.` +
          ' Every process starts with its soft `ulimit -n` raised to 20,000 (wrk too); nginx has `worker_connections 16384`, `worker_rlimit_nofile 20000`. RSS: resident memory of the target\'s process tree (nginx: master + worker; direct: the backend), sampled every 250 ms during each run; "before" is at rest before the warm-up. molt keeps at most 128 idle upstream connections per endpoint, nginx 256 (`keepalive 256`): beyond that both close upstream connections after use.',
          '',
          connectionsTable(rows, nginxT.label),
          '',
        );
      }
      if (modes) {
        const rows = await measure('modes', [moltT, modes.gradualT, modes.splitT, modes.concurrentT, modes.mirrorT], wrkMain, o);
        const g = rowOf(rows, modes.gradualT);
        const cc = rowOf(rows, modes.concurrentT);
        const sp = rowOf(rows, modes.splitT);
        const mi = rowOf(rows, modes.mirrorT);
        summary.push(`| GRADUAL 50 % vs nginx round-robin, wrk -c${c} | req/s | ${fmtRps(g.rps)} | ${fmtRps(sp.rps)} | ${ratio(g.rps, sp.rps)} |`);
        summary.push(`| CONCURRENT vs nginx mirror, wrk -c${c} | req/s | ${fmtRps(cc.rps)} | ${fmtRps(mi.rps)} | ${ratio(cc.rps, mi.rps)} |`);
        md.push(
          `## Routing modes with two backend versions (1 process/worker each; wrk -t1 -c${c}, no cookies kept)`,
          '',
          throughputTable(rows, moltT.label, 'molt INSTANT'),
          '',
        );
        const failures = modes.ctls.reduce((n, x) => n + x.counters.failures, 0);
        if (failures > 0) md.push(`Note: the mode sidecars reported ${failures} failure message(s) during the run (a backend error or timeout tripped a failure policy).`, '');
      }
      if (features) {
        const rows = await measure('features', [moltT, features.recOffT, features.samplesOffT, features.shadowT], wrkMain, o);
        const ref = rowOf(rows, moltT);
        const cost = (t: Target, sign: 1 | -1) => {
          const r = rowOf(rows, t);
          return (sign * (ref.cpuUserUs + ref.cpuSysUs - r.cpuUserUs - r.cpuSysUs)).toFixed(1);
        };
        const sh = rowOf(rows, features.shadowT);
        let st: { trafficRequests?: number; exchangesRead?: number; pairs?: number; status?: { dropped?: number } | null; verdict?: string } = {};
        try { st = JSON.parse(fs.readFileSync(features.shadowed.statusFile, 'utf8')) as typeof st; } catch { /* no status yet */ }
        summary.push(`| cost of recording (on − off), wrk -c${c} | CPU per request | ${cost(features.recOffT, 1)} µs | — | — |`);
        summary.push(`| cost of analysis samples (on − off)${analysisSwitch ? '' : ' — switch not in this build'} | CPU per request | ${cost(features.samplesOffT, 1)} µs | — | — |`);
        summary.push(`| preflight shadow 100 % vs none, wrk -c${c} | client p50 / p99 | ${fmtLat(sh.p50Us)} / ${fmtLat(sh.p99Us)} | ${fmtLat(ref.p50Us)} / ${fmtLat(ref.p99Us)} (none) | p99 ${ratio(sh.p99Us, ref.p99Us)}, req/s ${ratio(sh.rps, ref.rps)} |`);
        md.push(
          `## Cost of features on the hot path (1 process each; wrk -t1 -c${c})`,
          '',
          `"molt sidecar (1 process)" runs with every feature at its default (recording on${analysisSwitch ? ', analysis samples on' : ''}). Each other row is a separate sidecar process with one thing changed. ${analysisSwitch ? '' : '**This build has no `MOLT_ANALYSIS_SAMPLES` switch** (another change adds it): that row runs the same code as the default and only shows the noise between two identical processes. '}Shadowing: molt does not send shadow copies itself — the controller reads the recording every 500 ms over the control socket and sends the copies (at most 16 in flight, the rest dropped). The shadow row's sidecar is driven by bench/shadow-controller.ts, which serves the control socket and runs the controller's own \`PreflightRun\` (controller/preflight.ts) with \`shadow.percent: 100\`; its copies go to the same backend nginx (v2 as the version under test, v1 as the serving version). CPU/req counts the sidecar only; the copies' cost lands on the stand-in controller and the backend, which share the CPUs with everything else, so it shows in req/s and latency.`,
          '',
          featureTable(rows, moltT.label),
          '',
          `Shadow controller during the whole run: ${st.trafficRequests ?? '?'} traffic reads, ${st.exchangesRead ?? '?'} recorded exchanges read, ${st.pairs ?? '?'} copies compared, ${st.status?.dropped ?? '?'} dropped (in-flight bound), verdict ${st.verdict ?? '?'} (pass criteria set so it never ends).`,
          '',
        );
        const failures = controllers.reduce((n, x) => n + x.counters.failures, 0);
        if (failures > 0) md.push(`Note: sidecars reported ${failures} failure message(s) during the run.`, '');
      }
      if (multi) {
        const rows = await measure('workers', [multi.directNT, multi.molt1T, multi.nginx1T, multi.moltNT, multi.nginxNT], wrkMulti, o);
        const m1 = rowOf(rows, multi.molt1T);
        const n1 = rowOf(rows, multi.nginx1T);
        const mN = rowOf(rows, multi.moltNT);
        const nN = rowOf(rows, multi.nginxNT);
        summary.push(`| ${o.workers} workers vs 1, wrk -t2 -c${c * 2} | req/s | ${fmtRps(m1.rps)} → ${fmtRps(mN.rps)} (${ratio(mN.rps, m1.rps)}) | ${fmtRps(n1.rps)} → ${fmtRps(nN.rps)} (${ratio(nN.rps, n1.rps)}) | ${ratio(m1.rps, n1.rps)} → ${ratio(mN.rps, nN.rps)} |`);
        md.push(
          `## Multi-core: 1 and ${o.workers} workers (wrk -t2 -c${c * 2}; backend nginx with ${o.workers} workers)`,
          '',
          `wrk, the backend and the proxy share this machine's ${os.availableParallelism()} CPUs, so a proxy with ${o.workers} workers never gets ${o.workers} cores to itself. The CPU columns say where each request's CPU went (proxy, backend, wrk: from /proc and sh \`times\`); "cores busy" = all three × req/s (≈ the CPU count when the machine is saturated by this test; less when other tenants took CPU). "req/s if the proxy had its cores alone" = workers × 10⁶ / proxy CPU µs per request: an upper bound that assumes perfect scaling and no contention.`,
          '',
          workersTable(rows),
          '',
        );
      }
    }

    if (has('dashboard')) {
      // The dashboard's first paint in headless Chromium (bench/first-paint.ts, its own molt up).
      process.stderr.write('  [dashboard] first paint of /ui in headless Chromium, 5 loads\n');
      const fp = spawnSync(process.execPath, [path.join(path.dirname(fileURLToPath(import.meta.url)), 'first-paint.js'), '--loads', '5'], { encoding: 'utf8', timeout: 120_000 });
      const line = (fp.stdout ?? '').split('\n').find((l) => l.startsWith('first paint:'));
      md.push('## Dashboard first paint (`node dist/bench/first-paint.js`)', '', line ?? `not measured: ${(fp.stderr || fp.error?.message || 'no output').trim().split('\n').pop()}`, '');
      if (line) summary.push(`| dashboard /ui in headless Chromium | first paint, median of 5 | ${line.replace(/^first paint: /, '')} | n/a | n/a |`);
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

  if (summary.length > 0) {
    md.splice(8, 0,
      '## Summary (molt vs nginx, same run)',
      '',
      '| what | measure | molt | nginx | molt / nginx |',
      '|---|---|---:|---:|---:|',
      ...summary,
      '',
    );
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
