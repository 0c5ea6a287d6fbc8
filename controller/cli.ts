// `molt` command-line entry: dispatches subcommands. Errors print one clear line and set the exit code.

import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { AdminClient } from './admin-client.js';
import { parseCommandLine, type FlagDef } from '../common/args.js';
import { MoltError, MoltValidationErrors } from '../common/errors.js';
import { loadAppVersionFile, parseAppVersionText } from './load.js';
import { printWelcome, runUp, UP_HELP } from './up.js';
import type { AnalysisStatus, ControllerStatus } from './controller-api.js';
import type { TransitionConfig } from '../common/protocol.js';
import { peakRisk, scheduleRisk } from '../common/mixed-version-risk.js';
import type { PreflightEvidence } from './preflight.js';
import { findVersion, readHarFile, replayExchanges } from './traffic.js';

const MAIN_HELP = `Usage: molt <command> [flags]

Zero-downtime, self-healing upgrades for HTTP services.

Commands:
  up                 run the controller and the sidecar proxy (local mode)
  status             show apps, versions, phases and traffic share
  apply -f FILE      send AppVersion resources to the running controller
  validate FILE...   check AppVersion files without applying them
  promote APP [VER]  finish a transition now (under canary analysis: one step; --full: all)
  rollback APP       roll the newest version of APP back now
  traffic export APP     recorded requests of APP as HAR 1.2 (secrets redacted)
  traffic replay FILE    send a HAR's requests to a version and compare the answers
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
  status: `Usage: molt status [APP] [--watch] [flags]\n\nShows every app, its versions newest first, phase, traffic share and recent errors; with APP,\none app in detail (each version's phase, reason, timestamps, preflight evidence, mixed-version risk).\n--watch redraws every second (in place on a terminal) until Ctrl-C.\n${CLIENT_HELP}`,
  apply: `Usage: molt apply -f FILE [flags]\n\nValidates FILE (YAML, several documents allowed) and sends each AppVersion to the running controller.\n${CLIENT_HELP}`,
  validate: `Usage: molt validate [--risk] FILE...\n\nChecks AppVersion files and prints every error with file:line:column and field path.\nExits 1 when any file is invalid.\n\n  --risk   also print the mixed-version risk a GRADUAL steps schedule causes (Imago's\n           P = s(1 - s^c), s the new version's share, c = transition.callsPerInteraction)\n`,
  traffic: `Usage:
  molt traffic export APP [--limit N] [flags] > app.har
  molt traffic replay FILE --app APP --to VERSION [--compare-with VERSION] [--set 'Name: value']...
                      [--unsafe-methods] [--concurrency N] [flags]

export: the sidecar's recent recorded exchanges of APP (up to --limit, default 500) as HAR 1.2,
        with Authorization, Cookie and Set-Cookie redacted.
replay: sends every request of the HAR file (a molt export, or one a browser recorded) to VERSION
        (as \`molt promote\` names versions) with x-molt-shadow: 1, and compares each answer with
        VERSION of --compare-with (noise learned from its second answer), or with the answer recorded
        in the file. POST/PUT/PATCH/DELETE are sent only with --unsafe-methods, never to the version
        compared with. Exits 0 when everything matched, 1 otherwise.
${CLIENT_HELP}`,
  promote: `Usage: molt promote APP [VERSION] [--full] [flags]\n\nSends all new traffic of APP to VERSION (default: the newest) now. Naming a rolled-back\nversion re-admits it. Under canary analysis (spec.transition.analysis) it moves the rollout one\nstep instead, past the current step's gate; --full finishes the transition (all gates skipped).\n\n  --full   finish the transition now, also under canary analysis\n${CLIENT_HELP}`,
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
      case 'traffic': return await cmdTraffic(rest);
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
  const args = parseCommandLine(argv, { ...CLIENT_FLAGS, watch: { type: 'boolean', short: 'w' } }, 'status');
  if (args.help) return help('status');
  const [app, extra] = args.positionals;
  if (extra !== undefined) throw new MoltError('MOLT_ERR_USAGE', `unexpected argument "${extra}" (see molt status --help)`);
  const c = client(args.values);
  const render = async (): Promise<string> => {
    const st = (await c.status()) as ControllerStatus;
    if (app !== undefined && !st.apps.some((a) => a.app === app)) throw new MoltError('MOLT_ERR_NOT_FOUND', `no app "${app}" (known: ${st.apps.map((a) => a.app).join(', ') || 'none'})`);
    if (args.values.json) return JSON.stringify(app === undefined ? st : st.apps.find((a) => a.app === app), null, 2) + '\n';
    return app === undefined ? formatStatus(st) : formatApp(st, app);
  };
  if (!args.values.watch) {
    process.stdout.write(await render());
    return 0;
  }
  return watch(render);
}

