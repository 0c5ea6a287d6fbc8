// The phase machine (controller/phase.ts), shared by local and Kubernetes mode: one table row per transition.
// A row reads: in phase `from`, the controller observes `obs`, and the rollout goes to `to` with `reason`.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  computePhase,
  INITIAL_PHASE,
  PHASES,
  preflightGate,
  rollbackMetricReason,
  type Phase,
  type PhaseObservations,
  type PhaseReason,
  type PhaseStatus,
  type PreflightRejectReason,
  type TablePosition,
} from '../controller/phase.js';
import { computeStatus, type StatusInput } from '../controller/kube/status.js';

/** A previous status: a phase with the reason it typically has. */
const S: Record<Phase, PhaseStatus> = {
  Pending: { phase: 'Pending', reason: 'Creating', message: 'creating instances' },
  Starting: { phase: 'Starting', reason: 'WaitingForReady', message: 'waiting for an instance to pass its health check' },
  Testing: { phase: 'Testing', reason: 'PreflightRunning', message: 'ready; preflight running (receives no client traffic)' },
  Ready: { phase: 'Ready', reason: 'Standby', message: 'ready; kept as the rollback target' },
  Serving: { phase: 'Serving', reason: 'Transitioning', message: '30% of new traffic' },
  Promoted: { phase: 'Promoted', reason: 'TransitionComplete', message: 'all new traffic goes to this version' },
  RolledBack: { phase: 'RolledBack', reason: 'FailurePolicy', message: 'status 503 (first failure 2030-01-01T00:00:00.000Z)' },
  Failed: { phase: 'Failed', reason: 'NotReady', message: 'no instance became ready within 30s' },
  Rejected: { phase: 'Rejected', reason: 'PreflightMismatch', message: '3 of 200 responses differ' },
  Draining: { phase: 'Draining', reason: 'Deleted', message: 'resource deleted; draining in-flight requests' },
};

const pos = (p: Partial<TablePosition>): TablePosition => ({ newest: true, versions: 2, mode: 'SESSION', share: undefined, ...p });
/** A ready version in the routing table (local mode: with its position). */
const routed = (p: Partial<TablePosition>, promoted = false): PhaseObservations => ({ readyEndpoints: 1, wasReady: true, routed: { promoted, position: pos(p) } });
/** A ready version as Kubernetes mode sees it (no table position). */
const kube = (readyEndpoints: number, promoted = false): PhaseObservations => ({ readyEndpoints, instancesCreated: true, routed: { promoted } });
const pending: PhaseObservations['preflight'] = {};

interface Row {
  from: PhaseStatus | undefined;
  obs: PhaseObservations;
  to: Phase;
  reason: PhaseReason | string;
  /** Expected message (substring), when it matters. */
  message?: string;
  why: string;
}

const REJECT_REASONS: PreflightRejectReason[] = ['PreflightMismatch', 'PreflightErrors', 'PreflightLatency', 'HookFailed', 'NoTraffic'];

