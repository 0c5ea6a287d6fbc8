// Restarting the development Docker daemon for the docker-daemon-restart scenarios. Only ever the one
// daemon under /tmp/molt-docker (pidfile checked against its command line before any signal); it is
// always started again with exactly the same flags, plus --live-restore and --userland-proxy=false
// when asked (DaemonMode).

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import Dockerode from 'dockerode';

export const DAEMON_ROOT = '/tmp/molt-docker';
export const DAEMON_SOCKET = `${DAEMON_ROOT}/docker.sock`;
const PIDFILE = `${DAEMON_ROOT}/docker.pid`;
const LOG = `${DAEMON_ROOT}/dockerd.log`;
const FLAGS = ['--data-root', `${DAEMON_ROOT}/data`, '--exec-root', `${DAEMON_ROOT}/exec`, '-H', `unix://${DAEMON_SOCKET}`, '--pidfile', PIDFILE];
const STOP_TIMEOUT_MS = 60_000;
const START_TIMEOUT_MS = 60_000;

function cmdline(pid: number): string[] | null {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return null;
  }
}

/** pid of THE development daemon (pidfile + matching command line), or null when it is not running. */
export function daemonPid(): number | null {
  let pid: number;
  try {
    pid = Number(fs.readFileSync(PIDFILE, 'utf8').trim());
  } catch {
    return null;
  }
  const argv = cmdline(pid);
  if (!argv || !argv[0]?.endsWith('dockerd')) return null;
  if (!argv.includes(`${DAEMON_ROOT}/data`) || !argv.includes(`unix://${DAEMON_SOCKET}`)) {
    throw new Error(`pid ${pid} from ${PIDFILE} is not the development daemon: ${argv.join(' ')}`);
  }
  return pid;
}

/** How the daemon runs: containers kept across a daemon restart (--live-restore), and ports
 *  published by iptables DNAT instead of a docker-proxy process per port (--userland-proxy=false). */
export interface DaemonMode { liveRestore: boolean; userlandProxy: boolean }

function modeFlags(m: DaemonMode): string[] {
  return [...(m.liveRestore ? ['--live-restore'] : []), ...(m.userlandProxy ? [] : ['--userland-proxy=false'])];
}

export function daemonMode(): DaemonMode | null {
  const pid = daemonPid();
  if (pid === null) return null;
  const argv = cmdline(pid) ?? [];
  return { liveRestore: argv.includes('--live-restore'), userlandProxy: !argv.includes('--userland-proxy=false') };
}

async function ping(timeoutMs = 1000): Promise<boolean> {
  const docker = new Dockerode({ socketPath: DAEMON_SOCKET, timeout: timeoutMs });
  try {
    await docker.ping();
    return true;
  } catch {
    return false;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** SIGTERM the daemon; resolves with the time it exited. */
export async function stopDaemon(): Promise<number> {
  const pid = daemonPid();
  if (pid === null) return Date.now();
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + STOP_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (cmdline(pid) === null) return Date.now();
    await sleep(20);
  }
  throw new Error(`dockerd ${pid} did not exit within ${STOP_TIMEOUT_MS} ms of SIGTERM`);
}

/** Start the daemon (detached, its own session, log appended as before); resolves when it answers. */
export async function startDaemon(mode: DaemonMode): Promise<number> {
  if (daemonPid() !== null) throw new Error('dockerd is already running');
  const env = { ...process.env };
  delete env.DOCKER_HOST;
  const logFd = fs.openSync(LOG, 'a');
  const child = spawn('dockerd', [...FLAGS, ...modeFlags(mode)], { detached: true, stdio: ['ignore', logFd, logFd], env, cwd: DAEMON_ROOT });
  fs.closeSync(logFd);
  child.unref();
  let exited = '';
  child.once('exit', (code, signal) => (exited = `dockerd exited (${signal ?? code}); see ${LOG}`));
  child.once('error', (err) => (exited = `dockerd did not start: ${err.message}`));
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (exited) throw new Error(exited);
    if (fs.existsSync(DAEMON_SOCKET) && (await ping())) return Date.now();
    await sleep(50);
  }
  throw new Error(`dockerd did not answer within ${START_TIMEOUT_MS} ms`);
}

/** Make sure the daemon runs in `mode` (restarting it when the mode differs). */
export async function ensureDaemon(mode: DaemonMode): Promise<void> {
  const now = daemonMode();
  if (now !== null && now.liveRestore === mode.liveRestore && now.userlandProxy === mode.userlandProxy && (await ping(3000))) return;
  if (now !== null) await stopDaemon();
  await startDaemon(mode);
}
