// The routing brain: transition modes, sticky cookies, failure policy and stats.
//
// Everything that only changes with the table is compiled in apply(): one Target per version
// (endpoint keys, failure-status lookup, Set-Cookie strings), and per app an AppPlan holding
// prebuilt RouteDecision objects. route() only looks up the app, scans the Cookie header for one
// or two names and returns one of those prebuilt decisions: no allocation per request.
//
// State that must outlive a table (stats counters, failure-policy windows, GRADUAL progress,
// local rollbacks) lives in a VersionRecord per version id.

import type { Logger } from 'pino';
import {
  DEFAULT_TRANSITION,
  LATENCY_BUCKETS_SECONDS,
  type Endpoint,
  type FailureMessage,
  type GradualStep,
  type RouteApp,
  type RouteVersion,
  type RoutingTable,
  type TransitionConfig,
  type TransitionMode,
  type VersionStats,
} from '../common/protocol.js';
import type { FailureKind, RouteDecision, RoutingState, VersionTarget } from './routing-types.js';
import { cookieValue, parseBucket } from './cookies.js';
import { FailurePolicyTracker, normalizePolicy } from './failure-policy.js';
import { compareVersions } from '../common/version-order.js';
import { AnalysisCounters } from './analysis-samples.js';

const LATENCY_BOUNDS_MS = LATENCY_BUCKETS_SECONDS.map((s) => s * 1000);
/** The GRADUAL bucket is the client's for good: one year. */
export const BUCKET_COOKIE_MAX_AGE_SECONDS = 365 * 24 * 3600;
/** GRADUAL with neither percentagePerRequest nor steps: thesis-like default. */
export const DEFAULT_PERCENTAGE_PER_REQUEST = 1;
/** Local GRADUAL progress is offered to the primary (onProgress) after this many requests. */
export const PROGRESS_BATCH = 16;

const KIND_WORDS: Record<FailureKind, string> = {
  connect: 'connect',
  reset: 'reset',
  'connect-timeout': 'connect timeout',
  'response-timeout': 'response timeout',
  status: 'status',
  protocol: 'protocol',
};

function describeFailure(kind: FailureKind, detail: string): string {
  const word = KIND_WORDS[kind] ?? String(kind);
  if (!detail) return word;
  return detail.startsWith(word) ? detail : `${word} ${detail}`;
}

function isUnsafeMethod(m: string): boolean {
  return m === 'POST' || m === 'PUT' || m === 'PATCH' || m === 'DELETE';
}

/** Lower-case, strip the port (and a trailing dot). IPv6 literals keep their brackets. */
export function normalizeHost(host: string): string {
  let h = host.trim().toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    if (end !== -1) h = h.slice(0, end + 1);
  } else {
    const colon = h.indexOf(':');
    if (colon !== -1) h = h.slice(0, colon);
  }
  if (h.endsWith('.')) h = h.slice(0, -1);
  return h;
}

/** Per version id; survives new tables. Policy and GRADUAL progress reset when the epoch changes. */
class VersionRecord {
  requests = 0;
  errors = 0;
  mismatches = 0;
  /** Non-cumulative counts per latency bucket, last slot = +Inf. */
  readonly latency = new Float64Array(LATENCY_BOUNDS_MS.length + 1);
  latencySum = 0;
  epoch: number;
  policy: FailurePolicyTracker;
  policyKey: string;
  /** GRADUAL: requests routed while this version was the newest (all workers, as far as known). */
  gradualCount = 0;
  /** GRADUAL: local requests not yet handed to takeProgress(). */
  gradualPending = 0;
  /** Canary-analysis samples (null: MOLT_ANALYSIS_SAMPLES=off). Cumulative like the counters above. */
  readonly samples: AnalysisCounters | null;

  constructor(epoch: number, policyKey: string, policy: FailurePolicyTracker, samples: boolean) {
    this.epoch = epoch;
    this.policyKey = policyKey;
    this.policy = policy;
    this.samples = samples ? new AnalysisCounters() : null;
  }

  observe(ms: number): void {
    const b = LATENCY_BOUNDS_MS;
    let i = 0;
    while (i < b.length && ms > b[i]) i++;
    this.latency[i]++;
    this.latencySum += ms / 1000;
  }
}

