// `molt up`: the controller, its admin API and a supervised sidecar, in one command.

import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { createAdminServer, checkAdminBind, ThesisStore } from './admin-api.js';
import { loadOrCreateDashboardToken } from './dashboard/auth.js';
import { parseCommandLine, parseHostPort } from '../common/args.js';
import { LocalController } from './controller.js';
import { MoltError } from '../common/errors.js';
import { createLogger, LOG_LEVELS } from '../common/logger.js';
import { resolveLogFormat } from '../common/log-format.js';
import { MoltMetrics } from './metrics.js';
import { SidecarSupervisor } from './supervisor.js';
import { loadThesisConfigFile } from './thesis.js';

export const UP_HELP = `Usage: molt up [flags]

Runs the controller, starts the sidecar proxy as a separate process (restarted if it dies)
and serves the admin API. Ctrl-C drains in-flight requests and stops both.

Flags:
  --dir DIR             folder of AppVersion YAML files to watch       (default ./versions)
  --listen HOST:PORT    where the sidecar takes user traffic           (default 127.0.0.1:8080)
  --admin HOST:PORT     admin REST API and /metrics                    (default 127.0.0.1:9090)
  --admin-token TOKEN   required for mutating admin calls; mandatory when --admin is not loopback
                        (also read from MOLT_ADMIN_TOKEN); also the dashboard login token
  --session-ttl DURATION  how long a dashboard login lasts                 (default 12h)
  --state DIR           status, logs, control socket                   (default ./.molt)
  --workers N           sidecar worker processes, 1 to 64               (default 1)
  --log-level LEVEL     ${LOG_LEVELS.join('|')}       (default info)
  --log-format FORMAT   json or pretty (default: pretty when stderr is a terminal, else json;
                        env MOLT_LOG_FORMAT)
  --config-file FILE    a thesis-format JSON config (proxy.port, configService.port, cluster)
  --drain DURATION      how long a deleted version keeps serving in-flight requests, e.g. 5s or
                        500ms; a bare number is milliseconds           (default 5s)
  --allow-api-process   accept \`process\` runtimes through the admin API (they run a command here);
                        files in --dir may always use them
`;

export interface UpHandle {
  controller: LocalController;
  supervisor: SidecarSupervisor;
  admin: Server;
  adminAddress: AddressInfo;
  listen: string;
  /** The --dir folder as given. */
  dir: string;
  /** Where the generated dashboard token is kept (undefined when --admin-token is the dashboard token). */
  dashboardTokenFile: string | undefined;
  /** Drain and stop everything (what Ctrl-C does). */
  shutdown(): Promise<void>;
}

