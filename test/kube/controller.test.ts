// KubeController against the fake apiserver: informers -> reconcile -> routing tables and status.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeApiServer } from './fake-apiserver.js';
import { NS, dockerAV, endpointSlice, replica, serversAV, versionsOf, waitFor } from './helpers.js';

async function setup(t: import('node:test').TestContext) {
  const server = new FakeApiServer();
  await server.start();
  const r = await replica(server, 'replica-a');
  t.after(async () => {
    await r.stop();
    await server.close();
  });
  await r.controller.start();
  await waitFor('leadership', () => r.controller.isLeader);
  return { server, r };
}

test('servers runtime: v1 then v2 GRADUAL changes the routing table; status is written via the subresource', async (t) => {
  const { server, r } = await setup(t);

  server.create('appversions', NS, serversAV('shop-v1', 'shop', '1.0.0', 7001));
  const t1 = await waitFor('v1 routed', () => (versionsOf(r.sidecar.last, 'shop').length === 1 ? r.sidecar.last : undefined));
  assert.deepEqual(versionsOf(t1, 'shop'), [{ id: 'shop-v1', state: 'serving', endpoints: ['127.0.0.1:7001'], mode: 'INSTANT' }]);
  const st1 = server.get('appversions', NS, 'shop-v1')!.status;
  assert.equal(st1.phase, 'Serving');
  assert.equal(st1.observedGeneration, 1);
  assert.ok(st1.timestamps.serving);
  assert.equal(t1.apps[0]!.versions[0]!.servingSince, Date.parse(st1.timestamps.serving));
  const ready = st1.conditions.find((c: { type: string }) => c.type === 'Ready');
  assert.equal(ready.status, 'True');
  assert.ok(ready.lastTransitionTime);

  server.create('appversions', NS, serversAV('shop-v2', 'shop', '2.0.0', 7002, { transition: { mode: 'GRADUAL', steps: [{ weight: 10, pause: '1m' }, { weight: 100 }] } }));
  const t2 = await waitFor('v2 routed', () => (versionsOf(r.sidecar.last, 'shop').length === 2 ? r.sidecar.last : undefined));
  assert.deepEqual(versionsOf(t2, 'shop'), [
    { id: 'shop-v2', state: 'serving', endpoints: ['127.0.0.1:7002'], mode: 'GRADUAL' },
    { id: 'shop-v1', state: 'serving', endpoints: ['127.0.0.1:7001'], mode: 'INSTANT' },
  ]);
  assert.deepEqual(t2.apps[0]!.versions[0]!.transition.steps, [{ weight: 10, pauseMs: 60_000 }, { weight: 100 }]);
  assert.ok(t2.revision > t1.revision);
  // The callback and the sidecar saw the same tables.
  assert.deepEqual(r.tables[r.tables.length - 1], r.sidecar.last);

  // Status writes used the status subresource with a merge patch; nothing wrote the main resource.
  const statusWrites = server.requests.filter((q) => q.method === 'PATCH' && q.path.endsWith('/status'));
  assert.ok(statusWrites.length >= 2);
  assert.ok(statusWrites.every((q) => q.contentType === 'application/merge-patch+json'));
  assert.equal(server.requests.filter((q) => q.method !== 'GET' && /appversions\/[^/]+$/.test(q.path)).length, 0);

  // Idle and unchanged: a reconcile of everything writes nothing more (no no-op writes).
  await r.controller.idle();
  const before = r.controller.counters.statusWrites;
  const pushed = r.controller.counters.tablesPushed;
  server.modify('appversions', NS, 'shop-v1', (o) => { o.metadata.labels = { touched: 'yes' }; });
  await waitFor('label seen', () => r.controller.informers.appversions.get('shop-v1', NS)?.metadata.labels?.touched);
  await r.controller.idle();
  assert.equal(r.controller.counters.statusWrites, before);
  assert.equal(r.controller.counters.tablesPushed, pushed);

  // Deleting v2 takes it out of the table.
  server.remove('appversions', NS, 'shop-v2');
  await waitFor('v2 gone', () => versionsOf(r.sidecar.last, 'shop').length === 1);
});