class Target implements VersionTarget {
  readonly app: string;
  readonly id: string;
  readonly version: string;
  readonly epoch: number;
  readonly endpoints: readonly Endpoint[];
  readonly endpointKeys: readonly string[];
  readonly connectTimeoutMs: number;
  readonly responseTimeoutMs: number;
  readonly state: RouteVersion['state'];
  readonly transition: TransitionConfig;
  readonly promoted: boolean;
  readonly servingSince: number;
  /** GRADUAL under canary analysis: the step the controller holds (undefined: the sidecar's clock). */
  readonly currentStep: number | undefined;
  readonly rec: VersionRecord;
  /** rec.samples, where the data path records each response (VersionTarget.samples). */
  readonly samples: AnalysisCounters | null;
  routable: boolean;
  /** The version Set-Cookie line for this target under the app's current mode (Max-Age only in SESSION). */
  cookieHeader = '';
  #rr = 0;
  readonly #failCodes: Uint8Array;

  constructor(app: string, v: RouteVersion, transition: TransitionConfig, rec: VersionRecord, routable: boolean) {
    this.app = app;
    this.id = v.id;
    this.version = v.version;
    this.epoch = v.epoch;
    this.endpoints = Object.freeze(v.endpoints.map((e) => ({ host: e.host, port: e.port })));
    this.endpointKeys = Object.freeze(v.endpoints.map((e) => `${e.host}:${e.port}`));
    const policy = rec.policy.config;
    this.connectTimeoutMs = policy.connectTimeoutMs;
    this.responseTimeoutMs = policy.responseTimeoutMs;
    this.state = v.state;
    this.transition = transition;
    this.promoted = v.promoted === true;
    this.servingSince = typeof v.servingSince === 'number' ? v.servingSince : 0;
    this.currentStep = typeof v.currentStep === 'number' && Number.isFinite(v.currentStep) ? v.currentStep : undefined;
    this.rec = rec;
    this.samples = rec.samples;
    this.routable = routable;
    this.#failCodes = new Uint8Array(1000);
    for (const c of policy.failureStatusCodes) if (c >= 0 && c < 1000) this.#failCodes[c] = 1;
  }

  nextEndpoint(): number {
    const i = this.#rr;
    const n = this.endpoints.length;
    this.#rr = n > 1 ? (i + 1) % n : 0;
    return i < n ? i : 0;
  }

  isFailureStatus(status: number): boolean {
    return status >= 0 && status < 1000 && this.#failCodes[status] === 1;
  }
}

class Decision implements RouteDecision {
  readonly primary: Target;
  readonly fallback: Target | null;
  readonly shadow: Target | null;
  readonly maxDuplicateBodyBytes: number;
  readonly responseHeaders: (answeredBy: VersionTarget) => string;

  constructor(primary: Target, fallback: Target | null, shadow: Target | null, maxDup: number, extra: string, cookies: boolean) {
    this.primary = primary;
    this.fallback = fallback;
    this.shadow = shadow;
    this.maxDuplicateBodyBytes = maxDup;
    const primaryHeaders = (cookies ? primary.cookieHeader : '') + extra;
    const fallbackHeaders = fallback ? (cookies ? fallback.cookieHeader : '') + extra : extra;
    const shadowHeaders = shadow ? (cookies ? shadow.cookieHeader : '') + extra : extra;
    this.responseHeaders = (answeredBy: VersionTarget): string => {
      if (answeredBy === primary) return primaryHeaders;
      if (answeredBy === fallback) return fallbackHeaders;
      if (answeredBy === shadow) return shadowHeaders;
      return (cookies && answeredBy instanceof Target ? answeredBy.cookieHeader : '') + extra;
    };
  }
}

export interface CompiledStep {
  weight: number;
  /** Unix time (ms) at which this step ends (Infinity = holds). */
  endsAt: number;
}

class AppPlan {
  readonly name: string;
  readonly versionCookie: string;
  readonly bucketCookie: string;
  /** All versions of the table, newest first. */
  readonly targets: Target[];
  readonly byId = new Map<string, Target>();
  // ---- computed by rebuild() ----
  newest: Target | null = null;
  previous: Target | null = null;
  mode: TransitionMode = 'INSTANT';
  newestDecision: Decision | null = null;
  previousDecision: Decision | null = null;
  /** SESSION/GRADUAL stickiness: decision per routable version id. */
  sticky = new Map<string, Decision>();
  concurrentShadow: Decision | null = null;
  concurrentNoShadow: Decision | null = null;
  duplicateUnsafe = false;
  /** GRADUAL, client without a bucket: decisions that also set bucket cookie b. */
  gradualNewIssue: Decision[] = [];
  gradualOldIssue: Decision[] = [];
  perRequest = 0;
  steps: CompiledStep[] | null = null;

