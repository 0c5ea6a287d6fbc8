// A PRIVATE Docker daemon for the docker-daemon-restart scenarios: started by the scenario itself with
// its own --data-root, --exec-root, socket and pidfile under /tmp/molt-fault-dockerd-<pid>-<n>, and its
// own bridge interface, so that restarting it can never touch the shared daemon other tests and agents
// use (nor its containers or its docker0). Only the process this object spawned is ever signalled.
//
// Networking: the private daemon uses a bridge of its own (created here, deleted in destroy()) and,
// with the userland proxy, --iptables=false: it adds no iptables rules, so the shared daemon's rules are
// left alone. Ports published on 127.0.0.1 are served by its docker-proxy processes.
// (userlandProxy: false needs iptables DNAT: that mode lets the private daemon manage iptables rules;
// bench only, never in CI.)
//
// Needs root, or passwordless sudo (as .ci/run uses for dockerd).

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import Dockerode from 'dockerode';

/** How the daemon runs: containers kept across a daemon restart (--live-restore), and ports
 *  published by iptables DNAT instead of a docker-proxy process per port (--userland-proxy=false). */
export interface DaemonMode { liveRestore: boolean; userlandProxy: boolean }

const STOP_TIMEOUT_MS = 30_000;
const START_TIMEOUT_MS = 60_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let counter = 0;

/** Why a private daemon cannot run here, or null when it can. */
export function privateDaemonUnavailable(): string | null {
  const has = (cmd: string) => ['/usr/sbin', '/usr/bin', '/sbin', '/bin', ...(process.env.PATH ?? '').split(':')].some((d) => fs.existsSync(path.join(d, cmd)));
  if (!has('dockerd')) return 'dockerd is not installed';
  if (!has('ip')) return 'the ip tool (iproute2) is not installed';
  if (process.getuid?.() === 0) return null;
  try {
    execFileSync('sudo', ['-n', 'true'], { stdio: 'ignore', timeout: 5000 });
    return null;
  } catch {
    return 'not root and no passwordless sudo (a private dockerd needs root)';
  }
}

function asRoot(cmd: string, args: string[]): [string, string[]] {
  return process.getuid?.() === 0 ? [cmd, args] : ['sudo', ['-n', cmd, ...args]];
}

function run(cmd: string, args: string[]): void {
  const [c, a] = asRoot(cmd, args);
  execFileSync(c, a, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 30_000 });
}

export class PrivateDaemon {
  readonly root: string;
  readonly socketPath: string;
  readonly docker: Dockerode;
  /** Its own bridge (IFNAMSIZ: at most 15 characters) and subnet. */
  readonly bridge: string;
  readonly #cidr: string;
  #child: ChildProcess | null = null;
  #exited: Promise<void> = Promise.resolve();
  #bridgeCreated = false;

  constructor(readonly mode: DaemonMode) {
    const n = counter++;
    this.root = `/tmp/molt-fault-dockerd-${process.pid}-${n}`;
    this.socketPath = path.join(this.root, 'docker.sock');
    this.docker = new Dockerode({ socketPath: this.socketPath, timeout: 10_000 });
    this.bridge = `moltf${process.pid % 100000}${n}`.slice(0, 15);
    this.#cidr = `10.213.${(process.pid + n) % 250}.1/24`;
  }

  get address(): string {
    return `unix://${this.socketPath}`;
  }

  #flags(): string[] {
    return [
      '--data-root', path.join(this.root, 'data'), '--exec-root', path.join(this.root, 'exec'),
      '-H', this.address, '--pidfile', path.join(this.root, 'docker.pid'),
      '--bridge', this.bridge, `--iptables=${this.mode.userlandProxy ? 'false' : 'true'}`,
      ...(this.mode.liveRestore ? ['--live-restore'] : []), ...(this.mode.userlandProxy ? [] : ['--userland-proxy=false']),
    ];
  }

  async #ping(timeoutMs = 2000): Promise<boolean> {
    const d = new Dockerode({ socketPath: this.socketPath, timeout: timeoutMs });
    try {
      await d.ping();
      return true;
    } catch {
      return false;
    }
  }

  /** Start (or start again) the daemon; resolves with the time it first answered. */
  async start(): Promise<number> {
    if (this.#child) throw new Error(`private dockerd ${this.root} is already running`);
    fs.mkdirSync(this.root, { recursive: true });
    if (!this.#bridgeCreated) {
      try { run('ip', ['link', 'del', this.bridge]); } catch { /* not there: fine */ }
      run('ip', ['link', 'add', 'name', this.bridge, 'type', 'bridge']);
      this.#bridgeCreated = true;
      run('ip', ['addr', 'add', this.#cidr, 'dev', this.bridge]);
      run('ip', ['link', 'set', this.bridge, 'up']);
    }
    const env = { ...process.env };
    delete env.DOCKER_HOST;
    const log = path.join(this.root, 'dockerd.log');
    const logFd = fs.openSync(log, 'a');
    const [cmd, args] = asRoot('dockerd', this.#flags());
    const child = spawn(cmd, args, { stdio: ['ignore', logFd, logFd], env, cwd: this.root });
    fs.closeSync(logFd);
    this.#child = child;
    // If this process ends mid-scenario, the private daemon ends with it.
    const onExit = () => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM'); };
    process.once('exit', onExit);
    child.once('exit', () => process.off('exit', onExit));
    let exited = '';
    this.#exited = new Promise((resolve) => child.once('exit', (code, signal) => {
      exited = `private dockerd exited (${signal ?? code}); see ${log}`;
      if (this.#child === child) this.#child = null;
      resolve();
    }));
    child.once('error', (err) => (exited = `private dockerd did not start: ${err.message}`));
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (exited) throw new Error(`${exited}\n${tail(log)}`);
      if (fs.existsSync(this.socketPath) && (await this.#ping())) return Date.now();
      await sleep(50);
    }
    await this.stop().catch(() => {});
    throw new Error(`private dockerd did not answer within ${START_TIMEOUT_MS} ms\n${tail(log)}`);
  }

  /** SIGTERM the daemon this object started (never any other); resolves with the time it exited. */
  async stop(): Promise<number> {
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return Date.now();
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await this.#exited;
    clearTimeout(timer);
    return Date.now();
  }

  /** Remove every container, stop the daemon, delete the bridge and the data. Safe to call twice. */
  async destroy(): Promise<void> {
    if (this.#child && (await this.#ping())) {
      const list = await this.docker.listContainers({ all: true }).catch(() => []);
      await Promise.all(list.map((c) => this.docker.getContainer(c.Id).remove({ force: true }).catch(() => {})));
    }
    await this.stop();
    if (this.#bridgeCreated) {
      try { run('ip', ['link', 'del', this.bridge]); } catch { /* gone */ }
      this.#bridgeCreated = false;
    }
    // dockerd bind-mounts its data root onto itself and leaves that mount behind when it exits.
    try { run('umount', [path.join(this.root, 'data')]); } catch { /* not mounted */ }
    try { run('rm', ['-rf', '--one-file-system', this.root]); } catch { /* a leftover mount: leave the folder */ }
  }
}

function tail(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-15).join('\n');
  } catch {
    return '';
  }
}
