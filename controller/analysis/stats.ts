// Statistics for canary analysis. Pure functions, no I/O.
//
// Samples are "binned": a sorted list of distinct values with a count each (`Sparse`). A
// LatencyHistogram becomes one with `fromHistogram` (each bin's midpoint as its value, so ties
// are ties at bin precision, ≤ 0.78 %); raw values become one with `fromValues`.
//
// Conventions follow scipy.stats so results can be checked against it:
//   mannWhitneyU(x, y, alternative)  — 'greater': x tends to be larger than y (canary slower);
//   twoProportionZTest / fisherExact — 'greater': the first group's proportion is larger.
//
// Numbers are doubles. Counts up to 2^53 are exact; U and the pair counts of Hodges–Lehmann are
// products n1·n2, exact while n1·n2 ≤ 2^53 (9·10^15 pairs, e.g. 9·10^7 requests per side).

import type { LatencyHistogram } from '../../common/latency-histogram.js';
import { binMidpoint } from '../../common/latency-histogram.js';

export type Alternative = 'greater' | 'two-sided';

/** Distinct values ascending, each with a positive count. */
export interface Sparse {
  readonly values: Float64Array;
  readonly counts: Float64Array;
  /** Sum of counts. */
  readonly n: number;
}

export function fromHistogram(h: LatencyHistogram): Sparse {
  const c = h.counts;
  let k = 0;
  for (let i = 0; i < c.length; i++) if (c[i] !== 0) k++;
  const values = new Float64Array(k);
  const counts = new Float64Array(k);
  let n = 0;
  k = 0;
  for (let i = 0; i < c.length; i++) {
    if (c[i] === 0) continue;
    values[k] = binMidpoint(i);
    counts[k++] = c[i]!;
    n += c[i]!;
  }
  return { values, counts, n };
}

export function fromValues(input: readonly number[]): Sparse {
  for (const v of input) if (!Number.isFinite(v)) throw new RangeError(`fromValues: ${v} is not a finite number`);
  const sorted = [...input].sort((a, b) => a - b);
  const values: number[] = [];
  const counts: number[] = [];
  for (const v of sorted) {
    if (values.length && values[values.length - 1] === v) counts[counts.length - 1]!++;
    else {
      values.push(v);
      counts.push(1);
    }
  }
  return { values: Float64Array.from(values), counts: Float64Array.from(counts), n: sorted.length };
}

const asSparse = (s: Sparse | LatencyHistogram): Sparse => ('values' in s ? s : fromHistogram(s));

// ---------------------------------------------------------------------------------------------
// Normal distribution

