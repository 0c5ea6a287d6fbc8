import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  PreflightTally,
  classifyPair,
  decide,
  latencyQuantileMs,
  recordLatencyMs,
  type DecideOptions,
  type Decision,
  type PassCriteria,
} from '../common/preflight-verdict.js';
import type { Difference } from '../common/preflight-diff.js';
import { HISTOGRAM_BINS, HISTOGRAM_LIMIT_MICROS, LatencyHistogram } from '../common/latency-histogram.js';

const diff = (path: string, old = '1', neu = '2'): Difference => ({ path, generalPath: path.replace(/\[\d+\]/g, '[*]'), old, new: neu });

interface Spec {
  matched?: number;
  mismatched?: Difference[][];
  errors?: number;
  oldMs?: number;
  newMs?: number;
}

function tally(s: Spec): PreflightTally {
  const t = new PreflightTally();
  const lat = { oldMs: s.oldMs ?? 10, newMs: s.newMs ?? 10 };
  for (let i = 0; i < (s.matched ?? 0); i++) t.recordComparison([], lat);
  for (const d of s.mismatched ?? []) t.recordComparison(d, lat);
  for (let i = 0; i < (s.errors ?? 0); i++) t.recordError();
  return t;
}

const within = (actual: number | null, expected: number, rel = 0.025): void => {
  assert.ok(actual !== null && Math.abs(actual - expected) <= expected * rel, `${actual} is not within ${rel * 100}% of ${expected}`);
};

// Preflight's latencies use the canary-analysis histogram (common/latency-histogram.ts, in µs);
// these are the millisecond helpers preflight reads and writes it with.
describe('latency (ms helpers over LatencyHistogram)', () => {
  it('quantiles within 0.5% of the samples, nearest rank, in ms', () => {
    const h = new LatencyHistogram();
    assert.equal(latencyQuantileMs(h, 0.5), null);
    for (let i = 1; i <= 100; i++) recordLatencyMs(h, i); // 1..100 ms
    within(latencyQuantileMs(h, 0.5), 50, 0.005);
    within(latencyQuantileMs(h, 0.95), 95, 0.005);
    within(latencyQuantileMs(h, 1), 100, 0.005);
    within(latencyQuantileMs(h, 0.01), 1, 0.005);
    assert.equal(h.count, 100);
    // rounded to 0.01 ms
    const small = new LatencyHistogram();
    recordLatencyMs(small, 0.1234);
    assert.equal(latencyQuantileMs(small, 0.5), 0.12);
  });

  it('extremes land in the first and last bins; bad samples are ignored', () => {
    const h = new LatencyHistogram();
    recordLatencyMs(h, 0);
    recordLatencyMs(h, -1);
    recordLatencyMs(h, Number.NaN);
    recordLatencyMs(h, Number.POSITIVE_INFINITY);
    recordLatencyMs(h, 1e12);
    assert.equal(h.count, 2);
    assert.deepEqual(h.toJSON().bins, [0, 1, HISTOGRAM_BINS - 1, 1]);
    // the top bin ends at 67.1 s: a quantile there reads about 67 s, not the sample's value
    within(latencyQuantileMs(h, 1), HISTOGRAM_LIMIT_MICROS / 1000, 0.01);
  });

  it('merging histograms equals recording into one', () => {
    const a = new LatencyHistogram();
    const b = new LatencyHistogram();
    const all = new LatencyHistogram();
    for (let i = 0; i < 500; i++) {
      const v = (i * 7.3) % 200;
      recordLatencyMs(i % 2 ? a : b, v);
      recordLatencyMs(all, v);
    }
    a.merge(LatencyHistogram.fromJSON(JSON.parse(JSON.stringify(b.toJSON()))));
    assert.deepEqual(a.toJSON(), all.toJSON());
    assert.equal(latencyQuantileMs(a, 0.95), latencyQuantileMs(all, 0.95));
  });
});

describe('classifyPair', () => {
  const table: Array<[string, Parameters<typeof classifyPair>[0], Parameters<typeof classifyPair>[1], ReturnType<typeof classifyPair>]> = [
    ['both 200', { ok: true, status: 200 }, { ok: true, status: 200 }, 'compare'],
    ['200 vs 404: a mismatch, not an error', { ok: true, status: 200 }, { ok: true, status: 404 }, 'compare'],
    ['200 vs 500', { ok: true, status: 200 }, { ok: true, status: 500 }, 'error'],
    ['200 vs reset/timeout', { ok: true, status: 200 }, { ok: false }, 'error'],
    ['404 vs 503', { ok: true, status: 404 }, { ok: true, status: 503 }, 'error'],
    ['500 vs 500: the same answer', { ok: true, status: 500 }, { ok: true, status: 500 }, 'compare'],
    ['500 vs 200', { ok: true, status: 500 }, { ok: true, status: 200 }, 'compare'],
    ['serving failed', { ok: false }, { ok: true, status: 200 }, 'skip'],
    ['both failed', { ok: false }, { ok: false }, 'skip'],
  ];
  for (const [name, old, neu, want] of table) it(name, () => assert.equal(classifyPair(old, neu), want));
});

