// Control protocol between the controller (server, Unix socket) and the sidecar (client).
//
// Framing: newline-delimited JSON, one message per line, UTF-8. A line longer than
// MAX_LINE_BYTES is a protocol error and the connection is closed. Every message has a
// `type`. Unknown types are ignored (forward compatibility); the first message in each
// direction is `hello`, carrying the protocol version. A peer that does not share a
// protocol version closes the connection after logging the mismatch.
//
// Controller -> sidecar: hello, routes, traffic-request
// Sidecar -> controller: hello, ack, failure, stats, traffic
//
// This file is shared by both sides: it is the contract. Keep it free of runtime imports.

import type { HistogramJSON } from './latency-histogram.js';

export const PROTOCOL_VERSION = 1;
export const MAX_LINE_BYTES = 16 * 1024 * 1024;

export type TransitionMode = 'INSTANT' | 'SESSION' | 'GRADUAL' | 'CONCURRENT';

export interface Endpoint {
  host: string;
  port: number;
}

/** One step of a time-based GRADUAL schedule: send `weight`% to the new version, hold for pauseMs. */
export interface GradualStep {
  weight: number;
  /** Milliseconds to hold this weight. Absent on the last step = hold until promoted. */
  pauseMs?: number;
}

export interface TransitionConfig {
  mode: TransitionMode;
  /** SESSION: idle seconds after which a client's version cookie expires (Max-Age). Default 3600. */
  sessionTimeoutSeconds: number;
  /** GRADUAL (thesis semantics): threshold rises by this many percentage points per routed request. */
  percentagePerRequest?: number;
  /** GRADUAL (time-based): step schedule, measured from RouteVersion.servingSince. */
  steps?: GradualStep[];
  /** CONCURRENT: duplicate POST/PUT/PATCH/DELETE too. Default false. */
  duplicateUnsafeMethods: boolean;
  /** CONCURRENT: request bodies up to this size are buffered and duplicated; larger are not. Default 1 MiB. */
  maxDuplicateBodyBytes: number;
}

export interface FailurePolicyConfig {
  /** Roll back after this many consecutive failed requests. Default 1 (the first failure). */
  consecutiveFailures: number;
  /** Roll back when the error ratio over `windowSeconds` reaches this (0..1), once minRequests were seen. */
  errorRateThreshold: number;
  windowSeconds: number;
  minRequests: number;
  /** Which upstream status codes count as failures. Default 500-599 except 501. */
  failureStatusCodes: number[];
  connectTimeoutMs: number;
  responseTimeoutMs: number;
}

/** A version under preflight (Testing) is not in the table at all: nothing can route to it. */
export type VersionState = 'serving' | 'rolledBack' | 'draining';

export interface RouteVersion {
  /** AppVersion metadata.name: unique across all apps. */
  id: string;
  /** spec.version, e.g. "1.10.2". Versions are ordered by compareVersions (semver-aware). */
  version: string;
  /** Admission epoch (a counter, not a time): bumped by the controller when the version is admitted again
   *  (a spec change, or `molt promote` of a rolled-back version; Kubernetes mode: metadata.generation). A
   *  failure is remembered by the sidecar per (id, epoch), so an older report never blocks a re-admitted
   *  version. "Epoch" means only this in molt; wall-clock times are "Unix time (ms)". */
  epoch: number;
  state: VersionState;
  transition: TransitionConfig;
  failurePolicy: FailurePolicyConfig;
  endpoints: Endpoint[];
  /** Unix time (ms) when this version first received traffic; the GRADUAL step schedule counts from here. */
  servingSince: number;
  /** Set by `molt promote`: the transition is complete, send everything here (INSTANT semantics). */
  promoted: boolean;
  /** GRADUAL with `steps` under canary analysis: the controller owns step advancement. When set, the
   *  sidecar holds `transition.steps[currentStep].weight` (clamped to the last step) until a new table
   *  changes it and ignores the steps' pauses; absent = the sidecar advances on its own clock from
   *  `servingSince` (today's behaviour). */
  currentStep?: number;
}

export interface RouteApp {
  name: string;
  /** Host header values (lower-case, no port) that select this app. */
  hosts: string[];
  /** Takes every request whose Host matches no app. At most one app is default. */
  default: boolean;
  /** Cookie carrying the version id (SESSION, GRADUAL, CONCURRENT stickiness). */
  versionCookie: string;
  /** Cookie carrying the client's GRADUAL bucket 0-99. */
  bucketCookie: string;
  /** Newest first. */
  versions: RouteVersion[];
}

export interface RoutingTable {
  revision: number;
  apps: RouteApp[];
}

// ---- messages ----

export interface HelloMessage {
  type: 'hello';
  protocol: number;
  role: 'controller' | 'sidecar';
  pid: number;
  /** sidecar only: the revision it is serving (0 = none). */
  revision?: number;
}

