// Mixed-version risk (Imago, Dumitraş & Narasimhan): while two versions serve one app, a client
// interaction that makes c calls can start on one version and continue on the other. With a share
// s = i/N of unpinned traffic on the new version, the probability that an interaction whose calls
// have new semantics meets the old version on a later call is
//
//     P_inc(s) = s · (1 − s^c)
//
// (the first call reaches the new version, with probability s, and not all c calls do). It is 0 at
// s = 0 and s = 1, and peaks at s* = (1/(c+1))^(1/c): 0.25 at s = 0.5 for c = 1.
//
// scheduleRisk() summarises a GRADUAL `steps` schedule (spec.transition.steps: weights in percent,
// each held for its pause; the last step may have no pause = held until promoted):
//   - max:  the highest P_inc over all steps (including the last, however long it is held);
//   - mean: P_inc averaged over time, each step weighted by its pause; the last step without a
//           pause has no known duration and is left out of the mean (it is in `max` and in
//           `open`). A schedule without any pause has mean = max.
// Steps are instantaneous jumps: no time is spent between two weights.

import { MoltError } from './errors.js';
import type { GradualStep } from './protocol.js';

function check(share: number, c: number): void {
  if (!Number.isInteger(c) || c < 1) throw new MoltError('MOLT_ERR_VALIDATION', `calls per interaction must be a whole number >= 1, got ${c}`);
  if (!(share >= 0 && share <= 1)) throw new MoltError('MOLT_ERR_VALIDATION', `the new version's share must be between 0 and 1, got ${share}`);
}

/** P_inc for share s (0-1) of unpinned traffic on the new version and c calls per interaction. */
export function riskAt(share: number, c: number): number {
  check(share, c);
  return share * (1 - share ** c);
}

/** Where P_inc peaks for c calls per interaction, and how high. */
export function peakRisk(c: number): { share: number; risk: number } {
  check(0, c);
  const share = (1 / (c + 1)) ** (1 / c);
  return { share, risk: riskAt(share, c) };
}

export interface ScheduleRisk {
  /** Time-weighted mean of P_inc over the steps that have a pause. */
  mean: number;
  /** Highest P_inc of any step. */
  max: number;
  /** P_inc of each step, in order. */
  perStep: number[];
  /** P_inc of a last step held until promoted (no pause, weight below 100); absent otherwise. */
  open?: number;
}

/** Mean and maximum P_inc over a GRADUAL step schedule (weights in percent). */
export function scheduleRisk(steps: readonly GradualStep[], c: number): ScheduleRisk {
  if (steps.length === 0) throw new MoltError('MOLT_ERR_VALIDATION', 'a steps schedule needs at least one step');
  const perStep = steps.map((s, i) => {
    if (!(s.weight >= 0 && s.weight <= 100)) throw new MoltError('MOLT_ERR_VALIDATION', `step ${i}: weight must be 0-100, got ${s.weight}`);
    return riskAt(s.weight / 100, c);
  });
  let weighted = 0;
  let time = 0;
  steps.forEach((s, i) => {
    if (s.pauseMs !== undefined && s.pauseMs > 0) {
      weighted += perStep[i]! * s.pauseMs;
      time += s.pauseMs;
    }
  });
  const max = Math.max(...perStep);
  const out: ScheduleRisk = { mean: time > 0 ? weighted / time : max, max, perStep };
  const last = steps[steps.length - 1]!;
  if (last.pauseMs === undefined && last.weight < 100) out.open = perStep[perStep.length - 1]!;
  return out;
}

/** Current, mean and maximum P_inc of one app's rollout, as status shows it. */
export interface RolloutRisk {
  current: number;
  mean: number;
  max: number;
}

/**
 * P_inc per app over its current rollout, fed once per stats line (every second) with the newest
 * routed version and its share of new traffic. A new newest version starts a new rollout. Used by both
 * controller modes (local: the sidecar's stats; Kubernetes: each replica's own sidecar).
 */
export class RolloutRiskTracker {
  readonly #apps = new Map<string, { version: string; current: number; sum: number; n: number; max: number }>();

  /** Record one observation; returns P_inc now. `share` is clamped to 0..1. */
  observe(app: string, newestVersion: string, share: number, callsPerInteraction: number): number {
    const current = riskAt(Math.min(1, Math.max(0, share)), callsPerInteraction);
    let r = this.#apps.get(app);
    if (!r || r.version !== newestVersion) this.#apps.set(app, (r = { version: newestVersion, current: 0, sum: 0, n: 0, max: 0 }));
    r.current = current;
    r.sum += current;
    r.n++;
    if (current > r.max) r.max = current;
    return current;
  }

  /** The rollout's risk when `version` is the app's newest routed version; undefined otherwise. */
  of(app: string, version: string): RolloutRisk | undefined {
    const r = this.#apps.get(app);
    if (!r || r.version !== version || r.n === 0) return undefined;
    return { current: r.current, mean: r.sum / r.n, max: r.max };
  }
}
