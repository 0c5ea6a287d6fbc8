// Preflight evidence and verdict (pure, no I/O).
//
// PreflightTally accumulates what the comparisons found: counts (compared, mismatched, errors,
// dropped, skipped), the mismatching paths with counts and a few example values, and latency of
// both versions, all in bounded memory. Tallies merge (one per sidecar worker) and serialise to JSON
// (toJSON/fromJSON) for the stats message. `status()` gives the shape of `status.preflight`.
//
// decide() turns a tally into Pass / Fail / Pending with a reason and a message naming the numbers.
//
// Definitions (docs/preflight.md):
//   - a pair is *compared* when both versions answered (any status); it *mismatched* when at least
//     one difference remained after ignore paths and noise;
//   - an *error*: the new version failed (5xx, reset, timeout, refused, protocol) where the serving
//     version answered without a 5xx; error pairs are not compared;
//   - *skipped*: the serving version itself failed, nothing to compare with;
//   - *dropped*: a copy not sent because the in-flight bound was reached.
//   mismatch rate = mismatched / compared; error rate = errors / (compared + errors);
//   latency ratio = new p95 / old p95 over compared pairs.

import type { Difference } from './preflight-diff.js';
import { LatencyHistogram, type HistogramJSON } from './latency-histogram.js';

export type Verdict = 'Pending' | 'Pass' | 'Fail';
export type PreflightReason = 'PreflightMismatch' | 'PreflightErrors' | 'PreflightLatency' | 'NoTraffic';

export interface MismatchExample {
  old: string;
  new: string;
}

export interface TopMismatch {
  /** General path (`$.items[*].price`, `status`, `header:etag`, `body`). */
  path: string;
  /** Compared pairs that differed at this path. */
  count: number;
  examples: MismatchExample[];
}

export interface LatencySummary {
  /** Milliseconds; null without samples. */
  oldP50: number | null;
  oldP95: number | null;
  newP50: number | null;
  newP95: number | null;
}

/** `status.preflight` (the issue's shape, plus `skipped`). */
export interface PreflightStatus {
  verdict: Verdict;
  compared: number;
  mismatched: number;
  errors: number;
  dropped: number;
  skipped: number;
  topMismatches: TopMismatch[];
  latency: LatencySummary;
}

export interface TallyLimits {
  /** Distinct mismatching paths tracked (first seen); later paths are only counted. Default 100. */
  maxPaths?: number;
  /** Example old/new pairs kept per path. Default 3. */
  examplesPerPath?: number;
  /** Paths shown in status (highest counts). Default 10. */
  topN?: number;
}

/** Serialised tally (JSON-safe), for the stats message and merging. */
export interface TallySnapshot {
  compared: number;
  mismatched: number;
  errors: number;
  dropped: number;
  skipped: number;
  /** Path occurrences not tracked because maxPaths was reached. */
  untrackedPaths: number;
  paths: Array<{ path: string; count: number; examples: MismatchExample[] }>;
  /** Latency of compared pairs, µs, sparse (common/latency-histogram.ts HistogramJSON). */
  oldLatency: HistogramJSON;
  newLatency: HistogramJSON;
}

// ---- latency ----
//
// The same histogram as canary analysis (common/latency-histogram.ts: whole µs, exact below 256 µs,
// then bins at most 0.78 % wide, up to 67.1 s). Preflight speaks milliseconds: these two helpers
// convert, and keep preflight's rule that an unusable sample (negative, NaN, infinite) is ignored
// rather than counted.

/** Record one latency in milliseconds; negative, NaN and infinite values are ignored. */
export function recordLatencyMs(h: LatencyHistogram, ms: number): void {
  if (!Number.isFinite(ms) || ms < 0) return;
  h.record(ms * 1000);
}

/** Nearest-rank quantile (q in (0, 1]) in ms, rounded to 0.01 ms; null when empty. */
export function latencyQuantileMs(h: LatencyHistogram, q: number): number | null {
  if (h.count === 0) return null;
  return Math.round(h.quantile(q) / 10) / 100;
}

// ---- pairs ----

/** What one side of a pair gave: an answer with a status, or a failure (reset, timeout, …). */
export type PairOutcome = { ok: true; status: number } | { ok: false };

const is5xx = (s: number): boolean => s >= 500 && s <= 599;

/** compare: both answered; error: the new version failed where the serving one answered; skip: the serving version failed. */
export function classifyPair(old: PairOutcome, neu: PairOutcome): 'compare' | 'error' | 'skip' {
  if (!old.ok) return 'skip';
  if (!neu.ok) return 'error';
  if (is5xx(neu.status) && !is5xx(old.status)) return 'error';
  return 'compare';
}

// ---- the tally ----

interface PathEntry {
  count: number;
  examples: MismatchExample[];
}

export class PreflightTally {
  compared = 0;
  mismatched = 0;
  errors = 0;
  dropped = 0;
  skipped = 0;
  untrackedPaths = 0;
  readonly oldLatency = new LatencyHistogram();
  readonly newLatency = new LatencyHistogram();
  readonly #paths = new Map<string, PathEntry>();
  readonly #maxPaths: number;
  readonly #examples: number;
  readonly #topN: number;

