import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRoutingState } from '../sidecar/routing.js';
import { cookieValue, parseBucket } from '../sidecar/cookies.js';
import {
  DEFAULT_FAILURE_POLICY,
  DEFAULT_TRANSITION,
  type FailureMessage,
  type RouteApp,
  type RouteVersion,
  type RoutingTable,
  type TransitionConfig,
} from '../common/protocol.js';

function ver(id: string, version: string, transition: Partial<TransitionConfig> = {}, extra: Partial<RouteVersion> = {}): RouteVersion {
  return {
    id,
    version,
    epoch: 1,
    state: 'serving',
    transition: { ...DEFAULT_TRANSITION, ...transition },
    failurePolicy: { ...DEFAULT_FAILURE_POLICY },
    endpoints: [{ host: '127.0.0.1', port: 1000 + Number(version.replace(/\D/g, '')) }],
    servingSince: 1_000_000,
    promoted: false,
    ...extra,
  };
}

function app(versions: RouteVersion[], extra: Partial<RouteApp> = {}): RouteApp {
  return { name: 'shop', hosts: ['shop.example'], default: true, versionCookie: 'mv', bucketCookie: 'mb', versions, ...extra };
}

function table(apps: RouteApp[], revision = 1): RoutingTable {
  return { revision, apps };
}

function clock(start = 2_000_000) {
  const c = { t: start, now: () => c.t };
  return c;
}

test('cookie lookup: exact names only, trims, quotes', () => {
  assert.equal(cookieValue('a=1; mv=shop-v2; b=2', 'mv'), 'shop-v2');
  assert.equal(cookieValue('xmv=no; mv=yes', 'mv'), 'yes');
  assert.equal(cookieValue('a=mv=no', 'mv'), undefined);
  assert.equal(cookieValue('mv="q"', 'mv'), 'q');
  assert.equal(cookieValue('mv=last ', 'mv'), 'last');
  assert.equal(cookieValue(undefined, 'mv'), undefined);
  assert.equal(cookieValue('mvx=1', 'mv'), undefined);
  assert.equal(parseBucket('42'), 42);
  assert.equal(parseBucket('100'), -1);
  assert.equal(parseBucket('x'), -1);
});

test('INSTANT: everything to the newest, fallback previous, session cookie without expiry', () => {
  const r = createRoutingState();
  // deliberately oldest first: the state sorts defensively
  r.apply(table([app([ver('shop-v1', '1.9'), ver('shop-v2', '1.10')])]));
  assert.equal(r.revision, 1);
  const d = r.route('shop.example', 'mv=shop-v1', 'GET')!;
  assert.equal(d.primary.id, 'shop-v2');
  assert.equal(d.fallback?.id, 'shop-v1');
  assert.equal(d.shadow, null);
  // The version cookie is set in every mode, as a browser-session cookie (no expiry) outside SESSION.
  assert.match(d.responseHeaders(d.primary), /^Set-Cookie: mv=shop-v\d; Path=\/; HttpOnly; SameSite=Lax\r\n$/);
  assert.deepEqual(d.primary.endpointKeys, ['127.0.0.1:1110']);
  assert.equal(d.primary.nextEndpoint(), 0);
  assert.ok(d.primary.isFailureStatus(503));
  assert.ok(!d.primary.isFailureStatus(501));
  assert.ok(!d.primary.isFailureStatus(404));
  // the same prebuilt decision every time: no per-request allocation
  assert.equal(r.route('shop.example', undefined, 'GET'), d);
});

