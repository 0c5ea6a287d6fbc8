// The fault scenarios of issue 5. Each runs under continuous mixed load (MixedLoad) and returns one
// ScenarioResult row. Used by bench/faults/run.ts (all of them, writes docs/reliability.md) and by
// test/faults.test.ts (the fast, deterministic subset, with assertions).

import fs from 'node:fs';
import path from 'node:path';
import Dockerode from 'dockerode';
import { controllerIdFor } from '../../../controller/up.js';
import { LABEL_APPVERSION, LABEL_MANAGED_BY } from '../../../controller/runtime/types.js';
import { alive } from '../../../controller/supervisor.js';
import { buildTestImages, ensureDocker } from '../docker.js';
import { freePort, waitFor } from '../molt.js';
import http from 'node:http';
import { PrivateDaemon, privateDaemonUnavailable, type DaemonMode } from './daemon.js';
import { analyze, killLeftovers, MoltChild, MoltEnv, outage, readReqLog, type ScenarioResult, type VersionOpts } from './harness.js';
import { DEFAULT_WORKERS, isClientError, MixedLoad, type WorkerSpec } from './load.js';

export interface Scenario {
  id: string;
  title: string;
  runtime: 'process' | 'docker';
  /** Fast and deterministic enough for CI (test/faults.test.ts). */
  ci: boolean;
  run(): Promise<ScenarioResult>;
}

const GET_ONLY: WorkerSpec[] = [
  { method: 'GET', keepAlive: true },
  { method: 'GET', keepAlive: true },
  { method: 'GET', keepAlive: false },
];

/** Let the load run for `n` more requests (instead of a fixed sleep). */
async function more(load: MixedLoad, n: number, timeoutMs = 30000): Promise<void> {
  const target = load.records.length + n;
  await waitFor(`${n} more requests`, () => load.records.length >= target, timeoutMs);
}

const V1: VersionOpts = { name: 'shop-v1', version: '1.0.0' };
const RESPONSE_TIMEOUT = { responseTimeout: '1s' };

// ------------------------------------------------------------------------------------------------
// process runtime: the newest version misbehaves from its first request

function newestFails(id: string, title: string, bad: Omit<VersionOpts, 'name' | 'version'>, workers?: WorkerSpec[], ci = true): Scenario {
  return {
    id, title, runtime: 'process', ci,
    async run() {
      const env = await new MoltEnv().start();
      try {
        env.write(V1);
        await env.waitServing('shop-v1');
        const load = new MixedLoad(env.port, workers).start();
        await more(load, 100);
        const faultAt = Date.now();
        env.write({ name: 'shop-v2', version: '2.0.0', failurePolicy: RESPONSE_TIMEOUT, ...bad, mode: bad.mode?.replace('{root}', env.root) });
        await env.waitPhase('shop-v2', ['RolledBack', 'Failed']);
        await more(load, 300);
        await load.stop();
        return analyze({ id, title, runtime: 'process', records: load.records, root: env.root, logged: ['shop-v1', 'shop-v2'], bad: 'shop-v2', faultAt, failures: env.failures, finalPhase: env.phase('shop-v2') ?? '?' });
      } finally {
        await env.stop().catch(() => {});
        killLeftovers(path.join(env.root, 'state'));
      }
    },
  };
}

/** The newest version serves fine, then its process dies: killed (SIGKILL) or exiting by itself. */
function newestCrashes(id: string, title: string, how: 'kill' | 'exit'): Scenario {
  return {
    id, title, runtime: 'process', ci: how === 'kill',
    async run() {
      const env = await new MoltEnv().start();
      try {
        env.write(V1);
        await env.waitServing('shop-v1');
        const load = new MixedLoad(env.port).start();
        env.write({ name: 'shop-v2', version: '2.0.0', mode: how === 'exit' ? 'crash-after-ms:3000' : 'ok' });
        await env.waitPhase('shop-v2', ['Promoted']);
        let faultAt: number;
        if (how === 'kill') {
          await more(load, 200);
          faultAt = Date.now();
          for (const pid of env.processPids('shop-v2')) process.kill(-pid, 'SIGKILL');
        } else {
          const pids = env.processPids('shop-v2');
          await waitFor('v2 to exit', () => pids.every((p) => !alive(p)), 10000);
          faultAt = Date.now();
        }
        await env.waitPhase('shop-v2', ['RolledBack']);
        await more(load, 300);
        await load.stop();
        const notes = how === 'exit' ? ['fault time = when the exit was observed (≤50 ms late)'] : [];
        return analyze({ id, title, runtime: 'process', records: load.records, root: env.root, logged: ['shop-v1', 'shop-v2'], bad: 'shop-v2', faultAt, failures: env.failures, finalPhase: env.phase('shop-v2') ?? '?', notes });
      } finally {
        await env.stop().catch(() => {});
        killLeftovers(path.join(env.root, 'state'));
      }
    },
  };
}

