// What the proxy does when an upstream exchange answers or fails: failover, connect retries, the
// stale keep-alive retry, blame, and CONCURRENT arbitration — one pure function, decide(event,
// state) → decision. No I/O, no clock, no mutation: client-conn.ts fills a PolicyState from the
// connection and its exchanges, calls decide(), and carries the decision out. Tests drive it
// directly (test/exchange-policy.test.ts). The rules are described in sidecar/README.md
// "Retries and failover".
//
// Vocabulary: the *main* exchange is the one whose answer the client normally gets (the primary,
// or the fallback after a failover); the *shadow* is the CONCURRENT duplicate. The *subject* is
// the exchange the event is about.

import type { UpstreamErrorKind } from './upstream-pool.js';

export type ExchangeRole = 'primary' | 'fallback' | 'shadow';

/**
 * An exchange's state:
 * - wait: waiting for the response head (connecting, sending, or sent)
 * - hold: head received, socket paused, waiting for the decision (CONCURRENT)
 * - buffer: head received and kept; a small body being collected before anything is relayed
 * - relay: the response is being relayed to the client
 * - discard: the response is being drained and dropped (socket back to the pool if clean)
 * - tunnel: after 101, raw bytes both ways
 * - done: finished (completed, failed or aborted); no more events
 */
export type ExchangeState = 'wait' | 'hold' | 'buffer' | 'relay' | 'discard' | 'tunnel' | 'done';

export type ErrorKind = UpstreamErrorKind | 'protocol';

/**
 * - head: the subject's final response head arrived (`failed`: its status counts as a failure)
 * - failing: the subject failed before a usable response (refused, timeout, reset, protocol);
 *   asked first, to know whether to count the failure now ('record'), later ('defer': a refused or
 *   reset primary is blamed only once its fallback turns out reachable), or not at all ('ignore')
 * - failed: then, what to do about it
 * - held-lost: a held (CONCURRENT) response died before it was chosen
 * - shadow-dropped: the shadow was dropped (its request body grew past the duplication limit)
 * - stale-reset: a reused keep-alive socket reset before any response byte
 */
export type PolicyEvent = 'head' | 'failing' | 'failed' | 'held-lost' | 'shadow-dropped' | 'stale-reset';

/**
 * - ignore: nothing to do (the response is decided already, or wait for the other side)
 * - record / defer: count the subject's failure now / when the fallback's outcome is known (failing)
 * - hold: keep this response, paused, until the other side answers
 * - discard: drain and drop this response
 * - relay: relay this response (a held one of the other side is discarded)
 * - buffer: collect this small response completely, then relay it (it can still fail over)
 * - failover: drop this one, resend the request to the fallback
 * - retry-fresh: resend on a fresh connection to the same endpoint (not a failure)
 * - fail: not retried; a 'failing' and a 'failed' event follow (stale-reset)
 * - retry-connect: every version refused and nothing was sent: re-route and retry after
 *   connectRetryDelay(connectRetries)
 * - error: answer the client 502/504 (finalErrorKind() says which)
 * - await-shadow: the primary failed, the shadow still runs: hold this response (if any), wait
 * - use-shadow: the primary failed: drop it, relay the shadow's held response
 * - use-primary: the shadow will not do: relay the primary's held (failed) response
 */
export type Decision =
  | 'ignore' | 'record' | 'defer' | 'hold' | 'discard' | 'relay' | 'buffer' | 'failover'
  | 'retry-fresh' | 'fail' | 'retry-connect' | 'error' | 'await-shadow' | 'use-shadow' | 'use-primary';

/** Everything decide() looks at. One per client connection, refilled before each call. */
export interface PolicyState {
  // -- the subject --
  role: ExchangeRole;
  /** The subject belongs to the request in progress (false: an orphaned shadow still finishing). */
  current: boolean;
  /** Its response counted as a failure, or it failed. */
  failed: boolean;
  /** Some request bytes reached its upstream. */
  written: boolean;
  /** Request bytes wait for its connection (nothing sent yet). */
  queued: boolean;
  errKind: ErrorKind | null;
  /** A fallback carrying its primary's deferred failure (see 'defer'). */
  blamePending: boolean;
  /** head: a known-length response ≤ maxBufferedResponseBytes whose body is not complete yet. */
  smallIncomplete: boolean;

  // -- the request --
  /** Something of a response was written to the client already. */
  responded: boolean;
  /** The request was read completely. */
  requestDone: boolean;
  /** GET, HEAD, OPTIONS or TRACE. */
  retryableMethod: boolean;
  upgrade: boolean;
  /** The request (head and body) is kept for a resend. */
  retained: boolean;
  /** The fallback was tried already. */
  retried: boolean;
  /** The decision has a fallback that is routable and not the primary. */
  fallbackUsable: boolean;
  /** CONCURRENT: the primary failed while the shadow was running. */
  primaryFailed: boolean;

  // -- the main exchange --
  mainState: ExchangeState | 'none';
  mainWritten: boolean;
  mainQueued: boolean;
  mainErrKind: ErrorKind | null;

  // -- the shadow --
  shadowState: ExchangeState | 'none';
  shadowFailed: boolean;

  // -- connect retries --
  /** Delayed connect retries so far for this request. */
  connectRetries: number;
  /** When the first of them was decided (ms, same clock as `now`). */
  firstRefusalAt: number;
  /** The time (read only for 'failed'). */
  now: number;
  connectRetryMs: number;
}

