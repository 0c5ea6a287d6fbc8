// Prometheus metrics for the controller: one prom-client Registry per MoltMetrics (never the global one),
// bounded label values, and every fixed label set initialised to zero so dashboards see the series before
// the first event.
//
// Per-version traffic numbers come from the sidecar's StatsMessage, which carries totals since the sidecar
// process started. We keep our own monotonic counters by adding deltas against the last snapshot per
// version; when a total goes down the sidecar restarted, and the new totals are the delta (a reset).

import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry, type Metric } from 'prom-client';
import { PHASES, type Phase } from './phase.js';
import { LATENCY_BUCKETS_SECONDS, type StatsMessage, type VersionStats } from '../common/protocol.js';

/** Every phase (controller/phase.ts), each a molt_appversions series initialised to 0. */
export { PHASES };

export type RollbackReason = 'policy' | 'manual' | 'crash' | 'unready' | 'analysis';
export const ROLLBACK_REASONS: readonly RollbackReason[] = ['policy', 'manual', 'crash', 'unready', 'analysis'];

export type ReconcileResult = 'success' | 'error';

const RECONCILE_BUCKETS_SECONDS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30];

export interface MoltMetricsOptions {
  /** Collect prom-client's default process metrics (prefixed `molt_`). Default true. */
  defaultMetrics?: boolean;
}

/** Last totals seen from the sidecar for one version id. */
interface Snapshot {
  app: string;
  version: string;
  requests: number;
  errors: number;
  mismatches: number;
  /** Cumulative counts mapped onto LATENCY_BUCKETS_SECONDS. */
  buckets: number[];
  count: number;
  sum: number;
}

interface HistogramSeries {
  labels: { app: string; version: string };
  /** Cumulative (le) counts per LATENCY_BUCKETS_SECONDS bound. */
  buckets: number[];
  count: number;
  sum: number;
}

/**
 * A histogram whose buckets are fed with already-bucketed counts (deltas of the sidecar's cumulative
 * buckets) instead of single observations. prom-client's Histogram only supports observe(), so this is a
 * minimal custom metric registered directly with the Registry (it reads name/help/type/get()/reset()).
 */
class BucketedHistogram {
  readonly name: string;
  readonly help: string;
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly labelNames = ['app', 'version'];
  readonly #bounds: readonly number[];
  readonly #series = new Map<string, HistogramSeries>();

  constructor(name: string, help: string, bounds: readonly number[]) {
    this.name = name;
    this.help = help;
    this.#bounds = bounds;
  }

