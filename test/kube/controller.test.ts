// KubeController against the fake apiserver: informers -> reconcile -> routing tables and status.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeApiServer } from './fake-apiserver.js';
import { NS, dockerAV, endpointSlice, replica, serversAV, versionsOf, waitFor } from './helpers.js';

async function setup(t: import('node:test').TestContext, extra: Parameters<typeof replica>[2] = {}) {
  const server = new FakeApiServer();
  await server.start();
  const r = await replica(server, 'replica-a', extra);
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

  // Deleting the AppVersion: the route goes at once, before the garbage collector has removed anything
  // (molt must not route to a Deployment whose AppVersion is gone, nor delete or recreate it itself).
  server.pauseGc();
  server.remove('appversions', NS, 'web-v1');
  await waitFor('route dropped', () => versionsOf(r.sidecar.last, 'web').length === 0);
  await r.controller.idle();
  assert.ok(server.get('deployments', NS, 'web-v1'), 'the Deployment is the garbage collector\'s to delete');
  // The garbage collector deletes the owned objects later; molt's caches follow and it recreates nothing.
  server.resumeGc();
  await waitFor('Deployment gone from molt\'s cache', () => r.controller.informers.deployments.list().length === 0);
  await waitFor('Service gone from molt\'s cache', () => r.controller.informers.services.list().length === 0);
  await r.controller.idle();
  assert.equal(server.get('deployments', NS, 'web-v1'), undefined);
  assert.equal(server.get('services', NS, 'web-v1'), undefined);
  assert.equal(server.requests.filter((q) => q.method === 'POST' && q.path.endsWith('/deployments')).length, 1, 'created once, never recreated');
});

test('an AppVersion held by a finalizer: routing stops at deletionTimestamp, status is left alone, workloads go after the finalizer', async (t) => {
  const { server, r } = await setup(t);
  server.create('appversions', NS, dockerAV('fin-v1', 'fin', '1.0.0', {}));
  server.modify('appversions', NS, 'fin-v1', (o) => { o.metadata.finalizers = ['example.com/backup']; });
  await waitFor('deployment', () => server.get('deployments', NS, 'fin-v1'));
  server.create('endpointslices', NS, endpointSlice('fin-v1', [{ ip: '10.0.3.1', ready: true }]));
  await waitFor('routed', () => versionsOf(r.sidecar.last, 'fin').length === 1);
  await waitFor('Serving', () => server.get('appversions', NS, 'fin-v1')?.status?.phase === 'Serving');
  await r.controller.idle();

  server.remove('appversions', NS, 'fin-v1');
  const deleting = server.get('appversions', NS, 'fin-v1')!;
  assert.ok(deleting.metadata.deletionTimestamp, 'still there, being deleted');
  await waitFor('route dropped at deletionTimestamp', () => versionsOf(r.sidecar.last, 'fin').length === 0);
  await r.controller.idle();
  const statusWrites = r.controller.counters.statusWrites;
  assert.deepEqual(server.get('appversions', NS, 'fin-v1')!.status, deleting.status, 'no status writes to an object being deleted');
  assert.ok(server.get('deployments', NS, 'fin-v1'), 'owner still exists: its Deployment stays');

  // The other controller finishes: the object goes, then the garbage collector takes its Deployment.
  server.modify('appversions', NS, 'fin-v1', (o) => { o.metadata.finalizers = []; });
  assert.equal(server.get('appversions', NS, 'fin-v1'), undefined);
  await waitFor('Deployment collected and seen', () => r.controller.informers.deployments.list().length === 0);
  await r.controller.idle();
  assert.equal(server.get('deployments', NS, 'fin-v1'), undefined, 'molt did not recreate it');
  assert.equal(r.controller.counters.statusWrites, statusWrites);
});

