// `kubectl molt`: the molt CLI as a kubectl plugin (bin/kubectl-molt on PATH). It talks to the
// cluster through the kubeconfig, like kubectl: status reads AppVersions and their status (what the
// leader wrote); promote and rollback set the annotations every replica watches
// (molt.dev/promoted, molt.dev/rollback; see docs/kubernetes.md). No admin port is needed.

import os from 'node:os';
import type { CustomObjectsApi } from '@kubernetes/client-node';
import { CustomObjectsApi as CustomObjectsApiClass } from '@kubernetes/client-node';
import { parseCommandLine } from '../../common/args.js';
import { MoltError, MoltValidationErrors } from '../../common/errors.js';
import { compareVersions } from '../../common/version-order.js';
import type { AppStatus, ControllerStatus, VersionStatus } from '../controller-api.js';
import { isPhase } from '../phase.js';
import { formatApp, formatStatus, watch } from '../cli.js';
import { GROUP, loadKubeConfig, MERGE_PATCH, PLURAL, resolveNamespace, VERSION } from './client.js';
import { parseRollbackReport, PROMOTED_ANNOTATION, ROLLBACK_ANNOTATION, type RollbackReport } from './status.js';

export const KUBECTL_MOLT_HELP = `Usage: kubectl molt <command> [flags]

molt's CLI as a kubectl plugin, talking to the cluster through your kubeconfig.

Commands:
  status [APP] [--watch]   AppVersions with phase, traffic share and reason (one app in detail)
  promote APP [VERSION]    finish the transition: all new traffic to VERSION (default: the newest)
  rollback APP             roll the newest serving version of APP back now

Flags:
  -n, --namespace NS       namespace (default: the kubeconfig context's)
  --kubeconfig FILE        kubeconfig (default: $KUBECONFIG, ~/.kube/config)
  --json                   status as JSON
  -w, --watch              status: redraw every second until Ctrl-C
`;

interface AV {
  metadata: { name: string; generation?: number; annotations?: Record<string, string> };
  spec: { app: string; version: string; hosts?: string[]; transition?: { mode?: string } };
  status?: { phase?: string; traffic?: unknown; reason?: string; message?: string; timestamps?: Record<string, string>; observedGeneration?: number };
}

function traffic(v: unknown): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'string' && /^\d+(\.\d+)?%$/.test(v)) return Number(v.slice(0, -1)) / 100;
  return 0;
}

/** AppVersions as the status view `molt status` prints (newest first per app). */
export function toStatus(items: AV[]): ControllerStatus {
  const apps = new Map<string, AppStatus>();
  for (const av of items) {
    let app = apps.get(av.spec.app);
    if (!app) apps.set(av.spec.app, (app = { app: av.spec.app, hosts: [], versions: [] }));
    for (const h of av.spec.hosts ?? []) if (!app.hosts.includes(h)) app.hosts.push(h);
    const st = av.status ?? {};
    const current = st.observedGeneration === undefined || st.observedGeneration === av.metadata.generation;
    const v: VersionStatus = {
      name: av.metadata.name,
      app: av.spec.app,
      version: av.spec.version,
      mode: av.spec.transition?.mode ?? 'INSTANT',
      phase: current && isPhase(st.phase) ? st.phase : 'Pending',
      traffic: traffic(st.traffic),
      reason: current ? st.reason ?? '' : 'Created',
      message: current ? st.message ?? '' : 'the controller has not seen this generation yet',
      source: 'kubernetes',
      endpoints: [],
      timestamps: st.timestamps ?? {},
      requests: 0,
      errors: 0,
    };
    app.versions.push(v);
  }
  for (const a of apps.values()) a.versions.sort((x, y) => compareVersions(y.version, x.version));
  return { sidecarConnected: true, routingRevision: 0, apps: [...apps.values()].sort((a, b) => (a.app < b.app ? -1 : 1)), errors: [] };
}

const TERMINAL = new Set(['RolledBack', 'Failed', 'Rejected']);