const ROWS: Row[] = [
  // A rollout starts (first seen, spec changed): whatever came before no longer applies.
  { from: undefined, obs: {}, to: 'Pending', reason: 'Created', why: 'first seen' },
  { from: S.RolledBack, obs: { newRollout: true }, to: 'Pending', reason: 'Created', why: 'a spec change re-admits a rolled-back version' },
  { from: S.Rejected, obs: { newRollout: true }, to: 'Pending', reason: 'Created', why: 'a spec change tests again' },
  { from: S.Failed, obs: { newRollout: true, instancesCreated: true, readyEndpoints: 0 }, to: 'Starting', reason: 'WaitingForReady', why: 'a new rollout is judged on its own observations' },

  // 1. Spec problems, re-checked every time.
  { from: S.Serving, obs: { invalidSpec: 'spec.app: required' }, to: 'Failed', reason: 'InvalidSpec', message: 'spec.app: required', why: 'invalid spec' },
  { from: S.RolledBack, obs: { invalidSpec: 'bad' }, to: 'Failed', reason: 'InvalidSpec', why: 'spec checks come before stickiness' },
  { from: undefined, obs: { unsupportedRuntime: 'no process runtime here' }, to: 'Failed', reason: 'UnsupportedRuntime', why: 'unsupported runtime' },
  { from: { phase: 'Failed', reason: 'InvalidSpec', message: 'bad' }, obs: kube(1), to: 'Serving', reason: 'EndpointsReady', why: 'a spec the controller now accepts is not held Failed' },

  // 2. Terminal phases stay, unless the user re-admits the version.
  { from: S.RolledBack, obs: { promoteOverride: true }, to: 'Pending', reason: 'Readmitted', why: 'molt promote APP VERSION re-admits a rolled-back version' },
  { from: S.Failed, obs: { promoteOverride: true }, to: 'Pending', reason: 'Readmitted', why: 're-admits a failed version' },
  { from: S.Rejected, obs: { promoteOverride: true }, to: 'Pending', reason: 'Readmitted', why: 'promote on Rejected: the operator overrides the preflight' },
  { from: S.RolledBack, obs: { crashed: { index: 1, exitCode: 3 } }, to: 'RolledBack', reason: 'FailurePolicy', message: '; instance 1 exited with code 3', why: 'the exit code is added to the reason shown' },
  { from: { ...S.RolledBack, message: 'instance 0 exited with code 1' }, obs: { crashed: { index: 1, exitCode: 3 } }, to: 'RolledBack', reason: 'FailurePolicy', message: 'instance 0 exited with code 1', why: 'said once' },
  { from: S.RolledBack, obs: { failureReported: 'later report' }, to: 'RolledBack', reason: 'FailurePolicy', message: 'status 503', why: 'a later report does not rewrite the rollback' },
  { from: S.Promoted, obs: { manualRollback: true }, to: 'RolledBack', reason: 'Manual', why: 'molt rollback' },
  { from: S.RolledBack, obs: { manualRollback: true }, to: 'RolledBack', reason: 'FailurePolicy', why: 'already rolled back' },
  { from: S.Serving, obs: { analysisRollback: { reason: 'AnalysisFailed', message: 'latency: p50 62 ms vs 21 ms' } }, to: 'RolledBack', reason: 'AnalysisFailed', message: 'latency: p50 62 ms vs 21 ms', why: 'canary analysis: the verdict is the message' },
  { from: S.Serving, obs: { analysisRollback: { reason: 'AnalysisInconclusive', message: 'step 1 inconclusive for 300s' } }, to: 'RolledBack', reason: 'AnalysisInconclusive', why: 'onInconclusive: rollback after maxHold' },
  { from: S.RolledBack, obs: { analysisRollback: { reason: 'AnalysisFailed', message: 'later' } }, to: 'RolledBack', reason: 'FailurePolicy', why: 'a later verdict does not rewrite a rollback' },
  { from: S.Failed, obs: kube(2, true), to: 'Failed', reason: 'NotReady', why: 'ready endpoints do not revive a failed rollout' },
  { from: S.RolledBack, obs: { deleted: true }, to: 'RolledBack', reason: 'FailurePolicy', why: 'a deleted rolled-back version stays RolledBack while it drains' },
  { from: S.Rejected, obs: { ...kube(1), preflight: { verdict: 'pass' } }, to: 'Rejected', reason: 'PreflightMismatch', why: 'a rejection is durable' },

  // 3–7. Events.
  { from: S.Serving, obs: { failureReported: 'status 503' }, to: 'RolledBack', reason: 'FailurePolicy', message: 'status 503', why: 'the sidecar tripped the failure policy' },
  { from: S.Promoted, obs: { ...kube(2), failureReported: 'reset' }, to: 'RolledBack', reason: 'FailurePolicy', why: 'a failure beats ready endpoints' },
  { from: S.Serving, obs: { crashed: { index: 0, exitCode: 1 }, newestWithFallback: true, wasReady: true }, to: 'RolledBack', reason: 'Crashed', message: 'instance 0 exited with code 1', why: 'the newest version crashed and an older one can serve' },
  { from: S.Starting, obs: { crashed: { index: 0, exitCode: 1 }, wasReady: false }, to: 'Failed', reason: 'Crashed', message: 'before becoming ready', why: 'crashed before it was ever ready' },
  { from: S.Starting, obs: { crashed: { index: 2 } }, to: 'Failed', reason: 'Crashed', message: 'instance 2 exited before becoming ready', why: 'no exit code known' },
  { from: S.Promoted, obs: { crashed: { index: 0, exitCode: 137 }, wasReady: true }, to: 'Promoted', reason: 'TransitionComplete', why: 'the only version: the instance is restarted' },
  { from: S.Ready, obs: { crashed: { index: 0, exitCode: 1 }, wasReady: true, newestWithFallback: false }, to: 'Ready', reason: 'Standby', why: 'an older version: restarted' },
  { from: S.Starting, obs: { createFailed: 'port is already allocated' }, to: 'Failed', reason: 'CreateFailed', message: 'port is already allocated', why: 'could not create an instance' },
  { from: S.Serving, obs: { createFailed: 'name in use', wasReady: true }, to: 'Serving', reason: 'Transitioning', why: 'a version that served keeps serving; creation is retried' },
  { from: S.Serving, obs: { deleted: true }, to: 'Draining', reason: 'Deleted', why: 'resource deleted' },
  { from: S.Ready, obs: { deleted: true }, to: 'Draining', reason: 'Deleted', why: 'resource deleted (standby)' },
  { from: S.Starting, obs: { deleted: true }, to: 'Draining', reason: 'Deleted', why: 'resource deleted before ready' },
  { from: S.Testing, obs: { deleted: true }, to: 'Draining', reason: 'Deleted', why: 'resource deleted under preflight' },
  { from: S.Draining, obs: { deleted: true }, to: 'Draining', reason: 'Deleted', why: 'still draining' },

  // 8. Preflight verdicts (one row per reject reason).
  ...REJECT_REASONS.map((reason): Row => ({
    from: S.Testing, obs: { ...kube(1), preflight: { verdict: 'fail', reason, message: `failed: ${reason}` } }, to: 'Rejected', reason, message: `failed: ${reason}`, why: `preflight fails: ${reason}`,
  })),
  { from: S.Testing, obs: { ...routed({ mode: 'GRADUAL', share: 0 }), preflight: { verdict: 'pass' } }, to: 'Serving', reason: 'Transitioning', why: 'preflight passes: the transition starts' },
  { from: S.Testing, obs: { ...routed({ mode: 'INSTANT' }), preflight: { verdict: 'overridden' } }, to: 'Promoted', reason: 'TransitionComplete', why: 'promoted past its preflight earlier' },
  { from: S.Testing, obs: { ...routed({ mode: 'INSTANT' }), preflight: pending, promoteOverride: true }, to: 'Promoted', reason: 'TransitionComplete', why: 'molt promote on Testing skips the gate' },
  { from: S.Testing, obs: { ...kube(1), preflight: { verdict: 'pass' } }, to: 'Serving', reason: 'EndpointsReady', why: 'preflight passes (Kubernetes mode)' },

  // 9. Not ready yet.
  { from: S.Pending, obs: { readyEndpoints: 0, instancesCreated: false }, to: 'Pending', reason: 'Creating', why: 'no instance yet' },
  { from: INITIAL_PHASE, obs: { readyEndpoints: 0, instancesCreated: true }, to: 'Starting', reason: 'WaitingForReady', why: 'instances created, none ready' },
  { from: S.Starting, obs: { readyEndpoints: 0, instancesCreated: true, startup: { elapsedMs: 30_001, timeoutMs: 30_000 } }, to: 'Failed', reason: 'NotReady', message: 'within 30s', why: 'startup timeout elapsed' },
  { from: S.Pending, obs: { readyEndpoints: 0, instancesCreated: false, startup: { elapsedMs: 60_000, timeoutMs: 5_000 } }, to: 'Failed', reason: 'NotReady', why: 'startup timeout elapsed without instances' },
  { from: S.Starting, obs: { readyEndpoints: 0, instancesCreated: true, startup: { elapsedMs: 30_000, timeoutMs: 30_000 } }, to: 'Starting', reason: 'WaitingForReady', why: 'not yet elapsed' },
  { from: S.Starting, obs: { readyEndpoints: 0, instancesCreated: true, preflight: pending }, to: 'Starting', reason: 'WaitingForReady', why: 'a preflight starts only once ready' },
  { from: S.Promoted, obs: { readyEndpoints: 0, wasReady: true, instancesCreated: true, startup: { elapsedMs: 1e9, timeoutMs: 1 } }, to: 'Promoted', reason: 'TransitionComplete', why: 'was ready (local mode): keeps its phase while an instance restarts' },
  { from: S.Serving, obs: { readyEndpoints: 0, instancesCreated: true }, to: 'Starting', reason: 'WaitingForReady', why: 'Kubernetes mode: no ready endpoints now' },
  { from: S.Starting, obs: {}, to: 'Starting', reason: 'WaitingForReady', why: 'nothing observed: unchanged' },

  // 10. Ready under preflight.
  { from: S.Starting, obs: { ...routed({}), preflight: pending }, to: 'Testing', reason: 'PreflightRunning', why: 'healthy, preflight configured: no client traffic yet' },
  { from: S.Starting, obs: { ...kube(1), preflight: pending }, to: 'Testing', reason: 'PreflightRunning', why: 'the same in Kubernetes mode' },
  { from: S.Testing, obs: { ...kube(1), preflight: pending }, to: 'Testing', reason: 'PreflightRunning', why: 'still testing' },

  // 11. Routed, table position known (local mode).
  { from: S.Starting, obs: routed({ versions: 1 }), to: 'Promoted', reason: 'TransitionComplete', why: 'the only version of its app' },
  { from: S.Starting, obs: routed({ mode: 'INSTANT' }), to: 'Promoted', reason: 'TransitionComplete', why: 'INSTANT takes all new traffic at once' },
  { from: S.Starting, obs: routed({ mode: 'GRADUAL', share: 0.3 }), to: 'Serving', reason: 'Transitioning', message: '30% of new traffic', why: 'GRADUAL under way' },
  { from: S.Serving, obs: routed({ mode: 'GRADUAL', share: 1 }), to: 'Promoted', reason: 'TransitionComplete', why: 'GRADUAL reached 100%' },
  { from: S.Serving, obs: routed({ mode: 'SESSION', share: 0.6 }, true), to: 'Promoted', reason: 'TransitionComplete', why: 'promoted by the user (or a finished GRADUAL, recorded)' },
  { from: S.Starting, obs: routed({ mode: 'SESSION' }), to: 'Serving', reason: 'Transitioning', message: '0% of new traffic', why: 'SESSION, before the first stats' },
  { from: S.Starting, obs: routed({ mode: 'CONCURRENT', share: 0.5 }), to: 'Serving', reason: 'Transitioning', why: 'CONCURRENT' },
  { from: S.Promoted, obs: routed({ newest: false, share: 0.4 }), to: 'Serving', reason: 'Superseded', message: '40% of new traffic', why: 'a newer version exists; this one still has sessions' },
  { from: S.Promoted, obs: routed({ newest: false, share: 0 }), to: 'Ready', reason: 'Standby', why: 'superseded: kept as the rollback target' },
  { from: S.Serving, obs: routed({ newest: false, mode: 'INSTANT' }), to: 'Ready', reason: 'Standby', why: "INSTANT's assumed share is the newest's only" },
  { from: S.Ready, obs: routed({ newest: true, mode: 'INSTANT' }), to: 'Promoted', reason: 'TransitionComplete', why: 'the newer version was rolled back: this one is newest again' },
  { from: S.Serving, obs: routed({ mode: 'SESSION', share: 0.5 }), to: 'Serving', reason: 'Transitioning', message: '50% of new traffic', why: 'share changes only the message' },

  // 11. Routed, no table position (Kubernetes mode).
  { from: S.Starting, obs: kube(2), to: 'Serving', reason: 'EndpointsReady', message: '2 ready endpoints', why: 'ready endpoints' },
  { from: S.Starting, obs: kube(1), to: 'Serving', reason: 'EndpointsReady', message: '1 ready endpoint', why: 'one ready endpoint' },
  { from: S.Serving, obs: kube(1, true), to: 'Promoted', reason: 'TransitionComplete', why: 'promoted (annotation)' },
  { from: S.Promoted, obs: kube(1, false), to: 'Serving', reason: 'EndpointsReady', why: 'promotion withdrawn' },

  // 12. Ready but not routed: unchanged.
  { from: S.Starting, obs: { readyEndpoints: 1, instancesCreated: true }, to: 'Starting', reason: 'WaitingForReady', why: 'not in the routing table yet' },
];