  add(app: string, version: string, bucketDeltas: number[], countDelta: number, sumDelta: number): void {
    const key = labelKey(app, version);
    let s = this.#series.get(key);
    if (!s) {
      s = { labels: { app, version }, buckets: new Array(this.#bounds.length).fill(0), count: 0, sum: 0 };
      this.#series.set(key, s);
    }
    for (let i = 0; i < s.buckets.length; i++) s.buckets[i]! += bucketDeltas[i] ?? 0;
    s.count += countDelta;
    s.sum += sumDelta;
  }

  remove(app: string, version: string): void {
    this.#series.delete(labelKey(app, version));
  }

  reset(): void {
    this.#series.clear();
  }

  async get() {
    const values: Array<{ labels: Record<string, string | number>; value: number; metricName: string }> = [];
    for (const s of this.#series.values()) {
      for (let i = 0; i < this.#bounds.length; i++) {
        values.push({ labels: { ...s.labels, le: this.#bounds[i]! }, value: s.buckets[i]!, metricName: `${this.name}_bucket` });
      }
      values.push({ labels: { ...s.labels, le: '+Inf' }, value: s.count, metricName: `${this.name}_bucket` });
      values.push({ labels: s.labels, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels: s.labels, value: s.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }
}

function labelKey(app: string, version: string): string {
  return `${app}\u0000${version}`;
}

/** Map the sidecar's cumulative counts (per its own bounds) onto our bounds. With identical bounds (the
 *  normal case) this is a copy; otherwise each of our bounds takes the count of the largest sidecar bound
 *  not above it, which never over-counts a bucket. */
function mapBuckets(srcBounds: readonly number[], srcCounts: readonly number[], dstBounds: readonly number[]): number[] {
  const out = new Array<number>(dstBounds.length).fill(0);
  let j = -1;
  for (let i = 0; i < dstBounds.length; i++) {
    const b = dstBounds[i]!;
    while (j + 1 < srcBounds.length && srcBounds[j + 1]! <= b * (1 + 1e-9)) j++;
    out[i] = j >= 0 ? finite(srcCounts[j]) : 0;
  }
  return out;
}

function finite(n: unknown): number {
  return typeof n === 'number' && Number.isFinite(n) && n > 0 ? n : 0;
}

export class MoltMetrics {
  readonly registry: Registry;
  readonly #requests: Counter<'app' | 'version'>;
  readonly #errors: Counter<'app' | 'version'>;
  readonly #mismatches: Counter<'app' | 'version'>;
  readonly #traffic: Gauge<'app' | 'version'>;
  readonly #duration: BucketedHistogram;
  readonly #rollbacks: Counter<'app' | 'reason'>;
  readonly #reconciles: Counter<'result'>;
  readonly #reconcileDuration: Histogram<string>;
  readonly #sidecarConnected: Gauge<string>;
  readonly #appversions: Gauge<'phase'>;
  readonly #versionPhase: Gauge<'app' | 'version' | 'phase'>;
  readonly #phaseEntered: Gauge<'app' | 'version' | 'phase'>;
  readonly #preflightRequests: Counter<'app' | 'version' | 'result'>;
  readonly #preflightLatency: Gauge<'app' | 'version' | 'side' | 'quantile'>;
  readonly #preflightRuns: Counter<'app' | 'version' | 'verdict'>;
  readonly #risk: Gauge<'app'>;
  readonly #analysisRuns: Counter<'app' | 'version' | 'verdict'>;
  /** "app\0version" -> the phase its molt_version_phase series carries now. */
  readonly #phaseOf = new Map<string, string>();
  /** "app\0version\0result" -> last preflight count seen (counts restart with each run). */
  readonly #preflightSeen = new Map<string, number>();
  /** versionId -> last totals seen from the sidecar. */
  readonly #snapshots = new Map<string, Snapshot>();
  readonly #knownApps = new Set<string>();
  #sidecarPid: number | undefined;

  constructor(opts: MoltMetricsOptions = {}) {
    const registers = [(this.registry = new Registry())];
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'molt_' });

    this.#requests = new Counter({
      name: 'molt_requests_total',
      help: 'Requests routed to a version (from the sidecar)',
      labelNames: ['app', 'version'],
      registers,
    });
    this.#errors = new Counter({
      name: 'molt_request_errors_total',
      help: 'Requests to a version that counted as failures under its failure policy',
      labelNames: ['app', 'version'],
      registers,
    });
    this.#duration = new BucketedHistogram(
      'molt_request_duration_seconds',
      'Upstream response latency per version, as measured by the sidecar',
      LATENCY_BUCKETS_SECONDS,
    );
    this.registry.registerMetric(this.#duration as unknown as Metric);
    this.#mismatches = new Counter({
      name: 'molt_concurrent_mismatches_total',
      help: 'CONCURRENT mode: responses whose status differed from the previous version',
      labelNames: ['app', 'version'],
      registers,
    });
    this.#traffic = new Gauge({
      name: 'molt_traffic_share',
      help: 'Share of new traffic a version receives now, 0..1',
      labelNames: ['app', 'version'],
      registers,
    });
    this.#rollbacks = new Counter({
      name: 'molt_rollbacks_total',
      help: 'Rollbacks by app and reason (policy|manual|crash|unready|analysis)',
      labelNames: ['app', 'reason'],
      registers,
    });
    this.#analysisRuns = new Counter({
      name: 'molt_analysis_runs_total',
      help: 'Canary analysis runs (one per judged window) by verdict: Pass, Fail, Inconclusive',
      labelNames: ['app', 'version', 'verdict'],
      registers,
    });
    this.#reconciles = new Counter({
      name: 'molt_reconcile_total',
      help: 'Reconciles by result',
      labelNames: ['result'],
      registers,
    });
    this.#reconcileDuration = new Histogram({
      name: 'molt_reconcile_duration_seconds',
      help: 'Duration of one reconcile',
      buckets: RECONCILE_BUCKETS_SECONDS,
      registers,
    });
    this.#sidecarConnected = new Gauge({
      name: 'molt_sidecar_connected',
      help: '1 when the sidecar is connected to the controller',
      registers,
    });
    this.#appversions = new Gauge({
      name: 'molt_appversions',
      help: 'AppVersions by phase',
      labelNames: ['phase'],
      registers,
    });

    this.#versionPhase = new Gauge({
      name: 'molt_version_phase',
      help: 'Phase of each version: 1 on the series of its current phase (one series per version)',
      labelNames: ['app', 'version', 'phase'],
      registers,
    });
    this.#phaseEntered = new Gauge({
      name: 'molt_version_phase_entered_timestamp_seconds',
      help: 'Unix time when the version entered its current phase (for "stuck in phase" alerts)',
      labelNames: ['app', 'version', 'phase'],
      registers,
    });
    this.#preflightRequests = new Counter({
      name: 'molt_preflight_requests_total',
      help: 'Preflight requests by result: compared (both answered), mismatched (compared and different), errors (new version failed where the serving one answered), dropped (copy bound reached), skipped',
      labelNames: ['app', 'version', 'result'],
      registers,
    });
    this.#preflightLatency = new Gauge({
      name: 'molt_preflight_latency_seconds',
      help: 'Preflight latency quantiles of the serving (old) and tested (new) version over the compared requests',
      labelNames: ['app', 'version', 'side', 'quantile'],
      registers,
    });
    this.#preflightRuns = new Counter({
      name: 'molt_preflight_runs_total',
      help: 'Finished preflights by verdict (Pass, Fail)',
      labelNames: ['app', 'version', 'verdict'],
      registers,
    });

    this.#risk = new Gauge({
      name: 'molt_mixed_version_risk',
      help: "Imago's P = s(1 - s^c): chance that one client interaction of c calls meets both versions, s = the newest version's share of new traffic",
      labelNames: ['app'],
      registers,
    });

    this.#reconciles.inc({ result: 'success' }, 0);
    this.#reconciles.inc({ result: 'error' }, 0);
    this.#sidecarConnected.set(0);
    for (const phase of PHASES) this.#appversions.set({ phase }, 0);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  /** Feed one stats message from the sidecar (totals since the sidecar started). */
  observeStats(msg: StatsMessage): void {
    for (const v of msg.versions) this.#observeVersion(v);
  }

  #observeVersion(v: VersionStats): void {
    const { app, version } = v;
    this.#initApp(app);
    const bounds = Array.isArray(v.latencyBuckets) && v.latencyBuckets.length ? v.latencyBuckets : LATENCY_BUCKETS_SECONDS;
    const counts = Array.isArray(v.latencyCounts) ? v.latencyCounts : [];
    // latencyCounts may carry one extra trailing entry for +Inf; otherwise the total is the request count.
    const inf = counts.length > bounds.length ? finite(counts[bounds.length]) : 0;
    const buckets = mapBuckets(bounds, counts, LATENCY_BUCKETS_SECONDS);
    const cur: Snapshot = {
      app,
      version,
      requests: finite(v.requests),
      errors: finite(v.errors),
      mismatches: finite(v.mismatches),
      buckets,
      count: Math.max(inf, finite(v.requests), buckets[buckets.length - 1] ?? 0),
      sum: finite(v.latencySum),
    };

    let prev = this.#snapshots.get(v.versionId);
    // Labels changed under the same id (should not happen): start that series from scratch.
    if (prev && (prev.app !== app || prev.version !== version)) prev = undefined;
    // A sidecar restart resets every total at once; any total going down means "start over from zero".
    if (prev && isReset(prev, cur)) prev = undefined;
    this.#snapshots.set(v.versionId, cur);

    const labels = { app, version };
    this.#requests.inc(labels, cur.requests - (prev?.requests ?? 0));
    this.#errors.inc(labels, cur.errors - (prev?.errors ?? 0));
    this.#mismatches.inc(labels, cur.mismatches - (prev?.mismatches ?? 0));
    const bucketDeltas = prev ? cur.buckets.map((c, i) => c - prev!.buckets[i]!) : cur.buckets;
    this.#duration.add(app, version, bucketDeltas, cur.count - (prev?.count ?? 0), cur.sum - (prev?.sum ?? 0));
    const share = typeof v.trafficShare === 'number' && Number.isFinite(v.trafficShare) ? v.trafficShare : 0;
    this.#traffic.set(labels, Math.min(1, Math.max(0, share)));
  }

  /** Call on every sidecar hello: a different pid is a new sidecar process whose totals start from zero,
   *  even if they already climbed above our last snapshot before the first stats message arrived. */
  sidecarStarted(pid: number): void {
    if (this.#sidecarPid !== undefined && this.#sidecarPid !== pid) this.#snapshots.clear();
    this.#sidecarPid = pid;
  }

  rollback(app: string, reason: RollbackReason): void {
    this.#initApp(app);
    // Keep the label bounded even if a caller passes something unexpected at runtime.
    const r: RollbackReason = ROLLBACK_REASONS.includes(reason) ? reason : 'policy';
    this.#rollbacks.inc({ app, reason: r });
  }

  reconcile(result: ReconcileResult, seconds: number): void {
    this.#reconciles.inc({ result: result === 'success' ? 'success' : 'error' });
    if (Number.isFinite(seconds) && seconds >= 0) this.#reconcileDuration.observe(seconds);
  }

  setSidecarConnected(connected: boolean): void {
    this.#sidecarConnected.set(connected ? 1 : 0);
  }

  /** Current number of AppVersions per phase; phases not given are 0. */
  setPhases(counts: Partial<Record<Phase, number>>): void {
    for (const phase of PHASES) this.#appversions.set({ phase }, counts[phase] ?? 0);
  }

  /** Drop every series of a deleted version so label cardinality stays bounded. */
  forgetVersion(app: string, version: string): void {
    const labels = { app, version };
    this.#requests.remove(labels);
    this.#errors.remove(labels);
    this.#mismatches.remove(labels);
    this.#traffic.remove(labels);
    this.#duration.remove(app, version);
    const key = `${app}\u0000${version}`;
    const phase = this.#phaseOf.get(key);
    if (phase !== undefined) {
      this.#versionPhase.remove({ app, version, phase });
      this.#phaseEntered.remove({ app, version, phase });
      this.#phaseOf.delete(key);
    }
    for (const k of [...this.#preflightSeen.keys()]) if (k.startsWith(key + '\u0000')) this.#preflightSeen.delete(k);
    for (const result of ['compared', 'mismatched', 'errors', 'dropped', 'skipped']) this.#preflightRequests.remove({ app, version, result });
    for (const side of ['old', 'new']) for (const quantile of ['0.5', '0.95']) this.#preflightLatency.remove({ app, version, side, quantile });
    for (const verdict of ['Pass', 'Fail']) this.#preflightRuns.remove({ app, version, verdict });
    for (const verdict of ['Pass', 'Fail', 'Inconclusive']) this.#analysisRuns.remove({ app, version, verdict });
    for (const [id, s] of this.#snapshots) if (s.app === app && s.version === version) this.#snapshots.delete(id);
  }

  /** The version's current phase, and when it was entered (Unix ms). */
  setVersionPhase(app: string, version: string, phase: string, enteredAtMs: number): void {
    const key = `${app}\u0000${version}`;
    const prev = this.#phaseOf.get(key);
    if (prev !== undefined && prev !== phase) {
      this.#versionPhase.remove({ app, version, phase: prev });
      this.#phaseEntered.remove({ app, version, phase: prev });
    }
    this.#phaseOf.set(key, phase);
    this.#versionPhase.set({ app, version, phase }, 1);
    this.#phaseEntered.set({ app, version, phase }, Math.floor(enteredAtMs / 1000));
  }

  /** A preflight's running totals (they restart with each run). */
  preflight(app: string, version: string, s: { compared: number; mismatched: number; errors: number; dropped: number; skipped: number; latency: { oldP50: number | null; oldP95: number | null; newP50: number | null; newP95: number | null } }): void {
    for (const result of ['compared', 'mismatched', 'errors', 'dropped', 'skipped'] as const) {
      const key = `${app}\u0000${version}\u0000${result}`;
      const last = this.#preflightSeen.get(key) ?? 0;
      const cur = s[result];
      const delta = cur >= last ? cur - last : cur;
      this.#preflightSeen.set(key, cur);
      this.#preflightRequests.inc({ app, version, result }, delta);
    }
    const l = s.latency;
    const put = (side: string, quantile: string, ms: number | null) => {
      if (ms === null) this.#preflightLatency.remove({ app, version, side, quantile });
      else this.#preflightLatency.set({ app, version, side, quantile }, ms / 1000);
    };
    put('old', '0.5', l.oldP50);
    put('old', '0.95', l.oldP95);
    put('new', '0.5', l.newP50);
    put('new', '0.95', l.newP95);
  }

  setMixedVersionRisk(app: string, risk: number): void {
    this.#risk.set({ app }, risk);
  }

  /** One canary-analysis run judged (issue 12). */
  analysisRun(app: string, version: string, verdict: 'Pass' | 'Fail' | 'Inconclusive'): void {
    this.#analysisRuns.inc({ app, version, verdict });
  }

  preflightVerdict(app: string, version: string, verdict: string): void {
    this.#preflightRuns.inc({ app, version, verdict });
  }

  /** Drop an app's rollback series (call when its last version is deleted). */
  forgetApp(app: string): void {
    if (!this.#knownApps.delete(app)) return;
    for (const reason of ROLLBACK_REASONS) this.#rollbacks.remove({ app, reason });
    this.#risk.remove({ app });
  }

  #initApp(app: string): void {
    if (this.#knownApps.has(app)) return;
    this.#knownApps.add(app);
    for (const reason of ROLLBACK_REASONS) this.#rollbacks.inc({ app, reason }, 0);
  }
}

function isReset(prev: Snapshot, cur: Snapshot): boolean {
  if (cur.requests < prev.requests || cur.errors < prev.errors || cur.mismatches < prev.mismatches) return true;
  if (cur.count < prev.count || cur.sum < prev.sum) return true;
  for (let i = 0; i < cur.buckets.length; i++) if (cur.buckets[i]! < prev.buckets[i]!) return true;
  return false;
}
