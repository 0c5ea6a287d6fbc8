// Pure parts of Kubernetes mode: object names, Deployment/Service construction, ready endpoints, status
// computation, the work queue, JSON/merge patch in the fake apiserver.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { normalizeAppVersion } from '../../controller/load.js';
import { desiredDeployment, desiredService, objectName, readyEndpoints } from '../../controller/kube/deployments.js';
import { computeStatus, currentRollback, promotedFor, sameStatus, servingSinceOf, type StatusInput } from '../../controller/kube/status.js';
import { WorkQueue } from '../../controller/kube/queue.js';
import { applyJsonPatch, mergePatch, parseSelector } from './fake-apiserver.js';
import { dockerAV, endpointSlice, waitFor } from './helpers.js';

function av(spec: Record<string, unknown> = {}, name = 'shop-v1') {
  const raw = dockerAV(name, 'shop', '1.0.0', spec) as { metadata: Record<string, unknown> };
  raw.metadata.uid = 'uid-1';
  raw.metadata.generation = 3;
  return normalizeAppVersion(raw, 'test');
}

test('objectName keeps DNS-1035 names and derives stable, distinct ones otherwise', () => {
  assert.equal(objectName('shop-v1'), 'shop-v1');
  const a = objectName('1shop');
  assert.match(a, /^[a-z]([-a-z0-9]*[a-z0-9])?$/);
  assert.equal(a, objectName('1shop'));
  assert.notEqual(objectName('2shop'), a);
  assert.ok(objectName('a'.repeat(70)).length <= 63);
});

test('desiredDeployment: image, probe, env, resources, owner reference; rolled back scales to zero unless keepFailed', () => {
  const v = av({ docker: { image: 'shop', tag: '1.0.0', containerPort: 3000, replicas: 3, env: { B: '2', A: '1' }, memory: '256Mi', cpuShares: 512, cmd: ['serve'] }, healthCheck: { interval: '5s', timeout: '2s' } });
  const d = desiredDeployment(v, 'ns', { rolledBack: false });
  const c = d.spec!.template.spec!.containers[0]!;
  assert.equal(c.image, 'shop:1.0.0');
  assert.deepEqual(c.env, [{ name: 'A', value: '1' }, { name: 'B', value: '2' }]);
  assert.deepEqual(c.readinessProbe!.tcpSocket, { port: 3000 });
  assert.equal(c.readinessProbe!.periodSeconds, 5);
  assert.equal(c.readinessProbe!.timeoutSeconds, 2);
  assert.deepEqual(c.args, ['serve']);
  assert.equal(c.resources!.limits!.memory, String(256 * 1024 * 1024));
  assert.equal(c.resources!.requests!.cpu, '500m');
  assert.equal(d.spec!.replicas, 3);
  assert.equal(d.metadata!.ownerReferences![0]!.uid, 'uid-1');
  assert.equal(desiredDeployment(v, 'ns', { rolledBack: true }).spec!.replicas, 0);
  const kept = av({ keepFailed: true });
  assert.equal(desiredDeployment(kept, 'ns', { rolledBack: true }).spec!.replicas, 2);
  // Same input, same hash; different input, different hash.
  const h = (x: ReturnType<typeof desiredDeployment>) => x.metadata!.annotations!['molt.dev/desired-hash'];
  assert.equal(h(d), h(desiredDeployment(v, 'ns', { rolledBack: false })));
  assert.notEqual(h(d), h(desiredDeployment(v, 'ns', { rolledBack: true })));
  const s = desiredService(v, 'ns');
  assert.equal(s.spec!.clusterIP, 'None');
  assert.deepEqual(s.spec!.selector, { 'molt.dev/appversion': 'shop-v1' });
});

