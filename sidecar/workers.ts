// Multi-worker coordination (node:cluster). The primary holds the control connection; each worker
// runs a proxy with its own RoutingState. Over IPC:
//  - tables go primary -> workers; the primary acks the controller once every live worker applied;
//  - a worker's failure trip goes to the primary, which broadcasts markFailed to every worker at
//    once and reports the failure to the controller (once per (id, epoch));
//  - GRADUAL per-request progress: workers send their counts in small batches (every 20 ms or 16
//    requests), the primary sums and broadcasts totals, so all workers agree on the threshold;
//  - stats: each worker sends a snapshot every second, the primary sums them, canary-analysis
//    samples included (a dead worker's last snapshot is kept so counters stay monotonic);
//  - recorded traffic (preflight): the primary asks every worker and merges their answers.
// The coordination logic is written against a tiny Channel interface so it can be tested in-process.

import type { Logger } from 'pino';
import type { FailureMessage, RoutingTable, TrafficRequestMessage, VersionStats } from '../common/protocol.js';
import type { Routing } from './routing.js';
import { mergeTraffic, type TrafficPart } from '../common/traffic.js';
import { mergeAnalysisSamples } from './analysis-samples.js';

/** [versionId, epoch, count] */
export type ProgressTuple = [string, number, number];

export type ToWorker =
  | { t: 'molt:routes'; table: RoutingTable; failed: Array<[string, number]>; totals: ProgressTuple[] }
  | { t: 'molt:markFailed'; id: string; epoch: number }
  | { t: 'molt:progress'; totals: ProgressTuple[] }
  | { t: 'molt:shutdown'; graceMs: number }
  | { t: 'molt:traffic-request'; rid: number; req: TrafficRequestMessage };

export type ToPrimary =
  | { t: 'molt:ready' }
  | { t: 'molt:applied'; revision: number }
  | { t: 'molt:failure'; msg: FailureMessage }
  | { t: 'molt:progress'; deltas: ProgressTuple[] }
  | { t: 'molt:stats'; revision: number; versions: VersionStats[] }
  | { t: 'molt:listening'; host: string; port: number }
  | { t: 'molt:traffic'; rid: number; part: TrafficPart };

/** One end of an IPC link. */
export interface Channel<Out> {
  send(msg: Out): void;
  onMessage(fn: (msg: unknown) => void): void;
}

function isMsg(m: unknown): m is { t: string } {
  return typeof m === 'object' && m !== null && typeof (m as { t?: unknown }).t === 'string' && (m as { t: string }).t.startsWith('molt:');
}

export const PROGRESS_FLUSH_MS = 20;
export const APPLY_TIMEOUT_MS = 5000;
/** A worker that has not answered a traffic request by then is left out of the answer. */
export const TRAFFIC_TIMEOUT_MS = 2000;

interface WorkerEntry {
  ch: Channel<ToWorker>;
  /** The worker listens for IPC messages (anything sent earlier would be lost). */
  ready: boolean;
  revision: number;
  stats: VersionStats[];
}

export interface PrimaryOptions {
  log?: Logger;
  progressFlushMs?: number;
  applyTimeoutMs?: number;
}

export class PrimaryCoordinator {
  onFailure: ((msg: FailureMessage) => void) | null = null;
  onListening: ((host: string, port: number) => void) | null = null;
  readonly #log: Logger | undefined;
  readonly #flushMs: number;
  readonly #applyTimeoutMs: number;
  #nextId = 1;
  readonly #workers = new Map<number, WorkerEntry>();
  #table: RoutingTable | null = null;
  #applied = 0;
  readonly #failed = new Map<string, number>();
  readonly #totals = new Map<string, ProgressTuple>();
  readonly #dirty = new Set<string>();
  #flushTimer: NodeJS.Timeout | null = null;
  #retired: VersionStats[][] = [];
  #waiters: Array<{ revision: number; resolve: () => void }> = [];
  #trafficRid = 0;
  readonly #trafficWaits = new Map<number, { parts: TrafficPart[]; pending: Set<number>; done: () => void }>();

