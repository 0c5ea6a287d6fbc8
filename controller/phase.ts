// The phase machine of an AppVersion rollout, shared by local mode (controller.ts) and Kubernetes mode
// (kube/status.ts): one pure function from the previous phase and what the controller observed to the next
// phase, reason and message. Neither mode decides a phase anywhere else; what differs between them is only
// which observations they can make (see PhaseObservations).
//
// A rollout starts when a spec is first seen or changes (local: a new record; Kubernetes: a new
// metadata.generation). Phases:
//
//   Pending ─► Starting ─► [Testing] ─► Serving ◄─► Promoted        (Ready: superseded, kept as rollback target)
//      │          │           │            │
//      └──────────┴───────────┴────────────┴──► RolledBack | Failed | Rejected   (terminal for this rollout)
//   any non-terminal ──► Draining (resource deleted)
//
// Terminal phases stay until the spec changes or the user promotes the version again (re-admission). Testing
// and Rejected belong to the preflight (issue 11); nothing produces preflight observations yet, and without
// them the machine never enters either phase.
//
// Rules, first match wins (test/phase.test.ts has a row for each):
//   1. invalidSpec / unsupportedRuntime            → Failed (InvalidSpec / UnsupportedRuntime), re-checked every time
//   2. terminal: promoteOverride                   → Pending (Readmitted); crashed → same, message gets the exit code;
//                                                    otherwise unchanged
//   3. failureReported                             → RolledBack (FailurePolicy)
//   4. manualRollback                              → RolledBack (Manual)
//   4a. analysisRollback (canary analysis, issue 12) → RolledBack (AnalysisFailed | AnalysisInconclusive)
//   5. crashed: newest with a fallback             → RolledBack (Crashed); never ready → Failed (Crashed); else unchanged
//   6. createFailed, never ready                   → Failed (CreateFailed)
//   7. deleted                                     → Draining (Deleted)
//   8. preflight verdict fail (not overridden)     → Rejected (PreflightMismatch | … | NoTraffic)
//   9. no ready endpoint, never ready: startup timeout elapsed → Failed (NotReady); instances created →
//      Starting (WaitingForReady); else Pending (Creating)
//  10. ready, preflight configured and undecided   → Testing (PreflightRunning)
//  11. routed (in the routing table): see routedPhase()
//  12. otherwise                                   → unchanged

import type { TransitionMode } from '../common/protocol.js';

export const PHASES = [
  'Pending',
  'Starting',
  'Testing',
  'Ready',
  'Serving',
  'Promoted',
  'RolledBack',
  'Failed',
  'Rejected',
  'Draining',
] as const;

export type Phase = (typeof PHASES)[number];

/** Phases a rollout does not leave by itself: only a spec change or `molt promote` (re-admission) does. */
export const TERMINAL_PHASES: ReadonlySet<Phase> = new Set<Phase>(['RolledBack', 'Failed', 'Rejected']);

export function isTerminal(phase: Phase | undefined): boolean {
  return phase !== undefined && TERMINAL_PHASES.has(phase);
}

export function isPhase(value: unknown): value is Phase {
  return typeof value === 'string' && (PHASES as readonly string[]).includes(value);
}

/** Why a preflight rejected a version (issue 11). */
export type PreflightRejectReason = 'PreflightMismatch' | 'PreflightErrors' | 'PreflightLatency' | 'HookFailed' | 'NoTraffic';

export type PhaseReason =
  | 'Created'
  | 'Creating'
  | 'WaitingForReady'
  | 'PreflightRunning'
  | 'Transitioning'
  | 'Superseded'
  | 'Standby'
  | 'TransitionComplete'
  | 'EndpointsReady'
  | 'Deleted'
  | 'Readmitted'
  | 'FailurePolicy'
  | 'Manual'
  | 'Crashed'
  | 'CreateFailed'
  | 'NotReady'
  | 'InvalidSpec'
  | 'UnsupportedRuntime'
  | 'AnalysisFailed'
  | 'AnalysisInconclusive'
  | PreflightRejectReason;

export interface PhaseStatus {
  phase: Phase;
  /** A PhaseReason for every status this machine produces; stored statuses may carry older strings. */
  reason: string;
  message: string;
}

/** Where a routed version stands in its app's routing table (local mode computes the table itself). */
export interface TablePosition {
  /** First in the table: the newest version of the app that may serve. */
  newest: boolean;
  /** Versions of the app in the table. */
  versions: number;
  mode: TransitionMode;
  /** Share of new traffic from the sidecar's stats; undefined until its first stats arrive. */
  share: number | undefined;
}

