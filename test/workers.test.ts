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
import { createRoutingState, type Routing } from '../sidecar/routing.js';
import { ipcPair } from './helpers/ipc-pair.js';
import { PrimaryCoordinator, WorkerAgent } from '../sidecar/workers.js';
import { parseSidecarArgs } from '../sidecar/main.js';
import { line, onLines } from '../common/ndjson.js';
import { waitFor } from './helpers/molt.js';
import { DEFAULT_FAILURE_POLICY, DEFAULT_TRANSITION, PROTOCOL_VERSION, type FailureMessage, type RoutingTable, type TransitionConfig } from '../common/protocol.js';

function tableOf(revision: number, ports: [number, number], transition: Partial<TransitionConfig> = {}): RoutingTable {
  const v = (id: string, version: string, port: number) => ({
    id, version, epoch: 1, state: 'serving' as const,
    transition: { ...DEFAULT_TRANSITION, ...transition },
    failurePolicy: DEFAULT_FAILURE_POLICY,
    endpoints: [{ host: '127.0.0.1', port }], servingSince: 0, promoted: false,
  });
  return {
    revision,
    apps: [{ name: 'shop', hosts: [], default: true, versionCookie: 'mv', bucketCookie: 'mb', versions: [v('shop-v2', '2.0', ports[0]), v('shop-v1', '1.0', ports[1])] }],
  };
}

/** An in-process IPC pair: asynchronous, structured-cloned, ordered. */
const pair = ipcPair;

const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));

test('IPC layer: table fan-out, failure broadcast, GRADUAL progress and stats aggregation', async (t) => {
  const coord = new PrimaryCoordinator({ progressFlushMs: 1 });
  const failures: FailureMessage[] = [];
  coord.onFailure = (m) => failures.push(m);
  const routings: Routing[] = [];
  const agents: WorkerAgent[] = [];
  for (let i = 0; i < 2; i++) {
    const p = pair();
    const r = createRoutingState({ random: () => 0.99 });
    const a = new WorkerAgent(r, p.worker, { progressFlushMs: 2, statsIntervalMs: 5 });
    a.start();
    coord.addWorker(p.primary);
    routings.push(r);
    agents.push(a);
  }
  t.after(() => { agents.forEach((a) => a.stop()); coord.close(); });

  await coord.applyTable(tableOf(5, [1, 2], { mode: 'GRADUAL', percentagePerRequest: 1 }));
  assert.equal(coord.revision, 5);
  assert.deepEqual(routings.map((r) => r.revision), [5, 5]);

  // 10 GRADUAL requests on each worker: both converge on 20
  for (const r of routings) for (let i = 0; i < 10; i++) r.route('x', 'mb=99', 'GET');
  for (let i = 0; i < 50 && (routings[0].progress('shop-v2') < 20 || routings[1].progress('shop-v2') < 20); i++) await tick();
  assert.deepEqual(routings.map((r) => r.threshold('shop')), [20, 20]);
  assert.equal(coord.progressTotal('shop-v2', 1), 20);

  // a trip in worker 0 rolls back on worker 1 too, and is reported once
  const d0 = routings[0].route('x', 'mb=1', 'GET')!;
  routings[1].recordSuccess(routings[1].route('x', 'mb=1', 'GET')!.primary, 200, 1);
  routings[0].recordFailure(d0.primary, 'status', '503', 2);
  for (let i = 0; i < 50 && routings[1].route('x', 'mb=1', 'GET')!.primary.id !== 'shop-v1'; i++) await tick();
  assert.equal(routings[1].route('x', 'mb=1', 'GET')!.primary.id, 'shop-v1');
  assert.equal(failures.length, 1);
  assert.equal(failures[0].versionId, 'shop-v2');

  // a new worker (restart) gets the table, the rollback and the progress
  const p = pair();
  const r3 = createRoutingState();
  const a3 = new WorkerAgent(r3, p.worker, { statsIntervalMs: 5 });
  a3.start();
  agents.push(a3);
  coord.addWorker(p.primary);
  for (let i = 0; i < 50 && r3.revision !== 5; i++) await tick();
  assert.equal(r3.route('x', 'mb=1', 'GET')!.primary.id, 'shop-v1');
  assert.equal(r3.progress('shop-v2'), coord.progressTotal('shop-v2', 1));
  assert.ok(r3.progress('shop-v2') >= 20);

  // stats are summed over workers
  await waitFor('stats from both workers', () => coord.stats().find((v) => v.versionId === 'shop-v2')?.requests === 2, 5000).catch(() => {});
  const s = coord.stats().find((v) => v.versionId === 'shop-v2')!;
  assert.equal(s.requests, 2);
  assert.equal(s.errors, 1);
});

