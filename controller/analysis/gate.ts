// Step gates of canary analysis (issue 12): the controller's side of a rollout under analysis.
//
// Pure state transitions on a small, JSON-serialisable GateState that the controller keeps in its
// RolloutRecord (controller/state-store.ts), so a restarted controller resumes where it stopped:
// same step, same step start, same window, the window's start snapshots, the history of runs.
// No clock and no I/O here: the controller passes `now`, the sidecar's samples and the Prometheus
// results in (controller/controller.ts, #analysis*).
//
// GRADUAL with steps (the controller owns step advancement: RouteVersion.currentStep):
//   step i starts at S (the version first routed, or the previous step passed);
//   gated step (spec.analysis.steps[i]): window [S + initialDelay, S + pause]; the sidecar's
//     cumulative samples of canary and baseline are taken at the first stats line at/after each
//     edge and subtracted; the judge (+ Prometheus) decides:
//       Pass → next step; after the last gate the version is promoted (auto-promotion: a final
//              step without a pause is not waited for);
//       Fail → roll back (reason AnalysisFailed, message = the verdict);
//       Inconclusive → hold the step: the window is extended by its length and judged again (same
//              start snapshot: requests accumulate, so a step short of minRequests can still
//              conclude; the weight is held, so the traffic mix stays the same); once the step
//              has been inconclusive for maxHold, onInconclusive decides: rollback (reason
//              AnalysisInconclusive) | promote (as a Pass) | hold (windows go on until a person
//              promotes or rolls back).
//   ungated step with a pause (only steps of others carry analysis): advance at S + pause.
// CONCURRENT: windows of `interval` back to back from S (initialDelay excluded from the first);
//   Fail rolls back; Pass starts the next window where this one ended; Inconclusive extends the
//   window as above. Analysis never ends CONCURRENT: like today, `molt
//   promote` does (or a rollback). Inconclusive for maxHold with onInconclusive: rollback rolls
//   back; promote and hold keep judging.
// A sidecar restart resets its cumulative counters: a window whose end is below its start is
// started again from the end snapshot (no verdict).

import { LatencyHistogram } from '../../common/latency-histogram.js';
import type { AnalysisSamples, GradualStep } from '../../common/protocol.js';
import type { AnalysisConfig } from './config.js';
import type { WindowData } from './judge.js';
import type { AnalysisResult, Verdict } from './types.js';
import type { AppVersion } from '../appversion.js';

/** How many analysis runs a version's status keeps (the newest). */
export const MAX_RUNS = 20;

/** One judged window, as status shows it. */
export interface AnalysisRun {
  /** GRADUAL: the step whose gate ran (0-based); CONCURRENT: the window's number (0-based). */
  step: number;
  startedAt: string;
  endedAt: string;
  verdict: Verdict;
  message: string;
  metrics: Array<{ metric: string; kind: string; verdict: Verdict; message: string }>;
}

export interface Snapshot {
  /** Unix time (ms) of the stats line. */
  at: number;
  canary: AnalysisSamples;
  baseline: AnalysisSamples;
}

export interface GateWindow {
  /** Unix time (ms): the first stats line at/after it is the start snapshot. */
  startAt: number;
  /** Unix time (ms): the first stats line at/after it ends the window. */
  endAt: number;
  start?: Snapshot;
}

/** Persisted per rollout (RolloutRecord.analysis). */
export interface GateState {
  mode: 'GRADUAL' | 'CONCURRENT';
  /** AppVersion name and version of the baseline (the version serving before this one). */
  baseline: string;
  baselineVersion: string;
  /** GRADUAL: the current step. CONCURRENT: always 0. */
  step: number;
  /** Unix time (ms) the current step (CONCURRENT: the analysis) started. */
  stepStartedAt: number;
  /** Unix time (ms) of the current step's first Inconclusive verdict. */
  holdSince?: number;
  /** The window being measured; absent on an ungated step (advanced by time) or the last step. */
  window?: GateWindow;
  /** Windows judged since the analysis started (numbers CONCURRENT windows). */
  judged: number;
  runs: AnalysisRun[];
}

/** What the gates need to know of the spec. */
export interface GatePlan {
  mode: 'GRADUAL' | 'CONCURRENT';
  steps: GradualStep[];
  /** GRADUAL: the gate after step i (undefined: none). */
  gates: (AnalysisConfig | undefined)[];
  /** CONCURRENT: the analysis. */
  concurrent?: AnalysisConfig;
}

/** The gate of the current step (CONCURRENT: the analysis), or undefined. */
export function gateConfig(plan: GatePlan, s: Pick<GateState, 'step'>): AnalysisConfig | undefined {
  return plan.mode === 'CONCURRENT' ? plan.concurrent : plan.gates[s.step];
}