test('kubectl delete --cascade=foreground: molt does not recreate the workloads the garbage collector deletes first', async (t) => {
  const { server, r } = await setup(t);
  server.create('appversions', NS, dockerAV('fg-v1', 'fg', '1.0.0'));
  await waitFor('deployment', () => server.get('deployments', NS, 'fg-v1') && server.get('services', NS, 'fg-v1'));
  await r.controller.idle();
  server.remove('appversions', NS, 'fg-v1', 'Foreground');
  await waitFor('AppVersion gone after its dependents', () => !server.get('appversions', NS, 'fg-v1'));
  await waitFor('caches empty', () => r.controller.informers.deployments.list().length === 0 && r.controller.informers.appversions.list().length === 0);
  await r.controller.idle();
  assert.equal(server.get('deployments', NS, 'fg-v1'), undefined);
  assert.equal(server.get('services', NS, 'fg-v1'), undefined);
  assert.equal(server.requests.filter((q) => q.method === 'POST' && q.path.endsWith('/deployments')).length, 1, 'created once, never recreated');
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
  // Valid for the CRD schema (the apiserver admits it), invalid for molt: GRADUAL weights must increase.
  server.create('appversions', NS, {
    apiVersion: 'molt.dev/v1alpha1',
    kind: 'AppVersion',
    metadata: { name: 'bad' },
    spec: { app: 'bad', version: '1', servers: [{ host: '127.0.0.1', port: 7001 }], transition: { mode: 'GRADUAL', steps: [{ weight: 50, pause: '1m' }, { weight: 10 }] } },
  });
  server.create('appversions', NS, { apiVersion: 'molt.dev/v1alpha1', kind: 'AppVersion', metadata: { name: 'proc' }, spec: { app: 'proc', version: '1', process: { command: 'node' } } });
  const bad = await waitFor('bad status', () => server.get('appversions', NS, 'bad')?.status);
  assert.equal(bad.phase, 'Failed');
  assert.equal(bad.reason, 'InvalidSpec');
  assert.match(bad.message, /spec\.transition\.steps\[1\]\.weight/);
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

test('healthCheck.startupTimeout: a version never ready in time is Failed (NotReady), scaled to zero, never routed; a new generation starts over', async (t) => {
  const { server, r } = await setup(t);
  // No event arrives after the Deployment is created: only a requeue-after can notice the deadline.
  server.create('appversions', NS, dockerAV('slow-v1', 'slow', '1.0.0', { healthCheck: { path: '/healthz', startupTimeout: '1s' } }));
  const starting = await waitFor('Starting', () => {
    const o = server.get('appversions', NS, 'slow-v1');
    return o?.status?.phase === 'Starting' ? o : undefined;
  });
  const failed = await waitFor('Failed', () => {
    const o = server.get('appversions', NS, 'slow-v1');
    return o?.status?.phase === 'Failed' ? o.status : undefined;
  }, 6000);
  // Same reason and message as local mode (controller/controller.ts).
  assert.equal(failed.reason, 'NotReady');
  assert.equal(failed.message, 'no instance became ready within 1s');
  assert.equal(failed.traffic, 0);
  assert.ok(failed.timestamps.failed);
  assert.ok(Date.parse(failed.timestamps.failed) - Date.parse(starting.status.timestamps.created) >= 1000);
  const ready = failed.conditions.find((c: { type: string }) => c.type === 'Ready');
  assert.deepEqual([ready.status, ready.reason], ['False', 'NotReady']);
  await waitFor('scaled to zero', () => server.get('deployments', NS, 'slow-v1')?.spec.replicas === 0);

  // Pods that turn ready after the deadline do not bring it back in this generation.
  server.create('endpointslices', NS, endpointSlice('slow-v1', [{ ip: '10.0.4.1', ready: true }]));
  await waitFor('slice seen', () => r.controller.informers.endpointslices.list().length === 1);
  await r.controller.idle();
  assert.equal(versionsOf(r.controller.table, 'slow').length, 0);
  assert.equal(server.get('appversions', NS, 'slow-v1')!.status.phase, 'Failed');

  // A spec edit is a new rollout: the deadline starts again and ready pods are routed.
  server.modify('appversions', NS, 'slow-v1', (o) => { o.spec.healthCheck.startupTimeout = '1h'; });
  await waitFor('routed in the new generation', () => versionsOf(r.sidecar.last, 'slow').length === 1);
  const st = server.get('appversions', NS, 'slow-v1')!.status;
  assert.equal(st.phase, 'Serving');
  assert.equal(st.observedGeneration, 2);
  await waitFor('scaled back up', () => server.get('deployments', NS, 'slow-v1')?.spec.replicas === 2);
});

test('periodic resync reconciles every key again without any event', async (t) => {
  const { server, r } = await setup(t, { resyncMs: 150 });
  server.create('appversions', NS, serversAV('rs-v1', 'rs', '1.0.0', 7601));
  await waitFor('routed', () => versionsOf(r.sidecar.last, 'rs').length === 1);
  await r.controller.idle();
  const runs = r.controller.queue.runs;
  const events = server.requests.length;
  await waitFor('two resyncs', () => r.controller.counters.resyncs >= 2 && r.controller.queue.runs >= runs + 2);
  // Nothing changed, so the resyncs wrote nothing (only the Lease is renewed meanwhile).
  assert.deepEqual(server.requests.slice(events).filter((q) => q.method !== 'GET' && !q.path.includes('/leases/')), []);
});
