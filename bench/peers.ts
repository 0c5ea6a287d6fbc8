// The processes the benchmark measures: an nginx backend, the molt sidecar and the peer proxies
// (nginx, HAProxy, Caddy, npm http-proxy). Every config, pid file and log lives under one temp
// directory; every process listens on 127.0.0.1 on a port picked by binding port 0, runs in the
// foreground as our child, and is stopped with SIGTERM (SIGKILL after a grace period).

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { RAISE_NOFILE } from './wrk.js';

const HERE = path.dirname(fileURLToPath(import.meta.url)); // dist/bench
export const SIDECAR_MAIN = path.resolve(HERE, '..', 'sidecar', 'main.js');
const HTTP_PROXY_SERVER = path.resolve(HERE, 'http-proxy-server.js');
const RAW_PIPE_SERVER = path.resolve(HERE, 'raw-pipe-server.js');
const SHADOW_CONTROLLER = path.resolve(HERE, 'shadow-controller.js');

/** Is `cmd` on PATH? */
export function hasCommand(cmd: string): boolean {
  return (process.env.PATH ?? '').split(path.delimiter).some((d) => {
    try {
      fs.accessSync(path.join(d, cmd), fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

export class PeerError extends Error {
  readonly code = 'MOLT_ERR_BENCH_PEER';
  constructor(message: string, readonly peer: string, readonly logFile?: string) {
    super(message);
    this.name = 'PeerError';
  }
}

/** A port that was free a moment ago (bind 127.0.0.1:0, read it, close). */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address() as net.AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

const live = new Set<Peer>();

/** One child process the benchmark started. */
export class Peer {
  readonly name: string;
  readonly port: number;
  readonly logFile: string;
  readonly child: ChildProcess;
  #exited: Promise<void>;

  constructor(name: string, port: number, logFile: string, cmd: string, args: string[], env: NodeJS.ProcessEnv = {}) {
    this.name = name;
    this.port = port;
    this.logFile = logFile;
    const fd = fs.openSync(logFile, 'a');
    // Through sh to raise the soft fd limit first (5,000-connection runs); exec keeps the pid.
    this.child = spawn('sh', ['-c', `${RAISE_NOFILE}; exec "$@"`, cmd, cmd, ...args], { stdio: ['ignore', fd, fd], env: { ...process.env, ...env } });
    fs.closeSync(fd);
    this.#exited = once(this.child, 'exit').then(() => undefined, () => undefined);
    this.child.on('error', () => {}); // surfaced by waitReady (the port never answers)
    live.add(this);
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/`;
  }

  /** Waits until GET / answers 200 (the process is up and, for proxies, reaches the backend). */
  async waitReady(timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        throw new PeerError(`${this.name} exited (${this.child.exitCode ?? this.child.signalCode}) before it was ready; see ${this.logFile}:\n${tail(this.logFile)}`, this.name, this.logFile);
      }
      const status = await probe(this.port);
      if (status === 200) return;
      last = status === null ? 'no answer' : `status ${status}`;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new PeerError(`${this.name} not ready on port ${this.port} after ${timeoutMs} ms (${last}); see ${this.logFile}:\n${tail(this.logFile)}`, this.name, this.logFile);
  }

  async stop(graceMs = 12_000): Promise<void> {
    live.delete(this);
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.#exited;
    clearTimeout(t);
  }
}

/** Stops every peer still running (used on normal exit and on SIGINT). */
export async function stopAll(): Promise<void> {
  await Promise.all([...live].map((p) => p.stop(3000)));
}

export interface CpuTimes {
  /** Seconds of user and system CPU, summed over a process and its descendants. */
  user: number;
  sys: number;
}

const CLK_TCK = 100; // USER_HZ; 100 on every Linux we run on

function readStat(pid: number): { ppid: number; utime: number; stime: number } | null {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' '); // f[0] = state (field 3)
    return { ppid: Number(f[1]), utime: Number(f[11]), stime: Number(f[12]) };
  } catch {
    return null;
  }
}

/** `pid` and its live descendants (nginx/molt workers, up to 4 levels), from /proc. */
function treeStats(pid: number): Array<{ pid: number; utime: number; stime: number }> {
  const parent = new Map<number, number>();
  const stats = new Map<number, { utime: number; stime: number }>();
  for (const name of fs.readdirSync('/proc')) {
    const p = Number(name);
    if (!Number.isInteger(p)) continue;
    const st = readStat(p);
    if (!st) continue;
    parent.set(p, st.ppid);
    stats.set(p, st);
  }
  const out: Array<{ pid: number; utime: number; stime: number }> = [];
  for (const [p, st] of stats) {
    let q: number | undefined = p;
    for (let depth = 0; q !== undefined && q > 1 && depth < 4; depth++) {
      if (q === pid) {
        out.push({ pid: p, ...st });
        break;
      }
      q = parent.get(q);
    }
  }
  return out;
}

/**
 * CPU time used so far by `pid` and its live descendants (nginx/molt workers), from /proc
 * (Linux only; zeros elsewhere). Resolution 10 ms: enough over a multi-second wrk run.
 */
export function cpuTimes(pid: number | undefined): CpuTimes {
  if (pid === undefined || process.platform !== 'linux') return { user: 0, sys: 0 };
  let user = 0;
  let sys = 0;
  for (const st of treeStats(pid)) {
    user += st.utime;
    sys += st.stime;
  }
  return { user: user / CLK_TCK, sys: sys / CLK_TCK };
}

/** The kernel's count of connections dropped because a listen queue was full (TcpExt ListenOverflows, all sockets). */
export function listenOverflows(): number {
  try {
    const lines = fs.readFileSync('/proc/net/netstat', 'utf8').split('\n');
    for (let i = 0; i + 1 < lines.length; i += 2) {
      if (!lines[i].startsWith('TcpExt:')) continue;
      const names = lines[i].split(' ');
      const values = lines[i + 1].split(' ');
      const k = names.indexOf('ListenOverflows');
      return k >= 0 ? Number(values[k]) : 0;
    }
  } catch {
    // not Linux
  }
  return 0;
}

/** net.core.somaxconn: the kernel's cap on any listen backlog ('?' where unreadable). */
export function somaxconn(): string {
  try {
    return fs.readFileSync('/proc/sys/net/core/somaxconn', 'utf8').trim();
  } catch {
    return '?';
  }
}

/** Resident memory (VmRSS) of `pid` and its live descendants, in KiB (0 if unknown). */
export function rssKiB(pid: number | undefined): number {
  if (pid === undefined || process.platform !== 'linux') return 0;
  let kb = 0;
  for (const st of treeStats(pid)) {
    try {
      const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${st.pid}/status`, 'utf8'));
      if (m) kb += Number(m[1]);
    } catch {
      // exited meanwhile
    }
  }
  return kb;
}

function probe(port: number): Promise<number | null> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false, timeout: 1000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? null));
      res.on('error', () => resolve(null));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(null));
  });
}

