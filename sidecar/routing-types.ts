// The contract between the data path (sidecar/proxy.ts) and the routing brain
// (sidecar/routing.ts: transition modes, failure policy, stats).
//
// The data path parses a request head, asks the RoutingState for a decision, forwards,
// and reports each upstream outcome back. Everything that only changes when the routing
// table changes (cookie strings, version order, endpoint lists) is precomputed by
// RoutingState when a table is applied, never per request.

import type { Endpoint, FailureMessage, RoutingTable, VersionStats } from '../common/protocol.js';
import type { AnalysisCounters } from './analysis-samples.js';

/** A version as the data path sees it: compiled once per routing table. */
export interface VersionTarget {
  readonly app: string;
  readonly id: string;
  readonly version: string;
  readonly epoch: number;
  /** Endpoints in round-robin order. */
  readonly endpoints: readonly Endpoint[];
  /** "host:port" per endpoint, same order: the upstream pool key. */
  readonly endpointKeys: readonly string[];
  /** Round-robin pick: returns an index into endpoints/endpointKeys. */
  nextEndpoint(): number;
  /** False once rolled back (locally or by the table): stop sending new requests here. */
  readonly routable: boolean;
  readonly connectTimeoutMs: number;
  readonly responseTimeoutMs: number;
  /** Does this upstream status count as a failure under the version's policy? */
  isFailureStatus(status: number): boolean;
  /** Canary-analysis samples of this version (the same object across tables); null or absent: not collected. */
  readonly samples?: AnalysisCounters | null;
}

export interface RouteDecision {
  /** Where the request goes. */
  primary: VersionTarget;
  /** Where to retry if the primary fails and the request is safe to retry (idempotent method, or
   *  nothing of it was sent yet). Usually the previous serving version; null if none. */
  fallback: VersionTarget | null;
  /** CONCURRENT only: also send the request here; the client gets the primary's answer unless it
   *  failed, then this one's. Null when not duplicating (other modes, unsafe method not opted in). */
  shadow: VersionTarget | null;
  /** CONCURRENT: body size limit for duplication; above it the request is not duplicated. */
  maxDuplicateBodyBytes: number;
  /**
   * Complete header lines to append to the response head, e.g.
   * "Set-Cookie: molt-version-shop=shop-v2; Max-Age=60; Path=/; HttpOnly; SameSite=Lax\r\n".
   * Precomputed strings; "" when nothing to set. May depend on which version finally answered,
   * hence the function: called once with the version that produced the response.
   */
  responseHeaders(answeredBy: VersionTarget): string;
}

export type FailureKind = 'connect' | 'reset' | 'connect-timeout' | 'response-timeout' | 'status' | 'protocol';

export interface RoutingState {
  /** Replace the table. Local rollbacks for (id, epoch) survive a new table that still lists them as serving. */
  apply(table: RoutingTable): void;
  readonly revision: number;
  /**
   * Route one request. `host` is the Host header value (may include a port, any case) or undefined;
   * `cookie` the raw Cookie header value or undefined. Returns null when there is no table or no
   * app matches (the data path answers 503 with a short reason).
   */
  route(host: string | undefined, cookie: string | undefined, method: string): RouteDecision | null;
  /** Record a successful exchange (status not counted as failure) and its latency. */
  recordSuccess(target: VersionTarget, status: number, latencyMs: number): void;
  /** Record a failed exchange. May trip the failure policy: the version becomes unroutable at once
   *  and onFailure fires exactly once per (id, epoch). */
  recordFailure(target: VersionTarget, kind: FailureKind, detail: string, latencyMs: number): void;
  /** CONCURRENT: the primary and shadow answered with different status codes. */
  recordMismatch(target: VersionTarget): void;
  /** Called once when a version trips its policy (also used to tell other worker processes). */
  onFailure: ((msg: FailureMessage) => void) | null;
  /** Apply a rollback detected elsewhere (another worker process). Idempotent; does not fire onFailure. */
  markFailed(versionId: string, epoch: number): void;
  /** Snapshot for the stats message. */
  stats(): VersionStats[];
}