test('readyEndpoints: only ready, non-terminating endpoints of the named Service, sorted and deduplicated', () => {
  const s1 = endpointSlice('svc', [{ ip: '10.0.0.9', ready: true }, { ip: '10.0.0.2', ready: true }, { ip: '10.0.0.3', ready: false }], 9000);
  const s2 = endpointSlice('svc', [{ ip: '10.0.0.2', ready: true }], 9000);
  const other = endpointSlice('other', [{ ip: '10.0.1.1', ready: true }]);
  const terminating = endpointSlice('svc', []);
  (terminating as { endpoints: unknown[] }).endpoints = [{ addresses: ['10.0.0.7'], conditions: { ready: true, terminating: true } }, { addresses: ['10.0.0.8'] }];
  const eps = readyEndpoints([s1, s2, other, terminating] as never, 'svc', 1);
  assert.deepEqual(eps.map((e) => `${e.host}:${e.port}`), ['10.0.0.2:9000', '10.0.0.8:8080', '10.0.0.9:9000']);
});

test('computeStatus: phases, conditions with stable lastTransitionTime, serving timestamp per generation', () => {
  const base: StatusInput = { generation: 1, current: undefined, runtime: 'docker', deploymentExists: false, readyEndpoints: 0, rollback: undefined, promoted: false, traffic: undefined, now: Date.parse('2030-01-01T00:00:00Z') };
  const pending = computeStatus(base);
  assert.equal(pending.phase, 'Pending');
  const starting = computeStatus({ ...base, current: pending, deploymentExists: true, now: base.now + 1000 });
  assert.equal(starting.phase, 'Starting');
  assert.equal(starting.conditions.find((c) => c.type === 'Ready')!.lastTransitionTime, '2030-01-01T00:00:00.000Z', 'unchanged condition keeps its time');
  const serving = computeStatus({ ...base, current: starting, deploymentExists: true, readyEndpoints: 2, traffic: 0.333, now: base.now + 5000 });
  assert.equal(serving.phase, 'Serving');
  assert.equal(serving.traffic, 0.33);
  assert.equal(serving.timestamps.serving, '2030-01-01T00:00:05.000Z');
  assert.equal(serving.conditions.find((c) => c.type === 'Ready')!.lastTransitionTime, '2030-01-01T00:00:05.000Z');
  assert.equal(servingSinceOf(1, serving), base.now + 5000);
  assert.equal(servingSinceOf(2, serving), undefined, 'a new generation is a new rollout');
  const again = computeStatus({ ...base, current: serving, deploymentExists: true, readyEndpoints: 2, traffic: 0.334, now: base.now + 9000 });
  assert.ok(sameStatus(serving, again), 'nothing changed: nothing to write');
  const rb = computeStatus({ ...base, current: serving, deploymentExists: true, readyEndpoints: 2, rollback: { reason: 'status 500', at: '2030-01-01T00:00:06.000Z' }, now: base.now + 6000 });
  assert.deepEqual([rb.phase, rb.reason, rb.message, rb.traffic], ['RolledBack', 'FailurePolicy', 'status 500', 0]);
  assert.equal(rb.timestamps.rolledBack, '2030-01-01T00:00:06.000Z');
  assert.deepEqual(currentRollback(1, rb, undefined), { reason: 'status 500', at: '2030-01-01T00:00:06.000Z' });
  assert.equal(currentRollback(2, rb, undefined), undefined);
  assert.equal(currentRollback(2, undefined, { 'molt.dev/rollback': JSON.stringify({ epoch: 2, reason: 'x', at: 'now', by: 'r' }) })?.reason, 'x');
  const newGen = computeStatus({ ...base, generation: 2, current: rb, deploymentExists: true, now: base.now + 7000 });
  assert.equal(newGen.phase, 'Starting');
  assert.equal(newGen.timestamps.serving, undefined);
  assert.equal(computeStatus({ ...base, invalid: 'spec.app: required' }).phase, 'Failed');
});