/**
 * What the controller observed about one rollout. Every field is optional: a rule whose observation is absent
 * does not fire, so a caller reporting one event (a failure report, a manual rollback) passes only that, and
 * a caller recomputing everything (Kubernetes mode, local mode's per-reconcile pass) passes all it knows.
 */
export interface PhaseObservations {
  /** The spec started a new rollout (first seen, or changed): the previous phase no longer applies. */
  newRollout?: boolean;
  /** The spec failed validation (Kubernetes mode; local mode never admits an invalid file). */
  invalidSpec?: string;
  /** The runtime cannot run in this mode (Kubernetes mode: `process`). */
  unsupportedRuntime?: string;
  /** `molt promote APP VERSION` named this version: re-admits a terminal version, skips a preflight. */
  promoteOverride?: boolean;
  /** The sidecar stopped routing to the version under its failure policy (the message to show). */
  failureReported?: string;
  /** `molt rollback APP` on this version. */
  manualRollback?: boolean;
  /** Canary analysis (issue 12) decided against the version: its verdict is the message. */
  analysisRollback?: { reason: 'AnalysisFailed' | 'AnalysisInconclusive'; message: string };
  /** An instance exited. */
  crashed?: { index: number; exitCode?: number };
  /** The version is the newest in the routing table and an older one can take its traffic. */
  newestWithFallback?: boolean;
  /** Creating an instance failed (the error). */
  createFailed?: string;
  /** The resource was deleted: out of the table, instances drain. */
  deleted?: boolean;
  /** Instances exist (local: one is running; Kubernetes: the Deployment exists). */
  instancesCreated?: boolean;
  /** Ready endpoints now. Rules 9–11 need it. */
  readyEndpoints?: number;
  /** An instance of this rollout passed its health check before. Local mode: an instance stays ready until it
   *  exits, so a version whose instance restarts keeps its phase. Kubernetes mode leaves it unset: endpoint
   *  readiness is the pods' current state. */
  wasReady?: boolean;
  /** Time since the rollout started (counted from the controller's start at the earliest) and the limit. */
  startup?: { elapsedMs: number; timeoutMs: number };
  /** Present when spec.preflight is configured. verdict undefined = still testing; 'overridden' = the user
   *  promoted the version past its preflight. */
  preflight?: { verdict?: 'pass' | 'fail' | 'overridden'; reason?: PreflightRejectReason; message?: string };
  /** The version is routable. `promoted`: all new traffic goes to it (the user promoted it, or a GRADUAL
   *  transition finished). `position`: where it stands in the table, when the caller knows (local mode). */
  routed?: { promoted: boolean; position?: TablePosition };
}

export const INITIAL_PHASE: PhaseStatus = Object.freeze({ phase: 'Pending', reason: 'Created', message: 'creating instances' });

function status(phase: Phase, reason: PhaseReason, message: string): PhaseStatus {
  return { phase, reason, message };
}

/** The next phase of a rollout. Pure: same inputs, same answer; returns `prev` itself when nothing changes. */
export function computePhase(prev: PhaseStatus | undefined, o: PhaseObservations): PhaseStatus {
  const cur = o.newRollout || !prev ? INITIAL_PHASE : prev;
  const next = decide(cur, o);
  return next.phase === cur.phase && next.reason === cur.reason && next.message === cur.message ? cur : next;
}

