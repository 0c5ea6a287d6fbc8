// One preflight pair, end to end: the glue between the shadow client, the diff, the noise model
// and the tally. Optional for the integrator; it fixes the order of operations in one place:
//
//   1. classify the pair (compare / error / skip) from the two outcomes;
//   2. for a compared pair: diff old vs new (ignore paths applied);
//   3. with a noise probe (a second answer of the serving version): learn what differs between the
//      serving version's two answers, then drop those paths from the old-vs-new differences;
//   4. record the result in the tally.
//
// judgePair() is pure (answers already in hand: a replay's two results, or a live request's client
// answer plus the copy's result). replayPair() sends the requests (serving, new, and the noise
// probe, concurrently) and then judges.

import { compareResponses, routeKey, type CapturedResponse, type CompareOptions, type Difference, type NoiseModel } from './preflight-diff.js';
import { classifyPair, type PreflightTally } from './preflight-verdict.js';
import type { ShadowClient, ShadowEndpoint, ShadowRequest, ShadowResult, ShadowSendOptions } from './shadow-client.js';

/** An answer with its latency: a ShadowResult, or the client's own answer captured by the proxy. */
export type PairAnswer = ShadowResult | (CapturedResponse & { ok: true; latencyMs: number });

export interface PairJudgement {
  kind: 'compare' | 'error' | 'skip';
  /** Differences that count (after ignore paths and noise); empty when the answers matched. */
  differences: Difference[];
  /** Differences dropped as noise. */
  noise: number;
  /** How the bodies were compared (compare only). */
  body?: 'json' | 'bytes' | 'none' | 'status' | 'truncated';
}

export interface JudgeOptions {
  compare: CompareOptions;
  /** noise: auto. Absent: no noise filtering. */
  noise?: NoiseModel;
}

/** Judge one pair and record it in the tally. `probe`: a second answer of the serving version. */
export function judgePair(
  req: Pick<ShadowRequest, 'method' | 'target'>,
  old: PairAnswer,
  neu: PairAnswer,
  probe: PairAnswer | undefined,
  opts: JudgeOptions,
  tally: PreflightTally,
): PairJudgement {
  const kind = classifyPair(old.ok ? { ok: true, status: old.status } : { ok: false }, neu.ok ? { ok: true, status: neu.status } : { ok: false });
  if (kind === 'skip') {
    tally.recordSkipped();
    return { kind, differences: [], noise: 0 };
  }
  if (kind === 'error') {
    tally.recordError();
    return { kind, differences: [], noise: 0 };
  }
  const a = old as Extract<PairAnswer, { ok: true }>;
  const b = neu as Extract<PairAnswer, { ok: true }>;
  const route = routeKey(req.method, req.target);
  if (opts.noise && probe?.ok) opts.noise.learn(route, compareResponses(a, probe, opts.compare).differences);
  const result = compareResponses(a, b, opts.compare);
  const differences = opts.noise ? opts.noise.filter(route, result.differences) : result.differences;
  tally.recordComparison(differences, { oldMs: a.latencyMs, newMs: b.latencyMs });
  return { kind, differences, noise: result.differences.length - differences.length, body: result.body };
}

export interface ReplayOptions extends JudgeOptions {
  client: ShadowClient;
  serving: ShadowEndpoint;
  /** A second serving instance for the noise probe, when there is one; default `serving` again. */
  servingProbe?: ShadowEndpoint;
  candidate: ShadowEndpoint;
  send?: ShadowSendOptions;
}

/** Send a recorded request to the serving version (twice with noise) and to the new one, then judge. */
export async function replayPair(req: ShadowRequest, opts: ReplayOptions, tally: PreflightTally): Promise<PairJudgement> {
  const [old, neu, probe] = await Promise.all([
    opts.client.send(opts.serving, req, opts.send),
    opts.client.send(opts.candidate, req, opts.send),
    opts.noise ? opts.client.send(opts.servingProbe ?? opts.serving, req, opts.send) : Promise.resolve(undefined),
  ]);
  return judgePair(req, old, neu, probe, opts, tally);
}
