import type { Har } from '../common/har.js';
import type { PreflightEvidence } from './preflight.js';
// What the admin API (and the CLI through it) may ask of a running controller.
// Implemented by controller/controller.ts; the admin API only depends on this interface.

import type { Phase } from './appversion.js';
import type { AnalysisRun } from './analysis/gate.js';

/** Canary analysis of a version (issue 12), as status shows it. */
export interface AnalysisStatus {
  mode: 'GRADUAL' | 'CONCURRENT';
  /** Pending: not started (not routed yet, or no baseline); Measuring: a window is open; Holding: the
   *  step was Inconclusive and is measured again; Waiting: an ungated step's pause; Done: promoted;
   *  Stopped: the version left the rollout (rolled back). */
  state: 'Pending' | 'Measuring' | 'Holding' | 'Waiting' | 'Done' | 'Stopped';
  /** GRADUAL: current step (0-based), number of steps, the step's weight. */
  step?: number;
  steps?: number;
  weight?: number;
  /** The version compared against (spec.version). */
  baseline?: string;
  /** The window being measured (ISO times). */
  window?: { startAt: string; endAt: string; started: boolean };
  holdSince?: string;
  /** The last analysis runs, oldest first (at most 20). */
  runs: AnalysisRun[];
}

export interface VersionStatus {
  name: string;
  app: string;
  version: string;
  mode: string;
  phase: Phase;
  /** Share of new traffic this version receives now, 0..1. */
  traffic: number;
  reason: string;
  message: string;
  source: string;
  endpoints: Array<{ host: string; port: number }>;
  /** ISO timestamps of phase changes that happened: created, ready, serving, promoted, rolledBack, failed. */
  timestamps: Record<string, string>;
  requests: number;
  errors: number;
  /** spec.preflight's evidence and verdict (issue 11); absent without a preflight. */
  preflight?: PreflightEvidence;
  /** The newest version of an app, during and after its transition: Imago's mixed-version risk
   *  P = s(1 - s^c) now, and its mean and maximum over the rollout (sampled every second). */
  mixedVersionRisk?: { current: number; mean: number; max: number };
  /** Canary analysis (spec.transition.analysis): current step, window, the last runs. */
  analysis?: AnalysisStatus;
}

export interface AppStatus {
  app: string;
  hosts: string[];
  /** Newest first. */
  versions: VersionStatus[];
}

export interface ResourceError {
  /** File path or "api". */
  source: string;
  /** One-line "file:line:col: path: message". */
  message: string;
  code: string;
}

export interface ControllerStatus {
  sidecarConnected: boolean;
  routingRevision: number;
  apps: AppStatus[];
  /** Invalid files and other input problems: shown, never applied. */
  errors: ResourceError[];
}

export interface PromoteOptions {
  /** Under canary analysis `promote` moves one step; `full` finishes the transition (as Argo's --full). */
  full?: boolean;
}

export interface ControllerApi {
  status(): ControllerStatus;
  /** The raw resource as last applied (parsed YAML/JSON object), or undefined. */
  getResource(name: string): { resource: unknown; status: VersionStatus | undefined } | undefined;
  /** Validate and store a resource (raw object, as parsed from YAML/JSON). Throws MoltError /
   *  MoltValidationErrors on bad input. Returns true when created, false when updated. */
  applyResource(raw: unknown, source?: string): Promise<{ created: boolean; name: string }>;
  /** Delete an API-applied resource. Throws MOLT_ERR_NOT_FOUND; file-backed ones answer MOLT_ERR_CONFLICT
   *  (delete the file instead). */
  deleteResource(name: string): Promise<void>;
  /** Finish the transition now: all new traffic to VERSION (default the newest serving). Re-admits a rolled-back
   *  version when named explicitly. */
  promote(app: string, version?: string, opts?: PromoteOptions): Promise<VersionStatus>;
  /** Roll the newest serving version back now (reason "manual"). */
  rollback(app: string): Promise<VersionStatus>;
  /** The sidecar's recorded exchanges of an app, redacted, as HAR 1.2 (`molt traffic export`). Optional:
   *  a controller without a recording sidecar answers 404. */
  trafficHar?(app: string, limit: number): Promise<Har>;
}