  constructor(limits: TallyLimits = {}) {
    this.#maxPaths = limits.maxPaths ?? 100;
    this.#examples = limits.examplesPerPath ?? 3;
    this.#topN = limits.topN ?? 10;
  }

  /**
   * A compared pair. `diffs`: what remained after ignore paths and noise (empty: the answers
   * matched). Each general path counts once per pair; examples keep the concrete values.
   */
  recordComparison(diffs: readonly Difference[], latency: { oldMs: number; newMs: number }): void {
    this.compared++;
    recordLatencyMs(this.oldLatency, latency.oldMs);
    recordLatencyMs(this.newLatency, latency.newMs);
    if (diffs.length === 0) return;
    this.mismatched++;
    const seen = new Set<string>();
    for (const d of diffs) {
      if (seen.has(d.generalPath)) continue;
      seen.add(d.generalPath);
      this.#addPath(d.generalPath, 1, [{ old: d.old, new: d.new }]);
    }
  }

  recordError(): void {
    this.errors++;
  }

  recordSkipped(): void {
    this.skipped++;
  }

  recordDropped(n = 1): void {
    this.dropped += n;
  }

  #addPath(path: string, count: number, examples: readonly MismatchExample[]): void {
    let e = this.#paths.get(path);
    if (!e) {
      if (this.#paths.size >= this.#maxPaths) {
        this.untrackedPaths += count;
        return;
      }
      e = { count: 0, examples: [] };
      this.#paths.set(path, e);
    }
    e.count += count;
    for (const x of examples) {
      if (e.examples.length >= this.#examples) break;
      if (!e.examples.some((y) => y.old === x.old && y.new === x.new)) e.examples.push({ old: x.old, new: x.new });
    }
  }

