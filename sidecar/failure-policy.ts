// Failure policy tracker for one version (one (id, epoch)): consecutive failures and error ratio
// over a sliding window. The window is a ring of one-second buckets (typed arrays allocated once
// per tracker), so recording an outcome allocates nothing. The ratio is only summed on a failure:
// a success can never make it cross the threshold.

import { DEFAULT_FAILURE_POLICY, type FailurePolicyConfig } from '../common/protocol.js';

export interface PolicyTrip {
  /** e.g. "status 503", "3 consecutive failures, last: reset ECONNRESET", "error rate 0.62 over 10s" */
  reason: string;
  /** Unix time (ms) of the first failed request in the streak (or window) that tripped the policy. */
  firstFailureAt: number;
}

/** Fills absent/invalid fields of a (possibly partial) policy from DEFAULT_FAILURE_POLICY. */
export function normalizePolicy(p: Partial<FailurePolicyConfig> | undefined): FailurePolicyConfig {
  const d = DEFAULT_FAILURE_POLICY;
  const num = (v: unknown, def: number): number => (typeof v === 'number' && Number.isFinite(v) ? v : def);
  return {
    consecutiveFailures: num(p?.consecutiveFailures, d.consecutiveFailures),
    errorRateThreshold: num(p?.errorRateThreshold, d.errorRateThreshold),
    windowSeconds: Math.max(1, Math.min(3600, Math.floor(num(p?.windowSeconds, d.windowSeconds)))),
    minRequests: Math.max(1, num(p?.minRequests, d.minRequests)),
    failureStatusCodes: Array.isArray(p?.failureStatusCodes) ? p!.failureStatusCodes : d.failureStatusCodes,
    connectTimeoutMs: num(p?.connectTimeoutMs, d.connectTimeoutMs),
    responseTimeoutMs: num(p?.responseTimeoutMs, d.responseTimeoutMs),
  };
}

export class FailurePolicyTracker {
  readonly config: FailurePolicyConfig;
  #consecutive = 0;
  #streakStart = 0;
  readonly #slots: number;
  readonly #sec: Float64Array; // which second each slot holds
  readonly #req: Uint32Array;
  readonly #err: Uint32Array;
  readonly #firstErr: Float64Array; // Unix time (ms) of the first error in the slot's second

  constructor(config: FailurePolicyConfig) {
    this.config = config;
    this.#slots = config.windowSeconds;
    this.#sec = new Float64Array(this.#slots).fill(-1);
    this.#req = new Uint32Array(this.#slots);
    this.#err = new Uint32Array(this.#slots);
    this.#firstErr = new Float64Array(this.#slots);
  }

  get consecutiveFailures(): number {
    return this.#consecutive;
  }

  #slot(now: number): number {
    const sec = Math.floor(now / 1000);
    const i = sec % this.#slots;
    if (this.#sec[i] !== sec) {
      this.#sec[i] = sec;
      this.#req[i] = 0;
      this.#err[i] = 0;
      this.#firstErr[i] = 0;
    }
    return i;
  }

  recordSuccess(now: number): void {
    this.#consecutive = 0;
    this.#req[this.#slot(now)]++;
  }

  /** Records a failure; returns the trip when this failure makes the policy trip, else null. */
  recordFailure(now: number, what: string): PolicyTrip | null {
    const i = this.#slot(now);
    this.#req[i]++;
    if (this.#err[i]++ === 0) this.#firstErr[i] = now;
    if (this.#consecutive++ === 0) this.#streakStart = now;

    const c = this.config;
    if (c.consecutiveFailures > 0 && this.#consecutive >= c.consecutiveFailures) {
      const reason = c.consecutiveFailures === 1 ? what : `${this.#consecutive} consecutive failures, last: ${what}`;
      return { reason, firstFailureAt: this.#streakStart };
    }
    if (c.errorRateThreshold > 0 && c.errorRateThreshold <= 1) {
      const nowSec = Math.floor(now / 1000);
      const oldest = nowSec - this.#slots;
      let req = 0;
      let err = 0;
      let first = now;
      for (let k = 0; k < this.#slots; k++) {
        if (this.#sec[k] > oldest) {
          req += this.#req[k];
          err += this.#err[k];
          if (this.#err[k] > 0 && this.#firstErr[k] < first) first = this.#firstErr[k];
        }
      }
      if (req >= c.minRequests && err / req >= c.errorRateThreshold) {
        return { reason: `error rate ${(err / req).toFixed(2)} over ${this.#slots}s`, firstFailureAt: first };
      }
    }
    return null;
  }
}
