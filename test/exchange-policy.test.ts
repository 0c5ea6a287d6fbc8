// sidecar/exchange-policy.ts driven directly: every failover, connect-retry, blame and CONCURRENT
// rule as a table row (event, state → decision). The proxy tests (test/proxy.test.ts) show the
// same rules end to end on sockets; these pin each branch.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  connectRetryDelay,
  decide,
  finalErrorKind,
  newPolicyState,
  type Decision,
  type PolicyEvent,
  type PolicyState,
} from '../sidecar/exchange-policy.js';

/** A GET to the primary, fully read and kept for a resend, with a usable fallback; nothing answered yet. */
function base(): PolicyState {
  return {
    ...newPolicyState(2000),
    role: 'primary', current: true, written: true, queued: false,
    requestDone: true, retryableMethod: true, retained: true, fallbackUsable: true,
    mainState: 'wait', mainWritten: true,
  };
}

const POST_SENT: Partial<PolicyState> = { retryableMethod: false, retained: false, written: true, mainWritten: true };
const NOTHING_SENT: Partial<PolicyState> = { written: false, queued: true, mainWritten: false, mainQueued: true };
const REFUSED: Partial<PolicyState> = { ...NOTHING_SENT, failed: true, errKind: 'connect', mainErrKind: 'connect', mainState: 'done' };
const CONCURRENT: Partial<PolicyState> = { shadowState: 'wait' };

type Row = [name: string, ev: PolicyEvent, state: Partial<PolicyState>, want: Decision];

