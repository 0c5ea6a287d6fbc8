// Fault-scenario harness: a `molt up` (in-process, or a real child process), AppVersion files, the
// fault fixture's per-version request logs, and the analysis that turns client records + logs into
// one result row. Traffic only to 127.0.0.1.

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { runUp, type UpHandle } from '../../../controller/up.js';
import type { FailureMessage } from '../../../common/protocol.js';
import type { VersionStatus } from '../../../controller/controller-api.js';
import { appVersionYaml, FIXTURES, freePort, tempDir, waitFor } from '../molt.js';
import { describeError, isClientError, type RequestRecord } from './load.js';

export const FAULT_APP = path.join(FIXTURES, 'fault-app.mjs');
export const BIN = path.resolve(FIXTURES, '../../bin/molt.js');

export interface VersionOpts {
  name: string;
  version: string;
  /** Process runtime: fault-app MODE. */
  mode?: string;
  replicas?: number;
  /** Docker runtime: molt-test-app tag (v1, v2, v3, v4, hang). */
  image?: string;
  failurePolicy?: Record<string, string | number>;
  app?: string;
  /** A `preflight:` block, indented for spec (two spaces), added as is. */
  preflight?: string;
}

export function appVersion(root: string, o: VersionOpts): string {
  const policy = o.failurePolicy ? `  failurePolicy:\n${Object.entries(o.failurePolicy).map(([k, v]) => `    ${k}: ${v}`).join('\n')}\n` : '';
  const runtime = o.image
    ? `  docker:\n    image: molt-test-app\n    tag: ${o.image}\n    containerPort: 8080\n    replicas: ${o.replicas ?? 1}\n`
    : `  process:
    command: ${JSON.stringify(process.execPath)}
    args: [${JSON.stringify(FAULT_APP)}]
    replicas: ${o.replicas ?? 1}
    env:
      BODY: "${o.name}"
      MODE: "${o.mode ?? 'ok'}"
      REQ_LOG: ${JSON.stringify(reqLogPath(root, o.name))}
`;
  return appVersionYaml({ name: o.name, app: o.app, version: o.version, runtime, failurePolicy: policy + (o.preflight ?? '') });
}

export function reqLogPath(root: string, name: string): string {
  return path.join(root, 'reqlogs', `${name}.log`);
}

export interface LogLine {
  at: number;
  method: string;
  id: string;
}

export function readReqLog(root: string, name: string): LogLine[] {
  let text: string;
  try {
    text = fs.readFileSync(reqLogPath(root, name), 'utf8');
  } catch {
    return [];
  }
  return text.split('\n').filter(Boolean).map((l) => {
    const [at, method, id] = l.split(' ');
    return { at: Number(at), method: method!, id: id! };
  });
}

// ------------------------------------------------------------------------------------------------
// molt up, in this process

export class MoltEnv {
  readonly root = tempDir('molt-faults-');
  port = 0;
  handle!: UpHandle;
  /** Every failure report the sidecar sent, across controller restarts. */
  readonly failures: FailureMessage[] = [];

  async start(): Promise<this> {
    fs.mkdirSync(path.join(this.root, 'reqlogs'), { recursive: true });
    this.port = await freePort();
    await this.#up();
    return this;
  }

  async #up(): Promise<void> {
    const h = await runUp(['--dir', path.join(this.root, 'versions'), '--state', path.join(this.root, 'state'), '--listen', `127.0.0.1:${this.port}`, '--admin', '127.0.0.1:0', '--log-level', 'silent', '--drain', '300']);
    if (!h) throw new Error('runUp returned no handle');
    h.controller.control.on('failure', (m) => this.failures.push(m));
    this.handle = h;
  }

  write(o: VersionOpts): void {
    const dir = path.join(this.root, 'versions');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, `.${o.name}.tmp`), appVersion(this.root, o));
    fs.renameSync(path.join(dir, `.${o.name}.tmp`), path.join(dir, `${o.name}.yaml`));
  }

  unlink(name: string): void {
    fs.rmSync(path.join(this.root, 'versions', `${name}.yaml`), { force: true });
  }

  phase(name: string): string | undefined {
    return this.version(name)?.phase;
  }

  version(name: string): VersionStatus | undefined {
    for (const app of this.handle.controller.status().apps) for (const v of app.versions) if (v.name === name) return v;
    return undefined;
  }

  async waitPhase(name: string, phases: string[], timeoutMs = 30000): Promise<void> {
    await waitFor(`${name} to be ${phases.join('/')} (is ${this.phase(name)})`, () => phases.includes(this.phase(name) ?? ''), timeoutMs);
  }

  /** Wait until a plain GET is answered by `name`. */
  async waitServing(name: string, timeoutMs = 30000): Promise<void> {
    await waitFor(`${name} to serve`, async () => (await get(this.port)).servedBy === name, timeoutMs);
  }

  /** Controller crash in-process: leave the sidecar and instances running, stop reconciling. */
  async crashController(): Promise<void> {
    this.handle.supervisor.detach();
    await this.handle.controller.stop();
    this.handle.admin.close();
  }

  async restartController(): Promise<void> {
    await this.#up();
    await waitFor('sidecar to reconnect', () => this.handle.controller.status().sidecarConnected, 15000);
  }

  /** pids of a version's process instances, from the process registry. */
  processPids(name: string): number[] {
    const reg = JSON.parse(fs.readFileSync(path.join(this.root, 'state', 'processes.json'), 'utf8')) as { processes: Record<string, { pid: number; labels: Record<string, string> }> };
    return Object.values(reg.processes).filter((p) => Object.values(p.labels).includes(name)).map((p) => p.pid);
  }

  async stop(): Promise<void> {
    await this.handle.shutdown();
  }
}