/** 500s at first; rolled back; the cause is fixed; `molt promote` re-admits it under load. */
const recovers: Scenario = {
  id: 'recovers', title: 'newest answers 500, recovers later, re-admitted with promote', runtime: 'process', ci: true,
  async run() {
    const env = await new MoltEnv().start();
    try {
      const fixed = path.join(env.root, 'v2-fixed');
      env.write(V1);
      await env.waitServing('shop-v1');
      const load = new MixedLoad(env.port).start();
      await more(load, 100);
      const faultAt = Date.now();
      env.write({ name: 'shop-v2', version: '2.0.0', mode: `ok-when:${fixed}` });
      await env.waitPhase('shop-v2', ['RolledBack']);
      await more(load, 200);
      fs.writeFileSync(fixed, 'fixed');
      const until = Date.now();
      await env.handle.controller.promote('shop', 'shop-v2');
      await env.waitPhase('shop-v2', ['Promoted']);
      await waitFor('v2 answers', () => load.records.slice(-5).every((r) => r.servedBy === 'shop-v2'), 10000);
      await more(load, 300);
      await load.stop();
      const r = analyze({ id: this.id, title: this.title, runtime: 'process', records: load.records, root: env.root, logged: ['shop-v1', 'shop-v2'], bad: 'shop-v2', faultAt, failures: env.failures, finalPhase: env.phase('shop-v2') ?? '?', until });
      r.notes.push(`after re-admission v2 answered ${load.records.filter((x) => x.start > until && x.servedBy === 'shop-v2').length} requests`);
      return r;
    } finally {
      await env.stop().catch(() => {});
      killLeftovers(path.join(env.root, 'state'));
    }
  },
};

// ------------------------------------------------------------------------------------------------
// preflight (issue 11): v2 carries spec.preflight and is bad from its first request. It enters
// Testing, gets only x-molt-shadow replays and copies (never a client request), and must end
// Rejected with the right reason while the clients see v1 only.

/** Many GET connections and one POST connection. */
const GET_HEAVY: WorkerSpec[] = [
  { method: 'GET', keepAlive: true },
  { method: 'GET', keepAlive: true },
  { method: 'GET', keepAlive: false },
  { method: 'GET', keepAlive: true },
  { method: 'POST', keepAlive: true },
];
/** Mostly POSTs: one GET connection (whose requests are what the preflight can replay and copy). */
const POST_HEAVY: WorkerSpec[] = [
  { method: 'GET', keepAlive: true },
  { method: 'POST', keepAlive: true },
  { method: 'POST', keepAlive: true },
  { method: 'POST', keepAlive: false },
];

/** The fixture's body names the version, so bodies differ by design: compare status and content-type. */
export const FAULT_PREFLIGHT = `  preflight:
    maxDuration: 60s
    replay: { requests: 50 }
    shadow: { percent: 100, minRequests: 50 }
    compare: { body: none }
    pass: { maxMismatchRate: 0, maxErrorRate: 0, maxLatencyRatio: 2.0 }
`;

export const PREFLIGHT_PREFIX = 'preflight-';