export async function runUp(argv: string[], opts: { sidecar: boolean; command: string } = { sidecar: true, command: 'up' }): Promise<UpHandle | undefined> {
  // Every flag is checked before anything starts: a usage error leaves no state dir, process or socket behind.
  const { values: flags, positionals, help } = parseCommandLine(argv, {
    dir: { type: 'string', default: './versions' },
    listen: { type: 'string' },
    admin: { type: 'string' },
    'admin-token': { type: 'string' },
    state: { type: 'string', default: './.molt' },
    workers: { type: 'integer', default: 1, min: 1, max: 64 },
    'session-ttl': { type: 'duration', default: '12h', minMs: 1000 },
    'log-level': { type: 'logLevel', default: 'info' },
    'log-format': { type: 'string' },
    'config-file': { type: 'string' },
    drain: { type: 'duration', default: '5s', unitless: 'ms' },
    control: { type: 'string' },
    'allow-api-process': { type: 'boolean' },
  }, opts.command);
  if (help) {
    process.stdout.write(UP_HELP);
    return undefined;
  }
  if (positionals.length) throw new MoltError('MOLT_ERR_USAGE', `unexpected argument "${positionals[0]}" (see molt ${opts.command} --help)`);
  const log = createLogger(flags['log-level'], 'molt', flags['log-format']);
  // The sidecar (a child process) logs in the same format.
  process.env.MOLT_LOG_FORMAT = resolveLogFormat(flags['log-format']);
  const stateDir = path.resolve(flags.state);

  let thesis: Awaited<ReturnType<typeof loadThesisConfigFile>> | undefined;
  if (flags['config-file']) thesis = await loadThesisConfigFile(flags['config-file']);
  const listen = flags.listen ?? (thesis?.proxyPort ? `127.0.0.1:${thesis.proxyPort}` : '127.0.0.1:8080');
  const adminFlag = flags.admin ?? (thesis?.adminPort ? `127.0.0.1:${thesis.adminPort}` : '127.0.0.1:9090');
  parseHostPort(listen, 'listen');
  const admin = parseHostPort(adminFlag, 'admin');
  const token = (flags['admin-token'] ?? process.env.MOLT_ADMIN_TOKEN) || undefined;
  checkAdminBind(admin.host, token);
  const sessionTtlMs = flags['session-ttl'];
  const workers = flags.workers;
  fs.mkdirSync(stateDir, { recursive: true });

  const metrics = new MoltMetrics();
  const controller = new LocalController({
    dirs: [path.resolve(flags.dir)],
    stateDir,
    controlSocket: flags.control ? path.resolve(flags.control) : controlSocketPath(stateDir),
    log,
    metrics,
    controllerId: controllerIdFor(stateDir),
    drainMs: flags.drain,
    allowApiProcess: flags['allow-api-process'],
  });
  await controller.start();

  const supervisor = new SidecarSupervisor({
    stateDir, listen, controlSocket: controller.control.socketPath, workers, logLevel: flags['log-level'], log,
  });
  if (opts.sidecar) supervisor.start();

  const thesisStore = new ThesisStore(path.join(stateDir, 'thesis-clusters.json'));
  // The dashboard logs in with --admin-token, or with a token generated into the state dir. A generated one
  // is only a dashboard login: it enables no bearer auth and no non-loopback bind (checkAdminBind above).
  const dashboardToken = token ? { token, created: false, file: undefined } : loadOrCreateDashboardToken(stateDir);
  const server = createAdminServer({
    controller, metrics, token, log, thesis: thesisStore, dashboard: { token: dashboardToken.token, sessionTtlMs },
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(admin.port, admin.host, () => { server.off('error', reject); resolve(); });
  });
  const adminAddress = server.address() as AddressInfo;
  printDashboardBanner(adminAddress, dashboardToken);

  // Clusters from the thesis config file are also visible (and deletable) under /configuration/cluster.
  for (const [i, raw] of (thesis?.raws ?? []).entries()) {
    const { name } = await controller.applyResource(raw, `config-file ${flags['config-file']}`);
    thesisStore.set(thesis!.uuids[i], name);
  }

  let closing: Promise<void> | null = null;
  const shutdown = () => (closing ??= (async () => {
    log.info('shutting down: draining the sidecar');
    await new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections?.();
    // The sidecar drains for up to 10 s itself (12 s with workers): give it that and a margin.
    await supervisor.stop(15000);
    await controller.stop();
    await controller.stopProcesses();
    log.info('stopped');
    log.flush();
  })());

  return { controller, supervisor, admin: server, adminAddress, listen, dir: flags.dir, shutdown, dashboardTokenFile: dashboardToken.file };
}

function dashboardUrl(a: AddressInfo): string {
  const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
  return `http://${host}:${a.port}/ui`;
}

/** The dashboard token, once, on the terminal: straight to stderr, never through the log stream. Only a
 *  token generated just now is shown, and only to a terminal (not into a redirected log file). */
function printDashboardBanner(a: AddressInfo, t: { token: string; created: boolean; file: string | undefined }): void {
  if (!t.created) return;
  if (process.stderr.isTTY) {
    process.stderr.write(`\n  dashboard: ${dashboardUrl(a)}\n  login token (shown once; kept in ${t.file}, mode 0600):\n\n      ${t.token}\n\n`);
  } else {
    process.stderr.write(`molt: generated a dashboard login token for ${dashboardUrl(a)}; read it from ${t.file}\n`);
  }
}

/** Unix socket paths are limited to ~107 bytes; fall back to the temp dir for deep state dirs. */
export function controlSocketPath(stateDir: string): string {
  const p = path.join(stateDir, 'control.sock');
  if (Buffer.byteLength(p) < 100) return p;
  const hash = crypto.createHash('sha256').update(stateDir).digest('hex').slice(0, 12);
  return path.join(os.tmpdir(), `molt-${hash}.sock`);
}

/** Containers are labelled with the controller that owns them: one per state dir. */
export function controllerIdFor(stateDir: string): string {
  return 'molt-' + crypto.createHash('sha256').update(path.resolve(stateDir)).digest('hex').slice(0, 10);
}

export function printWelcome(h: UpHandle, dir: string): void {
  const url = `http://${h.listen}/`;
  process.stdout.write(`
molt is up.
  traffic:  ${url}
  admin:    http://${h.adminAddress.address}:${h.adminAddress.port}/apps   (metrics at /metrics)
  dashboard: ${dashboardUrl(h.adminAddress)}   (log in with ${h.dashboardTokenFile ? `the token in ${h.dashboardTokenFile}` : 'the --admin-token'} to act)
  versions: ${path.resolve(dir)}

Try:
  curl -i ${url}                       # which version answered? (see the body and the cookie)
  npx molt status                       # phases, traffic share, errors
  edit a transition mode in ${dir}/*.yaml and watch the logs
  kill the v2 demo process (its pid is in .molt/*/processes.json) and watch molt roll back

Ctrl-C drains in-flight requests and stops everything.
`);
}
