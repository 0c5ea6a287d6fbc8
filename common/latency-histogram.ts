// A fine, bounded, log-linear latency histogram (HdrHistogram's layout, one fixed configuration).
//
// Values are whole microseconds. 0..255 µs have a bin each (exact); above that, every power of two
// [2^e, 2^(e+1)) is cut into 128 equal bins, so a bin is at most 1/128 (0.78 %) of its lower bound
// wide. The top power is [2^25, 2^26) µs, i.e. up to 67.1 s; larger values (and +Infinity) land in
// the last bin, negative values and NaN in bin 0. 2560 bins in one preallocated Uint32Array (10 KiB).
//
// `record()` is the sidecar's per-request cost: a compare, Math.clz32, a shift, one array
// increment. No allocation, no branches on rare paths beyond clamping.
//
// Windows: the sidecar can keep one histogram per version and either reset it per window, or keep
// it cumulative (Prometheus-style) and let the reader subtract two snapshots (`subtract`).
//
// Serialised form (`toJSON`/`fromJSON`, for the NDJSON stats line): only non-empty bins, as a flat
// list of [index, count] pairs, plus the layout so a reader can refuse a layout it doesn't know:
//   { "layout": "log-linear-7", "count": 1234, "sum": 5678901, "bins": [12, 3, 300, 1200, 301, 31] }

import { MoltError } from './errors.js';

/** 2^SUB_BITS bins per power of two (upper half of HdrHistogram's sub-bucket range). */
const SUB_BITS = 7;
const SUB_COUNT = 1 << SUB_BITS; // 128
/** Values below LINEAR_LIMIT get a bin each. */
const LINEAR_LIMIT = SUB_COUNT * 2; // 256
/** Exclusive upper bound of the top bin, in µs (2^26 µs ≈ 67.1 s). */
export const HISTOGRAM_LIMIT_MICROS = 1 << 26;
/** Number of bins. */
export const HISTOGRAM_BINS = (26 - SUB_BITS + 1) * SUB_COUNT; // 2560: 256 exact + 18 powers × 128
export const HISTOGRAM_LAYOUT = 'log-linear-7';

export interface HistogramJSON {
  layout: typeof HISTOGRAM_LAYOUT;
  /** Number of recorded values. */
  count: number;
  /** Sum of recorded values in µs (after clamping), for the mean. */
  sum: number;
  /** Flat [index, count, index, count, …], indices strictly increasing, counts > 0. */
  bins: number[];
}

/** Bin index of a value in µs (clamped to the range). */
export function binIndex(micros: number): number {
  // `!(micros > 0)` also catches NaN.
  if (!(micros > 0)) return 0;
  if (micros >= HISTOGRAM_LIMIT_MICROS) return HISTOGRAM_BINS - 1;
  const v = micros >>> 0; // whole µs (truncates)
  if (v < LINEAR_LIMIT) return v;
  const e = 31 - Math.clz32(v); // 8..25
  return ((e - SUB_BITS) << SUB_BITS) + (v >>> (e - SUB_BITS));
}

/** Smallest whole µs value of a bin. */
export function binLowerBound(index: number): number {
  if (index < LINEAR_LIMIT) return index;
  const shift = (index >>> SUB_BITS) - 1; // e - 7
  return ((index & (SUB_COUNT - 1)) + SUB_COUNT) * 2 ** shift;
}

/** Number of whole µs values in a bin (1 below 256 µs, then 2, 4, … 2^18). */
export function binWidth(index: number): number {
  if (index < LINEAR_LIMIT) return 1;
  return 2 ** ((index >>> SUB_BITS) - 1);
}

/**
 * The value statistics use for a bin: the middle of the whole-µs values it holds (exact below
 * 256 µs; a multiple of 0.5 µs above).
 */
export function binMidpoint(index: number): number {
  return binLowerBound(index) + (binWidth(index) - 1) / 2;
}

