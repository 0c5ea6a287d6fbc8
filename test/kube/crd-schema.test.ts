// molt's CRD (crds/appversion.yaml) as a real apiserver applies it, through the same structural-schema
// admission the fake apiserver uses: what users apply is admitted unchanged, what molt writes to status
// survives pruning (a field missing from the schema would be dropped silently by a real cluster), and bad
// specs are refused at the field that is wrong, with the apiserver's 422 Status.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { startupTimeoutStatus } from '../../controller/kube/controller.js';
import { computeStatus, type StatusInput } from '../../controller/kube/status.js';
import { FakeApiServer, appVersionSchema } from './fake-apiserver.js';
import { NS, dockerAV, serversAV } from './helpers.js';
import { applyDefaults, prune, validate, type Schema } from './structural-schema.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

function admit(obj: Record<string, any>): { obj: Record<string, any>; errors: string[] } {
  const o = structuredClone(obj);
  const schema = appVersionSchema();
  prune(o, schema);
  applyDefaults(o, schema);
  return { obj: o, errors: validate(o, schema).map((e) => `${e.field}: ${e.detail}`) };
}

test('the example AppVersions are admitted by the CRD unchanged (nothing pruned, nothing refused)', () => {
  const dir = path.join(ROOT, 'manifests', 'examples');
  let n = 0;
  for (const f of fs.readdirSync(dir)) {
    for (const d of YAML.parseAllDocuments(fs.readFileSync(path.join(dir, f), 'utf8')).map((x) => x.toJS())) {
      if (d?.kind !== 'AppVersion') continue;
      n++;
      const { obj, errors } = admit(d);
      assert.deepEqual(errors, [], f);
      assert.deepEqual(obj, d, `${f}: the apiserver would change it`);
    }
  }
  assert.ok(n >= 2);
});

const evidence = {
  compared: 4, mismatched: 1, errors: 0, dropped: 0, skipped: 0,
  topMismatches: [{ path: '$.items[*].price', count: 1, examples: [{ old: '5', new: '51' }] }],
  latency: { oldP50: 1.2, oldP95: 2.5, newP50: 1.3, newP95: 2.75 },
};

test('every status molt writes survives the CRD\'s pruning and validation unchanged', () => {
  const now = Date.parse('2030-01-01T00:00:00Z');
  const base: StatusInput = { generation: 2, current: undefined, runtime: 'docker', deploymentExists: true, readyEndpoints: 0, rollback: undefined, promoted: false, traffic: undefined, now };
  const starting = computeStatus(base);
  const statuses = [
    computeStatus({ ...base, deploymentExists: false }),
    starting,
    computeStatus({ ...base, current: starting, readyEndpoints: 2, traffic: 0.25, now: now + 1000 }),
    computeStatus({ ...base, readyEndpoints: 1, promoted: true }),
    computeStatus({ ...base, readyEndpoints: 1, rollback: { reason: 'status 503', at: '2030-01-01T00:00:02.000Z' } }),
    computeStatus({ ...base, invalid: 'spec.app: required' }),
    startupTimeoutStatus(starting, starting, 'no instance became ready within 60s', now + 61_000),
    // Preflight (issue 11): Testing with pending evidence, Rejected with the evidence, a pass and an override.
    computeStatus({ ...base, readyEndpoints: 1, preflight: {}, preflightEvidence: { ...evidence, verdict: 'Pending', message: '3 of 100 request(s) compared so far' } }),
    computeStatus({ ...base, readyEndpoints: 1, preflight: { verdict: 'fail', reason: 'PreflightMismatch', message: '1 of 4 differed' }, preflightEvidence: { ...evidence, verdict: 'Fail', reason: 'PreflightMismatch', message: '1 of 4 differed' } }),
    computeStatus({ ...base, readyEndpoints: 1, preflight: { verdict: 'pass' }, preflightEvidence: { ...evidence, verdict: 'Pass', message: 'first version', hooksOnly: true, latency: { oldP50: null, oldP95: null, newP50: null, newP95: null } } }),
    computeStatus({ ...base, readyEndpoints: 1, preflight: { verdict: 'overridden' }, preflightEvidence: { ...evidence, verdict: 'Overridden', message: 'promoted by the user past its preflight (molt.dev/promoted)' } }),
  ];
  assert.deepEqual(statuses.slice(-4).map((s) => s.phase), ['Testing', 'Rejected', 'Serving', 'Serving']);
  for (const status of statuses) {
    const av = { ...dockerAV('s', 'shop', '1.0.0'), status };
    const { obj, errors } = admit(av);
    assert.deepEqual(errors, [], status.phase);
    assert.deepEqual(obj.status, status, `${status.phase}: a real apiserver would prune part of this status`);
  }
});