const rows: Row[] = [
  // ---- a response head on the main exchange ----
  ['head: success → relay', 'head', {}, 'relay'],
  ['head: failure status, GET kept, fallback usable → failover', 'head', { failed: true }, 'failover'],
  ['head: failure status, POST already sent → relay the failure as-is', 'head', { failed: true, ...POST_SENT }, 'relay'],
  ['head: failure status, GET too big to keep (not retained) → relay', 'head', { failed: true, retained: false }, 'relay'],
  ['head: failure status, no usable fallback → relay', 'head', { failed: true, fallbackUsable: false }, 'relay'],
  ['head: failure status, fallback already tried → relay', 'head', { failed: true, retried: true }, 'relay'],
  ['head: failure status on the fallback itself → relay', 'head', { role: 'fallback', failed: true }, 'relay'],
  ['head: failure status on an upgrade that went out → relay', 'head', { failed: true, upgrade: true }, 'relay'],
  ['head: small incomplete body, could still fail over → buffer', 'head', { smallIncomplete: true }, 'buffer'],
  ['head: small incomplete body, POST sent (no failover possible) → relay', 'head', { smallIncomplete: true, ...POST_SENT }, 'relay'],
  ['head: small incomplete body, no fallback → relay', 'head', { smallIncomplete: true, fallbackUsable: false }, 'relay'],
  ['head: small incomplete body on the fallback → relay', 'head', { smallIncomplete: true, role: 'fallback' }, 'relay'],
  ['head: small incomplete body while a shadow runs → relay (CONCURRENT: no buffering)', 'head', { smallIncomplete: true, ...CONCURRENT }, 'relay'],
  ['head: small incomplete body, shadow finished → buffer', 'head', { smallIncomplete: true, shadowState: 'done' }, 'buffer'],

  // ---- the main exchange failed without a response ----
  ['failed: refused, POST (nothing sent) → failover', 'failed', { ...REFUSED, ...POST_SENT, ...NOTHING_SENT }, 'failover'],
  ['failed: reset, GET kept → failover', 'failed', { failed: true, errKind: 'reset', mainErrKind: 'reset' }, 'failover'],
  ['failed: reset, POST sent → error (502)', 'failed', { failed: true, errKind: 'reset', ...POST_SENT }, 'error'],
  ['failed: response timeout, GET kept → failover', 'failed', { failed: true, errKind: 'response-timeout' }, 'failover'],
  ['failed: after something was written to the client → ignore', 'failed', { failed: true, errKind: 'reset', responded: true }, 'ignore'],
  ['failed: the fallback failed too (timeout) → error', 'failed', { role: 'fallback', retried: true, failed: true, errKind: 'connect-timeout' }, 'error'],

  // ---- connect retries: every version refused, nothing sent ----
  ['failed: refused, no fallback, first time → retry-connect', 'failed', { ...REFUSED, fallbackUsable: false, now: 1000 }, 'retry-connect'],
  ['failed: the fallback refused too → retry-connect', 'failed', { ...REFUSED, role: 'fallback', retried: true, now: 1000 }, 'retry-connect'],
  ['failed: refused, 4th retry still inside connectRetryMs → retry-connect', 'failed',
    { ...REFUSED, fallbackUsable: false, connectRetries: 3, firstRefusalAt: 1000, now: 2500 }, 'retry-connect'],
  ['failed: refused, next retry would end past connectRetryMs → error', 'failed',
    { ...REFUSED, fallbackUsable: false, connectRetries: 3, firstRefusalAt: 1000, now: 2700 }, 'error'],
  ['failed: refused, connectRetryMs 0 → error at once', 'failed', { ...REFUSED, fallbackUsable: false, connectRetryMs: 0, now: 1000 }, 'error'],
  ['failed: refused before the request body was read completely → error', 'failed', { ...REFUSED, fallbackUsable: false, requestDone: false, now: 1000 }, 'error'],
  ['failed: connect timeout (not a refusal) → error', 'failed', { ...REFUSED, errKind: 'connect-timeout', mainErrKind: 'connect-timeout', fallbackUsable: false, now: 1000 }, 'error'],
  ['failed: refused after bytes were sent (stale retry on a fresh socket) → error', 'failed', { ...REFUSED, fallbackUsable: false, mainWritten: true, now: 1000 }, 'error'],

  // ---- blame: count a failure now, after the fallback's outcome, or never ----
  ['failing: refused primary that will fail over → defer', 'failing', { ...REFUSED }, 'defer'],
  ['failing: reset primary that will fail over → defer', 'failing', { failed: true, errKind: 'reset' }, 'defer'],
  ['failing: response timeout primary that will fail over → record', 'failing', { failed: true, errKind: 'response-timeout' }, 'record'],
  ['failing: refused primary without fallback → record', 'failing', { ...REFUSED, fallbackUsable: false }, 'record'],
  ['failing: refused primary while CONCURRENT (shadow present) → record', 'failing', { ...REFUSED, shadowState: 'done' }, 'record'],
  ['failing: fallback refused, primary failure pending → ignore (nobody blamed)', 'failing', { ...REFUSED, role: 'fallback', retried: true, blamePending: true }, 'ignore'],
  ['failing: fallback reset, primary failure pending → record', 'failing', { role: 'fallback', retried: true, blamePending: true, failed: true, errKind: 'reset' }, 'record'],
  ['failing: an orphaned shadow refused → record', 'failing', { ...REFUSED, role: 'shadow', current: false }, 'record'],

  // ---- a reused keep-alive socket reset before any response byte ----
  ['stale-reset: GET kept → retry-fresh', 'stale-reset', {}, 'retry-fresh'],
  ['stale-reset: POST still queued (nothing sent) → retry-fresh', 'stale-reset', { ...POST_SENT, ...NOTHING_SENT }, 'retry-fresh'],
  ['stale-reset: POST sent → fail', 'stale-reset', { ...POST_SENT }, 'fail'],
  ['stale-reset: upgrade sent → fail', 'stale-reset', { upgrade: true }, 'fail'],
  ['stale-reset: orphaned shadow → fail', 'stale-reset', { role: 'shadow', current: false }, 'fail'],

  // ---- CONCURRENT: the shadow's head ----
  ['shadow head: primary still running → hold', 'head', { role: 'shadow', ...CONCURRENT }, 'hold'],
  ['shadow head: client already answered → discard', 'head', { role: 'shadow', responded: true }, 'discard'],
  ['shadow head: primary failed without a response → relay the shadow', 'head', { role: 'shadow', primaryFailed: true, mainState: 'done' }, 'relay'],
  ['shadow head: primary failed (held), shadow fine → relay the shadow', 'head', { role: 'shadow', primaryFailed: true, mainState: 'hold' }, 'relay'],
  ['shadow head: both failed, primary held → use-primary', 'head', { role: 'shadow', failed: true, primaryFailed: true, mainState: 'hold' }, 'use-primary'],
  ['shadow head: both failed, primary without response → relay the shadow', 'head', { role: 'shadow', failed: true, primaryFailed: true, mainState: 'done' }, 'relay'],

  // ---- CONCURRENT: the primary's head ----
  ['primary head: success, shadow running → relay (shadow keeps running)', 'head', { ...CONCURRENT }, 'relay'],
  ['primary head: success, shadow held → relay', 'head', { shadowState: 'hold' }, 'relay'],
  ['primary head: failure, shadow running → await-shadow', 'head', { failed: true, ...CONCURRENT }, 'await-shadow'],
  ['primary head: failure, shadow held fine → use-shadow', 'head', { failed: true, shadowState: 'hold' }, 'use-shadow'],
  ['primary head: failure, shadow held and failed too → relay the primary', 'head', { failed: true, shadowState: 'hold', shadowFailed: true }, 'relay'],
  ['primary head: failure, shadow finished → failover rules again', 'head', { failed: true, shadowState: 'done' }, 'failover'],

  // ---- CONCURRENT: failures without a response ----
  ['primary failed, shadow running → await-shadow (no failover while CONCURRENT)', 'failed', { ...REFUSED, ...CONCURRENT }, 'await-shadow'],
  ['primary failed, shadow held → use-shadow', 'failed', { failed: true, errKind: 'reset', shadowState: 'hold' }, 'use-shadow'],
  ['shadow failed, primary fine → ignore', 'failed', { role: 'shadow', failed: true, errKind: 'reset' }, 'ignore'],
  ['shadow failed, primary failed and held → use-primary', 'failed', { role: 'shadow', failed: true, errKind: 'reset', primaryFailed: true, mainState: 'hold' }, 'use-primary'],
  ['shadow failed, primary failed without response → error', 'failed',
    { role: 'shadow', failed: true, errKind: 'reset', primaryFailed: true, mainState: 'done', mainErrKind: 'response-timeout' }, 'error'],
  ['shadow refused, primary refused, nothing sent → retry-connect', 'failed',
    { role: 'shadow', failed: true, errKind: 'connect', primaryFailed: true, ...REFUSED, mainState: 'done', now: 1000 }, 'retry-connect'],

  // ---- CONCURRENT: a held response died ----
  ['held primary lost, shadow held → use-shadow', 'held-lost', { primaryFailed: true, mainState: 'done', shadowState: 'hold' }, 'use-shadow'],
  ['held primary lost, shadow still running → ignore', 'held-lost', { primaryFailed: true, mainState: 'done', ...CONCURRENT }, 'ignore'],
  ['held primary lost, shadow finished → error', 'held-lost', { primaryFailed: true, mainState: 'done', shadowState: 'done' }, 'error'],
  ['held shadow lost, primary fine → ignore', 'held-lost', { role: 'shadow' }, 'ignore'],
  ['held shadow lost, primary failed and held → use-primary', 'held-lost', { role: 'shadow', primaryFailed: true, mainState: 'hold' }, 'use-primary'],
  ['held shadow lost, primary failed without response → error', 'held-lost', { role: 'shadow', primaryFailed: true, mainState: 'done' }, 'error'],
  ['held lost after the client was answered → ignore', 'held-lost', { role: 'shadow', primaryFailed: true, mainState: 'hold', responded: true }, 'ignore'],

  // ---- CONCURRENT: the shadow dropped (body over the duplication limit) ----
  ['shadow dropped, primary failed and held → use-primary', 'shadow-dropped', { role: 'shadow', primaryFailed: true, mainState: 'hold' }, 'use-primary'],
  ['shadow dropped, primary fine → ignore', 'shadow-dropped', { role: 'shadow' }, 'ignore'],
  ['shadow dropped, primary failed without response yet → ignore', 'shadow-dropped', { role: 'shadow', primaryFailed: true, mainState: 'done' }, 'ignore'],
];