export interface RoutesMessage {
  type: 'routes';
  table: RoutingTable;
}

export interface AckMessage {
  type: 'ack';
  revision: number;
}

export interface FailureMessage {
  type: 'failure';
  app: string;
  versionId: string;
  version: string;
  /** The admission epoch the failure was seen in (RouteVersion.epoch). */
  epoch: number;
  /** e.g. "connect ECONNREFUSED", "status 503", "response timeout", "error rate 0.62 over 10s" */
  reason: string;
  /** Unix time (ms) of the first failed request in the streak that tripped the policy. */
  firstFailureAt: number;
  /** Unix time (ms) when the sidecar stopped routing to the version. */
  rolledBackAt: number;
}

export interface VersionStats {
  app: string;
  versionId: string;
  version: string;
  /** Counters are totals since the sidecar process started (Prometheus-style, monotonic). */
  requests: number;
  errors: number;
  /** CONCURRENT: responses whose status differed between the new and the previous version. */
  mismatches: number;
  /** Latency histogram: cumulative counts per bucket upper bound (seconds), plus sum. */
  latencyBuckets: number[];
  latencyCounts: number[];
  latencySum: number;
  /** Current share of new traffic this version receives, 0..1, as the sidecar computes it. */
  trafficShare: number;
  /** Canary-analysis samples (absent when the sidecar runs with MOLT_ANALYSIS_SAMPLES=off). */
  analysis?: AnalysisSamples;
}

/** Per-version measurements for canary analysis, cumulative since the sidecar started (summed over
 *  workers). The controller takes a snapshot at a window's start (after initialDelay) and subtracts it
 *  from the one at the window's end: no window state in the sidecar. Counted for every request the
 *  version answered or failed, client requests and CONCURRENT duplicate requests alike. */
export interface AnalysisSamples {
  /** Upstream latency (request sent → response head received), µs, sparse log-linear histogram. */
  latency: HistogramJSON;
  /** Flat [statusCode, count, statusCode, count, …], codes ascending, counts > 0. */
  statuses: number[];
  /** Requests that got no upstream status: connect failure, reset, timeout. */
  noResponse: number;
  /** All requests counted here: sum of statuses' counts + noResponse. */
  requests: number;
}

export interface StatsMessage {
  type: 'stats';
  at: number;
  revision: number;
  versions: VersionStats[];
}

/** Ask for recorded exchanges of an app (preflight replay/shadow, `molt traffic export`). */
export interface TrafficRequestMessage {
  type: 'traffic-request';
  /** Echoed in the answer. */
  id: number;
  app: string;
  /** Only exchanges newer than these sequence numbers, per recorder ("0" single process, "w<N>" worker N). */
  after?: Record<string, number>;
  /** At most this many exchanges per recorder, the newest. */
  limit: number;
}

export type WireHeaders = Array<[name: string, value: string]>;

/** One recorded exchange as it travels over the control socket (bodies base64). Not redacted: the
 *  socket is local and owned by the controller, which redacts before anything leaves it. */
export interface WireExchange {
  /** Recorder that kept it and its sequence number there. */
  recorder: string;
  seq: number;
  startedAt: number;
  durationMicros: number;
  request: { method: string; target: string; httpVersion: string; headers: WireHeaders; body: string; bodyTruncated: boolean };
  response: { status: number; statusText: string; httpVersion: string; headers: WireHeaders; body: string; bodyTruncated: boolean };
}

export interface TrafficMessage {
  type: 'traffic';
  id: number;
  app: string;
  exchanges: WireExchange[];
  /** Highest sequence number per recorder after this answer (pass back as `after`). */
  cursor: Record<string, number>;
  /** Totals since start, summed over recorders. */
  recorded: number;
  skipped: number;
}

export type ControllerMessage = HelloMessage | RoutesMessage | TrafficRequestMessage;
export type SidecarMessage = HelloMessage | AckMessage | FailureMessage | StatsMessage | TrafficMessage;

export const LATENCY_BUCKETS_SECONDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export const DEFAULT_TRANSITION: TransitionConfig = {
  mode: 'INSTANT',
  sessionTimeoutSeconds: 3600,
  duplicateUnsafeMethods: false,
  maxDuplicateBodyBytes: 1024 * 1024,
};

export const DEFAULT_FAILURE_POLICY: FailurePolicyConfig = {
  consecutiveFailures: 1,
  errorRateThreshold: 0.5,
  windowSeconds: 10,
  minRequests: 20,
  failureStatusCodes: [500, 502, 503, 504, 505, 506, 507, 508, 510, 511],
  connectTimeoutMs: 2000,
  responseTimeoutMs: 30000,
};
