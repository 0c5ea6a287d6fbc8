// A/B comparison of two sidecar builds or settings on one backend, for work on the hot path:
//   node dist/bench/ab.js [--rounds N] [--duration S] [--connections C] [--upload BYTES] [--main-a PATH] [--main-b PATH] ENV_A -- ENV_B
// ENV_x is a space-separated list of NAME=VALUE pairs for that sidecar's environment (or "-" for
// none), e.g. `MOLT_SOCKET_WRITER=stream -- -`. --main-a/--main-b run another build's
// dist/sidecar/main.js for that side (default: this build's), e.g. a checkout of the base commit
// built into /tmp/ab-base: `--main-a /tmp/ab-base/dist/sidecar/main.js - -- -`. --node-a/--node-b
// "FLAGS" give that side's node extra flags (GC settings), e.g. `--node-b "--single-threaded-gc" - -- -`. --cpu-prof DIR
// writes each sidecar's V8 CPU profile to DIR/A and DIR/B (summarise: dist/bench/profile.js). --upload BYTES sends
// every request as `POST /upload` with a body of that size (the backend discards it) instead of `GET /`.
// --burst: each round first leaves both sidecars idle for 5 s, then runs each for --duration s (a
// burst after a quiet spell: new client connections, heap shrunk by V8's memory reducer). Interleaves A and B for N rounds, prints each run
// and the medians of req/s, sidecar CPU µs per request and wrk's p50/p99/p99.9. The machine is shared and noisy: CPU per
// request, summed over user and sys, moves much less from run to run than req/s does.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { benchTable, FakeController } from './fake-controller.js';
import { cpuTimes, freePort, Peer, startNginxBackend, stopAll } from './peers.js';
import { runWrk } from './wrk.js';

const SIDECAR_MAIN = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', 'sidecar', 'main.js');

function parse(argv: string[]): { rounds: number; duration: number; connections: number; upload: number; burst: boolean; mains: string[]; nodeArgs: string[][]; profDir: string | null; envs: Array<Record<string, string>> } {
  let rounds = 6;
  let upload = 0;
  let burst = false;
  let duration = 3;
  let connections = 64;
  const mains = [SIDECAR_MAIN, SIDECAR_MAIN];
  const nodeArgs: string[][] = [[], []];
  let profDir: string | null = null;
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--main-a') mains[0] = path.resolve(argv[++i]!);
    else if (argv[i] === '--main-b') mains[1] = path.resolve(argv[++i]!);
    else if (argv[i] === '--node-a') nodeArgs[0] = argv[++i]!.split(' ').filter(Boolean);
    else if (argv[i] === '--node-b') nodeArgs[1] = argv[++i]!.split(' ').filter(Boolean);
    else if (argv[i] === '--cpu-prof') profDir = path.resolve(argv[++i]!);
    else if (argv[i] === '--rounds') rounds = Number(argv[++i]);
    else if (argv[i] === '--duration') duration = Number(argv[++i]);
    else if (argv[i] === '--connections') connections = Number(argv[++i]);
    else if (argv[i] === '--upload') upload = Number(argv[++i]);
    else if (argv[i] === '--burst') burst = true;
    else rest.push(argv[i]!);
  }
  const sep = rest.indexOf('--');
  if (sep < 0) throw new Error('usage: node dist/bench/ab.js [--rounds N] [--duration S] [--connections C] [--main-a PATH] [--main-b PATH] ENV_A... -- ENV_B...');
  for (const m of mains) if (!fs.existsSync(m)) throw new Error(`no sidecar build at ${m}`);
  const env = (xs: string[]) => Object.fromEntries(xs.filter((x) => x !== '-').map((x) => { const i = x.indexOf('='); return [x.slice(0, i), x.slice(i + 1)]; }));
  return { rounds, duration, connections, upload, burst, mains, nodeArgs, profDir, envs: [env(rest.slice(0, sep)), env(rest.slice(sep + 1))] };
}

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2; };