for (const row of ROWS) {
  const from = row.from ? `${row.from.phase}(${row.from.reason})` : '(none)';
  test(`${from} + ${Object.keys(row.obs).join(',') || 'nothing'} → ${row.to}(${row.reason}): ${row.why}`, () => {
    const next = computePhase(row.from, row.obs);
    assert.equal(next.phase, row.to);
    assert.equal(next.reason, row.reason);
    if (row.message) assert.ok(next.message.includes(row.message), `message ${JSON.stringify(next.message)} should contain ${JSON.stringify(row.message)}`);
  });
}

test('the table covers every phase as a source and a target, and every reason the machine can give', () => {
  const sources = new Set(ROWS.map((r) => r.from?.phase).filter(Boolean));
  const targets = new Set(ROWS.map((r) => r.to));
  for (const p of PHASES) {
    assert.ok(sources.has(p), `no row leaves ${p}`);
    assert.ok(targets.has(p), `no row enters ${p}`);
  }
  const reasons: PhaseReason[] = [
    'Created', 'Creating', 'WaitingForReady', 'PreflightRunning', 'Transitioning', 'Superseded', 'Standby', 'TransitionComplete',
    'EndpointsReady', 'Deleted', 'Readmitted', 'FailurePolicy', 'Manual', 'Crashed', 'CreateFailed', 'NotReady', 'InvalidSpec',
    'UnsupportedRuntime', ...REJECT_REASONS,
  ];
  const produced = new Set(ROWS.map((r) => r.reason));
  for (const r of reasons) assert.ok(produced.has(r), `no row produces reason ${r}`);
});

