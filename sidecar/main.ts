// Process entry point: `molt sidecar --listen HOST:PORT --control SOCKET_PATH [--workers N] [--log-level LEVEL]`.
//
// --workers 1 (default): one process; the control client runs in-process next to the proxy.
// --workers N > 1: a node:cluster primary holds the control connection and N workers share the
// listening socket (see sidecar/workers.ts for what travels over IPC). Workers are restarted if
// they die. SIGTERM/SIGINT: stop accepting, let in-flight requests finish (close(10000)), exit 0.
// Also runnable directly: `node dist/sidecar/main.js --listen 127.0.0.1:8080 --control /run/molt.sock`.

import cluster, { type Worker } from 'node:cluster';
import fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import pino, { type Logger } from 'pino';
import { parseCommandLine, parseHostPort } from '../common/args.js';
import { LOG_LEVELS } from '../common/logger.js';
import { MoltError } from '../common/errors.js';
import { selfTest } from '../common/node-internals.js';
import { ControlClient } from './control-client.js';
import { createProxy, DEFAULT_BACKLOG } from './proxy.js';
import { prettyStderr, resolveLogFormat } from '../common/log-format.js';
import { TrafficRecorder } from './recorder.js';
import { readTraffic } from './traffic.js';
import type { TrafficRequestMessage } from '../common/protocol.js';

/** Recording at the ingress feeds preflight and `molt traffic export`; MOLT_RECORDING=off turns it off
 *  (a preflight then has nothing to replay or copy, and onNoTraffic decides). */
function recordingEnabled(): boolean {
  return process.env.MOLT_RECORDING !== 'off';
}

/** Canary-analysis samples per version in every stats line (docs/analysis.md): on unless
 *  MOLT_ANALYSIS_SAMPLES=off. Any other value than on/off is a usage error. */
export function analysisSamplesEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  const v = env.MOLT_ANALYSIS_SAMPLES;
  if (v === undefined || v === '' || v === 'on') return true;
  if (v === 'off') return false;
  throw new MoltError('MOLT_ERR_USAGE', `MOLT_ANALYSIS_SAMPLES must be "on" or "off", got ${JSON.stringify(v)}`, { path: 'MOLT_ANALYSIS_SAMPLES' });
}
import { createRoutingState } from './routing.js';
import { PrimaryCoordinator, WorkerAgent, type Channel, type ToPrimary, type ToWorker } from './workers.js';

export const SHUTDOWN_GRACE_MS = 10_000;
const WORKER_ENV = 'MOLT_SIDECAR_WORKER';

export interface SidecarOptions {
  host: string;
  port: number;
  controlPath: string;
  workers: number;
  logLevel: string;
  /** Listen on this inherited socket (bound by the supervisor, which keeps it open across sidecar
   *  restarts) instead of binding host:port, which then only names it. */
  listenFd?: number;
  /** listen(2) backlog (default DEFAULT_BACKLOG in proxy.ts; the kernel caps it at net.core.somaxconn). */
  backlog?: number;
}

export const SIDECAR_HELP = `Usage: molt sidecar --listen HOST:PORT --control SOCKET_PATH [--workers N] [--log-level LEVEL] [--listen-fd N] [--backlog N]

  --workers N        worker processes, 1 to 256 (default 1)
  --log-level LEVEL  ${LOG_LEVELS.join('|')} (default info)
  --listen-fd N      listen on this inherited socket (>= 3) instead of binding --listen
  --backlog N        listen queue length, 1 to 65535 (default ${DEFAULT_BACKLOG}); Linux silently caps it
                     at net.core.somaxconn

The HTTP proxy every user request passes through. Connects to the controller's control socket,
applies the routing tables it sends, reports failures and stats back, and keeps serving its last
table while the controller is away. Normally started (and restarted) by \`molt up\`.
`;

/** Parses the sidecar's arguments (a leading "sidecar" subcommand word is accepted). */
export function parseSidecarArgs(argv: string[]): SidecarOptions {
  const args = parseCommandLine(argv[0] === 'sidecar' ? argv.slice(1) : argv, {
    listen: { type: 'string' },
    control: { type: 'string' },
    workers: { type: 'integer', default: 1, min: 1, max: 256 },
    'log-level': { type: 'logLevel', default: 'info' },
    'listen-fd': { type: 'integer', min: 3, max: 65535 },
    backlog: { type: 'integer', min: 1, max: 65535 },
  }, 'sidecar');
  if (args.help) throw new MoltError('MOLT_ERR_USAGE', SIDECAR_HELP);
  if (args.positionals.length) throw new MoltError('MOLT_ERR_USAGE', `unexpected argument "${args.positionals[0]}"\n${SIDECAR_HELP}`);
  const { listen, control, workers, 'log-level': logLevel, 'listen-fd': listenFd, backlog } = args.values;
  if (!listen) throw new MoltError('MOLT_ERR_USAGE', `is required\n${SIDECAR_HELP}`, { path: '--listen' });
  if (!control) throw new MoltError('MOLT_ERR_USAGE', `is required\n${SIDECAR_HELP}`, { path: '--control' });
  const { host, port } = parseHostPort(listen, 'listen');
  return { host, port, controlPath: control, workers, logLevel, ...(listenFd !== undefined ? { listenFd } : {}), ...(backlog !== undefined ? { backlog } : {}) };
}