test('host matching: case, port, default app, no match', () => {
  const r = createRoutingState();
  const other = app([ver('blog-v1', '1.0')], { name: 'blog', hosts: ['blog.example'], default: false });
  r.apply(table([app([ver('shop-v1', '1.0')], { default: false }), other]));
  assert.equal(r.route('BLOG.Example:8080', undefined, 'GET')!.primary.id, 'blog-v1');
  assert.equal(r.route('shop.example', undefined, 'GET')!.primary.id, 'shop-v1');
  assert.equal(r.route('nope.example', undefined, 'GET'), null);
  assert.equal(r.route(undefined, undefined, 'GET'), null);
  r.apply(table([app([ver('shop-v1', '1.0')], { default: true }), other], 2));
  assert.equal(r.route('nope.example', undefined, 'GET')!.primary.id, 'shop-v1');
  assert.equal(r.route(undefined, undefined, 'GET')!.primary.id, 'shop-v1');
});

test('no table: route returns null', () => {
  assert.equal(createRoutingState().route('x', undefined, 'GET'), null);
});

test('SESSION: cookie keeps the client, Max-Age refreshed, no cookie goes to newest', () => {
  const r = createRoutingState();
  r.apply(table([app([ver('shop-v2', '2.0', { mode: 'SESSION', sessionTimeoutSeconds: 60 }), ver('shop-v1', '1.0')])]));
  const fresh = r.route('shop.example', undefined, 'GET')!;
  assert.equal(fresh.primary.id, 'shop-v2');
  assert.equal(fresh.responseHeaders(fresh.primary), 'Set-Cookie: mv=shop-v2; Max-Age=60; Path=/; HttpOnly; SameSite=Lax\r\n');
  const old = r.route('shop.example', 'other=1; mv=shop-v1', 'GET')!;
  assert.equal(old.primary.id, 'shop-v1');
  // refreshed on every response, so the client only moves after being idle sessionTimeout
  assert.equal(old.responseHeaders(old.primary), 'Set-Cookie: mv=shop-v1; Max-Age=60; Path=/; HttpOnly; SameSite=Lax\r\n');
  assert.equal(old.fallback?.id, 'shop-v2');
  // the cookie expired in the browser (absent): the client moves to the newest
  assert.equal(r.route('shop.example', 'other=1', 'GET')!.primary.id, 'shop-v2');
  // unknown version in cookie: newest
  assert.equal(r.route('shop.example', 'mv=shop-v0', 'GET')!.primary.id, 'shop-v2');
  // answered by the fallback: the cookie names who answered
  assert.equal(fresh.responseHeaders(fresh.fallback!), 'Set-Cookie: mv=shop-v1; Max-Age=60; Path=/; HttpOnly; SameSite=Lax\r\n');
});

test('draining and rolledBack versions get no new requests; draining cookies go to the newest', () => {
  const r = createRoutingState();
  r.apply(table([app([
    ver('shop-v3', '3.0', { mode: 'SESSION' }, { state: 'rolledBack' }),
    ver('shop-v2', '2.0', { mode: 'SESSION' }),
    ver('shop-v1', '1.0', {}, { state: 'draining' }),
  ])]));
  assert.equal(r.route('shop.example', undefined, 'GET')!.primary.id, 'shop-v2');
  assert.equal(r.route('shop.example', 'mv=shop-v1', 'GET')!.primary.id, 'shop-v2');
  assert.equal(r.route('shop.example', 'mv=shop-v3', 'GET')!.primary.id, 'shop-v2');
  assert.equal(r.route('shop.example', undefined, 'GET')!.fallback, null);
});

