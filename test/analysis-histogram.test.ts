import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  LatencyHistogram, binIndex, binLowerBound, binWidth, binMidpoint, HISTOGRAM_BINS, HISTOGRAM_LIMIT_MICROS,
} from '../common/latency-histogram.js';

test('bins tile 0 µs .. 67 s without gaps or overlaps, each at most 1/128 of its value wide', () => {
  assert.equal(binLowerBound(0), 0);
  for (let i = 0; i + 1 < HISTOGRAM_BINS; i++) {
    assert.equal(binLowerBound(i + 1), binLowerBound(i) + binWidth(i), `bin ${i} and ${i + 1} must be adjacent`);
    if (binLowerBound(i) >= 256) assert.ok(binWidth(i) / binLowerBound(i) <= 1 / 128, `bin ${i} too wide`);
  }
  const last = HISTOGRAM_BINS - 1;
  assert.equal(binLowerBound(last) + binWidth(last), HISTOGRAM_LIMIT_MICROS);
  assert.ok(HISTOGRAM_LIMIT_MICROS > 60_000_000, 'covers 60 s');
});

test('every whole µs value lands in the bin that holds it; values below 256 µs are exact', () => {
  fc.assert(fc.property(fc.integer({ min: 0, max: HISTOGRAM_LIMIT_MICROS - 1 }), (v) => {
    const i = binIndex(v);
    assert.ok(binLowerBound(i) <= v && v < binLowerBound(i) + binWidth(i), `${v} not in bin ${i}`);
    assert.ok(Math.abs(binMidpoint(i) - v) <= Math.max(0, v / 256), `midpoint of ${v}'s bin is within 0.4 %`);
  }), { numRuns: 20000 });
  for (let v = 0; v < 256; v++) assert.equal(binMidpoint(binIndex(v)), v);
  assert.equal(binIndex(12.9), 12, 'fractions truncate');
});

test('out-of-range values are clamped, not lost', () => {
  const h = new LatencyHistogram();
  h.record(-5);
  h.record(NaN);
  h.record(120_000_000);
  h.record(Infinity);
  assert.equal(h.count, 4);
  assert.equal(h.counts[0], 2);
  assert.equal(h.counts[HISTOGRAM_BINS - 1], 2);
  assert.equal(h.sum, 2 * (HISTOGRAM_LIMIT_MICROS - 1));
});

test('quantiles are within 1 % of the exact nearest-rank quantile of the recorded values', () => {
  fc.assert(fc.property(
    fc.array(fc.integer({ min: 1, max: 60_000_000 }), { minLength: 1, maxLength: 400 }),
    fc.double({ min: 0, max: 1, noNaN: true }),
    (values, q) => {
      const h = new LatencyHistogram();
      for (const v of values) h.record(v);
      const sorted = [...values].sort((a, b) => a - b);
      const exact = sorted[Math.max(1, Math.ceil(q * values.length)) - 1]!;
      const got = h.quantile(q);
      assert.ok(Math.abs(got - exact) <= exact * 0.01, `q=${q}: ${got} vs exact ${exact}`);
    }), { numRuns: 500 });
  assert.ok(Number.isNaN(new LatencyHistogram().quantile(0.5)));
  assert.throws(() => new LatencyHistogram().quantile(1.5), RangeError);
});

test('quantile on a known distribution: 1..1000 ms uniform', () => {
  const h = new LatencyHistogram();
  for (let ms = 1; ms <= 1000; ms++) h.record(ms * 1000);
  assert.ok(Math.abs(h.quantile(0.5) - 500_000) / 500_000 < 0.01, String(h.quantile(0.5)));
  assert.ok(Math.abs(h.quantile(0.95) - 950_000) / 950_000 < 0.01, String(h.quantile(0.95)));
  assert.ok(Math.abs(h.quantile(0) - 1000) / 1000 < 0.01);
  assert.ok(Math.abs(h.mean() - 500_500) < 1);
});

test('merge adds, subtract gives the window between two cumulative snapshots, reset empties', () => {
  const a = new LatencyHistogram();
  const b = new LatencyHistogram();
  for (let i = 0; i < 100; i++) a.record(1000 + i);
  for (let i = 0; i < 50; i++) b.record(5000 + i * 10);
  const earlier = a.clone();
  a.merge(b);
  assert.equal(a.count, 150);
  assert.equal(a.sum, earlier.sum + b.sum);
  const window = a.clone().subtract(earlier);
  assert.deepEqual(window.toJSON(), b.toJSON());
  assert.throws(() => earlier.clone().subtract(a), /not an earlier snapshot/);
  a.reset();
  assert.equal(a.count, 0);
  assert.equal(a.sum, 0);
  assert.deepEqual(a.toJSON().bins, []);
});

test('JSON round trip is exact and sparse; malformed input is refused with MOLT_ERR_PROTOCOL', () => {
  const h = new LatencyHistogram();
  for (const v of [3, 3, 3, 999, 21_000, 21_000, 62_000, 5_000_000]) h.record(v);
  const j = h.toJSON();
  assert.equal(j.bins.length, 2 * 5, 'one pair per non-empty bin');
  assert.equal(j.bins[0], 3);
  assert.equal(j.bins[1], 3);
  const back = LatencyHistogram.fromJSON(JSON.parse(JSON.stringify(j)));
  assert.deepEqual(back.toJSON(), j);
  assert.deepEqual(back.counts, h.counts);
  const bad = [
    null,
    { ...j, layout: 'hdr-v2' },
    { ...j, bins: [3] },
    { ...j, bins: [5, 1, 4, 1], count: 2 },
    { ...j, bins: [HISTOGRAM_BINS, 1], count: 1 },
    { ...j, bins: [3, 0], count: 0 },
    { ...j, count: 7 },
    { ...j, sum: -1 },
  ];
  for (const input of bad) {
    assert.throws(() => LatencyHistogram.fromJSON(input), (e: any) => e.code === 'MOLT_ERR_PROTOCOL', JSON.stringify(input));
  }
});

test('recordMany equals repeated record', () => {
  const a = new LatencyHistogram();
  const b = new LatencyHistogram();
  for (let i = 0; i < 37; i++) a.record(12_345.6);
  b.recordMany(12_345.6, 37);
  assert.deepEqual(a.toJSON(), b.toJSON());
});
