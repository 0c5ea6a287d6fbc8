// Several controller replicas against one fake apiserver: leader election on a Lease, identical routing
// tables everywhere, rollbacks reported by a non-leader, and hand-over when the leader's Lease expires.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeApiServer } from './fake-apiserver.js';
import { NS, replica, serversAV, versionsOf, waitFor } from './helpers.js';

test('two replicas: one leader, identical tables; a non-leader sidecar failure becomes status; hand-over on Lease expiry', async (t) => {
  const server = new FakeApiServer();
  await server.start();
  const a = await replica(server, 'replica-a');
  const b = await replica(server, 'replica-b');
  t.after(async () => {
    await a.stop();
    await b.stop();
    await server.close();
  });
  await a.controller.start();
  await waitFor('a leads', () => a.controller.isLeader);
  await b.controller.start();

  const lease = server.get('leases', NS, 'molt-controller')!;
  assert.equal(lease.spec.holderIdentity, 'replica-a');
  assert.equal(lease.spec.leaseDurationSeconds, 1);
  assert.match(lease.spec.renewTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/, 'renewTime is a MicroTime');

  server.create('appversions', NS, serversAV('pay-v1', 'pay', '1.0.0', 7301));
  server.create('appversions', NS, serversAV('pay-v2', 'pay', '2.0.0', 7302, { transition: { mode: 'SESSION' } }));
  await waitFor('a routes both', () => versionsOf(a.sidecar.last, 'pay').length === 2);
  await waitFor('b routes both', () => versionsOf(b.sidecar.last, 'pay').length === 2);
  assert.equal(b.controller.isLeader, false);
  assert.equal(b.controller.counters.statusWrites, 0, 'only the leader writes status');
  assert.deepEqual(b.sidecar.last!.apps, a.sidecar.last!.apps, 'identical routes on every replica');

  // b's sidecar (b is not the leader) rolls v2 back.
  b.sidecar.failure({ app: 'pay', versionId: 'pay-v2', version: '2.0.0', epoch: 1, reason: 'connect ECONNREFUSED', firstFailureAt: Date.now(), rolledBackAt: Date.now() });
  await waitFor('status RolledBack (written by the leader)', () => server.get('appversions', NS, 'pay-v2')?.status?.phase === 'RolledBack');
  const st = server.get('appversions', NS, 'pay-v2')!;
  assert.equal(JSON.parse(st.metadata.annotations['molt.dev/rollback']).by, 'replica-b');
  assert.equal(b.controller.counters.statusWrites, 0);
  for (const r of [a, b]) {
    await waitFor('converged on rolledBack', () => versionsOf(r.sidecar.last, 'pay').find((v) => v.id === 'pay-v2')?.state === 'rolledBack');
  }
  assert.deepEqual(b.sidecar.last!.apps, a.sidecar.last!.apps);

  // The leader crashes (the Lease is not released): b takes over once the Lease expires.
  await a.stop(false);
  await waitFor('b leads', () => b.controller.isLeader, 5000);
  const after = server.get('leases', NS, 'molt-controller')!;
  assert.equal(after.spec.holderIdentity, 'replica-b');
  assert.equal(after.spec.leaseTransitions, 1);

  // The new leader writes status for new resources.
  server.create('appversions', NS, serversAV('pay-v3', 'pay', '3.0.0', 7303));
  await waitFor('v3 status by b', () => server.get('appversions', NS, 'pay-v3')?.status?.phase === 'Serving');
  await waitFor('v3 routed by b', () => versionsOf(b.sidecar.last, 'pay').some((v) => v.id === 'pay-v3'));
  assert.ok(b.controller.counters.statusWrites > 0);
});

test('graceful stop releases the Lease so another replica leads without waiting for expiry', async (t) => {
  const server = new FakeApiServer();
  await server.start();
  // A long lease: a hand-over within the test timeout proves the release worked.
  const a = await replica(server, 'replica-a', { leaseDurationMs: 60_000, renewMs: 100 });
  const b = await replica(server, 'replica-b', { leaseDurationMs: 60_000, renewMs: 100 });
  t.after(async () => {
    await a.stop();
    await b.stop();
    await server.close();
  });
  await a.controller.start();
  await waitFor('a leads', () => a.controller.isLeader);
  await b.controller.start();
  await a.stop(true);
  await waitFor('b leads', () => b.controller.isLeader, 5000);
  assert.equal(server.get('leases', NS, 'molt-controller')!.spec.holderIdentity, 'replica-b');
});
