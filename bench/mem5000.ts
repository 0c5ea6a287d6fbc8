// Where the sidecar's memory goes at 5,000 keep-alive connections (bench/README.md "Memory at
// 5,000 connections"). Starts the nginx backend, a fake controller and one sidecar with
// bench/mem-probe.js preloaded, runs `wrk -t1 -c5000` and, in the middle of the run and after it,
// asks the probe for a memory breakdown (SIGUSR2). Prints the probe's records plus the peak RSS
// sampled from /proc every 250 ms. Not a timing benchmark: memory numbers only.
//   node dist/bench/mem5000.js [--seconds 12] [--snapshot] [--node-arg=--flag …] [--env K=V …]

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchTable, FakeController } from './fake-controller.js';
import { freePort, listenOverflows, rssKiB, startNginxBackend, startSidecar, stopAll } from './peers.js';
import { runWrk } from './wrk.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
let seconds = 12;
let snapshot = false;
const nodeArgs: string[] = [];
const env: NodeJS.ProcessEnv = {};
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === '--seconds') seconds = Number(argv[++i]);
  else if (a === '--snapshot') snapshot = true;
  else if (a.startsWith('--node-arg=')) nodeArgs.push(a.slice('--node-arg='.length));
  else if (a === '--env') { const [k, ...v] = argv[++i].split('='); env[k] = v.join('='); }
  else { process.stderr.write(`unknown argument ${a}\n`); process.exit(2); }
}

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'molt-mem-'));
fs.chmodSync(root, 0o755);
const out = path.join(root, 'mem.jsonl');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
try {
  const b1 = await freePort();
  const backend = startNginxBackend(root, 'backend', [b1], 1);
  await backend.waitReady();
  const socket = path.join(root, 'molt.sock');
  const ctl = new FakeController(socket, benchTable(1, 'INSTANT', { host: '127.0.0.1', port: b1 }, { host: '127.0.0.1', port: b1 }));
  await ctl.start();
  const peer = startSidecar(root, 'molt', {
    port: await freePort(), controlSocket: socket, workers: 1,
    nodeArgs: ['--import', path.join(HERE, 'mem-probe.js'), ...nodeArgs],
    env: { MOLT_MEM_OUT: out, MOLT_MEM_SNAPSHOT: snapshot ? '2' : '0', ...env },
  });
  await ctl.waitForAck(1);
  await peer.waitReady();
  const pid = peer.child.pid!;
  await sleep(300);
  process.kill(pid, 'SIGUSR2'); // at rest
  const rest = rssKiB(pid);
  let peak = 0;
  const sampler = setInterval(() => { peak = Math.max(peak, rssKiB(pid)); }, 250);
  const ov0 = listenOverflows();
  const run = runWrk({ url: peer.url, connections: 5000, threads: 1, durationSeconds: seconds, timeoutSeconds: 10 });
  await sleep(Math.round(seconds * 1000 * 0.6));
  process.kill(pid, 'SIGUSR2'); // under load (snapshot here with --snapshot)
  const r = await run;
  clearInterval(sampler);
  await sleep(500);
  process.kill(pid, 'SIGUSR2'); // after the run (connections closing)
  await sleep(snapshot ? 8000 : 500);
  const recs = fs.readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  console.log(JSON.stringify({ restRssKiB: rest, peakRssKiB: peak, listenOverflows: listenOverflows() - ov0, rps: Math.round(r.requestsPerSec), errors: r.errors, p99Us: r.p99Us }));
  for (const [i, rec] of recs.entries()) console.log(['rest', 'load', 'after'][i] ?? i, JSON.stringify(rec));
  if (snapshot) console.log('snapshot:', out + '.heapsnapshot');
} finally {
  await stopAll();
}
