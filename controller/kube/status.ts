// AppVersion status in Kubernetes mode: pure computation of the desired status from what the controller
// observed, a comparison so unchanged status is never written, and the write itself (status subresource,
// JSON merge patch).
//
// Phase, reason and message come from the phase machine shared with local mode (controller/phase.ts); this
// file adds what only Kubernetes has: conditions, observedGeneration, the timestamps routing relies on.
//
// Epoch (the admission epoch, a counter; not a time): a version's epoch is its metadata.generation. Editing the spec is a new rollout, so it re-admits a
// rolled-back version; a RolledBack status or rollback report only counts for the generation it names.
//
// Rollback reports: any replica whose sidecar rolls a version back records it as the annotation
// `molt.dev/rollback` on the AppVersion (JSON: epoch, reason, at, firstFailureAt, by). Every replica's
// routing treats the version as rolledBack as soon as it sees the annotation (or a RolledBack status) for
// the current epoch; the leader turns it into status (phase RolledBack, condition RolledBack=True).

import type { CustomObjectsApi } from '@kubernetes/client-node';
import { computePhase, isPhase, isTerminal, type Phase, type PhaseObservations, type PhaseStatus } from '../phase.js';
import type { PreflightEvidence } from '../preflight.js';
import type { AnalysisRun } from '../analysis/gate.js';
import type { AnalysisStatus, AppStatus, ControllerStatus, VersionStatus } from '../controller-api.js';
import { compareVersions } from '../../common/version-order.js';
import { GROUP, MERGE_PATCH, PLURAL, VERSION } from './client.js';

export const ROLLBACK_ANNOTATION = 'molt.dev/rollback';
export const PROMOTED_ANNOTATION = 'molt.dev/promoted';
/** metadata.generation the molt.dev/promoted annotation was written for (`kubectl molt promote`). With it, the
 *  annotation overrides only that generation's preflight; without it (annotated by hand), every generation's. */
export const PROMOTED_GENERATION_ANNOTATION = 'molt.dev/promoted-generation';
/** `kubectl molt promote` under canary analysis (GRADUAL): "GENERATION/STEP", the spec generation and the 0-based
 *  step status.analysis showed. The leader advances past that step once, and only for that generation. */
export const PROMOTE_STEP_ANNOTATION = 'molt.dev/promote-step';

/** Default delay between the leader's preflight pass and the atomic switch (status.timestamps.serving). */
export const DEFAULT_SWITCH_DELAY_MS = 2000;

export type ConditionStatus = 'True' | 'False' | 'Unknown';