export interface Answer {
  status: number;
  servedBy: string;
}

export function get(port: number, p = '/'): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: p, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => {
        const h = res.headers['x-served-by'];
        resolve({ status: res.statusCode ?? 0, servedBy: typeof h === 'string' ? h : (res.statusCode ?? 0) < 400 ? body.trim() : '' });
      });
    });
    req.on('error', reject);
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
    req.end();
  });
}

// ------------------------------------------------------------------------------------------------
// molt up as a real child process (`node bin/molt.js up`), for SIGKILL

export class MoltChild {
  child: ChildProcess | null = null;
  constructor(readonly root: string, readonly port: number, readonly adminPort: number) {}

  start(): void {
    const logFd = fs.openSync(path.join(this.root, 'molt-up.log'), 'a');
    this.child = spawn(process.execPath, [BIN, 'up', '--dir', path.join(this.root, 'versions'), '--state', path.join(this.root, 'state'), '--listen', `127.0.0.1:${this.port}`, '--admin', `127.0.0.1:${this.adminPort}`, '--log-level', 'info', '--drain', '300'], { stdio: ['ignore', logFd, logFd] });
    fs.closeSync(logFd);
  }

  async status(): Promise<{ sidecarConnected: boolean; apps: Array<{ versions: Array<{ name: string; phase: string }> }> }> {
    return new Promise((resolve, reject) => {
      http.get({ host: '127.0.0.1', port: this.adminPort, path: '/status', agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => { try { resolve(JSON.parse(body)); } catch (err) { reject(err); } });
      }).on('error', reject);
    });
  }

  async phase(name: string): Promise<string | undefined> {
    const st = await this.status();
    for (const app of st.apps) for (const v of app.versions) if (v.name === name) return v.phase;
    return undefined;
  }

  kill(signal: NodeJS.Signals): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return Promise.resolve();
    return new Promise((r) => { c.once('exit', () => r()); c.kill(signal); });
  }
}

/** Last resort after a failed scenario: stop the sidecar and instance process groups a state dir records. */
export function killLeftovers(stateDir: string): void {
  const pids: number[] = [];
  try { pids.push((JSON.parse(fs.readFileSync(path.join(stateDir, 'sidecar.pid'), 'utf8')) as { pid: number }).pid); } catch { /* none */ }
  try {
    const reg = JSON.parse(fs.readFileSync(path.join(stateDir, 'processes.json'), 'utf8')) as { processes: Record<string, { pgid: number }> };
    for (const p of Object.values(reg.processes)) pids.push(p.pgid);
  } catch { /* none */ }
  for (const pid of pids) {
    try { process.kill(-pid, 'SIGKILL'); } catch { /* gone */ }
  }
}

// ------------------------------------------------------------------------------------------------
// analysis