/** Redraw every second until Ctrl-C (SIGINT/SIGTERM): in place on a terminal, one frame after another
 *  otherwise. Also `kubectl molt status --watch`. */
export async function watch(render: () => Promise<string>, title = 'molt status', out: (s: string) => void = (s) => void process.stdout.write(s)): Promise<number> {
  const tty = process.stdout.isTTY;
  let stop = false;
  let wake: (() => void) | null = null;
  const onSignal = () => { stop = true; wake?.(); };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    while (!stop) {
      let frame: string;
      try {
        frame = await render();
      } catch (err) {
        frame = `${title}: ${(err as Error).message}\n`;
      }
      const stamp = `${title} --watch   ${new Date().toISOString()}   (Ctrl-C to stop)\n\n`;
      if (stop) break; // Ctrl-C during the request: no frame after it
      out(tty ? `\x1b[H\x1b[2J${stamp}${frame}` : `${stamp}${frame}\n`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 1000);
        wake = () => { clearTimeout(timer); resolve(); };
      });
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  return 0;
}

/** One app in detail. */
export function formatApp(st: ControllerStatus, name: string): string {
  const app = st.apps.find((a) => a.app === name)!;
  const pct = (x: number) => `${Math.round(x * 100)}%`;
  const lines = [`app ${app.app}   hosts: ${app.hosts.join(', ') || '(default)'}   sidecar: ${st.sidecarConnected ? 'connected' : 'NOT connected'}`];
  for (const v of app.versions) {
    lines.push('', `${v.version}  ${v.name}  ${v.mode}  ${v.phase}${v.reason ? ` (${v.reason})` : ''}  traffic ${pct(v.traffic)}`);
    if (v.message) lines.push(`  ${v.message}`);
    lines.push(`  requests ${v.requests}, errors ${v.errors}${v.endpoints.length ? `, endpoints ${v.endpoints.map((e) => `${e.host}:${e.port}`).join(' ')}` : ''}`);
    const ts = Object.entries(v.timestamps).map(([k, t]) => `${k} ${t}`).join(', ');
    if (ts) lines.push(`  ${ts}`);
    if (v.mixedVersionRisk) lines.push(`  mixed-version risk: now ${pct(v.mixedVersionRisk.current)}, mean ${pct(v.mixedVersionRisk.mean)}, max ${pct(v.mixedVersionRisk.max)}`);
    if (v.preflight) lines.push(formatPreflight(v.preflight, '  preflight').trimEnd().split('\n').map((l) => `  ${l.trimStart()}`).join('\n'));
    if (v.analysis) lines.push(...formatAnalysis(v.analysis));
    const rollback = v.phase === 'RolledBack' || v.phase === 'Rejected' || v.phase === 'Failed';
    if (rollback) lines.push(`  last ${v.phase === 'Rejected' ? 'rejection' : 'rollback'}: ${v.reason}: ${v.message}`);
  }
  return lines.join('\n') + '\n';
}

