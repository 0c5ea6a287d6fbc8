// Keeps the sidecar process running for `molt up`.
//
// The sidecar is started detached, in its own process group, so that it keeps serving when the
// controller crashes (static stability). Its pid is recorded in the state dir; a restarted
// controller adopts a live sidecar instead of starting a second one on the same port. A sidecar
// that dies is restarted at once (then with backoff if it keeps dying). The listening socket is
// bound here and held across restarts (listen-socket.ts), so while a sidecar restarts new
// connections wait in the kernel's backlog instead of being refused.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { parseHostPort } from '../common/args.js';
import { bindListenSocket, type HeldListenSocket } from './listen-socket.js';

export interface SidecarSupervisorOptions {
  stateDir: string;
  listen: string;
  controlSocket: string;
  workers: number;
  logLevel: string;
  log: Logger;
}

interface PidFile {
  pid: number;
  listen: string;
  startTime: string;
}

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../sidecar/main.js'); // not bin/molt.js: the CLI graph costs a restart ~0.5 s

export class SidecarSupervisor {
  #opts: SidecarSupervisorOptions;
  #pidFile: string;
  #logFile: string;
  #pid = 0;
  #stopping = false;
  #poll: NodeJS.Timeout | null = null;
  #restarts: number[] = [];
  #restartTimer: NodeJS.Timeout | null = null;
  #held: HeldListenSocket | null = null;
  /** Resolves the next time a sidecar process has been (re)started. */
  onStart: ((pid: number, adopted: boolean) => void) | null = null;

  constructor(opts: SidecarSupervisorOptions) {
    this.#opts = opts;
    this.#pidFile = path.join(opts.stateDir, 'sidecar.pid');
    this.#logFile = path.join(opts.stateDir, 'logs', 'sidecar.log');
  }

  get pid(): number {
    return this.#pid;
  }

  start(): void {
    const adopted = this.#adopt();
    if (adopted) {
      this.#pid = adopted;
      this.#opts.log.info({ pid: adopted }, 'adopted the running sidecar');
      this.onStart?.(adopted, true);
    } else {
      this.#spawn();
    }
    // The sidecar is not our child after adoption, and even a child's 'exit' only fires while we
    // hold the handle: a cheap liveness poll covers both.
    this.#poll = setInterval(() => this.#check(), 100);
    this.#poll.unref();
  }

