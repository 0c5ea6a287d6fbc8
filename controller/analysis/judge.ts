// The built-in judge: canary against baseline over one window (after initialDelay), on the
// sidecar's own per-version measurements. Pure: no clock, no I/O.
//
// A metric fails only when the difference is BOTH statistically significant (one-sided test,
// canary worse, p < 1 − confidence) AND larger than the allowed effect (maxIncrease): a 1 µs
// shift on a million requests is significant but passes; a large shift on ten requests is not
// significant and passes. Too few requests on either side is Inconclusive.
//
//   latency: Mann–Whitney U on the two latency histograms; effect = the Hodges–Lehmann estimate
//            of the canary's slowdown as a ratio (median of all canary/baseline latency ratios,
//            minus 1; maxIncrease "20%" → fail above +20 %). The additive Hodges–Lehmann shift
//            (µs) is reported beside it. Why the ratio: relative to the baseline median, the
//            additive shift understates a proportional slowdown on wide distributions (a version
//            30 % slower on every request showed +15 % at p95/p50 ≈ 27); the ratio is scale-free
//            and equals shift/median for a pure shift on a narrow distribution.
//   errors:  error ratio = (responses with an error status + requests without a response) /
//            requests; Fisher's exact test when an expected cell count is below 5, else the
//            two-proportion z-test; effect = canary ratio − baseline ratio in percentage points.

import { MoltError } from '../../common/errors.js';
import type { LatencyHistogram } from '../../common/latency-histogram.js';
import { compareProportions, fromHistogram, hodgesLehmann, hodgesLehmannRatio, mannWhitneyU } from './stats.js';
import { combine, type AnalysisResult, type MetricResult, type Verdict } from './types.js';

/** One version's measurements over one window. */
export interface WindowData {
  /** Latency of every request that got a response (µs). */
  latency: LatencyHistogram;
  /** All requests routed to the version in the window, with or without a response. */
  requests: number;
  /** Responses per upstream status code, e.g. { 200: 950, 503: 4 }. */
  statuses: Readonly<Record<number, number>>;
  /** Requests that got no response from the version (connect failure, reset, timeout). Always errors. */
  noResponse?: number;
}

export interface LatencyCriterion {
  /** Allowed typical slowdown (Hodges–Lehmann ratio − 1) as a fraction: "20%" → 0.2. */
  maxIncrease: number;
  /** 0.98 → fail only at p < 0.02. */
  confidence: number;
}

export interface ErrorsCriterion {
  /** Allowed increase of the error ratio as a fraction of requests: "0.5pp" → 0.005. */
  maxIncrease: number;
  confidence: number;
  /** Status codes that count as errors. Absent: 500–599, plus 400–499 when include4xx. */
  statusCodes?: readonly number[];
  include4xx?: boolean;
}

export interface JudgeConfig {
  /** Requests each side needs in the window; fewer is Inconclusive. */
  minRequests: number;
  /** null/absent: latency is not judged. */
  latency?: LatencyCriterion | null;
  errors?: ErrorsCriterion | null;
}

export interface LatencySide {
  count: number;
  p50Micros: number;
  p95Micros: number;
  meanMicros: number;
}

export interface LatencyResult extends MetricResult {
  kind: 'latency';
  baseline: LatencySide;
  canary: LatencySide;
  /** Hodges–Lehmann shift canary − baseline (µs). NaN when Inconclusive. */
  shiftMicros: number;
  /** Hodges–Lehmann ratio − 1: the typical relative slowdown (0.2 = +20 %). The decision uses this. */
  relativeShift: number;
  /** One-sided Mann–Whitney p (canary slower). NaN when Inconclusive. */
  pValue: number;
  test: 'mann-whitney-exact' | 'mann-whitney-asymptotic' | 'none';
  maxIncrease: number;
  confidence: number;
}

export interface ErrorsSide {
  requests: number;
  errors: number;
  ratio: number;
}