export async function runKubectlMolt(argv: string[], out: (s: string) => void = (s) => void process.stdout.write(s)): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    out(KUBECTL_MOLT_HELP);
    return command ? 0 : 2;
  }
  const args = parseCommandLine(rest, {
    namespace: { type: 'string', short: 'n' },
    kubeconfig: { type: 'string' },
    json: { type: 'boolean' },
    watch: { type: 'boolean', short: 'w' },
  }, `kubectl molt ${command}`);
  if (args.help) { out(KUBECTL_MOLT_HELP); return 0; }
  const kc = loadKubeConfig(args.values.kubeconfig);
  const namespace = resolveNamespace(kc, args.values.namespace);
  const api = kc.makeApiClient(CustomObjectsApiClass);
  const list = async (): Promise<AV[]> => {
    try {
      const res = (await api.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: PLURAL })) as { items: AV[] };
      return res.items;
    } catch (err) {
      const e = err as { code?: number; body?: unknown; message?: string };
      throw new MoltError('MOLT_ERR_KUBERNETES', `cannot list AppVersions in namespace ${namespace}: ${e.code ? `HTTP ${e.code}: ` : ''}${typeof e.body === 'string' ? e.body.slice(0, 200) : e.message}`);
    }
  };
  const [app, version, extra] = args.positionals;
  switch (command) {
    case 'status': {
      if (version !== undefined) throw new MoltError('MOLT_ERR_USAGE', `unexpected argument "${version}" (see kubectl molt --help)`);
      const render = async () => {
        const st = toStatus(await list());
        if (app !== undefined && !st.apps.some((a) => a.app === app)) throw new MoltError('MOLT_ERR_NOT_FOUND', `no app "${app}" in namespace ${namespace}`);
        if (args.values.json) return JSON.stringify(app ? st.apps.find((a) => a.app === app) : st, null, 2) + '\n';
        return (app ? formatApp(st, app) : formatStatus(st)).replace(/^sidecar: .*\n/, `namespace: ${namespace}\n`);
      };
      if (!args.values.watch) { out(await render()); return 0; }
      return watch(render, 'kubectl molt status', out);
    }
    case 'promote': {
      if (!app) throw new MoltError('MOLT_ERR_USAGE', 'kubectl molt promote needs APP');
      if (extra !== undefined) throw new MoltError('MOLT_ERR_USAGE', `unexpected argument "${extra}"`);
      const items = (await list()).filter((a) => a.spec.app === app);
      const st = toStatus(items).apps[0];
      if (!st) throw new MoltError('MOLT_ERR_NOT_FOUND', `no app "${app}" in namespace ${namespace}`);
      const target = version
        ? st.versions.find((v) => v.version === version || v.name === version)
        : st.versions.find((v) => !TERMINAL.has(v.phase));
      if (!target) throw new MoltError('MOLT_ERR_NOT_FOUND', version ? `app "${app}" has no version "${version}"` : `app "${app}" has no version that can be promoted`);
      for (const av of items) {
        const want = av.metadata.name === target.name;
        const has = av.metadata.annotations?.[PROMOTED_ANNOTATION] === 'true';
        if (want !== has) await annotate(api, namespace, av.metadata.name, { [PROMOTED_ANNOTATION]: want ? 'true' : null });
      }
      out(`${app}: ${target.name} (version ${target.version}) promoted\n`);
      return 0;
    }
    case 'rollback': {
      if (!app) throw new MoltError('MOLT_ERR_USAGE', 'kubectl molt rollback needs APP');
      if (version !== undefined) throw new MoltError('MOLT_ERR_USAGE', `unexpected argument "${version}"`);
      const items = (await list()).filter((a) => a.spec.app === app);
      const st = toStatus(items).apps[0];
      if (!st) throw new MoltError('MOLT_ERR_NOT_FOUND', `no app "${app}" in namespace ${namespace}`);
      const live = st.versions.filter((v) => !TERMINAL.has(v.phase));
      if (live.length < 2) throw new MoltError('MOLT_ERR_CONFLICT', `app "${app}" has no previous version to roll back to`);
      const av = items.find((a) => a.metadata.name === live[0]!.name)!;
      if (parseRollbackReport(av.metadata.annotations)?.epoch === av.metadata.generation) {
        out(`${app}: ${av.metadata.name} is already rolled back\n`);
        return 0;
      }
      const report: RollbackReport = { epoch: av.metadata.generation ?? 1, reason: `manual rollback (kubectl molt, ${os.userInfo().username})`, at: new Date().toISOString(), by: 'kubectl-molt' };
      await annotate(api, namespace, av.metadata.name, { [ROLLBACK_ANNOTATION]: JSON.stringify(report), [PROMOTED_ANNOTATION]: null });
      out(`${app}: ${av.metadata.name} (version ${av.spec.version}) rolled back\n`);
      return 0;
    }
    default:
      throw new MoltError('MOLT_ERR_USAGE', `unknown command "${command}" (see kubectl molt --help)`);
  }
}

async function annotate(api: CustomObjectsApi, namespace: string, name: string, annotations: Record<string, string | null>): Promise<void> {
  await api.patchNamespacedCustomObject(
    { group: GROUP, version: VERSION, namespace, plural: PLURAL, name, body: { metadata: { annotations } } },
    MERGE_PATCH,
  );
}

/** Entry point of bin/kubectl-molt: errors print one line and set the exit code, as `molt` does. */
export async function kubectlMoltMain(argv: string[]): Promise<number> {
  try {
    return await runKubectlMolt(argv);
  } catch (err) {
    if (err instanceof MoltValidationErrors) {
      for (const e of err.errors) process.stderr.write(`kubectl molt: ${e.toString()}\n`);
      return 1;
    }
    if (err instanceof MoltError) {
      process.stderr.write(`kubectl molt: ${err.toString()}\n`);
      return err.code === 'MOLT_ERR_USAGE' ? 2 : 1;
    }
    process.stderr.write(`kubectl molt: ${(err as Error)?.stack ?? String(err)}\n`);
    return 1;
  }
}
