// What the dashboard shows, derived level-triggered from the controller's status: sample `status()` every
// second (and on demand), diff successive snapshots into timeline events (versions added/removed, phase
// changes with reason and message, traffic share steps, sidecar connection) and keep bounded rings of events
// and of per-version per-second request/error rates and mean latency. Nothing here hooks into the
// controller's phase machine, so it keeps working whatever drives the phases.

import type { ControllerApi, ControllerStatus, VersionStatus } from '../controller-api.js';
import type { MoltMetrics } from '../metrics.js';

/** One timeline entry. Generic on purpose: preflight/analysis verdicts become kinds of their own. */
export interface DashboardEvent {
  /** Increasing sequence number (resets with the process). */
  id: number;
  /** Epoch milliseconds. */
  time: number;
  app: string;
  /** AppVersion name, or "" for app-wide / controller events. */
  version: string;
  /** added | removed | phase | traffic | rollback | preflight | analysis | sidecar | resource-error | audit */
  kind: string;
  message: string;
  /** "controller" for derived events; who acted for audit events. */
  actor: string;
}

/** One sample of one version: rates over the last sampling interval. */
export interface VersionPoint {
  /** Requests per second. */
  rps: number;
  /** Failed requests per second. */
  eps: number;
  /** Mean upstream latency in ms over the interval; null without requests (or without latency data). */
  latencyMs: number | null;
}

export interface Sample {
  /** Epoch milliseconds. */
  time: number;
  /** AppVersion name -> point. */
  versions: Record<string, VersionPoint>;
}

export type ObserverMessage =
  | { type: 'sample'; sample: Sample; status: ControllerStatus }
  | { type: 'event'; event: DashboardEvent };

export interface ObserverOptions {
  controller: ControllerApi;
  /** Source of per-version latency (the sidecar's histogram sum/count). Optional. */
  metrics?: MoltMetrics;
  intervalMs?: number;
  maxEvents?: number;
  /** Samples kept (at intervalMs each): 300 = five minutes at 1 s. */
  maxSamples?: number;
  now?: () => number;
}

interface Counters {
  requests: number;
  errors: number;
  latencyCount: number;
  latencySum: number;
}

/** A fixed-size ring; oldest entries fall off. */
export class Ring<T> {
  readonly #items: T[] = [];
  constructor(readonly capacity: number) {}
  push(item: T): void {
    this.#items.push(item);
    if (this.#items.length > this.capacity) this.#items.splice(0, this.#items.length - this.capacity);
  }
  toArray(): T[] {
    return this.#items.slice();
  }
  get length(): number {
    return this.#items.length;
  }
}

/** Traffic share changes smaller than this (0..1) are not worth a timeline entry. */
const TRAFFIC_EPSILON = 0.005;

export class DashboardObserver {
  readonly #controller: ControllerApi;
  readonly #metrics: MoltMetrics | undefined;
  readonly #intervalMs: number;
  readonly #now: () => number;
  readonly #events: Ring<DashboardEvent>;
  readonly #samples: Ring<Sample>;
  readonly #listeners = new Set<(m: ObserverMessage) => void>();
  #seq = 0;
  #timer: NodeJS.Timeout | undefined;
  #sampling: Promise<void> | undefined;
  #again = false;
  #prev: ControllerStatus | undefined;
  #prevTime = 0;
  #status: ControllerStatus | undefined;
  readonly #counters = new Map<string, Counters>();
  readonly #errorsSeen = new Set<string>();

  constructor(opts: ObserverOptions) {
    this.#controller = opts.controller;
    this.#metrics = opts.metrics;
    this.#intervalMs = opts.intervalMs ?? 1000;
    this.#now = opts.now ?? Date.now;
    this.#events = new Ring(opts.maxEvents ?? 500);
    this.#samples = new Ring(opts.maxSamples ?? 300);
  }