test('an unchanged status is returned as the same object (callers skip timestamps, metrics, writes)', () => {
  const prev = { ...S.Serving };
  assert.equal(computePhase(prev, routed({ mode: 'SESSION', share: 0.3 })), prev);
  assert.equal(computePhase(prev, {}), prev);
  assert.notEqual(computePhase(prev, routed({ mode: 'SESSION', share: 0.4 })), prev);
  assert.deepEqual(computePhase(undefined, {}), INITIAL_PHASE);
});

test('preflightGate: only an open gate lets a ready version take client traffic', () => {
  assert.equal(preflightGate(undefined), 'open', 'no preflight: behaves as before');
  assert.equal(preflightGate({}), 'testing');
  assert.equal(preflightGate({ verdict: 'pass' }), 'open');
  assert.equal(preflightGate({ verdict: 'overridden' }), 'open');
  assert.equal(preflightGate({ verdict: 'fail', reason: 'NoTraffic' }), 'rejected');
  assert.equal(preflightGate({}, true), 'open', 'molt promote skips the gate');
});

test('rollbackMetricReason: counted once, when a rollout enters RolledBack/Failed', () => {
  const cases: Array<[PhaseStatus | undefined, PhaseStatus, string | undefined]> = [
    [S.Serving, { phase: 'RolledBack', reason: 'FailurePolicy', message: '' }, 'policy'],
    [S.Promoted, { phase: 'RolledBack', reason: 'Manual', message: '' }, 'manual'],
    [S.Serving, { phase: 'RolledBack', reason: 'Crashed', message: '' }, 'crash'],
    [S.Starting, { phase: 'Failed', reason: 'Crashed', message: '' }, 'crash'],
    [S.Starting, { phase: 'Failed', reason: 'NotReady', message: '' }, 'unready'],
    [S.Starting, { phase: 'Failed', reason: 'CreateFailed', message: '' }, 'unready'],
    [S.Serving, { phase: 'RolledBack', reason: 'AnalysisFailed', message: '' }, 'analysis'],
    [S.Serving, { phase: 'RolledBack', reason: 'AnalysisInconclusive', message: '' }, 'analysis'],
    [undefined, { phase: 'Failed', reason: 'InvalidSpec', message: '' }, undefined],
    [S.RolledBack, { ...S.RolledBack, message: 'more detail' }, undefined],
    [S.Testing, { phase: 'Rejected', reason: 'HookFailed', message: '' }, undefined],
    [S.Starting, S.Serving, undefined],
  ];
  for (const [prev, next, want] of cases) assert.equal(rollbackMetricReason(prev, next), want, `${prev?.phase}→${next.phase}(${next.reason})`);
});