  constructor(app: RouteApp, targets: Target[]) {
    this.name = app.name;
    this.versionCookie = app.versionCookie || `molt-version-${app.name}`;
    this.bucketCookie = app.bucketCookie || `molt-bucket-${app.name}`;
    this.targets = targets;
    for (const t of targets) this.byId.set(t.id, t);
    this.rebuild();
  }

  #fallbackOf(t: Target, routables: Target[]): Target | null {
    const i = routables.indexOf(t);
    if (i !== -1 && i + 1 < routables.length) return routables[i + 1];
    return t !== routables[0] ? routables[0] : null;
  }

  /** Recompute everything that depends on which versions are routable. */
  rebuild(): void {
    const routables = this.targets.filter((t) => t.routable);
    const newest = routables[0] ?? null;
    const previous = routables[1] ?? null;
    this.newest = newest;
    this.previous = previous;
    this.sticky = new Map();
    this.gradualNewIssue = [];
    this.gradualOldIssue = [];
    this.newestDecision = this.previousDecision = this.concurrentShadow = this.concurrentNoShadow = null;
    this.steps = null;
    this.perRequest = 0;
    if (!newest) return;

    const tr = newest.transition;
    this.mode = newest.promoted ? 'INSTANT' : tr.mode;
    // Every mode sets the version cookie (thesis 5.2.2): without it a later SESSION transition could
    // not keep existing clients on the version they use. Only SESSION gives it an expiry (Max-Age =
    // sessionTimeout, refreshed on each response); elsewhere it is a browser-session cookie.
    const cookies = true;
    const expiry = this.mode === 'SESSION' ? `; Max-Age=${Math.max(0, Math.floor(tr.sessionTimeoutSeconds))}` : '';
    for (const t of this.targets) {
      t.cookieHeader = `Set-Cookie: ${this.versionCookie}=${t.id}${expiry}; Path=/; HttpOnly; SameSite=Lax\r\n`;
    }
    const maxDup = tr.maxDuplicateBodyBytes;
    for (const t of routables) {
      this.sticky.set(t.id, new Decision(t, this.#fallbackOf(t, routables), null, maxDup, '', cookies));
    }
    this.newestDecision = this.sticky.get(newest.id)!;
    this.previousDecision = previous ? this.sticky.get(previous.id)! : null;

    if (this.mode === 'CONCURRENT') {
      this.duplicateUnsafe = tr.duplicateUnsafeMethods === true;
      this.concurrentShadow = new Decision(newest, previous, previous, maxDup, '', cookies);
      this.concurrentNoShadow = this.newestDecision;
    } else if (this.mode === 'GRADUAL' && previous) {
      const hasSteps = Array.isArray(tr.steps) && tr.steps.length > 0;
      const ppr = typeof tr.percentagePerRequest === 'number' && tr.percentagePerRequest > 0 ? tr.percentagePerRequest : 0;
      this.perRequest = ppr > 0 ? ppr : hasSteps ? 0 : DEFAULT_PERCENTAGE_PER_REQUEST;
      if (hasSteps) this.steps = compileSteps(tr.steps!, newest.servingSince, newest.currentStep);
      const prevFallback = this.#fallbackOf(previous, routables);
      for (let b = 0; b < 100; b++) {
        const set = `Set-Cookie: ${this.bucketCookie}=${b}; Max-Age=${BUCKET_COOKIE_MAX_AGE_SECONDS}; Path=/; HttpOnly; SameSite=Lax\r\n`;
        this.gradualNewIssue.push(new Decision(newest, previous, null, maxDup, set, true));
        this.gradualOldIssue.push(new Decision(previous, prevFallback, null, maxDup, set, true));
      }
    }
  }

  /** GRADUAL threshold 0..100 at `now` (does not count a request). */
  threshold(now: number): number {
    const newest = this.newest;
    if (!newest) return 0;
    let t = this.perRequest > 0 ? newest.rec.gradualCount * this.perRequest : 0;
    const steps = this.steps;
    if (steps) {
      let w = steps[steps.length - 1].weight;
      for (const s of steps) {
        if (now < s.endsAt) {
          w = s.weight;
          break;
        }
      }
      if (w > t) t = w;
    }
    return t >= 100 ? 100 : t;
  }

  shareOf(t: Target, now: number): number {
    if (!t.routable || !this.newest) return 0;
    const isNewest = t === this.newest;
    if (this.mode === 'GRADUAL' && this.previous) {
      const th = this.threshold(now) / 100;
      if (isNewest) return th;
      return t === this.previous ? 1 - th : 0;
    }
    return isNewest ? 1 : 0;
  }
}

/**
 * The step schedule. `currentStep` (canary analysis: the controller owns step advancement) holds
 * that step's weight, clamped to the steps, until a new table changes it: one step that never ends,
 * the pauses ignored. Without it the steps run on the sidecar's clock from `since`.
 */
export function compileSteps(steps: GradualStep[], since: number, currentStep?: number): CompiledStep[] {
  const weightOf = (s: GradualStep) => Math.max(0, Math.min(100, Number(s.weight) || 0));
  if (currentStep !== undefined) {
    const i = Math.max(0, Math.min(steps.length - 1, Math.floor(currentStep)));
    return [{ weight: weightOf(steps[i]), endsAt: Infinity }];
  }
  const out: CompiledStep[] = [];
  let at = since;
  for (let i = 0; i < steps.length; i++) {
    const s = steps[i];
    const weight = weightOf(s);
    const last = i === steps.length - 1;
    const pause = typeof s.pauseMs === 'number' && s.pauseMs >= 0 ? s.pauseMs : Infinity;
    at = last ? Infinity : at + pause;
    out.push({ weight, endsAt: at });
  }
  return out;
}

export interface ProgressEntry {
  id: string;
  epoch: number;
  count: number;
}

export interface RoutingOptions {
  now?: () => number;
  random?: () => number;
  log?: Logger;
  /** Collect canary-analysis samples per version (default true; the sidecar passes false for MOLT_ANALYSIS_SAMPLES=off). */
  analysisSamples?: boolean;
}

export class Routing implements RoutingState {
  onFailure: ((msg: FailureMessage) => void) | null = null;
  /** Called (at most once per PROGRESS_BATCH routed GRADUAL requests) when local progress awaits takeProgress(). */
  onProgress: (() => void) | null = null;
  readonly #now: () => number;
  readonly #random: () => number;
  readonly #log: Logger | undefined;
  readonly #samples: boolean;
  #revision = 0;
  #plans: AppPlan[] = [];
  #byHost = new Map<string, AppPlan>();
  #default: AppPlan | null = null;
  #records = new Map<string, VersionRecord>();
  /** Local rollbacks: version id -> epoch. */
  #failed = new Map<string, number>();
  #pendingTotal = 0;
  /** Trips on a version that could not be rolled back (no previous routable version). */
  unrecoverableTrips = 0;
  callbackErrors = 0;

  constructor(opts: RoutingOptions = {}) {
    this.#now = opts.now ?? Date.now;
    this.#random = opts.random ?? Math.random;
    this.#log = opts.log;
    this.#samples = opts.analysisSamples !== false;
  }

  get revision(): number {
    return this.#revision;
  }

  apply(table: RoutingTable): void {
    const all = new Map<string, RouteVersion>();
    for (const app of table.apps) for (const v of app.versions) all.set(v.id, v);
    for (const [id, epoch] of this.#failed) {
      const v = all.get(id);
      if (!v || v.state !== 'serving' || v.epoch > epoch) this.#failed.delete(id);
    }
    const records = new Map<string, VersionRecord>();
    const plans: AppPlan[] = [];
    const byHost = new Map<string, AppPlan>();
    let def: AppPlan | null = null;
    for (const app of table.apps) {
      const versions = [...app.versions].sort((a, b) => compareVersions(b.version, a.version) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      const targets: Target[] = [];
      for (const v of versions) {
        const policy = normalizePolicy(v.failurePolicy);
        const key = JSON.stringify(policy);
        let rec = this.#records.get(v.id);
        if (!rec) {
          rec = new VersionRecord(v.epoch, key, new FailurePolicyTracker(policy), this.#samples);
        } else if (rec.epoch !== v.epoch) {
          rec.epoch = v.epoch;
          rec.policyKey = key;
          rec.policy = new FailurePolicyTracker(policy);
          rec.gradualCount = 0;
          rec.gradualPending = 0;
        } else if (rec.policyKey !== key) {
          rec.policyKey = key;
          rec.policy = new FailurePolicyTracker(policy);
        }
        records.set(v.id, rec);
        const transition: TransitionConfig = { ...DEFAULT_TRANSITION, ...(v.transition ?? {}) };
        const routable = v.state === 'serving' && v.endpoints.length > 0 && this.#failed.get(v.id) !== v.epoch;
        targets.push(new Target(app.name, v, transition, rec, routable));
      }
      const plan = new AppPlan(app, targets);
      plans.push(plan);
      for (const h of app.hosts) if (!byHost.has(normalizeHost(h))) byHost.set(normalizeHost(h), plan);
      if (app.default && !def) def = plan;
    }
    this.#records = records;
    this.#plans = plans;
    this.#byHost = byHost;
    this.#default = def;
    this.#revision = table.revision;
  }

  #findApp(host: string | undefined): AppPlan | null {
    if (host === undefined || host.length === 0) return this.#default;
    const p = this.#byHost.get(host);
    if (p) return p;
    return this.#byHost.get(normalizeHost(host)) ?? this.#default;
  }

  route(host: string | undefined, cookie: string | undefined, method: string): RouteDecision | null {
    const plan = this.#findApp(host);
    if (!plan || !plan.newestDecision) return null;
    switch (plan.mode) {
      case 'SESSION': {
        const v = cookieValue(cookie, plan.versionCookie);
        if (v !== undefined) {
          const d = plan.sticky.get(v);
          if (d) return d;
        }
        return plan.newestDecision;
      }
      case 'CONCURRENT':
        if (!plan.previous || (!plan.duplicateUnsafe && isUnsafeMethod(method))) return plan.newestDecision;
        return plan.concurrentShadow;
      case 'GRADUAL':
        return plan.previousDecision ? this.#gradual(plan, cookie) : plan.newestDecision;
      default:
        return plan.newestDecision;
    }
  }

  #gradual(plan: AppPlan, cookie: string | undefined): RouteDecision {
    const newest = plan.newest!;
    const threshold = plan.threshold(plan.steps ? this.#now() : 0);
    if (threshold >= 100) return plan.newestDecision!;
    if (plan.perRequest > 0) {
      const rec = newest.rec;
      rec.gradualCount++;
      rec.gradualPending++;
      if (++this.#pendingTotal >= PROGRESS_BATCH && this.onProgress) {
        this.#pendingTotal = 0;
        this.onProgress();
      }
    }
    if (cookieValue(cookie, plan.versionCookie) === newest.id) return plan.newestDecision!;
    const bucket = parseBucket(cookieValue(cookie, plan.bucketCookie));
    if (bucket < 0) {
      const b = Math.min(99, Math.floor(this.#random() * 100));
      return b < threshold ? plan.gradualNewIssue[b] : plan.gradualOldIssue[b];
    }
    return bucket < threshold ? plan.newestDecision! : plan.previousDecision!;
  }

  recordSuccess(target: VersionTarget, _status: number, latencyMs: number): void {
    const t = target as Target;
    const rec = t.rec;
    if (!rec) return;
    rec.requests++;
    rec.observe(latencyMs);
    if (t.epoch === rec.epoch) rec.policy.recordSuccess(this.#now());
  }

  recordFailure(target: VersionTarget, kind: FailureKind, detail: string, latencyMs: number): void {
    const t = target as Target;
    const rec = t.rec;
    if (!rec) return;
    rec.requests++;
    rec.errors++;
    rec.observe(latencyMs);
    if (t.epoch !== rec.epoch || this.#failed.get(t.id) === t.epoch) return;
    const now = this.#now();
    const trip = rec.policy.recordFailure(now, describeFailure(kind, detail));
    if (!trip) return;
    const plan = this.#plans.find((p) => p.name === t.app);
    const cur = plan?.byId.get(t.id);
    if (!plan || !cur || cur.epoch !== t.epoch) return;
    if (plan.newest !== cur || !plan.previous) {
      // Nothing to roll back to (or not the version being upgraded to): counted, not acted on.
      this.unrecoverableTrips++;
      return;
    }
    this.#failed.set(t.id, t.epoch);
    cur.routable = false;
    t.routable = false;
    plan.rebuild();
    const msg: FailureMessage = {
      type: 'failure',
      app: t.app,
      versionId: t.id,
      version: t.version,
      epoch: t.epoch,
      reason: trip.reason,
      firstFailureAt: trip.firstFailureAt,
      rolledBackAt: now,
    };
    this.#log?.warn({ app: t.app, versionId: t.id, epoch: t.epoch, reason: trip.reason }, 'version failed: rolled back locally');
    const cb = this.onFailure;
    if (cb) {
      try {
        cb(msg);
      } catch (err) {
        this.callbackErrors++;
        this.#log?.error({ err }, 'onFailure callback threw');
      }
    }
  }

  recordMismatch(target: VersionTarget): void {
    const rec = (target as Target).rec;
    if (rec) rec.mismatches++;
  }

  markFailed(versionId: string, epoch: number): void {
    const known = this.#failed.get(versionId);
    if (known !== undefined && known >= epoch) return;
    for (const plan of this.#plans) {
      const t = plan.byId.get(versionId);
      if (!t) continue;
      if (t.epoch > epoch) return; // stale report for an older epoch
      this.#failed.set(versionId, epoch);
      if (t.epoch === epoch && t.routable) {
        t.routable = false;
        plan.rebuild();
      }
      return;
    }
    this.#failed.set(versionId, epoch); // table not seen yet: apply() validates it
  }

  /** Local rollbacks currently in force: [versionId, epoch]. */
  failedVersions(): Array<[string, number]> {
    return [...this.#failed];
  }

  stats(): VersionStats[] {
    const now = this.#now();
    const out: VersionStats[] = [];
    for (const plan of this.#plans) {
      for (const t of plan.targets) {
        const rec = t.rec;
        const counts: number[] = [];
        let cum = 0;
        for (let i = 0; i < LATENCY_BOUNDS_MS.length; i++) counts.push((cum += rec.latency[i]));
        out.push({
          app: plan.name,
          versionId: t.id,
          version: t.version,
          requests: rec.requests,
          errors: rec.errors,
          mismatches: rec.mismatches,
          latencyBuckets: LATENCY_BUCKETS_SECONDS.slice(),
          latencyCounts: counts,
          latencySum: rec.latencySum,
          trafficShare: plan.shareOf(t, now),
          ...(rec.samples !== null ? { analysis: rec.samples.snapshot() } : {}),
        });
      }
    }
    return out;
  }

  // ---- GRADUAL progress across worker processes ----

  /** Drain local progress not yet reported: one entry per version with pending requests. */
  takeProgress(): ProgressEntry[] {
    this.#pendingTotal = 0;
    const out: ProgressEntry[] = [];
    for (const [id, rec] of this.#records) {
      if (rec.gradualPending > 0) {
        out.push({ id, epoch: rec.epoch, count: rec.gradualPending });
        rec.gradualPending = 0;
      }
    }
    return out;
  }

  /** Adopt the cluster-wide total for (id, epoch); local requests not yet reported are kept on top. */
  setProgressTotal(id: string, epoch: number, total: number): void {
    const rec = this.#records.get(id);
    if (!rec || rec.epoch !== epoch) return;
    const n = total + rec.gradualPending;
    if (n > rec.gradualCount) rec.gradualCount = n;
  }

  /** Add requests routed elsewhere to (id, epoch)'s progress. */
  addProgress(id: string, epoch: number, count: number): void {
    const rec = this.#records.get(id);
    if (rec && rec.epoch === epoch && count > 0) rec.gradualCount += count;
  }

  /** GRADUAL progress (requests counted) for a version id, 0 if unknown. */
  progress(id: string): number {
    return this.#records.get(id)?.gradualCount ?? 0;
  }

  /** Current GRADUAL threshold (0..100) of an app, or null if the app is unknown. */
  threshold(app: string): number | null {
    const plan = this.#plans.find((p) => p.name === app);
    return plan ? plan.threshold(this.#now()) : null;
  }
}

export function createRoutingState(opts?: RoutingOptions): Routing {
  return new Routing(opts);
}
