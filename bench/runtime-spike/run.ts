// The runtime question with numbers (issue 14 item 3), one interleaved run:
//   node dist/bench/runtime-spike/run.js [--rounds N] [--duration S] [--small-only]
// Targets, each in front of the same backend nginx (1 worker): nginx proxy (1 worker), molt's
// sidecar on Node, the same sidecar (dist/sidecar/main.js, unchanged) on Bun — its Node-internals
// fast paths fall back by themselves there —, the Bun spike (bench/runtime-spike/sidecar-bun.ts:
// molt's framing, head rewriting and routing on Bun.listen/Bun.connect), and the two raw pipes
// (bench/raw-pipe-server.ts on Node, bench/runtime-spike/raw-pipe-bun.ts on Bun). Loads: wrk
// -t1 -c64 (small responses), -c1, and 64 KiB responses at -c16. Medians of interleaved rounds.
// Bun: $MOLT_BUN, else node_modules/.bin/bun, else .bun-spike/node_modules/.bin/bun (a private
// `npm install --prefix .bun-spike bun`), else `bun` on PATH.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchTable, FakeController } from '../fake-controller.js';
import { cpuTimes, freePort, hasCommand, Peer, SIDECAR_MAIN, startNginxBackend, startNginxProxy, startRawPipe, startSidecar, stopAll } from '../peers.js';
import { runWrk, type WrkResult } from '../wrk.js';

const HERE = path.dirname(fileURLToPath(import.meta.url)); // dist/bench/runtime-spike
const REPO = path.resolve(HERE, '..', '..', '..');

export function findBun(): string | null {
  if (process.env.MOLT_BUN) return process.env.MOLT_BUN;
  for (const p of [path.join(REPO, 'node_modules', '.bin', 'bun'), path.join(REPO, '.bun-spike', 'node_modules', '.bin', 'bun')]) {
    if (fs.existsSync(p)) return p;
  }
  return hasCommand('bun') ? 'bun' : null;
}