function tail(file: string, lines = 15): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

// ---- nginx ----

function nginxMain(dir: string, workers: number, http: string): string {
  return `worker_processes ${workers};
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
daemon off;
worker_rlimit_nofile 20000;
events { worker_connections 16384; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_requests 10000000;
  keepalive_timeout 65s;
  client_max_body_size 8m;
  client_body_buffer_size 2m;
${http}
}
`;
}

function startNginx(name: string, root: string, port: number, workers: number, httpBlock: string): Peer {
  const dir = path.join(root, name);
  fs.mkdirSync(dir, { recursive: true });
  const conf = path.join(dir, 'nginx.conf');
  fs.writeFileSync(conf, nginxMain(dir, workers, httpBlock));
  return new Peer(name, port, path.join(dir, 'stderr.log'), 'nginx', ['-p', dir, '-e', path.join(dir, 'error.log'), '-c', conf]);
}

/**
 * The backend: nginx answering every request with a small static body, one server block per
 * port (ports[0] = "v1", ports[1] = "v2" when given). Each peer proxy and molt sit in front of it.
 */
export function startNginxBackend(root: string, name: string, ports: number[], workers = 1): Peer {
  const files = path.join(root, `${name}-files`);
  fs.mkdirSync(files, { recursive: true });
  for (const [f, n] of Object.entries(BODY_FILES)) {
    const file = path.join(files, f);
    if (!fs.existsSync(file)) fs.writeFileSync(file, Buffer.alloc(n, 'molt'));
  }
  fs.chmodSync(files, 0o755);
  const servers = ports.map((p, i) => `  server {
    listen 127.0.0.1:${p} reuseport backlog=4096;
    default_type text/plain;
    sendfile on;
    location / { return 200 "hello from molt bench backend v${i + 1}\\n"; }
    location = /64k { default_type application/octet-stream; alias ${files}/64k; }
    location = /1m { default_type application/octet-stream; alias ${files}/1m; }
    location = /upload { return 200 "uploaded to molt bench backend v${i + 1}\\n"; }
  }`).join('\n');
  return startNginx(name, root, ports[0], workers, servers);
}

