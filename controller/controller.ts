// The local-mode controller: level-triggered reconciler over AppVersion files.
//
// Each reconcile reads desired state (resource files) and actual state (containers, processes,
// readiness, what the sidecar reported) fresh and converges: create missing instances, remove
// stale ones, decide which versions may take traffic, push the routing table, record status.
// Reconciles never overlap; requests made while one runs are merged into one follow-up run.
// Running it twice, or after a crash, changes nothing that is already right.

import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import type { Logger } from 'pino';
import type { AppVersion } from './appversion.js';
import type { AnalysisStatus, AppStatus, ControllerApi, ControllerStatus, PromoteOptions, ResourceError, VersionStatus } from './controller-api.js';
import { ControlServer } from './control-server.js';
import { MoltError } from '../common/errors.js';
import { normalizeAppVersion } from './load.js';
import type { MoltMetrics } from './metrics.js';
import { buildRoutingTable, sameRoutes, sortNewestFirst, type VersionRouting } from './routing-table.js';
import { FileSource } from './sources/files.js';
import { StateStore, type RolloutRecord } from './state-store.js';
import { computePhase, INITIAL_PHASE, isTerminal, phaseTimestampKey, preflightGate, rollbackMetricReason, type PhaseObservations, type PhaseStatus } from './phase.js';
import { DockerDriver, ImageTracker, type ImageResolver } from './runtime/docker.js';
import { ProcessDriver } from './runtime/process.js';
import { ServersDriver } from './runtime/servers.js';
import { probe } from './runtime/health.js';
import type { Instance, RuntimeDriver, RuntimeKind } from './runtime/types.js';
import type { Endpoint, FailureMessage, RoutingTable, StatsMessage } from '../common/protocol.js';
import type { Har } from '../common/har.js';
import { appRedaction, trafficToHar } from './traffic.js';
import { RolloutRiskTracker } from '../common/mixed-version-risk.js';
import { PreflightManager, runConfigFrom, type PreflightEvidence, type PreflightRun } from './preflight.js';
import { advance, decide, gateConfig, gatePlanOf, onSamples, restartWindow, startGate, timedAdvanceDue, windowData, type GatePlan, type GateState, type Snapshot as SamplesSnapshot } from './analysis/gate.js';
import { judge } from './analysis/judge.js';
import { runPrometheusChecks } from './analysis/prometheus.js';
import { combine, type AnalysisResult, type MetricResult } from './analysis/types.js';

export interface LocalControllerOptions {
  /** Folders of AppVersion files the user edits. */
  dirs: string[];
  stateDir: string;
  controlSocket: string;
  log: Logger;
  metrics: MoltMetrics;
  /** Label value on every container/process this controller owns. */
  controllerId?: string;
  /** Full resync period: catches crashed instances and finishes readiness checks. */
  resyncMs?: number;
  /** How long a deleted version keeps its instances after it leaves the routing table. */
  drainMs?: number;
  /** Accept `process` runtimes through the admin API (they run a command on this machine). Files in
   *  the watched folders may always use them. Default false. */
  allowApiProcess?: boolean;
  /** Inject drivers (tests); by default docker is created on first need. */
  drivers?: Partial<Record<RuntimeKind, RuntimeDriver>>;
}

interface InstanceHealth {
  ready: boolean;
  lastProbe: number;
  detail: string;
}

interface Snapshot {
  desired: Map<string, AppVersion>;
  errors: ResourceError[];
  instances: Map<string, Instance[]>;
  endpoints: Map<string, Endpoint[]>;
}

type ResolvedOptions = Required<Omit<LocalControllerOptions, 'drivers' | 'controllerId' | 'allowApiProcess'>> & { controllerId: string; allowApiProcess: boolean };

export class LocalController implements ControllerApi {
  readonly control: ControlServer;
  readonly state: StateStore;
  readonly appliedDir: string;
  #opts: ResolvedOptions;
  #log: Logger;
  #metrics: MoltMetrics;
  #source: FileSource;
  #drivers: Partial<Record<RuntimeKind, RuntimeDriver>>;
  #health = new Map<string, InstanceHealth>();
  /** Instance id -> its removal in progress (see #remove). */
  #removing = new Map<string, Promise<void>>();
  /** spec.docker.checkForNewImages state (see #checkForNewImages). */
  #images: ImageTracker;
  #share = new Map<string, { share: number; requests: number; errors: number }>();
  /** Unix time (ms) of the last stats line in which a version's request count grew (SESSION completion). */
  #activeAt = new Map<string, number>();
  /** name -> Unix time (ms) when it left the table because its resource was deleted. */
  #draining = new Map<string, number>();
  #revision = 0;
  #snapshot: Snapshot = { desired: new Map(), errors: [], instances: new Map(), endpoints: new Map() };
  #dirty = false;
  #running: Promise<void> | null = null;
  #timer: NodeJS.Timeout | null = null;
  #stopped = false;
  #consecutiveErrors = 0;
  readonly #startedAt = Date.now();
  /** app -> mixed-version risk of its current rollout (see #observeRisk). */
  readonly #risk = new RolloutRiskTracker();
  /** Versions in Testing: their preflight runs (controller/preflight.ts). */
  readonly #preflights: PreflightManager;
  /** Canary analysis: AppVersion name -> the run being judged (Prometheus answers pending); see #analysisOnStats. */
  readonly #analysisPending = new Map<string, string>();