for (const [name, ev, over, want] of rows) {
  test(`policy: ${name}`, () => {
    assert.equal(decide(ev, { ...base(), ...over }), want);
  });
}

test('policy: connect retry delays 50, 100, 200, 400, then 500 ms', () => {
  assert.deepEqual([0, 1, 2, 3, 4, 5, 10, 40].map(connectRetryDelay), [50, 100, 200, 400, 500, 500, 500, 500]);
});

test('policy: the error the client is told about', () => {
  const s = { ...base(), failed: true, errKind: 'connect-timeout' as const };
  assert.equal(finalErrorKind('failed', s), 'connect-timeout');
  assert.equal(finalErrorKind('held-lost', s), 'reset');
  // a shadow failing last reports the primary's failure when there is one
  assert.equal(finalErrorKind('failed', { ...s, role: 'shadow', errKind: 'reset', mainErrKind: 'response-timeout' }), 'response-timeout');
  assert.equal(finalErrorKind('failed', { ...s, role: 'shadow', errKind: 'reset', mainErrKind: null }), 'reset');
});

/** Which decisions may answer which event (client-conn.ts carries out exactly these). */
const ANSWERS: Record<PolicyEvent, readonly Decision[]> = {
  'head': ['hold', 'discard', 'relay', 'buffer', 'failover', 'await-shadow', 'use-shadow', 'use-primary'],
  'failing': ['record', 'defer', 'ignore'],
  'failed': ['ignore', 'failover', 'retry-connect', 'error', 'await-shadow', 'use-shadow', 'use-primary'],
  'held-lost': ['ignore', 'error', 'use-shadow', 'use-primary'],
  'shadow-dropped': ['ignore', 'use-primary'],
  'stale-reset': ['retry-fresh', 'fail'],
};