export interface Condition {
  type: string;
  status: ConditionStatus;
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

/** Matches controller/schema.ts statusSchema (unknown fields would be pruned by the apiserver). */
export interface KubeStatus {
  phase: Phase;
  traffic: number;
  reason: string;
  message: string;
  observedGeneration: number;
  conditions: Condition[];
  /** ISO times of phase changes in this generation: created, ready, testing, serving, promoted, rolledBack,
   *  failed, rejected. After a preflight, `serving` is the atomic switch time, a little in the future when written. */
  timestamps: Record<string, string>;
  /** spec.preflight's verdict and evidence for this generation (absent without a preflight). */
  preflight?: PreflightEvidence;
  /** Canary analysis of this generation (leader-written; every replica routes at its step). */
  analysis?: KubeAnalysisStatus;
}

/** status.analysis: the durable part of the leader's gate (controller/analysis/gate.ts GateState). The
 *  window's start snapshot stays in the leader's memory: a new leader measures the current step's window
 *  again from its own first stats line. */
export interface KubeAnalysisStatus {
  baseline: string;
  baselineVersion: string;
  step: number;
  stepStartedAt: string;
  holdSince?: string;
  judged: number;
  /** The gates passed (last step passed): the version takes all new traffic, as a promoted one. */
  promoted?: boolean;
  runs: AnalysisRun[];
}

/** status.analysis of this generation, if the leader wrote one. */
export function storedAnalysis(generation: number, status: Partial<KubeStatus> | undefined): KubeAnalysisStatus | undefined {
  if (!status || status.observedGeneration !== generation) return undefined;
  const a = status.analysis;
  return a && typeof a === 'object' && typeof a.step === 'number' ? a : undefined;
}

export interface RollbackReport {
  epoch: number;
  reason: string;
  /** ISO time the sidecar stopped routing to the version. */
  at: string;
  firstFailureAt?: string;
  /** Identity of the reporting controller replica. */
  by: string;
}

export function parseRollbackReport(annotations: Record<string, string> | undefined): RollbackReport | undefined {
  const text = annotations?.[ROLLBACK_ANNOTATION];
  if (!text) return undefined;
  try {
    const r = JSON.parse(text) as Partial<RollbackReport>;
    if (typeof r.epoch !== 'number' || typeof r.reason !== 'string') return undefined;
    return { epoch: r.epoch, reason: r.reason, at: String(r.at ?? ''), firstFailureAt: r.firstFailureAt, by: String(r.by ?? '') };
  } catch {
    return undefined;
  }
}

/** Parse a status as stored (anything may be missing or malformed). */
export function readStatus(raw: unknown): Partial<KubeStatus> | undefined {
  if (!raw || typeof raw !== 'object') return undefined;
  return raw as Partial<KubeStatus>;
}

/** The rollback that applies to this generation, from status or annotation. */
export function currentRollback(
  generation: number,
  status: Partial<KubeStatus> | undefined,
  annotations: Record<string, string> | undefined,
): { reason: string; at: string } | undefined {
  const report = parseRollbackReport(annotations);
  if (report && report.epoch === generation) return { reason: report.reason, at: report.at };
  if (status?.phase === 'RolledBack' && status.observedGeneration === generation) {
    return { reason: status.message ?? '', at: status.timestamps?.rolledBack ?? '' };
  }
  return undefined;
}

/** When the version first got traffic in this generation (Unix time, ms), from status; undefined if not yet. */
export function servingSinceOf(generation: number, status: Partial<KubeStatus> | undefined): number | undefined {
  if (!status || status.observedGeneration !== generation) return undefined;
  const t = status.timestamps?.serving;
  const ms = t ? Date.parse(t) : NaN;
  return Number.isFinite(ms) ? ms : undefined;
}

export interface StatusInput {
  generation: number;
  current: Partial<KubeStatus> | undefined;
  /** Validation message when the spec is invalid. */
  invalid?: string;
  /** Runtime unsupported in Kubernetes mode (process). */
  unsupported?: string;
  runtime: 'docker' | 'servers' | 'process' | 'unknown';
  /** docker: the Deployment exists. */
  deploymentExists: boolean;
  readyEndpoints: number;
  rollback: { reason: string; at: string } | undefined;
  promoted: boolean;
  /** Share of new traffic from the sidecar's stats, undefined = keep what status says. */
  traffic: number | undefined;
  now: number;
  /** Time since the rollout started and spec.healthCheck.startupTimeout; absent = not enforced. */
  startup?: PhaseObservations['startup'];
  /** spec.preflight's state (issue 11); absent = no preflight. */
  preflight?: PhaseObservations['preflight'];
  /** The evidence to show in status.preflight (with `preflight`). */
  preflightEvidence?: PreflightEvidence;
  /** The user promoted this version past its preflight: re-admits a Rejected one. */
  promoteOverride?: boolean;
  /** With a preflight: the switch to serving is stamped this far in the future, so that every replica adds
   *  the version to its table at the same instant (default DEFAULT_SWITCH_DELAY_MS). */
  switchDelayMs?: number;
  /** Canary analysis state to write (absent: keep what status has for this generation). */
  analysis?: KubeAnalysisStatus;
  /** Canary analysis decided against the version (RolledBack, AnalysisFailed | AnalysisInconclusive). */
  analysisRollback?: PhaseObservations['analysisRollback'];
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function condition(
  prev: Condition[] | undefined,
  type: string,
  status: ConditionStatus,
  reason: string,
  message: string,
  generation: number,
  now: number,
): Condition {
  const old = prev?.find((c) => c.type === type);
  const lastTransitionTime = old && old.status === status && old.lastTransitionTime ? old.lastTransitionTime : iso(now);
  return { type, status, reason, message, lastTransitionTime, observedGeneration: generation };
}

/** Round traffic to whole percent so tiny fluctuations do not cause status writes. */
export function roundTraffic(t: number): number {
  if (!Number.isFinite(t)) return 0;
  return Math.round(Math.min(1, Math.max(0, t)) * 100) / 100;
}

export function computeStatus(i: StatusInput): KubeStatus {
  const cur = i.current;
  const sameGen = cur?.observedGeneration === i.generation;
  const prevConds = Array.isArray(cur?.conditions) ? cur!.conditions : undefined;
  const timestamps: Record<string, string> = sameGen && cur?.timestamps && typeof cur.timestamps === 'object' ? { ...cur.timestamps } : {};
  timestamps.created ??= iso(i.now);

  // The previous phase of this generation (a new generation is a new rollout).
  const prev: PhaseStatus | undefined = sameGen && isPhase(cur?.phase)
    ? { phase: cur!.phase, reason: String(cur!.reason ?? ''), message: String(cur!.message ?? '') }
    : undefined;
  const ready = i.readyEndpoints > 0;
  const { phase, reason, message } = computePhase(prev, {
    invalidSpec: i.invalid,
    unsupportedRuntime: i.unsupported,
    failureReported: i.rollback?.reason,
    analysisRollback: i.analysisRollback,
    instancesCreated: i.runtime !== 'docker' || i.deploymentExists,
    readyEndpoints: i.readyEndpoints,
    startup: i.startup,
    preflight: i.preflight,
    promoteOverride: i.promoteOverride,
    routed: { promoted: i.promoted },
  });
  const routable = ready && (phase === 'Serving' || phase === 'Promoted');
  if (ready && (routable || phase === 'Testing')) timestamps.ready ??= iso(i.now);
  if (phase === 'Testing') timestamps.testing ??= iso(i.now);
  if (prev?.phase === 'Rejected' && phase !== 'Rejected') delete timestamps.rejected; // re-admitted by the user
  // The serving stamp admits the version to every replica's routing table (kube/controller.ts). After a
  // preflight it is the atomic switch: stamped a little in the future, every replica switches at that instant
  // (a requeue-after), not when its watch happens to deliver this status.
  if (routable) timestamps.serving ??= iso(i.now + (i.preflight ? i.switchDelayMs ?? DEFAULT_SWITCH_DELAY_MS : 0));
  if (phase === 'Promoted') timestamps.promoted ??= iso(i.now);
  if (phase === 'RolledBack') timestamps.rolledBack ??= i.rollback?.at || iso(i.now);
  if (phase === 'Failed') timestamps.failed ??= iso(i.now);
  if (phase === 'Rejected') timestamps.rejected ??= iso(i.now);

  const g = i.generation;
  const conditions: Condition[] = [
    i.invalid || i.unsupported
      ? condition(prevConds, 'Valid', 'False', reason, message, g, i.now)
      : condition(prevConds, 'Valid', 'True', 'SpecValid', 'spec is valid', g, i.now),
    ready
      ? condition(prevConds, 'Ready', 'True', 'EndpointsReady', `${i.readyEndpoints} ready endpoint${i.readyEndpoints === 1 ? '' : 's'}`, g, i.now)
      : condition(prevConds, 'Ready', 'False', i.invalid || i.unsupported ? reason : 'NoReadyEndpoints', 'no ready endpoints', g, i.now),
    phase === 'RolledBack' && (reason === 'AnalysisFailed' || reason === 'AnalysisInconclusive')
      ? condition(prevConds, 'RolledBack', 'True', reason, message, g, i.now)
      : i.rollback
      ? condition(prevConds, 'RolledBack', 'True', 'FailurePolicy', i.rollback.reason, g, i.now)
      : condition(prevConds, 'RolledBack', 'False', 'NotRolledBack', 'no failure reported for this generation', g, i.now),
  ];
  const traffic = !routable ? 0 : i.traffic !== undefined ? roundTraffic(i.traffic) : typeof cur?.traffic === 'number' && sameGen ? cur.traffic : 0;
  const out: KubeStatus = { phase, traffic, reason, message, observedGeneration: g, conditions, timestamps };
  if (i.preflight) {
    const kept = sameGen && cur?.preflight && typeof cur.preflight === 'object' ? cur.preflight : undefined;
    const evidence = i.preflightEvidence ?? kept;
    if (evidence) out.preflight = evidence;
  }
  const analysis = i.analysis ?? (sameGen && cur?.analysis && typeof cur.analysis === 'object' ? cur.analysis : undefined);
  if (analysis) out.analysis = analysis;
  return out;
}

/** The preflight verdict stored in status for this generation (what every replica and `kubectl molt` see). */
export function storedPreflight(generation: number, status: Partial<KubeStatus> | undefined): PreflightEvidence | undefined {
  if (!status || status.observedGeneration !== generation) return undefined;
  const p = status.preflight;
  return p && typeof p === 'object' ? p : undefined;
}

/** The molt.dev/promoted annotation applies to this generation (see PROMOTED_GENERATION_ANNOTATION). */
export function promotedFor(generation: number, annotations: Record<string, string> | undefined): boolean {
  if (annotations?.[PROMOTED_ANNOTATION] !== 'true') return false;
  const g = annotations[PROMOTED_GENERATION_ANNOTATION];
  return g === undefined || Number(g) === generation;
}

/** Equal for writing purposes (field order does not matter). */
export function sameStatus(a: Partial<KubeStatus> | undefined, b: KubeStatus): boolean {
  if (!a) return false;
  return canonical(a) === canonical(b);
}

function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v)
      .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

/** Write status through the status subresource (merge patch; arrays and the timestamps map are replaced
 *  whole because every key is sent, stale keys as null). Returns the updated object. */
export async function writeStatus(api: CustomObjectsApi, namespace: string, name: string, status: KubeStatus, previous: Partial<KubeStatus> | undefined): Promise<unknown> {
  const body: Record<string, unknown> = { ...status, timestamps: withNulls(status.timestamps, previous?.timestamps) };
  if (status.preflight) body.preflight = withNulls(status.preflight as unknown as Record<string, unknown>, previous?.preflight as Record<string, unknown> | undefined);
  if (status.analysis) body.analysis = withNulls(status.analysis as unknown as Record<string, unknown>, previous?.analysis as Record<string, unknown> | undefined);
  for (const k of Object.keys(previous ?? {})) if (!(k in body)) body[k] = null;
  return api.patchNamespacedCustomObjectStatus(
    { group: GROUP, version: VERSION, namespace, plural: PLURAL, name, body: { status: body } },
    MERGE_PATCH,
  );
}

/** `next` with every key only `previous` has set to null (a merge patch removes those). */
function withNulls<T>(next: Record<string, T>, previous: Record<string, unknown> | undefined): Record<string, T | null> {
  const out: Record<string, T | null> = { ...next };
  if (previous && typeof previous === 'object') for (const k of Object.keys(previous)) if (!(k in out) || out[k] === undefined) out[k] = null;
  return out;
}

/** Record a rollback report on the AppVersion (metadata only: does not bump generation). */
export async function writeRollbackReport(api: CustomObjectsApi, namespace: string, name: string, report: RollbackReport): Promise<unknown> {
  return api.patchNamespacedCustomObject(
    { group: GROUP, version: VERSION, namespace, plural: PLURAL, name, body: { metadata: { annotations: { [ROLLBACK_ANNOTATION]: JSON.stringify(report) } } } },
    MERGE_PATCH,
  );
}

// ---- the status view (`kubectl molt status`, the admin API and dashboard of every replica) ----

/** What toStatus reads of an AppVersion. */
export interface AppVersionView {
  metadata: { name: string; generation?: number; annotations?: Record<string, string> };
  spec: { app: string; version: string; hosts?: string[]; transition?: { mode?: string; steps?: unknown; analysis?: unknown } };
  status?: { phase?: string; traffic?: unknown; reason?: string; message?: string; timestamps?: Record<string, string>; observedGeneration?: number; preflight?: unknown; analysis?: unknown };
}

function trafficOf(v: unknown): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'string' && /^\d+(\.\d+)?%$/.test(v)) return Number(v.slice(0, -1)) / 100;
  return 0;
}