  /** Highest counts first (ties: path order). */
  top(n = this.#topN): TopMismatch[] {
    return [...this.#paths]
      .sort((a, b) => b[1].count - a[1].count || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
      .slice(0, n)
      .map(([path, e]) => ({ path, count: e.count, examples: e.examples.map((x) => ({ ...x })) }));
  }

  latency(): LatencySummary {
    return {
      oldP50: latencyQuantileMs(this.oldLatency, 0.5),
      oldP95: latencyQuantileMs(this.oldLatency, 0.95),
      newP50: latencyQuantileMs(this.newLatency, 0.5),
      newP95: latencyQuantileMs(this.newLatency, 0.95),
    };
  }

  status(verdict: Verdict): PreflightStatus {
    return {
      verdict,
      compared: this.compared,
      mismatched: this.mismatched,
      errors: this.errors,
      dropped: this.dropped,
      skipped: this.skipped,
      topMismatches: this.top(),
      latency: this.latency(),
    };
  }

  /** Add another tally (another worker's, or a snapshot from the stats message). */
  merge(other: PreflightTally | TallySnapshot): void {
    const s = other instanceof PreflightTally ? other.toJSON() : other;
    // Parse both histograms before changing anything: a malformed snapshot leaves this tally as it was.
    const oldLatency = other instanceof PreflightTally ? other.oldLatency : LatencyHistogram.fromJSON(s.oldLatency);
    const newLatency = other instanceof PreflightTally ? other.newLatency : LatencyHistogram.fromJSON(s.newLatency);
    this.compared += s.compared;
    this.mismatched += s.mismatched;
    this.errors += s.errors;
    this.dropped += s.dropped;
    this.skipped += s.skipped;
    this.untrackedPaths += s.untrackedPaths;
    for (const p of s.paths) this.#addPath(p.path, p.count, p.examples);
    this.oldLatency.merge(oldLatency);
    this.newLatency.merge(newLatency);
  }

  toJSON(): TallySnapshot {
    return {
      compared: this.compared,
      mismatched: this.mismatched,
      errors: this.errors,
      dropped: this.dropped,
      skipped: this.skipped,
      untrackedPaths: this.untrackedPaths,
      paths: [...this.#paths].map(([path, e]) => ({ path, count: e.count, examples: e.examples.map((x) => ({ ...x })) })),
      oldLatency: this.oldLatency.toJSON(),
      newLatency: this.newLatency.toJSON(),
    };
  }

  static fromJSON(s: TallySnapshot, limits: TallyLimits = {}): PreflightTally {
    const t = new PreflightTally(limits);
    t.merge(s);
    return t;
  }
}

// ---- the verdict ----

export interface PassCriteria {
  /** 0-1 */
  maxMismatchRate: number;
  /** 0-1 */
  maxErrorRate: number;
  /** new p95 / old p95; undefined: not checked. */
  maxLatencyRatio?: number;
}

export interface DecideOptions {
  /** Pairs (compared + errors) needed before a verdict on the rates. */
  minRequests: number;
  /** Time since the preflight started. */
  elapsedMs: number;
  maxDurationMs: number;
  /** After maxDuration with fewer than minRequests pairs: reject (Fail, NoTraffic), pass (judge what
   *  there is), wait (stay Pending). */
  onNoTraffic: 'reject' | 'pass' | 'wait';
}

export interface Decision {
  verdict: Verdict;
  reason?: PreflightReason;
  message: string;
}

/**
 * Pass, Fail or Pending. Checked in this order: errors, mismatches, latency. A rate allowed to be 0
 * fails as soon as one error (or mismatch) is seen; other limits are judged once minRequests pairs
 * were seen. After maxDuration with fewer pairs, onNoTraffic decides.
 */
export function decide(tally: PreflightTally, pass: PassCriteria, opts: DecideOptions): Decision {
  const pairs = tally.compared + tally.errors;
  const failed = judge(tally, pass, { early: true });
  if (failed) return failed;
  if (pairs >= opts.minRequests) return judge(tally, pass, { early: false }) ?? passed(tally, pass);
  const have = `${pairs} of ${opts.minRequests} request(s) needed were compared`;
  if (opts.elapsedMs < opts.maxDurationMs) {
    return { verdict: 'Pending', message: `${have} so far (${fmtMs(opts.elapsedMs)} of maxDuration ${fmtMs(opts.maxDurationMs)})` };
  }
  switch (opts.onNoTraffic) {
    case 'reject':
      return { verdict: 'Fail', reason: 'NoTraffic', message: `only ${have} within maxDuration ${fmtMs(opts.maxDurationMs)} (onNoTraffic: reject)` };
    case 'wait':
      return { verdict: 'Pending', message: `only ${have} within maxDuration ${fmtMs(opts.maxDurationMs)}; waiting for more (onNoTraffic: wait)` };
    case 'pass': {
      const judged = judge(tally, pass, { early: false });
      if (judged) return judged;
      const p = passed(tally, pass);
      return { verdict: 'Pass', message: `only ${have} within maxDuration ${fmtMs(opts.maxDurationMs)} (onNoTraffic: pass); ${p.message}` };
    }
  }
}

function judge(t: PreflightTally, pass: PassCriteria, { early }: { early: boolean }): Decision | undefined {
  const pairs = t.compared + t.errors;
  const errorRate = pairs > 0 ? t.errors / pairs : 0;
  if (t.errors > 0 && (early ? pass.maxErrorRate === 0 : errorRate > pass.maxErrorRate)) {
    return {
      verdict: 'Fail',
      reason: 'PreflightErrors',
      message: `${t.errors} of ${pairs} request(s) (${pct(errorRate)}) failed on the new version (5xx, reset or timeout) where the serving version answered; allowed: ${pct(pass.maxErrorRate)}`,
    };
  }
  const mismatchRate = t.compared > 0 ? t.mismatched / t.compared : 0;
  if (t.mismatched > 0 && (early ? pass.maxMismatchRate === 0 : mismatchRate > pass.maxMismatchRate)) {
    const top = t.top(3).map((m) => `${m.path} (${m.count})`).join(', ');
    return {
      verdict: 'Fail',
      reason: 'PreflightMismatch',
      message: `${t.mismatched} of ${t.compared} compared response(s) (${pct(mismatchRate)}) differed; allowed: ${pct(pass.maxMismatchRate)}${top ? `; most at ${top}` : ''}`,
    };
  }
  if (early) return undefined;
  const ratio = latencyRatio(t);
  if (ratio !== undefined && pass.maxLatencyRatio !== undefined && ratio.value > pass.maxLatencyRatio) {
    return {
      verdict: 'Fail',
      reason: 'PreflightLatency',
      message: `new version p95 ${ratio.newP95} ms is ${ratio.value.toFixed(2)}× the serving version's ${ratio.oldP95} ms; allowed: ${pass.maxLatencyRatio}×`,
    };
  }
  return undefined;
}

function passed(t: PreflightTally, pass: PassCriteria): Decision {
  const pairs = t.compared + t.errors;
  const ratio = latencyRatio(t);
  const lat = ratio ? `; p95 ${ratio.newP95} ms vs ${ratio.oldP95} ms (${ratio.value.toFixed(2)}×${pass.maxLatencyRatio !== undefined ? `, allowed ${pass.maxLatencyRatio}×` : ''})` : '';
  return {
    verdict: 'Pass',
    message: `${t.compared} compared: ${t.mismatched} differed (allowed ${pct(pass.maxMismatchRate)}), ${t.errors} of ${pairs} failed (allowed ${pct(pass.maxErrorRate)})${lat}`,
  };
}

function latencyRatio(t: PreflightTally): { value: number; oldP95: number; newP95: number } | undefined {
  const oldP95 = latencyQuantileMs(t.oldLatency, 0.95);
  const newP95 = latencyQuantileMs(t.newLatency, 0.95);
  if (oldP95 === null || newP95 === null || oldP95 <= 0) return undefined;
  return { value: newP95 / oldP95, oldP95, newP95 };
}

function pct(rate: number): string {
  const p = rate * 100;
  return `${p === 0 ? '0' : p >= 10 ? p.toFixed(1).replace(/\.0$/, '') : Number(p.toPrecision(2)).toString()}%`;
}

function fmtMs(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 120_000) return `${Math.round(ms / 100) / 10}s`;
  return `${Math.round(ms / 6000) / 10}m`;
}