function preflightFails(id: string, title: string, bad: Omit<VersionOpts, 'name' | 'version'>, expect: string, workers: WorkerSpec[]): Scenario {
  return {
    id, title, runtime: 'process', ci: false,
    async run() {
      const env = await new MoltEnv().start();
      try {
        env.write(V1);
        await env.waitServing('shop-v1');
        // Paced load (≈ 2 ms between a connection's requests), bounded by the waits below.
        const load = new MixedLoad(env.port, workers, { pauseMs: 2 }).start();
        await more(load, 200); // recorded at the ingress: what the preflight replays
        const faultAt = Date.now();
        env.write({ name: 'shop-v2', version: '2.0.0', failurePolicy: RESPONSE_TIMEOUT, preflight: FAULT_PREFLIGHT, ...bad, mode: bad.mode?.replace('{root}', env.root) });
        await env.waitPhase('shop-v2', ['Testing', 'Rejected'], 30000);
        const testingAt = Date.now();
        await env.waitPhase('shop-v2', ['Rejected', 'Serving', 'Promoted', 'RolledBack', 'Failed'], 90000);
        const decidedAt = Date.now();
        await more(load, 300);
        await load.stop();
        const v2 = env.version('shop-v2');
        const finalPhase = `${v2?.phase ?? '?'}${v2?.reason ? ` (${v2.reason})` : ''}`;
        const r = analyze({ id, title, runtime: 'process', records: load.records, root: env.root, logged: ['shop-v1', 'shop-v2'], bad: 'shop-v2', faultAt, failures: env.failures, finalPhase });
        const v2Log = readReqLog(env.root, 'shop-v2');
        // Replays and copies repeat the recorded request, x-req-id included: each id v2 saw must be a
        // client request that v1 answered.
        const v1Answered = new Set(load.records.filter((x) => x.servedBy === 'shop-v1').map((x) => x.id));
        const p = v2?.preflight;
        const lat = (x: number | null | undefined) => (x === null || x === undefined ? '-' : x.toFixed(1));
        r.facts = {
          v2Get: v2Log.filter((l) => l.method === 'GET').length,
          v2Post: v2Log.filter((l) => l.method !== 'GET').length,
          v2Answers: load.records.filter((x) => x.servedBy === 'shop-v2').length,
          v2NotCopies: v2Log.filter((l) => !v1Answered.has(l.id)).length,
          testingToDecidedMs: decidedAt - testingAt,
          expected: v2?.phase === 'Rejected' && v2.reason === expect,
        };
        r.notes.push(p
          ? `compared ${p.compared}, mismatched ${p.mismatched}, errors ${p.errors}, dropped ${p.dropped}, skipped ${p.skipped}; p95 ${lat(p.latency.oldP95)} → ${lat(p.latency.newP95)} ms${p.latency.oldP95 && p.latency.newP95 ? ` (ratio ${(p.latency.newP95 / p.latency.oldP95).toFixed(1)})` : ''}; "${v2?.message ?? ''}"`
          : 'no preflight evidence in status');
        return r;
      } finally {
        await env.stop().catch(() => {});
        killLeftovers(path.join(env.root, 'state'));
      }
    },
  };
}

// ------------------------------------------------------------------------------------------------
// controller and sidecar faults

/** v3 starts failing while the controller is down (in-process crash: detach + stop, then runUp again). */
const controllerRestart: Scenario = {
  id: 'controller-restart', title: 'controller crashes (in-process) and restarts; newest fails while it is down', runtime: 'process', ci: true,
  async run() {
    const env = await new MoltEnv().start();
    try {
      const broken = path.join(env.root, 'v2-broken');
      env.write(V1);
      await env.waitServing('shop-v1');
      const load = new MixedLoad(env.port).start();
      env.write({ name: 'shop-v2', version: '2.0.0', mode: `fail-when:${broken}` });
      await env.waitPhase('shop-v2', ['Promoted']);
      await more(load, 100);
      const sidecarPid = env.handle.supervisor.pid;
      await env.crashController();
      await more(load, 100);
      const faultAt = Date.now();
      fs.writeFileSync(broken, 'broken'); // the sidecar must roll back on its own and queue the report
      await more(load, 200);
      await env.restartController();
      await env.handle.controller.reconcileNow();
      await env.waitPhase('shop-v2', ['RolledBack'], 10000);
      fs.rmSync(broken); // even healthy again, a rolled-back version must get no traffic
      const restartedAt = Date.now();
      await more(load, 300);
      await load.stop();
      const r = analyze({ id: this.id, title: this.title, runtime: 'process', records: load.records, root: env.root, logged: ['shop-v1', 'shop-v2'], bad: 'shop-v2', faultAt, failures: env.failures, finalPhase: env.phase('shop-v2') ?? '?' });
      const after = readReqLog(env.root, 'shop-v2').filter((l) => l.at > restartedAt).length;
      r.facts = { sidecarAdopted: env.handle.supervisor.pid === sidecarPid, badAfterRestart: after };
      r.notes.push(`sidecar ${env.handle.supervisor.pid === sidecarPid ? 'adopted (same pid)' : 'REPLACED'}; v2 requests after restart: ${after}`);
      return r;
    } finally {
      await env.stop().catch(() => {});
      killLeftovers(path.join(env.root, 'state'));
    }
  },
};

