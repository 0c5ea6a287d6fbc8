// Leadership in Kubernetes mode: a lost Lease fences the leader's writes at once (requests in flight are
// aborted, new ones never sent) and the replica carries on as a follower that campaigns again; a renewal
// that hangs still ends leadership at the renew deadline; expiry is judged by the Lease's own
// spec.leaseDurationSeconds.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { V1MicroTime } from '@kubernetes/client-node';
import { FakeApiServer } from './fake-apiserver.js';
import { NS, replica, serversAV, versionsOf, waitFor } from './helpers.js';

function within<T>(what: string, p: Promise<T>, ms = 5000): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

test('a lost Lease aborts the leader\'s write in flight and fences further writes; the replica re-campaigns as a follower', async (t) => {
  const server = new FakeApiServer();
  await server.start();
  // A renew deadline (2s) far above scheduling noise: the only way to lose the Lease here is the takeover.
  const a = await replica(server, 'replica-a', { leaseDurationMs: 3000, renewMs: 100 });
  let held: ReturnType<FakeApiServer['hold']> | undefined;
  t.after(async () => {
    held?.release();
    await a.stop();
    await server.close();
  });
  await a.controller.start();
  await waitFor('a leads', () => a.controller.isLeader);
  await a.controller.idle();

  // The leader's first status write for this version reaches the apiserver and is held there.
  held = server.hold('PATCH', /\/appversions\/held-v1\/status$/);
  server.create('appversions', NS, serversAV('held-v1', 'held', '1.0.0', 7801));
  await within('status write in flight', held.arrived);

  // Another holder takes the Lease (as after a partition: a's renewals did not land in time).
  server.modify('leases', NS, 'molt-controller', (o) => {
    o.spec.holderIdentity = 'intruder';
    o.spec.renewTime = new V1MicroTime(Date.now()).toISOString();
    o.spec.leaseDurationSeconds = 2;
    o.spec.leaseTransitions = (o.spec.leaseTransitions ?? 0) + 1;
  });
  await within('the write in flight aborted by the old leader', held.clientAborted);
  assert.equal(a.controller.isLeader, false);
  assert.ok(a.controller.counters.leadershipLost >= 1);
  held.release(); // abandoned by the client: never applied
  await a.controller.idle();
  assert.equal(server.get('appversions', NS, 'held-v1')!.status, undefined, 'no status written after the Lease was lost');
  assert.ok(a.controller.counters.fencedWrites >= 1);

  // Still running: once the intruder stops renewing and its Lease (2s, its own duration) expires, a leads
  // again and does the work it had to drop.
  await waitFor('a leads again', () => a.controller.isLeader, 8000);
  assert.equal(server.get('leases', NS, 'molt-controller')!.spec.holderIdentity, 'replica-a');
  await waitFor('status written by the new term', () => server.get('appversions', NS, 'held-v1')?.status?.phase === 'Serving');
  await waitFor('routed', () => versionsOf(a.sidecar.last, 'held').length === 1);
});

test('a leader whose renewal hangs steps down at the renew deadline, without waiting for the request', async (t) => {
  const server = new FakeApiServer();
  await server.start();
  const a = await replica(server, 'replica-a', { leaseDurationMs: 900, renewMs: 100 });
  let held: ReturnType<FakeApiServer['hold']> | undefined;
  t.after(async () => {
    held?.release(); // never leave a request hanging into the teardown
    await a.stop();
    await server.close();
  });
  await a.controller.start();
  await waitFor('a leads', () => a.controller.isLeader);
  const stopped = new Promise<string>((resolve) => a.controller.elector.once('stopped', resolve));
  held = server.hold('PUT', /\/leases\/molt-controller$/);
  await within('renewal in flight', held.arrived);
  const reason = await within('step-down', stopped, 3000);
  assert.match(reason, /renew deadline/);
  assert.equal(a.controller.isLeader, false);
  assert.equal(a.controller.elector.term().aborted, true, 'the term\'s writers are fenced');
  held.release();
  // The replica keeps campaigning; the Lease is still its own, so it leads again.
  await waitFor('leads again', () => a.controller.isLeader && a.controller.elector.acquisitions >= 2, 5000);
});

test('Lease expiry follows the Lease\'s own spec.leaseDurationSeconds, not the candidate\'s setting', async (t) => {
  const server = new FakeApiServer();
  await server.start();
  // A crashed holder promised 1s; this candidate's own setting is a minute.
  server.create('leases', NS, {
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: { name: 'molt-controller' },
    spec: { holderIdentity: 'crashed', leaseDurationSeconds: 1, renewTime: new V1MicroTime(Date.now()).toISOString(), leaseTransitions: 0 },
  });
  const b = await replica(server, 'replica-b', { leaseDurationMs: 60_000, renewMs: 100 });
  t.after(async () => {
    await b.stop();
    await server.close();
  });
  await b.controller.start();
  await waitFor('b takes over after the Lease\'s 1s', () => b.controller.isLeader, 5000);
  const lease = server.get('leases', NS, 'molt-controller')!;
  assert.equal(lease.spec.holderIdentity, 'replica-b');
  assert.equal(lease.spec.leaseTransitions, 1);
  assert.equal(lease.spec.leaseDurationSeconds, 60, 'the new holder declares its own duration');
});