function makeLogger(level: string, bindings: Record<string, unknown>): { log: Logger; flush: () => void } {
  const dest = pino.destination({ fd: 2, sync: false });
  const opts = { level, base: { pid: process.pid, component: 'sidecar', ...bindings } };
  // On a terminal (or MOLT_LOG_FORMAT=pretty, which `molt up --log-format` passes on) human lines.
  const log = resolveLogFormat() === 'pretty' ? pino(opts, prettyStderr()) : pino(opts, dest);
  return {
    log,
    flush: () => {
      try {
        dest.flushSync();
      } catch {
        /* not ready yet / already closed */
      }
    },
  };
}

function onSignals(fn: (signal: string) => void): void {
  let fired = false;
  const h = (signal: NodeJS.Signals) => {
    if (fired) return;
    fired = true;
    fn(signal);
  };
  process.once('SIGTERM', h);
  process.once('SIGINT', h);
}

export interface SidecarHandle {
  address: AddressInfo;
  close(graceMs?: number): Promise<void>;
}

/** How long a starting sidecar waits for its first routing table before listening anyway. */
export const FIRST_TABLE_WAIT_MS = 1000;

/**
 * Listen only once a routing table is there (or after FIRST_TABLE_WAIT_MS): a sidecar restarted
 * by the supervisor then answers its first request from the table instead of with 503 "no routing
 * table yet". Start-up only; polling is fine here.
 */