/** A real `node bin/molt.js up` killed with SIGKILL and started again. */
const controllerSigkill: Scenario = {
  id: 'controller-sigkill', title: 'real `molt up` SIGKILLed and restarted; newest fails while it is down', runtime: 'process', ci: false,
  async run() {
    const env = new MoltEnv(); // used for its temp root and file writes only
    fs.mkdirSync(path.join(env.root, 'reqlogs'), { recursive: true });
    const port = await freePort();
    const molt = new MoltChild(env.root, port, await freePort());
    try {
      const broken = path.join(env.root, 'v2-broken');
      env.write(V1);
      molt.start();
      await waitFor('v1 to serve', async () => (await molt.phase('shop-v1')) === 'Promoted', 30000);
      const load = new MixedLoad(port).start();
      env.write({ name: 'shop-v2', version: '2.0.0', mode: `fail-when:${broken}` });
      await waitFor('v2 promoted', async () => (await molt.phase('shop-v2')) === 'Promoted', 30000);
      await more(load, 100);
      const sidecarPid = (JSON.parse(fs.readFileSync(path.join(env.root, 'state', 'sidecar.pid'), 'utf8')) as { pid: number }).pid;
      await molt.kill('SIGKILL');
      const faultAt = Date.now();
      fs.writeFileSync(broken, 'broken');
      await more(load, 200);
      molt.start();
      await waitFor('controller back, v2 rolled back', async () => (await molt.phase('shop-v2')) === 'RolledBack', 30000);
      fs.rmSync(broken);
      const restartedAt = Date.now();
      await more(load, 300);
      await load.stop();
      const sidecarNow = (JSON.parse(fs.readFileSync(path.join(env.root, 'state', 'sidecar.pid'), 'utf8')) as { pid: number }).pid;
      const r = analyze({ id: this.id, title: this.title, runtime: 'process', records: load.records, root: env.root, logged: ['shop-v1', 'shop-v2'], bad: 'shop-v2', faultAt, failures: [], finalPhase: (await molt.phase('shop-v2')) ?? '?' });
      r.facts = { sidecarAdopted: sidecarNow === sidecarPid && alive(sidecarPid), badAfterRestart: readReqLog(env.root, 'shop-v2').filter((l) => l.at > restartedAt).length };
      r.notes.push(`sidecar ${sidecarNow === sidecarPid && alive(sidecarPid) ? 'adopted (same pid)' : 'REPLACED'}; v2 requests after restart: ${readReqLog(env.root, 'shop-v2').filter((l) => l.at > restartedAt).length}; rollback ms n/a (report went to the new controller)`);
      return r;
    } finally {
      await molt.kill('SIGTERM');
      killLeftovers(path.join(env.root, 'state'));
    }
  },
};

const sidecarKill: Scenario = {
  id: 'sidecar-kill', title: 'sidecar SIGKILLed; the supervisor restarts it', runtime: 'process', ci: true,
  async run() {
    const env = await new MoltEnv().start();
    try {
      env.write(V1);
      await env.waitServing('shop-v1');
      const load = new MixedLoad(env.port).start();
      await more(load, 200);
      const old = env.handle.supervisor.pid;
      const faultAt = Date.now();
      process.kill(old, 'SIGKILL');
      await waitFor('a new sidecar', () => env.handle.supervisor.pid !== old && env.handle.supervisor.pid > 0, 10000);
      const respawnMs = Date.now() - faultAt;
      await waitFor('serving again', () => load.records.slice(-5).length === 5 && load.records.slice(-5).every((r) => r.servedBy === 'shop-v1' && r.start > faultAt), 15000);
      await more(load, 300);
      await load.stop();
      const r = analyze({ id: this.id, title: this.title, runtime: 'process', records: load.records, root: env.root, logged: ['shop-v1'], bad: null, faultAt, failures: env.failures, finalPhase: env.phase('shop-v1') ?? '?' });
      Object.assign(r, outage(load.records, faultAt));
      const after = load.records.filter((x) => x.start >= faultAt);
      const firstAnswer = after.find((x) => x.status > 0);
      const firstOk = after.find((x) => x.servedBy === 'shop-v1');
      const noTable = after.filter((x) => x.status === 503).length;
      const refused = Object.entries(r.errorKinds).filter(([k]) => k.includes('ECONNREFUSED')).reduce((n, [, v]) => n + v, 0);
      const held = env.handle.supervisor.holdsListenSocket;
      r.facts = { respawnMs, sidecarReplaced: env.handle.supervisor.pid !== old, listenSocketHeld: held, refused };
      r.notes.push(`listening socket ${held ? 'held by the supervisor (new connections wait in the backlog)' : 'bound by the sidecar itself'}; new sidecar pid seen after ≤${respawnMs} ms; first HTTP answer ${firstAnswer ? firstAnswer.end - faultAt : '?'} ms, first 200 ${firstOk ? firstOk.end - faultAt : '?'} ms after the kill; ${noTable} × 503 "no routing table yet"`);
      return r;
    } finally {
      await env.stop().catch(() => {});
      killLeftovers(path.join(env.root, 'state'));
    }
  },
};

