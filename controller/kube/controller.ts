// Kubernetes mode: AppVersion resources in one namespace -> Deployments/Services (leader only), status
// (leader only) and routing tables (every replica, pushed to its own sidecar).
//
// Level-triggered: informer events only enqueue the app name; reconcile(app) reads the caches fresh,
// computes desired vs actual, acts, and is safe to repeat. Every replica computes the routing table from the
// same inputs (the AppVersions with their status and annotations, and the EndpointSlices), so all sidecars
// get identical routes (revisions are per replica).
//
// A version enters the table once it has ready endpoints and the leader has stamped status.timestamps.serving
// for its generation (the GRADUAL schedule counts from that instant, identically on every replica). It is
// rolledBack when its status says RolledBack for the current generation or a replica's sidecar reported a
// failure for it (annotation molt.dev/rollback, see status.ts).
//
// Leadership fences writes. Every write that only the leader may make (Deployments, Services, status) goes
// through clients bound to the current leadership term (client.ts WriteFence): the moment the elector
// reports the Lease lost (another holder, or the renew deadline passed, even while a renewal hangs), requests
// of that term are refused before they are sent and aborted if in flight. The replica then carries on as a
// follower: it keeps its caches and keeps pushing routing tables to its own sidecar (routing never depends
// on leadership), and campaigns again. controller-runtime's manager exits on a lost lease instead, because
// its controllers only run on the leader and it cannot cancel their writes; here every replica has
// follower work (its sidecar's routes), and writes are cancellable, so exiting would only cost a restart
// and a full re-list. Rollback reports (the molt.dev/rollback annotation) are written by any replica.
//
// Preflight (issue 11, docs/preflight.md "Kubernetes mode"): the leader runs the PreflightRun of every healthy
// version in phase Testing, fed by its own sidecar's recording (traffic-request over its control socket), and
// writes the evidence and verdict to status.preflight. A version in Testing or Rejected has no serving stamp,
// so no replica routes it. On a pass the leader stamps status.timestamps.serving switchDelayMs in the future:
// every replica adds the version to its table at that instant (a requeue-after at the stamp), not when its
// watch delivers the status, so all sidecars switch together (within the replicas' clock skew). The
// molt.dev/promoted annotation for this generation (`kubectl molt promote APP VERSION`) overrides the gate
// and re-admits a Rejected version. A new leader starts the preflight of a version still Testing afresh.
//
// Canary analysis (issue 12, docs/kubernetes.md "Canary analysis"): the leader runs the gates of a GRADUAL
// version under analysis on its own sidecar's samples and writes them to status.analysis; every replica routes
// at status.analysis.step (RouteVersion.currentStep), so no sidecar advances steps on its own clock.
//
// Read-only ControllerApi: every replica serves the admin API's read endpoints and the dashboard from its
// caches (kube/main.ts); actions answer 403 pointing to kubectl molt.
//
// Healing: every key is reconciled again every resyncMs (from the caches, like a controller-runtime
// SyncPeriod), and a reconcile asks for a requeue-after when something becomes due at a known time (the
// startup deadline, see startupTimeoutStatus).

