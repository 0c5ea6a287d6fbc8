// Micro-benchmark: LatencyHistogram.record(), the sidecar's per-request cost of collecting latency
// samples for canary analysis (issue 12 budget: <= 2 µs CPU per request, all collection included).
// Run: npx tsc -p tsconfig.json && node dist/bench/histogram.bench.js [iterations]
//
// Prints ns/op for: record() alone over a realistic spread of latencies, record() plus the
// clock read the sidecar would add (process.hrtime.bigint() at the start and at the end), and an
// empty loop over the same inputs (the harness overhead, to subtract).

import { LatencyHistogram } from '../common/latency-histogram.js';

const N = Number(process.argv[2] ?? 20_000_000);
// Latencies spread over 50 µs .. 2 s (log-uniform), precomputed so the loop measures record() only.
const INPUTS = new Float64Array(4096);
let seed = 42;
for (let i = 0; i < INPUTS.length; i++) {
  seed = (seed * 1103515245 + 12345) >>> 0;
  INPUTS[i] = 50 * Math.exp((seed / 2 ** 32) * Math.log(40_000));
}
const MASK = INPUTS.length - 1;

function loop(name: string, body: (v: number) => number): number {
  let sink = 0;
  for (let i = 0; i < 1_000_000; i++) sink += body(INPUTS[i & MASK]!); // warm up (JIT)
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) sink += body(INPUTS[i & MASK]!);
  const ns = Number(process.hrtime.bigint() - t0) / N;
  console.log(`${name.padEnd(40)} ${ns.toFixed(2).padStart(8)} ns/op`);
  if (sink === 0.5) console.log('');
  return ns;
}

const h = new LatencyHistogram();
// Direct loop first (no closure call between the loop and record()), as the proxy would call it.
{
  for (let i = 0; i < 1_000_000; i++) h.record(INPUTS[i & MASK]!);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) h.record(INPUTS[i & MASK]!);
  const ns = Number(process.hrtime.bigint() - t0) / N;
  console.log(`${'record(), direct loop'.padEnd(40)} ${ns.toFixed(2).padStart(8)} ns/op`);
}
const empty = loop('empty loop (harness)', (v) => v);
const rec = loop('record()', (v) => { h.record(v); return 0; });
const withClock = loop('2x hrtime.bigint() + record()', (v) => {
  const t0 = process.hrtime.bigint();
  const t1 = process.hrtime.bigint();
  h.record(Number(t1 - t0) / 1000 + v);
  return 0;
});
console.log(`record() net of harness: ${(rec - empty).toFixed(2)} ns/op; with two clock reads: ${(withClock - empty).toFixed(2)} ns/op (budget 2000 ns)`);
console.log(`recorded ${h.count.toLocaleString('en-US')} values, p50 ${(h.quantile(0.5) / 1000).toFixed(2)} ms, p99 ${(h.quantile(0.99) / 1000).toFixed(1)} ms`);