  constructor(opts: PrimaryOptions = {}) {
    this.#log = opts.log;
    this.#flushMs = opts.progressFlushMs ?? PROGRESS_FLUSH_MS;
    this.#applyTimeoutMs = opts.applyTimeoutMs ?? APPLY_TIMEOUT_MS;
  }

  /** The revision every live worker has applied (0 before the first table). */
  get revision(): number {
    return this.#applied;
  }

  get workerCount(): number {
    return this.#workers.size;
  }

  addWorker(ch: Channel<ToWorker>): number {
    const id = this.#nextId++;
    this.#workers.set(id, { ch, ready: false, revision: 0, stats: [] });
    ch.onMessage((m) => this.#onMessage(id, m));
    return id;
  }

  removeWorker(id: number): void {
    const w = this.#workers.get(id);
    if (!w) return;
    this.#workers.delete(id);
    for (const wait of this.#trafficWaits.values()) {
      wait.pending.delete(id);
      if (wait.pending.size === 0) wait.done();
    }
    if (w.stats.length) this.#retired.push(w.stats);
    this.#checkWaiters();
  }

  /** Send a table to all workers; resolves when every live worker applied it (or after a timeout). */
  applyTable(table: RoutingTable): Promise<void> {
    const ids = new Map<string, { state: string; epoch: number }>();
    for (const app of table.apps) for (const v of app.versions) ids.set(v.id, v);
    for (const [id, epoch] of this.#failed) {
      const v = ids.get(id);
      if (!v || v.state !== 'serving' || v.epoch > epoch) this.#failed.delete(id);
    }
    for (const [key, [id, epoch]] of this.#totals) {
      if (ids.get(id)?.epoch !== epoch) this.#totals.delete(key);
    }
    this.#retired = this.#retired.map((s) => s.filter((v) => ids.has(v.versionId))).filter((s) => s.length > 0);
    this.#table = table;
    this.broadcast(this.#routesMsg(table));
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.#log?.warn({ revision: table.revision }, 'workers: not every worker confirmed the table in time; acking anyway');
        done();
      }, this.#applyTimeoutMs);
      timer.unref();
      const done = () => {
        clearTimeout(timer);
        if (table.revision > this.#applied) this.#applied = table.revision;
        resolve();
      };
      this.#waiters.push({ revision: table.revision, resolve: done });
      this.#checkWaiters();
    });
  }

