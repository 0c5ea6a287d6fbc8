// Test double for RoutingState: fixed primary / fallback / shadow targets per host, records every
// call. Use it only where that is the point — a test that injects a decision (a fallback or shadow
// pairing, per-version failure statuses or timeouts, routes switched mid-test) or asserts each
// recorded success/failure/mismatch with its kind. Otherwise route with the real class:
// test/helpers/real-routing.ts.

import type { Endpoint, FailureMessage, RoutingTable, VersionStats } from '../../common/protocol.js';
import type { FailureKind, RouteDecision, RoutingState, VersionTarget } from '../../sidecar/routing-types.js';

export interface FakeTargetOptions {
  app?: string;
  connectTimeoutMs?: number;
  responseTimeoutMs?: number;
  failureStatuses?: number[];
}

export class FakeTarget implements VersionTarget {
  readonly app: string;
  readonly id: string;
  readonly version: string;
  readonly epoch = 1;
  readonly endpoints: Endpoint[];
  readonly endpointKeys: string[];
  routable = true;
  connectTimeoutMs: number;
  responseTimeoutMs: number;
  readonly failureStatuses: number[] | null;
  #rr = 0;

  constructor(id: string, endpoints: Endpoint[], o: FakeTargetOptions = {}) {
    this.app = o.app ?? 'app';
    this.id = id;
    this.version = id;
    this.endpoints = endpoints;
    this.endpointKeys = endpoints.map((e) => `${e.host}:${e.port}`);
    this.connectTimeoutMs = o.connectTimeoutMs ?? 2000;
    this.responseTimeoutMs = o.responseTimeoutMs ?? 30000;
    this.failureStatuses = o.failureStatuses ?? null;
  }

  nextEndpoint(): number {
    const i = this.#rr;
    this.#rr = (i + 1) % this.endpoints.length;
    return i;
  }

  isFailureStatus(status: number): boolean {
    if (this.failureStatuses !== null) return this.failureStatuses.includes(status);
    return status >= 500 && status <= 599 && status !== 501;
  }
}

export interface FakeRoute {
  primary: FakeTarget;
  fallback?: FakeTarget | null;
  shadow?: FakeTarget | null;
  /** Like CONCURRENT without duplicateUnsafeMethods: shadow only for GET/HEAD/OPTIONS/TRACE. Default true. */
  shadowSafeOnly?: boolean;
  maxDuplicateBodyBytes?: number;
}

export interface RecordedCall {
  id: string;
  status?: number;
  kind?: FailureKind;
  detail?: string;
}

const SAFE = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE']);

export class FakeRouting implements RoutingState {
  revision = 1;
  onFailure: ((msg: FailureMessage) => void) | null = null;
  /** host (lower-case, no port) → route; '*' = default. */
  readonly routes = new Map<string, FakeRoute>();
  readonly routed: { host: string | undefined; cookie: string | undefined; method: string }[] = [];
  readonly successes: RecordedCall[] = [];
  readonly failures: RecordedCall[] = [];
  readonly mismatches: string[] = [];
  readonly marked: string[] = [];

  constructor(def?: FakeRoute) {
    if (def) this.routes.set('*', def);
  }

  apply(table: RoutingTable): void {
    this.revision = table.revision;
  }

  route(host: string | undefined, cookie: string | undefined, method: string): RouteDecision | null {
    this.routed.push({ host, cookie, method });
    let h = host?.toLowerCase();
    if (h !== undefined) {
      const c = h.lastIndexOf(':');
      if (c > 0 && !h.endsWith(']')) h = h.slice(0, c);
    }
    const r = (h !== undefined ? this.routes.get(h) : undefined) ?? this.routes.get('*');
    if (!r) return null;
    const safeOnly = r.shadowSafeOnly ?? true;
    const shadow = r.shadow && (!safeOnly || SAFE.has(method)) ? r.shadow : null;
    return {
      primary: r.primary,
      fallback: r.fallback ?? null,
      shadow,
      maxDuplicateBodyBytes: r.maxDuplicateBodyBytes ?? 1024 * 1024,
      responseHeaders: (t: VersionTarget) => `Set-Cookie: molt-version=${t.id}; Path=/\r\n`,
    };
  }

  recordSuccess(target: VersionTarget, status: number): void {
    this.successes.push({ id: target.id, status });
  }

  recordFailure(target: VersionTarget, kind: FailureKind, detail: string): void {
    this.failures.push({ id: target.id, kind, detail });
  }

  recordMismatch(target: VersionTarget): void {
    this.mismatches.push(target.id);
  }

  markFailed(versionId: string): void {
    this.marked.push(versionId);
  }

  stats(): VersionStats[] {
    return [];
  }

  reset(): void {
    this.routed.length = 0;
    this.successes.length = 0;
    this.failures.length = 0;
    this.mismatches.length = 0;
  }
}
