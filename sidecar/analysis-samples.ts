// Canary-analysis samples per version (issue 12, docs/analysis.md): what the controller's judge
// compares between the new version and the one it replaces.
//
// One AnalysisCounters per version id, owned by routing.ts's VersionRecord, so it survives new
// routing tables like the other per-version counters (cumulative since the sidecar started; the
// controller subtracts two snapshots to get a window). The hot path (exchange.ts) calls
// `response()` once per response head and `noResponse++` once per attempt that got no status:
// a histogram increment and an array increment, nothing allocated. The JSON form is built only
// by `snapshot()`, once per stats tick.

import { LatencyHistogram, mergeHistogramJSON, mergeSparseCounts } from '../common/latency-histogram.js';
import type { AnalysisSamples } from '../common/protocol.js';

/** The upstream parser accepts status codes 100..599 (framing.ts): one slot per code. */
export const STATUS_SLOTS = 600;

export class AnalysisCounters {
  /** Upstream latency in µs: exchange start (connect included, if a new connection was needed) to the final response head. */
  readonly latency = new LatencyHistogram();
  /** statuses[code] = final response heads with that status. */
  readonly statuses = new Uint32Array(STATUS_SLOTS);
  /** Attempts counted as this version's failure without any status: refused, reset, timeout, protocol error. */
  noResponse = 0;

  /** A final response head (status 101 or >= 200) arrived after `micros` µs. */
  response(status: number, micros: number): void {
    this.latency.record(micros);
    // The parser guarantees 100..599; an out-of-range index would be a silent no-op on a typed array.
    this.statuses[status]++;
  }

  /** The stats line's form: sparse histogram, flat [code, count, …] ascending. */
  snapshot(): AnalysisSamples {
    const statuses: number[] = [];
    let requests = this.noResponse;
    const s = this.statuses;
    for (let code = 0; code < STATUS_SLOTS; code++) {
      const n = s[code]!;
      if (n !== 0) {
        statuses.push(code, n);
        requests += n;
      }
    }
    return { latency: this.latency.toJSON(), statuses, noResponse: this.noResponse, requests };
  }
}

/** Sum of two workers' samples for the same version (a new object; the inputs are not changed). */
export function mergeAnalysisSamples(a: AnalysisSamples, b: AnalysisSamples): AnalysisSamples {
  return {
    latency: mergeHistogramJSON(a.latency, b.latency),
    statuses: mergeSparseCounts(a.statuses, b.statuses),
    noResponse: a.noResponse + b.noResponse,
    requests: a.requests + b.requests,
  };
}