// ------------------------------------------------------------------------------------------------
// docker runtime (busybox images from test/helpers/docker.ts: GET only, no request log)

async function dockerOrSkip(): Promise<Dockerode | string> {
  const d = await ensureDocker();
  if ('skip' in d) return d.skip;
  await buildTestImages(d.docker);
  process.env.DOCKER_HOST ??= `unix://${d.socketPath}`;
  return d.docker;
}

async function removeContainers(docker: Dockerode, stateDir: string): Promise<void> {
  const list = await docker.listContainers({ all: true, filters: { label: [`${LABEL_MANAGED_BY}=${controllerIdFor(stateDir)}`] } });
  await Promise.all(list.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => {})));
}

function dockerScenario(id: string, title: string, bad: { image: string; kill?: boolean }, ci = false): Scenario {
  return {
    id, title, runtime: 'docker', ci,
    async run() {
      const docker = await dockerOrSkip();
      if (typeof docker === 'string') throw new Error(`docker unavailable: ${docker}`);
      const env = await new MoltEnv().start();
      try {
        env.write({ name: 'shop-v1', version: '1.0.0', image: 'v1' });
        await waitFor('v1 to serve', async () => env.phase('shop-v1') === 'Promoted', 60000);
        const load = new MixedLoad(env.port, GET_ONLY).start();
        await more(load, 100);
        let faultAt = Date.now();
        env.write({ name: 'shop-v2', version: '2.0.0', image: bad.image, failurePolicy: RESPONSE_TIMEOUT });
        if (bad.kill) {
          await env.waitPhase('shop-v2', ['Promoted'], 60000);
          await more(load, 200);
          const list = await docker.listContainers({ filters: { label: [`${LABEL_APPVERSION}=shop-v2`, `${LABEL_MANAGED_BY}=${controllerIdFor(path.join(env.root, 'state'))}`] } });
          faultAt = Date.now();
          await Promise.all(list.map((c) => docker.getContainer(c.Id).kill()));
        }
        await env.waitPhase('shop-v2', ['RolledBack', 'Failed'], 60000);
        await more(load, 300);
        await load.stop();
        // Client side only: which answers came from the bad image (v2/v4 bodies).
        const r = analyze({ id, title, runtime: 'docker', records: load.records, root: env.root, logged: [], bad: 'shop-v2', faultAt, failures: env.failures, finalPhase: env.phase('shop-v2') ?? '?' });
        r.notes.push('GET only (busybox image); bad-version hits from client answers only');
        r.toPreviousMs = null;
        const badBody = bad.image;
        const served = load.records.filter((x) => x.servedBy === badBody);
        const failure = env.failures.find((f) => f.versionId === 'shop-v2');
        const t0 = failure?.firstFailureAt ?? faultAt;
        r.badHits = served.filter((x) => x.start >= t0).length;
        return r;
      } finally {
        await env.stop().catch(() => {});
        await removeContainers(docker, path.join(env.root, 'state'));
      }
    },
  };
}

// ------------------------------------------------------------------------------------------------
// docker daemon restarted during a rollout: a PRIVATE daemon started for the scenario (see daemon.ts),
// never the shared one

const SETTLE_TIMEOUT_MS = 60_000;

