// `kubectl molt`: the molt CLI as a kubectl plugin (bin/kubectl-molt on PATH). It talks to the
// cluster through the kubeconfig, like kubectl: status reads AppVersions and their status (what the
// leader wrote); promote and rollback set the annotations every replica watches
// (molt.dev/promoted, molt.dev/rollback; see docs/kubernetes.md). No admin port is needed.

import os from 'node:os';
import type { CustomObjectsApi } from '@kubernetes/client-node';
import { CustomObjectsApi as CustomObjectsApiClass } from '@kubernetes/client-node';
import { parseCommandLine } from '../../common/args.js';
import { MoltError, MoltValidationErrors } from '../../common/errors.js';
import { formatApp, formatStatus, watch } from '../cli.js';
import { GROUP, loadKubeConfig, MERGE_PATCH, PLURAL, resolveNamespace, VERSION } from './client.js';
import { parseRollbackReport, PROMOTE_STEP_ANNOTATION, PROMOTED_ANNOTATION, PROMOTED_GENERATION_ANNOTATION, ROLLBACK_ANNOTATION, toStatus, type AppVersionView as AV, type RollbackReport } from './status.js';

export const KUBECTL_MOLT_HELP = `Usage: kubectl molt <command> [flags]

molt's CLI as a kubectl plugin, talking to the cluster through your kubeconfig.

Commands:
  status [APP] [--watch]   AppVersions with phase, traffic share and reason (one app in detail)
  promote APP [VERSION]    finish the transition: all new traffic to VERSION (default: the newest);
                           under canary analysis (GRADUAL) one step, --full: all
  rollback APP             roll the newest serving version of APP back now

Flags:
  -n, --namespace NS       namespace (default: the kubeconfig context's)
  --kubeconfig FILE        kubeconfig (default: $KUBECONFIG, ~/.kube/config)
  --json                   status as JSON
  --full                   promote: finish the transition even under canary analysis
  -w, --watch              status: redraw every second until Ctrl-C
`;

export { toStatus };

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
    full: { type: 'boolean' },
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
      // Under canary analysis (GRADUAL, gating), one step: the leader advances past the step we saw, once.
      const a = target.analysis;
      if (!args.values.full && target === st.versions[0] && a?.mode === 'GRADUAL' && a.state !== 'Done' && a.state !== 'Stopped') {
        if (a.step === undefined) throw new MoltError('MOLT_ERR_CONFLICT', `${target.name}: canary analysis has not started yet (no step in status.analysis); try again, or use --full`);
        // "GENERATION/STEP": a leftover value cannot advance the gates of a later spec (they restart at 0).
        const generation = items.find((av) => av.metadata.name === target.name)?.metadata.generation ?? 1;
        await annotate(api, namespace, target.name, { [PROMOTE_STEP_ANNOTATION]: `${generation}/${a.step}` });
        const steps = a.steps ?? a.step + 1;
        out(a.step + 1 >= steps
          ? `${app}: ${target.name} (version ${target.version}) past its last step (${steps}/${steps}): promoted\n`
          : `${app}: ${target.name} (version ${target.version}) promoted one step: ${a.step + 2}/${steps}\n`);
        return 0;
      }
      for (const av of items) {
        const want = av.metadata.name === target.name;
        const has = av.metadata.annotations?.[PROMOTED_ANNOTATION] === 'true';
        const gen = av.metadata.annotations?.[PROMOTED_GENERATION_ANNOTATION];
        // The generation tag limits a preflight override to the spec promoted: a later spec change tests again.
        if (want && (!has || gen !== String(av.metadata.generation ?? 1))) {
          await annotate(api, namespace, av.metadata.name, { [PROMOTED_ANNOTATION]: 'true', [PROMOTED_GENERATION_ANNOTATION]: String(av.metadata.generation ?? 1) });
        } else if (!want && (has || gen !== undefined)) {
          await annotate(api, namespace, av.metadata.name, { [PROMOTED_ANNOTATION]: null, [PROMOTED_GENERATION_ANNOTATION]: null });
        }
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
      await annotate(api, namespace, av.metadata.name, { [ROLLBACK_ANNOTATION]: JSON.stringify(report), [PROMOTED_ANNOTATION]: null, [PROMOTED_GENERATION_ANNOTATION]: null });
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
