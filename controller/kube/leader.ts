// Leader election on a coordination.k8s.io/v1 Lease, the way client-go's leaderelection does it:
// - the holder renews spec.renewTime (a MicroTime) every renewMs;
// - a candidate takes the lease when it is free or when the record (holder, renewTime, transitions) has not
//   changed for leaseDurationMs as measured on the candidate's own clock since it first saw that record
//   (so clock skew between nodes does not matter);
// - every write is a replace carrying metadata.resourceVersion, so two candidates cannot both win;
// - a leader that cannot renew for renewDeadlineMs (< leaseDurationMs) stops acting as leader before anyone
//   else may take over;
// - stop({ release: true }) hands the lease back (holder cleared) for a fast hand-over.

import { EventEmitter } from 'node:events';
import { V1MicroTime, type CoordinationV1Api, type V1Lease, type V1LeaseSpec } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { describeError, httpStatus } from './client.js';

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
  started: [];
  stopped: [];
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

  get isLeader(): boolean {
    return this.#leader;
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
    if (this.#leader && opts.release !== false) {
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
    this.#setLeader(false);
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
    let ok: boolean | undefined;
    try {
      ok = await this.#tryAcquireOrRenew();
    } catch (err) {
      this.#log?.warn({ err: describeError(err) }, 'leader election: lease request failed');
    }
    if (!this.#running) return;
    if (ok === true) {
      this.#lastRenew = this.#now();
      this.#setLeader(true);
    } else if (ok === false) {
      this.#setLeader(false);
    } else if (this.#leader && this.#now() - this.#lastRenew > this.renewDeadlineMs) {
      this.#log?.warn('leader election: renew deadline passed; stepping down');
      this.#setLeader(false);
    }
  }

  /** true: we hold the lease now; false: someone else does. Throws on API errors. */
  async #tryAcquireOrRenew(): Promise<boolean> {
    const now = this.#now();
    let lease: V1Lease;
    try {
      lease = await this.#api.readNamespacedLease({ name: this.#name, namespace: this.#ns });
    } catch (err) {
      if (httpStatus(err) !== 404) throw err;
      try {
        await this.#api.createNamespacedLease({
          namespace: this.#ns,
          body: { metadata: { name: this.#name, namespace: this.#ns }, spec: this.#spec(now, undefined) },
        });
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
    if (holder && holder !== this.identity && now - this.#observedAt < this.leaseDurationMs) return false;
    lease.spec = this.#spec(now, holder === this.identity ? spec : { ...spec, leaseTransitions: (spec.leaseTransitions ?? 0) + (holder ? 1 : 0) });
    try {
      const updated = await this.#api.replaceNamespacedLease({ name: this.#name, namespace: this.#ns, body: lease });
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

  #setLeader(leader: boolean): void {
    if (leader === this.#leader) return;
    this.#leader = leader;
    if (leader) this.acquisitions++;
    this.#log?.info({ identity: this.identity, leader }, leader ? 'became leader' : 'no longer leader');
    this.emit(leader ? 'started' : 'stopped');
  }
}
