// `molt` command-line entry: dispatches subcommands. Errors print one clear line and set the exit code.

import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { AdminClient } from './admin-client.js';
import { parseCommandLine, type FlagDef } from '../common/args.js';
import { MoltError, MoltValidationErrors } from '../common/errors.js';
import { loadAppVersionFile, parseAppVersionText } from './load.js';
import { printWelcome, runUp, UP_HELP } from './up.js';
import type { ControllerStatus } from './controller-api.js';

const MAIN_HELP = `Usage: molt <command> [flags]

Zero-downtime, self-healing upgrades for HTTP services.

Commands:
  up                 run the controller and the sidecar proxy (local mode)
  status             show apps, versions, phases and traffic share
  apply -f FILE      send AppVersion resources to the running controller
  validate FILE...   check AppVersion files without applying them
  promote APP [VER]  finish a transition now (or re-admit a rolled-back version)
  rollback APP       roll the newest version of APP back now
  controller         run only the controller (local mode, or --kubernetes)
  sidecar            run only the sidecar proxy

Run "molt <command> --help" for its flags.
`;

/** Flags of the commands that talk to a running controller (defaults from the environment at call time). */
const CLIENT_FLAGS = {
  admin: { type: 'string' },
  'admin-token': { type: 'string' },
  json: { type: 'boolean' },
} as const satisfies Record<string, FlagDef>;
const CLIENT_HELP = `
Flags:
  --admin HOST:PORT     the controller's admin API (default 127.0.0.1:9090, env MOLT_ADMIN)
  --admin-token TOKEN   bearer token for mutating calls (env MOLT_ADMIN_TOKEN)
  --json                print JSON
`;

const HELP: Record<string, string> = {
  up: UP_HELP,
  status: `Usage: molt status [flags]\n\nShows every app, its versions newest first, phase, traffic share and recent errors.\n${CLIENT_HELP}`,
  apply: `Usage: molt apply -f FILE [flags]\n\nValidates FILE (YAML, several documents allowed) and sends each AppVersion to the running controller.\n${CLIENT_HELP}`,
  validate: `Usage: molt validate FILE...\n\nChecks AppVersion files and prints every error with file:line:column and field path.\nExits 1 when any file is invalid.\n`,
  promote: `Usage: molt promote APP [VERSION] [flags]\n\nSends all new traffic of APP to VERSION (default: the newest) now. Naming a rolled-back\nversion re-admits it.\n${CLIENT_HELP}`,
  rollback: `Usage: molt rollback APP [flags]\n\nRolls the newest version of APP back now; traffic returns to the previous version.\n${CLIENT_HELP}`,
};

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(MAIN_HELP);
    return command ? 0 : 2;
  }
  try {
    switch (command) {
      case 'up': return await cmdUp(rest);
      case 'status': return await cmdStatus(rest);
      case 'apply': return await cmdApply(rest);
      case 'validate': return await cmdValidate(rest);
      case 'promote': return await cmdPromote(rest);
      case 'rollback': return await cmdRollback(rest);
      case 'controller': return await cmdController(rest);
      case 'sidecar': {
        const { runSidecar } = await import('../sidecar/main.js');
        await runSidecar(rest);
        return 0;
      }
      default:
        process.stderr.write(`molt: unknown command "${command}"\n\n${MAIN_HELP}`);
        return 2;
    }
  } catch (err) {
    if (err instanceof MoltValidationErrors) {
      for (const e of err.errors) process.stderr.write(`molt ${command}: ${e.toString()}\n`);
      return 1;
    }
    if (err instanceof MoltError) {
      process.stderr.write(`molt ${command}: ${err.toString()}\n`);
      return err.code === 'MOLT_ERR_USAGE' ? 2 : 1;
    }
    process.stderr.write(`molt ${command}: ${(err as Error)?.stack ?? String(err)}\n`);
    return 1;
  }
}

const CONTROLLER_HELP = `Usage: molt controller [flags]

Runs only the controller (no sidecar is started; a sidecar connects to --control).

Local mode flags: --dir DIR, --state DIR, --admin HOST:PORT, --admin-token TOKEN, --log-level LEVEL
  --control SOCKET    control socket path (default STATE/control.sock)

Kubernetes mode: molt controller --kubernetes [--namespace NS] [--kubeconfig FILE] [--control SOCKET]
  (see docs/kubernetes.md)
`;

async function cmdController(argv: string[]): Promise<number> {
  if (argv.includes('--kubernetes')) {
    const { runKubeController } = await import('./kube/main.js');
    await runKubeController(argv.filter((a) => a !== '--kubernetes'));
    return 0;
  }
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(CONTROLLER_HELP);
    return 0;
  }
  const { runControllerOnly } = await import('./controller-only.js');
  await runControllerOnly(argv);
  return 0;
}

