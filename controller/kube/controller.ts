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
// Healing: every key is reconciled again every resyncMs (from the caches, like a controller-runtime
// SyncPeriod), and a reconcile asks for a requeue-after when something becomes due at a known time (the
// startup deadline, see startupTimeoutStatus).

import type { KubeConfig, KubernetesListObject, KubernetesObject, V1Deployment, V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { AppVersion, Phase } from '../appversion.js';
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
import { isPhase, rollbackMetricReason } from '../phase.js';
import {
  PROMOTED_ANNOTATION,
  computeStatus,
  currentRollback,
  readStatus,
  roundTraffic,
  sameStatus,
  servingSinceOf,
  writeRollbackReport,
  writeStatus,
  type KubeStatus,
  type RollbackReport,
} from './status.js';

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

export class KubeController {
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
  #pendingReports = new Map<string, RollbackReport>();
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
      const v = this.#routingOnly(raw);
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
      const t = roundTraffic(v.trafficShare);
      if (this.#traffic.get(v.versionId) === t) continue;
      this.#traffic.set(v.versionId, t);
      if (this.#elector.isLeader) {
        const key = this.#keyByName.get(v.versionId);
        if (key) this.#queue.add(key);
      }
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
    for (const cached of raws) {
      try {
        const r = await this.#reconcileVersion(key, cached, writer);
        if (r.routing) versions.push(r.routing);
        if (r.requeueAfterMs !== undefined) requeueAfterMs = Math.min(requeueAfterMs ?? Infinity, r.requeueAfterMs);
      } catch (err) {
        if (isNotLeader(err)) {
          // Leadership ended under us: the write was fenced. Not an error to retry: the next leader (maybe us
          // again, then with a full re-enqueue) reconciles from the state it observes.
          this.counters.fencedWrites++;
          this.#log?.info({ app: key, name: cached.metadata.name }, 'leader write fenced: leadership lost');
          const fallback = this.#routingOnly(cached);
          if (fallback) versions.push(fallback);
          continue;
        }
        // Keep going with the other versions (routing must still be computed); retry the key afterwards.
        firstError ??= err;
        this.#log?.warn({ app: key, name: cached.metadata.name, err: describeError(err) }, 'reconcile of an AppVersion failed');
        const fallback = this.#routingOnly(cached);
        if (fallback) versions.push(fallback);
      }
    }
    if (versions.length) this.#routes.set(key, versions);
    else this.#routes.delete(key);
    for (const name of this.#phases.keys()) if (!this.#keyByName.has(name)) this.#phases.delete(name);
    this.#o.metrics?.setPhases(countPhases(this.#phases));
    this.#publish();
    if (firstError) throw firstError;
    return requeueAfterMs !== undefined ? { requeueAfterMs } : undefined;
  }

  /** Routing from the cache alone (no writes): used when the writing part of a reconcile failed. */
  #routingOnly(raw: RawAppVersion): VersionRouting | undefined {
    let av: AppVersion;
    try {
      av = this.#normalize(raw);
    } catch {
      return undefined;
    }
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

  #routing(raw: RawAppVersion, av: AppVersion, endpoints: Endpoint[]): VersionRouting | undefined {
    if (av.spec.runtime.kind === 'process' || endpoints.length === 0) return undefined;
    const gen = raw.metadata.generation ?? 1;
    const status = readStatus(raw.status);
    const rollback = currentRollback(gen, status, raw.metadata.annotations);
    const since = servingSinceOf(gen, status);
    if (!rollback && since === undefined) return undefined; // not admitted by the leader yet
    return {
      av,
      endpoints,
      state: rollback ? 'rolledBack' : 'serving',
      epoch: gen,
      servingSince: since ?? 0,
      promoted: !rollback && raw.metadata.annotations?.[PROMOTED_ANNOTATION] === 'true',
    };
  }

  async #reconcileVersion(key: string, cached: RawAppVersion, writer: KubeClients | null): Promise<{ routing?: VersionRouting; requeueAfterMs?: number }> {
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

    // 3. Workloads (leader only).
    let deploymentExists = false;
    if (av && av.spec.runtime.kind === 'docker') {
      const obj = objectName(name);
      const existing = this.#deployments.get(obj, ns);
      deploymentExists = !!existing;
      if (leader) {
        const stopped = !!rollback || startup?.failed === true;
        const s = await applyService(writer.core, desiredService(av, ns), this.#services.get(obj, ns));
        const d = await applyDeployment(writer.apps, desiredDeployment(av, ns, { rolledBack: stopped }), existing);
        if (s !== 'unchanged' || d !== 'unchanged') {
          this.counters.deploymentWrites++;
          this.#log?.info({ name, service: s, deployment: d }, 'workload applied');
        }
        if (d === 'created') deploymentExists = true;
      }
    }

    // 4. Status (leader only, only when changed).
    if (leader) {
      const computed = computeStatus({
        generation: gen,
        current: status,
        invalid,
        unsupported: runtime === 'process' ? UNSUPPORTED_PROCESS : undefined,
        runtime,
        deploymentExists,
        readyEndpoints: endpoints.length,
        rollback,
        promoted: raw.metadata.annotations?.[PROMOTED_ANNOTATION] === 'true',
        traffic: this.#traffic.get(name),
        now: this.#now(),
      });
      const desired = startup?.failed ? startupTimeoutStatus(computed, status, startup.message, this.#now()) : computed;
      this.#phases.set(name, desired.phase);
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

    const routing = av && !(startup?.failed || isStartupFailure(gen, status)) ? this.#routing(raw, av, endpoints) : undefined;
    return { routing, requeueAfterMs: startup?.failed === false ? startup.inMs : undefined };
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

function countPhases(phases: Map<string, Phase>): Partial<Record<Phase, number>> {
  const out: Partial<Record<Phase, number>> = {};
  for (const p of phases.values()) out[p] = (out[p] ?? 0) + 1;
  return out;
}
