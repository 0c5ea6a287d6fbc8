// The step gates' state machine (controller/analysis/gate.ts): windows from stats lines, verdicts to
// decisions, maxHold/onInconclusive, sidecar restarts, and a controller restart in the middle of a window
// (the state goes through JSON as RolloutRecord.analysis does in status.json).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LatencyHistogram } from '../common/latency-histogram.js';
import type { AnalysisSamples } from '../common/protocol.js';
import { ANALYSIS_DEFAULTS, type AnalysisConfig } from '../controller/analysis/config.js';
import { advance, decide, MAX_RUNS, onSamples, startGate, timedAdvanceDue, windowData, type GatePlan, type GateState } from '../controller/analysis/gate.js';
import { judge } from '../controller/analysis/judge.js';
import { combine, type AnalysisResult, type Verdict } from '../controller/analysis/types.js';

const cfg = (o: Partial<AnalysisConfig> = {}): AnalysisConfig => ({
  intervalMs: 10_000, initialDelayMs: 1_000, minRequests: 20, maxHoldMs: 5_000, onInconclusive: 'rollback',
  latency: ANALYSIS_DEFAULTS.latency, errors: { ...ANALYSIS_DEFAULTS.errors }, prometheus: null, ...o,
});

const steps = [{ weight: 10, pauseMs: 4_000 }, { weight: 50, pauseMs: 4_000 }, { weight: 100 }];
const plan = (g: Partial<AnalysisConfig> = {}): GatePlan => ({ mode: 'GRADUAL', steps, gates: [cfg(g), cfg(g), undefined] });
const result = (verdict: Verdict): AnalysisResult => combine([{ metric: 'latency', kind: 'latency', verdict, message: `latency: ${verdict}` }]);

/** Cumulative samples: `n` requests of `micros` each, `errors` of them 500. */
class Counter {
  h = new LatencyHistogram();
  ok = 0;
  bad = 0;
  add(n: number, micros: number, errors = 0): this {
    for (let i = 0; i < n; i++) this.h.record(micros + (i % 7));
    this.ok += n - errors;
    this.bad += errors;
    return this;
  }
  snap(): AnalysisSamples {
    const statuses = [...(this.ok ? [200, this.ok] : []), ...(this.bad ? [500, this.bad] : [])];
    return { latency: this.h.toJSON(), statuses, noResponse: 0, requests: this.ok + this.bad };
  }
}

test('a gated step: start snapshot after initialDelay, verdict at the end of the pause; Pass → next step, last gate → promoted', () => {
  const p = plan();
  const s = startGate(p, { name: 'shop-v1', version: '1.0.0' }, 0);
  assert.deepEqual(s.window, { startAt: 1_000, endAt: 4_000 });
  const c = new Counter(); const b = new Counter();
  assert.equal(onSamples(s, 500, c.snap(), b.snap()).kind, 'none', 'warm-up is not measured');
  c.add(5, 9_000); b.add(5, 1_000); // warm-up traffic: excluded
  assert.equal(onSamples(s, 1_100, c.snap(), b.snap()).kind, 'started');
  c.add(100, 1_000); b.add(300, 1_000);
  const step = onSamples(s, 4_050, c.snap(), b.snap());
  assert.equal(step.kind, 'judge');
  if (step.kind !== 'judge') return;
  const w = windowData(step.start.canary, step.end.canary);
  assert.equal(w.requests, 100, 'only the window\'s requests');
  assert.equal(judge(windowData(step.start.baseline, step.end.baseline), w, cfg()).verdict, 'Pass');
  assert.deepEqual(decide(p, s, result('Pass'), { startAt: 1_100, endAt: 4_050 }, step.end, 4_060), { kind: 'advance' });
  assert.deepEqual(advance(p, s, 4_060), { promote: false, step: 1 });
  assert.deepEqual(s.window, { startAt: 5_060, endAt: 8_060 });
  assert.deepEqual(advance(p, s, 9_000), { promote: true }, 'past the last gate: the final step (no pause) is not waited for');
  assert.equal(s.runs.length, 1);
  assert.equal(s.runs[0]!.step, 0);
});

test('Fail rolls back with the verdict; Inconclusive extends the window until maxHold, then onInconclusive', () => {
  const p = plan();
  const s = startGate(p, { name: 'b', version: '1' }, 0);
  assert.deepEqual(decide(p, s, result('Fail'), { startAt: 1_000, endAt: 4_000 }, undefined, 4_000), { kind: 'rollback', reason: 'AnalysisFailed', message: 'latency: Fail' });

  for (const [onInconclusive, expected] of [['rollback', 'rollback'], ['promote', 'advance'], ['hold', 'continue']] as const) {
    const q = plan({ onInconclusive });
    const g = startGate(q, { name: 'b', version: '1' }, 0);
    const start = { at: 1_000, canary: new Counter().snap(), baseline: new Counter().snap() };
    g.window!.start = start;
    const end = { ...start, at: 4_000 };
    assert.equal(decide(q, g, result('Inconclusive'), { startAt: 1_000, endAt: 4_000 }, end, 4_000).kind, 'continue', 'held at first');
    assert.equal(g.holdSince, 4_000);
    assert.deepEqual(g.window, { startAt: 4_000 - 3_000, endAt: 7_000, start }, 'same start (requests accumulate), end pushed by one window length');
    const d = decide(q, g, result('Inconclusive'), { startAt: 1_000, endAt: 9_000 }, { ...start, at: 9_000 }, 9_000);
    assert.equal(d.kind, expected, onInconclusive);
    if (d.kind === 'rollback') {
      assert.equal(d.reason, 'AnalysisInconclusive');
      assert.match(d.message, /^step 1 inconclusive for 5s \(maxHold 5s\): latency: Inconclusive/);
    }
  }
});