/** status.analysis as `molt status` and the admin API show it (local mode's AnalysisStatus). */
function analysisView(av: AppVersionView, phase: Phase): AnalysisStatus | undefined {
  const t = av.spec.transition;
  const a = av.status?.analysis as Partial<KubeAnalysisStatus> | undefined;
  if (!t?.analysis || (t.mode !== 'GRADUAL' && t.mode !== 'CONCURRENT')) return undefined;
  const steps = Array.isArray(t.steps) ? (t.steps as Array<{ weight?: number }>) : undefined;
  const out: AnalysisStatus = { mode: t.mode, state: 'Pending', runs: Array.isArray(a?.runs) ? [...a!.runs] : [] };
  if (t.mode === 'GRADUAL' && steps) out.steps = steps.length;
  if (a && typeof a === 'object' && typeof a.step === 'number') {
    if (t.mode === 'GRADUAL') {
      out.step = a.step;
      if (typeof steps?.[a.step]?.weight === 'number') out.weight = steps[a.step]!.weight;
    }
    if (a.baselineVersion) out.baseline = a.baselineVersion;
    if (a.holdSince) out.holdSince = a.holdSince;
    out.state = a.promoted ? 'Done' : isTerminal(phase) ? 'Stopped' : a.holdSince ? 'Holding' : 'Measuring';
  } else if (isTerminal(phase)) out.state = 'Stopped';
  else if (phase === 'Promoted') out.state = 'Done';
  return out;
}