import type { KubeConfig, KubernetesListObject, KubernetesObject, V1Deployment, V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { AppVersion, Phase } from '../appversion.js';
import type { AppStatus, ControllerApi, ControllerStatus, ResourceError, VersionStatus } from '../controller-api.js';
import { MoltError } from '../../common/errors.js';
import type { Har } from '../../common/har.js';
import { PreflightManager, runConfigFrom, type PreflightDeps, type PreflightEvidence, type PreflightRun } from '../preflight.js';
import { appRedaction, trafficToHar } from '../traffic.js';
import type { ReconcileResult } from './queue.js';
import type { ControlServer } from '../control-server.js';
import { normalizeAppVersion } from '../load.js';
import type { MoltMetrics } from '../metrics.js';
import { buildRoutingTable, sameRoutes, type VersionRouting } from '../routing-table.js';
import type { Endpoint, FailureMessage, RoutingTable, StatsMessage } from '../../common/protocol.js';
import {
  APPVERSION_LABEL,
  APPVERSIONS_PATH,
  DEPLOYMENTS_PATH,
  ENDPOINTSLICES_PATH,
  GROUP,
  MANAGED_BY,
  MANAGED_BY_LABEL,
  PLURAL,
  VERSION,
  describeError,
  httpStatus,
  isNotLeader,
  makeClients,
  type KubeClients,
} from './client.js';
import { applyDeployment, applyService, desiredDeployment, desiredService, objectName, readyEndpoints } from './deployments.js';
import { Watched, type BackoffOptions } from './informers.js';
import { LeaderElector } from './leader.js';
import { WorkQueue } from './queue.js';
import { RolloutRiskTracker } from '../../common/mixed-version-risk.js';
import { isPhase, isTerminal, rollbackMetricReason, type PhaseObservations, type PreflightRejectReason } from '../phase.js';
import { gatePlanOf } from '../analysis/gate.js';
import { advance, decide, gateConfig, onSamples, restartWindow, startGate, timedAdvanceDue, windowData, type GatePlan, type GateState, type Snapshot as SamplesSnapshot } from '../analysis/gate.js';
import { judge } from '../analysis/judge.js';
import { runPrometheusChecks } from '../analysis/prometheus.js';
import { combine, type AnalysisResult, type MetricResult } from '../analysis/types.js';
import {
  PROMOTED_ANNOTATION,
  computeStatus,
  promotedFor,
  PROMOTE_STEP_ANNOTATION,
  storedAnalysis,
  storedPreflight,
  toStatus,
  currentRollback,
  readStatus,
  roundTraffic,
  sameStatus,
  servingSinceOf,
  writeRollbackReport,
  writeStatus,
  type KubeAnalysisStatus,
  type KubeStatus,
  type RollbackReport,
} from './status.js';

/** The leader's gate of one version under canary analysis (this generation and spec). */
interface LeaderGate {
  /** `${specHash}@${generation}`: a gate of an older spec is never used. */
  key: string;
  gate: GateState;
  promoted: boolean;
  rollback?: { reason: 'AnalysisFailed' | 'AnalysisInconclusive'; message: string };
  /** A run waiting for Prometheus (its token). */
  pending?: string;
}

export interface KubeControllerOptions {
  kubeConfig: KubeConfig;
  namespace: string;
  controlServer: ControlServer;
  /** Unique per replica (the pod name). */
  identity: string;
  log?: Logger;
  leaseName?: string;
  leaseDurationMs?: number;
  renewMs?: number;
  metrics?: MoltMetrics;
  /** Reconcile retry backoff. */
  backoff?: BackoffOptions;
  /** List/watch restart backoff. */
  informerBackoff?: BackoffOptions;
  /** Called with every table pushed (tests, debugging). */
  onTable?: (table: RoutingTable) => void;
  now?: () => number;
  /** Reconcile every key again this often even without events (0 = never). Default 5 minutes. */
  resyncMs?: number;
  /** Preflight: how far in the future the leader stamps the switch after a pass (default 2 s). */
  switchDelayMs?: number;
  /** Preflight: how often the run reads live traffic (default 500 ms). */
  preflightPollMs?: number;
}

/** Pending preflight evidence is written to status at most this often (each compared request changes it). */
const EVIDENCE_INTERVAL_MS = 2000;

/** The read-only answer to every action on a replica's admin port. */
function readOnly(action: string): MoltError {
  return new MoltError('MOLT_ERR_FORBIDDEN', `the admin API is read-only in Kubernetes mode: ${action}`);
}

export const DEFAULT_RESYNC_MS = 5 * 60_000;

/** A raw AppVersion as stored in the apiserver (untrusted shape). */
export interface RawAppVersion extends KubernetesObject {
  metadata: NonNullable<KubernetesObject['metadata']> & { name: string };
  spec?: { app?: unknown } & Record<string, unknown>;
  status?: unknown;
}

const UNSUPPORTED_PROCESS = 'the process runtime is not supported in Kubernetes mode; use docker or servers';

/** Work-queue key of an AppVersion: its app, or a per-resource key when the spec has no usable app. */
export function keyOf(raw: RawAppVersion): string {
  const app = raw.spec?.app;
  return typeof app === 'string' && app ? app : `#${raw.metadata.name}`;
}

export class KubeController implements ControllerApi {
  readonly namespace: string;
  readonly identity: string;
  #o: KubeControllerOptions;
  #log: Logger | undefined;
  /** Unfenced clients: reads, and writes any replica may make (rollback reports). */
  #clients: KubeClients;
  /** Clients bound to the current leadership term; null when not leader. */
  #writer: KubeClients | null = null;
  #leaderSince = 0;
  #resyncTimer: NodeJS.Timeout | null = null;
  #avs: Watched<RawAppVersion>;
  #deployments: Watched<V1Deployment>;
  #services: Watched<V1Service>;
  #slices: Watched<V1EndpointSlice>;
  #elector: LeaderElector;
  #queue: WorkQueue;
  #now: () => number;
  #keyByName = new Map<string, string>();
  #nameByObject = new Map<string, string>();
  #routes = new Map<string, VersionRouting[]>();
  #phases = new Map<string, Phase>();
  #traffic = new Map<string, number>();
  #requests = new Map<string, { requests: number; errors: number }>();
  /** Mixed-version risk per app as this replica's sidecar sees it (its share of the traffic). */
  readonly #risk = new RolloutRiskTracker();
  /** Leader only, created at start(): the preflights of versions in Testing. */
  #preflights: PreflightManager | null = null;
  /** Rollout key (spec hash @ generation) of each run, so a run of an older spec is never read. */
  #runKeys = new Map<string, string>();
  /** Per work-queue key: the versions whose run must be kept (Testing, or a verdict not yet in status). */
  #keepRuns = new Map<string, Set<string>>();
  #evidenceAt = new Map<string, number>();
  #verdictCounted = new Set<string>();
  #pendingReports = new Map<string, RollbackReport>();
  /** Leader only: canary analysis gates by AppVersion name (durable part in status.analysis). */
  #gates = new Map<string, LeaderGate>();
  #revision = 0;
  #lastTable: RoutingTable | null = null;
  #started = false;
  #onFailure = (m: FailureMessage) => this.#failureReported(m);
  #onStats = (m: StatsMessage) => this.#statsReported(m);
  #onConnected = () => this.#o.metrics?.setSidecarConnected(true);
  #onDisconnected = () => this.#o.metrics?.setSidecarConnected(this.#o.controlServer.connected);
  /** Counters (tests, admin endpoint). */
  readonly counters = { tablesPushed: 0, statusWrites: 0, deploymentWrites: 0, failureReports: 0, reportsWritten: 0, fencedWrites: 0, resyncs: 0, leadershipLost: 0 };

  constructor(opts: KubeControllerOptions) {
    this.#o = opts;
    this.namespace = opts.namespace;
    this.identity = opts.identity;
    this.#log = opts.log;
    this.#now = opts.now ?? Date.now;
    this.#clients = makeClients(opts.kubeConfig);
    const ns = opts.namespace;
    const kc = opts.kubeConfig;
    const selector = `${MANAGED_BY_LABEL}=${MANAGED_BY}`;
    const backoff = opts.informerBackoff;
    const { custom, apps, core, discovery } = this.#clients;
    this.#avs = new Watched<RawAppVersion>({
      kubeConfig: kc, name: 'appversions', path: APPVERSIONS_PATH(ns), log: opts.log, backoff,
      list: () => custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL }) as Promise<KubernetesListObject<RawAppVersion>>,
    });
    this.#deployments = new Watched<V1Deployment>({
      kubeConfig: kc, name: 'deployments', path: DEPLOYMENTS_PATH(ns), labelSelector: selector, log: opts.log, backoff,
      list: () => apps.listNamespacedDeployment({ namespace: ns, labelSelector: selector }),
    });
    this.#services = new Watched<V1Service>({
      kubeConfig: kc, name: 'services', path: `/api/v1/namespaces/${encodeURIComponent(ns)}/services`, labelSelector: selector, log: opts.log, backoff,
      list: () => core.listNamespacedService({ namespace: ns, labelSelector: selector }),
    });
    // EndpointSlices carry their Service's labels (copied by the EndpointSlice controller).
    this.#slices = new Watched<V1EndpointSlice>({
      kubeConfig: kc, name: 'endpointslices', path: ENDPOINTSLICES_PATH(ns), labelSelector: APPVERSION_LABEL, log: opts.log, backoff,
      list: () => discovery.listNamespacedEndpointSlice({ namespace: ns, labelSelector: APPVERSION_LABEL }),
    });
    this.#avs.on('change', (raw) => this.#avChanged(raw));
    const byObjectLabel = (o: KubernetesObject) => this.#enqueueObject(o.metadata?.labels?.[APPVERSION_LABEL]);
    this.#deployments.on('change', byObjectLabel);
    this.#services.on('change', byObjectLabel);
    this.#slices.on('change', (s) => this.#enqueueObject(s.metadata?.labels?.['kubernetes.io/service-name']));

    this.#elector = new LeaderElector({
      api: this.#clients.coordination,
      namespace: ns,
      name: opts.leaseName ?? 'molt-controller',
      identity: opts.identity,
      leaseDurationMs: opts.leaseDurationMs,
      renewMs: opts.renewMs,
      log: opts.log,
      now: opts.now,
    });
    this.#elector.on('started', () => this.#leadershipStarted());
    this.#elector.on('stopped', (reason) => this.#leadershipStopped(reason));
    this.#queue = new WorkQueue((key) => this.#reconcile(key), {
      backoff: opts.backoff,
      log: opts.log,
      onResult: (_key, result, seconds) => opts.metrics?.reconcile(result, seconds),
    });
  }

  get isLeader(): boolean {
    return this.#elector.isLeader;
  }

  get elector(): LeaderElector {
    return this.#elector;
  }

  get informers(): { appversions: Watched<RawAppVersion>; deployments: Watched<V1Deployment>; services: Watched<V1Service>; endpointslices: Watched<V1EndpointSlice> } {
    return { appversions: this.#avs, deployments: this.#deployments, services: this.#services, endpointslices: this.#slices };
  }

  get queue(): WorkQueue {
    return this.#queue;
  }

  /** The last table pushed. */
  get table(): RoutingTable | null {
    return this.#lastTable;
  }

  /** Starts the informers, waits until every cache has listed once, then reconciles and campaigns. */
  async start(): Promise<void> {
    if (this.#started) return;
    this.#started = true;
    const cs = this.#o.controlServer;
    cs.on('failure', this.#onFailure);
    cs.on('stats', this.#onStats);
    cs.on('connected', this.#onConnected);
    cs.on('disconnected', this.#onDisconnected);
    const deps: Omit<PreflightDeps, 'client'> = { requestTraffic: (app, limit, after) => cs.requestTraffic(app, limit, after) };
    if (this.#log) deps.log = this.#log;
    if (this.#o.now) deps.now = this.#o.now;
    if (this.#o.preflightPollMs !== undefined) deps.pollMs = this.#o.preflightPollMs;
    this.#preflights = new PreflightManager(deps, (name, run) => this.#preflightChanged(name, run));
    const all = [this.#avs, this.#deployments, this.#services, this.#slices];
    const synced = Promise.all(all.map((w) => (w.synced ? undefined : new Promise<void>((resolve) => w.once('synced', resolve)))));
    await Promise.all(all.map((w) => w.start()));
    await synced;
    if (!this.#started) return;
    this.#log?.info({ namespace: this.namespace, identity: this.identity }, 'kubernetes caches synced');
    // First table from the caches alone, for every app at once: reconciling apps one by one would push
    // tables missing the apps not reconciled yet.
    for (const raw of this.#avs.list()) {
      if (raw.metadata.deletionTimestamp) continue;
      const v = this.#routingOnly(raw).routing;
      if (!v) continue;
      const key = keyOf(raw);
      const list = this.#routes.get(key);
      if (list) list.push(v);
      else this.#routes.set(key, [v]);
    }
    this.#publish();
    this.#queue.start();
    this.#enqueueAll();
    this.#elector.start();
    const resyncMs = this.#o.resyncMs ?? DEFAULT_RESYNC_MS;
    if (resyncMs > 0) {
      this.#resyncTimer = setInterval(() => {
        this.counters.resyncs++;
        this.#enqueueAll();
      }, resyncMs);
      this.#resyncTimer.unref();
    }
  }

  /** Stop everything. release=false leaves the Lease as is (simulates a crash: others wait for expiry). */
  async stop(opts: { releaseLease?: boolean } = {}): Promise<void> {
    if (!this.#started) return;
    this.#started = false;
    const cs = this.#o.controlServer;
    cs.off('failure', this.#onFailure);
    cs.off('stats', this.#onStats);
    cs.off('connected', this.#onConnected);
    cs.off('disconnected', this.#onDisconnected);
    if (this.#resyncTimer) clearInterval(this.#resyncTimer);
    this.#resyncTimer = null;
    this.#queue.stop();
    this.#preflights?.close();
    this.#preflights = null;
    this.#runKeys.clear();
    this.#keepRuns.clear();
    await this.#elector.stop({ release: opts.releaseLease !== false });
    await Promise.all([this.#avs.stop(), this.#deployments.stop(), this.#services.stop(), this.#slices.stop()]);
  }

  /** Resolves when the work queue is empty and idle (tests). */
  idle(): Promise<void> {
    return this.#queue.idle();
  }

  // ---- leadership ----

  #leadershipStarted(): void {
    const signal = this.#elector.term();
    const elector = this.#elector;
    this.#writer = makeClients(this.#o.kubeConfig, { signal, allowed: () => elector.isLeader && !signal.aborted });
    this.#leaderSince = this.#now();
    this.#enqueueAll();
  }

  #leadershipStopped(reason: string): void {
    // The term's signal is already aborted (the elector fences before it emits): in-flight writes fail.
    this.#writer = null;
    // Only the leader tests: the next leader starts the preflights of versions still Testing afresh.
    this.#preflights?.retain(new Set());
    this.#runKeys.clear();
    this.#keepRuns.clear();
    // The next leader (maybe us again) resumes the gates from status.analysis, with a fresh window.
    this.#gates.clear();
    if (!this.#started) return; // our own shutdown
    this.counters.leadershipLost++;
    this.#log?.warn({ identity: this.identity, reason }, 'lost leadership: leader writes fenced; continuing as a follower');
  }

  // ---- events -> keys ----

  #avChanged(raw: RawAppVersion): void {
    const name = raw.metadata.name;
    const key = keyOf(raw);
    const prev = this.#keyByName.get(name);
    const deleted = !this.#avs.get(name, this.namespace);
    if (deleted) {
      this.#keyByName.delete(name);
      this.#nameByObject.delete(objectName(name));
    } else {
      this.#keyByName.set(name, key);
      this.#nameByObject.set(objectName(name), name);
    }
    if (prev && prev !== key) this.#queue.add(prev);
    this.#queue.add(key);
  }

  #enqueueObject(object: string | undefined): void {
    if (!object) return;
    const name = this.#nameByObject.get(object);
    const key = name && this.#keyByName.get(name);
    if (key) this.#queue.add(key);
  }

  #enqueueAll(): void {
    for (const raw of this.#avs.list()) this.#queue.add(keyOf(raw));
    for (const key of this.#routes.keys()) this.#queue.add(key);
  }

  #failureReported(m: FailureMessage): void {
    const raw = this.#avs.get(m.versionId, this.namespace);
    if (!raw) {
      this.#log?.warn({ versionId: m.versionId }, 'sidecar reported a failure for an unknown AppVersion');
      return;
    }
    const gen = raw.metadata.generation ?? 1;
    if (m.epoch !== gen) {
      this.#log?.info({ versionId: m.versionId, epoch: m.epoch, generation: gen }, 'ignoring a failure report for an older generation');
      return;
    }
    this.counters.failureReports++;
    this.#log?.warn({ app: m.app, version: m.version, reason: m.reason }, 'sidecar rolled back a version');
    this.#pendingReports.set(m.versionId, {
      epoch: gen,
      reason: m.reason,
      at: new Date(m.rolledBackAt || this.#now()).toISOString(),
      firstFailureAt: m.firstFailureAt ? new Date(m.firstFailureAt).toISOString() : undefined,
      by: this.identity,
    });
    this.#queue.add(keyOf(raw));
  }

  #statsReported(m: StatsMessage): void {
    this.#o.metrics?.observeStats(m);
    for (const v of m.versions) {
      this.#requests.set(v.versionId, { requests: v.requests, errors: v.errors });
      const t = roundTraffic(v.trafficShare);
      if (this.#traffic.get(v.versionId) === t) continue;
      this.#traffic.set(v.versionId, t);
      if (this.#elector.isLeader) {
        const key = this.#keyByName.get(v.versionId);
        if (key) this.#queue.add(key);
      }
    }
    this.#observeRisk(m);
    if (this.#elector.isLeader) this.#analysisOnStats(m);
  }

  /** Imago's P_inc per app, once per stats line, as in local mode (controller.ts #observeRisk). */
  #observeRisk(m: StatsMessage): void {
    for (const app of this.#lastTable?.apps ?? []) {
      const newest = app.versions[0];
      if (!newest) continue;
      const share = app.versions.length > 1 ? m.versions.find((v) => v.versionId === newest.id)?.trafficShare ?? 0 : 1;
      let calls = 1;
      const raw = this.#avs.get(newest.id, this.namespace);
      try {
        if (raw) calls = this.#normalize(raw).spec.callsPerInteraction ?? 1;
      } catch { /* invalid now: status lists it; keep c = 1 */ }
      this.#o.metrics?.setMixedVersionRisk(app.name, this.#risk.observe(app.name, newest.id, share, calls));
    }
  }

  // ---- reconcile ----

  async #reconcile(key: string): Promise<ReconcileResult | void> {
    const raws = this.#avs.list().filter((r) => keyOf(r) === key && !r.metadata.deletionTimestamp);
    const versions: VersionRouting[] = [];
    let firstError: unknown;
    let requeueAfterMs: number | undefined;
    // Writers of the term current when this reconcile began: a reconcile never writes for a later term.
    const writer = this.#writer;
    const keepRuns = new Set<string>();
    const due = (ms: number | undefined) => {
      if (ms !== undefined) requeueAfterMs = Math.min(requeueAfterMs ?? Infinity, ms);
    };
    for (const cached of raws) {
      try {
        const r = await this.#reconcileVersion(key, cached, writer);
        if (r.routing) versions.push(r.routing);
        if (r.keepRun) keepRuns.add(cached.metadata.name);
        due(r.requeueAfterMs);
      } catch (err) {
        if (isNotLeader(err)) {
          // Leadership ended under us: the write was fenced. Not an error to retry: the next leader (maybe us
          // again, then with a full re-enqueue) reconciles from the state it observes.
          this.counters.fencedWrites++;
          this.#log?.info({ app: key, name: cached.metadata.name }, 'leader write fenced: leadership lost');
          const fallback = this.#routingOnly(cached);
          if (fallback.routing) versions.push(fallback.routing);
          due(fallback.dueInMs);
          continue;
        }
        // Keep going with the other versions (routing must still be computed); retry the key afterwards.
        firstError ??= err;
        this.#log?.warn({ app: key, name: cached.metadata.name, err: describeError(err) }, 'reconcile of an AppVersion failed');
        const fallback = this.#routingOnly(cached);
        if (fallback.routing) versions.push(fallback.routing);
        due(fallback.dueInMs);
        // A run whose verdict is not in status yet must survive the failed write.
        if (this.#preflights?.get(cached.metadata.name)) keepRuns.add(cached.metadata.name);
      }
    }
    if (keepRuns.size) this.#keepRuns.set(key, keepRuns);
    else this.#keepRuns.delete(key);
    if (this.#preflights) {
      const all = new Set<string>();
      for (const set of this.#keepRuns.values()) for (const n of set) all.add(n);
      this.#preflights.retain(all);
      for (const n of this.#runKeys.keys()) if (!all.has(n)) this.#runKeys.delete(n);
    }
    if (versions.length) this.#routes.set(key, versions);
    else this.#routes.delete(key);
    for (const name of this.#phases.keys()) if (!this.#keyByName.has(name)) this.#phases.delete(name);
    for (const name of this.#gates.keys()) if (!this.#keyByName.has(name)) this.#gates.delete(name);
    this.#o.metrics?.setPhases(countPhases(this.#phases));
    this.#publish();
    if (firstError) throw firstError;
    return requeueAfterMs !== undefined ? { requeueAfterMs } : undefined;
  }

  /** Routing from the cache alone (no writes): used when the writing part of a reconcile failed. */
  #routingOnly(raw: RawAppVersion): { routing?: VersionRouting; dueInMs?: number } {
    let av: AppVersion;
    try {
      av = this.#normalize(raw);
    } catch {
      return {};
    }
    if (isStartupFailure(raw.metadata.generation ?? 1, readStatus(raw.status))) return {};
    return this.#routing(raw, av, this.#endpointsOf(av));
  }

  #normalize(raw: RawAppVersion): AppVersion {
    const av = normalizeAppVersion(raw, `kubernetes:${this.namespace}/${raw.metadata.name}`);
    av.metadata.uid ??= raw.metadata.uid;
    av.metadata.generation ??= raw.metadata.generation;
    return av;
  }

  #endpointsOf(av: AppVersion): Endpoint[] {
    const rt = av.spec.runtime;
    if (rt.kind === 'servers') return rt.servers;
    if (rt.kind === 'docker') return readyEndpoints(this.#slices.list(), objectName(av.metadata.name), rt.docker.containerPort);
    return [];
  }

  /**
   * The version's routing, from its AppVersion alone (identical on every replica). Routed once the leader has
   * stamped status.timestamps.serving for this generation and that instant has come: a stamp in the future
   * (the atomic switch after a preflight) answers dueInMs instead, and the reconcile requeues itself for then.
   */
  #routing(raw: RawAppVersion, av: AppVersion, endpoints: Endpoint[]): { routing?: VersionRouting; dueInMs?: number } {
    if (av.spec.runtime.kind === 'process' || endpoints.length === 0) return {};
    const gen = raw.metadata.generation ?? 1;
    const status = readStatus(raw.status);
    const rollback = currentRollback(gen, status, raw.metadata.annotations);
    const since = servingSinceOf(gen, status);
    if (!rollback) {
      if (since === undefined) return {}; // not admitted by the leader yet
      // Under test or rejected by its preflight: never routed (the leader writes no serving stamp for them).
      if (status?.phase === 'Testing' || status?.phase === 'Rejected') return {};
      const now = this.#now();
      if (since > now) return { dueInMs: since - now };
    }
    // Canary analysis (GRADUAL): every replica holds the step the leader wrote to status.analysis (step 0
    // until it does), so the sidecars never advance on their own clocks; passing the last gate promotes.
    const analysis = storedAnalysis(gen, status);
    const promoted = !rollback && (raw.metadata.annotations?.[PROMOTED_ANNOTATION] === 'true' || analysis?.promoted === true);
    const plan = !rollback && !promoted ? gatePlanOf(av) : undefined;
    return {
      routing: {
        av,
        endpoints,
        state: rollback ? 'rolledBack' : 'serving',
        epoch: gen,
        servingSince: since ?? 0,
        promoted,
        ...(plan?.mode === 'GRADUAL' ? { currentStep: analysis?.step ?? 0 } : {}),
      },
    };
  }

  async #reconcileVersion(key: string, cached: RawAppVersion, writer: KubeClients | null): Promise<{ routing?: VersionRouting; requeueAfterMs?: number; keepRun?: boolean }> {
    const ns = this.namespace;
    const name = cached.metadata.name;
    let raw = cached;
    const gen = raw.metadata.generation ?? 1;

    // 1. A failure our sidecar reported: record it on the AppVersion for the leader and the other replicas.
    const pending = this.#pendingReports.get(name);
    if (pending) {
      if (pending.epoch !== gen || currentRollback(gen, readStatus(raw.status), raw.metadata.annotations)) {
        this.#pendingReports.delete(name);
      } else {
        try {
          raw = (await writeRollbackReport(this.#clients.custom, ns, name, pending)) as RawAppVersion;
          this.counters.reportsWritten++;
        } catch (err) {
          if (httpStatus(err) !== 404) throw err;
        }
        this.#pendingReports.delete(name);
      }
    }

    // 2. Validate.
    let av: AppVersion | undefined;
    let invalid: string | undefined;
    try {
      av = this.#normalize(raw);
    } catch (err) {
      const errors = (err as { errors?: Array<{ toString(): string }> }).errors;
      invalid = errors?.length ? errors.map((e) => e.toString()).join('; ') : (err as Error).message;
    }

    const status = readStatus(raw.status);
    const rollback = currentRollback(gen, status, raw.metadata.annotations);
    const leader = writer !== null && this.#elector.isLeader;
    const runtime = av?.spec.runtime.kind ?? 'unknown';
    const endpoints = av ? this.#endpointsOf(av) : [];
    const startup = av && leader && !rollback && av.spec.runtime.kind === 'docker' ? startupDeadline(gen, status, av.spec.healthCheck.startupTimeoutMs, endpoints.length, this.#leaderSince, this.#now()) : undefined;
    const pf = av ? this.#preflightState(name, av, raw, gen, status, leader) : undefined;

    // 3. Workloads (leader only).
    let deploymentExists = false;
    if (av && av.spec.runtime.kind === 'docker') {
      const obj = objectName(name);
      const existing = this.#deployments.get(obj, ns);
      deploymentExists = !!existing;
      if (leader) {
        const rejected = status?.observedGeneration === gen && status.phase === 'Rejected' && !pf?.override;
        const stopped = !!rollback || startup?.failed === true || rejected;
        const keep = rejected ? av.spec.preflight?.keepFailed ?? av.spec.keepFailed : av.spec.keepFailed;
        const s = await applyService(writer.core, desiredService(av, ns), this.#services.get(obj, ns));
        const d = await applyDeployment(writer.apps, desiredDeployment(av, ns, { rolledBack: stopped, keep }), existing);
        if (s !== 'unchanged' || d !== 'unchanged') {
          this.counters.deploymentWrites++;
          this.#log?.info({ name, service: s, deployment: d }, 'workload applied');
        }
        if (d === 'created') deploymentExists = true;
      }
    }

    // 4. Status (leader only, only when changed).
    if (leader) {
      const lg = av ? this.#currentGate(name, av, gen) : undefined;
      const computed = computeStatus({
        generation: gen,
        current: status,
        invalid,
        unsupported: runtime === 'process' ? UNSUPPORTED_PROCESS : undefined,
        runtime,
        deploymentExists,
        readyEndpoints: endpoints.length,
        rollback,
        promoted: raw.metadata.annotations?.[PROMOTED_ANNOTATION] === 'true' || lg?.promoted === true || storedAnalysis(gen, status)?.promoted === true,
        traffic: this.#traffic.get(name),
        ...(lg ? { analysis: toStoredAnalysis(lg), ...(lg.rollback ? { analysisRollback: lg.rollback } : {}) } : {}),
        now: this.#now(),
        ...(pf ? { preflight: pf.observation, preflightEvidence: pf.evidence, promoteOverride: pf.override && status?.observedGeneration === gen && status.phase === 'Rejected' } : {}),
        ...(this.#o.switchDelayMs !== undefined ? { switchDelayMs: this.#o.switchDelayMs } : {}),
      });
      const desired = startup?.failed ? startupTimeoutStatus(computed, status, startup.message, this.#now()) : computed;
      this.#phases.set(name, desired.phase);
      if (pf && av && desired.phase === 'Testing' && pf.observation.verdict === undefined && endpoints.length > 0) {
        this.#ensurePreflight(name, av, gen, endpoints);
      }
      if (!sameStatus(status, desired)) {
        try {
          await writeStatus(writer.custom, ns, name, desired, status);
          this.counters.statusWrites++;
          const metric = rollbackMetricReason(isPhase(status?.phase) && status?.observedGeneration === gen ? { phase: status.phase, reason: String(status.reason ?? ''), message: '' } : undefined, desired);
          if (metric) this.#o.metrics?.rollback(key, metric);
          this.#log?.info({ name, phase: desired.phase, reason: desired.reason }, 'status written');
        } catch (err) {
          if (httpStatus(err) !== 404) throw err;
        }
      }
    } else if (status?.phase) {
      this.#phases.set(name, status.phase);
    }

    const r = av && !(startup?.failed || isStartupFailure(gen, status)) ? this.#routing(raw, av, endpoints) : {};
    let requeueAfterMs = startup?.failed === false ? startup.inMs : undefined;
    for (const ms of [r.dueInMs, pf?.refreshInMs]) if (ms !== undefined) requeueAfterMs = Math.min(requeueAfterMs ?? Infinity, ms);
    // Keep the run while testing, and after its verdict until status records it (a failed write retries).
    const keepRun = !!pf && this.#preflights?.get(name) !== undefined && (this.#phases.get(name) === 'Testing' || (storedPreflight(gen, status)?.verdict ?? 'Pending') === 'Pending');
    return { routing: r.routing, requeueAfterMs, keepRun };
  }

  // ---- preflight (leader) ----

  /**
   * spec.preflight's state for this generation: the override (molt.dev/promoted for this generation), else the
   * verdict durable in status, else the leader's live run; with the evidence to write. Pending evidence is
   * refreshed at most every EVIDENCE_INTERVAL_MS (refreshInMs asks for the next look).
   */
  #preflightState(name: string, av: AppVersion, raw: RawAppVersion, gen: number, status: Partial<KubeStatus> | undefined, leader: boolean):
    { observation: NonNullable<PhaseObservations['preflight']>; evidence: PreflightEvidence; override: boolean; refreshInMs?: number } | undefined {
    if (!av.spec.preflight) return undefined;
    const stored = storedPreflight(gen, status);
    const live = leader ? this.#liveRun(name, av, gen) : undefined;
    // A pass (or an earlier override) stays: promoting a version that passed only finishes its transition.
    if (stored?.verdict === 'Pass') return { observation: { verdict: 'pass' }, evidence: stored, override: false };
    if (stored?.verdict === 'Overridden') return { observation: { verdict: 'overridden' }, evidence: stored, override: true };
    if (promotedFor(gen, raw.metadata.annotations)) {
      const evidence: PreflightEvidence = {
        ...(live?.status() ?? stored ?? emptyEvidence()),
        verdict: 'Overridden',
        message: 'promoted by the user past its preflight (molt.dev/promoted)',
        reason: undefined,
      };
      if (leader) this.#log?.warn({ name, app: av.spec.app, version: av.spec.version }, 'preflight overridden: promoted by the user');
      return { observation: { verdict: 'overridden' }, evidence, override: true };
    }
    if (stored?.verdict === 'Fail') {
      return { observation: { verdict: 'fail', reason: stored.reason as PreflightRejectReason | undefined, message: stored.message }, evidence: stored, override: false };
    }
    if (live && live.outcome.verdict !== 'Pending') {
      const o = live.outcome;
      return { observation: o.verdict === 'Pass' ? { verdict: 'pass' } : { verdict: 'fail', reason: o.reason, message: o.message }, evidence: live.status(), override: false };
    }
    if (live) {
      const now = this.#now();
      const last = this.#evidenceAt.get(name) ?? -Infinity;
      if (!stored || now - last >= EVIDENCE_INTERVAL_MS) {
        this.#evidenceAt.set(name, now);
        return { observation: {}, evidence: live.status(), override: false, refreshInMs: EVIDENCE_INTERVAL_MS };
      }
      return { observation: {}, evidence: stored, override: false, refreshInMs: last + EVIDENCE_INTERVAL_MS - now };
    }
    return { observation: {}, evidence: stored ?? { ...emptyEvidence(), message: 'runs once the version is ready' }, override: false };
  }

  /** The leader's run for this rollout, if one is going (never one of an older spec or generation). */
  #liveRun(name: string, av: AppVersion, gen: number): PreflightRun | undefined {
    const run = this.#preflights?.get(name);
    return run && this.#runKeys.get(name) === `${av.specHash}@${gen}` ? run : undefined;
  }

  /** Start (or keep) the preflight of a version in Testing, compared with the app's newest routed version. */
  #ensurePreflight(name: string, av: AppVersion, gen: number, endpoints: Endpoint[]): void {
    if (!this.#preflights || !av.spec.preflight) return;
    const key = `${av.specHash}@${gen}`;
    const app = this.#lastTable?.apps.find((a) => a.name === av.spec.app);
    const serving = app?.versions.find((v) => v.state === 'serving' && v.id !== name);
    this.#runKeys.set(name, key);
    this.#preflights.ensure(name, key, {
      app: av.spec.app,
      name,
      version: av.spec.version,
      endpoints,
      serving: serving ? { name: serving.id, version: serving.version, endpoints: serving.endpoints } : null,
    }, runConfigFrom(av.spec.preflight));
  }

  /** A run's outcome changed: metrics now, status at the next reconcile of its app. */
  #preflightChanged(name: string, run: PreflightRun): void {
    const { app, version } = run.target;
    this.#o.metrics?.preflight(app, version, run.status());
    const verdict = run.outcome.verdict;
    if (verdict !== 'Pending' && !this.#verdictCounted.has(`${name}@${this.#runKeys.get(name)}`)) {
      this.#verdictCounted.add(`${name}@${this.#runKeys.get(name)}`);
      this.#o.metrics?.preflightVerdict(app, version, verdict);
      this.#log?.info({ name, app, version, verdict, reason: run.outcome.reason, message: run.outcome.message }, 'preflight finished');
    }
    const key = this.#keyByName.get(name);
    if (key) this.#queue.add(key);
  }

  // ---- canary analysis (leader; issue 12, docs/analysis.md "Kubernetes mode") ----
  //
  // The pure gate is controller/analysis/gate.ts, as in local mode. The leader keeps each gate in memory and
  // writes its durable part (step, step start, hold, runs, promoted) to status.analysis; every replica routes
  // at that step (#routing). Samples are the leader's own sidecar's: each replica's sidecar sees its share of
  // the traffic, and the leader judges on its pod's sample. The window's start snapshot stays in memory:
  // a new leader measures the current step's window again from its own stats.

  /** The leader's gate of this version if it is the one for this spec and generation. */
  #currentGate(name: string, av: AppVersion, gen: number): LeaderGate | undefined {
    const lg = this.#gates.get(name);
    return lg && lg.key === `${av.specHash}@${gen}` ? lg : undefined;
  }

  /** Every stats line (leader): window edges for the newest version of each app under analysis. */
  #analysisOnStats(m: StatsMessage): void {
    const byId = new Map(m.versions.map((v) => [v.versionId, v]));
    const now = this.#now();
    for (const app of this.#lastTable?.apps ?? []) {
      const newest = app.versions[0];
      const baseline = app.versions[1];
      if (!newest || !baseline || newest.state !== 'serving') continue;
      const raw = this.#avs.get(newest.id, this.namespace);
      if (!raw || raw.metadata.deletionTimestamp) continue;
      let av: AppVersion;
      try {
        av = this.#normalize(raw);
      } catch {
        continue;
      }
      const plan = gatePlanOf(av);
      const gen = raw.metadata.generation ?? 1;
      if (!plan || newest.epoch !== gen) continue;
      const status = readStatus(raw.status);
      if (raw.metadata.annotations?.[PROMOTED_ANNOTATION] === 'true') continue; // promoted by the user
      if (status?.observedGeneration === gen && isTerminal(status.phase)) continue;
      let lg = this.#currentGate(newest.id, av, gen);
      if (!lg) {
        const stored = storedAnalysis(gen, status);
        const gate = stored ? resumeGate(plan, stored, now) : startGate(plan, { name: baseline.id, version: baseline.version }, now);
        lg = { key: `${av.specHash}@${gen}`, gate, promoted: stored?.promoted === true };
        this.#gates.set(newest.id, lg);
        this.#log?.info({ name: newest.id, app: app.name, version: newest.version, baseline: gate.baselineVersion, step: gate.step + 1, resumed: !!stored }, 'canary analysis started (leader)');
        this.#queue.add(app.name);
      }
      if (lg.promoted || lg.rollback || lg.pending) continue;
      const gate = lg.gate;
      // `kubectl molt promote` (one step): advance past the annotated step once; a step already past it does nothing.
      const stepAnn = raw.metadata.annotations?.[PROMOTE_STEP_ANNOTATION];
      const promoteStep = /^(\d+)\/(\d+)$/.exec(stepAnn ?? '');
      if (plan.mode === 'GRADUAL' && promoteStep && Number(promoteStep[1]) === (raw.metadata.generation ?? 1) && Number(promoteStep[2]) === gate.step) {
        this.#analysisAdvance(app.name, newest.id, lg, plan, now, `promoted one step by the user (molt.dev/promote-step: ${stepAnn})`);
        continue;
      }
      if (!app.versions.some((v) => v.id === gate.baseline)) {
        gate.baseline = baseline.id;
        gate.baselineVersion = baseline.version;
        if (gate.window) delete gate.window.start;
      }
      if (timedAdvanceDue(plan, gate, now)) {
        this.#analysisAdvance(app.name, newest.id, lg, plan, now, 'pause over (step without analysis)');
        continue;
      }
      const step = onSamples(gate, m.at, byId.get(newest.id)?.analysis, byId.get(gate.baseline)?.analysis);
      if (step.kind === 'no-samples') {
        const result = combine([{ metric: 'samples', kind: 'errors', verdict: 'Inconclusive', message: `inconclusive: ${step.why}` }]);
        this.#analysisDecide(app.name, av, lg, plan, result, step, undefined, now);
      } else if (step.kind === 'judge') {
        void this.#analysisJudge(app.name, av, lg, plan, step.start, step.end).catch((err: Error) => {
          this.#log?.error({ err, name: newest.id }, 'canary analysis: judging a window failed');
        });
      }
    }
  }

  async #analysisJudge(key: string, av: AppVersion, lg: LeaderGate, plan: GatePlan, start: SamplesSnapshot, end: SamplesSnapshot): Promise<void> {
    const gate = lg.gate;
    const cfg = gateConfig(plan, gate)!;
    const name = av.metadata.name;
    let canary, baseline;
    try {
      canary = windowData(start.canary, end.canary);
      baseline = windowData(start.baseline, end.baseline);
    } catch (err) {
      this.#log?.info({ name, why: (err as Error).message }, 'canary analysis: counters went back (sidecar restart?); window restarted');
      restartWindow(plan, gate, end);
      return;
    }
    const metrics: MetricResult[] = [...judge(baseline, canary, cfg).metrics];
    if (cfg.prometheus) {
      const token = `${gate.step}:${gate.judged}`;
      lg.pending = token;
      try {
        const vars = { app: av.spec.app, version: av.spec.version, baseline: gate.baselineVersion };
        metrics.push(...await runPrometheusChecks(cfg.prometheus, vars, { signal: AbortSignal.timeout(cfg.prometheus.timeoutMs + 1000) }));
      } catch (err) {
        metrics.push({ metric: 'prometheus', kind: 'prometheus', verdict: 'Inconclusive', message: `prometheus: inconclusive: ${(err as Error).message}` });
      } finally {
        delete lg.pending;
      }
      // Leadership, the spec or the rollout may have moved on while Prometheus answered.
      if (!this.#started || this.#gates.get(name) !== lg || lg.promoted || lg.rollback || `${gate.step}:${gate.judged}` !== token) return;
    }
    this.#analysisDecide(key, av, lg, plan, combine(metrics), { startAt: start.at, endAt: end.at }, end, this.#now());
  }

  #analysisDecide(key: string, av: AppVersion, lg: LeaderGate, plan: GatePlan, result: AnalysisResult, window: { startAt: number; endAt: number }, end: SamplesSnapshot | undefined, now: number): void {
    const gate = lg.gate;
    const step = gate.step;
    const d = decide(plan, gate, result, window, end, now);
    this.#o.metrics?.analysisRun(av.spec.app, av.spec.version, result.verdict);
    const fields = { name: av.metadata.name, app: av.spec.app, version: av.spec.version, baseline: gate.baselineVersion, ...(plan.mode === 'GRADUAL' ? { step: step + 1 } : {}), verdict: result.verdict, message: result.message };
    if (result.verdict === 'Fail') this.#log?.warn(fields, 'canary analysis: Fail');
    else this.#log?.info(fields, `canary analysis: ${result.verdict}`);
    if (d.kind === 'advance') this.#analysisAdvance(key, av.metadata.name, lg, plan, now, result.verdict === 'Pass' ? 'analysis passed' : 'inconclusive for maxHold; onInconclusive: promote');
    else if (d.kind === 'rollback') lg.rollback = { reason: d.reason, message: d.message };
    this.#queue.add(key); // status.analysis (and the phase) at the next reconcile
  }

  #analysisAdvance(key: string, name: string, lg: LeaderGate, plan: GatePlan, now: number, why: string): void {
    const r = advance(plan, lg.gate, now);
    if (r.promote) {
      lg.promoted = true;
      this.#log?.info({ name, why }, 'canary analysis done: version promoted');
    } else {
      this.#log?.info({ name, why, step: r.step + 1, weight: plan.steps[r.step]?.weight }, 'canary analysis: next step');
    }
    this.#queue.add(key);
  }

  // ---- ControllerApi: read-only (the admin API's read endpoints and the dashboard on every replica) ----

  /** Every app from this replica's caches: phases and reasons as the leader wrote them, traffic and request
   *  counts from this replica's own sidecar, and (top level, for debugging) this replica's Kubernetes state. */
  status(): ControllerStatus & { identity: string; leader: boolean; namespace: string; table: RoutingTable | null; counters: KubeController['counters'] } {
    const valid: RawAppVersion[] = [];
    const errors: ResourceError[] = [];
    for (const raw of this.#avs.list()) {
      if (raw.metadata.deletionTimestamp) continue;
      try {
        this.#normalize(raw);
        valid.push(raw);
      } catch (err) {
        const list = (err as { errors?: Array<{ toString(): string }> }).errors;
        const message = list?.length ? list.map((e) => e.toString()).join('; ') : (err as Error).message;
        errors.push({ source: `kubernetes:${this.namespace}/${raw.metadata.name}`, message, code: 'MOLT_ERR_VALIDATION' });
      }
    }
    const st = toStatus(valid as Parameters<typeof toStatus>[0]);
    const apps: AppStatus[] = st.apps.map((a) => ({ ...a, versions: a.versions.map((v) => this.#enrich(v)) }));
    return {
      sidecarConnected: this.#o.controlServer.connected,
      routingRevision: this.#lastTable?.revision ?? 0,
      apps,
      errors,
      identity: this.identity,
      leader: this.isLeader,
      namespace: this.namespace,
      table: this.#lastTable,
      counters: this.counters,
    };
  }

  #enrich(v: VersionStatus): VersionStatus {
    const raw = this.#avs.get(v.name, this.namespace);
    let endpoints: Endpoint[] = [];
    try {
      if (raw) endpoints = this.#endpointsOf(this.#normalize(raw));
    } catch { /* listed as valid a moment ago */ }
    const inTable = this.#lastTable?.apps.some((a) => a.versions.some((x) => x.id === v.name && x.state === 'serving')) ?? false;
    const share = this.#traffic.get(v.name);
    const counts = this.#requests.get(v.name);
    const out: VersionStatus = { ...v, endpoints, requests: counts?.requests ?? 0, errors: counts?.errors ?? 0 };
    const risk = this.#risk.of(v.app, v.name);
    if (risk) out.mixedVersionRisk = risk;
    if (share !== undefined) out.traffic = inTable ? share : 0;
    // The leader's live run is fresher than the (throttled) evidence in status.
    const run = this.#preflights?.get(v.name);
    if (run && this.#runKeys.has(v.name) && v.phase === 'Testing' && (!v.preflight || v.preflight.verdict === 'Pending')) out.preflight = run.status();
    return out;
  }

  getResource(name: string): { resource: unknown; status: VersionStatus | undefined } | undefined {
    const raw = this.#avs.get(name, this.namespace);
    if (!raw || raw.metadata.deletionTimestamp) return undefined;
    const status = this.status().apps.flatMap((a) => a.versions).find((v) => v.name === name);
    return { resource: { apiVersion: raw.apiVersion, kind: raw.kind, metadata: raw.metadata, spec: raw.spec }, status };
  }

  applyResource(): Promise<{ created: boolean; name: string }> {
    return Promise.reject(readOnly('apply AppVersions with kubectl apply -f FILE'));
  }

  deleteResource(name: string): Promise<void> {
    return Promise.reject(readOnly(`delete AppVersions with kubectl delete appversion ${name}`));
  }

  promote(app: string, version?: string): Promise<VersionStatus> {
    return Promise.reject(readOnly(`promote with kubectl molt promote ${app}${version ? ` ${version}` : ' [VERSION]'}`));
  }

  rollback(app: string): Promise<VersionStatus> {
    return Promise.reject(readOnly(`roll back with kubectl molt rollback ${app}`));
  }

  /** This replica's sidecar's recording of an app, redacted, as HAR 1.2 (a read, so allowed here). */
  async trafficHar(app: string, limit: number): Promise<Har> {
    const avs: AppVersion[] = [];
    for (const raw of this.#avs.list()) {
      if (keyOf(raw) !== app) continue;
      try {
        avs.push(this.#normalize(raw));
      } catch { /* invalid: no redaction settings to read */ }
    }
    if (avs.length === 0) throw new MoltError('MOLT_ERR_NOT_FOUND', `no app named "${app}"`);
    const redact = appRedaction(avs);
    const answer = await this.#o.controlServer.requestTraffic(app, limit);
    return trafficToHar(answer, avs[0]!.spec.hosts?.[0] ?? app, redact);
  }

  #publish(): void {
    const all: VersionRouting[] = [];
    for (const list of this.#routes.values()) all.push(...list);
    const candidate = buildRoutingTable(0, all);
    if (sameRoutes(this.#lastTable, candidate)) return;
    this.#revision = Math.max(this.#revision + 1, this.#now());
    const table = { ...candidate, revision: this.#revision };
    this.#lastTable = table;
    this.#o.controlServer.push(table);
    this.counters.tablesPushed++;
    this.#log?.info({ revision: table.revision, apps: table.apps.map((a) => ({ app: a.name, versions: a.versions.map((v) => `${v.id}:${v.state}`) })) }, 'routing table pushed');
    try {
      this.#o.onTable?.(table);
    } catch (err) {
      this.#log?.error({ err }, 'onTable callback threw');
    }
  }
}

// ---- startupTimeout (healthCheck.startupTimeout), as local mode enforces it ----

/** Reason local mode gives a version whose instances never became ready in time (controller.ts). */
export const STARTUP_TIMEOUT_REASON = 'NotReady';

/** The status says this generation already failed its startup deadline (sticky, like local mode's Failed). */
export function isStartupFailure(generation: number, status: Partial<KubeStatus> | undefined): boolean {
  return status?.observedGeneration === generation && status.phase === 'Failed' && status.reason === STARTUP_TIMEOUT_REASON;
}

/**
 * Whether this generation missed its startup deadline: no endpoint ever ready (no status.timestamps.ready in
 * this generation) within startupTimeoutMs counted from status.timestamps.created of this generation, and
 * at the earliest from when this replica became leader (as local mode counts from the controller's start:
 * time without a leader does not count). Undefined when not applicable (ready once, or ready now).
 */
export function startupDeadline(
  generation: number,
  status: Partial<KubeStatus> | undefined,
  startupTimeoutMs: number,
  readyEndpoints: number,
  leaderSince: number,
  now: number,
): { failed: true; message: string } | { failed: false; inMs: number } | undefined {
  const message = `no instance became ready within ${startupTimeoutMs / 1000}s`;
  if (isStartupFailure(generation, status)) return { failed: true, message: status?.message || message };
  const sameGen = status?.observedGeneration === generation;
  if (sameGen && status?.timestamps?.ready) return undefined;
  if (readyEndpoints > 0) return undefined;
  if (sameGen && status?.phase === 'Failed') return undefined; // failed for another reason (invalid spec)
  const created = sameGen ? Date.parse(status?.timestamps?.created ?? '') : NaN;
  const from = Math.max(Number.isFinite(created) ? created : now, leaderSince);
  const due = from + startupTimeoutMs;
  if (now >= due) return { failed: true, message };
  return { failed: false, inMs: due - now };
}

/** The status computed from observations, turned into local mode's startup failure: phase Failed, reason
 *  NotReady, Ready=False with the same reason, no traffic, timestamps.failed; never a ready/serving stamp. */
export function startupTimeoutStatus(computed: KubeStatus, previous: Partial<KubeStatus> | undefined, message: string, now: number): KubeStatus {
  const timestamps = { ...computed.timestamps };
  delete timestamps.ready;
  delete timestamps.serving;
  delete timestamps.promoted;
  timestamps.failed ??= new Date(now).toISOString();
  const prevReady = Array.isArray(previous?.conditions) ? previous!.conditions.find((c) => c.type === 'Ready') : undefined;
  const conditions = computed.conditions.map((c) => {
    if (c.type !== 'Ready') return c;
    const since = prevReady?.status === 'False' && prevReady.lastTransitionTime ? prevReady.lastTransitionTime : c.status === 'False' ? c.lastTransitionTime : new Date(now).toISOString();
    return { ...c, status: 'False' as const, reason: STARTUP_TIMEOUT_REASON, message, lastTransitionTime: since };
  });
  return { ...computed, phase: 'Failed', reason: STARTUP_TIMEOUT_REASON, message, traffic: 0, timestamps, conditions };
}

function emptyEvidence(): PreflightEvidence {
  return { verdict: 'Pending', compared: 0, mismatched: 0, errors: 0, dropped: 0, skipped: 0, topMismatches: [], latency: { oldP50: null, oldP95: null, newP50: null, newP95: null }, message: '' };
}

function countPhases(phases: Map<string, Phase>): Partial<Record<Phase, number>> {
  const out: Partial<Record<Phase, number>> = {};
  for (const p of phases.values()) out[p] = (out[p] ?? 0) + 1;
  return out;
}

// ---- canary analysis: status.analysis <-> the leader's gate ----

function toStoredAnalysis(lg: LeaderGate): KubeAnalysisStatus {
  const g = lg.gate;
  return {
    baseline: g.baseline,
    baselineVersion: g.baselineVersion,
    step: g.step,
    stepStartedAt: new Date(g.stepStartedAt).toISOString(),
    ...(g.holdSince !== undefined ? { holdSince: new Date(g.holdSince).toISOString() } : {}),
    judged: g.judged,
    ...(lg.promoted ? { promoted: true } : {}),
    runs: g.runs.map((r) => ({ ...r, metrics: r.metrics.map((x) => ({ ...x })) })),
  };
}

/** A gate from status.analysis (a new leader): same step, step start, hold and runs; the current step's
 *  window is measured again from now (its start snapshot was in the previous leader's memory). */
export function resumeGate(plan: GatePlan, stored: KubeAnalysisStatus, now: number): GateState {
  const parsed = Date.parse(stored.stepStartedAt);
  const held = stored.holdSince ? Date.parse(stored.holdSince) : NaN;
  const g: GateState = {
    mode: plan.mode,
    baseline: stored.baseline,
    baselineVersion: stored.baselineVersion,
    step: Math.max(0, Math.min(plan.mode === 'GRADUAL' ? plan.steps.length - 1 : 0, Math.floor(stored.step))),
    stepStartedAt: Number.isFinite(parsed) ? parsed : now,
    judged: stored.judged ?? 0,
    runs: Array.isArray(stored.runs) ? [...stored.runs] : [],
  };
  if (Number.isFinite(held)) g.holdSince = held;
  const cfg = gateConfig(plan, g);
  if (cfg) {
    const length = plan.mode === 'CONCURRENT' ? cfg.intervalMs : Math.max(1, (plan.steps[g.step]?.pauseMs ?? 0) - cfg.initialDelayMs);
    g.window = { startAt: now, endAt: now + length };
  }
  return g;
}