  start(): void {
    if (this.#timer) return;
    void this.sample();
    this.#timer = setInterval(() => void this.sample(), this.#intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#listeners.clear();
  }

  /** Listen to samples and events; returns the unsubscribe function. */
  subscribe(fn: (m: ObserverMessage) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  get listenerCount(): number {
    return this.#listeners.size;
  }

  /** Everything a new page needs to draw itself. */
  snapshot(): { status: ControllerStatus | undefined; events: DashboardEvent[]; samples: Sample[]; intervalMs: number } {
    return { status: this.#status, events: this.#events.toArray(), samples: this.#samples.toArray(), intervalMs: this.#intervalMs };
  }

  /** Add an event that did not come from a status diff (an audit line, a verdict). */
  record(e: Omit<DashboardEvent, 'id' | 'time'> & { time?: number }): DashboardEvent {
    const event: DashboardEvent = { id: ++this.#seq, time: e.time ?? this.#now(), app: e.app, version: e.version, kind: e.kind, message: e.message, actor: e.actor };
    this.#events.push(event);
    this.#emit({ type: 'event', event });
    return event;
  }

  /** Take a sample now (e.g. right after an action). Concurrent calls coalesce into at most one more run. */
  sample(): Promise<void> {
    if (this.#sampling) {
      this.#again = true;
      return this.#sampling;
    }
    this.#sampling = (async () => {
      try {
        do {
          this.#again = false;
          await this.#sampleOnce();
        } while (this.#again);
      } finally {
        this.#sampling = undefined;
      }
    })();
    return this.#sampling;
  }

  async #sampleOnce(): Promise<void> {
    let status: ControllerStatus;
    try {
      status = this.#controller.status();
    } catch {
      return; // controller stopping: keep the last picture
    }
    const latency = await this.#latency();
    const now = this.#now();
    this.#diff(this.#prev, status, now);
    const dt = this.#prev ? Math.max(0.001, (now - this.#prevTime) / 1000) : 0;
    const point: Sample = { time: now, versions: {} };
    const seen = new Set<string>();
    for (const app of status.apps) {
      for (const v of app.versions) {
        seen.add(v.name);
        const lat = latency.get(`${v.app}\u0000${v.version}`);
        const cur: Counters = { requests: v.requests, errors: v.errors, latencyCount: lat?.count ?? 0, latencySum: lat?.sum ?? 0 };
        const prev = this.#counters.get(v.name);
        this.#counters.set(v.name, cur);
        if (!prev || dt === 0) continue;
        // Totals going down mean the sidecar restarted: that interval has no meaningful rate.
        const dReq = cur.requests - prev.requests;
        const dErr = cur.errors - prev.errors;
        const dCount = cur.latencyCount - prev.latencyCount;
        const dSum = cur.latencySum - prev.latencySum;
        point.versions[v.name] = {
          rps: dReq >= 0 ? round(dReq / dt) : 0,
          eps: dErr >= 0 ? round(dErr / dt) : 0,
          latencyMs: dCount > 0 && dSum >= 0 ? round((dSum / dCount) * 1000) : null,
        };
      }
    }
    for (const name of this.#counters.keys()) if (!seen.has(name)) this.#counters.delete(name);
    this.#prev = status;
    this.#prevTime = now;
    this.#status = status;
    if (dt > 0) this.#samples.push(point);
    this.#emit({ type: 'sample', sample: point, status });
  }

  /** Per app+version latency sum (seconds) and count from the metrics registry. */
  async #latency(): Promise<Map<string, { sum: number; count: number }>> {
    const out = new Map<string, { sum: number; count: number }>();
    const metric = this.#metrics?.registry.getSingleMetric('molt_request_duration_seconds');
    if (!metric) return out;
    try {
      const data = await metric.get();
      for (const v of data.values) {
        const { app, version } = v.labels as { app?: string; version?: string };
        if (app === undefined || version === undefined) continue;
        const name = (v as { metricName?: string }).metricName;
        const key = `${app}\u0000${version}`;
        const e = out.get(key) ?? { sum: 0, count: 0 };
        if (name?.endsWith('_sum')) e.sum = v.value;
        else if (name?.endsWith('_count')) e.count = v.value;
        else continue;
        out.set(key, e);
      }
    } catch {
      // no latency this round
    }
    return out;
  }

  #diff(prev: ControllerStatus | undefined, cur: ControllerStatus, now: number): void {
    const ctl = 'controller';
    if (!prev || prev.sidecarConnected !== cur.sidecarConnected) {
      if (prev || !cur.sidecarConnected) {
        this.record({ time: now, app: '', version: '', kind: 'sidecar', message: cur.sidecarConnected ? 'sidecar connected' : 'sidecar not connected', actor: ctl });
      }
    }
    const before = new Map<string, VersionStatus>();
    for (const app of prev?.apps ?? []) for (const v of app.versions) before.set(v.name, v);
    const after = new Map<string, VersionStatus>();
    for (const app of cur.apps) for (const v of app.versions) after.set(v.name, v);

    for (const v of [...after.values()].reverse()) {
      const old = before.get(v.name);
      if (!old) {
        if (!prev) this.#backfill(v);
        else this.record({ time: now, app: v.app, version: v.name, kind: 'added', message: `${v.version} added (${v.mode}, ${v.source}): ${v.phase}`, actor: ctl });
        continue;
      }
      if (old.phase !== v.phase) {
        const why = [v.reason, v.message].filter(Boolean).join(': ');
        if (v.phase === 'RolledBack') {
          this.record({ time: now, app: v.app, version: v.name, kind: 'rollback', message: `rolled back${why ? ` (${why})` : ''}`, actor: ctl });
        } else {
          this.record({ time: now, app: v.app, version: v.name, kind: 'phase', message: `${old.phase} → ${v.phase}${why ? ` (${why})` : ''}`, actor: ctl });
        }
      }
      // Verdicts: preflight (Pending → Pass/Fail/Overridden) and every new canary-analysis run.
      const pv = v.preflight?.verdict;
      if (pv && pv !== 'Pending' && pv !== old.preflight?.verdict) {
        this.record({ time: now, app: v.app, version: v.name, kind: 'preflight', message: `preflight ${pv}${v.preflight?.message ? `: ${v.preflight.message}` : ''}`, actor: ctl });
      }
      const lastSeen = old.analysis?.runs.at(-1)?.endedAt ?? '';
      for (const run of v.analysis?.runs ?? []) {
        if (run.endedAt <= lastSeen) continue;
        this.record({ time: now, app: v.app, version: v.name, kind: 'analysis', message: `analysis step ${run.step + 1}: ${run.verdict}${run.message ? ` (${run.message})` : ''}`, actor: ctl });
      }
      if (Math.abs(old.traffic - v.traffic) >= TRAFFIC_EPSILON) {
        this.record({ time: now, app: v.app, version: v.name, kind: 'traffic', message: `traffic ${pct(old.traffic)} → ${pct(v.traffic)}`, actor: ctl });
      }
    }
    for (const v of before.values()) {
      if (!after.has(v.name)) this.record({ time: now, app: v.app, version: v.name, kind: 'removed', message: `${v.version} removed`, actor: ctl });
    }

    const errors = new Set(cur.errors.map((e) => `${e.source}\u0000${e.message}`));
    for (const e of cur.errors) {
      const key = `${e.source}\u0000${e.message}`;
      if (!this.#errorsSeen.has(key)) this.record({ time: now, app: '', version: '', kind: 'resource-error', message: e.message, actor: ctl });
    }
    this.#errorsSeen.clear();
    for (const k of errors) this.#errorsSeen.add(k);
  }

  /** First sight of a version that existed before we started: its history from the status timestamps. */
  #backfill(v: VersionStatus): void {
    const entries = Object.entries(v.timestamps)
      .map(([what, iso]) => [what, Date.parse(iso)] as const)
      .filter(([, t]) => Number.isFinite(t))
      .sort((a, b) => a[1] - b[1]);
    for (const [what, t] of entries) {
      const why = what === 'rolledBack' || what === 'failed' ? [v.reason, v.message].filter(Boolean).join(': ') : '';
      this.record({ time: t, app: v.app, version: v.name, kind: what === 'rolledBack' ? 'rollback' : 'phase', message: `${what}${why ? ` (${why})` : ''}`, actor: 'controller' });
    }
    if (entries.length === 0) this.record({ app: v.app, version: v.name, kind: 'added', message: `${v.version} (${v.mode}): ${v.phase}`, actor: 'controller' });
  }

  #emit(m: ObserverMessage): void {
    for (const fn of this.#listeners) {
      try {
        fn(m);
      } catch {
        // a broken listener must not stop the others
      }
    }
  }
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}

function pct(share: number): string {
  return `${Math.round(share * 1000) / 10}%`;
}
