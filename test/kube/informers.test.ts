// client-node's ListWatch through our Watched wrapper, against the fake apiserver: watch disconnects,
// BOOKMARKs (asked for, and sparing a re-list), 410 Gone re-lists (as an ERROR event and as an HTTP status),
// and list failures with backoff. Also the controller end to end across those, including a watch that
// could not reconnect until its resourceVersion had left the server's bounded history.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CustomObjectsApi, type KubernetesListObject } from '@kubernetes/client-node';
import { APPVERSIONS_PATH, GROUP, PLURAL, VERSION } from '../../controller/kube/client.js';
import { Watched, backoffDelay } from '../../controller/kube/informers.js';
import type { RawAppVersion } from '../../controller/kube/controller.js';
import { FakeApiServer } from './fake-apiserver.js';
import { NS, kubeConfigFor, replica, serversAV, versionsOf, waitFor } from './helpers.js';

async function setup(t: import('node:test').TestContext, opts: ConstructorParameters<typeof FakeApiServer>[0] = {}) {
  const server = new FakeApiServer(opts);
  await server.start();
  const kc = kubeConfigFor(server);
  const custom = kc.makeApiClient(CustomObjectsApi);
  const w = new Watched<RawAppVersion>({
    kubeConfig: kc,
    name: 'appversions',
    path: APPVERSIONS_PATH(NS),
    list: () => custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NS, plural: PLURAL }) as Promise<KubernetesListObject<RawAppVersion>>,
    backoff: { initialMs: 10, maxMs: 100 },
  });
  const events: string[] = [];
  w.on('change', (o, how) => events.push(`${how}:${o.metadata.name}`));
  t.after(async () => {
    await w.stop();
    await server.close();
  });
  return { server, w, events };
}

const watches = (s: FakeApiServer) => s.requests.filter((q) => q.watch);

test('list then watch from the list resourceVersion; a dropped watch resumes from the last seen resourceVersion', async (t) => {
  const { server, w, events } = await setup(t);
  server.create('appversions', NS, serversAV('a', 'x', '1', 1));
  const synced = new Promise<void>((r) => w.once('synced', r));
  await w.start();
  await synced;
  assert.equal(w.list().length, 1);
  assert.equal(watches(server)[0]!.query.resourceVersion, server.resourceVersion);

  server.create('appversions', NS, serversAV('b', 'x', '2', 2));
  await waitFor('b added', () => events.includes('add:b'));
  const rvAfterB = server.resourceVersion;

  server.closeWatches();
  await waitFor('re-watch', () => watches(server).length === 2 && server.activeWatches === 1);
  assert.equal(watches(server)[1]!.query.resourceVersion, rvAfterB, 'resumes from the last event');
  assert.equal(w.lists, 1, 'no re-list after a plain disconnect');

  server.modify('appversions', NS, 'a', (o) => { o.spec.version = '1.1'; });
  await waitFor('a updated', () => events.includes('update:a'));
});

test('watches ask for BOOKMARKs, which keep a quiet watch resumable after the server\'s history moved on', async (t) => {
  // A short history: a few changes elsewhere push our last resourceVersion out of the kept window.
  const { server, w } = await setup(t, { historyLimit: 3 });
  await w.start();
  await waitFor('watching', () => server.activeWatches === 1);
  assert.equal(watches(server)[0]!.query.allowWatchBookmarks, 'true');
  for (let i = 0; i < 5; i++) server.create('appversions', 'elsewhere', serversAV(`z${i}`, 'x', '1', 1));
  server.bookmark();
  const rv = server.resourceVersion;
  await waitFor('bookmark applied', () => w.resourceVersion === rv);
  server.closeWatches();
  await waitFor('re-watch', () => watches(server).length === 2 && server.activeWatches === 1);
  assert.equal(watches(server)[1]!.query.resourceVersion, rv);
  assert.equal(w.lists, 1, 'resumed from the bookmark: no 410, no re-list');
});