describe('PreflightTally', () => {
  it('counts, groups mismatches by general path once per pair, keeps 3 distinct examples', () => {
    const t = new PreflightTally();
    const lat = { oldMs: 5, newMs: 6 };
    t.recordComparison([], lat);
    t.recordComparison([diff('$.items[0].price', '10', '11'), diff('$.items[1].price', '20', '21'), diff('status', '200', '201')], lat);
    t.recordComparison([diff('$.items[4].price', '10', '11')], lat);
    for (let i = 0; i < 5; i++) t.recordComparison([diff('$.items[2].price', `${i}`, `${i + 1}`)], lat);
    t.recordError();
    t.recordSkipped();
    t.recordDropped(3);
    const s = t.status('Pending');
    assert.deepEqual({ ...s, latency: undefined }, {
      verdict: 'Pending',
      compared: 8,
      mismatched: 7,
      errors: 1,
      dropped: 3,
      skipped: 1,
      topMismatches: [
        { path: '$.items[*].price', count: 7, examples: [{ old: '10', new: '11' }, { old: '0', new: '1' }, { old: '1', new: '2' }] },
        { path: 'status', count: 1, examples: [{ old: '200', new: '201' }] },
      ],
      latency: undefined,
    });
    within(s.latency.oldP50, 5);
    within(s.latency.newP95, 6);
  });

  it('is bounded: at most maxPaths paths, the rest only counted; topN in status', () => {
    const t = new PreflightTally({ maxPaths: 5, topN: 2, examplesPerPath: 1 });
    for (let i = 0; i < 1000; i++) t.recordComparison([diff(`$.k${i % 50}`, `${i}`, 'x')], { oldMs: 1, newMs: 1 });
    const snap = t.toJSON();
    assert.equal(snap.paths.length, 5);
    assert.equal(snap.untrackedPaths, 1000 - 5 * 20);
    assert.ok(snap.paths.every((p) => p.examples.length === 1));
    assert.deepEqual(t.status('Pending').topMismatches.map((m) => [m.path, m.count]), [['$.k0', 20], ['$.k1', 20]]);
  });

  it('merges (several workers) and round-trips through JSON', () => {
    const a = tally({ matched: 10, mismatched: [[diff('$.a')]], errors: 1, oldMs: 10, newMs: 12 });
    const b = tally({ matched: 5, mismatched: [[diff('$.a', '3', '4')], [diff('$.b')]], oldMs: 20, newMs: 30 });
    b.recordDropped(2);
    const merged = PreflightTally.fromJSON(JSON.parse(JSON.stringify(a.toJSON())));
    merged.merge(b);
    const s = merged.status('Pending');
    assert.deepEqual([s.compared, s.mismatched, s.errors, s.dropped], [18, 3, 1, 2]);
    assert.deepEqual(s.topMismatches.map((m) => [m.path, m.count, m.examples.length]), [['$.a', 2, 2], ['$.b', 1, 1]]);
    assert.equal(merged.oldLatency.count, 18);
    within(s.latency.oldP95, 20);
    within(s.latency.newP50, 12);
  });
});