test('GRADUAL per request: threshold rises by percentagePerRequest; bucket cookie issued once', () => {
  let rnd = 0.5; // bucket 50
  const r = createRoutingState({ random: () => rnd });
  r.apply(table([app([ver('shop-v2', '2.0', { mode: 'GRADUAL', percentagePerRequest: 10 }), ver('shop-v1', '1.0')])]));
  assert.equal(r.threshold('shop'), 0);
  const first = r.route('shop.example', undefined, 'GET')!;
  assert.equal(first.primary.id, 'shop-v1');
  assert.match(first.responseHeaders(first.primary), /Set-Cookie: mb=50; Max-Age=\d+; Path=\/; HttpOnly; SameSite=Lax\r\n/);
  assert.equal(r.threshold('shop'), 10);
  // client now has its bucket: no bucket cookie again
  const second = r.route('shop.example', 'mb=50; mv=shop-v1', 'GET')!;
  assert.equal(second.primary.id, 'shop-v1');
  assert.ok(!second.responseHeaders(second.primary).includes('mb='));
  // bucket 5 < threshold 20 goes to the newest
  assert.equal(r.route('shop.example', 'mb=5', 'GET')!.primary.id, 'shop-v2');
  // 3 routed so far -> threshold 30; bucket 50 stays until threshold passes 50
  for (let i = 0; i < 2; i++) assert.equal(r.route('shop.example', 'mb=50', 'GET')!.primary.id, 'shop-v1');
  assert.equal(r.threshold('shop'), 50);
  assert.equal(r.route('shop.example', 'mb=50', 'GET')!.primary.id, 'shop-v1'); // 50 < 50 is false
  const moved = r.route('shop.example', 'mb=50', 'GET')!; // threshold 60
  assert.equal(moved.primary.id, 'shop-v2');
  assert.equal(moved.responseHeaders(moved.primary), 'Set-Cookie: mv=shop-v2; Path=/; HttpOnly; SameSite=Lax\r\n');
  // a client that moved stays moved even with a high bucket
  assert.equal(r.route('shop.example', 'mb=99; mv=shop-v2', 'GET')!.primary.id, 'shop-v2');
  // new client, random bucket below threshold: straight to the newest with a bucket cookie
  rnd = 0.01;
  const lucky = r.route('shop.example', undefined, 'GET')!;
  assert.equal(lucky.primary.id, 'shop-v2');
  assert.match(lucky.responseHeaders(lucky.primary), /mb=1;/);
  const st = r.stats();
  assert.ok(Math.abs(st.find((s) => s.versionId === 'shop-v2')!.trafficShare - 0.9) < 1e-9);
  // completes at 100
  for (let i = 0; i < 5; i++) r.route('shop.example', 'mb=99', 'GET');
  assert.equal(r.threshold('shop'), 100);
  assert.equal(r.route('shop.example', 'mb=99', 'GET')!.primary.id, 'shop-v2');
  assert.equal(r.stats().find((s) => s.versionId === 'shop-v2')!.trafficShare, 1);
});

test('GRADUAL by steps: weight from servingSince, last step holds', () => {
  const c = clock(1_000_000);
  const r = createRoutingState({ now: c.now, random: () => 0.3 });
  const steps = [{ weight: 10, pauseMs: 1000 }, { weight: 40, pauseMs: 1000 }, { weight: 80 }];
  r.apply(table([app([ver('shop-v2', '2.0', { mode: 'GRADUAL', steps }, { servingSince: 1_000_000 }), ver('shop-v1', '1.0')])]));
  assert.equal(r.threshold('shop'), 10);
  assert.equal(r.route('shop.example', 'mb=30', 'GET')!.primary.id, 'shop-v1');
  assert.equal(r.route('shop.example', 'mb=9', 'GET')!.primary.id, 'shop-v2');
  c.t += 1000;
  assert.equal(r.threshold('shop'), 40);
  assert.equal(r.route('shop.example', 'mb=30', 'GET')!.primary.id, 'shop-v2');
  c.t += 1_000_000;
  assert.equal(r.threshold('shop'), 80);
  assert.equal(r.route('shop.example', 'mb=85', 'GET')!.primary.id, 'shop-v1');
  // no per-request progress when only steps are configured
  assert.equal(r.progress('shop-v2'), 0);
});

