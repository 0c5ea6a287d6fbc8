// Kubernetes mode, preflight (issue 11): two controller replicas against the API-server double. The leader
// tests a new version with the recording of its own sidecar (the fake sidecar answers traffic requests),
// writes the verdict to status, and on a pass stamps status.timestamps.serving in the future: both replicas
// add the version to their tables at that instant, not before, and not only when their watch delivers it.
// A rejected version is never routed by any replica; the promoted annotation overrides the verdict.

import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import { FakeApiServer } from './fake-apiserver.js';
import { exchange, NS, replica, serversAV, versionsOf, waitFor, type Replica } from './helpers.js';
import type { RoutingTable } from '../../common/protocol.js';

const SWITCH_DELAY_MS = 1500;

interface App {
  port: number;
  /** Requests received, and how many carried x-molt-shadow: 1. */
  requests: number;
  shadow: number;
  close(): Promise<void>;
}

/** A JSON service answering GET /items/N with the given price. */
async function app(price: number): Promise<App> {
  const a = { port: 0, requests: 0, shadow: 0 } as App;
  const server = http.createServer((req, res) => {
    a.requests++;
    if (req.headers['x-molt-shadow'] === '1') a.shadow++;
    const id = Number(req.url?.split('/').pop()) || 0;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id, items: [{ sku: `s${id}`, price }] }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  a.port = (server.address() as AddressInfo).port;
  a.close = () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); });
  return a;
}

async function setup(t: TestContext): Promise<{ server: FakeApiServer; a: Replica; b: Replica; v1: App }> {
  const server = new FakeApiServer();
  await server.start();
  const opts = { switchDelayMs: SWITCH_DELAY_MS, preflightPollMs: 50 };
  const a = await replica(server, 'replica-a', opts);
  const b = await replica(server, 'replica-b', opts);
  const v1 = await app(5);
  t.after(async () => {
    await a.stop();
    await b.stop();
    await server.close();
    await v1.close();
  });
  await a.controller.start();
  await waitFor('a leads', () => a.controller.isLeader);
  await b.controller.start();
  server.create('appversions', NS, serversAV('shop-v1', 'shop', '1.0.0', v1.port));
  for (const r of [a, b]) await waitFor('v1 routed', () => versionsOf(r.sidecar.last, 'shop').length === 1);
  // What the sidecars recorded while v1 served: five GETs (and a POST, never replayed by default).
  for (const r of [a, b]) {
    r.sidecar.recording.set('shop', [
      ...[1, 2, 3, 4, 5].map((i) => exchange('GET', `/items/${i}`, { status: 200, body: JSON.stringify({ id: i, items: [{ sku: `s${i}`, price: 5 }] }) })),
      exchange('POST', '/orders', { status: 201, body: '{"ok":true}' }),
    ]);
  }
  return { server, a, b, v1 };
}

const preflight = { maxDuration: '30s', replay: { requests: 10 } };

function routesTo(table: RoutingTable | undefined, id: string): boolean {
  return versionsOf(table, 'shop').some((v) => v.id === id && v.state === 'serving');
}

test('a passing preflight: Testing, verdict in status, then both replicas switch at the stamped time, not before', async (t) => {
  const { server, a, b } = await setup(t);
  const v2 = await app(5);
  t.after(() => v2.close());
  // When b's cache first held the stamp (its watch delivery).
  let bSawStamp = 0;
  b.controller.informers.appversions.on('change', (raw) => {
    const st = raw.status as { timestamps?: { serving?: string } } | undefined;
    if (raw.metadata.name === 'shop-v2' && st?.timestamps?.serving && !bSawStamp) bSawStamp = Date.now();
  });

  server.create('appversions', NS, serversAV('shop-v2', 'shop', '2.0.0', v2.port, { preflight }));
  const st = await waitFor('v2 stamped for the switch', () => {
    const s = server.get('appversions', NS, 'shop-v2')?.status;
    return s?.timestamps?.serving ? s : undefined;
  });
  const switchAt = Date.parse(st.timestamps.serving);
  assert.equal(st.preflight.verdict, 'Pass', 'the verdict is in status');
  assert.equal(st.preflight.compared, 5, 'the five recorded GETs were replayed and compared');
  assert.equal(st.preflight.mismatched, 0);
  assert.ok(st.timestamps.testing, 'the version went through Testing');
  assert.ok(Date.parse(st.timestamps.testing) <= Date.parse(st.timestamps.ready) + SWITCH_DELAY_MS);
  assert.ok(switchAt > Date.parse(st.timestamps.testing), 'the switch is after the test');
  assert.equal(v2.requests, v2.shadow, 'v2 only ever saw requests marked x-molt-shadow');
  assert.ok(a.sidecar.trafficRequests > 0, "the leader read its own sidecar's recording");
  assert.equal(b.sidecar.trafficRequests, 0, 'a follower runs no preflight');

  for (const r of [a, b]) await waitFor('v2 routed after the switch', () => routesTo(r.sidecar.last, 'shop-v2'), 10_000);
  for (const [name, r] of [['a', a], ['b', b]] as const) {
    const first = r.sidecar.tables.findIndex((tb) => routesTo(tb, 'shop-v2'));
    assert.ok(first > 0);
    assert.ok(r.sidecar.arrivals[first]! >= switchAt, `replica ${name} routed v2 ${switchAt - r.sidecar.arrivals[first]!} ms before the stamp`);
    assert.ok(routesTo(r.sidecar.tables[first - 1], 'shop-v1') && !routesTo(r.sidecar.tables[first - 1], 'shop-v2'));
  }
  // b's watch delivered the stamp before the stamp's time: b still waited for the stamp (shown above).
  t.diagnostic(`b's watch delivered the stamp ${switchAt - bSawStamp} ms before the switch time`);
  assert.deepEqual(b.sidecar.last!.apps, a.sidecar.last!.apps, 'identical tables after the switch');
  assert.equal(server.get('appversions', NS, 'shop-v2')!.status.phase, 'Serving');

  // Promoting a version that passed only finishes its transition: the verdict stays Pass.
  server.modify('appversions', NS, 'shop-v2', (o) => {
    o.metadata.annotations = { ...(o.metadata.annotations ?? {}), 'molt.dev/promoted': 'true', 'molt.dev/promoted-generation': '1' };
  });
  await waitFor('v2 promoted', () => server.get('appversions', NS, 'shop-v2')?.status?.phase === 'Promoted');
  assert.equal(server.get('appversions', NS, 'shop-v2')!.status.preflight.verdict, 'Pass');
  assert.equal(server.get('appversions', NS, 'shop-v2')!.status.timestamps.serving, st.timestamps.serving, 'the switch time stays');
});

