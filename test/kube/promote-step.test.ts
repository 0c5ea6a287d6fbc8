// Kubernetes mode, `kubectl molt promote` under canary analysis (issue 12): one step at a time, as local mode's
// `molt promote` and Argo's. The plugin writes molt.dev/promote-step with the step status.analysis shows; the
// leader advances past that step once (the annotation stays, and does nothing once the step is past it);
// `--full` finishes the transition. Two replicas against the API-server double, fake sidecars sending
// identical samples for v1 and v2, and pauses so long that no gate concludes by itself during the test.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { FakeApiServer } from './fake-apiserver.js';
import { NS, replica, serversAV, waitFor, writeKubeconfig, type Replica } from './helpers.js';
import { runKubectlMolt } from '../../controller/kube/kubectl-plugin.js';
import { PROMOTE_STEP_ANNOTATION, PROMOTED_ANNOTATION } from '../../controller/kube/status.js';
import { LatencyHistogram } from '../../common/latency-histogram.js';
import type { AnalysisSamples, RouteVersion, RoutingTable, VersionStats } from '../../common/protocol.js';

const TICK_MS = 200;

class Samples {
  readonly latency = new LatencyHistogram();
  requests = 0;
  add(): void {
    for (let k = 0; k < 25; k++) {
      this.latency.record(20_000 + (this.requests % 11) * 100);
      this.requests++;
    }
  }
  toJSON(): AnalysisSamples {
    return { latency: this.latency.toJSON(), statuses: [200, this.requests], noResponse: 0, requests: this.requests };
  }
}

function versionStats(id: string, version: string, s: Samples): VersionStats {
  return { app: 'shop', versionId: id, version, requests: s.requests, errors: 0, mismatches: 0, latencyBuckets: [], latencyCounts: [], latencySum: 0, trafficShare: 0.5, analysis: s.toJSON() };
}

function v2Of(t: RoutingTable | undefined): RouteVersion | undefined {
  return t?.apps.find((a) => a.name === 'shop')?.versions.find((v) => v.id === 'shop-v2');
}

const transition = {
  mode: 'GRADUAL',
  steps: [{ weight: 25, pause: '10m' }, { weight: 50, pause: '10m' }, { weight: 75, pause: '10m' }],
  analysis: { initialDelay: '200ms', minRequests: 50, maxHold: '20m', onInconclusive: 'hold' },
};

test('kubectl molt promote under canary analysis moves one step, once; --full promotes', async (t) => {
  const server = new FakeApiServer();
  await server.start();
  const a = await replica(server, 'replica-a');
  const b = await replica(server, 'replica-b');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'molt-promote-step-'));
  const kubeconfig = path.join(dir, 'config');
  writeKubeconfig(server, kubeconfig);
  let ticks = 0;
  const state = [a, b].map(() => ({ v1: new Samples(), v2: new Samples() }));
  const timer = setInterval(() => {
    ticks++;
    [a, b].forEach((r: Replica, i) => {
      const s = state[i]!;
      s.v1.add();
      s.v2.add();
      r.sidecar.stats({ at: Date.now(), revision: r.sidecar.last?.revision ?? 0, versions: [versionStats('shop-v1', '1.0.0', s.v1), versionStats('shop-v2', '2.0.0', s.v2)] });
    });
  }, TICK_MS);
  t.after(async () => {
    clearInterval(timer);
    await a.stop();
    await b.stop();
    await server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  await a.controller.start();
  await waitFor('a leads', () => a.controller.isLeader);
  await b.controller.start();
  server.create('appversions', NS, serversAV('shop-v1', 'shop', '1.0.0', 18081));
  for (const r of [a, b]) await waitFor('v1 routed', () => r.sidecar.last?.apps.some((x) => x.versions.some((v) => v.id === 'shop-v1')));
  server.create('appversions', NS, serversAV('shop-v2', 'shop', '2.0.0', 18082, { transition }));
  await waitFor('status.analysis at step 0', () => server.get('appversions', NS, 'shop-v2')?.status?.analysis?.step === 0, 10_000);

  const kubectlMolt = async (...args: string[]): Promise<string> => {
    let text = '';
    const code = await runKubectlMolt([...args, '--kubeconfig', kubeconfig, '-n', NS], (s) => void (text += s));
    assert.equal(code, 0, text);
    return text;
  };

  const one = await kubectlMolt('promote', 'shop');
  assert.match(one, /shop-v2 \(version 2\.0\.0\) promoted one step: 2\/3/, one);
  assert.equal(server.get('appversions', NS, 'shop-v2')!.metadata.annotations?.[PROMOTE_STEP_ANNOTATION], '1/0', 'generation 1, step 0');
  assert.equal(server.get('appversions', NS, 'shop-v2')!.metadata.annotations?.[PROMOTED_ANNOTATION], undefined, 'one step is not a full promotion');
  await waitFor('status.analysis at step 1', () => server.get('appversions', NS, 'shop-v2')?.status?.analysis?.step === 1, 10_000);
  for (const r of [a, b]) await waitFor('table at step 1', () => v2Of(r.sidecar.last)?.currentStep === 1, 5000);

  // The annotation (still "0") is level-triggered: more stats lines and reconciles do not advance again.
  const seen = ticks;
  await waitFor('ten more stats lines', () => ticks >= seen + 10, 10_000);
  const st = server.get('appversions', NS, 'shop-v2')!.status;
  assert.equal(st.analysis.step, 1, 'advanced once');
  assert.equal(st.phase, 'Serving');
  for (const r of [a, b]) {
    const steps = r.sidecar.tables.map(v2Of).filter((v) => v?.state === 'serving').map((v) => v!.currentStep);
    assert.deepEqual([...new Set(steps)], [0, 1], `${r.controller.identity}: ${steps.join(',')}`);
  }
  const shown = await kubectlMolt('status', 'shop');
  assert.match(shown, /step 2\/3 \(weight 50%\)/, shown);

  const full = await kubectlMolt('promote', 'shop', '--full');
  assert.match(full, /shop-v2 \(version 2\.0\.0\) promoted\n/, full);
  assert.equal(server.get('appversions', NS, 'shop-v2')!.metadata.annotations?.[PROMOTED_ANNOTATION], 'true');
  await waitFor('v2 promoted', () => server.get('appversions', NS, 'shop-v2')?.status?.phase === 'Promoted', 10_000);
  for (const r of [a, b]) await waitFor('promoted in the table', () => v2Of(r.sidecar.last)?.promoted, 5000);
});
