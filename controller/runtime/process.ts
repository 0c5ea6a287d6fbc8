// Local process runtime: one child process per replica, each in its own process group (detached), so
// instances outlive a crashed or restarted controller. The registry <stateDir>/processes.json is the
// source of truth for list(); liveness is checked against /proc every call, and a pid only counts as
// ours while its /proc start time matches the one recorded at spawn (pid reuse is not mistaken for our
// process, and never signalled).
//
// One controller per stateDir: writes are serialised within this Node process, not across processes.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Logger } from 'pino';
import type { AppVersion, ProcessRuntime } from '../appversion.js';
import { MoltError } from '../../common/errors.js';
import {
  LABEL_APP,
  LABEL_APPVERSION,
  LABEL_INDEX,
  LABEL_MANAGED_BY,
  LABEL_SPEC_HASH,
  LABEL_VERSION,
  type Instance,
  type RuntimeDriver,
} from './types.js';

const LOOPBACK = '127.0.0.1';
const DEFAULT_GRACE_MS = 10_000;
const KILL_POLL_MS = 25;
/** After SIGKILL, how long remove() waits for the group to disappear before giving up quietly. */
const KILL_SETTLE_MS = 2_000;

export interface ProcessDriverOptions {
  stateDir: string;
  controllerId: string;
  log?: Logger;
}

export interface ProcessRecord {
  id: string;
  pid: number;
  pgid: number;
  port: number;
  /** Field 22 of /proc/<pid>/stat (clock ticks since boot); null where /proc is unavailable. */
  startTime: number | null;
  /** Unix time (ms). */
  startedAt: number;
  command: string;
  args: string[];
  cwd: string;
  logFile: string;
  labels: Record<string, string>;
  /** Recorded when this controller (the parent) saw the exit; unknown after a controller restart. */
  exitCode?: number;
  exitedAt?: number;
}

interface Registry {
  version: 1;
  processes: Record<string, ProcessRecord>;
}

export interface ProcStat {
  state: string;
  ppid: number;
  pgrp: number;
  startTime: number;
}

/** Parse /proc/<pid>/stat; null when the pid does not exist (or /proc is unavailable). */
export function readProcStat(pid: number): ProcStat | null {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // "pid (comm) state ppid pgrp session … starttime(22) …"; comm may hold spaces and parentheses.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { state: rest[0]!, ppid: Number(rest[1]), pgrp: Number(rest[2]), startTime: Number(rest[19]) };
}

const hasProc = fs.existsSync('/proc/self/stat');

function isZombie(st: ProcStat): boolean {
  return st.state === 'Z' || st.state === 'X';
}

/** Is the process recorded in `rec` alive (same pid AND same start time, not a zombie)? */
export function recordAlive(rec: Pick<ProcessRecord, 'pid' | 'startTime'>): boolean {
  if (!hasProc || rec.startTime === null) {
    try {
      process.kill(rec.pid, 0);
      return true;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'EPERM';
    }
  }
  const st = readProcStat(rec.pid);
  return st !== null && st.startTime === rec.startTime && !isZombie(st);
}

/** Live (non-zombie) pids whose process group is pgid. */
function groupMembers(pgid: number): number[] {
  if (!hasProc) {
    try {
      process.kill(-pgid, 0);
      return [pgid];
    } catch {
      return [];
    }
  }
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const st = readProcStat(Number(d));
    if (st && st.pgrp === pgid && !isZombie(st)) out.push(Number(d));
  }
  return out;
}

/** Is the process group still the one we started? The leader with our start time proves it; with the
 *  leader gone, any surviving member does too (Linux does not reuse a pid while it names a live group),
 *  unless the leader's pid now belongs to someone else. */
function groupIsOurs(rec: ProcessRecord): boolean {
  if (rec.startTime === null || !hasProc) return recordAlive(rec);
  const leader = readProcStat(rec.pgid);
  if (leader && leader.startTime !== rec.startTime) return false;
  if (leader && !isZombie(leader)) return true;
  return groupMembers(rec.pgid).length > 0;
}

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, LOOPBACK, () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** Directory a relative workingDir is resolved against: the AppVersion file's directory when the
 *  resource came from a file, else the controller's cwd. */
export function resolveWorkingDir(av: AppVersion, workingDir: string | undefined): string {
  const src = av.source;
  const fromFile = src !== 'api' && src !== 'kubernetes' && (path.isAbsolute(src) || src.includes(path.sep) || /\.(ya?ml|json)$/i.test(src));
  const base = fromFile ? path.dirname(path.resolve(src)) : process.cwd();
  return workingDir === undefined ? base : path.resolve(base, workingDir);
}

