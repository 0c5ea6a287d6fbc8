import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LatencyHistogram } from '../common/latency-histogram.js';
import { countErrors, formatMicros, formatP, formatPercent, judge, type JudgeConfig, type WindowData } from '../controller/analysis/judge.js';
import { combine } from '../controller/analysis/types.js';

/** Deterministic pseudo-random source (LCG) so the tests never flake. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32;
}

/** n latencies around `medianUs` (log-normal, σ = 0.3), plus `addUs` each. */
function latencies(n: number, medianUs: number, seed: number, addUs = 0): LatencyHistogram {
  const r = rng(seed);
  const h = new LatencyHistogram();
  for (let i = 0; i < n; i++) {
    const z = Math.sqrt(-2 * Math.log(r())) * Math.cos(2 * Math.PI * r());
    h.record(medianUs * Math.exp(0.3 * z) + addUs);
  }
  return h;
}

function windowOf(latency: LatencyHistogram, statuses: Record<number, number> = {}, noResponse = 0): WindowData {
  const answered = Object.values(statuses).reduce((a, b) => a + b, 0) || latency.count;
  return { latency, requests: answered + noResponse, statuses: Object.keys(statuses).length ? statuses : { 200: latency.count }, noResponse };
}

const CFG: JudgeConfig = {
  minRequests: 200,
  latency: { maxIncrease: 0.2, confidence: 0.98 },
  errors: { maxIncrease: 0.005, confidence: 0.98 },
};

test('an identical version passes both metrics', () => {
  const r = judge(windowOf(latencies(2000, 21_000, 1)), windowOf(latencies(2000, 21_000, 2)), CFG);
  assert.equal(r.verdict, 'Pass', r.message);
  assert.equal(r.latency!.verdict, 'Pass');
  assert.equal(r.errors!.verdict, 'Pass');
  assert.ok(Math.abs(r.latency!.relativeShift) < 0.05, String(r.latency!.relativeShift));
});

test('a version 40 ms slower fails latency, and the message names the numbers', () => {
  const r = judge(windowOf(latencies(1000, 21_000, 1)), windowOf(latencies(1000, 21_000, 2, 40_000)), CFG);
  assert.equal(r.verdict, 'Fail');
  assert.equal(r.latency!.verdict, 'Fail');
  assert.equal(r.errors!.verdict, 'Pass');
  assert.ok(r.latency!.pValue < 1e-10);
  assert.ok(Math.abs(r.latency!.shiftMicros - 40_000) < 0.02 * 61_000, String(r.latency!.shiftMicros));
  assert.match(r.message, /^latency: p50 6\d ms vs 2\d ms \(\+19\d %\), U-test p<0\.001; typical slowdown \+1\d\d % \(limit \+20 %\), shift \+4\d ms/);
  assert.ok(r.latency!.relativeShift > 1.5 && r.latency!.relativeShift < 2.2, String(r.latency!.relativeShift));
  assert.ok(!r.message.includes('errors'), 'only the failing metric is in the overall message');
  assert.equal(r.latency!.test, 'mann-whitney-asymptotic');
  assert.ok(Math.abs(r.latency!.baseline.p50Micros - 21_000) < 0.03 * 21_000);
});

test('a proportional slowdown on a wide distribution fails: the effect is a ratio, not a shift over the median', () => {
  // σ = 2 (p95/p50 ≈ 27): every request 30 % slower. The additive Hodges–Lehmann shift is only
  // ~15 % of the baseline median here; the ratio estimate sees the 30 %.
  const wide = (seed: number, factor: number) => {
    const r = rng(seed);
    const h = new LatencyHistogram();
    for (let i = 0; i < 20_000; i++) h.record(factor * 20_000 * Math.exp(2 * Math.sqrt(-2 * Math.log(r())) * Math.cos(2 * Math.PI * r())));
    return h;
  };
  const r = judge(windowOf(wide(1, 1)), windowOf(wide(2, 1.3)), CFG);
  assert.ok(Math.abs(r.latency!.relativeShift - 0.3) < 0.06, String(r.latency!.relativeShift));
  assert.ok(r.latency!.shiftMicros / r.latency!.baseline.p50Micros < 0.2, 'the additive shift understates it');
  assert.equal(r.latency!.verdict, 'Fail', r.latency!.message);
});

test('significance alone does not fail: a 1 µs shift on a million requests passes', () => {
  const base = new LatencyHistogram();
  const canary = new LatencyHistogram();
  for (let i = 0; i < 1_000_000; i++) {
    const v = 100 + (i % 100); // 100..199 µs: exact bins
    base.record(v);
    canary.record(v + 1);
  }
  const r = judge(windowOf(base), windowOf(canary), CFG);
  assert.ok(r.latency!.pValue < 1e-6, `the shift is significant: ${r.latency!.pValue}`);
  assert.equal(r.latency!.shiftMicros, 1);
  assert.equal(r.latency!.verdict, 'Pass');
  assert.match(r.latency!.message, /significant, within the limit/);
});

test('effect alone does not fail: a large shift on a handful of noisy requests is not significant', () => {
  const base = latencies(6, 20_000, 3);
  const canary = latencies(6, 20_000, 4);
  canary.record(500_000); // one outlier: large mean shift, tiny rank evidence
  const r = judge(windowOf(base), windowOf(canary), { ...CFG, minRequests: 5 });
  assert.ok(r.latency!.pValue >= 0.02, String(r.latency!.pValue));
  assert.equal(r.latency!.verdict, 'Pass');
  // Exact distribution for small samples without ties.
  assert.equal(r.latency!.test, 'mann-whitney-exact');
});