  constructor(opts: LocalControllerOptions) {
    this.#opts = {
      resyncMs: 1000,
      drainMs: 5000,
      controllerId: opts.controllerId ?? 'molt',
      allowApiProcess: false,
      ...opts,
    } as ResolvedOptions;
    this.#log = opts.log;
    this.#metrics = opts.metrics;
    this.state = new StateStore(opts.stateDir);
    this.appliedDir = path.join(opts.stateDir, 'applied');
    fs.mkdirSync(this.appliedDir, { recursive: true });
    this.#source = new FileSource({ dirs: [...opts.dirs, this.appliedDir], atomicDirs: [this.appliedDir], log: opts.log });
    this.#drivers = { ...opts.drivers };
    this.#drivers.process ??= new ProcessDriver({ stateDir: opts.stateDir, controllerId: this.#opts.controllerId, log: opts.log });
    this.#drivers.servers ??= new ServersDriver();
    this.#images = new ImageTracker(opts.stateDir, opts.log);
    this.control = new ControlServer({ socketPath: opts.controlSocket, log: opts.log });
    this.control.on('failure', (m) => this.#onFailure(m));
    this.control.on('stats', (m) => this.#onStats(m));
    this.control.on('connected', (pid) => {
      this.#metrics.sidecarStarted(pid);
      this.#metrics.setSidecarConnected(true);
      this.requestReconcile();
    });
    this.control.on('disconnected', () => this.#metrics.setSidecarConnected(this.control.connected));
    this.#preflights = new PreflightManager(
      { requestTraffic: (app, limit, after) => this.control.requestTraffic(app, limit, after), log: opts.log },
      (name, run) => this.#onPreflight(name, run),
    );
  }

  async start(): Promise<void> {
    await this.control.start();
    await this.#source.watch(() => this.requestReconcile());
    await this.reconcileNow();
    const tick = () => {
      if (this.#stopped) return;
      this.requestReconcile();
      this.#timer = setTimeout(tick, this.#opts.resyncMs);
      this.#timer.unref();
    };
    this.#timer = setTimeout(tick, this.#opts.resyncMs);
    this.#timer.unref();
  }

  /** Stop reconciling. Instances keep running (a restarted controller adopts them). */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#preflights.close();
    await this.#source.close();
    await this.#running;
    await this.control.close();
  }

  /** Stop every process-runtime instance (they belong to this `molt up` session). */
  async stopProcesses(graceMs = 5000): Promise<void> {
    const driver = this.#drivers.process;
    if (!driver) return;
    const list = await driver.list();
    await Promise.all(list.map((i) => driver.remove(i, { graceMs })));
  }

  requestReconcile(): void {
    this.#dirty = true;
    if (!this.#running && !this.#stopped) this.#running = this.#loop();
  }

  /** Run a reconcile now (or wait for the one in flight plus a follow-up). */
  async reconcileNow(): Promise<void> {
    this.requestReconcile();
    while (this.#running) await this.#running;
  }

  async #loop(): Promise<void> {
    try {
      while (this.#dirty && !this.#stopped) {
        this.#dirty = false;
        const t0 = process.hrtime.bigint();
        try {
          await this.#reconcile();
          this.#metrics.reconcile('success', Number(process.hrtime.bigint() - t0) / 1e9);
          this.#consecutiveErrors = 0;
        } catch (err) {
          this.#consecutiveErrors++;
          this.#metrics.reconcile('error', Number(process.hrtime.bigint() - t0) / 1e9);
          // The resync timer retries; never spin here, so reconcileNow() callers (start, the API) return.
          this.#log.error({ err, consecutiveErrors: this.#consecutiveErrors }, 'reconcile failed; will retry at the next resync');
        }
      }
    } finally {
      this.#running = null;
    }
  }

  // ---------------------------------------------------------------- reconcile

  async #reconcile(): Promise<void> {
    const now = Date.now();
    const { resources: desired, errors } = await this.#source.read();
    await this.#checkForNewImages(desired, now);

    // Records: a new or changed spec starts a fresh rollout; a rollback of the same spec is durable.
    for (const av of desired.values()) {
      const name = av.metadata.name;
      const rec = this.state.get(name);
      // Re-added while draining: a terminal record stays terminal (a restored file does not revive a
      // version known to be bad); a healthy one starts over with a fresh epoch.
      const readded = this.#draining.delete(name) && rec?.phase === 'Draining';
      if (!rec || rec.specHash !== av.specHash || readded) {
        if (rec && !readded) this.#log.info({ name }, 'AppVersion spec changed; starting a new rollout');
        else this.#log.info({ name, app: av.spec.app, version: av.spec.version, mode: av.spec.transition.mode }, 'AppVersion added');
        this.state.set(newRecord(av, rec, now));
        this.#share.delete(name); // stats of the previous rollout must not promote this one
      }
    }

    const instances = await this.#observe(desired);
    await this.#converge(desired, instances, now);

    // Readiness: probe running instances of versions that may serve.
    const endpoints = new Map<string, Endpoint[]>();
    await Promise.all([...desired.values()].map(async (av) => {
      const rec = this.state.get(av.metadata.name)!;
      if (isTerminal(rec.phase)) return;
      const ready = await this.#readyEndpoints(av, instances.get(av.metadata.name) ?? [], now);
      endpoints.set(av.metadata.name, ready);
    }));

    // Deleted resources: drain (out of the table, instances alive for drainMs), then stop.
    for (const rec of this.state.all()) {
      if (desired.has(rec.name) || rec.timestamps.removed) continue;
      if (!this.#draining.has(rec.name)) {
        this.#draining.set(rec.name, now);
        this.#log.info({ name: rec.name, app: rec.app, version: rec.version }, 'AppVersion deleted; draining');
      }
    }

    this.#analysisTimers(desired, now);
    const table = this.#buildTable(desired, endpoints, now);
    if (!sameRoutes(this.control.table, table)) {
      this.control.push(table);
      this.#log.info({ revision: table.revision, apps: table.apps.map((a) => ({ app: a.name, versions: a.versions.map((v) => `${v.version}:${v.state}`) })) }, 'routing table pushed');
    }

    this.#updatePhases(desired, instances, endpoints, table, now);
    this.#runPreflights(desired, endpoints, table);
    await this.#finishDrains(instances, now);

    this.#snapshot = { desired, errors, instances, endpoints };
    this.#metrics.setPhases(this.#phaseCounts(desired));
    for (const av of desired.values()) {
      const rec = this.state.get(av.metadata.name)!;
      this.#metrics.setVersionPhase(rec.app, rec.version, rec.phase, Date.parse(rec.phaseSince ?? rec.timestamps.created) || now);
    }
    this.state.flush();
  }

  /** spec.docker.checkForNewImages: a new image ID behind image:tag adds a derived AppVersion to `desired`
   *  (name <name>-<12 hex>, version <version>.<n>+<12 hex>), rolled out like any newer version; the
   *  original is pinned to the image ID first seen. Design and limits: ImageTracker in runtime/docker.ts. */
  async #checkForNewImages(desired: Map<string, AppVersion>, now: number): Promise<void> {
    const watched = [...desired.values()].some((av) => av.spec.runtime.kind === 'docker' && av.spec.runtime.docker.checkForNewImages);
    if (!watched && this.#images.empty) return;
    this.#drivers.docker ??= new DockerDriver({ controllerId: this.#opts.controllerId, log: this.#log });
    const resolver = this.#drivers.docker as Partial<ImageResolver>;
    if (typeof resolver.imageId !== 'function') return; // an injected test driver without image lookup
    await this.#images.apply(desired, resolver as ImageResolver, now);
  }

  /** Actual state, fresh: every driver's instances grouped by AppVersion name. */
  async #observe(desired: Map<string, AppVersion>): Promise<Map<string, Instance[]>> {
    const needDocker = [...desired.values()].some((av) => av.spec.runtime.kind === 'docker');
    if (needDocker && !this.#drivers.docker) {
      this.#drivers.docker = new DockerDriver({ controllerId: this.#opts.controllerId, log: this.#log });
    }
    (this.#drivers.servers as ServersDriver).setResources([...desired.values()]);
    const out = new Map<string, Instance[]>();
    for (const driver of Object.values(this.#drivers)) {
      if (!driver) continue;
      let list: Instance[];
      try {
        list = await driver.list();
      } catch (err) {
        if (driver.kind === 'docker' && !needDocker) continue; // no docker resources: an absent daemon is fine
        throw err;
      }
      for (const inst of list) {
        if (this.#removing.has(inst.id)) continue;
        let arr = out.get(inst.versionName);
        if (!arr) out.set(inst.versionName, (arr = []));
        arr.push(inst);
      }
    }
    return out;
  }

  /** Create what is missing, remove what is stale, handle crashes. */
  async #converge(desired: Map<string, AppVersion>, instances: Map<string, Instance[]>, now: number): Promise<void> {
    // Orphans: instances of names that are neither desired nor draining (e.g. left by a crash).
    for (const [name, list] of instances) {
      const rec = this.state.get(name);
      if (desired.has(name) || this.#draining.has(name) || (rec && !rec.timestamps.removed)) continue;
      for (const inst of list) this.#remove(inst, 'orphan');
      instances.delete(name);
    }

    const tableNewest = this.#newestServingByApp();
    for (const av of desired.values()) {
      const name = av.metadata.name;
      const rec = this.state.get(name)!;
      const driver = this.#driverFor(av);
      let list = instances.get(name) ?? [];

      // Instances of an older spec of this name keep serving until one of the new spec is ready
      // (so editing a live version in place is not an outage), then drain and go.
      const stale = list.filter((i) => i.specHash !== av.specHash);
      list = list.filter((i) => i.specHash === av.specHash);
      const newReady = list.some((i) => this.#health.get(i.id)?.ready === true);
      const staleKept = isTerminal(rec.phase) || newReady ? [] : stale.filter((i) => i.running && this.#health.get(i.id)?.ready === true);
      for (const inst of stale) if (!staleKept.includes(inst)) this.#remove(inst, 'spec changed', newReady ? this.#opts.drainMs : 0);

      if (isTerminal(rec.phase)) {
        const exited = list.find((i) => !i.running && i.exitCode !== undefined);
        if (exited) this.#applyPhase(rec, { crashed: { index: exited.index, exitCode: exited.exitCode } }, now);
        // Docker reports a dying container as running for a moment after its connections reset: keep a
        // version the sidecar just rolled back for one resync so that exit can be seen before removal.
        const settling = !exited && rec.reason === 'FailurePolicy' && now - Date.parse(rec.timestamps.rolledBack ?? '') < this.#opts.resyncMs;
        const keep = av.spec.keepFailed || settling;
        // Requests still in flight on a rolled-back version get drainMs to finish.
        if (!keep) for (const inst of list) this.#remove(inst, rec.phase, inst.running ? this.#opts.drainMs : 0);
        instances.set(name, keep ? list : []);
        continue;
      }

      // Crashed instances.
      for (const inst of list.filter((i) => !i.running)) {
        const next = this.#applyPhase(rec, {
          crashed: { index: inst.index, exitCode: inst.exitCode },
          wasReady: this.#health.get(inst.id)?.ready === true || Boolean(rec.timestamps.ready),
          newestWithFallback: tableNewest.get(av.spec.app)?.name === name && tableNewest.get(av.spec.app)!.hasPrevious,
        }, now);
        if (!isTerminal(next.phase)) this.#log.warn({ name, index: inst.index, exitCode: inst.exitCode }, 'instance exited; restarting it');
        this.#remove(inst, 'exited');
      }
      list = list.filter((i) => i.running);
      if (isTerminal(rec.phase)) {
        if (!av.spec.keepFailed) for (const inst of list) this.#remove(inst, rec.phase, this.#opts.drainMs);
        instances.set(name, av.spec.keepFailed ? list : []);
        continue;
      }

      // Missing replicas.
      const replicas = replicasOf(av);
      const have = new Set(list.map((i) => i.index));
      for (const inst of list.filter((i) => i.index >= replicas)) this.#remove(inst, 'scaled down');
      list = list.filter((i) => i.index < replicas);
      for (let index = 0; index < replicas; index++) {
        if (have.has(index)) continue;
        try {
          const inst = await driver.create(av, index);
          this.#log.info({ name, index, id: inst.id, endpoint: inst.endpoint }, 'instance created');
          list.push(inst);
        } catch (err) {
          const msg = err instanceof MoltError ? err.message : String((err as Error).message ?? err);
          const next = this.#applyPhase(rec, { createFailed: msg, wasReady: Boolean(rec.timestamps.ready) }, now);
          if (!isTerminal(next.phase)) {
            // A version that has served keeps serving with what it has; the next resync tries again
            // (e.g. a fixed container name still held by a replica being removed).
            this.#log.warn({ name, index, err: msg }, 'could not replace an instance; retrying at the next resync');
            continue;
          }
          for (const inst of list) this.#remove(inst, 'create failed');
          list = [];
          break;
        }
      }
      instances.set(name, [...list, ...staleKept]);
    }
  }

  async #readyEndpoints(av: AppVersion, list: Instance[], now: number): Promise<Endpoint[]> {
    const hc = av.spec.healthCheck;
    const ready: Endpoint[] = [];
    await Promise.all(list.map(async (inst) => {
      if (!inst.running || !inst.endpoint) return;
      let h = this.#health.get(inst.id);
      if (!h) {
        // After a controller restart, a running instance of a version that was ready (and started
        // before this controller) is adopted as ready: one slow probe must not drop a serving version.
        const adopted = inst.startedAt < this.#startedAt && Boolean(this.state.get(av.metadata.name)?.timestamps.ready);
        this.#health.set(inst.id, (h = { ready: adopted, lastProbe: 0, detail: adopted ? 'adopted' : '' }));
      }
      // Once ready, an instance stays ready until it exits: traffic failures are the sidecar's call.
      if (!h.ready && now - h.lastProbe >= Math.min(hc.intervalMs, this.#opts.resyncMs)) {
        h.lastProbe = now;
        const r = await probe(inst.endpoint, hc, { loopbackOnly: inst.runtime !== 'servers' }).catch((err: Error) => ({ ok: false, detail: err.message }));
        h.ready = r.ok;
        h.detail = r.detail;
      }
      if (h.ready) ready.push(inst.endpoint);
    }));
    return ready;
  }

  #buildTable(desired: Map<string, AppVersion>, endpoints: Map<string, Endpoint[]>, now: number): RoutingTable {
    const versions: VersionRouting[] = [];
    for (const av of desired.values()) {
      const rec = this.state.get(av.metadata.name)!;
      if (isTerminal(rec.phase) || preflightGate(this.#preflightOf(av, rec)) !== 'open') continue;
      const eps = endpoints.get(av.metadata.name) ?? [];
      if (eps.length === 0) continue;
      if (!rec.servingSince) rec.servingSince = now;
      versions.push({ av, endpoints: eps, state: 'serving', epoch: rec.epoch, servingSince: rec.servingSince, promoted: rec.promoted });
    }
    const candidate = buildRoutingTable(0, versions);
    this.#analysisSteps(candidate, desired, now);
    if (this.control.table && sameRoutes(this.control.table, candidate)) return this.control.table;
    this.#revision = Math.max(this.#revision + 1, now);
    return { ...candidate, revision: this.#revision };
  }

  /**
   * Every desired version's phase from this reconcile's observations (controller/phase.ts decides): readiness
   * and startup timeout for versions not ready yet; table position and traffic share for routed ones.
   */
  #updatePhases(desired: Map<string, AppVersion>, instances: Map<string, Instance[]>, endpoints: Map<string, Endpoint[]>, table: RoutingTable, now: number): void {
    const positions = new Map<string, { app: RoutingTable['apps'][number]; index: number }>();
    for (const app of table.apps) app.versions.forEach((v, index) => positions.set(v.id, { app, index }));
    for (const av of desired.values()) {
      const name = av.metadata.name;
      const rec = this.state.get(name)!;
      if (isTerminal(rec.phase)) continue;
      const ready = endpoints.get(name) ?? [];
      const obs: PhaseObservations = {
        instancesCreated: (instances.get(name) ?? []).some((i) => i.running),
        readyEndpoints: ready.length,
        wasReady: Boolean(rec.timestamps.ready),
        // Counted from this controller's start at the earliest: time while molt was down does not count.
        startup: { elapsedMs: now - Math.max(Date.parse(rec.timestamps.created), this.#startedAt), timeoutMs: av.spec.healthCheck.startupTimeoutMs },
        preflight: this.#preflightOf(av, rec),
      };
      if (ready.length > 0 && !rec.timestamps.ready) {
        rec.timestamps.ready = new Date(now).toISOString();
        this.#log.info({ name, app: rec.app, version: rec.version, endpoints: ready }, 'version ready');
      }
      const pos = positions.get(name);
      if (pos) {
        const v = pos.app.versions[pos.index]!;
        let share = this.#share.get(name)?.share;
        // SESSION sends every new client to the newest version at once, but clients holding an older
        // version's cookie stay there: the transition is complete only once no older version has answered
        // a request for a whole session timeout (their cookies have expired).
        if (pos.index === 0 && v.transition.mode === 'SESSION' && share !== undefined && share >= 1 && !rec.promoted) {
          const quietSince = now - v.transition.sessionTimeoutSeconds * 1000;
          const open = pos.app.versions.slice(1).some((o) => o.state === 'serving' && (this.#activeAt.get(o.id) ?? now) > quietSince);
          if (open) share = 0.999; // shown as "100% of new traffic", still Transitioning
        }
        if (pos.index === 0 && (share ?? 0) >= 1 && v.transition.mode === 'GRADUAL' && !rec.promoted) {
          // A finished GRADUAL transition is recorded, so a restarted sidecar (whose per-request
          // threshold starts from 0 again) does not send clients back to the previous version.
          rec.promoted = true;
          this.requestReconcile();
        }
        obs.routed = { promoted: rec.promoted, position: { newest: pos.index === 0, versions: pos.app.versions.length, mode: v.transition.mode, share } };
      }
      this.#applyPhase(rec, obs, now);
    }
  }

  /** spec.preflight's verdict for this rollout (durable in the record), or {} while it runs; undefined
   *  without a preflight. The phase machine and #buildTable follow it: only an open gate is routed. */
  #preflightOf(av: AppVersion, rec: RolloutRecord): PhaseObservations['preflight'] {
    if (!av.spec.preflight) return undefined;
    const p = rec.preflight;
    if (!p) return {};
    return { verdict: p.verdict, reason: p.reason, message: p.message };
  }

  /** Keep one preflight run per version in Testing; the app's newest routed version is what it is compared with. */
  #runPreflights(desired: Map<string, AppVersion>, endpoints: Map<string, Endpoint[]>, table: RoutingTable): void {
    const testing = new Set<string>();
    for (const av of desired.values()) {
      const name = av.metadata.name;
      const rec = this.state.get(name)!;
      if (!av.spec.preflight || rec.phase !== 'Testing' || rec.preflight) continue;
      const eps = endpoints.get(name) ?? [];
      if (eps.length === 0) continue;
      testing.add(name);
      const app = table.apps.find((a) => a.name === av.spec.app);
      const servingVersion = app?.versions[0];
      const servingAv = servingVersion ? desired.get(servingVersion.id) : undefined;
      this.#preflights.ensure(name, `${av.specHash}@${rec.epoch}`, {
        app: av.spec.app,
        name,
        version: av.spec.version,
        endpoints: eps,
        serving: servingVersion && servingAv ? { name: servingVersion.id, version: servingAv.spec.version, endpoints: servingVersion.endpoints } : null,
      }, runConfigFrom(av.spec.preflight));
    }
    this.#preflights.retain(testing);
  }

  /** A run's outcome changed: a verdict is recorded (durable) and the phase machine takes it from there. */
  #onPreflight(name: string, run: PreflightRun): void {
    const rec = this.state.get(name);
    if (!rec || rec.phase !== 'Testing' || rec.preflight) return;
    const o = run.outcome;
    this.#metrics.preflight(rec.app, rec.version, run.status());
    if (o.verdict === 'Pending') return;
    rec.preflight = { verdict: o.verdict === 'Pass' ? 'pass' : 'fail', reason: o.reason, message: o.message, evidence: run.status() };
    this.#metrics.preflightVerdict(rec.app, rec.version, o.verdict);
    this.#log.info({ name, app: rec.app, version: rec.version, verdict: o.verdict, reason: o.reason, message: o.message }, 'preflight finished');
    this.state.flush();
    this.requestReconcile();
  }

  async #finishDrains(instances: Map<string, Instance[]>, now: number): Promise<void> {
    for (const [name, since] of this.#draining) {
      const rec = this.state.get(name);
      const terminal = rec !== undefined && isTerminal(rec.phase);
      if (rec) this.#applyPhase(rec, { deleted: true }, now);
      if (now - since < this.#opts.drainMs) continue;
      for (const inst of instances.get(name) ?? []) this.#remove(inst, 'deleted');
      instances.delete(name);
      this.#draining.delete(name);
      if (rec) this.#metrics.forgetVersion(rec.app, rec.version);
      // A rollback outlives its file: restoring the same spec later must not route to it again.
      if (!terminal) this.state.delete(name);
      else rec.timestamps.removed = new Date(now).toISOString();
      this.#share.delete(name);
      this.#activeAt.delete(name);
      this.#log.info({ name }, 'AppVersion removed');
    }
  }

  /**
   * Remove an instance in the background, after delayMs (time for requests still in flight on it).
   * Never blocks a reconcile: a container that ignores SIGTERM takes its grace period, and the loop
   * must not wait for it. Instances being removed are hidden from #observe; if the controller stops
   * first, the next one finds them again and decides afresh (level-triggered).
   */
  #remove(inst: Instance, why: string, delayMs = 0): void {
    const driver = this.#drivers[inst.runtime];
    if (!driver || this.#removing.has(inst.id)) return;
    this.#health.delete(inst.id);
    const task = (async () => {
      if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs).unref());
      if (this.#stopped) return;
      this.#log.info({ name: inst.versionName, index: inst.index, id: inst.id, why }, 'removing instance');
      try {
        await driver.remove(inst, { graceMs: 5000 });
      } catch (err) {
        this.#log.warn({ err, id: inst.id }, 'could not remove instance; will retry');
      }
    })().finally(() => {
      this.#removing.delete(inst.id);
      this.requestReconcile();
    });
    this.#removing.set(inst.id, task);
  }

  #driverFor(av: AppVersion): RuntimeDriver {
    const driver = this.#drivers[av.spec.runtime.kind];
    if (!driver) throw new MoltError('MOLT_ERR_DOCKER', `no driver for runtime ${av.spec.runtime.kind}`);
    return driver;
  }

  /** From the table the sidecar has now: per app, the newest version and whether it has a fallback. */
  #newestServingByApp(): Map<string, { name: string; hasPrevious: boolean }> {
    const out = new Map<string, { name: string; hasPrevious: boolean }>();
    for (const app of this.control.table?.apps ?? []) {
      const serving = app.versions.filter((v) => v.state === 'serving' && !isTerminal(this.state.get(v.id)?.phase ?? 'Pending'));
      if (serving.length) out.set(app.name, { name: serving[0].id, hasPrevious: serving.length > 1 });
    }
    return out;
  }

