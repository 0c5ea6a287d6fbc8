// Leader election on a coordination.k8s.io/v1 Lease, the way client-go's leaderelection does it:
// - the holder renews spec.renewTime (a MicroTime) every renewMs;
// - a candidate takes the lease when it is free or when the record (holder, renewTime, transitions) has not
//   changed for the Lease's own spec.leaseDurationSeconds (the holder's promise, not our local setting) as
//   measured on the candidate's own clock since it first saw that record (so clock skew does not matter);
// - every write is a replace carrying metadata.resourceVersion, so two candidates cannot both win;
// - a leader that has not renewed for renewDeadlineMs (< leaseDurationMs) stops acting as leader before
//   anyone else may take over. This is enforced by a timer (not only when a renewal returns: a renewal can
//   hang) and by isLeader itself, which compares the clock with the last successful renewal, so a write
//   fence that asks isLeader is right even when the event loop was too busy to run the timer;
// - each time leadership is won a new term starts: term() returns an AbortSignal that is aborted the moment
//   that leadership ends (lost lease, renew deadline, stop()). Writers bound to a term (see
//   client.ts WriteFence) can therefore never write on behalf of an earlier term;
// - losing leadership does not stop the elector: the replica keeps campaigning as a candidate;
// - stop({ release: true }) hands the lease back (holder cleared) for a fast hand-over.

import { EventEmitter } from 'node:events';
import { V1MicroTime, type CoordinationV1Api, type V1Lease, type V1LeaseSpec } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { describeError, httpStatus, withSignal } from './client.js';

export interface LeaderElectorOptions {
  api: CoordinationV1Api;
  namespace: string;
  /** Lease name. */
  name: string;
  identity: string;
  leaseDurationMs?: number;
  renewMs?: number;
  /** Candidates retry this often. Default renewMs. */
  retryMs?: number;
  /** Default 2/3 of leaseDurationMs. */
  renewDeadlineMs?: number;
  log?: Logger;
  now?: () => number;
}

export interface LeaderElectorEvents {
  /** Leadership won; a new term began. */
  started: [];
  /** Leadership ended (lease lost to another holder, renew deadline passed, or stop()). */
  stopped: [reason: string];
}

export class LeaderElector extends EventEmitter<LeaderElectorEvents> {
  readonly identity: string;
  readonly leaseDurationMs: number;
  readonly renewMs: number;
  readonly retryMs: number;
  readonly renewDeadlineMs: number;
  #api: CoordinationV1Api;
  #ns: string;
  #name: string;
  #log: Logger | undefined;
  #now: () => number;
  #leader = false;
  #running = false;
  #timer: NodeJS.Timeout | null = null;
  #tick: Promise<void> | null = null;
  #observedKey = '';
  #observedAt = 0;
  #lastRenew = 0;
  #deadlineTimer: NodeJS.Timeout | null = null;
  #term: AbortController = abortedController();
  #inflight: AbortController | null = null;
  /** Transitions to leader seen by this instance (tests, metrics). */
  acquisitions = 0;
  /** Who holds the lease as last observed ('' = nobody). */
  observedHolder = '';

  constructor(opts: LeaderElectorOptions) {
    super();
    this.#api = opts.api;
    this.#ns = opts.namespace;
    this.#name = opts.name;
    this.identity = opts.identity;
    this.leaseDurationMs = opts.leaseDurationMs ?? 15_000;
    this.renewMs = opts.renewMs ?? 2_000;
    this.retryMs = opts.retryMs ?? this.renewMs;
    this.renewDeadlineMs = opts.renewDeadlineMs ?? Math.floor((this.leaseDurationMs * 2) / 3);
    this.#log = opts.log;
    this.#now = opts.now ?? Date.now;
  }

  /** Leader now: won the lease and renewed it less than renewDeadlineMs ago (checked against the clock). */
  get isLeader(): boolean {
    return this.#leader && this.#now() - this.#lastRenew < this.renewDeadlineMs;
  }

  /** The current leadership term: its signal aborts when this leadership ends (aborted when not leader). */
  term(): AbortSignal {
    return this.#term.signal;
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#schedule(0);
  }