export interface ErrorsResult extends MetricResult {
  kind: 'errors';
  baseline: ErrorsSide;
  canary: ErrorsSide;
  /** canary.ratio − baseline.ratio (a fraction: 0.01 = 1 pp). */
  difference: number;
  pValue: number;
  test: 'fisher' | 'z-test' | 'none';
  maxIncrease: number;
  confidence: number;
}

export interface JudgeResult extends AnalysisResult {
  latency?: LatencyResult;
  errors?: ErrorsResult;
}

export function judge(baseline: WindowData, canary: WindowData, cfg: JudgeConfig): JudgeResult {
  const metrics: MetricResult[] = [];
  const out: Partial<JudgeResult> = {};
  if (cfg.latency) metrics.push((out.latency = judgeLatency(baseline.latency, canary.latency, cfg.minRequests, cfg.latency)));
  if (cfg.errors) metrics.push((out.errors = judgeErrors(baseline, canary, cfg.minRequests, cfg.errors)));
  return { ...combine(metrics), ...out };
}

export function judgeLatency(baseline: LatencyHistogram, canary: LatencyHistogram, minRequests: number, c: LatencyCriterion): LatencyResult {
  const side = (h: LatencyHistogram): LatencySide => ({
    count: h.count,
    p50Micros: h.quantile(0.5),
    p95Micros: h.quantile(0.95),
    meanMicros: h.mean(),
  });
  const b = side(baseline);
  const k = side(canary);
  const base = { metric: 'latency', kind: 'latency' as const, baseline: b, canary: k, maxIncrease: c.maxIncrease, confidence: c.confidence };
  if (b.count < minRequests || k.count < minRequests) {
    return {
      ...base, verdict: 'Inconclusive', shiftMicros: NaN, relativeShift: NaN, pValue: NaN, test: 'none',
      message: `latency: too few requests to judge (canary ${k.count}, baseline ${b.count}; minRequests ${minRequests})`,
    };
  }
  const x = fromHistogram(canary);
  const y = fromHistogram(baseline);
  const mw = mannWhitneyU(x, y, { alternative: 'greater' });
  const shift = hodgesLehmann(x, y);
  const relative = hodgesLehmannRatio(x, y) - 1;
  const significant = mw.pValue < 1 - c.confidence;
  const large = relative > c.maxIncrease;
  const verdict: Verdict = significant && large ? 'Fail' : 'Pass';
  const p50Change = (k.p50Micros - b.p50Micros) / Math.max(1, b.p50Micros);
  const message =
    `latency: p50 ${formatMicros(k.p50Micros)} vs ${formatMicros(b.p50Micros)} (${formatPercent(p50Change)}), ` +
    `U-test ${formatP(mw.pValue)}; typical slowdown ${formatPercent(relative)} (limit +${formatNumber(c.maxIncrease * 100)} %), ` +
    `shift ${formatSignedMicros(shift)}, p95 ${formatMicros(k.p95Micros)} vs ${formatMicros(b.p95Micros)}, n ${k.count}/${b.count}` +
    (verdict === 'Fail' ? '' : significant ? ' (significant, within the limit)' : large ? ` (not significant at ${formatNumber(c.confidence * 100)} %)` : '');
  return { ...base, verdict, shiftMicros: shift, relativeShift: relative, pValue: mw.pValue, test: `mann-whitney-${mw.method}`, message };
}

/** Whether a status code counts as an error under `c`. */
export function isErrorStatus(code: number, c: Pick<ErrorsCriterion, 'statusCodes' | 'include4xx'>): boolean {
  if (c.statusCodes) return c.statusCodes.includes(code);
  return (code >= 500 && code <= 599) || (c.include4xx === true && code >= 400 && code <= 499);
}

export function countErrors(w: WindowData, c: Pick<ErrorsCriterion, 'statusCodes' | 'include4xx'>): number {
  let errors = w.noResponse ?? 0;
  for (const [code, n] of Object.entries(w.statuses)) if (isErrorStatus(Number(code), c)) errors += n;
  return errors;
}