  // ---------------------------------------------------------------- events

  #onFailure(m: FailureMessage): void {
    const rec = this.state.get(m.versionId);
    if (!rec || rec.epoch !== m.epoch || isTerminal(rec.phase)) return;
    this.#applyPhase(rec, { failureReported: `${m.reason} (first failure ${new Date(m.firstFailureAt).toISOString()})` }, m.rolledBackAt);
    this.state.flush();
    this.requestReconcile();
  }

  #onStats(m: StatsMessage): void {
    // Only versions still tracked and not removed: a stats line sent before the sidecar applied the
    // table without them (it reports every second; --drain may be shorter) must not bring their
    // metric series back after forgetVersion, where nothing would ever remove them again.
    const live = m.versions.filter((v) => {
      const rec = this.state.get(v.versionId);
      return rec !== undefined && rec.timestamps.removed === undefined;
    });
    for (const v of live) {
      const before = this.#share.get(v.versionId);
      if (!before || v.requests > before.requests) this.#activeAt.set(v.versionId, m.at);
      this.#share.set(v.versionId, { share: v.trafficShare, requests: v.requests, errors: v.errors });
    }
    this.#metrics.observeStats(live.length === m.versions.length ? m : { ...m, versions: live });
    this.#observeRisk();
    this.#analysisOnStats(m);
  }

  // ---------------------------------------------------------------- canary analysis (issue 12)
  //
  // The pure state machine is controller/analysis/gate.ts; the state lives in RolloutRecord.analysis
  // (durable). Here: start the gates when a version under analysis is the newest in its app's table with
  // a baseline behind it; put its step in the table (RouteVersion.currentStep); take window snapshots
  // from the stats lines; judge (built-in judge now, Prometheus asynchronously, never inside a reconcile);
  // act on the decision: next step / promote, roll back, or hold.

  /** The newest version of each app under analysis gets its gate state and (GRADUAL) its step in the table. */
  #analysisSteps(table: RoutingTable, desired: Map<string, AppVersion>, now: number): void {
    for (const app of table.apps) {
      const newest = app.versions[0];
      const av = newest ? desired.get(newest.id) : undefined;
      const plan = av ? gatePlanOf(av) : undefined;
      const rec = newest ? this.state.get(newest.id) : undefined;
      if (!newest || !av || !plan || !rec || rec.promoted || app.versions.length < 2) continue;
      const baseline = app.versions[1]!;
      if (!rec.analysis) {
        rec.analysis = startGate(plan, { name: baseline.id, version: baseline.version }, now);
        this.#log.info({ name: rec.name, app: rec.app, version: rec.version, baseline: baseline.version, mode: plan.mode }, 'canary analysis started');
      } else if (!app.versions.some((v) => v.id === rec.analysis!.baseline)) {
        // The baseline left the table: compare with the version serving behind this one now, from a fresh snapshot.
        rec.analysis.baseline = baseline.id;
        rec.analysis.baselineVersion = baseline.version;
        if (rec.analysis.window) delete rec.analysis.window.start;
      }
      if (plan.mode === 'GRADUAL') newest.currentStep = rec.analysis.step;
    }
  }

  /** Ungated steps with a pause (only other steps carry analysis) advance on the controller's clock. */
  #analysisTimers(desired: Map<string, AppVersion>, now: number): void {
    for (const av of desired.values()) {
      const rec = this.state.get(av.metadata.name);
      const plan = gatePlanOf(av);
      if (!rec?.analysis || !plan || rec.promoted || isTerminal(rec.phase)) continue;
      if (timedAdvanceDue(plan, rec.analysis, now)) this.#analysisAdvance(rec, plan, now, 'pause over (step without analysis)');
    }
  }

  #analysisAdvance(rec: RolloutRecord, plan: GatePlan, now: number, why: string): void {
    const r = advance(plan, rec.analysis!, now);
    const fields = { name: rec.name, app: rec.app, version: rec.version, why };
    if (r.promote) {
      rec.promoted = true;
      this.#log.info(fields, 'canary analysis done: version promoted');
    } else {
      this.#log.info({ ...fields, step: r.step + 1, weight: plan.steps[r.step]?.weight }, 'canary analysis: next step');
    }
  }

  /** Every stats line: window edges for the newest version of each app whose gates are running. */
  #analysisOnStats(m: StatsMessage): void {
    const byId = new Map(m.versions.map((v) => [v.versionId, v]));
    for (const app of this.control.table?.apps ?? []) {
      const newest = app.versions[0];
      if (!newest) continue;
      const rec = this.state.get(newest.id);
      const av = this.#snapshot.desired.get(newest.id);
      const plan = av ? gatePlanOf(av) : undefined;
      const gate = rec?.analysis;
      if (!rec || !av || !plan || !gate || rec.promoted || isTerminal(rec.phase) || this.#analysisPending.has(rec.name)) continue;
      if (rec.epoch !== newest.epoch) continue; // the table still shows an earlier admission
      const step = onSamples(gate, m.at, byId.get(newest.id)?.analysis, byId.get(gate.baseline)?.analysis);
      if (step.kind === 'started') this.state.flush();
      else if (step.kind === 'no-samples') {
        const result = combine([{ metric: 'samples', kind: 'errors', verdict: 'Inconclusive', message: `inconclusive: ${step.why}` }]);
        this.#analysisDecide(rec, plan, result, step, undefined, Date.now());
      } else if (step.kind === 'judge') {
        void this.#analysisJudge(av, rec, plan, step.start, step.end).catch((err: Error) => {
          this.#log.error({ err, name: rec.name }, 'canary analysis: judging a window failed');
        });
      }
    }
  }

  async #analysisJudge(av: AppVersion, rec: RolloutRecord, plan: GatePlan, start: SamplesSnapshot, end: SamplesSnapshot): Promise<void> {
    const gate = rec.analysis!;
    const cfg = gateConfig(plan, gate)!;
    const token = `${rec.epoch}:${gate.step}:${gate.judged}`;
    let canary, baseline;
    try {
      canary = windowData(start.canary, end.canary);
      baseline = windowData(start.baseline, end.baseline);
    } catch (err) {
      // The sidecar restarted (its counters start from zero): measure the window again.
      this.#log.info({ name: rec.name, why: (err as Error).message }, 'canary analysis: counters went back (sidecar restart?); window restarted');
      restartWindow(plan, gate, end);
      this.state.flush();
      return;
    }
    const metrics: MetricResult[] = [...judge(baseline, canary, cfg).metrics];
    if (cfg.prometheus) {
      this.#analysisPending.set(rec.name, token);
      try {
        const vars = { app: rec.app, version: rec.version, baseline: gate.baselineVersion };
        // Each query is bounded by its timeout; the extra second bounds the run as a whole.
        metrics.push(...await runPrometheusChecks(cfg.prometheus, vars, { signal: AbortSignal.timeout(cfg.prometheus.timeoutMs + 1000) }));
      } catch (err) {
        metrics.push({ metric: 'prometheus', kind: 'prometheus', verdict: 'Inconclusive', message: `prometheus: inconclusive: ${(err as Error).message}` });
      } finally {
        this.#analysisPending.delete(rec.name);
      }
      // The rollout may have moved on while Prometheus answered (a person promoted or rolled back, a new spec).
      const cur = this.state.get(rec.name);
      if (this.#stopped || cur !== rec || rec.promoted || isTerminal(rec.phase) || rec.analysis !== gate || `${rec.epoch}:${gate.step}:${gate.judged}` !== token) return;
    }
    this.#analysisDecide(rec, plan, combine(metrics), { startAt: start.at, endAt: end.at }, end, Date.now());
  }

  #analysisDecide(rec: RolloutRecord, plan: GatePlan, result: AnalysisResult, window: { startAt: number; endAt: number }, end: SamplesSnapshot | undefined, now: number): void {
    const gate = rec.analysis!;
    const step = gate.step;
    const d = decide(plan, gate, result, window, end, now);
    this.#metrics.analysisRun(rec.app, rec.version, result.verdict);
    const fields = { name: rec.name, app: rec.app, version: rec.version, baseline: gate.baselineVersion, ...(plan.mode === 'GRADUAL' ? { step: step + 1 } : {}), verdict: result.verdict, message: result.message };
    if (result.verdict === 'Fail') this.#log.warn(fields, 'canary analysis: Fail');
    else this.#log.info(fields, `canary analysis: ${result.verdict}`);
    if (d.kind === 'advance') this.#analysisAdvance(rec, plan, now, result.verdict === 'Pass' ? 'analysis passed' : 'inconclusive for maxHold; onInconclusive: promote');
    else if (d.kind === 'rollback') {
      this.#applyPhase(rec, { analysisRollback: { reason: d.reason, message: d.message } }, now);
      rec.promoted = false;
    }
    this.state.flush();
    this.requestReconcile();
  }

  /** Imago's mixed-version risk per app, once per stats line (every second): the newest routed version's
   *  share s of new traffic and its callsPerInteraction c give P = s(1 - s^c); mean and max per rollout. */
  #observeRisk(): void {
    for (const app of this.control.table?.apps ?? []) {
      const newest = app.versions[0];
      if (!newest) continue;
      const av = this.#snapshot.desired.get(newest.id);
      const share = app.versions.length > 1 ? this.#share.get(newest.id)?.share ?? 0 : 1;
      const current = this.#risk.observe(app.name, newest.id, share, av?.spec.callsPerInteraction ?? 1);
      this.#metrics.setMixedVersionRisk(app.name, current);
    }
  }

  /** Feed one observation (or a reconcile's worth) to the phase machine and record what it decides:
   *  status, the timestamp of a phase entered, the rollback metric, a log line. Returns the new status. */
  #applyPhase(rec: RolloutRecord, obs: PhaseObservations, at: number): PhaseStatus {
    const prev: PhaseStatus = { phase: rec.phase, reason: rec.reason, message: rec.message };
    const next = computePhase(prev, obs);
    if (next === prev) return prev;
    const key = phaseTimestampKey(next.phase);
    if (key && prev.phase !== next.phase) rec.timestamps[key] = new Date(at).toISOString();
    rec.phase = next.phase;
    rec.reason = next.reason;
    rec.message = next.message;
    const metric = rollbackMetricReason(prev, next);
    if (metric) this.#metrics.rollback(rec.app, metric);
    if (prev.phase !== next.phase) rec.phaseSince = new Date(at).toISOString();
    if (prev.phase !== next.phase) {
      const fields = { name: rec.name, app: rec.app, version: rec.version, phase: next.phase, reason: next.reason, message: next.message };
      if (next.phase === 'RolledBack') this.#log.warn(fields, 'version rolled back');
      else if (isTerminal(next.phase)) this.#log.warn(fields, `version ${next.phase.toLowerCase()}`);
      else if (next.phase === 'Promoted') this.#log.info(fields, 'version promoted: it takes all new traffic');
      else if (next.phase === 'Serving') this.#log.info(fields, 'version serving');
      else this.#log.debug(fields, 'phase changed');
    }
    return next;
  }

  #phaseCounts(desired: Map<string, AppVersion>): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const rec of this.state.all()) if (desired.has(rec.name) || this.#draining.has(rec.name)) counts[rec.phase] = (counts[rec.phase] ?? 0) + 1;
    return counts;
  }

  // ---------------------------------------------------------------- ControllerApi

  status(): ControllerStatus {
    const { desired, errors, endpoints } = this.#snapshot;
    const apps = new Map<string, AppStatus>();
    const avs = sortNewestFirst([...desired.values()].map((av) => ({ av })));
    for (const { av } of avs) {
      let app = apps.get(av.spec.app);
      if (!app) apps.set(av.spec.app, (app = { app: av.spec.app, hosts: [], versions: [] }));
      for (const h of av.spec.hosts) if (!app.hosts.includes(h)) app.hosts.push(h);
      app.versions.push(this.#versionStatus(av, endpoints.get(av.metadata.name) ?? []));
    }
    return {
      sidecarConnected: this.control.connected,
      routingRevision: this.control.table?.revision ?? 0,
      apps: [...apps.values()].sort((a, b) => a.app.localeCompare(b.app)),
      errors,
    };
  }

  #versionStatus(av: AppVersion, endpoints: Endpoint[]): VersionStatus {
    const rec = this.state.get(av.metadata.name);
    const s = this.#share.get(av.metadata.name);
    const inTable = this.control.table?.apps.some((a) => a.versions.some((v) => v.id === av.metadata.name)) ?? false;
    return {
      name: av.metadata.name,
      app: av.spec.app,
      version: av.spec.version,
      mode: av.spec.transition.mode,
      phase: rec?.phase ?? 'Pending',
      traffic: inTable ? s?.share ?? 0 : 0,
      reason: rec?.reason ?? '',
      message: rec?.message ?? '',
      source: av.source,
      endpoints,
      timestamps: { ...(rec?.timestamps ?? {}) },
      requests: s?.requests ?? 0,
      errors: s?.errors ?? 0,
      ...(av.spec.preflight ? { preflight: this.#preflightStatus(av, rec) } : {}),
      ...this.#riskStatus(av),
      ...this.#analysisStatus(av, rec),
    };
  }

  #analysisStatus(av: AppVersion, rec: RolloutRecord | undefined): Pick<VersionStatus, 'analysis'> {
    const plan = gatePlanOf(av);
    if (!plan) return {};
    const g = rec?.analysis;
    const iso = (ms: number) => new Date(ms).toISOString();
    const out: AnalysisStatus = { mode: plan.mode, state: 'Pending', runs: g ? [...g.runs] : [] };
    if (plan.mode === 'GRADUAL') {
      out.steps = plan.steps.length;
      if (g) {
        out.step = g.step;
        out.weight = plan.steps[g.step]?.weight;
      }
    }
    if (g) {
      out.baseline = g.baselineVersion;
      if (g.window) out.window = { startAt: iso(g.window.start?.at ?? g.window.startAt), endAt: iso(g.window.endAt), started: g.window.start !== undefined };
      if (g.holdSince !== undefined) out.holdSince = iso(g.holdSince);
      out.state = rec!.promoted ? 'Done' : isTerminal(rec!.phase) ? 'Stopped' : g.holdSince !== undefined ? 'Holding' : g.window ? 'Measuring' : 'Waiting';
    } else if (rec && isTerminal(rec.phase)) out.state = 'Stopped';
    else if (rec?.promoted) out.state = 'Done';
    return { analysis: out };
  }

  #riskStatus(av: AppVersion): Pick<VersionStatus, 'mixedVersionRisk'> {
    const r = this.#risk.of(av.spec.app, av.metadata.name);
    return r ? { mixedVersionRisk: r } : {};
  }

  #preflightStatus(av: AppVersion, rec: RolloutRecord | undefined): VersionStatus['preflight'] {
    const done = rec?.preflight;
    if (done) {
      const verdict = done.verdict === 'pass' ? 'Pass' : done.verdict === 'fail' ? 'Fail' : 'Overridden';
      return { ...(done.evidence ?? emptyEvidence()), verdict, message: done.message, ...(done.reason ? { reason: done.reason } : {}) };
    }
    const live = this.#preflights.get(av.metadata.name);
    if (live) return live.status();
    return { ...emptyEvidence(), verdict: 'Pending', message: rec?.phase === 'Testing' ? 'starting' : 'runs once the version is ready' };
  }

  getResource(name: string): { resource: unknown; status: VersionStatus | undefined } | undefined {
    const av = this.#snapshot.desired.get(name);
    if (!av) return undefined;
    return {
      resource: { apiVersion: av.apiVersion, kind: av.kind, metadata: av.metadata, spec: av.spec },
      status: this.#versionStatus(av, this.#snapshot.endpoints.get(name) ?? []),
    };
  }

  async applyResource(raw: unknown, source = 'api'): Promise<{ created: boolean; name: string }> {
    const av = normalizeAppVersion(raw, source); // throws MoltValidationErrors on bad input
    const name = av.metadata.name;
    if (av.spec.runtime.kind === 'process' && !this.#opts.allowApiProcess) {
      throw new MoltError('MOLT_ERR_FORBIDDEN', 'a process runtime runs a command on this machine, so the admin API refuses it unless molt up is started with --allow-api-process (files in the versions folder may always use it)', { path: 'spec.process' });
    }
    const file = path.join(this.appliedDir, `${name}.yaml`);
    const existing = (await this.#source.read()).resources.get(name);
    if (existing && path.dirname(existing.source) !== this.appliedDir) {
      throw new MoltError('MOLT_ERR_CONFLICT', `AppVersion "${name}" is defined by the file ${existing.source}; edit that file instead`, { path: 'metadata.name' });
    }
    const created = !fs.existsSync(file);
    const tmp = path.join(this.appliedDir, `.${name}.yaml.tmp`);
    fs.writeFileSync(tmp, `# applied through the molt admin API (${source}); delete with DELETE /appversions/${name}\n` + YAML.stringify(raw));
    fs.renameSync(tmp, file);
    this.#log.info({ name, source, created }, 'AppVersion applied through the API');
    await this.reconcileNow();
    return { created, name };
  }

  async deleteResource(name: string): Promise<void> {
    if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(name) || name.length > 63) {
      throw new MoltError('MOLT_ERR_VALIDATION', `"${name}" is not a valid AppVersion name (lower-case letters, digits and "-", at most 63)`, { path: 'metadata.name' });
    }
    const file = path.join(this.appliedDir, `${name}.yaml`);
    if (fs.existsSync(file)) {
      fs.unlinkSync(file);
      await this.reconcileNow();
      return;
    }
    const existing = (await this.#source.read()).resources.get(name);
    if (existing) throw new MoltError('MOLT_ERR_CONFLICT', `AppVersion "${name}" is defined by the file ${existing.source}; delete that file instead`);
    throw new MoltError('MOLT_ERR_NOT_FOUND', `no AppVersion named "${name}"`);
  }

  async promote(app: string, version?: string, opts: PromoteOptions = {}): Promise<VersionStatus> {
    await this.reconcileNow();
    const avs = this.#appVersions(app);
    let target: AppVersion | undefined;
    if (version) {
      target = avs.find((av) => av.spec.version === version || av.metadata.name === version);
      if (!target) throw new MoltError('MOLT_ERR_NOT_FOUND', `app "${app}" has no version "${version}"`);
    } else {
      target = avs.find((av) => !isTerminal(this.state.get(av.metadata.name)?.phase ?? 'Pending'));
      if (!target) throw new MoltError('MOLT_ERR_CONFLICT', `app "${app}" has no version that can be promoted`);
    }
    const rec = this.state.get(target.metadata.name)!;
    const pastPreflight = Boolean(version) && target.spec.preflight !== undefined && (rec.phase === 'Testing' || rec.phase === 'Rejected');
    // Under canary analysis, promote moves one step; --full finishes the transition.
    const plan = gatePlanOf(target);
    const stepwise = plan !== undefined && !opts.full && target === avs[0];
    const readmitted = isTerminal(rec.phase);
    if (readmitted) {
      // Re-admit: a fresh epoch so the sidecar forgets its earlier failure of this version.
      rec.epoch++;
      rec.timestamps = { created: new Date().toISOString() };
      rec.servingSince = 0;
      delete rec.analysis; // its gates start again from the first step (or --full skips them)
      this.#applyPhase(rec, { promoteOverride: true }, Date.now());
    }
    if (pastPreflight) {
      // The operator's explicit override: the gate opens without a verdict (issue 11).
      rec.preflight = { verdict: 'overridden', message: 'promoted by the user past its preflight', evidence: this.#preflights.get(rec.name)?.status() ?? rec.preflight?.evidence };
      this.#log.warn({ app, name: rec.name, version: rec.version }, 'preflight overridden: promoted by the user');
    }
    if (stepwise && !rec.promoted && (readmitted || pastPreflight || !rec.analysis || plan.mode === 'GRADUAL')) {
      let moved = true;
      if (rec.analysis && !readmitted) {
        const r = advance(plan, rec.analysis, Date.now());
        moved = !r.promote;
        if (!r.promote) this.#log.info({ app, name: rec.name, version: rec.version, step: r.step + 1, weight: plan.steps[r.step]?.weight }, 'promoted one step by the user (canary analysis)');
      } else {
        this.#log.info({ app, name: rec.name, version: rec.version }, 'promoted by the user: canary analysis gates start from the first step once it serves (--full skips them)');
      }
      if (moved) {
        this.state.flush();
        await this.reconcileNow();
        return this.#versionStatus(target, this.#snapshot.endpoints.get(target.metadata.name) ?? []);
      }
    }
    // Promoting one version un-promotes the others of the app.
    for (const av of avs) {
      const r = this.state.get(av.metadata.name);
      if (r) r.promoted = av === target;
    }
    this.#log.info({ app, name: rec.name, version: rec.version }, 'promoted by the user');
    this.state.flush();
    await this.reconcileNow();
    return this.#versionStatus(target, this.#snapshot.endpoints.get(target.metadata.name) ?? []);
  }

  async rollback(app: string): Promise<VersionStatus> {
    await this.reconcileNow();
    const avs = this.#appVersions(app);
    if (avs.length === 0) throw new MoltError('MOLT_ERR_NOT_FOUND', `no app named "${app}"`);
    const live = avs.filter((av) => !isTerminal(this.state.get(av.metadata.name)?.phase ?? 'Pending'));
    if (live.length < 2) throw new MoltError('MOLT_ERR_CONFLICT', `app "${app}" has no previous version to roll back to`);
    const rec = this.state.get(live[0].metadata.name)!;
    this.#applyPhase(rec, { manualRollback: true }, Date.now());
    rec.promoted = false;
    this.state.flush();
    await this.reconcileNow();
    return this.#versionStatus(live[0], []);
  }

  async trafficHar(app: string, limit: number): Promise<Har> {
    const avs = this.#appVersions(app);
    if (avs.length === 0) throw new MoltError('MOLT_ERR_NOT_FOUND', `no app named "${app}"`);
    const redact = appRedaction(avs);
    const answer = await this.control.requestTraffic(app, limit);
    return trafficToHar(answer, avs[0]!.spec.hosts?.[0] ?? app, redact);
  }

  #appVersions(app: string): AppVersion[] {
    const list = [...this.#snapshot.desired.values()].filter((av) => av.spec.app === app).map((av) => ({ av }));
    return sortNewestFirst(list).map((x) => x.av);
  }
}

function emptyEvidence(): PreflightEvidence {
  return { verdict: 'Pending', compared: 0, mismatched: 0, errors: 0, dropped: 0, skipped: 0, topMismatches: [], latency: { oldP50: null, oldP95: null, newP50: null, newP95: null }, message: '' };
}

function replicasOf(av: AppVersion): number {
  const r = av.spec.runtime;
  if (r.kind === 'docker') return r.docker.replicas;
  if (r.kind === 'process') return r.process.replicas;
  return r.servers.length;
}

function newRecord(av: AppVersion, prior: RolloutRecord | undefined, now: number): RolloutRecord {
  return {
    name: av.metadata.name,
    app: av.spec.app,
    version: av.spec.version,
    specHash: av.specHash,
    ...INITIAL_PHASE,
    epoch: (prior?.epoch ?? 0) + (prior ? 1 : 0),
    promoted: false,
    servingSince: 0,
    timestamps: { created: new Date(now).toISOString() },
  };
}