function decide(cur: PhaseStatus, o: PhaseObservations): PhaseStatus {
  // 1. Spec problems are re-checked on every decision (a fixed controller may accept the same spec).
  if (o.invalidSpec !== undefined) return status('Failed', 'InvalidSpec', o.invalidSpec);
  if (o.unsupportedRuntime !== undefined) return status('Failed', 'UnsupportedRuntime', o.unsupportedRuntime);

  // 2. Terminal: stays, unless the user re-admits it.
  if (isTerminal(cur.phase) && cur.reason !== 'InvalidSpec' && cur.reason !== 'UnsupportedRuntime') {
    if (o.promoteOverride) return status('Pending', 'Readmitted', 'promoted again by the user');
    // The sidecar often rolls a crashing version back first ("reset connection closed"): say why.
    if (o.crashed?.exitCode !== undefined && !/ exited /.test(cur.message)) {
      return { ...cur, message: `${cur.message}; instance ${o.crashed.index} exited with code ${o.crashed.exitCode}` };
    }
    return cur;
  }

  // 3–7. Events.
  if (o.failureReported !== undefined) return status('RolledBack', 'FailurePolicy', o.failureReported);
  if (o.manualRollback) return status('RolledBack', 'Manual', 'rolled back by the user');
  if (o.analysisRollback) return status('RolledBack', o.analysisRollback.reason, o.analysisRollback.message);
  if (o.crashed) {
    const code = o.crashed.exitCode !== undefined ? ` with code ${o.crashed.exitCode}` : '';
    if (o.newestWithFallback) return status('RolledBack', 'Crashed', `instance ${o.crashed.index} exited${code}`);
    if (!o.wasReady) return status('Failed', 'Crashed', `instance ${o.crashed.index} exited${code} before becoming ready`);
    return cur; // a version that was ready keeps its phase while the instance is replaced
  }
  if (o.createFailed !== undefined) return o.wasReady ? cur : status('Failed', 'CreateFailed', o.createFailed);
  if (o.deleted) return status('Draining', 'Deleted', 'resource deleted; draining in-flight requests');

  // 8. Preflight verdict (rejection is terminal, like a rollback).
  const gate = preflightGate(o.preflight, o.promoteOverride);
  if (gate === 'rejected') return status('Rejected', o.preflight!.reason ?? 'PreflightMismatch', o.preflight!.message ?? 'preflight failed');

  // 9. Not ready yet.
  if (o.readyEndpoints === undefined) return cur;
  if (o.readyEndpoints === 0 && !o.wasReady) {
    if (o.startup && o.startup.elapsedMs > o.startup.timeoutMs) {
      return status('Failed', 'NotReady', `no instance became ready within ${o.startup.timeoutMs / 1000}s`);
    }
    return o.instancesCreated
      ? status('Starting', 'WaitingForReady', 'waiting for an instance to pass its health check')
      : status('Pending', 'Creating', 'creating instances');
  }

  // 10. Ready, under preflight: no client traffic yet.
  if (gate === 'testing') return status('Testing', 'PreflightRunning', 'ready; preflight running (receives no client traffic)');

  // 11. Routed.
  if (o.routed) return routedPhase(o.routed, o.readyEndpoints);
  return cur;
}

/**
 * May a ready version take client traffic? 'open' without a preflight, after a pass or the user's override;
 * 'testing' while the preflight runs; 'rejected' after a fail. Both modes keep versions whose gate is not open
 * out of the client routing table.
 */
export function preflightGate(preflight: PhaseObservations['preflight'], promoteOverride = false): 'open' | 'testing' | 'rejected' {
  if (!preflight || promoteOverride) return 'open';
  switch (preflight.verdict) {
    case 'pass':
    case 'overridden':
      return 'open';
    case 'fail':
      return 'rejected';
    case undefined:
      return 'testing';
  }
}

function routedPhase(r: NonNullable<PhaseObservations['routed']>, readyEndpoints: number): PhaseStatus {
  const p = r.position;
  if (!p) {
    // Kubernetes mode: the leader writes status per version, without the app's table order.
    if (r.promoted) return status('Promoted', 'TransitionComplete', 'all new traffic goes to this version');
    return status('Serving', 'EndpointsReady', `${readyEndpoints} ready endpoint${readyEndpoints === 1 ? '' : 's'}`);
  }
  // Until the sidecar's first stats arrive, only INSTANT's share is known.
  const share = p.share ?? (p.newest && p.mode === 'INSTANT' ? 1 : 0);
  if (p.newest && (r.promoted || p.mode === 'INSTANT' || p.versions === 1 || share >= 1)) {
    return status('Promoted', 'TransitionComplete', 'all new traffic goes to this version');
  }
  if (share > 0 || p.newest) {
    return status('Serving', p.newest ? 'Transitioning' : 'Superseded', `${Math.round(share * 100)}% of new traffic`);
  }
  return status('Ready', 'Standby', 'ready; kept as the rollback target');
}

/** The rollback metric's reason for entering `next` from `prev`, or undefined when it is not a rollback. */
export function rollbackMetricReason(prev: PhaseStatus | undefined, next: PhaseStatus): 'policy' | 'manual' | 'crash' | 'unready' | 'analysis' | undefined {
  if (prev && isTerminal(prev.phase) && prev.phase === next.phase) return undefined;
  if (next.phase !== 'RolledBack' && next.phase !== 'Failed') return undefined;
  switch (next.reason) {
    case 'FailurePolicy': return 'policy';
    case 'Manual': return 'manual';
    case 'Crashed': return 'crash';
    case 'NotReady':
    case 'CreateFailed': return 'unready';
    case 'AnalysisFailed':
    case 'AnalysisInconclusive': return 'analysis';
    default: return undefined;
  }
}

/** Status timestamp key recorded when a rollout enters `phase` (local mode). */
export function phaseTimestampKey(phase: Phase): string | null {
  switch (phase) {
    case 'Testing': return 'testing';
    case 'Serving': return 'serving';
    case 'Promoted': return 'promoted';
    case 'RolledBack': return 'rolledBack';
    case 'Failed': return 'failed';
    case 'Rejected': return 'rejected';
    case 'Draining': return 'draining';
    default: return null;
  }
}