test('computeStatus with a preflight: Testing has no serving stamp; a pass stamps the switch switchDelayMs ahead; Rejected until the user overrides', () => {
  const now = Date.parse('2030-01-01T00:00:00Z');
  const base: StatusInput = { generation: 1, current: undefined, runtime: 'servers', deploymentExists: false, readyEndpoints: 1, rollback: undefined, promoted: false, traffic: undefined, now };
  const testing = computeStatus({ ...base, preflight: {} });
  assert.equal(testing.phase, 'Testing');
  assert.equal(testing.timestamps.serving, undefined, 'never routed while testing');
  assert.equal(testing.timestamps.testing, new Date(now).toISOString());
  const passed = computeStatus({ ...base, current: testing, preflight: { verdict: 'pass' }, switchDelayMs: 1500, now: now + 10_000 });
  assert.equal(passed.phase, 'Serving');
  assert.equal(passed.timestamps.serving, new Date(now + 11_500).toISOString(), 'the switch is stamped ahead');
  assert.equal(servingSinceOf(1, passed), now + 11_500);
  // Without a preflight the stamp is now, as before.
  assert.equal(computeStatus(base).timestamps.serving, new Date(now).toISOString());
  const rejected = computeStatus({ ...base, current: testing, preflight: { verdict: 'fail', reason: 'PreflightErrors', message: '1 error' } });
  assert.deepEqual([rejected.phase, rejected.reason, rejected.timestamps.serving], ['Rejected', 'PreflightErrors', undefined]);
  // Terminal: a later pass does not revive it; the user's override does.
  assert.equal(computeStatus({ ...base, current: rejected, preflight: { verdict: 'pass' } }).phase, 'Rejected');
  const readmitted = computeStatus({ ...base, current: rejected, preflight: { verdict: 'overridden' }, promoteOverride: true });
  assert.deepEqual([readmitted.phase, readmitted.reason, readmitted.timestamps.rejected], ['Pending', 'Readmitted', undefined]);
  assert.equal(computeStatus({ ...base, current: readmitted, preflight: { verdict: 'overridden' } }).phase, 'Serving');
});

test('promotedFor: the promoted annotation applies to the generation it names, or to every one without a name', () => {
  assert.equal(promotedFor(2, undefined), false);
  assert.equal(promotedFor(2, { 'molt.dev/promoted': 'true' }), true);
  assert.equal(promotedFor(2, { 'molt.dev/promoted': 'true', 'molt.dev/promoted-generation': '2' }), true);
  assert.equal(promotedFor(3, { 'molt.dev/promoted': 'true', 'molt.dev/promoted-generation': '2' }), false);
  assert.equal(promotedFor(2, { 'molt.dev/promoted': 'false', 'molt.dev/promoted-generation': '2' }), false);
});

test('WorkQueue merges duplicates, never runs one key twice at once, retries failures with backoff', async () => {
  const running = new Set<string>();
  let overlap = false;
  const runs: string[] = [];
  let failA = 2;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const q = new WorkQueue(async (key) => {
    if (running.has(key)) overlap = true;
    running.add(key);
    runs.push(key);
    if (key === 'b' && runs.filter((k) => k === 'b').length === 1) await gate;
    running.delete(key);
    if (key === 'a' && failA-- > 0) throw new Error('boom');
  }, { backoff: { initialMs: 5, maxMs: 20 } });
  q.start();
  q.add('b');
  q.add('b'); // merged with the queued-then-running b: added while running -> one more run after
  await waitFor('b running', () => runs.includes('b'));
  q.add('b');
  q.add('b');
  q.add('a');
  release();
  await waitFor('a retried to success', () => runs.filter((k) => k === 'a').length === 3);
  await q.idle();
  q.stop();
  assert.equal(overlap, false);
  assert.equal(runs.filter((k) => k === 'b').length, 2);
  assert.equal(q.failures, 2);
});