function metricValue(port: number, re: RegExp): Promise<number | null> {
  return new Promise((resolve) => {
    http.get({ host: '127.0.0.1', port, path: '/metrics', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => { const m = re.exec(body); resolve(m ? Number(m[1]) : null); });
    }).on('error', () => resolve(null));
  });
}

const s1 = (ms: number) => (ms / 1000).toFixed(1);

/** pids of docker-proxy processes (the userland proxy behind ports published on 127.0.0.1). */
function dockerProxies(): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (path.basename(fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0')[0] ?? '') === 'docker-proxy') out.push(Number(d));
    } catch { /* gone */ }
  }
  return out;
}

/**
 * v1 serving, GET load, v2 written; as soon as v2 is Starting (or already serving) the daemon gets
 * SIGTERM, exits, and is started again with the same flags. Then wait until clients are answered again
 * and phases stop changing, with nothing done by hand: molt has to recover by itself.
 */
function daemonRestart(id: string, title: string, mode: DaemonMode, at: 'starting' | 'written' = 'starting', ci = false): Scenario {
  return {
    id, title, runtime: 'docker', ci,
    async run() {
      const why = privateDaemonUnavailable();
      if (why) throw new Error(`a private Docker daemon cannot run here: ${why}`);
      const daemon = new PrivateDaemon(mode);
      const docker = daemon.docker;
      const savedHost = process.env.DOCKER_HOST;
      let env: MoltEnv | undefined;
      try {
        await daemon.start();
        await buildTestImages(docker);
        // molt's Docker driver honours DOCKER_HOST when it is created (in runUp): point it at the private daemon.
        process.env.DOCKER_HOST = daemon.address;
        env = await new MoltEnv().start();
      } catch (err) {
        process.env.DOCKER_HOST = savedHost;
        if (savedHost === undefined) delete process.env.DOCKER_HOST;
        await env?.stop().catch(() => {});
        await daemon.destroy().catch(() => {});
        throw err;
      }
      const stateDir = path.join(env.root, 'state');
      const byVersion = async (name: string) => (await docker.listContainers({ all: true, filters: { label: [`${LABEL_APPVERSION}=${name}`, `${LABEL_MANAGED_BY}=${controllerIdFor(stateDir)}`] } }));
      // Phase timeline, sampled every 50 ms.
      const transitions: string[] = [];
      let sampling = true;
      let t0 = 0;
      let lastChange = Date.now();
      const last: Record<string, string> = {};
      const sampler = (async () => {
        while (sampling) {
          for (const n of ['shop-v1', 'shop-v2']) {
            const p = env.phase(n) ?? '-';
            if (last[n] !== undefined && last[n] !== p && t0) transitions.push(`${n.slice(5)} ${last[n]}→${p} @${s1(Date.now() - t0)}s`);
            if (last[n] !== p) lastChange = Date.now();
            last[n] = p;
          }
          await new Promise((r) => setTimeout(r, 50));
        }
      })();
      try {
        env.write({ name: 'shop-v1', version: '1.0.0', image: 'v1' });
        await waitFor('v1 to serve', async () => env.phase('shop-v1') === 'Promoted', 60000);
        const load = new MixedLoad(env.port, GET_ONLY).start();
        await more(load, 100);
        const v1Before = (await byVersion('shop-v1')).map((c) => c.Id);
        env.write({ name: 'shop-v2', version: '2.0.0', image: 'v2', failurePolicy: RESPONSE_TIMEOUT });
        if (at === 'starting') await waitFor('v2 Starting or serving', () => ['Starting', 'Serving', 'Promoted'].includes(env.phase('shop-v2') ?? ''), 60000);
        const phaseAtFault = env.phase('shop-v2') ?? 'not yet seen (file just written)';
        const errorsBefore = await metricValue(env.handle.adminAddress.port, /molt_reconcile_total\{result="error"\} (\d+)/);
        const proxiesBefore = dockerProxies();
        const faultAt = (t0 = Date.now());
        const downAt = await daemon.stop();
        // At least one reconcile surely runs while the daemon is away (the resync alone might not
        // come in the short gap): it must not read an unreachable daemon as "no containers".
        await env.handle.controller.reconcileNow();
        const upAt = await daemon.start();
        // Settled: the last 30 answers all fine and started after the daemon was back, phases unchanged for 3 s.
        let recovered = true;
        try {
          await waitFor('molt to serve again and settle', () => {
            const tail = load.records.slice(-30);
            return tail.length === 30 && tail.every((r) => !isClientError(r) && r.start > upAt) && Date.now() - lastChange > 3000;
          }, SETTLE_TIMEOUT_MS);
        } catch {
          recovered = false;
        }
        await more(load, 300);
        await load.stop();
        const errorsAfter = await metricValue(env.handle.adminAddress.port, /molt_reconcile_total\{result="error"\} (\d+)/);
        const p1 = env.phase('shop-v1') ?? '?';
        const p2 = env.phase('shop-v2') ?? '?';
        const r = analyze({ id, title, runtime: 'docker', records: load.records, root: env.root, logged: [], bad: null, faultAt, failures: env.failures, finalPhase: `v2 ${p2}, v1 ${p1}` });
        const failure = env.failures.find((f) => f.versionId === 'shop-v2');
        r.rollbackMs = failure ? failure.rolledBackAt - failure.firstFailureAt : null;

        const after = load.records.filter((x) => x.end >= faultAt);
        const failed = after.filter(isClientError);
        const lastErr = failed.length ? Math.max(...failed.map((x) => x.end)) : faultAt;
        const firstErr = failed.length ? Math.min(...failed.map((x) => x.start)) : null;
        const firstOkAfter = load.records.find((x) => x.start >= lastErr && !isClientError(x));
        const servesAgainMs = failed.length === 0 ? 0 : firstOkAfter ? firstOkAfter.end - faultAt : null;
        const v1Now = await byVersion('shop-v1');
        // A rolled-back version's containers are stopped (5 s grace; busybox httpd ignores SIGTERM as PID 1).
        const v2Gone = ['RolledBack', 'Failed'].includes(p2)
          ? await waitFor('v2 containers gone', async () => (await byVersion('shop-v2')).every((c) => c.State !== 'running') && Date.now(), 20000).catch(() => null)
          : null; // v2 kept: its containers stay
        const v2Now = await byVersion('shop-v2');
        const proxiesAfter = dockerProxies();
        const v1Fate = v1Before.every((cid) => v1Now.some((c) => c.Id === cid && c.State === 'running')) ? 'survived (same container)'
          : v1Now.some((c) => c.State === 'running') ? 'recreated by molt' : 'not running';
        const answeredAfterUp = (v: string) => load.records.filter((x) => x.start > upAt && x.servedBy === v).length;
        const reconcileErrors = errorsBefore !== null && errorsAfter !== null ? errorsAfter - errorsBefore : null;
        r.facts = {
          recovered, servesAgainMs: servesAgainMs ?? -1, daemonStopMs: downAt - faultAt, daemonDownMs: upAt - downAt,
          v1Survived: v1Fate.startsWith('survived'), reconcileErrors: reconcileErrors ?? -1,
        };
        r.notes.push([
          `SIGTERM with v2 ${phaseAtFault}`,
          `dockerd exited after ${s1(downAt - faultAt)} s, answered again ${s1(upAt - downAt)} s later`,
          `client errors ${firstErr === null ? 'none' : `from +${s1(firstErr - faultAt)} s to +${s1(lastErr - faultAt)} s`}`,
          `serving again (first 200 after the last error) ${servesAgainMs === null ? 'NEVER' : `+${s1(servesAgainMs)} s`}${recovered ? '' : ` — did not settle within ${SETTLE_TIMEOUT_MS / 1000} s`}`,
          `after the daemon was back: v1 ${answeredAfterUp('v1')}, v2 ${answeredAfterUp('v2')} answers`,
          `v1 container ${v1Fate}; v2 containers ${v2Now.length === 0 ? 'removed' : v2Now.map((c) => c.State).join('/')}${v2Gone ? ` (none running +${s1(v2Gone - faultAt)} s)` : ''}`,
          `docker-proxy pids alive after the restart: ${proxiesBefore.filter((p) => proxiesAfter.includes(p)).length} of ${proxiesBefore.length}`,
          `failed reconciles ${reconcileErrors ?? '?'}`,
          `5xx bodies: ${Object.entries(failed.reduce<Record<string, number>>((m, x) => { const k = `${x.status} ${(x.detail ?? x.error).trim().slice(0, 60)}`; m[k] = (m[k] ?? 0) + 1; return m; }, {})).map(([k, n]) => `"${k}" ×${n}`).join(', ') || 'none'}`,
          `phases: ${transitions.join(', ') || 'no change'}`,
        ].join('; '));
        return r;
      } finally {
        sampling = false;
        await sampler;
        await env.stop().catch(() => {});
        process.env.DOCKER_HOST = savedHost;
        if (savedHost === undefined) delete process.env.DOCKER_HOST;
        await daemon.destroy();
      }
    },
  };
}