// Canary analysis (issue 12): the controller owns step advancement and sends the step it holds.
test('GRADUAL by steps under analysis: currentStep holds its weight, is clamped, moves only with a new table', () => {
  const c = clock(1_000_000);
  const r = createRoutingState({ now: c.now, random: () => 0.3 });
  const steps = [{ weight: 10, pauseMs: 1000 }, { weight: 40, pauseMs: 1000 }, { weight: 80 }];
  const gradual = (extra: Partial<RouteVersion>, revision: number) =>
    r.apply(table([app([ver('shop-v2', '2.0', { mode: 'GRADUAL', steps }, { servingSince: 1_000_000, ...extra }), ver('shop-v1', '1.0')])], revision));
  const share = () => r.stats().find((s) => s.versionId === 'shop-v2')!.trafficShare;

  const rows: Array<{ name: string; currentStep?: number; at: number; want: number }> = [
    // held: step 0 long after its pause would have ended on the sidecar's clock
    { name: 'step 0 held past its pause', currentStep: 0, at: 1_000_000 + 5000, want: 10 },
    { name: 'step 1 held, pauses ignored', currentStep: 1, at: 1_000_000 + 1_000_000, want: 40 },
    { name: 'step 1 held even before step 0 would end', currentStep: 1, at: 1_000_000, want: 40 },
    { name: 'last step', currentStep: 2, at: 1_000_000, want: 80 },
    { name: 'past the last step: clamped to it', currentStep: 7, at: 1_000_000, want: 80 },
    { name: 'negative: clamped to the first', currentStep: -3, at: 1_000_000 + 5000, want: 10 },
    { name: 'fraction: the step it is in', currentStep: 1.6, at: 1_000_000, want: 40 },
    // absent: today's behaviour, the clock from servingSince
    { name: 'absent: step 0 by the clock', at: 1_000_000 + 500, want: 10 },
    { name: 'absent: step 1 by the clock', at: 1_000_000 + 1500, want: 40 },
    { name: 'absent: last step by the clock', at: 1_000_000 + 1_000_000, want: 80 },
  ];
  let revision = 1;
  for (const row of rows) {
    c.t = row.at;
    gradual(row.currentStep === undefined ? {} : { currentStep: row.currentStep }, revision++);
    assert.equal(r.threshold('shop'), row.want, row.name);
    assert.ok(Math.abs(share() - row.want / 100) < 1e-9, `${row.name}: trafficShare`);
  }

  // A held step does not move with time; a new table moves it, and the routing follows at once.
  c.t = 1_000_000;
  gradual({ currentStep: 0 }, revision++);
  assert.equal(r.route('shop.example', 'mb=30', 'GET')!.primary.id, 'shop-v1');
  c.t += 10_000_000;
  assert.equal(r.threshold('shop'), 10, 'still step 0 however long it is held');
  assert.equal(r.route('shop.example', 'mb=30', 'GET')!.primary.id, 'shop-v1');
  gradual({ currentStep: 1 }, revision++);
  assert.equal(r.threshold('shop'), 40);
  assert.equal(r.route('shop.example', 'mb=30', 'GET')!.primary.id, 'shop-v2');
  assert.equal(r.route('shop.example', 'mb=45', 'GET')!.primary.id, 'shop-v1');
  // the controller drops currentStep (analysis switched off): back to the clock, long past every pause
  gradual({}, revision++);
  assert.equal(r.threshold('shop'), 80);
  // promoted overrides a held step (molt promote --full)
  gradual({ currentStep: 0, promoted: true }, revision++);
  assert.equal(r.route('shop.example', 'mb=99', 'GET')!.primary.id, 'shop-v2');
});