/** Length of a repeated window (after the first, which excludes initialDelay). */
function windowLength(plan: GatePlan, s: GateState, cfg: AnalysisConfig): number {
  if (plan.mode === 'CONCURRENT') return cfg.intervalMs;
  return Math.max(1, (plan.steps[s.step]?.pauseMs ?? 0) - cfg.initialDelayMs);
}

export function startGate(plan: GatePlan, baseline: { name: string; version: string }, now: number): GateState {
  const s: GateState = { mode: plan.mode, baseline: baseline.name, baselineVersion: baseline.version, step: 0, stepStartedAt: now, judged: 0, runs: [] };
  enterStep(plan, s, 0, now);
  return s;
}

function enterStep(plan: GatePlan, s: GateState, step: number, now: number): void {
  s.step = step;
  s.stepStartedAt = now;
  delete s.holdSince;
  delete s.window;
  const cfg = gateConfig(plan, s);
  if (!cfg) return;
  const end = plan.mode === 'CONCURRENT' ? now + cfg.intervalMs : now + (plan.steps[step]?.pauseMs ?? 0);
  s.window = { startAt: now + cfg.initialDelayMs, endAt: end };
}

export type Advance = { promote: true } | { promote: false; step: number };

/**
 * Moves a GRADUAL rollout past its current step (a Pass, onInconclusive: promote, an ungated
 * step's pause, or `molt promote` without --full). Past the last gate the version is promoted.
 */
export function advance(plan: GatePlan, s: GateState, now: number): Advance {
  if (plan.mode === 'CONCURRENT') return { promote: true };
  const next = s.step + 1;
  const last = plan.steps.length - 1;
  // Past the last step, or onto a final step without a pause and without a gate: nothing left to wait for.
  if (next > last || (next === last && plan.steps[last]!.pauseMs === undefined && plan.gates[last] === undefined)) {
    return { promote: true };
  }
  enterStep(plan, s, next, now);
  return { promote: false, step: next };
}

/** An ungated step whose pause is over (GRADUAL under controller-owned steps). */
export function timedAdvanceDue(plan: GatePlan, s: GateState, now: number): boolean {
  if (plan.mode !== 'GRADUAL' || gateConfig(plan, s)) return false;
  const pause = plan.steps[s.step]?.pauseMs;
  return pause !== undefined && now >= s.stepStartedAt + pause;
}

export type SampleStep =
  | { kind: 'none' }
  /** The start snapshot was taken (persist it). */
  | { kind: 'started' }
  /** The window is over: judge start → end. */
  | { kind: 'judge'; start: Snapshot; end: Snapshot }
  /** The window is over but there is nothing to judge from (no samples from the sidecar). */
  | { kind: 'no-samples'; startAt: number; endAt: number; why: string };

/**
 * One stats line (every ~1 s): take the window's start snapshot at its start, ask for a verdict at
 * its end. `canary`/`baseline` are undefined when the sidecar sent no samples for them.
 */
export function onSamples(s: GateState, at: number, canary: AnalysisSamples | undefined, baseline: AnalysisSamples | undefined): SampleStep {
  const w = s.window;
  if (!w) return { kind: 'none' };
  if (!w.start) {
    if (at >= w.startAt && canary && baseline && at < w.endAt) {
      w.start = { at, canary, baseline };
      return { kind: 'started' };
    }
    if (at >= w.endAt && canary && baseline) {
      // No stats line inside the window (e.g. the controller was down across it): measure a window of
      // the same length from now instead of judging nothing.
      w.endAt = at + (w.endAt - w.startAt);
      w.startAt = at;
      w.start = { at, canary, baseline };
      return { kind: 'started' };
    }
    if (at >= w.endAt) {
      const why = !canary && !baseline ? 'the sidecar sends no analysis samples (is MOLT_ANALYSIS_SAMPLES off?)'
        : !baseline ? `no samples from the baseline ${s.baselineVersion} (is it still serving?)`
          : 'no samples from this version';
      return { kind: 'no-samples', startAt: w.startAt, endAt: at, why };
    }
    return { kind: 'none' };
  }
  if (at < w.endAt) return { kind: 'none' };
  if (!canary || !baseline) {
    return { kind: 'no-samples', startAt: w.start.at, endAt: at, why: !baseline ? `the baseline ${s.baselineVersion} stopped reporting samples` : 'this version stopped reporting samples' };
  }
  return { kind: 'judge', start: w.start, end: { at, canary, baseline } };
}