  /** Recorded traffic of every ready worker, merged (workers that do not answer in time are left out). */
  traffic(req: TrafficRequestMessage): Promise<TrafficPart> {
    const rid = ++this.#trafficRid;
    const pending = new Set<number>();
    for (const [id, w] of this.#workers) if (w.ready) pending.add(id);
    return new Promise<TrafficPart>((resolve) => {
      const parts: TrafficPart[] = [];
      const timer = setTimeout(() => done(), TRAFFIC_TIMEOUT_MS);
      timer.unref();
      const done = () => {
        clearTimeout(timer);
        if (!this.#trafficWaits.delete(rid)) return;
        resolve(mergeTraffic(parts));
      };
      this.#trafficWaits.set(rid, { parts, pending, done });
      if (pending.size === 0) { done(); return; }
      for (const id of pending) this.#workers.get(id)!.ch.send({ t: 'molt:traffic-request', rid, req });
    });
  }

  #routesMsg(table: RoutingTable): ToWorker {
    return { t: 'molt:routes', table, failed: [...this.#failed], totals: [...this.#totals.values()] };
  }

  #checkWaiters(): void {
    if (this.#waiters.length === 0) return;
    let min = Infinity;
    for (const w of this.#workers.values()) if (w.revision < min) min = w.revision;
    this.#waiters = this.#waiters.filter((w) => {
      if (min >= w.revision) {
        w.resolve();
        return false;
      }
      return true;
    });
  }

  /** Send to every worker that is ready (a worker that is not gets the full state when it is). */
  broadcast(msg: ToWorker): void {
    for (const w of this.#workers.values()) if (w.ready) w.ch.send(msg);
  }

  #onMessage(id: number, m: unknown): void {
    if (!isMsg(m)) return;
    const w = this.#workers.get(id);
    if (!w) return;
    const msg = m as ToPrimary;
    switch (msg.t) {
      case 'molt:ready':
        w.ready = true;
        if (this.#table) w.ch.send(this.#routesMsg(this.#table));
        break;
      case 'molt:applied':
        w.revision = msg.revision;
        this.#checkWaiters();
        break;
      case 'molt:failure': {
        const f = msg.msg;
        const known = this.#failed.get(f.versionId);
        if (known !== undefined && known >= f.epoch) return;
        this.#failed.set(f.versionId, f.epoch);
        this.broadcast({ t: 'molt:markFailed', id: f.versionId, epoch: f.epoch });
        this.#log?.warn({ app: f.app, versionId: f.versionId, epoch: f.epoch, reason: f.reason, worker: id }, 'version failed: rolled back on all workers');
        try {
          this.onFailure?.(f);
        } catch (err) {
          this.#log?.error({ err }, 'workers: onFailure callback threw');
        }
        break;
      }
      case 'molt:progress':
        for (const [vid, epoch, n] of msg.deltas) {
          const key = `${vid}@${epoch}`;
          let tuple = this.#totals.get(key);
          if (!tuple) this.#totals.set(key, (tuple = [vid, epoch, 0]));
          tuple[2] += n;
          this.#dirty.add(key);
        }
        if (!this.#flushTimer) {
          this.#flushTimer = setTimeout(() => this.#flushTotals(), this.#flushMs);
          this.#flushTimer.unref();
        }
        break;
      case 'molt:stats':
        w.stats = msg.versions;
        break;
      case 'molt:listening':
        this.onListening?.(msg.host, msg.port);
        break;
      case 'molt:traffic': {
        const wait = this.#trafficWaits.get(msg.rid);
        if (!wait || !wait.pending.delete(id)) return;
        wait.parts.push(msg.part);
        if (wait.pending.size === 0) wait.done();
        break;
      }
    }
  }

  #flushTotals(): void {
    this.#flushTimer = null;
    const totals: ProgressTuple[] = [];
    for (const key of this.#dirty) {
      const t = this.#totals.get(key);
      if (t) totals.push([t[0], t[1], t[2]]);
    }
    this.#dirty.clear();
    if (totals.length) this.broadcast({ t: 'molt:progress', totals });
  }

  /** GRADUAL progress total for (id, epoch) as the primary knows it. */
  progressTotal(id: string, epoch: number): number {
    return this.#totals.get(`${id}@${epoch}`)?.[2] ?? 0;
  }

  /** Summed stats of all workers (live and retired), in the current table's order. */
  stats(): VersionStats[] {
    const out = new Map<string, VersionStats>();
    const add = (list: VersionStats[]) => {
      for (const v of list) {
        const key = `${v.app}\u0000${v.versionId}`;
        const acc = out.get(key);
        if (!acc) {
          out.set(key, { ...v, latencyBuckets: v.latencyBuckets.slice(), latencyCounts: v.latencyCounts.slice() });
          continue;
        }
        acc.requests += v.requests;
        acc.errors += v.errors;
        acc.mismatches += v.mismatches;
        acc.latencySum += v.latencySum;
        for (let i = 0; i < acc.latencyCounts.length && i < v.latencyCounts.length; i++) acc.latencyCounts[i] += v.latencyCounts[i];
        // A new object each time: `acc` may still hold the first worker's own snapshot.
        if (v.analysis) acc.analysis = acc.analysis ? mergeAnalysisSamples(acc.analysis, v.analysis) : v.analysis;
        if (v.trafficShare > acc.trafficShare) acc.trafficShare = v.trafficShare;
      }
    };
    for (const w of this.#workers.values()) add(w.stats);
    for (const s of this.#retired) add(s);
    return [...out.values()];
  }

  close(): void {
    if (this.#flushTimer) clearTimeout(this.#flushTimer);
    this.#flushTimer = null;
  }
}

export interface WorkerAgentOptions {
  log?: Logger;
  progressFlushMs?: number;
  statsIntervalMs?: number;
  /** Called when the primary asks the worker to shut down. */
  onShutdown?: (graceMs: number) => void;
  /** Called after each table is applied (e.g. to forget recordings of removed apps). */
  onTable?: (table: RoutingTable) => void;
  /** This worker's recorded traffic (absent: none). */
  traffic?: (req: TrafficRequestMessage) => TrafficPart;
}

/** The worker's end: keeps its RoutingState in step with the primary. */
export class WorkerAgent {
  readonly #routing: Routing;
  readonly #ch: Channel<ToPrimary>;
  readonly #o: WorkerAgentOptions;
  #progressTimer: NodeJS.Timeout | null = null;
  #statsTimer: NodeJS.Timeout | null = null;

  constructor(routing: Routing, ch: Channel<ToPrimary>, opts: WorkerAgentOptions = {}) {
    this.#routing = routing;
    this.#ch = ch;
    this.#o = opts;
  }

  start(): void {
    const r = this.#routing;
    r.onFailure = (msg) => this.#ch.send({ t: 'molt:failure', msg });
    r.onProgress = () => this.flushProgress();
    this.#ch.onMessage((m) => this.#onMessage(m));
    this.#ch.send({ t: 'molt:ready' });
    this.#progressTimer = setInterval(() => this.flushProgress(), this.#o.progressFlushMs ?? PROGRESS_FLUSH_MS);
    this.#progressTimer.unref();
    this.#statsTimer = setInterval(() => this.sendStats(), this.#o.statsIntervalMs ?? 1000);
    this.#statsTimer.unref();
  }

  stop(): void {
    if (this.#progressTimer) clearInterval(this.#progressTimer);
    if (this.#statsTimer) clearInterval(this.#statsTimer);
    this.#progressTimer = this.#statsTimer = null;
    this.flushProgress();
    this.sendStats();
  }

  flushProgress(): void {
    const p = this.#routing.takeProgress();
    if (p.length === 0) return;
    this.#ch.send({ t: 'molt:progress', deltas: p.map((e): ProgressTuple => [e.id, e.epoch, e.count]) });
  }

  sendStats(): void {
    this.#ch.send({ t: 'molt:stats', revision: this.#routing.revision, versions: this.#routing.stats() });
  }

  #onMessage(m: unknown): void {
    if (!isMsg(m)) return;
    const msg = m as ToWorker;
    const r = this.#routing;
    switch (msg.t) {
      case 'molt:routes':
        try {
          r.apply(msg.table);
        } catch (err) {
          this.#o.log?.error({ err, revision: msg.table?.revision }, 'worker: could not apply the routing table');
          return;
        }
        this.#o.onTable?.(msg.table);
        for (const [id, epoch] of msg.failed) r.markFailed(id, epoch);
        for (const [id, epoch, total] of msg.totals) r.setProgressTotal(id, epoch, total);
        this.#o.log?.debug({ revision: msg.table.revision }, 'worker: routing table applied');
        this.#ch.send({ t: 'molt:applied', revision: msg.table.revision });
        break;
      case 'molt:markFailed':
        r.markFailed(msg.id, msg.epoch);
        break;
      case 'molt:progress':
        for (const [id, epoch, total] of msg.totals) r.setProgressTotal(id, epoch, total);
        break;
      case 'molt:shutdown':
        this.#o.onShutdown?.(msg.graceMs);
        break;
      case 'molt:traffic-request': {
        let part: TrafficPart = { exchanges: [], cursor: {}, recorded: 0, skipped: 0 };
        try {
          if (this.#o.traffic) part = this.#o.traffic(msg.req);
        } catch (err) {
          this.#o.log?.error({ err }, 'worker: could not read recorded traffic');
        }
        this.#ch.send({ t: 'molt:traffic', rid: msg.rid, part });
        break;
      }
    }
  }
}