test('analysis samples: recorded per version, kept across tables, absent when switched off', () => {
  const r = createRoutingState();
  const tbl = (revision: number, v2Epoch = 1) => table([app([ver('shop-v2', '2.0', {}, { epoch: v2Epoch }), ver('shop-v1', '1.0')])], revision);
  r.apply(tbl(1));
  const d = r.route('shop.example', undefined, 'GET')!;
  const s2 = d.primary.samples!;
  const s1 = d.fallback!.samples!;
  s2.response(200, 1500);
  s2.response(500, 40_000);
  s2.noResponse++;
  s1.response(200, 900);
  r.apply(tbl(2));
  const d2 = r.route('shop.example', undefined, 'GET')!;
  assert.equal(d2.primary.samples, s2, 'same version id: the same counters after a new table');
  d2.primary.samples!.response(200, 1500);
  r.apply(tbl(3, 2)); // a new epoch (redeployed): still the same cumulative counters, like requests/errors
  const a = r.stats().find((x) => x.versionId === 'shop-v2')!.analysis!;
  assert.deepEqual(a.statuses, [200, 2, 500, 1]);
  assert.equal(a.noResponse, 1);
  assert.equal(a.requests, 4);
  assert.equal(a.latency.count, 3);
  assert.equal(a.latency.sum, 1500 + 40_000 + 1500);
  assert.deepEqual(r.stats().find((x) => x.versionId === 'shop-v1')!.analysis!.statuses, [200, 1]);
  // JSON-safe, as the stats line carries it
  assert.deepEqual(JSON.parse(JSON.stringify(a)), a);

  const off = createRoutingState({ analysisSamples: false });
  off.apply(tbl(1));
  assert.equal(off.route('shop.example', undefined, 'GET')!.primary.samples, null);
  for (const v of off.stats()) assert.equal('analysis' in v, false, `${v.versionId}: no analysis key when off`);
});

test('CONCURRENT: shadow for GET, none for POST unless opted in', () => {
  const r = createRoutingState();
  r.apply(table([app([ver('shop-v2', '2.0', { mode: 'CONCURRENT', maxDuplicateBodyBytes: 4096 }), ver('shop-v1', '1.0')])]));
  const g = r.route('shop.example', undefined, 'GET')!;
  assert.equal(g.primary.id, 'shop-v2');
  assert.equal(g.shadow?.id, 'shop-v1');
  assert.equal(g.fallback?.id, 'shop-v1');
  assert.equal(g.maxDuplicateBodyBytes, 4096);
  for (const m of ['POST', 'PUT', 'PATCH', 'DELETE']) {
    const d = r.route('shop.example', undefined, m)!;
    assert.equal(d.primary.id, 'shop-v2');
    assert.equal(d.shadow, null, m);
  }
  r.apply(table([app([ver('shop-v2', '2.0', { mode: 'CONCURRENT', duplicateUnsafeMethods: true }), ver('shop-v1', '1.0')])], 2));
  assert.equal(r.route('shop.example', undefined, 'POST')!.shadow?.id, 'shop-v1');
  // one version only: nothing to duplicate to
  r.apply(table([app([ver('shop-v2', '2.0', { mode: 'CONCURRENT' })])], 3));
  assert.equal(r.route('shop.example', undefined, 'GET')!.shadow, null);
});

test('promoted newest: INSTANT semantics', () => {
  const r = createRoutingState();
  r.apply(table([app([ver('shop-v2', '2.0', { mode: 'SESSION' }, { promoted: true }), ver('shop-v1', '1.0')])]));
  const d = r.route('shop.example', 'mv=shop-v1', 'GET')!;
  assert.equal(d.primary.id, 'shop-v2');
  // The version cookie is set in every mode, as a browser-session cookie (no expiry) outside SESSION.
  assert.match(d.responseHeaders(d.primary), /^Set-Cookie: mv=shop-v\d; Path=\/; HttpOnly; SameSite=Lax\r\n$/);
});

