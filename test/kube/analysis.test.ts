// Kubernetes mode, canary analysis (issue 12, docs/analysis.md "Kubernetes mode"): two controller replicas
// against the API-server double, each with a fake sidecar sending stats lines with analysis samples. The
// leader gates a GRADUAL v2 (two steps) on its own sidecar's samples and writes the gate to status.analysis;
// every replica routes at that step (RouteVersion.currentStep). A slower v2 is rolled back at the first gate
// and no table ever moves past step 0; an identical v2 walks through the steps and ends promoted, with the
// follower's table following the leader's status.

import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { FakeApiServer } from './fake-apiserver.js';
import { NS, replica, serversAV, waitFor, type Replica } from './helpers.js';
import { formatApp } from '../../controller/cli.js';
import { LatencyHistogram } from '../../common/latency-histogram.js';
import type { AnalysisSamples, RouteVersion, RoutingTable, VersionStats } from '../../common/protocol.js';

const TICK_MS = 200;
const PER_TICK = 25;

/** Cumulative samples of one version as one sidecar would report them. */
class Samples {
  readonly latency = new LatencyHistogram();
  requests = 0;
  #i = 0;
  /** PER_TICK requests of 20 ms ± 5 ms (a fixed spread), plus extraMs. */
  add(extraMs: number): void {
    for (let k = 0; k < PER_TICK; k++) {
      const jitter = ((this.#i++ * 7919) % 101) / 10 - 5; // -5..+5 ms, spread evenly
      this.latency.record(Math.round((20 + jitter + extraMs) * 1000));
      this.requests++;
    }
  }
  toJSON(): AnalysisSamples {
    return { latency: this.latency.toJSON(), statuses: [200, this.requests], noResponse: 0, requests: this.requests };
  }
}

function versionStats(id: string, version: string, s: Samples, share: number): VersionStats {
  return {
    app: 'shop', versionId: id, version, requests: s.requests, errors: 0, mismatches: 0,
    latencyBuckets: [], latencyCounts: [], latencySum: 0, trafficShare: share, analysis: s.toJSON(),
  };
}

/** Both sidecars send a stats line every TICK_MS; v2 is `extraMs` slower than v1 on every request.
 *  A replica's entry set to null stops its feed. */
function feed(replicas: Array<Replica | null>, extraMs: number): () => void {
  const state = replicas.map(() => ({ v1: new Samples(), v2: new Samples() }));
  const timer = setInterval(() => {
    replicas.forEach((r, i) => {
      if (!r) return;
      const s = state[i]!;
      s.v1.add(0);
      s.v2.add(extraMs);
      r.sidecar.stats({ at: Date.now(), revision: r.sidecar.last?.revision ?? 0, versions: [versionStats('shop-v1', '1.0.0', s.v1, 0.5), versionStats('shop-v2', '2.0.0', s.v2, 0.5)] });
    });
  }, TICK_MS);
  return () => clearInterval(timer);
}

function v2Of(t: RoutingTable | undefined): RouteVersion | undefined {
  return t?.apps.find((a) => a.name === 'shop')?.versions.find((v) => v.id === 'shop-v2');
}

const transition = {
  mode: 'GRADUAL',
  steps: [{ weight: 25, pause: '2s' }, { weight: 50, pause: '2s' }],
  analysis: { initialDelay: '200ms', minRequests: 50, maxHold: '20s', onInconclusive: 'hold' },
};

async function setup(t: TestContext, extraMs: number): Promise<{ server: FakeApiServer; a: Replica; b: Replica; fed: Array<Replica | null> }> {
  const server = new FakeApiServer();
  await server.start();
  const a = await replica(server, 'replica-a');
  const b = await replica(server, 'replica-b');
  let stopFeed = () => {};
  t.after(async () => {
    stopFeed();
    await a.stop();
    await b.stop();
    await server.close();
  });
  await a.controller.start();
  await waitFor('a leads', () => a.controller.isLeader);
  await b.controller.start();
  // Nothing connects to these ports: the sidecars are doubles; the samples come from feed().
  server.create('appversions', NS, serversAV('shop-v1', 'shop', '1.0.0', 18081));
  for (const r of [a, b]) await waitFor('v1 routed', () => r.sidecar.last?.apps.some((x) => x.versions.some((v) => v.id === 'shop-v1')));
  const fed: Array<Replica | null> = [a, b];
  stopFeed = feed(fed, extraMs);
  server.create('appversions', NS, serversAV('shop-v2', 'shop', '2.0.0', 18082, { transition }));
  return { server, a, b, fed };
}

test('a v2 30 ms slower is rolled back by the leader at the first gate; no replica ever routes past step 0', async (t) => {
  const { server, a, b } = await setup(t, 30);
  const st = await waitFor('v2 rolled back', () => {
    const s = server.get('appversions', NS, 'shop-v2')?.status;
    return s?.phase === 'RolledBack' ? s : undefined;
  }, 15_000);
  assert.equal(st.reason, 'AnalysisFailed', JSON.stringify(st));
  assert.match(st.message, /^latency: p50 \d+(\.\d+)? ms vs \d+(\.\d+)? ms.*U-test p/, st.message);
  assert.equal(st.analysis.step, 0);
  assert.equal(st.analysis.runs.length, 1);
  assert.equal(st.analysis.runs[0].verdict, 'Fail');
  assert.equal(st.analysis.runs[0].step, 0);
  assert.equal(st.conditions.find((c: { type: string }) => c.type === 'RolledBack')?.status, 'True');
  for (const r of [a, b]) {
    await waitFor('v2 rolled back in the table', () => v2Of(r.sidecar.last)?.state === 'rolledBack');
    const steps = r.sidecar.tables.map(v2Of).filter((v) => v?.state === 'serving').map((v) => v!.currentStep);
    assert.ok(steps.length > 0, 'v2 was routed');
    assert.deepEqual([...new Set(steps)], [0], 'every table routing v2 held step 0');
    // molt status / the admin API on every replica show the gate from status.analysis.
    await waitFor('the cache holds the verdict', () => r.controller.status().apps[0]?.versions.find((v) => v.name === 'shop-v2')?.phase === 'RolledBack');
    const text = formatApp(r.controller.status(), 'shop');
    assert.match(text, /analysis: Stopped, step 1\/2 \(weight 25%\), baseline 1\.0\.0/, text);
    assert.match(text, /step 1: Fail\n\s+Fail\s+latency: p50/, text);
  }
});

test('an identical v2 passes each gate: the step advances in every replica\'s table, then it is promoted', async (t) => {
  const { server, a, b } = await setup(t, 0);
  // The leader writes step 1 after the first pause; both replicas (the follower b from status) route at it.
  await waitFor('status step 1', () => server.get('appversions', NS, 'shop-v2')?.status?.analysis?.step === 1, 15_000);
  for (const r of [a, b]) await waitFor('table at step 1', () => r.sidecar.tables.some((tb) => v2Of(tb)?.currentStep === 1), 5000);
  const st = await waitFor('v2 promoted', () => {
    const s = server.get('appversions', NS, 'shop-v2')?.status;
    return s?.phase === 'Promoted' ? s : undefined;
  }, 15_000);
  assert.equal(st.reason, 'TransitionComplete');
  assert.equal(st.analysis.promoted, true);
  assert.deepEqual(st.analysis.runs.map((r: { step: number; verdict: string }) => `${r.step}:${r.verdict}`), ['0:Pass', '1:Pass']);
  for (const r of [a, b]) {
    const last = await waitFor('promoted in the table', () => (v2Of(r.sidecar.last)?.promoted ? v2Of(r.sidecar.last) : undefined));
    assert.equal(last.currentStep, undefined, 'a promoted version is no longer held at a step');
    // The step only ever went forward, 0 then 1, on each replica.
    const steps = r.sidecar.tables.map(v2Of).filter((v) => v?.state === 'serving' && !v.promoted).map((v) => v!.currentStep);
    assert.deepEqual([...new Set(steps)], [0, 1]);
  }
  assert.ok(!b.controller.isLeader, 'b stayed a follower: its steps came from the leader\'s status');
  assert.deepEqual(b.sidecar.last!.apps, a.sidecar.last!.apps, 'identical tables');
});

test('a new leader resumes the gate from status.analysis: same step, same history, then promotes', async (t) => {
  const { server, a, b, fed } = await setup(t, 0);
  await waitFor('status step 1', () => server.get('appversions', NS, 'shop-v2')?.status?.analysis?.step === 1, 15_000);
  // The leader goes away in the middle of step 2's window (its start snapshot is lost with it).
  fed[0] = null;
  await a.stop();
  await waitFor('b leads', () => b.controller.isLeader, 5000);
  const takeover = Date.now();
  const st = await waitFor('v2 promoted by the new leader', () => {
    const s = server.get('appversions', NS, 'shop-v2')?.status;
    return s?.phase === 'Promoted' ? s : undefined;
  }, 15_000);
  assert.deepEqual(st.analysis.runs.map((r: { step: number; verdict: string }) => `${r.step}:${r.verdict}`), ['0:Pass', '1:Pass'], 'step 1 was not judged again; step 2 was judged once');
  assert.ok(Date.parse(st.analysis.runs[0].endedAt) < takeover, 'the first gate\'s run is the old leader\'s, kept in status');
  await waitFor('promoted in b\'s table', () => v2Of(b.sidecar.last)?.promoted);
  const steps = b.sidecar.tables.map(v2Of).filter((v) => v?.state === 'serving' && !v.promoted).map((v) => v!.currentStep);
  assert.deepEqual(steps, [...steps].sort(), `b never went back a step: ${steps.join(',')}`);
  assert.deepEqual([...new Set(steps)], [0, 1]);
});