const median = (xs: number[]): number => { if (xs.length === 0) return 0; const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2; };
const lat = (us: number): string => (us < 1000 ? `${Math.round(us)} µs` : `${(us / 1000).toFixed(2)} ms`);
const x = (a: number, b: number): string => (b > 0 ? `${(a / b).toFixed(2)}×` : 'n/a');

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  let rounds = 5;
  let duration = 4;
  let smallOnly = false;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--small-only') smallOnly = true;
    else if (argv[i] === '--rounds') rounds = Number(argv[++i]);
    else if (argv[i] === '--duration') duration = Number(argv[++i]);
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  const bun = findBun();
  if (bun === null) throw new Error('no bun: npm install --prefix .bun-spike bun (or set MOLT_BUN)');
  const bunVersion = execFileSync(bun, ['--version'], { encoding: 'utf8' }).trim();
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'molt-runtime-'));
  fs.chmodSync(root, 0o755);
  const ctls: FakeController[] = [];
  const started = Date.now();
  const load0 = os.loadavg().map((v) => v.toFixed(2)).join(' ');
  try {
    const b = await freePort();
    const backend = startNginxBackend(root, 'backend', [b], 1);
    await backend.waitReady();
    const ctl = async (name: string): Promise<string> => {
      const sock = path.join(root, `${name}.sock`);
      const c = new FakeController(sock, benchTable(1, 'INSTANT', { host: '127.0.0.1', port: b }, { host: '127.0.0.1', port: b }));
      await c.start();
      ctls.push(c);
      return sock;
    };
    const dir = (n: string): string => { const d = path.join(root, n); fs.mkdirSync(d, { recursive: true }); return path.join(d, 'log'); };
    const targets: Array<{ label: string; peer: Peer }> = [];
    targets.push({ label: 'nginx proxy (1 worker, keepalive)', peer: startNginxProxy(root, 'nginx', await freePort(), [b], 1) });
    targets.push({ label: `molt sidecar on Node ${process.versions.node}`, peer: startSidecar(root, 'molt-node', { port: await freePort(), controlSocket: await ctl('molt-node'), workers: 1 }) });
    let p = await freePort();
    targets.push({ label: `molt sidecar unchanged on Bun ${bunVersion} (node:net compat, internals off)`, peer: new Peer('molt-on-bun', p, dir('molt-on-bun'), bun, [SIDECAR_MAIN, '--listen', `127.0.0.1:${p}`, '--control', await ctl('molt-on-bun'), '--log-level', 'warn']) });
    p = await freePort();
    targets.push({ label: `molt data path on Bun.listen/connect (spike)`, peer: new Peer('bun-spike', p, dir('bun-spike'), bun, [path.join(HERE, 'sidecar-bun.js'), String(p), await ctl('bun-spike')]) });
    targets.push({ label: 'Node raw pipe', peer: startRawPipe(root, 'raw-pipe', await freePort(), b) });
    p = await freePort();
    targets.push({ label: 'Bun raw pipe', peer: new Peer('bun-pipe', p, dir('bun-pipe'), bun, [path.join(HERE, 'raw-pipe-bun.js'), String(p), String(b)]) });
    await Promise.all(targets.map((t) => t.peer.waitReady()));

    const md: string[] = [
      '# Runtime spike: Node vs Bun (bench/runtime-spike/run.ts)',
      '',
      `${new Date(started).toISOString()} · \`node dist/bench/runtime-spike/run.js ${argv.join(' ')}\` · ${rounds} interleaved rounds × ${duration} s · node ${process.versions.node}, bun ${bunVersion} · load average before ${load0}`,
      '',
    ];
    const loads = [
      { name: 'small responses, wrk -t1 -c64', c: 64, path: '/' },
      { name: 'one connection, wrk -t1 -c1', c: 1, path: '/' },
      { name: '64 KiB responses, wrk -t1 -c16', c: 16, path: '/64k' },
    ];
    for (const l of smallOnly ? loads.slice(0, 1) : loads) {
      const res = new Map<string, Array<WrkResult & { cpu: number; bps: number }>>(targets.map((t) => [t.label, []]));
      for (const t of targets) await runWrk({ url: t.peer.url.replace(/\/$/, l.path), connections: l.c, threads: 1, durationSeconds: 1 });
      for (let r = 0; r < rounds; r++) {
        for (let k = 0; k < targets.length; k++) {
          const t = targets[(k + r) % targets.length]!;
          const c0 = cpuTimes(t.peer.child.pid);
          const w = await runWrk({ url: t.peer.url.replace(/\/$/, l.path), connections: l.c, threads: 1, durationSeconds: duration });
          const c1 = cpuTimes(t.peer.child.pid);
          const cpu = (c1.user - c0.user + c1.sys - c0.sys) * 1e6 / Math.max(1, w.requests);
          const bps = w.durationUs > 0 ? w.bytesRead / (w.durationUs / 1e6) : 0;
          res.get(t.label)!.push({ ...w, cpu, bps });
          process.stderr.write(`  [${l.name} ${r + 1}/${rounds}] ${t.label.padEnd(70)} ${Math.round(w.requestsPerSec).toString().padStart(6)} req/s p50 ${lat(w.p50Us)} p99 ${lat(w.p99Us)} CPU/req ${cpu.toFixed(0)} µs${w.errors ? ` errors ${w.errors}` : ''}\n`);
        }
      }
      const med = (label: string, f: (v: WrkResult & { cpu: number; bps: number }) => number): number => median(res.get(label)!.map(f));
      const ng = targets[0]!.label;
      const nodePipe = 'Node raw pipe';
      md.push(
        `## ${l.name}`,
        '',
        `| target | req/s | vs nginx | vs Node raw pipe | p50 | p99 | p99.9 | CPU/req |${l.path !== '/' ? ' bytes/s |' : ''} errors |`,
        `|---|---:|---:|---:|---:|---:|---:|---:|${l.path !== '/' ? '---:|' : ''}---:|`,
        ...targets.map((t) => `| ${t.label} | ${Math.round(med(t.label, (v) => v.requestsPerSec)).toLocaleString('en-US')} | ${x(med(t.label, (v) => v.requestsPerSec), med(ng, (v) => v.requestsPerSec))} | ${x(med(t.label, (v) => v.requestsPerSec), med(nodePipe, (v) => v.requestsPerSec))} | ${lat(med(t.label, (v) => v.p50Us))} | ${lat(med(t.label, (v) => v.p99Us))} | ${lat(med(t.label, (v) => v.p999Us))} | ${med(t.label, (v) => v.cpu).toFixed(0)} µs |${l.path !== '/' ? ` ${(med(t.label, (v) => v.bps) / 2 ** 20).toFixed(0)} MiB/s |` : ''} ${res.get(t.label)!.reduce((n, v) => n + v.errors, 0)} |`),
        '',
      );
    }
    md.push(`Load average after: ${os.loadavg().map((v) => v.toFixed(2)).join(' ')} (${Math.round((Date.now() - started) / 1000)} s).`);
    console.log(md.join('\n'));
  } finally {
    await stopAll();
    for (const c of ctls) await c.close();
    fs.rmSync(root, { recursive: true, force: true });
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e: unknown) => { console.error(e); process.exitCode = 1; });
}