// ------------------------------------------------------------------------------------------------

export const SCENARIOS: Scenario[] = [
  newestFails('500', 'newest answers 500', { mode: '500' }),
  newestCrashes('crash-kill', 'newest process killed (SIGKILL) while serving', 'kill'),
  newestCrashes('crash-exit', 'newest process exits by itself 3 s after start', 'exit'),
  newestFails('hang', 'newest hangs (responseTimeout 1s)', { mode: 'hang' }),
  newestFails('reset', 'newest accepts, reads, then resets', { mode: 'reset' }),
  newestFails('slow', 'newest answers after 2 s (responseTimeout 1s)', { mode: 'slow:2000' }, undefined, false),
  newestFails('bad-replica', 'replicas: 2, one bad (500)', { mode: 'bad-replica:{root}/bad-replica.lock', replicas: 2 }),
  newestFails('bad-path', 'newest fails only on /api/*', { mode: 'fail-path:/api' }, [
    { method: 'GET', keepAlive: true, paths: ['/', '/api/items'] },
    { method: 'GET', keepAlive: false },
    { method: 'POST', keepAlive: true },
    { method: 'POST', keepAlive: false, paths: ['/', '/api/orders'] },
  ], false),
  recovers,
  controllerRestart,
  controllerSigkill,
  sidecarKill,
  preflightFails(`${PREFLIGHT_PREFIX}500`, 'preflight: v2 answers 500 (GET-heavy load)', { mode: '500' }, 'PreflightErrors', GET_HEAVY),
  preflightFails(`${PREFLIGHT_PREFIX}500-post`, 'preflight: v2 answers 500 (POST-heavy load)', { mode: '500' }, 'PreflightErrors', POST_HEAVY),
  preflightFails(`${PREFLIGHT_PREFIX}hang`, 'preflight: v2 hangs (copies time out after 10 s)', { mode: 'hang' }, 'PreflightErrors', DEFAULT_WORKERS),
  preflightFails(`${PREFLIGHT_PREFIX}slow`, 'preflight: v2 answers after 200 ms (maxLatencyRatio 2.0)', { mode: 'slow:200' }, 'PreflightLatency', DEFAULT_WORKERS),
  preflightFails(`${PREFLIGHT_PREFIX}reset`, 'preflight: v2 accepts, reads, then resets', { mode: 'reset' }, 'PreflightErrors', DEFAULT_WORKERS),
  preflightFails(`${PREFLIGHT_PREFIX}bad-replica`, 'preflight: v2 replicas: 2, one bad (500)', { mode: 'bad-replica:{root}/bad-replica.lock', replicas: 2 }, 'PreflightErrors', DEFAULT_WORKERS),
  dockerScenario('docker-500', 'container answers 500 (molt-test-app:v3)', { image: 'v3' }, true),
  dockerScenario('docker-hang', 'container hangs (molt-test-app:hang, responseTimeout 1s)', { image: 'hang' }),
  dockerScenario('docker-kill', 'container killed while serving (docker kill)', { image: 'v2', kill: true }, true),
  dockerScenario('docker-exit', 'container exits 2 s after start (molt-test-app:v4)', { image: 'v4' }),
  daemonRestart('docker-daemon-restart', 'Docker daemon restarted (SIGTERM, start again) while v2 starts; no --live-restore', { liveRestore: false, userlandProxy: true }),
  daemonRestart('docker-daemon-restart-written', 'Docker daemon restarted right after the v2 file is written (before v2 is up); no --live-restore', { liveRestore: false, userlandProxy: true }, 'written'),
  daemonRestart('docker-daemon-restart-live', 'Docker daemon restarted (SIGTERM, start again) while v2 starts; dockerd --live-restore', { liveRestore: true, userlandProxy: true }, 'starting', true),
  daemonRestart('docker-daemon-restart-live-nat', 'Docker daemon restarted (SIGTERM, start again) while v2 starts; dockerd --live-restore --userland-proxy=false', { liveRestore: true, userlandProxy: false }),
];