/** AppVersions as the status view `molt status` prints (newest first per app), with status.preflight. */
export function toStatus(items: AppVersionView[]): ControllerStatus {
  const apps = new Map<string, AppStatus>();
  for (const av of items) {
    let app = apps.get(av.spec.app);
    if (!app) apps.set(av.spec.app, (app = { app: av.spec.app, hosts: [], versions: [] }));
    for (const h of av.spec.hosts ?? []) if (!app.hosts.includes(h)) app.hosts.push(h);
    const st = av.status ?? {};
    const current = st.observedGeneration === undefined || st.observedGeneration === av.metadata.generation;
    const v: VersionStatus = {
      name: av.metadata.name,
      app: av.spec.app,
      version: av.spec.version,
      mode: av.spec.transition?.mode ?? 'INSTANT',
      phase: current && isPhase(st.phase) ? st.phase : 'Pending',
      traffic: trafficOf(st.traffic),
      reason: current ? st.reason ?? '' : 'Created',
      message: current ? st.message ?? '' : 'the controller has not seen this generation yet',
      source: 'kubernetes',
      endpoints: [],
      timestamps: st.timestamps ?? {},
      requests: 0,
      errors: 0,
    };
    if (current && st.preflight && typeof st.preflight === 'object') v.preflight = st.preflight as PreflightEvidence;
    const analysis = current ? analysisView(av, v.phase) : undefined;
    if (analysis) v.analysis = analysis;
    app.versions.push(v);
  }
  for (const a of apps.values()) a.versions.sort((x, y) => compareVersions(y.version, x.version));
  return { sidecarConnected: true, routingRevision: 0, apps: [...apps.values()].sort((a, b) => (a.app < b.app ? -1 : 1)), errors: [] };
}