  /** Ask the sidecar to drain and exit; wait up to graceMs, then kill it. */
  async stop(graceMs = 10000): Promise<void> {
    this.#stopping = true;
    if (this.#poll) clearInterval(this.#poll);
    if (this.#restartTimer) clearTimeout(this.#restartTimer);
    this.#release(); // first: once the draining sidecar closes its copy, connections are refused, not queued

    const pid = this.#pid;
    if (!pid || !alive(pid)) return this.#forget();
    try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ }
    const deadline = Date.now() + graceMs;
    while ((alive(pid) || groupAlive(pid)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    if (alive(pid) || groupAlive(pid)) {
      this.#opts.log.warn({ pid }, 'sidecar did not exit in time; killing it');
      // The whole group: with --workers N the workers must go too.
      try { process.kill(-pid, 'SIGKILL'); } catch { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
    }
    this.#forget();
  }

  /** Leave the sidecar running (controller crash-style exit, used by tests of adoption). */
  detach(): void {
    this.#stopping = true;
    if (this.#poll) clearInterval(this.#poll);
    if (this.#restartTimer) clearTimeout(this.#restartTimer);
    this.#release();
  }

  /** Is the listening socket held here (restarts queue connections instead of refusing them)? */
  get holdsListenSocket(): boolean {
    return this.#held !== null;
  }

  #release(): void {
    this.#held?.close();
    this.#held = null;
  }

  /** Bind the listening socket (once it succeeds, it is kept); if that fails, say why and let the sidecar bind itself. */
  #listenSocket(): HeldListenSocket | null {
    if (this.#held !== null) return this.#held;
    let r: ReturnType<typeof bindListenSocket>;
    try {
      const { host, port } = parseHostPort(this.#opts.listen, 'listen');
      r = bindListenSocket(host, port);
    } catch (err) {
      r = { socket: null, reason: (err as Error).message };
    }
    if (r.socket === null) {
      this.#opts.log.warn({ listen: this.#opts.listen, reason: r.reason }, 'sidecar binds its own socket: connections are refused while it restarts');
      return null;
    }
    this.#held = r.socket;
    return r.socket;
  }

  #check(): void {
    if (this.#stopping || !this.#pid || this.#restartTimer) return;
    if (alive(this.#pid)) return;
    this.#opts.log.error({ pid: this.#pid }, 'sidecar exited; restarting it');
    this.#pid = 0;
    const now = Date.now();
    this.#restarts = this.#restarts.filter((t) => now - t < 60000);
    // Restart at once; back off only when it keeps dying (crash loop).
    const delay = this.#restarts.length < 3 ? 0 : Math.min(250 * 2 ** (this.#restarts.length - 3), 10000);
    this.#restarts.push(now);
    if (delay === 0) this.#spawn();
    else this.#restartTimer = setTimeout(() => { this.#restartTimer = null; this.#spawn(); }, delay);
  }

  #spawn(): void {
    if (this.#stopping) return;
    fs.mkdirSync(path.dirname(this.#logFile), { recursive: true });
    const out = fs.openSync(this.#logFile, 'a');
    const args = [BIN, '--listen', this.#opts.listen, '--control', this.#opts.controlSocket, '--workers', String(this.#opts.workers), '--log-level', this.#opts.logLevel];
    const held = this.#listenSocket();
    if (held !== null) args.push('--listen-fd', '3');
    const child = spawn(process.execPath, args, { detached: true, stdio: held !== null ? ['ignore', out, out, held.fd] : ['ignore', out, out] });
    fs.closeSync(out);
    child.on('error', (err) => this.#opts.log.error({ err }, 'could not start the sidecar'));
    // Reap the child when it exits while we are alive (no zombie left for the liveness check).
    child.on('exit', (code, signal) => {
      if (!this.#stopping) this.#opts.log.warn({ pid: child.pid, code, signal }, 'sidecar process exited');
      setImmediate(() => this.#check());
    });
    child.unref();
    if (!child.pid) return;
    this.#pid = child.pid;
    const rec: PidFile = { pid: child.pid, listen: this.#opts.listen, startTime: procStartTime(child.pid) };
    fs.writeFileSync(this.#pidFile, JSON.stringify(rec) + '\n');
    this.#opts.log.info({ pid: child.pid, listen: this.#opts.listen, log: this.#logFile }, 'sidecar started');
    this.onStart?.(child.pid, false);
  }

  #adopt(): number {
    let rec: PidFile;
    try {
      rec = JSON.parse(fs.readFileSync(this.#pidFile, 'utf8')) as PidFile;
    } catch {
      return 0;
    }
    // Same pid AND same start time: not a recycled pid belonging to something else.
    if (!rec.pid || !alive(rec.pid) || procStartTime(rec.pid) !== rec.startTime) return 0;
    if (rec.listen !== this.#opts.listen) {
      this.#opts.log.warn({ pid: rec.pid, was: rec.listen, now: this.#opts.listen }, 'a sidecar from an earlier run listens elsewhere; stopping it');
      try { process.kill(rec.pid, 'SIGTERM'); } catch { /* gone */ }
      return 0;
    }
    return rec.pid;
  }

  #forget(): void {
    this.#pid = 0;
    try { fs.unlinkSync(this.#pidFile); } catch { /* already gone */ }
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie (exited, not yet reaped) still answers kill(0).
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return true;
  }
}

/** Any process left in the sidecar's process group (its workers)? */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

function procStartTime(pid: number): string {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? '';
  } catch {
    return '';
  }
}
