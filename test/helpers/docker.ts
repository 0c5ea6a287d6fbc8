// Docker for tests: find a daemon (DOCKER_HOST, a running dockerd's socket, the default socket) or start
// a private one; build the tiny busybox test images FROM scratch with in-memory tar contexts.
//
// Network rule: tests reach containers only through ports published on 127.0.0.1.

import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import Dockerode from 'dockerode';

export type DockerAvailable = { docker: Dockerode; socketPath: string };
export type DockerUnavailable = { skip: string };

export const TEST_IMAGE = 'molt-test-app';
const BUSYBOX = '/bin/busybox';
/** One ping may take this long (a loaded daemon answers slowly)... */
const PING_TIMEOUT_MS = 5_000;
/** ...and a daemon whose socket exists is asked again until this much time has passed, so a slow or
 *  still-starting daemon is not mistaken for a missing one. */
const PING_PATIENCE_MS = Number(process.env.MOLT_DOCKER_PING_PATIENCE_MS ?? 30_000);
const DAEMON_START_TIMEOUT_MS = 60_000;

let cached: Promise<DockerAvailable | DockerUnavailable> | undefined;
let privateDaemon: ChildProcess | undefined;

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms}ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

async function tryDaemon(socketPath: string, patienceMs = PING_PATIENCE_MS): Promise<DockerAvailable | string> {
  const docker = new Dockerode({ socketPath });
  const deadline = Date.now() + patienceMs;
  let attempts = 0;
  for (;;) {
    // No socket file: nothing to wait for (a daemon creates it before it can answer).
    if (!fs.existsSync(socketPath)) return `unix://${socketPath} does not exist`;
    attempts++;
    try {
      await withTimeout(docker.ping(), PING_TIMEOUT_MS, `ping ${socketPath}`);
      return { docker, socketPath };
    } catch (err) {
      if (Date.now() + 500 >= deadline) return `ping unix://${socketPath} failed ${attempts} time(s) over ${Math.round((Date.now() - deadline + patienceMs) / 1000)} s: ${(err as Error).message}`;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** CI (CI=true) or MOLT_REQUIRE_DOCKER=1: a missing or unreachable daemon fails the Docker tests. */
export function dockerRequired(): string | null {
  if (process.env.MOLT_REQUIRE_DOCKER === '1') return 'MOLT_REQUIRE_DOCKER=1';
  if (process.env.CI === 'true' || process.env.CI === '1') return `CI=${process.env.CI}`;
  return null;
}

/** Unix sockets (-H unix://…) of dockerd processes already running on this machine. */
function runningDaemonSockets(): string[] {
  const sockets: string[] = [];
  let pids: string[] = [];
  try {
    pids = fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch {
    return sockets;
  }
  for (const pid of pids) {
    let argv: string[];
    try {
      argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    if (path.basename(argv[0] ?? '') !== 'dockerd') continue;
    let sawHost = false;
    for (let i = 1; i < argv.length; i++) {
      const a = argv[i]!;
      const v = a === '-H' || a === '--host' ? argv[++i] : a.startsWith('--host=') ? a.slice(7) : a.startsWith('-H') && a.length > 2 ? a.slice(2) : undefined;
      if (v === undefined) continue;
      sawHost = true;
      if (v.startsWith('unix://')) sockets.push(v.slice(7));
    }
    if (!sawHost) sockets.push('/var/run/docker.sock');
  }
  return sockets;
}

function which(cmd: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/usr/bin', '/sbin'])) {
    const p = path.join(dir, cmd);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  return null;
}

async function startPrivateDaemon(): Promise<DockerAvailable | DockerUnavailable> {
  const dockerd = which('dockerd');
  if (!dockerd) return { skip: 'no Docker daemon can start here: dockerd is not installed and DOCKER_HOST is not set' };
  if (process.getuid?.() !== 0) return { skip: 'no Docker daemon can start here: not root (dockerd needs root) and DOCKER_HOST is not set' };
  const root = `/tmp/molt-test-docker-${process.pid}`;
  fs.mkdirSync(root, { recursive: true });
  const socketPath = path.join(root, 'docker.sock');
  const logFd = fs.openSync(path.join(root, 'dockerd.log'), 'a');
  const child = spawn(
    dockerd,
    ['--data-root', path.join(root, 'data'), '--exec-root', path.join(root, 'exec'), '-H', `unix://${socketPath}`, '--pidfile', path.join(root, 'docker.pid')],
    { stdio: ['ignore', logFd, logFd] },
  );
  fs.closeSync(logFd);
  privateDaemon = child;
  child.unref();
  process.once('exit', () => {
    if (child.exitCode === null) child.kill('SIGTERM');
  });
  let exited: string | undefined;
  child.once('exit', (code, signal) => {
    exited = `dockerd exited (${signal ?? code}); see ${root}/dockerd.log`;
  });
  child.once('error', (err) => {
    exited = `dockerd failed to start: ${err.message}`;
  });
  const deadline = Date.now() + DAEMON_START_TIMEOUT_MS;
  let last = '';
  while (Date.now() < deadline && exited === undefined) {
    if (fs.existsSync(socketPath)) {
      const r = await tryDaemon(socketPath, 0);
      if (typeof r !== 'string') return r;
      last = r;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  if (child.exitCode === null) child.kill('SIGTERM');
  return { skip: `no Docker daemon can start here: ${exited ?? `dockerd did not answer within ${DAEMON_START_TIMEOUT_MS}ms (${last})`}` };
}

async function findDocker(): Promise<DockerAvailable | DockerUnavailable> {
  const tried: string[] = [];
  const dockerHost = process.env.DOCKER_HOST;
  if (dockerHost) {
    if (!dockerHost.startsWith('unix://')) return { skip: `DOCKER_HOST=${dockerHost}: tests only use a unix socket daemon` };
    const r = await tryDaemon(dockerHost.slice(7));
    if (typeof r !== 'string') return r;
    tried.push(r);
  }
  // A daemon already running here (e.g. the development daemon) is better than a second one: two daemons
  // would fight over the docker0 bridge.
  for (const socketPath of new Set(runningDaemonSockets())) {
    if (!fs.existsSync(socketPath)) continue;
    const r = await tryDaemon(socketPath);
    if (typeof r !== 'string') return r;
    tried.push(r);
  }
  if (runningDaemonSockets().length > 0) {
    return { skip: `no Docker daemon can start here: a dockerd is running but not answering (${tried.join('; ')})` };
  }
  return startPrivateDaemon();
}

/** A Docker daemon for tests, or the reason there can't be one (tests then skip with it). Cached per
 *  test process. When Docker is required (dockerRequired()), no daemon is an error, never a skip. */
export function ensureDocker(): Promise<DockerAvailable | DockerUnavailable> {
  cached ??= findDocker().then((r) => {
    const required = dockerRequired();
    if ('skip' in r && required) throw new Error(`Docker is required here (${required}) but unavailable: ${r.skip}`);
    return r;
  });
  return cached;
}

/** Stop the private daemon (if this process started one) now rather than at exit. */
export function stopPrivateDaemon(): void {
  if (privateDaemon && privateDaemon.exitCode === null) privateDaemon.kill('SIGTERM');
}

// ---------------------------------------------------------------------------------------------------
// Minimal ustar writer: enough for a docker build context (regular files, directories, symlinks).

interface TarEntry {
  name: string;
  type: 'file' | 'dir' | 'symlink';
  mode?: number;
  data?: Buffer;
  linkname?: string;
}

function octal(n: number, width: number): string {
  return n.toString(8).padStart(width - 1, '0') + '\0';
}

export function tarPack(entries: TarEntry[]): Buffer {
  const blocks: Buffer[] = [];
  const mtime = Math.floor(Date.UTC(2024, 0, 1) / 1000); // fixed: identical contexts → build cache hits
  for (const e of entries) {
    const name = e.type === 'dir' && !e.name.endsWith('/') ? `${e.name}/` : e.name;
    if (Buffer.byteLength(name) > 100) throw new Error(`tar name too long: ${name}`);
    const data = e.type === 'file' ? (e.data ?? Buffer.alloc(0)) : Buffer.alloc(0);
    const h = Buffer.alloc(512, 0);
    h.write(name, 0, 100, 'utf8');
    h.write(octal(e.mode ?? (e.type === 'dir' ? 0o755 : 0o644), 8), 100, 8, 'ascii');
    h.write(octal(0, 8), 108, 8, 'ascii');
    h.write(octal(0, 8), 116, 8, 'ascii');
    h.write(octal(data.length, 12), 124, 12, 'ascii');
    h.write(octal(mtime, 12), 136, 12, 'ascii');
    h.write('        ', 148, 8, 'ascii');
    h.write(e.type === 'file' ? '0' : e.type === 'dir' ? '5' : '2', 156, 1, 'ascii');
    if (e.linkname) h.write(e.linkname, 157, 100, 'utf8');
    h.write('ustar\0', 257, 6, 'ascii');
    h.write('00', 263, 2, 'ascii');
    h.write('root', 265, 32, 'ascii');
    h.write('root', 297, 32, 'ascii');
    let sum = 0;
    for (const byte of h) sum += byte;
    h.write(octal(sum, 7) + ' ', 148, 8, 'ascii');
    blocks.push(h, data);
    const pad = (512 - (data.length % 512)) % 512;
    if (pad) blocks.push(Buffer.alloc(pad, 0));
  }
  blocks.push(Buffer.alloc(1024, 0));
  return Buffer.concat(blocks);
}

// ---------------------------------------------------------------------------------------------------
// Test images. All serve on 8080 and answer GET /healthz with 200 (a static file), so each becomes
// ready; what differs is the traffic path:
//   v1: GET / → "v1"          v2: GET / → "v2"
//   v3: GET / and /cgi-bin/* → 500 (CGI); /healthz still 200: ready, then fails on traffic
//   v4: GET / → "v4", and the container exits with code 3 about 2 s after start
//   hang: GET / and /cgi-bin/* never answer (CGI sleeping forever); /healthz 200

const CGI_500 = '#!/bin/sh\nprintf "Status: 500 Internal Server Error\\r\\nContent-Type: text/plain\\r\\n\\r\\nv3 fails\\n"\n';
const CGI_HANG = '#!/bin/sh\nexec /bin/busybox sleep 2147483647\n';
const HTTPD = ['/bin/busybox', 'httpd', '-f', '-p', '8080', '-h', '/www'];

interface ImageDef {
  tag: string;
  www: Record<string, { data: string; mode?: number }>;
  entrypoint: string[];
}

function imageDefs(): ImageDef[] {
  const healthz = { data: 'ok\n' };
  return [
    { tag: 'v1', www: { 'index.html': { data: 'v1' }, healthz }, entrypoint: HTTPD },
    { tag: 'v2', www: { 'index.html': { data: 'v2' }, healthz }, entrypoint: HTTPD },
    {
      tag: 'v3',
      // No index.html: busybox httpd runs /cgi-bin/index.cgi for "/".
      www: { healthz, 'cgi-bin/index.cgi': { data: CGI_500, mode: 0o755 }, 'cgi-bin/fail': { data: CGI_500, mode: 0o755 } },
      entrypoint: HTTPD,
    },
    {
      tag: 'v4',
      www: { 'index.html': { data: 'v4' }, healthz },
      // httpd without -f daemonises; PID 1 (the shell) exits 3 after 2 s, which stops the container.
      entrypoint: ['/bin/busybox', 'sh', '-c', '/bin/busybox httpd -p 8080 -h /www; /bin/busybox sleep 2; exit 3'],
    },
    {
      tag: 'hang',
      www: { healthz, 'cgi-bin/index.cgi': { data: CGI_HANG, mode: 0o755 }, 'cgi-bin/hang': { data: CGI_HANG, mode: 0o755 } },
      entrypoint: HTTPD,
    },
  ];
}

function buildContext(def: ImageDef, busybox: Buffer): { tar: Buffer; fingerprint: string } {
  const entries: TarEntry[] = [
    { name: 'bin', type: 'dir' },
    { name: 'bin/busybox', type: 'file', mode: 0o755, data: busybox },
    { name: 'bin/sh', type: 'symlink', linkname: 'busybox' },
    { name: 'www', type: 'dir' },
    { name: 'www/cgi-bin', type: 'dir' },
  ];
  for (const [p, f] of Object.entries(def.www)) entries.push({ name: `www/${p}`, type: 'file', mode: f.mode ?? 0o644, data: Buffer.from(f.data) });
  const hash = createHash('sha256');
  hash.update(busybox);
  hash.update(JSON.stringify({ www: def.www, entrypoint: def.entrypoint }));
  const fingerprint = hash.digest('hex').slice(0, 16);
  const dockerfile = [
    'FROM scratch',
    'COPY bin /bin',
    'COPY www /www',
    `LABEL molt.test.fingerprint=${fingerprint}`,
    'EXPOSE 8080',
    `ENTRYPOINT ${JSON.stringify(def.entrypoint)}`,
    '',
  ].join('\n');
  entries.unshift({ name: 'Dockerfile', type: 'file', data: Buffer.from(dockerfile) });
  return { tar: tarPack(entries), fingerprint };
}

async function buildOne(docker: Dockerode, ref: string, tar: Buffer): Promise<void> {
  const stream = await docker.buildImage(Readable.from([tar]), { t: ref, rm: true, forcerm: true });
  const output = await new Promise<Array<{ error?: string; errorDetail?: { message?: string } }>>((resolve, reject) => {
    docker.modem.followProgress(stream, (err: Error | null, res: unknown[]) => (err ? reject(err) : resolve(res as never)));
  });
  const failed = output.find((o) => o.error || o.errorDetail);
  if (failed) throw new Error(`docker build ${ref} failed: ${failed.errorDetail?.message ?? failed.error}`);
}

/** Build molt-test-app:{v1,v2,v3,v4,hang}; an image whose fingerprint label matches is left alone. */
export async function buildTestImages(docker: Dockerode): Promise<void> {
  const busybox = fs.readFileSync(BUSYBOX);
  for (const def of imageDefs()) {
    const ref = `${TEST_IMAGE}:${def.tag}`;
    const { tar, fingerprint } = buildContext(def, busybox);
    try {
      const info = await docker.getImage(ref).inspect();
      if (info.Config?.Labels?.['molt.test.fingerprint'] === fingerprint) continue;
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode !== 404) throw err;
    }
    await buildOne(docker, ref, tar);
  }
}