test('docker runtime: Deployment + Service with owner references, routes to ready EndpointSlice endpoints', async (t) => {
  const { server, r } = await setup(t);

  const av = server.create('appversions', NS, dockerAV('web-v1', 'web', '1.0.0', { keepFailed: false }));
  const dep = await waitFor('deployment', () => server.get('deployments', NS, 'web-v1'));
  assert.equal(dep.spec.replicas, 2);
  assert.deepEqual(dep.spec.selector.matchLabels, { 'molt.dev/appversion': 'web-v1' });
  assert.equal(dep.metadata.labels['app.kubernetes.io/managed-by'], 'molt');
  assert.deepEqual(dep.metadata.ownerReferences, [{ apiVersion: 'molt.dev/v1alpha1', kind: 'AppVersion', name: 'web-v1', uid: av.metadata.uid, controller: true, blockOwnerDeletion: true }]);
  const c = dep.spec.template.spec.containers[0];
  assert.equal(c.image, 'ghcr.io/example/shop:1.0.0');
  assert.deepEqual(c.readinessProbe.httpGet, { path: '/healthz', port: 8080 });
  assert.equal(c.readinessProbe.periodSeconds, 2);
  const svc = await waitFor('service', () => server.get('services', NS, 'web-v1'));
  assert.equal(svc.spec.clusterIP, 'None');
  assert.equal(svc.metadata.ownerReferences[0].uid, av.metadata.uid);
  await waitFor('status Starting', () => server.get('appversions', NS, 'web-v1')?.status?.phase === 'Starting');

  // Pods exist but are not ready: nothing routed.
  server.create('endpointslices', NS, endpointSlice('web-v1', [{ ip: '10.0.0.5', ready: false }, { ip: '10.0.0.6', ready: false }]));
  await r.controller.idle();
  await waitFor('slice in cache', () => r.controller.informers.endpointslices.list().length === 1);
  await r.controller.idle();
  assert.equal(versionsOf(r.controller.table, 'web').length, 0);

  // One pod becomes ready.
  server.modify('endpointslices', NS, 'web-v1-abcde', (o) => { o.endpoints[0].conditions.ready = true; });
  const t1 = await waitFor('routed', () => (versionsOf(r.sidecar.last, 'web').length === 1 ? r.sidecar.last : undefined));
  assert.deepEqual(versionsOf(t1, 'web')[0]!.endpoints, ['10.0.0.5:8080']);
  await waitFor('status Serving', () => server.get('appversions', NS, 'web-v1')?.status?.phase === 'Serving');

  // The second becomes ready too.
  server.modify('endpointslices', NS, 'web-v1-abcde', (o) => { o.endpoints[1].conditions.ready = true; });
  await waitFor('two endpoints', () => versionsOf(r.sidecar.last, 'web')[0]?.endpoints.length === 2);

  // A spec change (new generation) replaces the Deployment; a no-op reconcile does not.
  const writes = server.requests.filter((q) => q.method === 'PUT' && q.path.includes('/deployments/')).length;
  server.modify('appversions', NS, 'web-v1', (o) => { o.spec.docker.replicas = 3; });
  await waitFor('replicas 3', () => server.get('deployments', NS, 'web-v1')?.spec.replicas === 3);
  await r.controller.idle();
  assert.equal(server.requests.filter((q) => q.method === 'PUT' && q.path.includes('/deployments/')).length, writes + 1);

  // Deleting the AppVersion garbage-collects the Deployment and Service and drops the route.
  server.remove('appversions', NS, 'web-v1');
  assert.equal(server.get('deployments', NS, 'web-v1'), undefined);
  assert.equal(server.get('services', NS, 'web-v1'), undefined);
  await waitFor('route dropped', () => versionsOf(r.sidecar.last, 'web').length === 0);
});