/** erfc(x) to about 1e-15 relative: a positive-term series below 2.5, a continued fraction above. */
export function erfc(x: number): number {
  if (Number.isNaN(x)) return NaN;
  if (x < 0) return 2 - erfc(-x);
  if (x < 2.5) {
    // erf(x) = 2/√π · e^(−x²) · Σ 2^n x^(2n+1) / (1·3·…·(2n+1))  (all terms positive)
    let term = x;
    let sum = x;
    const x2 = 2 * x * x;
    for (let n = 1; n < 200; n++) {
      term *= x2 / (2 * n + 1);
      sum += term;
      if (term < sum * 1e-17) break;
    }
    return 1 - (2 / Math.sqrt(Math.PI)) * Math.exp(-x * x) * sum;
  }
  if (x > 27) return 0; // below the smallest double
  // erfc(x) = e^(−x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + …))))), modified Lentz
  const tiny = 1e-300;
  let f = x;
  let C = x;
  let D = 0;
  for (let n = 1; n < 500; n++) {
    const a = n / 2;
    D = x + a * D;
    D = D === 0 ? tiny : D;
    C = x + a / C;
    C = C === 0 ? tiny : C;
    D = 1 / D;
    const delta = C * D;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  return Math.exp(-x * x) / Math.sqrt(Math.PI) / f;
}

/** P(Z > z) for a standard normal Z. */
export function normalSf(z: number): number {
  return 0.5 * erfc(z / Math.SQRT2);
}

// ---------------------------------------------------------------------------------------------
// Mann–Whitney U

export interface MannWhitneyResult {
  /** U of x: pairs (x, y) with x > y, plus half the tied pairs. 0..n1·n2. */
  u: number;
  n1: number;
  n2: number;
  /** Standardised U (asymptotic method; continuity-corrected when asked). NaN for 'exact'. */
  z: number;
  pValue: number;
  method: 'exact' | 'asymptotic';
  /** Whether any value occurs more than once across both samples. */
  ties: boolean;
}

export interface MannWhitneyOptions {
  alternative?: Alternative;
  /**
   * 'auto' (default): the exact null distribution when both samples have ≤ 20 values and no
   * ties, else the normal approximation with tie correction. 'exact' refuses samples with ties.
   */
  method?: 'auto' | 'exact' | 'asymptotic';
  /** Continuity correction (±0.5) in the normal approximation. Default true (as scipy). */
  continuity?: boolean;
}

export const EXACT_MAX_N = 20;

/**
 * Mann–Whitney U test of x against y. With alternative 'greater', small p means x tends to be
 * larger than y. Matches scipy.stats.mannwhitneyu(x, y, use_continuity, alternative, method).
 */
export function mannWhitneyU(xIn: Sparse | LatencyHistogram, yIn: Sparse | LatencyHistogram, opts: MannWhitneyOptions = {}): MannWhitneyResult {
  const x = asSparse(xIn);
  const y = asSparse(yIn);
  const alternative = opts.alternative ?? 'two-sided';
  const continuity = opts.continuity ?? true;
  const n1 = x.n;
  const n2 = y.n;
  if (n1 === 0 || n2 === 0) throw new RangeError('mannWhitneyU: both samples need at least one value');
  // One merge pass: U of x, and the tie term Σ(t³ − t) over distinct values of the union.
  let u = 0;
  let tieTerm = 0;
  let ties = false;
  let yBelow = 0;
  let i = 0;
  let j = 0;
  while (i < x.values.length || j < y.values.length) {
    const xv = i < x.values.length ? x.values[i]! : Infinity;
    const yv = j < y.values.length ? y.values[j]! : Infinity;
    let cx = 0;
    let cy = 0;
    if (xv <= yv) cx = x.counts[i++]!;
    if (yv <= xv) cy = y.counts[j++]!;
    u += cx * (yBelow + cy / 2);
    yBelow += cy;
    const t = cx + cy;
    if (t > 1) {
      ties = true;
      tieTerm += (t - 1) * t * (t + 1);
    }
  }
  const method = opts.method ?? 'auto';
  const useExact = method === 'exact' || (method === 'auto' && !ties && n1 <= EXACT_MAX_N && n2 <= EXACT_MAX_N);
  // The statistic whose upper tail is the p-value (scipy): U of x for 'greater', max(U1, U2) two-sided.
  const stat = alternative === 'greater' ? u : Math.max(u, n1 * n2 - u);
  const factor = alternative === 'greater' ? 1 : 2;
  if (useExact) {
    if (ties) throw new RangeError('mannWhitneyU: the exact method needs samples without ties');
    if (n1 > 60 || n2 > 60) throw new RangeError('mannWhitneyU: the exact method is limited to 60 values per sample');
    const p = Math.min(1, Math.max(0, factor * exactUpperTail(n1, n2, stat)));
    return { u, n1, n2, z: NaN, pValue: p, method: 'exact', ties };
  }
  const n = n1 + n2;
  const mu = (n1 * n2) / 2;
  const variance = ((n1 * n2) / 12) * (n + 1 - tieTerm / (n * (n - 1)));
  let num = stat - mu;
  if (continuity) num -= 0.5;
  // All values tied (variance 0): no evidence either way.
  const z = variance > 0 ? num / Math.sqrt(variance) : NaN;
  const p = variance > 0 ? Math.min(1, Math.max(0, factor * normalSf(z))) : 1;
  return { u, n1, n2, z, pValue: p, method: 'asymptotic', ties };
}

/** P(U ≥ u) under H0 for samples of n1 and n2 distinct values (exact, by recurrence; n ≤ 60). */
export function exactUpperTail(n1: number, n2: number, u: number): number {
  const dist = exactDistribution(n1, n2);
  let total = 0;
  let tail = 0;
  const from = Math.ceil(u);
  for (let k = 0; k < dist.length; k++) {
    total += dist[k]!;
    if (k >= from) tail += dist[k]!;
  }
  return tail / total;
}

const exactCache = new Map<string, Float64Array>();

/**
 * Number of orderings of n1 x's and n2 y's with U = k, k = 0..n1·n2:
 * c(m, n, k) = c(m−1, n, k−n) + c(m, n−1, k). Exact integers up to C(40, 20) ≈ 1.4·10^11.
 */
function exactDistribution(n1: number, n2: number): Float64Array {
  const key = `${n1},${n2}`;
  const hit = exactCache.get(key);
  if (hit) return hit;
  // prev[n] = distribution for (m−1, n); cur[n] for (m, n).
  let prev: Float64Array[] = [];
  for (let n = 0; n <= n2; n++) prev.push(Float64Array.of(1)); // m = 0
  for (let m = 1; m <= n1; m++) {
    const cur: Float64Array[] = [Float64Array.of(1)]; // n = 0
    for (let n = 1; n <= n2; n++) {
      const d = new Float64Array(m * n + 1);
      const a = prev[n]!; // (m−1, n), shifted by n
      for (let k = 0; k < a.length; k++) d[k + n] += a[k]!;
      const b = cur[n - 1]!; // (m, n−1)
      for (let k = 0; k < b.length; k++) d[k] += b[k]!;
      cur.push(d);
    }
    prev = cur;
  }
  const out = prev[n2]!;
  if (exactCache.size < 64) exactCache.set(key, out);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Hodges–Lehmann shift

/**
 * Hodges–Lehmann estimate of the shift of x relative to y: the median of all n1·n2 differences
 * x_i − y_j (mean of the two middle ones when n1·n2 is even). Exact for the values given (bin
 * midpoints for histograms), in O((k1 + k2) · log(range)) time and O(1) extra memory (k = distinct
 * values): selection by bisection on the shift, counting pairs with two pointers.
 */
export function hodgesLehmann(xIn: Sparse | LatencyHistogram, yIn: Sparse | LatencyHistogram): number {
  const x = asSparse(xIn);
  const y = asSparse(yIn);
  const pairs = x.n * y.n;
  if (pairs === 0) return NaN;
  if (pairs % 2 === 1) return kthDifference(x, y, (pairs + 1) / 2);
  return (kthDifference(x, y, pairs / 2) + kthDifference(x, y, pairs / 2 + 1)) / 2;
}

/**
 * Hodges–Lehmann estimate of a multiplicative shift: the median of all ratios x_i / y_j (for an
 * even count, the geometric mean of the two middle ones) — the HL shift of log values. Scale-free:
 * a version 30 % slower on every request gives 1.3 however wide the distribution, where the
 * additive shift relative to the median understates it on wide distributions. Values ≤ 0.5 (bin 0
 * of a histogram) count as 0.5 µs.
 */
export function hodgesLehmannRatio(xIn: Sparse | LatencyHistogram, yIn: Sparse | LatencyHistogram): number {
  const log = (s: Sparse): Sparse => {
    // log is increasing, and values ≤ 0.5 merge into one, so order and distinctness hold.
    const values: number[] = [];
    const counts: number[] = [];
    for (let i = 0; i < s.values.length; i++) {
      const v = Math.log(Math.max(0.5, s.values[i]!));
      if (values.length && values[values.length - 1] === v) counts[counts.length - 1]! += s.counts[i]!;
      else {
        values.push(v);
        counts.push(s.counts[i]!);
      }
    }
    return { values: Float64Array.from(values), counts: Float64Array.from(counts), n: s.n };
  };
  return Math.exp(hodgesLehmann(log(asSparse(xIn)), log(asSparse(yIn))));
}

/** Number of pairs with x − y ≤ d. */
function pairsAtMost(x: Sparse, y: Sparse, d: number): number {
  // For each x value v: the y with v − y > d are a prefix of y that grows with v, so one pointer
  // walks y. (Compared as differences, exactly as nextDifference computes them: `y < v − d` could
  // disagree with `v − y > d` by a rounding.)
  let count = 0;
  let j = 0;
  let yBelow = 0;
  for (let i = 0; i < x.values.length; i++) {
    const v = x.values[i]!;
    while (j < y.values.length && v - y.values[j]! > d) yBelow += y.counts[j++]!;
    count += x.counts[i]! * (y.n - yBelow);
  }
  return count;
}

/** Smallest pair difference strictly greater than d (Infinity if none). */
function nextDifference(x: Sparse, y: Sparse, d: number): number {
  // For each x value v, the largest y below v − d gives the smallest difference above d.
  let best = Infinity;
  let j = 0;
  for (let i = 0; i < x.values.length; i++) {
    const v = x.values[i]!;
    while (j < y.values.length && v - y.values[j]! > d) j++;
    if (j > 0) best = Math.min(best, v - y.values[j - 1]!);
  }
  return best;
}

/** k-th smallest (1-based) of the weighted differences x − y. */
function kthDifference(x: Sparse, y: Sparse, k: number): number {
  let lo = x.values[0]! - y.values[y.values.length - 1]! - 1; // no pair at or below: F(lo) = 0 < k
  let hi = x.values[x.values.length - 1]! - y.values[0]!; // F(hi) = all pairs ≥ k
  for (let iter = 0; iter < 2200; iter++) {
    const next = nextDifference(x, y, lo);
    if (pairsAtMost(x, y, next) >= k) return next;
    lo = next; // F(next) < k: the answer lies above it
    const mid = lo + (hi - lo) / 2;
    if (mid <= lo || mid >= hi) continue;
    if (pairsAtMost(x, y, mid) >= k) hi = mid;
    else lo = mid;
  }
  return hi; // not reached for finite inputs (each round removes at least one distinct difference)
}

// ---------------------------------------------------------------------------------------------
// Proportions

export interface ProportionTestResult {
  pValue: number;
  /** z statistic (z-test only; NaN for Fisher). */
  z: number;
  method: 'z-test' | 'fisher';
}

/**
 * Pooled two-proportion z-test (no continuity correction): H1 p1 > p2 ('greater') or p1 ≠ p2.
 * Equals the chi-square test of the 2×2 table without Yates' correction (z² = χ²).
 */
export function twoProportionZTest(x1: number, n1: number, x2: number, n2: number, alternative: Alternative = 'greater'): ProportionTestResult {
  checkCounts(x1, n1, x2, n2);
  const pooled = (x1 + x2) / (n1 + n2);
  const se = Math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2));
  if (!(se > 0)) return { pValue: 1, z: 0, method: 'z-test' }; // all or none failed on both sides
  const z = (x1 / n1 - x2 / n2) / se;
  const p = alternative === 'greater' ? normalSf(z) : Math.min(1, 2 * normalSf(Math.abs(z)));
  return { pValue: p, z, method: 'z-test' };
}

