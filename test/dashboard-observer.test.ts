// The dashboard observer derives the timeline and the per-version rates level-triggered from successive
// controller status snapshots: history from timestamps at first sight, then versions added/removed, phase
// changes with reason, rollbacks, traffic steps, sidecar connection; rates from counter deltas; bounded rings.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ControllerApi, ControllerStatus, VersionStatus } from '../controller/controller-api.js';
import { DashboardObserver, type ObserverMessage } from '../controller/dashboard/observer.js';
import { MoltMetrics } from '../controller/metrics.js';

function v(name: string, o: Partial<VersionStatus> = {}): VersionStatus {
  return {
    name, app: 'shop', version: name.replace('shop-v', '') + '.0.0', mode: 'GRADUAL', phase: 'Serving', traffic: 0, reason: '', message: '',
    source: 'file', endpoints: [], timestamps: {}, requests: 0, errors: 0, ...o,
  };
}

function fake(): { api: ControllerApi; set: (versions: VersionStatus[], sidecar?: boolean) => void } {
  let st: ControllerStatus = { sidecarConnected: true, routingRevision: 1, apps: [], errors: [] };
  const api = {
    status: () => st,
    getResource: () => undefined,
    applyResource: async () => ({ created: true, name: '' }),
    deleteResource: async () => {},
    promote: async () => { throw new Error('unused'); },
    rollback: async () => { throw new Error('unused'); },
  } as ControllerApi;
  return { api, set: (versions, sidecar = true) => { st = { ...st, sidecarConnected: sidecar, apps: versions.length ? [{ app: 'shop', hosts: [], versions }] : [] }; } };
}

test('timeline: backfill from timestamps, then added, phase, traffic, rollback with reason, removed, sidecar', async () => {
  const { api, set } = fake();
  let now = 1_000_000;
  const obs = new DashboardObserver({ controller: api, now: () => now });
  const seen: ObserverMessage[] = [];
  obs.subscribe((m) => seen.push(m));

  set([v('shop-v1', { phase: 'Promoted', traffic: 1, timestamps: { created: new Date(1000).toISOString(), ready: new Date(2000).toISOString(), promoted: new Date(3000).toISOString() } })]);
  await obs.sample();
  assert.deepEqual(obs.snapshot().events.map((e) => [e.kind, e.message, e.time]), [['phase', 'created', 1000], ['phase', 'ready', 2000], ['phase', 'promoted', 3000]]);

  now += 1000;
  set([v('shop-v2', { phase: 'Starting' }), v('shop-v1', { phase: 'Promoted', traffic: 1 })]);
  await obs.sample();
  now += 1000;
  set([v('shop-v2', { phase: 'Serving', traffic: 0.2, reason: 'Transitioning', message: '20% of new traffic' }), v('shop-v1', { phase: 'Serving', traffic: 0.8 })]);
  await obs.sample();
  now += 1000;
  set([v('shop-v2', { phase: 'RolledBack', traffic: 0, reason: 'FailurePolicy', message: 'status 500' }), v('shop-v1', { phase: 'Serving', traffic: 1 })], false);
  await obs.sample();
  now += 1000;
  set([v('shop-v1', { phase: 'Serving', traffic: 1 })], false);
  await obs.sample();

  const events = obs.snapshot().events.slice(3).map((e) => `${e.kind} ${e.version} ${e.message}`);
  assert.deepEqual(events, [
    'added shop-v2 2.0.0 added (GRADUAL, file): Starting',
    // within one sample older versions first, so the newest version's change ends up on top of the page
    'phase shop-v1 Promoted → Serving',
    'traffic shop-v1 traffic 100% → 80%',
    'phase shop-v2 Starting → Serving (Transitioning: 20% of new traffic)',
    'traffic shop-v2 traffic 0% → 20%',
    'sidecar  sidecar not connected',
    'traffic shop-v1 traffic 80% → 100%',
    'rollback shop-v2 rolled back (FailurePolicy: status 500)',
    'traffic shop-v2 traffic 20% → 0%',
    'removed shop-v2 2.0.0 removed',
  ]);
  assert.ok(seen.some((m) => m.type === 'event' && m.event.kind === 'rollback'), 'subscribers get events');
  assert.equal(seen.filter((m) => m.type === 'sample').length, 5, 'and every sample');
});

test('rates: requests and errors per second from counter deltas; a counter reset is no negative rate', async () => {
  const { api, set } = fake();
  let now = 0;
  const obs = new DashboardObserver({ controller: api, now: () => now });
  set([v('shop-v1', { requests: 100, errors: 1 })]);
  await obs.sample();
  now += 2000;
  set([v('shop-v1', { requests: 300, errors: 5 })]);
  await obs.sample();
  now += 1000;
  set([v('shop-v1', { requests: 10, errors: 0 })]); // sidecar restarted
  await obs.sample();
  const samples = obs.snapshot().samples;
  assert.deepEqual(samples.map((s) => s.versions['shop-v1']), [{ rps: 100, eps: 2, latencyMs: null }, { rps: 0, eps: 0, latencyMs: null }]);
});