export class LatencyHistogram {
  /** counts[i] = values recorded in bin i. Read-only for callers (exposed for the statistics). */
  readonly counts = new Uint32Array(HISTOGRAM_BINS);
  #count = 0;
  #sum = 0;

  /** Record one latency in microseconds (fractions are truncated). */
  record(micros: number): void {
    let i: number;
    if (!(micros > 0)) {
      i = 0;
      micros = 0;
    } else if (micros >= HISTOGRAM_LIMIT_MICROS) {
      i = HISTOGRAM_BINS - 1;
      micros = HISTOGRAM_LIMIT_MICROS - 1;
    } else {
      const v = micros >>> 0;
      if (v < LINEAR_LIMIT) i = v;
      else {
        const e = 31 - Math.clz32(v);
        i = ((e - SUB_BITS) << SUB_BITS) + (v >>> (e - SUB_BITS));
      }
      micros = v;
    }
    this.counts[i]++;
    this.#count++;
    this.#sum += micros;
  }

  /** Record `n` equal values at once. */
  recordMany(micros: number, n: number): void {
    if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`recordMany: n must be a whole number >= 0, got ${n}`);
    const i = binIndex(micros);
    const clamped = !(micros > 0) ? 0 : micros >= HISTOGRAM_LIMIT_MICROS ? HISTOGRAM_LIMIT_MICROS - 1 : micros >>> 0;
    this.counts[i] += n;
    this.#count += n;
    this.#sum += clamped * n;
  }

  get count(): number {
    return this.#count;
  }

  /** Sum of recorded values (µs, whole). */
  get sum(): number {
    return this.#sum;
  }

  /** Mean in µs (NaN when empty). */
  mean(): number {
    return this.#count === 0 ? NaN : this.#sum / this.#count;
  }

  reset(): void {
    this.counts.fill(0);
    this.#count = 0;
    this.#sum = 0;
  }

  /** Adds another histogram's counts to this one. */
  merge(other: LatencyHistogram): this {
    const a = this.counts;
    const b = other.counts;
    for (let i = 0; i < HISTOGRAM_BINS; i++) if (b[i] !== 0) a[i] += b[i]!;
    this.#count += other.#count;
    this.#sum += other.#sum;
    return this;
  }

  /**
   * Removes an earlier snapshot of the same cumulative histogram (window = later − earlier).
   * Throws if `earlier` has more in any bin (it is not an earlier state of this histogram).
   */
  subtract(earlier: LatencyHistogram): this {
    const a = this.counts;
    const b = earlier.counts;
    for (let i = 0; i < HISTOGRAM_BINS; i++) {
      if (b[i]! > a[i]!) throw new RangeError(`subtract: bin ${i} has ${a[i]} < ${b[i]}; not an earlier snapshot of this histogram`);
    }
    for (let i = 0; i < HISTOGRAM_BINS; i++) if (b[i] !== 0) a[i] -= b[i]!;
    this.#count -= earlier.#count;
    this.#sum -= earlier.#sum;
    return this;
  }

  clone(): LatencyHistogram {
    const h = new LatencyHistogram();
    h.counts.set(this.counts);
    h.#count = this.#count;
    h.#sum = this.#sum;
    return h;
  }

  /**
   * Value at quantile q (0..1) in µs, nearest-rank: the midpoint of the bin holding the
   * ceil(q·n)-th smallest value (the smallest for q = 0). NaN when empty.
   */
  quantile(q: number): number {
    if (!(q >= 0 && q <= 1)) throw new RangeError(`quantile: q must be within 0..1, got ${q}`);
    if (this.#count === 0) return NaN;
    const rank = Math.max(1, Math.ceil(q * this.#count));
    let seen = 0;
    const c = this.counts;
    for (let i = 0; i < HISTOGRAM_BINS; i++) {
      seen += c[i]!;
      if (seen >= rank) return binMidpoint(i);
    }
    return binMidpoint(HISTOGRAM_BINS - 1); // unreachable while counts and #count agree
  }

  toJSON(): HistogramJSON {
    const bins: number[] = [];
    const c = this.counts;
    for (let i = 0; i < HISTOGRAM_BINS; i++) if (c[i] !== 0) bins.push(i, c[i]!);
    return { layout: HISTOGRAM_LAYOUT, count: this.#count, sum: this.#sum, bins };
  }

  /** Reads `toJSON()` output back; throws MoltError MOLT_ERR_PROTOCOL on anything else. */
  static fromJSON(input: unknown): LatencyHistogram {
    const bad = (why: string) => new MoltError('MOLT_ERR_PROTOCOL', `latency histogram: ${why}`);
    if (typeof input !== 'object' || input === null) throw bad('expected an object');
    const j = input as Partial<HistogramJSON>;
    if (j.layout !== HISTOGRAM_LAYOUT) throw bad(`unknown layout ${JSON.stringify(j.layout)} (this build reads "${HISTOGRAM_LAYOUT}")`);
    if (!Array.isArray(j.bins) || j.bins.length % 2 !== 0) throw bad('bins must be a flat list of [index, count] pairs');
    if (typeof j.sum !== 'number' || !Number.isFinite(j.sum) || j.sum < 0) throw bad('sum must be a finite number >= 0');
    const h = new LatencyHistogram();
    let total = 0;
    let last = -1;
    for (let k = 0; k < j.bins.length; k += 2) {
      const i = j.bins[k];
      const n = j.bins[k + 1];
      if (!Number.isInteger(i) || (i as number) <= last || (i as number) >= HISTOGRAM_BINS) {
        throw bad(`bin index ${JSON.stringify(i)} at position ${k} must be a whole number in ${last + 1}..${HISTOGRAM_BINS - 1}`);
      }
      if (!Number.isInteger(n) || (n as number) <= 0 || (n as number) > 0xffffffff) throw bad(`count ${JSON.stringify(n)} of bin ${i} must be a whole number 1..2^32-1`);
      h.counts[i as number] = n as number;
      total += n as number;
      last = i as number;
    }
    if (j.count !== total) throw bad(`count ${JSON.stringify(j.count)} does not match the sum of the bins (${total})`);
    h.#count = total;
    h.#sum = j.sum;
    return h;
  }
}

/**
 * Sum of two serialised histograms, sparse to sparse (e.g. several sidecar workers' samples for one
 * version): equals `fromJSON(a).merge(fromJSON(b)).toJSON()` without the two 10 KiB arrays. Inputs
 * are trusted (this process's own or its workers' `toJSON()` output); their layouts must match.
 */
export function mergeHistogramJSON(a: HistogramJSON, b: HistogramJSON): HistogramJSON {
  if (a.layout !== HISTOGRAM_LAYOUT || b.layout !== HISTOGRAM_LAYOUT) {
    throw new MoltError('MOLT_ERR_PROTOCOL', `latency histogram: cannot merge layouts ${JSON.stringify(a.layout)} and ${JSON.stringify(b.layout)} (this build reads "${HISTOGRAM_LAYOUT}")`);
  }
  return { layout: HISTOGRAM_LAYOUT, count: a.count + b.count, sum: a.sum + b.sum, bins: mergeSparseCounts(a.bins, b.bins) };
}

/** Sum of two flat sparse lists [key, count, key, count, …] with keys strictly ascending (histogram
 *  bins, status codes), as a new list of the same form. */
export function mergeSparseCounts(a: readonly number[], b: readonly number[]): number[] {
  const out: number[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    if (j >= b.length || (i < a.length && a[i]! < b[j]!)) {
      out.push(a[i]!, a[i + 1]!);
      i += 2;
    } else if (i >= a.length || b[j]! < a[i]!) {
      out.push(b[j]!, b[j + 1]!);
      j += 2;
    } else {
      out.push(a[i]!, a[i + 1]! + b[j + 1]!);
      i += 2;
      j += 2;
    }
  }
  return out;
}