/** Samples between two cumulative snapshots. Throws RangeError when the counters went back (the sidecar restarted). */
export function windowData(start: AnalysisSamples, end: AnalysisSamples): WindowData {
  const latency = LatencyHistogram.fromJSON(end.latency).subtract(LatencyHistogram.fromJSON(start.latency));
  const statuses: Record<number, number> = {};
  for (let i = 0; i + 1 < end.statuses.length; i += 2) statuses[end.statuses[i]!] = end.statuses[i + 1]!;
  for (let i = 0; i + 1 < start.statuses.length; i += 2) {
    const code = start.statuses[i]!;
    const left = (statuses[code] ?? 0) - start.statuses[i + 1]!;
    if (left < 0) throw new RangeError(`status ${code} went back from ${start.statuses[i + 1]} to ${statuses[code] ?? 0}`);
    if (left === 0) delete statuses[code];
    else statuses[code] = left;
  }
  const requests = end.requests - start.requests;
  const noResponse = end.noResponse - start.noResponse;
  if (requests < 0 || noResponse < 0) throw new RangeError('request counters went back');
  return { latency, requests, statuses, noResponse };
}

/** The counters went back (a sidecar restart): measure again from `end`, same length, no verdict. */
export function restartWindow(plan: GatePlan, s: GateState, end: Snapshot): void {
  const cfg = gateConfig(plan, s);
  if (!cfg) return;
  s.window = { startAt: end.at, endAt: end.at + windowLength(plan, s, cfg), start: end };
}

export type Decision =
  | { kind: 'advance' }
  | { kind: 'rollback'; reason: 'AnalysisFailed' | 'AnalysisInconclusive'; message: string }
  /** Keep measuring (next window already set). */
  | { kind: 'continue' };

/**
 * Records a run's verdict and decides. `end` is the snapshot the next window starts from (absent
 * when there were no samples: the next window then takes a fresh start snapshot).
 */
export function decide(plan: GatePlan, s: GateState, result: AnalysisResult, window: { startAt: number; endAt: number }, end: Snapshot | undefined, now: number): Decision {
  const cfg = gateConfig(plan, s)!;
  s.runs.push({
    step: plan.mode === 'CONCURRENT' ? s.judged : s.step,
    startedAt: new Date(window.startAt).toISOString(),
    endedAt: new Date(window.endAt).toISOString(),
    verdict: result.verdict,
    message: result.message,
    metrics: result.metrics.map((m) => ({ metric: m.metric, kind: m.kind, verdict: m.verdict, message: m.message })),
  });
  if (s.runs.length > MAX_RUNS) s.runs.splice(0, s.runs.length - MAX_RUNS);
  s.judged++;
  const nextWindow = (): void => {
    const from = end?.at ?? now;
    s.window = { startAt: from, endAt: from + windowLength(plan, s, cfg), ...(end ? { start: end } : {}) };
  };
  const extendWindow = (): void => {
    const w = s.window;
    if (!w?.start || !end) return nextWindow(); // nothing measured yet: a fresh window from now
    w.endAt = end.at + windowLength(plan, s, cfg);
  };

  if (result.verdict === 'Fail') return { kind: 'rollback', reason: 'AnalysisFailed', message: result.message };
  if (result.verdict === 'Pass') {
    delete s.holdSince;
    if (plan.mode === 'CONCURRENT') {
      nextWindow();
      return { kind: 'continue' };
    }
    return { kind: 'advance' };
  }
  // Inconclusive.
  s.holdSince ??= window.endAt;
  const held = now - s.holdSince;
  if (held >= cfg.maxHoldMs) {
    if (cfg.onInconclusive === 'rollback') {
      const what = plan.mode === 'CONCURRENT' ? 'analysis' : `step ${s.step + 1}`;
      return { kind: 'rollback', reason: 'AnalysisInconclusive', message: `${what} inconclusive for ${Math.round(held / 1000)}s (maxHold ${Math.round(cfg.maxHoldMs / 1000)}s): ${result.message}` };
    }
    if (cfg.onInconclusive === 'promote' && plan.mode === 'GRADUAL') return { kind: 'advance' };
  }
  extendWindow();
  return { kind: 'continue' };
}

/** The gates of a version under canary analysis, or undefined (no analysis, or nothing to gate). */
export function gatePlanOf(av: AppVersion): GatePlan | undefined {
  const a = av.spec.analysis;
  const t = av.spec.transition;
  if (!a) return undefined;
  if (t.mode === 'CONCURRENT' && a.analysis) return { mode: 'CONCURRENT', steps: [], gates: [], concurrent: a.analysis };
  if (t.mode === 'GRADUAL' && t.steps) {
    // A step at weight 100 sends the baseline no new request: nothing to compare with, so no gate there
    // (with a pause it is waited for, then the version is promoted).
    const gates = a.steps.map((g, i) => ((t.steps![i]?.weight ?? 0) >= 100 ? undefined : g));
    if (gates.some((g) => g !== undefined)) return { mode: 'GRADUAL', steps: t.steps, gates };
  }
  return undefined;
}