for (const mode of ['ERROR event', 'HTTP status'] as const) {
  test(`410 Gone (${mode}) makes the informer re-list and catch up on what it missed`, async (t) => {
    const { server, w, events } = await setup(t);
    server.goneAsHttpStatus = mode === 'HTTP status';
    server.create('appversions', NS, serversAV('a', 'x', '1', 1));
    server.create('appversions', NS, serversAV('b', 'x', '2', 2));
    await w.start();
    await waitFor('watching', () => server.activeWatches === 1 && w.list().length === 2);

    // While the watch is being expired, b is deleted and c created; history is compacted.
    server.compact(mode === 'ERROR event');
    server.remove('appversions', NS, 'b');
    server.create('appversions', NS, serversAV('c', 'x', '3', 3));
    server.compact(false);
    if (mode === 'HTTP status') server.closeWatches();

    await waitFor('re-listed', () => w.lists === 2);
    await waitFor('caught up', () => events.includes('add:c') && events.includes('delete:b'));
    assert.deepEqual(w.list().map((o) => o.metadata.name).sort(), ['a', 'c']);
  });
}

test('a failing list is retried with exponential backoff until it succeeds', async (t) => {
  const { server, w } = await setup(t);
  server.failNext('GET', /appversions$/, 500, 3);
  const failures: number[] = [];
  w.on('failed', (_err, delay) => failures.push(delay));
  const synced = new Promise<void>((r) => w.once('synced', r));
  await w.start();
  await synced;
  assert.deepEqual(failures, [10, 20, 40]);
  assert.equal(w.restarts, 3);
  assert.equal(backoffDelay(20, { initialMs: 10, maxMs: 100 }), 100);
});

test('the controller keeps routing right across watch drops and 410 re-lists', async (t) => {
  const server = new FakeApiServer();
  await server.start();
  const r = await replica(server, 'replica-a');
  t.after(async () => {
    await r.stop();
    await server.close();
  });
  await r.controller.start();
  await waitFor('leader', () => r.controller.isLeader);
  server.create('appversions', NS, serversAV('s-v1', 's', '1.0.0', 7401));
  await waitFor('v1', () => versionsOf(r.sidecar.last, 's').length === 1);

  server.closeWatches();
  server.create('appversions', NS, serversAV('s-v2', 's', '2.0.0', 7402));
  await waitFor('v2 after reconnect', () => versionsOf(r.sidecar.last, 's').length === 2);

  const lists = r.controller.informers.appversions.lists;
  server.compact(true);
  server.remove('appversions', NS, 's-v1');
  await waitFor('re-listed', () => r.controller.informers.appversions.lists > lists);
  await waitFor('v1 gone after re-list', () => versionsOf(r.sidecar.last, 's').map((v) => v.id).join() === 's-v2');
});

test('the controller heals after its watches could not reconnect until the server had dropped their history (410, re-list)', async (t) => {
  const server = new FakeApiServer({ historyLimit: 4 });
  await server.start();
  const r = await replica(server, 'replica-a');
  t.after(async () => {
    server.releaseWatches();
    await r.stop();
    await server.close();
  });
  await r.controller.start();
  await waitFor('leader', () => r.controller.isLeader);
  server.create('appversions', NS, serversAV('h-v1', 'h', '1.0.0', 7701));
  server.create('appversions', NS, serversAV('h-v2', 'h', '2.0.0', 7702));
  await waitFor('both routed', () => versionsOf(r.sidecar.last, 'h').length === 2);
  await r.controller.idle();
  const lists = r.controller.informers.appversions.lists;

  // The watches drop and cannot come back for a while; meanwhile more happens than the server keeps.
  server.holdWatches();
  server.closeWatches();
  server.remove('appversions', NS, 'h-v1');
  server.create('appversions', NS, serversAV('h-v3', 'h', '3.0.0', 7703));
  for (let i = 0; i < 5; i++) server.create('appversions', NS, serversAV(`noise-${i}`, `noise${i}`, '1', 7710 + i));
  server.releaseWatches();

  await waitFor('re-listed after 410', () => r.controller.informers.appversions.lists > lists);
  await waitFor('routes healed', () => versionsOf(r.sidecar.last, 'h').map((v) => v.id).sort().join() === 'h-v2,h-v3');
  await waitFor('status for what it missed', () => server.get('appversions', NS, 'h-v3')?.status?.phase === 'Serving');
});