test('argument parsing', () => {
  assert.deepEqual(parseSidecarArgs(['sidecar', '--listen', '127.0.0.1:0', '--control=/tmp/x.sock', '--workers', '3']), {
    host: '127.0.0.1', port: 0, controlPath: '/tmp/x.sock', workers: 3, logLevel: 'info',
  });
  assert.equal(parseSidecarArgs(['--listen', '[::1]:80', '--control', 's']).host, '::1');
  assert.equal(parseSidecarArgs(['--listen', '127.0.0.1:80', '--control', 's', '--listen-fd', '3']).listenFd, 3);
  for (const bad of [[], ['--listen', 'x'], ['--listen', '127.0.0.1:0'], ['--listen', '127.0.0.1:0', '--control', 's', '--workers', '0'], ['--bogus'],
    ['--listen', '127.0.0.1:80', '--control', 's', '--listen-fd', '1'], ['--listen', '127.0.0.1:80', '--control', 's', '--listen-fd', 'x']]) {
    assert.throws(() => parseSidecarArgs(bad), (e: { code?: string }) => e.code === 'MOLT_ERR_USAGE');
  }
});

for (const workers of [1, 2]) test(`sidecar process (--workers ${workers}) end to end: rollback reported once, all workers switch, SIGTERM exits 0`, { timeout: 30_000 }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'molt-mw-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const socketPath = path.join(dir, 'control.sock');

  const upstream = (body: string, status: number) => {
    const s = http.createServer((_req, res) => { res.writeHead(status, { 'content-type': 'text/plain' }); res.end(body); });
    return s;
  };
  const v2 = upstream('v2', 500);
  const v1 = upstream('v1', 200);
  for (const s of [v2, v1]) { s.listen(0, '127.0.0.1'); await once(s, 'listening'); }
  t.after(() => { v2.close(); v1.close(); v2.closeAllConnections(); v1.closeAllConnections(); });
  const ports: [number, number] = [(v2.address() as net.AddressInfo).port, (v1.address() as net.AddressInfo).port];

  const received: any[] = [];
  const waiters: Array<() => void> = [];
  const conns = new Set<net.Socket>();
  const ctl = net.createServer((s) => {
    conns.add(s);
    s.on('error', () => {});
    s.write(line({ type: 'hello', protocol: PROTOCOL_VERSION, role: 'controller', pid: 1 }));
    onLines(s, (l) => {
      const m = JSON.parse(l);
      received.push(m);
      if (m.type === 'hello') s.write(line({ type: 'routes', table: tableOf(9, ports) }));
      waiters.splice(0).forEach((w) => w());
    });
  });
  ctl.listen(socketPath);
  await once(ctl, 'listening');
  t.after(() => new Promise<void>((r) => { for (const c of conns) c.destroy(); ctl.close(() => r()); }));
  const until = async (pred: () => boolean) => {
    const deadline = Date.now() + 20_000; // bounded: a failure must not keep the process alive
    while (!pred()) {
      if (Date.now() > deadline) throw new Error('timed out waiting for the sidecar');
      await new Promise<void>((r) => { waiters.push(r); setTimeout(r, 50); });
    }
  };

  const main = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'sidecar', 'main.js');
  const child = spawn(process.execPath, [main, '--listen', '127.0.0.1:0', '--control', socketPath, '--workers', String(workers), '--log-level', 'info'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => { stderr += d; });
  t.after(() => { if (child.exitCode === null) child.kill('SIGKILL'); });

  await until(() => received.some((m) => m.type === 'ack' && m.revision === 9));
  while (!/"msg":"sidecar listening"/.test(stderr)) await new Promise((r) => setTimeout(r, 20));
  const port = JSON.parse(stderr.split('\n').find((l) => l.includes('"sidecar listening"'))!).port as number;
  assert.ok(port > 0);

  const get = () => new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false, headers: { host: 'shop.local' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
  });
  // The first request hits the failing v2 (retried on v1 or answered 500); after that every worker serves v1.
  await get();
  await until(() => received.some((m) => m.type === 'failure'));
  // Every worker has the rollback once the summed stats (the highest share any worker reports) give
  // v2 no traffic: a worker that missed the broadcast would still report its share.
  const afterFailure = received.length;
  await until(() => received.slice(afterFailure).some((m) => m.type === 'stats' && m.versions.find((v: any) => v.versionId === 'shop-v2')?.trafficShare === 0));
  const results = [];
  for (let i = 0; i < 20; i++) results.push(await get());
  assert.deepEqual(new Set(results.map((r) => `${r.status} ${r.body}`)), new Set(['200 v1']));
  assert.equal(received.filter((m) => m.type === 'failure').length, 1);
  assert.equal(received.find((m) => m.type === 'failure').versionId, 'shop-v2');

  // stats are summed across workers
  const before = received.length;
  await until(() => received.slice(before).some((m) => m.type === 'stats' && m.versions.find((v: any) => v.versionId === 'shop-v1')?.requests >= 20));
  const lastStats = received.filter((m) => m.type === 'stats').at(-1);
  assert.equal(lastStats.revision, 9);
  assert.equal(lastStats.versions.find((v: any) => v.versionId === 'shop-v2').trafficShare, 0);

  child.kill('SIGTERM');
  const [code] = await once(child, 'exit');
  assert.equal(code, 0, stderr);
});