export interface ScenarioResult {
  id: string;
  title: string;
  runtime: string;
  requests: { GET: number; POST: number };
  errors: { GET: number; POST: number };
  /** "GET ECONNREFUSED": n, "POST HTTP 502": n */
  errorKinds: Record<string, number>;
  /** Answers per version (what clients saw). */
  answeredBy: Record<string, number>;
  /** Requests that reached the faulty version at or after the fault began (from its request log), null without a log. */
  badHits: number | null;
  /** Sidecar: rolledBackAt - firstFailureAt of the failure report, null when none was sent. */
  rollbackMs: number | null;
  /** First failure → the last request that reached (or was answered by) the faulty version. */
  toPreviousMs: number | null;
  /** POST ids that reached more than one version, or one version twice; null when not measurable. */
  duplicatedPosts: number | null;
  /** Sidecar kill: the window in which clients got connection refused / any error. */
  refusedMs?: number | null;
  outageMs?: number | null;
  finalPhase: string;
  notes: string[];
  /** Scenario-specific facts tests assert on (e.g. sidecarAdopted, badAfterRestart). */
  facts: Record<string, number | boolean>;
}

export interface AnalyzeInput {
  id: string;
  title: string;
  runtime: string;
  records: RequestRecord[];
  root: string;
  /** Versions with a fixture request log. */
  logged: string[];
  bad: string | null;
  /** When the fault began (file written, kill sent). */
  faultAt: number;
  failures: FailureMessage[];
  finalPhase: string;
  /** Ignore bad-version activity after this (e.g. a deliberate re-admission). */
  until?: number;
  notes?: string[];
}

export function analyze(i: AnalyzeInput): ScenarioResult {
  const until = i.until ?? Infinity;
  const requests = { GET: 0, POST: 0 };
  const errors = { GET: 0, POST: 0 };
  const errorKinds: Record<string, number> = {};
  const answeredBy: Record<string, number> = {};
  for (const r of i.records) {
    requests[r.method]++;
    if (isClientError(r)) {
      errors[r.method]++;
      const k = `${r.method} ${describeError(r)}`;
      if (process.env.FAULTS_DEBUG && r.error !== 'ECONNREFUSED') process.stderr.write(`[${i.id}] ${JSON.stringify(r)}\n`);
      errorKinds[k] = (errorKinds[k] ?? 0) + 1;
    } else {
      const v = r.servedBy || '?';
      answeredBy[v] = (answeredBy[v] ?? 0) + 1;
    }
  }

  const logs = new Map(i.logged.map((name) => [name, readReqLog(i.root, name)]));
  let duplicatedPosts: number | null = null;
  if (i.logged.length > 0) {
    const seen = new Map<string, number>();
    for (const lines of logs.values()) for (const l of lines) if (l.method === 'POST') seen.set(l.id, (seen.get(l.id) ?? 0) + 1);
    duplicatedPosts = [...seen.values()].filter((n) => n > 1).length;
  }

  const failure = i.bad ? i.failures.find((f) => f.versionId === i.bad) : undefined;
  if (process.env.FAULTS_DEBUG) process.stderr.write(`[${i.id}] faultAt ${i.faultAt} failure ${JSON.stringify(failure)}\n`);
  const rollbackMs = failure ? failure.rolledBackAt - failure.firstFailureAt : null;
  const firstFailure = failure?.firstFailureAt ?? i.faultAt;

  let badHits: number | null = null;
  let toPreviousMs: number | null = null;
  if (i.bad) {
    const badLog = logs.get(i.bad);
    const activity: number[] = [];
    if (badLog) {
      const hits = badLog.filter((l) => l.at >= i.faultAt && l.at <= until);
      badHits = hits.length;
      activity.push(...hits.map((l) => l.at));
    }
    for (const r of i.records) if (r.servedBy === i.bad && r.start >= i.faultAt && r.start <= until) activity.push(r.start);
    const last = activity.length ? Math.max(...activity) : firstFailure;
    toPreviousMs = Math.max(0, last - firstFailure);
  }
  return {
    id: i.id, title: i.title, runtime: i.runtime, requests, errors, errorKinds, answeredBy, badHits, rollbackMs, toPreviousMs, duplicatedPosts,
    finalPhase: i.finalPhase, notes: i.notes ?? [], facts: {},
  };
}

/** Sidecar kill: the connection-refused window and the whole error window after the kill. */
export function outage(records: RequestRecord[], killAt: number): { refusedMs: number | null; outageMs: number | null } {
  const after = records.filter((r) => r.end >= killAt);
  const refused = after.filter((r) => r.error === 'ECONNREFUSED');
  const failed = after.filter(isClientError);
  const refusedMs = refused.length ? Math.max(...refused.map((r) => r.end)) - Math.min(...refused.map((r) => r.start)) : 0;
  const outageMs = failed.length ? Math.max(...failed.map((r) => r.end)) - killAt : 0;
  return { refusedMs, outageMs };
}