test('a sidecar failure report becomes a RolledBack status and a rolledBack route', async (t) => {
  const { server, r } = await setup(t);
  server.create('appversions', NS, serversAV('api-v1', 'api', '1.0.0', 7101));
  server.create('appversions', NS, serversAV('api-v2', 'api', '2.0.0', 7102));
  await waitFor('both routed', () => versionsOf(r.sidecar.last, 'api').length === 2);

  r.sidecar.failure({ app: 'api', versionId: 'api-v2', version: '2.0.0', epoch: 1, reason: 'status 503', firstFailureAt: Date.now() - 5, rolledBackAt: Date.now() });
  await waitFor('rolledBack route', () => versionsOf(r.sidecar.last, 'api').find((v) => v.id === 'api-v2')?.state === 'rolledBack');
  const o = await waitFor('status RolledBack', () => {
    const x = server.get('appversions', NS, 'api-v2');
    return x?.status?.phase === 'RolledBack' ? x : undefined;
  });
  assert.equal(o.status.reason, 'FailurePolicy');
  assert.equal(o.status.message, 'status 503');
  const cond = o.status.conditions.find((c: { type: string }) => c.type === 'RolledBack');
  assert.deepEqual([cond.status, cond.reason, cond.message], ['True', 'FailurePolicy', 'status 503']);
  const report = JSON.parse(o.metadata.annotations['molt.dev/rollback']);
  assert.equal(report.epoch, 1);
  assert.equal(report.by, 'replica-a');
  assert.equal(o.metadata.generation, 1, 'the report is metadata: no new generation');
  assert.equal(versionsOf(r.sidecar.last, 'api').find((v) => v.id === 'api-v1')?.state, 'serving');

  // A stale report (older epoch) is ignored; a spec edit (new generation) re-admits the version.
  server.modify('appversions', NS, 'api-v2', (x) => { x.spec.servers = [{ host: '127.0.0.1', port: 7103 }]; });
  await waitFor('re-admitted', () => {
    const v = r.sidecar.last?.apps[0]?.versions.find((x) => x.id === 'api-v2');
    return v?.state === 'serving' && v.epoch === 2;
  });
  r.sidecar.failure({ app: 'api', versionId: 'api-v2', version: '2.0.0', epoch: 1, reason: 'old', firstFailureAt: 0, rolledBackAt: 0 });
  await r.controller.idle();
  assert.equal(server.get('appversions', NS, 'api-v2')!.status.phase, 'Serving');
});

test('invalid specs and the process runtime are reported in status, never routed', async (t) => {
  const { server, r } = await setup(t);
  server.create('appversions', NS, { apiVersion: 'molt.dev/v1alpha1', kind: 'AppVersion', metadata: { name: 'bad' }, spec: { app: 'bad', version: '1', servers: [{ host: '', port: 99999 }] } });
  server.create('appversions', NS, { apiVersion: 'molt.dev/v1alpha1', kind: 'AppVersion', metadata: { name: 'proc' }, spec: { app: 'proc', version: '1', process: { command: 'node' } } });
  const bad = await waitFor('bad status', () => server.get('appversions', NS, 'bad')?.status);
  assert.equal(bad.phase, 'Failed');
  assert.equal(bad.reason, 'InvalidSpec');
  assert.match(bad.message, /spec\.servers/);
  const proc = await waitFor('proc status', () => server.get('appversions', NS, 'proc')?.status);
  assert.equal(proc.reason, 'UnsupportedRuntime');
  await r.controller.idle();
  assert.equal(r.controller.table?.apps.length ?? 0, 0);
});

test('reconcile errors are retried with backoff and counted', async (t) => {
  const { server, r } = await setup(t);
  server.failNext('PATCH', /\/appversions\/flaky\/status$/, 500, 2);
  server.create('appversions', NS, serversAV('flaky', 'flaky', '1.0.0', 7201));
  await waitFor('status after retries', () => server.get('appversions', NS, 'flaky')?.status?.phase === 'Serving');
  assert.ok(r.controller.queue.failures >= 2);
  await waitFor('routed', () => versionsOf(r.sidecar.last, 'flaky').length === 1);
});