/** Canary analysis of one version: where it stands, then its runs, newest last. */
export function formatAnalysis(a: AnalysisStatus, runs = 10): string[] {
  const time = (iso: string) => iso.slice(11, 19);
  const step = a.step !== undefined && a.steps !== undefined ? `, step ${a.step + 1}/${a.steps}${a.weight !== undefined ? ` (weight ${a.weight}%)` : ''}` : '';
  const window = a.window && (a.state === 'Measuring' || a.state === 'Holding') ? `, window ${time(a.window.startAt)}-${time(a.window.endAt)}${a.window.started ? '' : ' (not started)'}` : '';
  const hold = a.holdSince ? `, inconclusive since ${time(a.holdSince)}` : '';
  const lines = [`  analysis: ${a.state}${step}${a.baseline ? `, baseline ${a.baseline}` : ''}${window}${hold}`];
  const shown = a.runs.slice(-runs);
  if (a.runs.length > shown.length) lines.push(`    (${a.runs.length - shown.length} earlier runs not shown)`);
  for (const r of shown) {
    const where = a.mode === 'GRADUAL' ? `step ${r.step + 1}` : `window ${r.step + 1}`;
    lines.push(`    ${time(r.startedAt)}-${time(r.endedAt)} ${where}: ${r.verdict}`);
    for (const m of r.metrics) lines.push(`      ${m.verdict.padEnd(12)} ${m.message}`);
  }
  return lines;
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
  for (const app of st.apps) {
    for (const v of app.versions) if (v.preflight) lines.push('', formatPreflight(v.preflight, `preflight ${app.app} ${v.version}`).trimEnd());
  }
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
  const args = parseCommandLine(argv, { risk: { type: 'boolean' } }, 'validate');
  if (args.help) return help('validate');
  if (args.positionals.length === 0) throw new MoltError('MOLT_ERR_USAGE', 'molt validate needs at least one FILE');
  let bad = 0;
  for (const file of args.positionals) {
    const { resources, errors } = await loadAppVersionFile(file);
    if (errors.length) {
      bad++;
      for (const e of errors) process.stderr.write(`${e.toString()}\n`);
    } else {
      for (const av of resources) {
        process.stdout.write(`${path.relative('.', file) || file}: ${av.metadata.name} (app ${av.spec.app}, version ${av.spec.version}, ${av.spec.transition.mode}, ${av.spec.runtime.kind}) is valid\n`);
        if (args.values.risk) process.stdout.write(`  ${riskLine(av.spec.transition, av.spec.callsPerInteraction ?? 1)}\n`);
      }
    }
  }
  return bad ? 1 : 0;
}

