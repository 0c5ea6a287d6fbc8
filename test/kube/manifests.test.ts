// Every file in crds/ and manifests/ is YAML (multi-document) whose documents have apiVersion, kind and
// metadata.name; example AppVersions pass the real validator; RBAC covers what the controller does.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { normalizeAppVersion } from '../../controller/load.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

function yamlFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...yamlFiles(p));
    else if (/\.ya?ml$/.test(e.name)) out.push(p);
  }
  return out.sort();
}

function docs(file: string): Array<Record<string, any>> {
  const parsed = YAML.parseAllDocuments(fs.readFileSync(file, 'utf8'));
  const out: Array<Record<string, any>> = [];
  for (const d of parsed) {
    assert.deepEqual(d.errors, [], `${file}: YAML errors`);
    const v = d.toJS();
    if (v !== null) out.push(v);
  }
  return out;
}

// molt-rules.yaml is a plain Prometheus rule file (rule_files:), not a Kubernetes object; its
// PrometheusRule twin is checked here and the rules themselves by promtool (test/monitoring.test.ts).
const PLAIN_PROMETHEUS_RULES = path.join(ROOT, 'manifests', 'monitoring', 'molt-rules.yaml');
const files = [...yamlFiles(path.join(ROOT, 'crds')), ...yamlFiles(path.join(ROOT, 'manifests')), path.join(ROOT, 'kind-config.yaml')]
  .filter((f) => f !== PLAIN_PROMETHEUS_RULES);

test('crds/, manifests/ and kind-config.yaml parse, and every document has apiVersion, kind, metadata.name', () => {
  assert.ok(files.some((f) => f.includes(`${path.sep}crds${path.sep}`)), 'crds/ has files');
  assert.ok(files.filter((f) => f.includes(`${path.sep}manifests${path.sep}`)).length >= 4, 'manifests/ has files');
  for (const f of files) {
    const ds = docs(f);
    assert.ok(ds.length > 0, `${f}: no documents`);
    for (const d of ds) {
      assert.equal(typeof d.apiVersion, 'string', `${f}: apiVersion`);
      assert.equal(typeof d.kind, 'string', `${f}: kind`);
      if (d.kind !== 'Cluster') assert.equal(typeof d.metadata?.name, 'string', `${f}: metadata.name`);
      else assert.equal(typeof d.name, 'string', `${f}: kind Cluster name`);
    }
  }
});

test('example AppVersions are valid', () => {
  const examples = files.filter((f) => docs(f).some((d) => d.kind === 'AppVersion'));
  assert.ok(examples.length >= 2);
  for (const f of examples) for (const d of docs(f)) if (d.kind === 'AppVersion') normalizeAppVersion(d, f);
});

test('the controller Deployment: two containers sharing the control socket volume, scrape annotations', () => {
  const all = files.flatMap(docs);
  const dep = all.find((d) => d.kind === 'Deployment' && d.metadata.name === 'molt')!;
  const spec = dep.spec.template.spec;
  assert.deepEqual(spec.containers.map((c: any) => c.name), ['controller', 'sidecar']);
  for (const c of spec.containers) assert.equal(c.volumeMounts[0].mountPath, '/var/run/molt');
  assert.ok(spec.volumes.some((v: any) => v.name === 'control' && v.emptyDir));
  assert.equal(dep.spec.template.metadata.annotations['prometheus.io/scrape'], 'true');
  assert.ok(spec.containers[0].args.includes('--kubernetes'));
  const svc = all.find((d) => d.kind === 'Service' && d.metadata.name === 'molt')!;
  const kind = all.find((d) => d.kind === 'Cluster')!;
  assert.equal(kind.nodes[0].extraPortMappings[0].containerPort, svc.spec.ports[0].nodePort);
});

test('RBAC grants exactly what Kubernetes mode uses', () => {
  const role = files.flatMap(docs).find((d) => d.kind === 'Role')!;
  const can = (group: string, resource: string, verb: string) =>
    role.rules.some((r: any) => r.apiGroups.includes(group) && r.resources.includes(resource) && r.verbs.includes(verb));
  for (const v of ['get', 'list', 'watch', 'patch']) assert.ok(can('molt.dev', 'appversions', v), `appversions ${v}`);
  assert.ok(can('molt.dev', 'appversions/status', 'patch'));
  for (const v of ['list', 'watch', 'create', 'update']) {
    assert.ok(can('apps', 'deployments', v), `deployments ${v}`);
    assert.ok(can('', 'services', v), `services ${v}`);
  }
  assert.ok(can('discovery.k8s.io', 'endpointslices', 'watch'));
  for (const v of ['get', 'create', 'update']) assert.ok(can('coordination.k8s.io', 'leases', v));
  assert.ok(!role.rules.some((r: any) => r.verbs.includes('*') || r.resources.includes('*')), 'no wildcards');
});
