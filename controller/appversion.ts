// The AppVersion resource (molt.dev/v1alpha1) as the rest of the controller sees it:
// validated, with defaults applied and durations normalised to milliseconds.
// The raw shape users write is described by controller/schema.ts (JSON Schema, also the CRD schema).

import type { Endpoint, FailurePolicyConfig, TransitionConfig } from '../common/protocol.js';

export const API_VERSION = 'molt.dev/v1alpha1';
export const KIND = 'AppVersion';

export interface HealthCheck {
  /** HTTP path to GET; absent = TCP connect check. A 2xx/3xx answer is healthy. */
  path?: string;
  intervalMs: number;
  timeoutMs: number;
  /** A version not ready after this long is marked Failed. */
  startupTimeoutMs: number;
}

export interface ProcessRuntime {
  command: string;
  args: string[];
  env: Record<string, string>;
  workingDir?: string;
  replicas: number;
}

export interface DockerRuntime {
  image: string;
  tag: string;
  containerPort: number;
  replicas: number;
  name?: string;
  workingDir?: string;
  entrypoint?: string[];
  cmd?: string[];
  env: Record<string, string>;
  hostname?: string;
  /** Anonymous volumes (container paths). */
  volumes: string[];
  /** "host:container[:ro|rw]" */
  binds: string[];
  /** "container[:ro|rw]" */
  volumesFrom: string[];
  /** Extra published ports: containerPort -> host port, always bound to 127.0.0.1. */
  portBindings: Array<{ containerPort: number; hostPort: number; protocol: 'tcp' | 'udp' }>;
  /** "container:alias" */
  links: string[];
  user?: string;
  /** Bytes. */
  memory?: number;
  cpuShares?: number;
  privileged: boolean;
  /** Re-resolve the tag's image digest; a new digest yields a new (derived) version. */
  checkForNewImages: boolean;
  /** Seconds between digest checks when checkForNewImages is on. */
  imagePollIntervalMs: number;
}

export type Runtime =
  | { kind: 'servers'; servers: Endpoint[] }
  | { kind: 'process'; process: ProcessRuntime }
  | { kind: 'docker'; docker: DockerRuntime };

export interface AppVersionSpec {
  app: string;
  version: string;
  hosts: string[];
  /** This app takes requests whose Host matches no other app. */
  default: boolean;
  transition: TransitionConfig;
  failurePolicy: FailurePolicyConfig;
  healthCheck: HealthCheck;
  /** Keep a rolled-back version's containers/processes running for inspection. */
  keepFailed: boolean;
  /** Cookie names; default molt-version-<app> / molt-bucket-<app>. */
  versionCookie: string;
  bucketCookie: string;
  runtime: Runtime;
}

export interface AppVersion {
  apiVersion: typeof API_VERSION;
  kind: typeof KIND;
  metadata: {
    name: string;
    namespace?: string;
    generation?: number;
    uid?: string;
    labels?: Record<string, string>;
  };
  spec: AppVersionSpec;
  /** Where it came from, for error messages and status: a file path, "api", "kubernetes". */
  source: string;
  /** Stable hash of the normalised spec: a changed spec is a new rollout. */
  specHash: string;
}

/** Phases and their transitions: controller/phase.ts. */
export type { Phase } from './phase.js';

// ---- preflight (issue 11): kept as one block; merged into AppVersionSpec by declaration merging ----

import type { PreflightCompareConfig } from '../common/preflight-diff.js';
import type { PassCriteria } from '../common/preflight-verdict.js';

export type OnNoTraffic = 'reject' | 'pass' | 'wait';

export interface PreflightHook {
  /** Absolute http(s) URL; called with POST and a JSON body of the evidence. */
  url: string;
  timeoutMs: number;
}

/** spec.preflight, validated, with defaults applied. */
export interface PreflightConfig {
  /** The whole preflight; then onNoTraffic decides if fewer than shadow.minRequests were compared. */
  maxDurationMs: number;
  onNoTraffic: OnNoTraffic;
  replay: {
    /** Most recent recorded requests to replay; 0 = none. */
    requests: number;
    /** replay.headers.set: header name (as written) -> value, replacing recorded values. */
    setHeaders: Record<string, string>;
  };
  shadow: {
    /** Share of live requests copied to the new version, 0-100 (0 without spec.preflight.shadow). */
    percent: number;
    /** Compared requests (replayed + copied) needed before a verdict. */
    minRequests: number;
  };
  compare: PreflightCompareConfig;
  pass: PassCriteria & { maxLatencyRatio: number };
  /** Copy/replay POST/PUT/PATCH/DELETE too (only to the new version). */
  unsafeMethods: boolean;
  hooks: PreflightHook[];
  /** Keep a Rejected version running (defaults to spec.keepFailed). */
  keepFailed: boolean;
  /** Recording and export redaction (on top of Authorization, Cookie, Set-Cookie). */
  redact: { headers: string[]; queryParams: string[]; keep: string[] };
}

export interface AppVersionSpec {
  /** spec.preflight: absent = no Testing phase (the transition starts once the version is ready). */
  preflight?: PreflightConfig;
  /** spec.transition.callsPerInteraction: c in the mixed-version risk. The loader always sets it
   *  (default 1); absent (hand-built specs) means 1. */
  callsPerInteraction?: number;
}

// ---- canary analysis (issue 12): merged into AppVersionSpec by declaration merging ----

import type { AnalysisConfig } from './analysis/config.js';

/** spec.transition.analysis, normalised. Kept beside (not inside) spec.transition: the transition is
 *  pushed to the sidecar as is, and the sidecar needs none of this (the controller judges). */
export interface TransitionAnalysis {
  /** The transition's own analysis (CONCURRENT: judged every intervalMs). */
  analysis?: AnalysisConfig;
  /** GRADUAL with steps: the gate after step i's pause (the transition's analysis merged with the
   *  step's own); undefined = no gate (the last step, or no analysis at all). */
  steps: (AnalysisConfig | undefined)[];
}

export interface AppVersionSpec {
  /** Present when spec.transition.analysis or a step's analysis is given. */
  analysis?: TransitionAnalysis;
}