export function newPolicyState(connectRetryMs: number): PolicyState {
  return {
    role: 'primary', current: true, failed: false, written: false, queued: false, errKind: null, blamePending: false,
    smallIncomplete: false, responded: false, requestDone: false, retryableMethod: false, upgrade: false,
    retained: false, retried: false, fallbackUsable: false, primaryFailed: false,
    mainState: 'none', mainWritten: false, mainQueued: false, mainErrKind: null,
    shadowState: 'none', shadowFailed: false,
    connectRetries: 0, firstRefusalAt: 0, now: 0, connectRetryMs,
  };
}

/** Delay before delayed connect retry number n (0-based): 50, 100, 200, 400, 500, 500… ms. */
export function connectRetryDelay(n: number): number {
  return Math.min(50 << Math.min(n, 4), 500);
}

/** The error the client is told about when the decision is 'error' (or 'retry-connect'). */
export function finalErrorKind(ev: PolicyEvent, s: PolicyState): ErrorKind | null {
  if (ev === 'held-lost') return 'reset';
  if (s.role === 'shadow') return s.mainErrKind ?? s.errKind;
  return s.errKind;
}

export function decide(ev: PolicyEvent, s: PolicyState): Decision {
  switch (ev) {
    case 'head': return onHead(s);
    case 'failing': return onFailing(s);
    case 'failed': return onFailed(s);
    case 'held-lost': return onHeldLost(s);
    case 'shadow-dropped': return s.primaryFailed && !s.responded && s.mainState === 'hold' ? 'use-primary' : 'ignore';
    case 'stale-reset': return s.current && canResend(s) ? 'retry-fresh' : 'fail';
    default: return unreachable(ev);
  }
}

function unreachable(x: never): never {
  throw new Error('exchange-policy: unknown event ' + String(x));
}

function shadowRunning(s: PolicyState): boolean {
  return s.shadowState !== 'none' && s.shadowState !== 'done';
}

/** The subject's request can be sent again: nothing of it went out (it is still queued), or it
 *  is kept and safe to repeat (an idempotent method, not an upgrade that already went out). */
function canResend(s: PolicyState): boolean {
  if (s.written && (s.upgrade || !s.retryableMethod)) return false;
  return s.retained || (!s.written && s.queued);
}

/** A failure of the subject (before anything was written to the client) goes to the fallback:
 *  once per request, only from the primary, only if the request can be resent. */
function canFailover(s: PolicyState): boolean {
  return !s.retried && s.role === 'primary' && !s.responded && s.fallbackUsable && canResend(s);
}

function onHead(s: PolicyState): Decision {
  if (s.role === 'shadow') {
    if (s.responded) return 'discard';
    if (!s.primaryFailed) return 'hold'; // wait for the primary
    return s.failed && s.mainState === 'hold' ? 'use-primary' : 'relay';
  }
  if (s.failed) {
    if (s.role === 'primary' && shadowRunning(s)) {
      if (s.shadowState !== 'hold') return 'await-shadow';
      return s.shadowFailed ? 'relay' : 'use-shadow';
    }
    if (canFailover(s)) return 'failover';
  }
  // CONCURRENT keeps its own rules: no buffering while the shadow runs.
  if (s.smallIncomplete && !shadowRunning(s) && canFailover(s)) return 'buffer';
  return 'relay';
}

function onFailing(s: PolicyState): Decision {
  const refused = s.errKind === 'connect';
  // Refused or reset: this version, or the way to every version (a Docker daemon restart reloading
  // NAT rules)? The fallback's connect tells: counted only if the fallback can be reached.
  if (s.current && (refused || s.errKind === 'reset') && s.shadowState === 'none' && onFailed(s) === 'failover') return 'defer';
  // A fallback refused after its primary was refused or reset: neither version is blamed.
  if (refused && s.blamePending) return 'ignore';
  return 'record';
}

function onFailed(s: PolicyState): Decision {
  if (s.responded) return 'ignore';
  if (s.role === 'shadow') {
    if (!s.primaryFailed) return 'ignore'; // the primary answers
    if (s.mainState === 'hold') return 'use-primary';
    return finalError(s, finalErrorKind('failed', s));
  }
  if (s.role === 'primary' && shadowRunning(s)) return s.shadowState === 'hold' ? 'use-shadow' : 'await-shadow';
  if (canFailover(s)) return 'failover';
  return finalError(s, s.errKind);
}

function onHeldLost(s: PolicyState): Decision {
  if (s.responded) return 'ignore';
  if (s.role === 'shadow') {
    if (!s.primaryFailed) return 'ignore';
    return s.mainState === 'hold' ? 'use-primary' : 'error';
  }
  if (s.shadowState === 'hold') return 'use-shadow';
  if (!shadowRunning(s)) return 'error';
  return 'ignore'; // the shadow may still answer
}

/** No version answered: retry later if every version refused and nothing was sent, else 502/504. */
function finalError(s: PolicyState, kind: ErrorKind | null): Decision {
  if (kind !== 'connect' || s.mainState === 'none' || s.mainWritten || !s.mainQueued || !s.requestDone) return 'error';
  const since = s.connectRetries === 0 ? s.now : s.firstRefusalAt;
  return s.now + connectRetryDelay(s.connectRetries) - since > s.connectRetryMs ? 'error' : 'retry-connect';
}
