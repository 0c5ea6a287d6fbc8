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
import { computePhase, isPhase, type Phase, type PhaseObservations, type PhaseStatus } from '../phase.js';
import { GROUP, MERGE_PATCH, PLURAL, VERSION } from './client.js';

export const ROLLBACK_ANNOTATION = 'molt.dev/rollback';
export const PROMOTED_ANNOTATION = 'molt.dev/promoted';

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
  /** ISO times of phase changes in this generation: created, ready, serving, promoted, rolledBack, failed. */
  timestamps: Record<string, string>;
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
    instancesCreated: i.runtime !== 'docker' || i.deploymentExists,
    readyEndpoints: i.readyEndpoints,
    startup: i.startup,
    preflight: i.preflight,
    routed: { promoted: i.promoted },
  });
  const routable = ready && (phase === 'Serving' || phase === 'Promoted');
  if (ready && (routable || phase === 'Testing')) timestamps.ready ??= iso(i.now);
  // The serving stamp admits the version to every replica's routing table (kube/controller.ts).
  if (routable) timestamps.serving ??= iso(i.now);
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
    i.rollback
      ? condition(prevConds, 'RolledBack', 'True', 'FailurePolicy', i.rollback.reason, g, i.now)
      : condition(prevConds, 'RolledBack', 'False', 'NotRolledBack', 'no failure reported for this generation', g, i.now),
  ];
  const traffic = !routable ? 0 : i.traffic !== undefined ? roundTraffic(i.traffic) : typeof cur?.traffic === 'number' && sameGen ? cur.traffic : 0;
  return { phase, traffic, reason, message, observedGeneration: g, conditions, timestamps };
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
  const timestamps: Record<string, string | null> = { ...status.timestamps };
  for (const k of Object.keys(previous?.timestamps ?? {})) if (!(k in timestamps)) timestamps[k] = null;
  return api.patchNamespacedCustomObjectStatus(
    { group: GROUP, version: VERSION, namespace, plural: PLURAL, name, body: { status: { ...status, timestamps } } },
    MERGE_PATCH,
  );
}

/** Record a rollback report on the AppVersion (metadata only: does not bump generation). */
export async function writeRollbackReport(api: CustomObjectsApi, namespace: string, name: string, report: RollbackReport): Promise<unknown> {
  return api.patchNamespacedCustomObject(
    { group: GROUP, version: VERSION, namespace, plural: PLURAL, name, body: { metadata: { annotations: { [ROLLBACK_ANNOTATION]: JSON.stringify(report) } } } },
    MERGE_PATCH,
  );
}