/**
 * Fisher's exact test of the table [[a, b], [c, d]] (rows: groups, columns: event / no event).
 * 'greater': the odds of the event are larger in the first row — P(X ≥ a) under the
 * hypergeometric null with the margins fixed. 'two-sided': sum of tables no more likely than the
 * observed one (scipy's rule, with its 1e-7 relative tolerance). O(min(a + c, a + b)) time.
 */
export function fisherExact(a: number, b: number, c: number, d: number, alternative: Alternative = 'greater'): ProportionTestResult {
  for (const v of [a, b, c, d]) if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`fisherExact: cell ${v} must be a whole number >= 0`);
  const row1 = a + b;
  const col1 = a + c;
  const n = a + b + c + d;
  const lo = Math.max(0, row1 + col1 - n);
  const hi = Math.min(row1, col1);
  if (lo === hi) return { pValue: 1, z: NaN, method: 'fisher' };
  // Weights relative to the mode (≤ 1, so no overflow): P(k+1)/P(k) = (col1−k)(row1−k) / ((k+1)(n−col1−row1+k+1)).
  const ratio = (k: number) => ((col1 - k) * (row1 - k)) / ((k + 1) * (n - col1 - row1 + k + 1));
  const mode = Math.min(hi, Math.max(lo, Math.floor(((row1 + 1) * (col1 + 1)) / (n + 2))));
  const w = new Float64Array(hi - lo + 1);
  w[mode - lo] = 1;
  for (let k = mode; k < hi; k++) w[k + 1 - lo] = w[k - lo]! * ratio(k);
  for (let k = mode; k > lo; k--) w[k - 1 - lo] = w[k - lo]! / ratio(k - 1);
  let total = 0;
  for (let k = 0; k < w.length; k++) total += w[k]!;
  let tail = 0;
  if (alternative === 'greater') {
    for (let k = a; k <= hi; k++) tail += w[k - lo]!;
  } else {
    const limit = w[a - lo]! * (1 + 1e-7);
    for (let k = 0; k < w.length; k++) if (w[k]! <= limit) tail += w[k]!;
  }
  return { pValue: Math.min(1, tail / total), z: NaN, method: 'fisher' };
}

/**
 * Test whether group 1's event ratio (x1/n1) is larger than group 2's (or different), choosing
 * the method by Cochran's rule: Fisher's exact test when any expected cell count of the 2×2
 * table is below 5, else the two-proportion z-test.
 */
export function compareProportions(x1: number, n1: number, x2: number, n2: number, alternative: Alternative = 'greater'): ProportionTestResult {
  checkCounts(x1, n1, x2, n2);
  const n = n1 + n2;
  const events = x1 + x2;
  const minExpected = (Math.min(n1, n2) * Math.min(events, n - events)) / n;
  return minExpected < 5
    ? fisherExact(x1, n1 - x1, x2, n2 - x2, alternative)
    : twoProportionZTest(x1, n1, x2, n2, alternative);
}

function checkCounts(x1: number, n1: number, x2: number, n2: number): void {
  for (const [x, n] of [[x1, n1], [x2, n2]] as const) {
    if (!Number.isSafeInteger(x) || !Number.isSafeInteger(n) || x < 0 || n <= 0 || x > n) {
      throw new RangeError(`proportion test: need whole counts 0 <= events <= total, total > 0; got ${x} of ${n}`);
    }
  }
}