function safeFileName(s: string): string {
  return s.replace(/[^a-zA-Z0-9_.-]+/g, '-');
}

// Serialise registry read-modify-write per file within this process.
const locks = new Map<string, Promise<unknown>>();
function withLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
  const prev = locks.get(key) ?? Promise.resolve();
  const next = prev.then(fn, fn);
  const settled = next.catch(() => {});
  locks.set(key, settled);
  void settled.then(() => {
    if (locks.get(key) === settled) locks.delete(key);
  });
  return next;
}

export class ProcessDriver implements RuntimeDriver {
  readonly kind = 'process' as const;
  readonly #stateDir: string;
  readonly #registryPath: string;
  readonly #logDir: string;
  readonly #controllerId: string;
  readonly #log: Logger | undefined;

  constructor(opts: ProcessDriverOptions) {
    this.#stateDir = path.resolve(opts.stateDir);
    this.#registryPath = path.join(this.#stateDir, 'processes.json');
    this.#logDir = path.join(this.#stateDir, 'logs');
    this.#controllerId = opts.controllerId;
    this.#log = opts.log;
  }

  get registryPath(): string {
    return this.#registryPath;
  }

  async #read(): Promise<Registry> {
    let text: string;
    try {
      text = await fsp.readFile(this.#registryPath, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, processes: {} };
      throw new MoltError('MOLT_ERR_PROCESS', `cannot read process registry ${this.#registryPath}: ${(err as Error).message}`, {}, { cause: err });
    }
    try {
      const reg = JSON.parse(text) as Registry;
      if (!reg || typeof reg.processes !== 'object' || reg.processes === null) throw new Error('missing "processes"');
      return reg;
    } catch (err) {
      throw new MoltError('MOLT_ERR_PROCESS', `process registry ${this.#registryPath} is corrupt: ${(err as Error).message}`, { file: this.#registryPath }, { cause: err });
    }
  }

  /** Read-modify-write, atomically replacing the file (tmp + rename). fn returns false when it changed
   *  nothing; then nothing is written. */
  #update(fn: (reg: Registry) => boolean): Promise<void> {
    return withLock(this.#registryPath, async () => {
      const reg = await this.#read();
      if (!fn(reg)) return;
      await fsp.mkdir(this.#stateDir, { recursive: true });
      const tmp = `${this.#registryPath}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
      await fsp.writeFile(tmp, JSON.stringify(reg, null, 2) + '\n', { mode: 0o600 });
      await fsp.rename(tmp, this.#registryPath);
    });
  }

  #toInstance(rec: ProcessRecord): Instance {
    const running = recordAlive(rec);
    const inst: Instance = {
      id: rec.id,
      runtime: 'process',
      app: rec.labels[LABEL_APP] ?? '',
      versionName: rec.labels[LABEL_APPVERSION] ?? '',
      specHash: rec.labels[LABEL_SPEC_HASH] ?? '',
      index: Number(rec.labels[LABEL_INDEX] ?? 0),
      endpoint: running ? { host: LOOPBACK, port: rec.port } : null,
      running,
      startedAt: rec.startedAt,
      detail: running ? `pid ${rec.pid}` : rec.exitCode !== undefined ? `exited (${rec.exitCode}); log ${rec.logFile}` : `pid ${rec.pid} not running (exit status unknown); log ${rec.logFile}`,
    };
    if (!running && rec.exitCode !== undefined) inst.exitCode = rec.exitCode;
    return inst;
  }

  async list(): Promise<Instance[]> {
    const reg = await withLock(this.#registryPath, () => this.#read());
    return Object.values(reg.processes)
      .filter((r) => r.labels[LABEL_MANAGED_BY] === this.#controllerId)
      .map((r) => this.#toInstance(r));
  }

  async create(av: AppVersion, index: number): Promise<Instance> {
    if (av.spec.runtime.kind !== 'process') {
      throw new MoltError('MOLT_ERR_PROCESS', `AppVersion ${av.metadata.name} has runtime "${av.spec.runtime.kind}", not process`, { file: av.source, path: 'spec.runtime' });
    }
    const spec: ProcessRuntime = av.spec.runtime.process;
    const cwd = resolveWorkingDir(av, spec.workingDir);
    if (!fs.statSync(cwd, { throwIfNoEntry: false })?.isDirectory()) {
      throw new MoltError('MOLT_ERR_PROCESS', `working directory ${cwd} does not exist`, { file: av.source, path: 'spec.runtime.process.workingDir' });
    }
    const port = await freeLoopbackPort();
    await fsp.mkdir(this.#logDir, { recursive: true });
    const logFile = path.join(this.#logDir, `${safeFileName(av.metadata.name)}-${index}.log`);
    const fd = fs.openSync(logFile, 'a');
    const id = safeFileName(`molt-${av.spec.app}-${av.metadata.name}-${index}-${randomBytes(2).toString('hex')}`);

    let child;
    try {
      fs.writeSync(fd, `--- molt: starting ${spec.command} ${spec.args.join(' ')} (port ${port}, cwd ${cwd}) at ${new Date().toISOString()}\n`);
      child = spawn(spec.command, spec.args, {
        cwd,
        // molt's PORT wins: the endpoint is only right if the process listens where we said.
        env: { ...process.env, ...spec.env, PORT: String(port) },
        detached: true,
        stdio: ['ignore', fd, fd],
      });
      await new Promise<void>((resolve, reject) => {
        child!.once('spawn', resolve);
        child!.once('error', reject);
      });
    } catch (err) {
      throw new MoltError('MOLT_ERR_PROCESS', `cannot start "${spec.command}" for ${av.metadata.name}: ${(err as Error).message}`, {
        file: av.source,
        path: 'spec.runtime.process.command',
      }, { cause: err });
    } finally {
      fs.closeSync(fd);
    }
    const pid = child.pid!;
    const st = hasProc ? readProcStat(pid) : null;
    const rec: ProcessRecord = {
      id,
      pid,
      pgid: pid,
      port,
      // No stat on Linux means it already exited: -1 never matches, so the pid is never taken for ours.
      startTime: st ? st.startTime : hasProc ? -1 : null,
      startedAt: Date.now(),
      command: spec.command,
      args: [...spec.args],
      cwd,
      logFile,
      labels: {
        [LABEL_APP]: av.spec.app,
        [LABEL_VERSION]: av.spec.version,
        [LABEL_APPVERSION]: av.metadata.name,
        [LABEL_SPEC_HASH]: av.specHash,
        [LABEL_INDEX]: String(index),
        [LABEL_MANAGED_BY]: this.#controllerId,
      },
    };

    // While this controller lives it is the parent: remember how the process ended.
    child.once('exit', (code, signal) => {
      // Shell convention for a signal death: 128 + signal number.
      const exitCode = code ?? 128 + (signal ? (os.constants.signals[signal] ?? 0) : 0);
      this.#update((reg) => {
        const r = reg.processes[id];
        if (!r || r.pid !== pid) return false; // removed meanwhile
        r.exitCode = exitCode;
        r.exitedAt = Date.now();
        return true;
      }).catch((err: unknown) => this.#log?.warn({ err, id }, 'could not record process exit'));
      this.#log?.info({ id, pid, code, signal }, 'process exited');
    });
    child.unref();

    await this.#update((reg) => {
      reg.processes[id] = rec;
      return true;
    });
    this.#log?.info({ id, pid, port, command: spec.command, cwd }, 'process started');
    return this.#toInstance(rec);
  }

  async remove(instance: Instance, opts: { graceMs?: number } = {}): Promise<void> {
    const graceMs = opts.graceMs ?? DEFAULT_GRACE_MS;
    const reg = await withLock(this.#registryPath, () => this.#read());
    const rec = reg.processes[instance.id];
    if (!rec) return;
    if (groupIsOurs(rec)) {
      signalGroup(rec.pgid, 'SIGTERM');
      const deadline = Date.now() + graceMs;
      while (groupMembers(rec.pgid).length > 0 && Date.now() < deadline) await sleep(KILL_POLL_MS);
      if (groupMembers(rec.pgid).length > 0) {
        this.#log?.warn({ id: rec.id, pgid: rec.pgid, graceMs }, 'process group ignored SIGTERM; sending SIGKILL');
        signalGroup(rec.pgid, 'SIGKILL');
        const killDeadline = Date.now() + KILL_SETTLE_MS;
        while (groupMembers(rec.pgid).length > 0 && Date.now() < killDeadline) await sleep(KILL_POLL_MS);
      }
    } else {
      this.#log?.debug({ id: rec.id, pid: rec.pid }, 'process already gone (or pid reused); not signalling');
    }
    await this.#update((r) => {
      if (!(instance.id in r.processes)) return false;
      delete r.processes[instance.id];
      return true;
    });
    this.#log?.info({ id: rec.id, pid: rec.pid }, 'process removed');
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