test('too few requests on either side is Inconclusive, with the counts', () => {
  const r = judge(windowOf(latencies(1000, 21_000, 1)), windowOf(latencies(150, 80_000, 2)), CFG);
  assert.equal(r.verdict, 'Inconclusive');
  assert.equal(r.latency!.verdict, 'Inconclusive');
  assert.match(r.latency!.message, /too few requests.*canary 150, baseline 1000; minRequests 200/);
  assert.equal(r.errors!.verdict, 'Inconclusive');
});

test('errors: 3 % against 0.1 % fails; 0.3 % against 0.1 % is within 0.5 pp and passes', () => {
  const lat = (seed: number) => latencies(4000, 21_000, seed);
  const fail = judge(windowOf(lat(1), { 200: 3996, 503: 4 }), windowOf(lat(2), { 200: 3880, 500: 120 }), CFG);
  assert.equal(fail.errors!.verdict, 'Fail');
  assert.equal(fail.verdict, 'Fail');
  assert.equal(fail.errors!.canary.errors, 120);
  assert.equal(fail.errors!.baseline.errors, 4);
  assert.ok(Math.abs(fail.errors!.difference - 0.029) < 1e-12);
  assert.match(fail.message, /^errors: 3 % vs 0\.1 % \(120\/4000 vs 4\/4000, \+2\.9 pp, limit \+0\.5 pp\), z-test p<0\.001$/);

  const pass = judge(windowOf(lat(1), { 200: 3996, 503: 4 }), windowOf(lat(2), { 200: 3988, 500: 12 }), CFG);
  assert.equal(pass.errors!.verdict, 'Pass');
  assert.equal(pass.verdict, 'Pass');
});

test('errors at small counts use Fisher\'s exact test', () => {
  // scipy.stats.fisher_exact([[8, 292], [0, 300]], alternative='greater').pvalue = 0.0037259402187887623
  const r = judge(windowOf(latencies(300, 21_000, 1), { 200: 300 }), windowOf(latencies(300, 21_000, 2), { 200: 292, 502: 8 }), CFG);
  assert.equal(r.errors!.test, 'fisher');
  assert.ok(Math.abs(r.errors!.pValue - 0.0037259402187887623) < 1e-12);
  assert.equal(r.errors!.verdict, 'Fail');
  assert.match(r.errors!.message, /Fisher p=0\.004$/);
});

test('which responses count as errors: 5xx by default, 4xx on request, or exactly statusCodes; no response always', () => {
  const w = windowOf(new LatencyHistogram(), { 200: 90, 404: 3, 429: 2, 500: 1, 501: 1, 503: 1 }, 2);
  assert.equal(w.requests, 100);
  assert.equal(countErrors(w, {}), 3 + 2);
  assert.equal(countErrors(w, { include4xx: true }), 3 + 5 + 2);
  assert.equal(countErrors(w, { statusCodes: [503, 429] }), 3 + 2);
});

test('a window with more errors than requests is a bug, not a verdict', () => {
  const w: WindowData = { latency: latencies(300, 1000, 1), requests: 300, statuses: { 500: 400 } };
  assert.throws(() => judge(w, w, CFG), (e: any) => e.code === 'MOLT_ERR_INTERNAL');
});

test('metrics can be switched off; nothing judged is Inconclusive, never Pass', () => {
  const a = windowOf(latencies(1000, 21_000, 1));
  const b = windowOf(latencies(1000, 21_000, 2, 40_000));
  const onlyErrors = judge(a, b, { minRequests: 200, errors: CFG.errors });
  assert.equal(onlyErrors.latency, undefined);
  assert.equal(onlyErrors.verdict, 'Pass');
  assert.equal(judge(a, b, { minRequests: 200 }).verdict, 'Inconclusive');
});

test('combine: any Fail fails; else any Inconclusive; else Pass', () => {
  const m = (verdict: 'Pass' | 'Fail' | 'Inconclusive', metric: string) => ({ metric, kind: 'prometheus' as const, verdict, message: `${metric} ${verdict}` });
  assert.equal(combine([m('Pass', 'a'), m('Inconclusive', 'b'), m('Fail', 'c')]).verdict, 'Fail');
  assert.equal(combine([m('Pass', 'a'), m('Fail', 'c')]).message, 'c Fail');
  assert.equal(combine([m('Pass', 'a'), m('Inconclusive', 'b')]).verdict, 'Inconclusive');
  assert.equal(combine([m('Pass', 'a'), m('Pass', 'b')]).message, 'a Pass; b Pass');
});

test('formatting of durations, percentages and p-values', () => {
  assert.equal(formatMicros(850), '850 µs');
  assert.equal(formatMicros(2345), '2.35 ms');
  assert.equal(formatMicros(62_400), '62 ms');
  assert.equal(formatMicros(1_250_000), '1.25 s');
  assert.equal(formatPercent(1.95), '+195 %');
  assert.equal(formatPercent(-0.035), '−3.5 %');
  assert.equal(formatP(0.0004), 'p<0.001');
  assert.equal(formatP(0.034), 'p=0.034');
  assert.equal(formatP(0.41), 'p=0.41');
});