export function judgeErrors(baseline: WindowData, canary: WindowData, minRequests: number, c: ErrorsCriterion): ErrorsResult {
  const side = (w: WindowData, name: string): ErrorsSide => {
    const errors = countErrors(w, c);
    if (!Number.isSafeInteger(w.requests) || w.requests < 0 || errors > w.requests) {
      throw new MoltError('MOLT_ERR_INTERNAL', `analysis: ${name} window has ${errors} errors but ${w.requests} requests`);
    }
    return { requests: w.requests, errors, ratio: w.requests ? errors / w.requests : NaN };
  };
  const b = side(baseline, 'baseline');
  const k = side(canary, 'canary');
  const base = { metric: 'errors', kind: 'errors' as const, baseline: b, canary: k, maxIncrease: c.maxIncrease, confidence: c.confidence };
  if (b.requests < minRequests || k.requests < minRequests) {
    return {
      ...base, verdict: 'Inconclusive', difference: NaN, pValue: NaN, test: 'none',
      message: `errors: too few requests to judge (canary ${k.requests}, baseline ${b.requests}; minRequests ${minRequests})`,
    };
  }
  const t = compareProportions(k.errors, k.requests, b.errors, b.requests, 'greater');
  const difference = k.ratio - b.ratio;
  const significant = t.pValue < 1 - c.confidence;
  const large = difference > c.maxIncrease;
  const verdict: Verdict = significant && large ? 'Fail' : 'Pass';
  const message =
    `errors: ${formatRatio(k.ratio)} vs ${formatRatio(b.ratio)} (${k.errors}/${k.requests} vs ${b.errors}/${b.requests}, ` +
    `${difference >= 0 ? '+' : ''}${formatNumber(difference * 100)} pp, limit +${formatNumber(c.maxIncrease * 100)} pp), ` +
    `${t.method === 'fisher' ? 'Fisher' : 'z-test'} ${formatP(t.pValue)}` +
    (verdict === 'Fail' ? '' : significant ? ' (significant, within the limit)' : large ? ` (not significant at ${formatNumber(c.confidence * 100)} %)` : '');
  return { ...base, verdict, difference, pValue: t.pValue, test: t.method, message };
}

// ---------------------------------------------------------------------------------------------
// Formatting (exported for status and CLI output)

/** "850 µs", "2.35 ms", "62 ms", "1.25 s". */
export function formatMicros(us: number): string {
  if (!Number.isFinite(us)) return String(us);
  const a = Math.abs(us);
  if (a < 1000) return `${Math.round(us)} µs`;
  if (a < 10_000) return `${(us / 1000).toFixed(2)} ms`;
  if (a < 1_000_000) return `${Math.round(us / 1000)} ms`;
  return `${(us / 1e6).toFixed(2)} s`;
}

function formatSignedMicros(us: number): string {
  return `${us > 0 ? '+' : us < 0 ? '−' : '±'}${formatMicros(Math.abs(us))}`;
}

/** "+195 %", "−3.5 %", "+0.4 %". */
export function formatPercent(fraction: number): string {
  if (!Number.isFinite(fraction)) return String(fraction);
  const pct = fraction * 100;
  const s = Math.abs(pct) >= 10 ? Math.round(Math.abs(pct)).toString() : formatNumber(Math.abs(pct));
  return `${pct > 0 ? '+' : pct < 0 ? '−' : '±'}${s} %`;
}

/** "p<0.001", "p=0.034", "p=0.41". */
export function formatP(p: number): string {
  if (!Number.isFinite(p)) return 'p=n/a';
  if (p < 0.001) return 'p<0.001';
  return `p=${p < 0.1 ? p.toFixed(3) : String(Number(p.toFixed(2)))}`;
}

function formatRatio(r: number): string {
  return Number.isFinite(r) ? `${formatNumber(r * 100)} %` : 'n/a';
}

/** Up to 2 decimals, no trailing zeros: 0.5, 3.02, 20. */
function formatNumber(n: number): string {
  return String(Number(n.toFixed(Math.abs(n) < 0.1 && n !== 0 ? 3 : 2)));
}