// Kubernetes mode goes through the same machine: computeStatus adds conditions and timestamps around it.
const base: StatusInput = { generation: 1, current: undefined, runtime: 'docker', deploymentExists: true, readyEndpoints: 0, rollback: undefined, promoted: false, traffic: undefined, now: Date.parse('2030-01-01T00:00:00Z') };

test('Kubernetes mode: a startup timeout fails the rollout, and the failure holds for that generation', () => {
  const failed = computeStatus({ ...base, startup: { elapsedMs: 31_000, timeoutMs: 30_000 } });
  assert.deepEqual([failed.phase, failed.reason], ['Failed', 'NotReady']);
  assert.ok(failed.timestamps.failed);
  const later = computeStatus({ ...base, current: failed, readyEndpoints: 2, now: base.now + 5000 });
  assert.deepEqual([later.phase, later.traffic, later.timestamps.serving], ['Failed', 0, undefined], 'not admitted to routing');
  const next = computeStatus({ ...base, generation: 2, current: failed, readyEndpoints: 2, now: base.now + 6000 });
  assert.equal(next.phase, 'Serving', 'a new generation is a new rollout');
});

test('Kubernetes mode: Testing is ready but not admitted to routing (no serving stamp, no traffic); a pass admits it', () => {
  const testing = computeStatus({ ...base, readyEndpoints: 2, traffic: 0.5, preflight: {} });
  assert.deepEqual([testing.phase, testing.reason, testing.traffic], ['Testing', 'PreflightRunning', 0]);
  assert.equal(testing.timestamps.serving, undefined);
  assert.ok(testing.timestamps.ready);
  const rejected = computeStatus({ ...base, current: testing, readyEndpoints: 2, preflight: { verdict: 'fail', reason: 'PreflightLatency', message: 'p95 3.1x' } });
  assert.deepEqual([rejected.phase, rejected.reason, rejected.message, rejected.traffic], ['Rejected', 'PreflightLatency', 'p95 3.1x', 0]);
  const passed = computeStatus({ ...base, current: testing, readyEndpoints: 2, preflight: { verdict: 'pass' }, now: base.now + 1000 });
  assert.equal(passed.phase, 'Serving');
  assert.equal(passed.timestamps.serving, '2030-01-01T00:00:03.000Z', 'the atomic switch: stamped 2 s (DEFAULT_SWITCH_DELAY_MS) after the pass');
});

test('Kubernetes mode without preflight: the same phases as before (Pending → Starting → Serving → Promoted → RolledBack)', () => {
  const p = computeStatus({ ...base, deploymentExists: false });
  const s = computeStatus({ ...base, current: p });
  const v = computeStatus({ ...base, current: s, readyEndpoints: 1 });
  const pr = computeStatus({ ...base, current: v, readyEndpoints: 1, promoted: true });
  const rb = computeStatus({ ...base, current: pr, readyEndpoints: 1, promoted: true, rollback: { reason: 'status 500', at: '2030-01-01T00:00:09.000Z' } });
  assert.deepEqual([p, s, v, pr, rb].map((x) => x.phase), ['Pending', 'Starting', 'Serving', 'Promoted', 'RolledBack']);
  assert.equal(rb.timestamps.rolledBack, '2030-01-01T00:00:09.000Z');
});