async function main(): Promise<void> {
  const o = parse(process.argv.slice(2));
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'molt-ab-'));
  fs.chmodSync(root, 0o755);
  const ctls: FakeController[] = [];
  try {
    const b = await freePort();
    const backend = startNginxBackend(root, 'backend', [b], 1);
    await backend.waitReady();
    const peers: Peer[] = [];
    for (const [i, env] of o.envs.entries()) {
      const sock = path.join(root, `ctl${i}.sock`);
      const ctl = new FakeController(sock, benchTable(1, 'INSTANT', { host: '127.0.0.1', port: b }, { host: '127.0.0.1', port: b }));
      await ctl.start();
      ctls.push(ctl);
      const port = await freePort();
      fs.mkdirSync(path.join(root, `s${i}`));
      const p = new Peer(`sidecar-${'AB'[i]}`, port, path.join(root, `s${i}`, 'log'), process.execPath,
        [...o.nodeArgs[i]!, ...(o.profDir !== null ? ['--cpu-prof', `--cpu-prof-dir=${path.join(o.profDir, 'AB'[i]!)}`] : []), o.mains[i]!, '--listen', `127.0.0.1:${port}`, '--control', sock, '--log-level', 'warn'], env);
      await p.waitReady();
      await ctl.waitForAck(1);
      peers.push(p);
    }
    const res: Array<{ rps: number[]; cpu: number[]; p50: number[]; p99: number[]; p999: number[] }> = peers.map(() => ({ rps: [], cpu: [], p50: [], p99: [], p999: [] }));
    const load = o.upload > 0 ? { method: 'POST', bodyBytes: o.upload } : {};
    const url = (p: Peer): string => o.upload > 0 ? p.url.replace(/\/?$/, '/upload') : p.url;
    for (const p of peers) await runWrk({ url: url(p), connections: o.connections, threads: 1, durationSeconds: 2, ...load });
    for (let r = 0; r < o.rounds; r++) {
      if (o.burst) await new Promise((res) => setTimeout(res, 5000));
      for (let k = 0; k < peers.length; k++) {
        const i = (k + r) % peers.length;
        const p = peers[i]!;
        const before = cpuTimes(p.child.pid);
        const w = await runWrk({ url: url(p), connections: o.connections, threads: 1, durationSeconds: o.duration, ...load });
        const after = cpuTimes(p.child.pid);
        const cpu = (after.user - before.user + after.sys - before.sys) * 1e6 / Math.max(1, w.requests);
        res[i]!.rps.push(w.requestsPerSec);
        res[i]!.cpu.push(cpu);
        res[i]!.p50.push(w.p50Us);
        res[i]!.p99.push(w.p99Us);
        res[i]!.p999.push(w.p999Us);
        console.log(`round ${r + 1} ${'AB'[i]}: ${Math.round(w.requestsPerSec)} req/s, ${cpu.toFixed(1)} µs CPU/req, p50 ${Math.round(w.p50Us)} µs, p99 ${Math.round(w.p99Us)} µs, p99.9 ${Math.round(w.p999Us)} µs${w.errors ? `, ${w.errors} errors` : ''}`);
      }
    }
    for (const [i, x] of res.entries()) console.log(`${'AB'[i]} ${o.mains[i] === SIDECAR_MAIN ? '' : o.mains[i] + ' '}${JSON.stringify(o.envs[i])}${o.nodeArgs[i]!.length ? ' node ' + o.nodeArgs[i]!.join(' ') : ''}: median ${Math.round(median(x.rps))} req/s, ${median(x.cpu).toFixed(1)} µs CPU/req, p50 ${Math.round(median(x.p50))} µs, p99 ${Math.round(median(x.p99))} µs, p99.9 ${Math.round(median(x.p999))} µs`);
    console.log(`load average at the end: ${os.loadavg().map((v) => v.toFixed(2)).join(' ')}`);
  } finally {
    await stopAll();
    for (const c of ctls) await c.close();
    fs.rmSync(root, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => { console.error(e); process.exitCode = 1; });