test('self-test of the double: merge patch (RFC 7386), JSON patch (RFC 6902), label selectors', () => {
  assert.deepEqual(mergePatch({ a: 1, b: { c: 2, d: 3 } }, { b: { c: null, e: 4 }, f: [1] }), { a: 1, b: { d: 3, e: 4 }, f: [1] });
  const doc = applyJsonPatch({ metadata: { annotations: {} }, list: [1, 2] }, [
    { op: 'add', path: '/metadata/annotations/a~1b', value: 'x' },
    { op: 'replace', path: '/list/0', value: 9 },
    { op: 'add', path: '/list/-', value: 3 },
    { op: 'test', path: '/list/1', value: 2 },
  ]);
  assert.deepEqual(doc, { metadata: { annotations: { 'a/b': 'x' } }, list: [9, 2, 3] });
  assert.throws(() => applyJsonPatch({ a: 1 }, [{ op: 'test', path: '/a', value: 2 }]));
  const sel = parseSelector('app=x,tier!=db,managed,!legacy');
  assert.equal(sel({ app: 'x', managed: '' }), true);
  assert.equal(sel({ app: 'x', managed: '', legacy: '1' }), false);
  assert.equal(sel({ app: 'x', tier: 'db', managed: '' }), false);
});

test('WorkQueue: a handler result asks for a requeue-after; a waiting key keeps the earlier time; an error wins', async () => {
  const runs: Array<[string, number]> = [];
  const t0 = Date.now();
  let again = true;
  const q = new WorkQueue(async (key) => {
    runs.push([key, Date.now() - t0]);
    if (key === 'r' && again) {
      again = false;
      return { requeueAfterMs: 60 };
    }
    return undefined;
  });
  q.start();
  q.add('r');
  await waitFor('requeued run', () => runs.filter(([k]) => k === 'r').length === 2);
  assert.ok(runs[1]![1] >= 50, 'not before the requested delay');
  assert.equal(q.delayed, 0);
  q.addAfter('x', 10_000);
  q.addAfter('x', 20);
  await waitFor('the earlier time wins', () => runs.some(([k]) => k === 'x'));
  q.stop();
});

test('startupDeadline: counted from this generation\'s created stamp (at the earliest leadership), sticky once failed', async () => {
  const { startupDeadline, startupTimeoutStatus, isStartupFailure } = await import('../../controller/kube/controller.js');
  const created = Date.parse('2030-01-01T00:00:00Z');
  const status = computeStatus({ generation: 1, current: undefined, runtime: 'docker', deploymentExists: true, readyEndpoints: 0, rollback: undefined, promoted: false, traffic: undefined, now: created });
  assert.deepEqual(startupDeadline(1, status, 60_000, 0, 0, created + 10_000), { failed: false, inMs: 50_000 });
  assert.deepEqual(startupDeadline(1, status, 60_000, 0, created + 30_000, created + 40_000), { failed: false, inMs: 50_000 }, 'time without a leader does not count');
  assert.deepEqual(startupDeadline(1, status, 60_000, 0, 0, created + 60_000), { failed: true, message: 'no instance became ready within 60s' });
  assert.equal(startupDeadline(1, status, 60_000, 1, 0, created + 60_000), undefined, 'ready now');
  assert.deepEqual(startupDeadline(2, status, 60_000, 0, 0, created + 90_000), { failed: false, inMs: 60_000 }, 'a new generation starts over');
  const failed = startupTimeoutStatus(status, status, 'no instance became ready within 60s', created + 60_000);
  assert.ok(isStartupFailure(1, failed));
  assert.equal(startupDeadline(1, failed, 60_000, 3, 0, created + 70_000)?.failed, true, 'sticky for the generation');
  assert.equal(isStartupFailure(2, failed), false);
  const ready = computeStatus({ generation: 1, current: status, runtime: 'docker', deploymentExists: true, readyEndpoints: 1, rollback: undefined, promoted: false, traffic: undefined, now: created + 1000 });
  const unready = computeStatus({ generation: 1, current: ready, runtime: 'docker', deploymentExists: true, readyEndpoints: 0, rollback: undefined, promoted: false, traffic: undefined, now: created + 2000 });
  assert.equal(startupDeadline(1, unready, 60_000, 0, 0, created + 90_000), undefined, 'ready once in this generation: the startup deadline no longer applies');
});