  async stop(opts: { release?: boolean } = {}): Promise<void> {
    this.#running = false;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    await this.#tick;
    if (this.isLeader && opts.release !== false) {
      try {
        const lease = await this.#api.readNamespacedLease({ name: this.#name, namespace: this.#ns });
        if (lease.spec?.holderIdentity === this.identity) {
          lease.spec = { ...lease.spec, holderIdentity: undefined, leaseDurationSeconds: 1, renewTime: new V1MicroTime(this.#now()) };
          await this.#api.replaceNamespacedLease({ name: this.#name, namespace: this.#ns, body: lease });
        }
      } catch (err) {
        this.#log?.warn({ err: describeError(err) }, 'leader election: could not release the lease');
      }
    }
    this.#setLeader(false, 'stopped');
  }

  #schedule(ms: number): void {
    if (!this.#running) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#tick = this.#round().finally(() => {
        this.#tick = null;
        this.#schedule(this.#leader ? this.renewMs : this.retryMs);
      });
    }, ms);
    this.#timer.unref();
  }

  async #round(): Promise<void> {
    // Time of sending: a renewal only vouches for the lease from when it was sent (a slow answer must not
    // extend leadership beyond what the Lease promises to others).
    const sent = this.#now();
    // No lease request may outlive the renew deadline: a hung request is aborted and counts as a failure.
    const ac = new AbortController();
    this.#inflight = ac;
    const timeout = setTimeout(() => ac.abort(), Math.max(1, this.renewDeadlineMs));
    timeout.unref();
    let ok: boolean | undefined;
    try {
      ok = await this.#tryAcquireOrRenew(sent, ac.signal);
    } catch (err) {
      this.#log?.warn({ err: describeError(err) }, 'leader election: lease request failed');
    } finally {
      clearTimeout(timeout);
      this.#inflight = null;
    }
    if (!this.#running) return;
    if (ok === true) {
      this.#lastRenew = sent;
      if (this.#now() - sent < this.renewDeadlineMs) {
        this.#setLeader(true);
        this.#armDeadline();
      } else {
        // The answer came after the renew deadline: the lease was renewed, but too late to vouch for now.
        this.#setLeader(false, 'renewal answered after the renew deadline');
      }
    } else if (ok === false) {
      this.#setLeader(false, `lease held by ${this.observedHolder || 'another replica'}`);
    } else if (this.#leader && !this.isLeader) {
      this.#setLeader(false, 'renew deadline passed');
    }
  }

  /** Step down at lastRenew + renewDeadlineMs unless a renewal lands first. */
  #armDeadline(): void {
    if (this.#deadlineTimer) clearTimeout(this.#deadlineTimer);
    const ms = Math.max(0, this.#lastRenew + this.renewDeadlineMs - this.#now());
    this.#deadlineTimer = setTimeout(() => {
      this.#deadlineTimer = null;
      if (this.#leader && !this.isLeader) {
        this.#log?.warn({ renewDeadlineMs: this.renewDeadlineMs }, 'leader election: renew deadline passed; stepping down');
        this.#inflight?.abort();
        this.#setLeader(false, 'renew deadline passed');
      }
    }, ms + 1);
    this.#deadlineTimer.unref();
  }

  /** true: we hold the lease now; false: someone else does. Throws on API errors. */
  async #tryAcquireOrRenew(now: number, signal: AbortSignal): Promise<boolean> {
    const opts = withSignal(signal);
    let lease: V1Lease;
    try {
      lease = await this.#api.readNamespacedLease({ name: this.#name, namespace: this.#ns }, opts);
    } catch (err) {
      if (httpStatus(err) !== 404) throw err;
      try {
        await this.#api.createNamespacedLease(
          { namespace: this.#ns, body: { metadata: { name: this.#name, namespace: this.#ns }, spec: this.#spec(now, undefined) } },
          opts,
        );
        this.observedHolder = this.identity;
        return true;
      } catch (e) {
        if (httpStatus(e) === 409) return false;
        throw e;
      }
    }
    const spec: V1LeaseSpec = lease.spec ?? {};
    const holder = spec.holderIdentity ?? '';
    const key = `${holder}|${String(spec.renewTime ?? '')}|${spec.leaseTransitions ?? 0}`;
    if (key !== this.#observedKey) {
      this.#observedKey = key;
      this.#observedAt = now;
    }
    this.observedHolder = holder;
    // Expiry as the holder declared it in the Lease (client-go: observedTime + LeaseDurationSeconds); our own
    // setting only when the record does not say.
    const declared = Number(spec.leaseDurationSeconds);
    const durationMs = Number.isFinite(declared) && declared > 0 ? declared * 1000 : this.leaseDurationMs;
    if (holder && holder !== this.identity && now - this.#observedAt < durationMs) return false;
    lease.spec = this.#spec(now, holder === this.identity ? spec : { ...spec, leaseTransitions: (spec.leaseTransitions ?? 0) + (holder ? 1 : 0) });
    try {
      const updated = await this.#api.replaceNamespacedLease({ name: this.#name, namespace: this.#ns, body: lease }, opts);
      const s = updated.spec ?? {};
      this.#observedKey = `${s.holderIdentity ?? ''}|${String(s.renewTime ?? '')}|${s.leaseTransitions ?? 0}`;
      this.#observedAt = now;
      this.observedHolder = this.identity;
      if (holder !== this.identity) this.#log?.info({ previous: holder || null }, 'leader election: acquired the lease');
      return true;
    } catch (err) {
      if (httpStatus(err) === 409) return false;
      throw err;
    }
  }

  #spec(now: number, prev: V1LeaseSpec | undefined): V1LeaseSpec {
    const renewing = prev?.holderIdentity === this.identity;
    return {
      holderIdentity: this.identity,
      leaseDurationSeconds: Math.max(1, Math.ceil(this.leaseDurationMs / 1000)),
      acquireTime: renewing && prev?.acquireTime ? prev.acquireTime : new V1MicroTime(now),
      renewTime: new V1MicroTime(now),
      leaseTransitions: prev?.leaseTransitions ?? 0,
    };
  }

  #setLeader(leader: boolean, reason = ''): void {
    if (leader === this.#leader) return;
    this.#leader = leader;
    if (leader) {
      this.acquisitions++;
      this.#term = new AbortController();
      this.#log?.info({ identity: this.identity }, 'became leader');
      this.emit('started');
    } else {
      // Fence first: writers of the ended term must not get another request out.
      this.#term.abort(new Error(`leadership lost: ${reason}`));
      if (this.#deadlineTimer) clearTimeout(this.#deadlineTimer);
      this.#deadlineTimer = null;
      this.#log?.warn({ identity: this.identity, reason }, 'no longer leader; writes fenced');
      this.emit('stopped', reason);
    }
  }
}

function abortedController(): AbortController {
  const ac = new AbortController();
  ac.abort(new Error('not leader'));
  return ac;
}