async function awaitFirstTable(routing: { readonly revision: number }, log: Logger): Promise<void> {
  const deadline = Date.now() + FIRST_TABLE_WAIT_MS;
  while (routing.revision === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  if (routing.revision === 0) log.warn({ waitedMs: FIRST_TABLE_WAIT_MS }, 'no routing table yet; listening anyway (requests get 503 until one arrives)');
}

/** Single-process sidecar: proxy + routing + control client in this process. */
export async function startSingle(opts: SidecarOptions, log: Logger): Promise<SidecarHandle> {
  void selfTest(); // start it now, next to waiting for the first table; the proxy awaits it before listening
  const routing = createRoutingState({ log, analysisSamples: analysisSamplesEnabled() });
  const recorder = recordingEnabled() ? new TrafficRecorder() : undefined;
  const proxy = createProxy({ routing, log, recorder });
  const client = new ControlClient({
    socketPath: opts.controlPath,
    apply: (table) => {
      routing.apply(table);
      recorder?.retainApps(new Set(table.apps.map((a) => a.name)));
    },
    ...(recorder ? { traffic: (req: TrafficRequestMessage) => readTraffic(recorder, '0', req) } : {}),
    revision: () => routing.revision,
    stats: () => routing.stats(),
    log,
  });
  routing.onFailure = (msg) => client.reportFailure(msg);
  client.start();
  await awaitFirstTable(routing, log);
  const address = await proxy.listen(opts.port, opts.host, opts.listenFd, opts.backlog);
  // Which Node-internals fast paths passed their self-test (the proxy ran it before listening).
  const internals = await selfTest();
  log.info({ address: address.address, port: address.port, control: opts.controlPath, workers: 1, internals }, 'sidecar listening');
  return {
    address,
    async close(graceMs = SHUTDOWN_GRACE_MS) {
      await proxy.close(graceMs);
      await client.close();
    },
  };
}

async function runWorker(opts: SidecarOptions, log: Logger, flush: () => void): Promise<void> {
  const routing = createRoutingState({ log, analysisSamples: analysisSamplesEnabled() });
  const recorder = recordingEnabled() ? new TrafficRecorder() : undefined;
  const proxy = createProxy({ routing, log, recorder });
  const ch: Channel<ToPrimary> = {
    send: (msg) => {
      if (process.connected) process.send!(msg);
    },
    onMessage: (fn) => process.on('message', fn),
  };
  let closing = false;
  const shutdown = async (graceMs: number) => {
    if (closing) return;
    closing = true;
    agent.stop();
    try {
      await proxy.close(graceMs);
    } catch (err) {
      log.error({ err }, 'worker: error while closing');
    }
    flush();
    process.exit(0);
  };
  const agent = new WorkerAgent(routing, ch, {
    log,
    onShutdown: (g) => void shutdown(g),
    ...(recorder ? { traffic: (req: TrafficRequestMessage) => readTraffic(recorder, `w${cluster.worker?.id ?? 0}`, req) } : {}),
    onTable: (table) => recorder?.retainApps(new Set(table.apps.map((a) => a.name))),
  });
  agent.start();
  onSignals(() => void shutdown(SHUTDOWN_GRACE_MS));
  process.on('disconnect', () => void shutdown(SHUTDOWN_GRACE_MS)); // the primary is gone
  await awaitFirstTable(routing, log);
  const address = await proxy.listen(opts.port, opts.host, opts.listenFd, opts.backlog);
  ch.send({ t: 'molt:listening', host: address.address, port: address.port });
}

async function runPrimary(opts: SidecarOptions, log: Logger, flush: () => void): Promise<void> {
  const coord = new PrimaryCoordinator({ log });
  const client = new ControlClient({
    socketPath: opts.controlPath,
    apply: (table) => coord.applyTable(table),
    revision: () => coord.revision,
    stats: () => coord.stats(),
    traffic: (req) => coord.traffic(req),
    log,
  });
  coord.onFailure = (msg) => client.reportFailure(msg);
  // Same Node, same environment as the workers: their self-test gives the same answer.
  const internals = await selfTest();
  let listeningLogged = false;
  coord.onListening = (host, port) => {
    if (listeningLogged) return;
    listeningLogged = true;
    log.info({ address: host, port, control: opts.controlPath, workers: opts.workers, internals }, 'sidecar listening');
  };

  cluster.setupPrimary({ exec: fileURLToPath(import.meta.url), args: rebuildArgs(opts) });
  const live = new Map<Worker, number>();
  let shuttingDown = false;
  const fork = () => {
    const w = cluster.fork({ [WORKER_ENV]: '1' });
    const ch: Channel<ToWorker> = {
      send: (msg) => {
        if (w.isConnected()) w.send(msg);
      },
      onMessage: (fn) => w.on('message', fn),
    };
    live.set(w, coord.addWorker(ch));
    w.on('exit', (code, signal) => {
      const id = live.get(w);
      live.delete(w);
      if (id !== undefined) coord.removeWorker(id);
      if (shuttingDown) return;
      if (opts.listenFd !== undefined && live.size === 0) {
        // The cluster closes the inherited listening fd with the last worker, so a new worker could
        // not listen on it again. Exit instead: the supervisor still holds the socket (connections
        // wait in its backlog) and starts a fresh sidecar with it.
        log.error({ worker: w.id, code, signal }, 'the last worker exited; exiting so the supervisor restarts the sidecar');
        flush();
        process.exit(1);
      }
      log.error({ worker: w.id, code, signal }, 'worker exited unexpectedly; starting a new one');
      setTimeout(() => {
        if (!shuttingDown) fork();
      }, 500).unref();
    });
  };
  for (let i = 0; i < opts.workers; i++) fork();
  client.start();

  onSignals(async (signal) => {
    shuttingDown = true;
    log.info({ signal }, 'sidecar shutting down');
    // SIGTERM rather than an IPC message: it also reaches a worker still starting up.
    for (const w of live.keys()) w.process.kill('SIGTERM');
    const deadline = setTimeout(() => {
      for (const w of live.keys()) w.kill('SIGKILL');
    }, SHUTDOWN_GRACE_MS + 2000);
    await Promise.all([...live.keys()].map((w) => new Promise<void>((resolve) => {
      if (w.isDead()) resolve();
      else w.once('exit', () => resolve());
    })));
    clearTimeout(deadline);
    coord.close();
    await client.close();
    flush();
    process.exit(0);
  });
}

function rebuildArgs(o: SidecarOptions): string[] {
  const host = o.host.includes(':') ? `[${o.host}]` : o.host;
  return ['--listen', `${host}:${o.port}`, '--control', o.controlPath, '--workers', String(o.workers), '--log-level', o.logLevel,
    ...(o.listenFd !== undefined ? ['--listen-fd', String(o.listenFd)] : []),
    ...(o.backlog !== undefined ? ['--backlog', String(o.backlog)] : [])];
}

/**
 * Runs the sidecar until SIGTERM/SIGINT, then exits the process with 0. Throws a MoltError
 * (MOLT_ERR_USAGE) on bad arguments.
 */
export async function runSidecar(argv: string[]): Promise<void> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(SIDECAR_HELP);
    return;
  }
  const opts = parseSidecarArgs(argv);
  analysisSamplesEnabled(); // a bad value is a usage error before anything starts
  if (cluster.isWorker && process.env[WORKER_ENV] === '1') {
    const { log, flush } = makeLogger(opts.logLevel, { worker: cluster.worker?.id });
    await runWorker(opts, log, flush);
    return;
  }
  const { log, flush } = makeLogger(opts.logLevel, opts.workers > 1 ? { role: 'primary' } : {});
  if (opts.workers > 1) {
    await runPrimary(opts, log, flush);
    return;
  }
  const handle = await startSingle(opts, log);
  onSignals(async (signal) => {
    log.info({ signal }, 'sidecar shutting down');
    try {
      await handle.close(SHUTDOWN_GRACE_MS);
    } catch (err) {
      log.error({ err }, 'error while closing');
    }
    flush();
    process.exit(0);
  });
}

function isMain(): boolean {
  const entry = process.argv[1];
  if (!entry) return false;
  try {
    return fs.realpathSync(entry) === fs.realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMain()) {
  runSidecar(process.argv.slice(2)).catch((err: unknown) => {
    const e = err as { code?: string; message?: string };
    process.stderr.write(`molt sidecar: ${e?.message ?? String(err)}\n`);
    process.exit(e?.code === 'MOLT_ERR_USAGE' ? 2 : 1);
  });
}