async function cmdUp(argv: string[]): Promise<number> {
  const handle = await runUp(argv);
  if (!handle) return 0;
  printWelcome(handle, handle.dir);
  await new Promise<void>((resolve) => {
    let signals = 0;
    const onSignal = () => {
      if (++signals > 1) process.exit(130); // second Ctrl-C: do not wait
      void handle.shutdown().then(resolve);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  return 0;
}

async function cmdStatus(argv: string[]): Promise<number> {
  const args = parseCommandLine(argv, CLIENT_FLAGS, 'status');
  if (args.help) return help('status');
  noPositionals(args.positionals, 'status');
  const st = (await client(args.values).status()) as ControllerStatus;
  if (args.values.json) {
    process.stdout.write(JSON.stringify(st, null, 2) + '\n');
    return 0;
  }
  process.stdout.write(formatStatus(st));
  return 0;
}

export function formatStatus(st: ControllerStatus): string {
  const lines: string[] = [];
  lines.push(`sidecar: ${st.sidecarConnected ? 'connected' : 'NOT connected'}   routing revision: ${st.routingRevision}`);
  const rows: string[][] = [['APP', 'VERSION', 'NAME', 'MODE', 'PHASE', 'TRAFFIC', 'REQUESTS', 'ERRORS', 'MESSAGE']];
  for (const app of st.apps) {
    for (const v of app.versions) {
      rows.push([app.app, v.version, v.name, v.mode, v.phase, `${Math.round(v.traffic * 100)}%`, String(v.requests), String(v.errors), v.message]);
    }
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  for (const r of rows) lines.push(r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  '));
  if (st.apps.length === 0) lines.push('(no AppVersions yet: drop a YAML file into the versions folder)');
  if (st.errors.length) {
    lines.push('', 'Errors (these files are not applied; what was serving keeps serving):');
    for (const e of st.errors) lines.push(`  ${e.message}`);
  }
  return lines.join('\n') + '\n';
}

async function cmdApply(argv: string[]): Promise<number> {
  const args = parseCommandLine(argv, { ...CLIENT_FLAGS, file: { type: 'strings', short: 'f' } }, 'apply');
  if (args.help) return help('apply');
  noPositionals(args.positionals, 'apply');
  const files = args.values.file;
  if (files.length === 0) throw new MoltError('MOLT_ERR_USAGE', 'molt apply needs -f FILE', { path: '--file' });
  const c = client(args.values);
  for (const file of files) {
    const text = file === '-' ? fs.readFileSync(0, 'utf8') : fs.readFileSync(file, 'utf8');
    const { errors } = parseAppVersionText(text, file);
    if (errors.length) throw new MoltValidationErrors(errors);
    for (const doc of YAML.parseAllDocuments(text)) {
      const raw = doc.toJS() as { metadata?: { name?: string } } | null;
      if (!raw) continue;
      const res = (await c.apply(raw.metadata!.name!, YAML.stringify(raw))) as { created?: boolean } | undefined;
      process.stdout.write(`appversion/${raw.metadata!.name} ${res?.created === false ? 'configured' : 'created'}\n`);
    }
  }
  return 0;
}

async function cmdValidate(argv: string[]): Promise<number> {
  const args = parseCommandLine(argv, {}, 'validate');
  if (args.help) return help('validate');
  if (args.positionals.length === 0) throw new MoltError('MOLT_ERR_USAGE', 'molt validate needs at least one FILE');
  let bad = 0;
  for (const file of args.positionals) {
    const { resources, errors } = await loadAppVersionFile(file);
    if (errors.length) {
      bad++;
      for (const e of errors) process.stderr.write(`${e.toString()}\n`);
    } else {
      for (const av of resources) process.stdout.write(`${path.relative('.', file) || file}: ${av.metadata.name} (app ${av.spec.app}, version ${av.spec.version}, ${av.spec.transition.mode}, ${av.spec.runtime.kind}) is valid\n`);
    }
  }
  return bad ? 1 : 0;
}

async function cmdPromote(argv: string[]): Promise<number> {
  const args = parseCommandLine(argv, CLIENT_FLAGS, 'promote');
  if (args.help) return help('promote');
  const [app, version, extra] = args.positionals;
  if (!app) throw new MoltError('MOLT_ERR_USAGE', 'molt promote needs APP');
  if (extra !== undefined) throw new MoltError('MOLT_ERR_USAGE', `unexpected argument "${extra}" (see molt promote --help)`);
  const v = (await client(args.values).promote(app, version)) as { name: string; version: string; phase: string };
  process.stdout.write(`${app}: ${v.name} (version ${v.version}) promoted, phase ${v.phase}\n`);
  return 0;
}

async function cmdRollback(argv: string[]): Promise<number> {
  const args = parseCommandLine(argv, CLIENT_FLAGS, 'rollback');
  if (args.help) return help('rollback');
  const [app, extra] = args.positionals;
  if (!app) throw new MoltError('MOLT_ERR_USAGE', 'molt rollback needs APP');
  if (extra !== undefined) throw new MoltError('MOLT_ERR_USAGE', `unexpected argument "${extra}" (see molt rollback --help)`);
  const v = (await client(args.values).rollback(app)) as { name: string; version: string };
  process.stdout.write(`${app}: ${v.name} (version ${v.version}) rolled back\n`);
  return 0;
}

function client(flags: { admin?: string; 'admin-token'?: string }): AdminClient {
  const admin = flags.admin ?? process.env.MOLT_ADMIN ?? '127.0.0.1:9090';
  const token = (flags['admin-token'] ?? process.env.MOLT_ADMIN_TOKEN) || undefined;
  return new AdminClient(admin.startsWith('http') ? admin : `http://${admin}`, token);
}

function noPositionals(positionals: string[], cmd: string): void {
  if (positionals.length) throw new MoltError('MOLT_ERR_USAGE', `unexpected argument "${positionals[0]}" (see molt ${cmd} --help)`);
}

function help(cmd: string): number {
  process.stdout.write(HELP[cmd]);
  return 0;
}

export { cmdUp, cmdStatus, cmdApply, cmdValidate, cmdPromote, cmdRollback };