test('the apiserver refuses bad AppVersions with a 422 Status naming each field; unknown fields are pruned', async (t) => {
  const server = new FakeApiServer();
  await server.start();
  t.after(() => server.close());
  const refused = (spec: Record<string, unknown>) => {
    try {
      server.create('appversions', NS, { apiVersion: 'molt.dev/v1alpha1', kind: 'AppVersion', metadata: { name: 'x' }, spec });
    } catch (err) {
      return (err as { status: Record<string, any> }).status;
    }
    assert.fail('admitted');
  };
  const s1 = refused({ app: 'Shop', version: '1', servers: [{ host: '127.0.0.1', port: 70000 }] });
  assert.equal(s1.code, 422);
  assert.equal(s1.reason, 'Invalid');
  assert.equal(s1.details.kind, 'AppVersion');
  assert.equal(s1.details.group, 'molt.dev');
  assert.deepEqual(s1.details.causes.map((c: { field: string; reason: string }) => `${c.field} ${c.reason}`), [
    'spec.app FieldValueInvalid',
    'spec.servers[0].port FieldValueInvalid',
  ]);
  assert.match(s1.message, /^AppVersion\.molt\.dev "x" is invalid: \[spec\.app: Invalid value: "Shop": spec\.app in body should match '/);
  const s2 = refused({ app: 'shop', version: '1', docker: { image: 'x' }, transition: { mode: 'FAST' } });
  assert.deepEqual(s2.details.causes.map((c: { field: string; reason: string }) => `${c.field} ${c.reason}`).sort(), [
    'spec.docker.containerPort FieldValueRequired',
    'spec.transition.mode FieldValueNotSupported',
  ]);
  const s3 = refused({ app: 'shop', version: '1', servers: [{ host: 'a', port: 1 }], docker: { image: 'x', containerPort: 80 } });
  assert.match(s3.details.causes[0].message, /oneOf/);
  assert.equal(refused({ app: 'shop', version: '1', servers: [{ host: 'a', port: 1 }], healthCheck: { interval: 1.5 } }).details.causes[0].reason, 'FieldValueTypeInvalid');

  const stored = server.create('appversions', NS, { ...serversAV('ok', 'shop', '1', 1), extra: 1, spec: { ...serversAV('ok', 'shop', '1', 1).spec as object, colour: 'blue' } });
  assert.equal(stored.extra, undefined);
  assert.equal(stored.spec.colour, undefined);
  assert.equal(stored.spec.app, 'shop');
});

test('the double defaults like the apiserver: absent and null (non-nullable) fields get defaults, nested and in arrays', () => {
  const schema: Schema = {
    type: 'object',
    properties: {
      spec: {
        type: 'object',
        properties: {
          mode: { type: 'string', default: 'INSTANT' },
          retries: { type: 'integer', default: 3 },
          servers: { type: 'array', items: { type: 'object', properties: { port: { type: 'integer', default: 80 }, host: { type: 'string' } } } },
          limits: { type: 'object', default: { cpu: '1', junk: true }, properties: { cpu: { type: 'string' } } },
        },
      },
    },
  };
  const o: Record<string, any> = { apiVersion: 'x/v1', kind: 'X', metadata: {}, spec: { mode: null, servers: [{ host: 'a' }, { host: 'b', port: 81 }] } };
  prune(o, schema);
  applyDefaults(o, schema);
  assert.deepEqual(o.spec, { mode: 'INSTANT', retries: 3, servers: [{ host: 'a', port: 80 }, { host: 'b', port: 81 }], limits: { cpu: '1' } });
  assert.deepEqual(validate(o, schema), []);
});