test('a failing preflight: Rejected with the evidence, never routed by any replica; the promoted annotation overrides it', async (t) => {
  const { server, a, b } = await setup(t);
  const v2 = await app(51); // changes one JSON field
  t.after(() => v2.close());
  server.create('appversions', NS, serversAV('shop-v2', 'shop', '2.0.0', v2.port, { preflight }));
  const st = await waitFor('v2 rejected', () => {
    const s = server.get('appversions', NS, 'shop-v2')?.status;
    return s?.phase === 'Rejected' ? s : undefined;
  });
  assert.equal(st.reason, 'PreflightMismatch');
  assert.equal(st.preflight.verdict, 'Fail');
  assert.ok(st.preflight.mismatched >= 1);
  assert.equal(st.preflight.topMismatches[0].path, '$.items[*].price');
  assert.deepEqual(st.preflight.topMismatches[0].examples[0], { old: '5', new: '51' });
  assert.equal(st.timestamps.serving, undefined, 'no switch stamp');
  assert.ok(st.timestamps.rejected);
  // Both replicas reconcile the Rejected status; neither ever routed v2.
  for (const r of [a, b]) await waitFor('replica saw Rejected', () => r.controller.status().apps[0]?.versions.find((v) => v.name === 'shop-v2')?.phase === 'Rejected');
  await a.controller.idle();
  await b.controller.idle();
  for (const r of [a, b]) assert.equal(r.sidecar.tables.some((tb) => versionsOf(tb, 'shop').some((v) => v.id === 'shop-v2')), false, 'v2 never in any table');
  assert.equal(v2.requests, v2.shadow, 'v2 only ever saw requests marked x-molt-shadow');
  assert.ok(v2.requests > 0);
  // The kubectl view shows the evidence.
  const view = b.controller.status().apps[0]!.versions.find((v) => v.name === 'shop-v2')!;
  assert.equal(view.preflight?.verdict, 'Fail');

  // `kubectl molt promote shop 2.0.0`: the promoted annotation for this generation re-admits it past the gate.
  server.modify('appversions', NS, 'shop-v2', (o) => {
    o.metadata.annotations = { ...(o.metadata.annotations ?? {}), 'molt.dev/promoted': 'true', 'molt.dev/promoted-generation': String(o.metadata.generation ?? 1) };
  });
  for (const r of [a, b]) await waitFor('v2 routed after the override', () => routesTo(r.sidecar.last, 'shop-v2'), 10_000);
  const after = server.get('appversions', NS, 'shop-v2')!.status;
  assert.equal(after.preflight.verdict, 'Overridden');
  assert.equal(after.phase, 'Promoted');
  assert.equal(after.timestamps.rejected, undefined, 're-admitted: the rejection no longer applies');
});

test('a promoted annotation written for an older generation does not skip the new spec\'s preflight', async (t) => {
  const { server, a, b } = await setup(t);
  const v2 = await app(51);
  t.after(() => v2.close());
  const av = serversAV('shop-v2', 'shop', '2.0.0', v2.port, { preflight });
  (av.metadata as Record<string, unknown>).annotations = { 'molt.dev/promoted': 'true', 'molt.dev/promoted-generation': '0' };
  server.create('appversions', NS, av);
  const st = await waitFor('v2 rejected', () => {
    const s = server.get('appversions', NS, 'shop-v2')?.status;
    return s?.phase === 'Rejected' ? s : undefined;
  });
  assert.equal(st.preflight.verdict, 'Fail');
  await a.controller.idle();
  await b.controller.idle();
  for (const r of [a, b]) assert.equal(r.sidecar.tables.some((tb) => versionsOf(tb, 'shop').some((v) => v.id === 'shop-v2')), false);
});