/** listen(2) backlog of every proxy under test: the molt sidecar's default (sidecar/proxy.ts
 *  DEFAULT_BACKLOG), set explicitly for nginx and the raw pipe (both default to 511). Linux caps it
 *  at net.core.somaxconn. */
export const PROXY_BACKLOG = 4096;

/** Static response bodies the backend serves, by path: GET /64k, GET /1m. */
export const BODY_FILES: Record<string, number> = { '64k': 64 * 1024, '1m': 1024 * 1024 };

export type NginxProxyMode = 'plain' | 'split' | 'mirror';

/**
 * nginx as a reverse proxy with upstream keep-alive. `plain`: one upstream. `split`: two upstreams
 * round-robin (nginx's nearest equivalent of a 50 % GRADUAL split). `mirror`: every request goes to
 * upstreams[1] and is mirrored to upstreams[0] (nginx's equivalent of CONCURRENT).
 */
export function startNginxProxy(root: string, name: string, port: number, upstreams: number[], workers = 1, mode: NginxProxyMode = 'plain'): Peer {
  const pool = (id: string, ports: number[]) => `  upstream ${id} {
${ports.map((p) => `    server 127.0.0.1:${p};`).join('\n')}
    keepalive 256;
    keepalive_requests 10000000;
  }`;
  const proxied = `proxy_http_version 1.1; proxy_set_header Connection "";`;
  // The same listen backlog as the molt sidecar's default and the raw pipe (nginx's default is 511):
  // 5,000 connections opened at once must not overflow one proxy's queue and not another's.
  const listen = `listen 127.0.0.1:${port} backlog=${PROXY_BACKLOG};`;
  let http: string;
  if (mode === 'mirror') {
    http = `${pool('primary', [upstreams[1]])}
${pool('shadow', [upstreams[0]])}
  server {
    ${listen}
    location / { mirror /__mirror; proxy_pass http://primary; ${proxied} }
    location = /__mirror { internal; proxy_pass http://shadow$request_uri; ${proxied} }
  }`;
  } else {
    http = `${pool('backend', mode === 'split' ? upstreams.slice(0, 2) : [upstreams[0]])}
  server {
    ${listen}
    location / { proxy_pass http://backend; ${proxied} }
  }`;
  }
  return startNginx(name, root, port, workers, http);
}

// ---- HAProxy ----

export function startHaproxy(root: string, name: string, port: number, upstream: number): Peer {
  const dir = path.join(root, name);
  fs.mkdirSync(dir, { recursive: true });
  const conf = path.join(dir, 'haproxy.cfg');
  fs.writeFileSync(conf, `global
  nbthread 1
  maxconn 8192
  pidfile ${dir}/haproxy.pid

defaults
  mode http
  option http-keep-alive
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  timeout http-keep-alive 30s

frontend fe
  bind 127.0.0.1:${port}
  default_backend be

backend be
  http-reuse always
  server s1 127.0.0.1:${upstream}
`);
  return new Peer(name, port, path.join(dir, 'stderr.log'), 'haproxy', ['-db', '-f', conf]);
}