test('policy: any state — every event gets one of its own answers; nothing is decided twice; orphans only count failures', () => {
  const exState = fc.constantFrom('none', 'wait', 'hold', 'buffer', 'relay', 'discard', 'tunnel', 'done');
  const errKind = fc.constantFrom(null, 'connect', 'connect-timeout', 'reset', 'response-timeout', 'protocol');
  const state = fc.record({
    role: fc.constantFrom('primary', 'fallback', 'shadow'), current: fc.boolean(), failed: fc.boolean(), written: fc.boolean(),
    queued: fc.boolean(), errKind, blamePending: fc.boolean(), smallIncomplete: fc.boolean(), responded: fc.boolean(),
    requestDone: fc.boolean(), retryableMethod: fc.boolean(), upgrade: fc.boolean(), retained: fc.boolean(), retried: fc.boolean(),
    fallbackUsable: fc.boolean(), primaryFailed: fc.boolean(), mainState: exState, mainWritten: fc.boolean(), mainQueued: fc.boolean(),
    mainErrKind: errKind, shadowState: exState, shadowFailed: fc.boolean(), connectRetries: fc.nat(20),
    firstRefusalAt: fc.nat(10_000), now: fc.nat(20_000), connectRetryMs: fc.nat(5000),
  }) as fc.Arbitrary<PolicyState>;
  fc.assert(fc.property(fc.constantFrom(...(Object.keys(ANSWERS) as PolicyEvent[])), state, (ev, s) => {
    const d = decide(ev, s);
    assert.ok(ANSWERS[ev].includes(d), `${ev} → ${d}`);
    // once something was written to the client, nothing else is relayed or retried
    if (s.responded && s.current) assert.ok(['ignore', 'discard', 'record', 'defer', 'retry-fresh', 'fail', 'hold', 'relay', 'buffer', 'failover', 'await-shadow', 'use-shadow', 'use-primary'].includes(d) && (ev === 'head' && s.role !== 'shadow' || ev === 'failing' || ev === 'stale-reset' || ['ignore', 'discard'].includes(d)), `${ev} after responding → ${d}`);
    // a failover never happens twice, and only from the primary
    if (d === 'failover') assert.ok(!s.retried && s.role === 'primary');
    // an orphaned exchange is never retried or deferred
    if (!s.current && (ev === 'failing' || ev === 'stale-reset')) assert.ok(d === 'record' || d === 'ignore' || d === 'fail');
  }), { numRuns: 5000 });
});