test('rollback on first failure: newest unroutable at once, onFailure fires once', () => {
  const c = clock();
  const r = createRoutingState({ now: c.now });
  const reports: FailureMessage[] = [];
  r.onFailure = (m) => reports.push(m);
  r.apply(table([app([ver('shop-v2', '2.0'), ver('shop-v1', '1.0')])]));
  const d = r.route('shop.example', undefined, 'GET')!;
  r.recordSuccess(d.primary, 200, 3);
  c.t += 5;
  r.recordFailure(d.primary, 'status', '503', 4);
  assert.equal(d.primary.routable, false);
  assert.equal(reports.length, 1);
  assert.deepEqual(reports[0], {
    type: 'failure', app: 'shop', versionId: 'shop-v2', version: '2.0', epoch: 1,
    reason: 'status 503', firstFailureAt: c.t, rolledBackAt: c.t,
  });
  assert.equal(r.route('shop.example', undefined, 'GET')!.primary.id, 'shop-v1');
  r.recordFailure(d.primary, 'reset', 'ECONNRESET', 1); // in-flight failures after the trip
  assert.equal(reports.length, 1);
  const s = r.stats().find((x) => x.versionId === 'shop-v2')!;
  assert.equal(s.requests, 3);
  assert.equal(s.errors, 2);
  assert.equal(s.trafficShare, 0);
  assert.deepEqual(s.latencyCounts.slice(0, 4), [1, 1, 3, 3]);
  assert.equal(s.latencyCounts.at(-1), 3);
  // a failure of the only remaining version: counted, not rolled back
  const v1 = r.route('shop.example', undefined, 'GET')!.primary;
  r.recordFailure(v1, 'connect', 'ECONNREFUSED', 1);
  assert.equal(v1.routable, true);
  assert.equal(reports.length, 1);
  assert.equal(r.stats().find((x) => x.versionId === 'shop-v1')!.trafficShare, 1);
});

test('local rollback survives a new table with the same epoch; cleared by higher epoch or not serving', () => {
  const r = createRoutingState();
  let fired = 0;
  r.onFailure = () => fired++;
  const mk = (rev: number, epoch: number, state: RouteVersion['state'] = 'serving') =>
    table([app([ver('shop-v2', '2.0', {}, { epoch, state }), ver('shop-v1', '1.0')])], rev);
  r.apply(mk(1, 1));
  r.recordFailure(r.route('shop.example', undefined, 'GET')!.primary, 'connect', 'ECONNREFUSED', 1);
  assert.equal(fired, 1);
  r.apply(mk(2, 1));
  assert.equal(r.route('shop.example', undefined, 'GET')!.primary.id, 'shop-v1');
  r.apply(mk(3, 2));
  assert.equal(r.route('shop.example', undefined, 'GET')!.primary.id, 'shop-v2');
  // trip again at epoch 2, then the controller marks it rolledBack and later re-serves it at epoch 2
  r.recordFailure(r.route('shop.example', undefined, 'GET')!.primary, 'connect', 'x', 1);
  assert.equal(fired, 2);
  r.apply(mk(4, 2, 'rolledBack'));
  assert.equal(r.route('shop.example', undefined, 'GET')!.primary.id, 'shop-v1');
  r.apply(mk(5, 2));
  assert.equal(r.route('shop.example', undefined, 'GET')!.primary.id, 'shop-v2');
});

test('markFailed: idempotent, no onFailure, stale epochs ignored', () => {
  const r = createRoutingState();
  let fired = 0;
  r.onFailure = () => fired++;
  r.apply(table([app([ver('shop-v2', '2.0', {}, { epoch: 3 }), ver('shop-v1', '1.0')])]));
  r.markFailed('shop-v2', 2);
  assert.equal(r.route('shop.example', undefined, 'GET')!.primary.id, 'shop-v2');
  r.markFailed('shop-v2', 3);
  r.markFailed('shop-v2', 3);
  assert.equal(r.route('shop.example', undefined, 'GET')!.primary.id, 'shop-v1');
  assert.equal(fired, 0);
});