// ---- Caddy ----

export function startCaddy(root: string, name: string, port: number, upstream: number): Peer {
  const dir = path.join(root, name);
  fs.mkdirSync(dir, { recursive: true });
  const conf = path.join(dir, 'caddy.json');
  fs.writeFileSync(conf, JSON.stringify({
    admin: { disabled: true }, // no admin endpoint on :2019 (other sessions share this host)
    logging: { logs: { default: { level: 'ERROR' } } },
    apps: {
      http: {
        servers: {
          bench: {
            listen: [`127.0.0.1:${port}`],
            automatic_https: { disable: true },
            routes: [{ handle: [{ handler: 'reverse_proxy', upstreams: [{ dial: `127.0.0.1:${upstream}` }] }] }],
          },
        },
      },
    },
  }, null, 2));
  return new Peer(name, port, path.join(dir, 'stderr.log'), 'caddy', ['run', '--config', conf], {
    GOMAXPROCS: '1',
    HOME: dir,
    XDG_CONFIG_HOME: path.join(dir, 'config'),
    XDG_DATA_HOME: path.join(dir, 'data'),
  });
}

// ---- npm http-proxy ----

export function startHttpProxy(root: string, name: string, port: number, upstream: number): Peer {
  const dir = path.join(root, name);
  fs.mkdirSync(dir, { recursive: true });
  return new Peer(name, port, path.join(dir, 'stderr.log'), process.execPath, [HTTP_PROXY_SERVER, String(port), `http://127.0.0.1:${upstream}`]);
}

// ---- molt sidecar ----

export interface SidecarStart {
  port: number;
  controlSocket: string;
  workers: number;
  /** Extra node flags, e.g. ['--cpu-prof', '--cpu-prof-dir', DIR]. */
  nodeArgs?: string[];
  /** Extra environment, e.g. { MOLT_RECORDING: 'off' }. */
  env?: NodeJS.ProcessEnv;
  /** Another build's dist/sidecar/main.js (default: this build's). */
  main?: string;
}

/** Node's floor: a raw net pipe, one upstream connection per client connection, no parsing. */
export function startRawPipe(root: string, name: string, port: number, upstream: number): Peer {
  const dir = path.join(root, name);
  fs.mkdirSync(dir, { recursive: true });
  return new Peer(name, port, path.join(dir, 'stderr.log'), process.execPath, [RAW_PIPE_SERVER, String(port), String(upstream), String(PROXY_BACKLOG)]);
}

export function startSidecar(root: string, name: string, o: SidecarStart): Peer {
  const dir = path.join(root, name);
  fs.mkdirSync(dir, { recursive: true });
  return new Peer(name, o.port, path.join(dir, 'stderr.log'), process.execPath, [
    ...(o.nodeArgs ?? []),
    o.main ?? SIDECAR_MAIN,
    '--listen', `127.0.0.1:${o.port}`,
    '--control', o.controlSocket,
    '--workers', String(o.workers),
    '--log-level', 'warn',
  ], o.env);
}

/**
 * A stand-in for `molt up` during a preflight (bench/shadow-controller.ts): it serves the control
 * socket (routes: INSTANT to `serving`) and runs the controller's own PreflightRun with
 * `shadow.percent` 100 against `candidate`, so shadow copies leave from this process as they leave
 * from the controller's. Its `port` is unused (0). Counters are written to `statusFile`.
 */
export function startShadowController(root: string, name: string, socket: string, serving: number, candidate: number, statusFile: string): Peer {
  const dir = path.join(root, name);
  fs.mkdirSync(dir, { recursive: true });
  return new Peer(name, 0, path.join(dir, 'stderr.log'), process.execPath, [SHADOW_CONTROLLER, socket, String(serving), String(candidate), statusFile]);
}
