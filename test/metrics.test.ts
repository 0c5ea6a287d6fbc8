import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MoltMetrics, PHASES } from '../controller/metrics.js';
import { LATENCY_BUCKETS_SECONDS, type StatsMessage, type VersionStats } from '../common/protocol.js';

/** Parse the text format into "name{labels}" -> value (labels as printed, sorted by prom-client). */
function parse(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

function series(text: string, prefix: string): string[] {
  return [...parse(text).keys()].filter((k) => k.startsWith(prefix));
}

/** Cumulative counts for latencies (seconds) over LATENCY_BUCKETS_SECONDS. */
function cumulative(latencies: number[]): number[] {
  return LATENCY_BUCKETS_SECONDS.map((b) => latencies.filter((l) => l <= b).length);
}

function stats(
  over: Partial<VersionStats> & { latencies?: number[] } = {},
  app = 'shop',
  version = '1.0.0',
  versionId = 'shop-v1',
): StatsMessage {
  const latencies = over.latencies ?? [];
  const v: VersionStats = {
    app,
    versionId,
    version,
    requests: latencies.length,
    errors: 0,
    mismatches: 0,
    latencyBuckets: LATENCY_BUCKETS_SECONDS,
    latencyCounts: cumulative(latencies),
    latencySum: latencies.reduce((a, b) => a + b, 0),
    trafficShare: 1,
    ...over,
  };
  delete (v as { latencies?: unknown }).latencies;
  return { type: 'stats', at: 0, revision: 1, versions: [v] };
}

const L = '{app="shop",version="1.0.0"}';

test('initial zero series are present before any event', async () => {
  const m = new MoltMetrics({ defaultMetrics: false });
  const v = parse(await m.text());
  assert.equal(v.get('molt_reconcile_total{result="success"}'), 0);
  assert.equal(v.get('molt_reconcile_total{result="error"}'), 0);
  assert.equal(v.get('molt_sidecar_connected'), 0);
  for (const phase of PHASES) assert.equal(v.get(`molt_appversions{phase="${phase}"}`), 0, phase);
  assert.equal(PHASES.length, 10);
  assert.equal(v.get('molt_reconcile_duration_seconds_count'), 0);
  assert.match(m.contentType, /^text\/plain/);
});

test('default process metrics are prefixed molt_', async () => {
  const m = new MoltMetrics();
  const text = await m.text();
  assert.ok(series(text, 'molt_process_cpu_seconds_total').length > 0);
  assert.equal(series(text, 'process_').length, 0);
});

test('stats totals become monotonic counters via deltas', async () => {
  const m = new MoltMetrics({ defaultMetrics: false });
  m.observeStats(stats({ latencies: [0.002, 0.02], errors: 1, mismatches: 1, trafficShare: 0.25 }));
  m.observeStats(stats({ latencies: [0.002, 0.02, 0.3, 0.004], errors: 2, mismatches: 1, trafficShare: 0.5 }));
  // Same totals again: no change.
  m.observeStats(stats({ latencies: [0.002, 0.02, 0.3, 0.004], errors: 2, mismatches: 1, trafficShare: 0.5 }));
  const v = parse(await m.text());
  assert.equal(v.get(`molt_requests_total${L}`), 4);
  assert.equal(v.get(`molt_request_errors_total${L}`), 2);
  assert.equal(v.get(`molt_concurrent_mismatches_total${L}`), 1);
  assert.equal(v.get(`molt_traffic_share${L}`), 0.5);
  assert.equal(v.get(`molt_request_duration_seconds_count${L}`), 4);
  assert.ok(Math.abs(v.get(`molt_request_duration_seconds_sum${L}`)! - 0.326) < 1e-9);
});

test('histogram buckets follow LATENCY_BUCKETS_SECONDS with cumulative le counts and +Inf', async () => {
  const m = new MoltMetrics({ defaultMetrics: false });
  const latencies = [0.0005, 0.002, 0.02, 0.3, 0.3, 20];
  m.observeStats(stats({ latencies }));
  const v = parse(await m.text());
  for (const b of LATENCY_BUCKETS_SECONDS) {
    const expected = latencies.filter((l) => l <= b).length;
    assert.equal(v.get(`molt_request_duration_seconds_bucket{app="shop",version="1.0.0",le="${b}"}`), expected, `le=${b}`);
  }
  assert.equal(v.get('molt_request_duration_seconds_bucket{app="shop",version="1.0.0",le="+Inf"}'), 6);
  assert.equal(series(await m.text(), 'molt_request_duration_seconds_bucket').length, LATENCY_BUCKETS_SECONDS.length + 1);
});

test('an explicit +Inf entry in latencyCounts is used as the total count', async () => {
  const m = new MoltMetrics({ defaultMetrics: false });
  const counts = [...cumulative([0.002]), 3];
  m.observeStats(stats({ requests: 2, latencyCounts: counts, latencySum: 30 }));
  const v = parse(await m.text());
  assert.equal(v.get(`molt_request_duration_seconds_count${L}`), 3);
});

test('a sidecar restart (totals go down) is a reset: counters keep increasing', async () => {
  const m = new MoltMetrics({ defaultMetrics: false });
  m.observeStats(stats({ latencies: [0.002, 0.002, 0.002, 0.002, 0.002], errors: 3 }));
  // Restarted sidecar: totals start over.
  m.observeStats(stats({ latencies: [0.2, 0.2], errors: 1 }));
  m.observeStats(stats({ latencies: [0.2, 0.2, 0.2], errors: 1 }));
  const v = parse(await m.text());
  assert.equal(v.get(`molt_requests_total${L}`), 8);
  assert.equal(v.get(`molt_request_errors_total${L}`), 4);
  assert.equal(v.get(`molt_request_duration_seconds_count${L}`), 8);
  assert.equal(v.get('molt_request_duration_seconds_bucket{app="shop",version="1.0.0",le="0.0025"}'), 5);
  assert.equal(v.get('molt_request_duration_seconds_bucket{app="shop",version="1.0.0",le="0.25"}'), 8);
});

test('a new sidecar pid resets the baseline even when its totals are already higher', async () => {
  const m = new MoltMetrics({ defaultMetrics: false });
  m.sidecarStarted(100);
  m.observeStats(stats({ requests: 2, latencyCounts: cumulative([0.01, 0.01]) }));
  m.sidecarStarted(100); // reconnect of the same process: baseline kept
  m.observeStats(stats({ requests: 3, latencyCounts: cumulative([0.01, 0.01, 0.01]) }));
  m.sidecarStarted(200); // new process
  m.observeStats(stats({ requests: 10, latencyCounts: cumulative(new Array(10).fill(0.01)) }));
  const v = parse(await m.text());
  assert.equal(v.get(`molt_requests_total${L}`), 13);
});

test('forgetVersion removes the label sets of a deleted version', async () => {
  const m = new MoltMetrics({ defaultMetrics: false });
  for (let i = 0; i < 20; i++) {
    m.observeStats(stats({ latencies: [0.01] }, 'shop', `1.0.${i}`, `shop-${i}`));
    if (i > 0) m.forgetVersion('shop', `1.0.${i - 1}`);
  }
  const text = await m.text();
  for (const name of ['molt_requests_total', 'molt_request_errors_total', 'molt_concurrent_mismatches_total', 'molt_traffic_share', 'molt_request_duration_seconds_count']) {
    assert.deepEqual(series(text, name + '{'), [`${name}{app="shop",version="1.0.19"}`], name);
  }
  assert.equal(series(text, 'molt_request_duration_seconds_bucket').length, LATENCY_BUCKETS_SECONDS.length + 1);
});

test('rollbacks: reasons are bounded and initialised per app', async () => {
  const m = new MoltMetrics({ defaultMetrics: false });
  m.rollback('shop', 'policy');
  m.rollback('shop', 'manual');
  m.rollback('shop', 'manual');
  m.rollback('shop', 'something-else' as never);
  const text = await m.text();
  const v = parse(text);
  assert.equal(v.get('molt_rollbacks_total{app="shop",reason="policy"}'), 2);
  assert.equal(v.get('molt_rollbacks_total{app="shop",reason="manual"}'), 2);
  assert.equal(v.get('molt_rollbacks_total{app="shop",reason="crash"}'), 0);
  assert.equal(v.get('molt_rollbacks_total{app="shop",reason="unready"}'), 0);
  assert.equal(v.get('molt_rollbacks_total{app="shop",reason="analysis"}'), 0);
  assert.equal(series(text, 'molt_rollbacks_total{').length, 5);
  m.forgetApp('shop');
  assert.equal(series(await m.text(), 'molt_rollbacks_total{').length, 0);
});

test('molt_analysis_runs_total counts runs per version and verdict; forgetVersion drops them', async () => {
  const m = new MoltMetrics({ defaultMetrics: false });
  m.analysisRun('shop', '2.0.0', 'Inconclusive');
  m.analysisRun('shop', '2.0.0', 'Pass');
  m.analysisRun('shop', '2.0.0', 'Pass');
  const v = parse(await m.text());
  assert.equal(v.get('molt_analysis_runs_total{app="shop",version="2.0.0",verdict="Pass"}'), 2);
  assert.equal(v.get('molt_analysis_runs_total{app="shop",version="2.0.0",verdict="Inconclusive"}'), 1);
  m.forgetVersion('shop', '2.0.0');
  assert.equal(series(await m.text(), 'molt_analysis_runs_total{').length, 0);
});

test('reconcile, sidecar connection and phases', async () => {
  const m = new MoltMetrics({ defaultMetrics: false });
  m.reconcile('success', 0.002);
  m.reconcile('success', 0.2);
  m.reconcile('error', 0.02);
  m.setSidecarConnected(true);
  m.setPhases({ Serving: 2, RolledBack: 1 });
  let v = parse(await m.text());
  assert.equal(v.get('molt_reconcile_total{result="success"}'), 2);
  assert.equal(v.get('molt_reconcile_total{result="error"}'), 1);
  assert.equal(v.get('molt_reconcile_duration_seconds_count'), 3);
  assert.equal(v.get('molt_reconcile_duration_seconds_bucket{le="0.005"}'), 1);
  assert.equal(v.get('molt_sidecar_connected'), 1);
  assert.equal(v.get('molt_appversions{phase="Serving"}'), 2);
  assert.equal(v.get('molt_appversions{phase="RolledBack"}'), 1);
  assert.equal(v.get('molt_appversions{phase="Pending"}'), 0);
  m.setPhases({ Promoted: 1 });
  m.setSidecarConnected(false);
  v = parse(await m.text());
  assert.equal(v.get('molt_appversions{phase="Serving"}'), 0);
  assert.equal(v.get('molt_appversions{phase="Promoted"}'), 1);
  assert.equal(v.get('molt_sidecar_connected'), 0);
});

test('registries are independent per instance', async () => {
  const a = new MoltMetrics({ defaultMetrics: false });
  const b = new MoltMetrics({ defaultMetrics: false });
  a.reconcile('error', 0.1);
  assert.equal(parse(await b.text()).get('molt_reconcile_total{result="error"}'), 0);
});