test('rings are bounded', async () => {
  const { api, set } = fake();
  let now = 0;
  const obs = new DashboardObserver({ controller: api, now: () => now, maxEvents: 5, maxSamples: 3 });
  for (let i = 0; i < 20; i++) {
    now += 1000;
    set([v('shop-v1', { traffic: i % 2, requests: i })]);
    await obs.sample();
  }
  assert.equal(obs.snapshot().events.length, 5);
  assert.equal(obs.snapshot().samples.length, 3);
  assert.equal(obs.snapshot().samples.at(-1)!.time, now, 'the newest are kept');
});

test('latency: mean per interval from the sidecar histogram (sum/count deltas) in the metrics registry', async () => {
  const { api, set } = fake();
  const metrics = new MoltMetrics({ defaultMetrics: false });
  let now = 0;
  const obs = new DashboardObserver({ controller: api, metrics, now: () => now });
  const stats = (requests: number, sum: number) => metrics.observeStats({
    type: 'stats', at: now, revision: 1,
    versions: [{ app: 'shop', versionId: 'id1', version: '1.0.0', requests, errors: 0, mismatches: 0, latencyBuckets: [0.5], latencyCounts: [requests], latencySum: sum, trafficShare: 1 }],
  });
  stats(10, 0.5);
  set([v('shop-v1', { requests: 10 })]);
  await obs.sample();
  now += 1000;
  stats(20, 1.5); // 10 more requests, 1 s more in total: 100 ms each
  set([v('shop-v1', { requests: 20 })]);
  await obs.sample();
  now += 1000;
  await obs.sample(); // no requests: no latency, not zero
  assert.deepEqual(obs.snapshot().samples.map((s) => s.versions['shop-v1']), [{ rps: 10, eps: 0, latencyMs: 100 }, { rps: 0, eps: 0, latencyMs: null }]);
});

test('timeline: preflight and canary-analysis verdicts appear once each, as they are decided', async () => {
  const { api, set } = fake();
  let now = 2_000_000;
  const obs = new DashboardObserver({ controller: api, now: () => now });
  const evidence = (verdict: string, message = '') => ({ verdict, compared: 40, mismatched: 0, errors: 0, dropped: 0, skipped: 0, topMismatches: [], latency: { oldP50: null, oldP95: null, newP50: null, newP95: null }, message }) as unknown as VersionStatus['preflight'];
  const run = (step: number, verdict: 'Pass' | 'Fail' | 'Inconclusive', endedAt: number, message: string) => ({ step, startedAt: new Date(endedAt - 1000).toISOString(), endedAt: new Date(endedAt).toISOString(), verdict, message, metrics: [] });
  const analysis = (runs: ReturnType<typeof run>[]) => ({ runs } as unknown as VersionStatus['analysis']);
  set([v('shop-v2', { phase: 'Testing', preflight: evidence('Pending') }), v('shop-v1', { phase: 'Promoted', traffic: 1 })]);
  await obs.sample();
  const mark = obs.snapshot().events.length;
  now += 1000;
  set([v('shop-v2', { phase: 'Testing', preflight: evidence('Pending') }), v('shop-v1', { phase: 'Promoted', traffic: 1 })]);
  await obs.sample();
  now += 1000;
  set([v('shop-v2', { phase: 'Serving', traffic: 0.1, preflight: evidence('Pass', '40 compared, 0 mismatched'), analysis: analysis([]) }), v('shop-v1', { phase: 'Serving', traffic: 0.9 })]);
  await obs.sample();
  now += 1000;
  set([v('shop-v2', { phase: 'Serving', traffic: 0.1, preflight: evidence('Pass', '40 compared, 0 mismatched'), analysis: analysis([run(0, 'Inconclusive', now - 500, 'too few requests')]) }), v('shop-v1', { phase: 'Serving', traffic: 0.9 })]);
  await obs.sample();
  now += 1000;
  set([v('shop-v2', { phase: 'Serving', traffic: 0.1, preflight: evidence('Pass', '40 compared, 0 mismatched'), analysis: analysis([run(0, 'Inconclusive', now - 1500, 'too few requests'), run(0, 'Fail', now - 100, 'latency: p50 36 ms vs 6 ms')]) }), v('shop-v1', { phase: 'Serving', traffic: 0.9 })]);
  await obs.sample();
  const kinds = obs.snapshot().events.slice(mark).filter((e) => e.kind === 'preflight' || e.kind === 'analysis').map((e) => `${e.kind} ${e.message}`);
  assert.deepEqual(kinds, [
    'preflight preflight Pass: 40 compared, 0 mismatched',
    'analysis analysis step 1: Inconclusive (too few requests)',
    'analysis analysis step 1: Fail (latency: p50 36 ms vs 6 ms)',
  ]);
});
