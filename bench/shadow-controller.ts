// A stand-in for `molt up` while a version is in preflight `Testing` with `shadow.percent: 100`, for
// the "shadowing" row of `npm run bench`:
//   node dist/bench/shadow-controller.js SOCKET SERVING_PORT CANDIDATE_PORT STATUS_FILE
// It serves the control socket (hello, routes: INSTANT to SERVING_PORT, like the fake controller)
// and runs the controller's own PreflightRun (controller/preflight.ts) against CANDIDATE_PORT:
// every 500 ms it reads what the sidecar recorded (`traffic-request` over the control socket, as
// control-server.ts does) and sends the copies — to the candidate and to the serving version, at
// most 16 in flight, the rest dropped and counted — from this process, as `molt up` sends them
// from its own. Nothing else of the controller runs (no reconcile loop, no supervisor, no admin
// API), so the row measures what shadowing adds, not what the controller costs while idle.
// Pass criteria are set so the run never ends: compare status only, minRequests 10^9.
// Counters go to STATUS_FILE (JSON) every second and at SIGTERM.

import fs from 'node:fs';
import net from 'node:net';
import { line, onLines } from '../common/ndjson.js';
import { PROTOCOL_VERSION, type TrafficMessage } from '../common/protocol.js';
import { ShadowClient } from '../common/shadow-client.js';
import { PreflightRun, type PreflightRunConfig } from '../controller/preflight.js';
import type { TrafficAnswer } from '../controller/control-server.js';
import { benchTable } from './fake-controller.js';

const [socketPath, servingArg, candidateArg, statusFile] = process.argv.slice(2);
const serving = Number(servingArg);
const candidate = Number(candidateArg);
if (!socketPath || !statusFile || !Number.isInteger(serving) || !Number.isInteger(candidate)) {
  process.stderr.write('usage: node dist/bench/shadow-controller.js SOCKET SERVING_PORT CANDIDATE_PORT STATUS_FILE\n');
  process.exit(2);
}

const table = benchTable(1, 'INSTANT', { host: '127.0.0.1', port: serving }, { host: '127.0.0.1', port: serving });
let sidecar: net.Socket | null = null;
let nextId = 0;
const waits = new Map<number, (m: TrafficMessage) => void>();
let trafficRequests = 0;
let exchangesRead = 0;
let pairs = 0;
let run: PreflightRun | null = null;

function requestTraffic(app: string, limit: number, after?: Record<string, number>): Promise<TrafficAnswer> {
  const s = sidecar;
  if (s === null) return Promise.resolve({ exchanges: [], cursor: {}, recorded: 0, skipped: 0 });
  const id = ++nextId;
  trafficRequests++;
  return new Promise((resolve) => {
    const timer = setTimeout(() => { waits.delete(id); resolve({ exchanges: [], cursor: after ?? {}, recorded: 0, skipped: 0 }); }, 3000);
    waits.set(id, (m) => {
      clearTimeout(timer);
      exchangesRead += m.exchanges.length;
      resolve({ exchanges: m.exchanges, cursor: m.cursor, recorded: m.recorded, skipped: m.skipped });
    });
    s.write(line({ type: 'traffic-request', id, app, limit, ...(after ? { after } : {}) }));
  });
}

const config: PreflightRunConfig = {
  maxDurationMs: 24 * 3600_000,
  onNoTraffic: 'wait',
  replay: null,
  shadow: { percent: 100, minRequests: 1e9 },
  compare: { status: true, headers: [], body: 'none', ignore: [], noise: 'off' },
  pass: { maxMismatchRate: 1, maxErrorRate: 1 },
  unsafeMethods: false,
  hooks: [],
};

function startRun(): void {
  if (run !== null) return;
  run = new PreflightRun(
    {
      app: 'bench',
      name: 'bench-v2',
      version: '2.0.0',
      endpoints: [{ host: '127.0.0.1', port: candidate }],
      serving: { name: 'bench-v1', version: '1.0.0', endpoints: [{ host: '127.0.0.1', port: serving }] },
    },
    config,
    { requestTraffic, client: new ShadowClient({ maxSockets: 16 }), onPair: () => { pairs++; } },
  );
  run.start(() => {});
}

function writeStatus(): void {
  const st = run?.status();
  fs.writeFileSync(statusFile, JSON.stringify({ trafficRequests, exchangesRead, pairs, verdict: st?.verdict ?? 'not started', status: st ?? null }));
}

const server = net.createServer((s) => {
  sidecar = s;
  s.on('error', () => {});
  s.on('close', () => { if (sidecar === s) sidecar = null; });
  s.write(line({ type: 'hello', protocol: PROTOCOL_VERSION, role: 'controller', pid: process.pid }));
  onLines(s, (l) => {
    let m: { type?: string; id?: number; revision?: number };
    try { m = JSON.parse(l) as typeof m; } catch { return; }
    if (m.type === 'hello') s.write(line({ type: 'routes', table }));
    else if (m.type === 'ack') startRun();
    else if (m.type === 'traffic' && typeof m.id === 'number') {
      const w = waits.get(m.id);
      waits.delete(m.id);
      w?.(m as unknown as TrafficMessage);
    }
  });
});
server.listen(socketPath);
const statusTimer = setInterval(writeStatus, 1000);
const stop = (): void => {
  clearInterval(statusTimer);
  run?.stop();
  writeStatus();
  sidecar?.destroy();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 500).unref();
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