async function cmdPromote(argv: string[]): Promise<number> {
  const args = parseCommandLine(argv, { ...CLIENT_FLAGS, full: { type: 'boolean' } }, 'promote');
  if (args.help) return help('promote');
  const [app, version, extra] = args.positionals;
  if (!app) throw new MoltError('MOLT_ERR_USAGE', 'molt promote needs APP');
  if (extra !== undefined) throw new MoltError('MOLT_ERR_USAGE', `unexpected argument "${extra}" (see molt promote --help)`);
  const v = (await client(args.values).promote(app, version, { full: args.values.full })) as { name: string; version: string; phase: string; analysis?: AnalysisStatus };
  if (args.values.json) {
    process.stdout.write(JSON.stringify(v, null, 2) + '\n');
    return 0;
  }
  const a = v.analysis;
  if (a && a.state !== 'Done' && a.step !== undefined && a.steps !== undefined) {
    process.stdout.write(`${app}: ${v.name} (version ${v.version}) moved to step ${a.step + 1}/${a.steps}${a.weight !== undefined ? ` (weight ${a.weight}%)` : ''}, phase ${v.phase}; molt promote ${app} --full finishes\n`);
  } else {
    process.stdout.write(`${app}: ${v.name} (version ${v.version}) promoted, phase ${v.phase}\n`);
  }
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

/** Mixed-version risk of a schedule, before anything is applied (issue 11, item 7). */
export function riskLine(t: TransitionConfig, c: number): string {
  const pct = (x: number) => `${(x * 100).toFixed(2)}%`;
  if (t.mode === 'INSTANT') return `mixed-version risk (c=${c}): INSTANT moves all new traffic at once: mean 0.00%, max 0.00% (only interactions in flight span the switch)`;
  if (t.mode !== 'GRADUAL' || !t.steps?.length) {
    const peak = peakRisk(c);
    return `mixed-version risk (c=${c}): ${t.mode === 'GRADUAL' ? 'a per-request ramp' : t.mode} has no steps schedule; worst case at a ${pct(peak.share)} share: ${pct(peak.risk)}`;
  }
  const r = scheduleRisk(t.steps, c);
  const steps = r.perStep.map((p, i) => `${t.steps![i]!.weight}%→${pct(p)}`).join(", ");
  return `mixed-version risk (c=${c}): mean ${pct(r.mean)}, max ${pct(r.max)} over ${t.steps.length} steps (${steps})`;
}

async function cmdTraffic(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (!sub || sub === '--help' || sub === '-h') return help('traffic');
  if (sub === 'export') {
    const args = parseCommandLine(rest, { ...CLIENT_FLAGS, limit: { type: 'integer', default: 500, min: 1, max: 100_000 } }, 'traffic export');
    if (args.help) return help('traffic');
    const [app, extra] = args.positionals;
    if (!app) throw new MoltError('MOLT_ERR_USAGE', 'molt traffic export needs APP');
    if (extra !== undefined) throw new MoltError('MOLT_ERR_USAGE', `unexpected argument "${extra}" (see molt traffic --help)`);
    const har = await client(args.values).trafficHar(app, args.values.limit);
    process.stdout.write(JSON.stringify(har, null, 2) + '\n');
    process.stderr.write(`molt traffic export: ${har.log.entries.length} exchange(s) of ${app}\n`);
    return 0;
  }
  if (sub === 'replay') {
    const args = parseCommandLine(rest, {
      ...CLIENT_FLAGS,
      app: { type: 'string' },
      to: { type: 'string' },
      'compare-with': { type: 'string' },
      set: { type: 'strings' },
      'unsafe-methods': { type: 'boolean' },
      concurrency: { type: 'integer', default: 8, min: 1, max: 256 },
    }, 'traffic replay');
    if (args.help) return help('traffic');
    const [file, extra] = args.positionals;
    if (!file) throw new MoltError('MOLT_ERR_USAGE', 'molt traffic replay needs FILE (a HAR file)');
    if (extra !== undefined) throw new MoltError('MOLT_ERR_USAGE', `unexpected argument "${extra}" (see molt traffic --help)`);
    if (!args.values.app) throw new MoltError('MOLT_ERR_USAGE', 'molt traffic replay needs --app APP', { path: '--app' });
    if (!args.values.to) throw new MoltError('MOLT_ERR_USAGE', 'molt traffic replay needs --to VERSION', { path: '--to' });
    const set: Record<string, string> = {};
    for (const h of args.values.set) {
      const colon = h.indexOf(':');
      if (colon <= 0) throw new MoltError('MOLT_ERR_USAGE', `--set: expected "Name: value", got "${h}"`, { path: '--set' });
      set[h.slice(0, colon).trim()] = h.slice(colon + 1).trim();
    }
    const exchanges = readHarFile(file);
    const apps = (await client(args.values).status()).apps;
    const to = findVersion(apps, args.values.app, args.values.to);
    const compareWith = args.values['compare-with'] ? findVersion(apps, args.values.app, args.values['compare-with']) : undefined;
    const tty = process.stderr.isTTY;
    let lastDraw = 0;
    const result = await replayExchanges(exchanges, {
      app: args.values.app, to, compareWith, set, unsafeMethods: args.values['unsafe-methods'], concurrency: args.values.concurrency,
      onProgress: (done, total, st) => {
        const now = Date.now();
        if (done !== total && now - lastDraw < (tty ? 100 : 2000)) return;
        lastDraw = now;
        const line = `replayed ${done}/${total}: ${st.compared} compared, ${st.mismatched} mismatched, ${st.errors} errors`;
        process.stderr.write(tty ? `\r\x1b[K${line}` : `${line}\n`);
      },
    });
    if (tty) process.stderr.write('\n');
    if (args.values.json) {
      process.stdout.write(JSON.stringify({ verdict: result.outcome.verdict, reason: result.outcome.reason, message: result.outcome.message, preflight: result.status }, null, 2) + '\n');
    } else {
      process.stdout.write(formatPreflight(result.status, `${args.values.app} ${to.version} vs ${compareWith ? compareWith.version : 'the recorded answers'}`));
    }
    return result.outcome.verdict === 'Pass' ? 0 : 1;
  }
  throw new MoltError('MOLT_ERR_USAGE', `unknown traffic command "${sub}" (export or replay; see molt traffic --help)`);
}

/** A preflight block (status or replay) as a few readable lines. */
export function formatPreflight(p: PreflightEvidence, title: string): string {
  const ms = (x: number | null) => (x === null ? '-' : `${x.toFixed(1)} ms`);
  const lines = [
    `${title}: ${p.verdict}${p.reason ? ` (${p.reason})` : ''}: ${p.message}`,
    `  compared ${p.compared}, mismatched ${p.mismatched}, errors ${p.errors}, dropped ${p.dropped}, skipped ${p.skipped}`,
    `  latency p50 ${ms(p.latency.oldP50)} → ${ms(p.latency.newP50)}, p95 ${ms(p.latency.oldP95)} → ${ms(p.latency.newP95)}`,
  ];
  for (const m of p.topMismatches.slice(0, 5)) {
    const ex = m.examples[0];
    lines.push(`  ${m.path}: ${m.count} mismatch(es)${ex ? `, e.g. ${ex.old} → ${ex.new}` : ''}`);
  }
  return lines.join('\n') + '\n';
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