describe('decide', () => {
  const PASS: PassCriteria = { maxMismatchRate: 0, maxErrorRate: 0, maxLatencyRatio: 2 };
  const OPTS: DecideOptions = { minRequests: 100, elapsedMs: 10_000, maxDurationMs: 120_000, onNoTraffic: 'reject' };

  const table: Array<{ name: string; spec: Spec; pass?: Partial<PassCriteria>; opts?: Partial<DecideOptions>; want: Pick<Decision, 'verdict' | 'reason'>; message: RegExp }> = [
    { name: 'enough matching pairs: Pass', spec: { matched: 100 }, want: { verdict: 'Pass' }, message: /^100 compared: 0 differed \(allowed 0%\), 0 of 100 failed \(allowed 0%\); p95 .* ms vs .* ms \(1\.00×, allowed 2×\)$/ },
    { name: 'too few yet: Pending', spec: { matched: 40 }, want: { verdict: 'Pending' }, message: /^40 of 100 request\(s\) needed were compared so far \(10s of maxDuration 2m\)$/ },
    { name: 'one mismatch with maxMismatchRate 0 fails at once', spec: { matched: 3, mismatched: [[diff('$.items[3].price', '40', '41')]] }, want: { verdict: 'Fail', reason: 'PreflightMismatch' }, message: /^1 of 4 compared response\(s\) \(25%\) differed; allowed: 0%; most at \$\.items\[\*\]\.price \(1\)$/ },
    { name: 'one error with maxErrorRate 0 fails at once', spec: { matched: 3, errors: 1 }, want: { verdict: 'Fail', reason: 'PreflightErrors' }, message: /^1 of 4 request\(s\) \(25%\) failed on the new version .* allowed: 0%$/ },
    { name: 'errors are checked before mismatches', spec: { matched: 100, mismatched: [[diff('$.a')]], errors: 1 }, want: { verdict: 'Fail', reason: 'PreflightErrors' }, message: /^1 of 102 request/ },
    { name: 'mismatch rate under the limit: Pass', spec: { matched: 99, mismatched: [[diff('$.a')]] }, pass: { maxMismatchRate: 0.01 }, want: { verdict: 'Pass' }, message: /^100 compared: 1 differed \(allowed 1%\)/ },
    { name: 'mismatch rate over the limit, judged at minRequests', spec: { matched: 98, mismatched: [[diff('$.a')], [diff('$.b')]] }, pass: { maxMismatchRate: 0.01 }, want: { verdict: 'Fail', reason: 'PreflightMismatch' }, message: /^2 of 100 compared response\(s\) \(2%\) differed; allowed: 1%; most at \$\.a \(1\), \$\.b \(1\)$/ },
    { name: 'mismatch rate over a non-zero limit before minRequests: still Pending', spec: { matched: 1, mismatched: [[diff('$.a')]] }, pass: { maxMismatchRate: 0.01 }, want: { verdict: 'Pending' }, message: /^2 of 100/ },
    { name: 'error rate at the limit passes (limit inclusive)', spec: { matched: 95, errors: 5 }, pass: { maxErrorRate: 0.05 }, want: { verdict: 'Pass' }, message: /5 of 100 failed \(allowed 5%\)/ },
    { name: 'slow new version: PreflightLatency', spec: { matched: 100, oldMs: 10, newMs: 30 }, want: { verdict: 'Fail', reason: 'PreflightLatency' }, message: /^new version p95 \d+(\.\d+)? ms is 3\.\d\d× the serving version's \d+(\.\d+)? ms; allowed: 2×$/ },
    { name: 'latency not checked when maxLatencyRatio is absent', spec: { matched: 100, oldMs: 10, newMs: 30 }, pass: { maxLatencyRatio: undefined }, want: { verdict: 'Pass' }, message: /^100 compared/ },
    { name: 'maxDuration over, onNoTraffic reject: NoTraffic', spec: { matched: 10 }, opts: { elapsedMs: 120_000 }, want: { verdict: 'Fail', reason: 'NoTraffic' }, message: /^only 10 of 100 request\(s\) needed were compared within maxDuration 2m \(onNoTraffic: reject\)$/ },
    { name: 'maxDuration over, nothing at all, onNoTraffic reject', spec: {}, opts: { elapsedMs: 200_000 }, want: { verdict: 'Fail', reason: 'NoTraffic' }, message: /^only 0 of 100/ },
    { name: 'maxDuration over, onNoTraffic pass: judged on what there is', spec: { matched: 10 }, opts: { elapsedMs: 120_000, onNoTraffic: 'pass' }, want: { verdict: 'Pass' }, message: /^only 10 of 100 .* \(onNoTraffic: pass\); 10 compared: 0 differed/ },
    { name: 'onNoTraffic pass still fails a slow version', spec: { matched: 10, oldMs: 10, newMs: 50 }, opts: { elapsedMs: 120_000, onNoTraffic: 'pass' }, want: { verdict: 'Fail', reason: 'PreflightLatency' }, message: /5\.\d\d×/ },
    { name: 'maxDuration over, onNoTraffic wait: Pending, says so', spec: { matched: 10 }, opts: { elapsedMs: 120_000, onNoTraffic: 'wait' }, want: { verdict: 'Pending' }, message: /onNoTraffic: wait/ },
    { name: 'minRequests 0 and nothing compared: Pass', spec: {}, opts: { minRequests: 0 }, want: { verdict: 'Pass' }, message: /^0 compared/ },
  ];

  for (const row of table) {
    it(row.name, () => {
      const d = decide(tally(row.spec), { ...PASS, ...row.pass }, { ...OPTS, ...row.opts });
      assert.deepEqual({ verdict: d.verdict, reason: d.reason }, { verdict: row.want.verdict, reason: row.want.reason });
      assert.match(d.message, row.message);
    });
  }
});