test('the history keeps the last 20 runs; CONCURRENT numbers its windows and never promotes by itself', () => {
  const p: GatePlan = { mode: 'CONCURRENT', steps: [], gates: [], concurrent: cfg({ onInconclusive: 'promote', maxHoldMs: 0 }) };
  const s = startGate(p, { name: 'b', version: '1' }, 0);
  assert.deepEqual(s.window, { startAt: 1_000, endAt: 10_000 });
  for (let i = 0; i < 25; i++) {
    const d = decide(p, s, result(i % 2 ? 'Pass' : 'Inconclusive'), { startAt: i * 10_000, endAt: (i + 1) * 10_000 }, undefined, (i + 1) * 10_000);
    assert.equal(d.kind, 'continue', `window ${i}`);
  }
  assert.equal(s.runs.length, MAX_RUNS);
  assert.deepEqual([s.runs[0]!.step, s.runs.at(-1)!.step], [5, 24]);
  assert.equal(decide(p, s, result('Fail'), { startAt: 0, endAt: 1 }, undefined, 1).kind, 'rollback');
});

test('a sidecar restart (counters back to zero) is detected, not judged as a negative window', () => {
  const before = new Counter().add(50, 1_000).snap();
  const after = new Counter().add(10, 1_000).snap();
  assert.throws(() => windowData(before, after), RangeError);
});

test('no samples from the sidecar at the window end is Inconclusive input, never a Pass', () => {
  const s = startGate(plan(), { name: 'b', version: '1.0.0' }, 0);
  const step = onSamples(s, 4_000, undefined, undefined);
  assert.equal(step.kind, 'no-samples');
  if (step.kind === 'no-samples') assert.match(step.why, /MOLT_ANALYSIS_SAMPLES/);
  const s2 = startGate(plan(), { name: 'b', version: '1.0.0' }, 0);
  s2.window!.start = { at: 1_000, canary: new Counter().snap(), baseline: new Counter().snap() };
  const gone = onSamples(s2, 4_000, new Counter().snap(), undefined);
  assert.equal(gone.kind, 'no-samples');
  if (gone.kind === 'no-samples') assert.match(gone.why, /baseline 1\.0\.0/);
});

test('a controller restart mid-window resumes the same step and window from the persisted state', () => {
  const p = plan();
  const s = startGate(p, { name: 'shop-v1', version: '1.0.0' }, 0);
  const c = new Counter().add(10, 2_000); const b = new Counter().add(10, 2_000);
  onSamples(s, 1_200, c.snap(), b.snap());
  // status.json round trip (RolloutRecord.analysis).
  const restored = JSON.parse(JSON.stringify(s)) as GateState;
  c.add(60, 2_000); b.add(60, 2_000);
  const step = onSamples(restored, 4_100, c.snap(), b.snap());
  assert.equal(step.kind, 'judge');
  if (step.kind === 'judge') assert.equal(windowData(step.start.canary, step.end.canary).requests, 60, 'the start snapshot survived');
  // A controller down across a whole window: a window of the same length is measured from the first line.
  const late = startGate(p, { name: 'shop-v1', version: '1.0.0' }, 0);
  assert.equal(onSamples(late, 60_000, c.snap(), b.snap()).kind, 'started');
  assert.deepEqual([late.window!.startAt, late.window!.endAt], [60_000, 63_000]);
});

test('a step without analysis (only others carry it) advances on the controller\'s clock', () => {
  const p: GatePlan = { mode: 'GRADUAL', steps, gates: [undefined, cfg(), undefined] };
  const s = startGate(p, { name: 'b', version: '1' }, 0);
  assert.equal(s.window, undefined);
  assert.equal(timedAdvanceDue(p, s, 3_999), false);
  assert.equal(timedAdvanceDue(p, s, 4_000), true);
  assert.deepEqual(advance(p, s, 4_000), { promote: false, step: 1 });
  assert.deepEqual(s.window, { startAt: 5_000, endAt: 8_000 });
});

test('no gate at weight 100 (the baseline gets no new request there): that step is waited for, then promoted', async () => {
  const { parseAppVersionText } = await import('../controller/load.js');
  const { gatePlanOf } = await import('../controller/analysis/gate.js');
  const r = parseAppVersionText(`apiVersion: molt.dev/v1alpha1
kind: AppVersion
metadata: { name: shop-v2 }
spec:
  app: shop
  version: "2.0.0"
  servers: [{host: 127.0.0.1, port: 8081}]
  transition:
    mode: GRADUAL
    steps: [{ weight: 10, pause: 4s }, { weight: 100, pause: 4s }]
    analysis: { initialDelay: 1s }
`, 'f.yaml');
  assert.deepEqual(r.errors.map(String), []);
  const p = gatePlanOf(r.resources[0]!)!;
  assert.equal(p.gates[0]!.initialDelayMs, 1_000);
  assert.equal(p.gates[1], undefined);
  const s = startGate(p, { name: 'shop-v1', version: '1.0.0' }, 0);
  assert.deepEqual(advance(p, s, 4_000), { promote: false, step: 1 });
  assert.equal(timedAdvanceDue(p, s, 8_000), true);
  assert.deepEqual(advance(p, s, 8_000), { promote: true });
});