test('consecutive failures and error-rate policies', () => {
  const c = clock(10_000_000);
  const r = createRoutingState({ now: c.now });
  const msgs: FailureMessage[] = [];
  r.onFailure = (m) => msgs.push(m);
  const v2 = ver('shop-v2', '2.0', {}, {
    failurePolicy: { ...DEFAULT_FAILURE_POLICY, consecutiveFailures: 3, errorRateThreshold: 0.5, minRequests: 10, windowSeconds: 5 },
  });
  r.apply(table([app([v2, ver('shop-v1', '1.0')])]));
  const t = r.route('shop.example', undefined, 'GET')!.primary;
  r.recordFailure(t, 'status', '500', 1);
  r.recordFailure(t, 'status', '500', 1);
  r.recordSuccess(t, 200, 1);
  r.recordFailure(t, 'status', '500', 1);
  assert.equal(msgs.length, 0);
  // error rate: 3 failures / 4 so far, but below minRequests; alternate until minRequests is reached
  for (let i = 0; i < 3; i++) { c.t += 100; r.recordSuccess(t, 200, 1); r.recordFailure(t, 'status', '502', 1); }
  assert.equal(msgs.length, 1);
  assert.match(msgs[0].reason, /^error rate 0\.60 over 5s$/);
  assert.equal(msgs[0].firstFailureAt, 10_000_000);

  // consecutive streak
  const r2 = createRoutingState({ now: c.now });
  const m2: FailureMessage[] = [];
  r2.onFailure = (m) => m2.push(m);
  r2.apply(table([app([{ ...v2, failurePolicy: { ...v2.failurePolicy, errorRateThreshold: 0 } }, ver('shop-v1', '1.0')])]));
  const t2 = r2.route('shop.example', undefined, 'GET')!.primary;
  for (let i = 0; i < 3; i++) r2.recordFailure(t2, 'response-timeout', '', 1);
  assert.equal(m2.length, 1);
  assert.equal(m2[0].reason, '3 consecutive failures, last: response timeout');
});

test('window forgets old seconds', () => {
  const c = clock(50_000_000);
  const r = createRoutingState({ now: c.now });
  let fired = 0;
  r.onFailure = () => fired++;
  const v2 = ver('shop-v2', '2.0', {}, {
    failurePolicy: { ...DEFAULT_FAILURE_POLICY, consecutiveFailures: 0, errorRateThreshold: 0.5, minRequests: 4, windowSeconds: 2 },
  });
  r.apply(table([app([v2, ver('shop-v1', '1.0')])]));
  const t = r.route('shop.example', undefined, 'GET')!.primary;
  r.recordFailure(t, 'status', '500', 1);
  r.recordFailure(t, 'status', '500', 1);
  r.recordFailure(t, 'status', '500', 1);
  c.t += 10_000;
  for (let i = 0; i < 4; i++) r.recordSuccess(t, 200, 1);
  r.recordFailure(t, 'status', '500', 1); // 1/5 in the window
  assert.equal(fired, 0);
});

test('GRADUAL progress can be aggregated across processes', () => {
  const r = createRoutingState({ random: () => 0.99 });
  let offered = 0;
  r.onProgress = () => offered++;
  r.apply(table([app([ver('shop-v2', '2.0', { mode: 'GRADUAL', percentagePerRequest: 1 }), ver('shop-v1', '1.0')])]));
  for (let i = 0; i < 16; i++) r.route('shop.example', 'mb=99', 'GET');
  assert.equal(offered, 1);
  assert.deepEqual(r.takeProgress(), [{ id: 'shop-v2', epoch: 1, count: 16 }]);
  assert.deepEqual(r.takeProgress(), []);
  r.route('shop.example', 'mb=99', 'GET'); // 1 pending locally
  r.setProgressTotal('shop-v2', 1, 40); // other workers contributed
  assert.equal(r.progress('shop-v2'), 41);
  assert.equal(r.threshold('shop'), 41);
  r.setProgressTotal('shop-v2', 1, 10); // stale total never goes backwards
  assert.equal(r.progress('shop-v2'), 41);
  r.addProgress('shop-v2', 1, 9);
  assert.equal(r.threshold('shop'), 50);
});
