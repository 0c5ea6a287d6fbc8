// Preflight (issue 11): test a new version on recorded and live traffic before any client reaches it.
//
// One PreflightRun per version in phase Testing. It reads the sidecar's recordings over the control
// socket (ControlServer.requestTraffic) and does everything else here, off the data path:
//  - replay: the most recent recorded requests (before the run started) go to the serving version
//    and to the new one; their answers are compared;
//  - shadow: requests recorded after the run started are copied (a `percent` sample) to the new
//    version and compared with the answer the client actually got;
//  - noise: each compared request is also asked of the serving version a second time (another of
//    its instances when it has several); fields that differ between those two answers are noise;
//  - the tally is judged by decide() (common/preflight-verdict.ts); after a pass, hooks are called.
// Every request sent here carries `x-molt-shadow: 1`. Unsafe methods (POST, PUT, PATCH, DELETE)
// are never sent unless unsafeMethods is true, and then only to the new version, compared with the
// recorded answer: they are never run twice on the serving version. The client's own request is
// never delayed: copies are made from recordings, after the client was answered, with bounded
// concurrency, and dropped (counted) when the bound is reached.

import type { Logger } from 'pino';
import type { Endpoint, WireExchange } from '../common/protocol.js';
import { compareResponses, compileIgnore, NoiseModel, routeKey, type BodyMode, type CapturedResponse, type CompareOptions, type Difference } from '../common/preflight-diff.js';
import { ShadowClient, ShadowDispatcher, type ShadowRequest, type ShadowResult } from '../common/shadow-client.js';
import { classifyPair, decide, PreflightTally, type Decision, type PreflightReason, type PreflightStatus } from '../common/preflight-verdict.js';
import type { TrafficAnswer } from './control-server.js';
import type { PreflightConfig as SpecPreflight } from './appversion.js';

export type OnNoTraffic = 'reject' | 'pass' | 'wait';

/** spec.preflight with defaults applied and durations in ms. */
export interface PreflightRunConfig {
  maxDurationMs: number;
  onNoTraffic: OnNoTraffic;
  replay: { requests: number; set: Record<string, string> } | null;
  shadow: { percent: number; minRequests: number } | null;
  compare: { status: boolean; headers: string[]; body: BodyMode; ignore: string[]; noise: 'auto' | 'off' };
  pass: { maxMismatchRate: number; maxErrorRate: number; maxLatencyRatio?: number };
  unsafeMethods: boolean;
  hooks: Array<{ url: string; timeoutMs: number }>;
}

export type PreflightVerdict = 'Pending' | 'Pass' | 'Fail';

/** The status block (admin /status, `molt status`, CRD status.preflight). */
export type PreflightEvidence = Omit<PreflightStatus, 'verdict'> & { verdict: PreflightVerdict | 'Overridden'; message: string; reason?: string; hooksOnly?: boolean };

/** What the run concluded; the phase machine turns Pass into the transition and Fail into Rejected. */
export interface PreflightOutcome {
  verdict: PreflightVerdict;
  reason?: PreflightReason | 'HookFailed';
  message: string;
}

export interface PreflightDeps {
  requestTraffic(app: string, limit: number, after?: Record<string, number>): Promise<TrafficAnswer>;
  client: ShadowClient;
  log?: Logger;
  now?: () => number;
  /** How often live traffic is read for shadowing and the verdict re-judged. Default 500 ms. */
  pollMs?: number;
  /** Copies in flight at once (each copy is 2–3 requests). Default 16. */
  maxInFlight?: number;
  random?: () => number;
  /** Compare the new version's answers with the recorded ones instead of asking the serving version
   *  (`molt traffic replay` without --compare-with). No noise probe without a serving version. */
  againstRecorded?: boolean;
  /** Called after every replayed or copied request (progress display). */
  onPair?: () => void;
}

export interface PreflightTarget {
  app: string;
  /** AppVersion name and spec.version of the version under test. */
  name: string;
  version: string;
  endpoints: Endpoint[];
  /** The version clients are served by now; null for an app's first version (hooks only). */
  serving: { name: string; version: string; endpoints: Endpoint[] } | null;
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
/** Compared pairs kept with their raw differences, so that noise learned later also clears them. */
const MAX_KEPT_PAIRS = 10_000;

interface PairRecord {
  route: string;
  diffs: Difference[];
  oldMs: number;
  newMs: number;
}

/** Noise is learned per endpoint, not per resource: ids in the path (numbers, UUIDs, long hex) are one key. */
export function noiseRouteKey(method: string, target: string): string {
  return routeKey(method, target).replace(/\/(?:\d+|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{16,})(?=\/|$)/gi, '/{id}');
}
const REPLAY_TIMEOUT_MS = 10_000;
/** Live exchanges read per poll at most (the newest). */
const SHADOW_BATCH = 500;

export class PreflightRun {
  readonly target: PreflightTarget;
  readonly config: PreflightRunConfig;
  readonly noise = new NoiseModel();
  /** Rebuilt from the kept pairs with the current noise model at every judgement. */
  #tally = new PreflightTally();
  readonly #pairs: PairRecord[] = [];
  /** Pairs beyond MAX_KEPT_PAIRS: judged with the noise known when they arrived. */
  readonly #overflow = new PreflightTally();
  #errors = 0;
  #skipped = 0;
  #dropped = 0;
  readonly startedAt: number;
  #outcome: PreflightOutcome = { verdict: 'Pending', message: 'starting' };
  /** Replay pairs expected (known once the recording was read). */
  #replayPlanned = 0;
  #replayDone = false;
  #stopped = false;
  #timer: NodeJS.Timeout | null = null;
  #cursor: Record<string, number> | undefined;
  #polling = false;
  #hooksRunning = false;
  #rr = 0;
  readonly #deps: Required<Omit<PreflightDeps, 'log' | 'onPair'>> & Pick<PreflightDeps, 'log' | 'onPair'>;
  readonly #dispatcher: ShadowDispatcher;
  readonly #compare: CompareOptions;
  #onChange: (() => void) | null = null;

  constructor(target: PreflightTarget, config: PreflightRunConfig, deps: PreflightDeps) {
    this.target = target;
    this.config = config;
    this.#deps = { pollMs: 500, maxInFlight: 16, now: Date.now, random: Math.random, againstRecorded: false, ...deps };
    this.startedAt = this.#deps.now();
    this.#dispatcher = new ShadowDispatcher({ maxInFlight: this.#deps.maxInFlight });
    this.#compare = {
      status: config.compare.status,
      headers: config.compare.headers,
      body: config.compare.body,
      ignore: compileIgnore(config.compare.ignore),
    };
  }

  get tally(): PreflightTally {
    return this.#tally;
  }

  get outcome(): PreflightOutcome {
    return this.#outcome;
  }

  /** The status block (issue 11 item 8), plus why it is where it is. */
  status(): PreflightEvidence {
    return {
      ...this.#tally.status(this.#outcome.verdict),
      message: this.#outcome.message,
      ...(this.#outcome.reason ? { reason: this.#outcome.reason } : {}),
      ...(this.target.serving === null ? { hooksOnly: true } : {}),
    };
  }

  /** Start; `onChange` is called whenever the outcome changes (and at the end). */
  start(onChange: () => void): void {
    this.#onChange = onChange;
    if (this.target.serving === null && !this.#deps.againstRecorded) {
      this.#setOutcome({ verdict: 'Pending', message: 'first version of the app: nothing to compare with, running hooks only' });
      void this.#runHooks();
      return;
    }
    void this.#begin();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }

  #setOutcome(o: PreflightOutcome): void {
    const changed = o.verdict !== this.#outcome.verdict || o.message !== this.#outcome.message;
    this.#outcome = o;
    if (o.verdict !== 'Pending') this.stop();
    if (changed) this.#onChange?.();
  }

  async #begin(): Promise<void> {
    const replay = this.config.replay;
    let first: TrafficAnswer;
    try {
      first = await this.#deps.requestTraffic(this.target.app, replay ? replay.requests : 0);
    } catch (err) {
      this.#deps.log?.warn({ err, app: this.target.app }, 'preflight: could not read the recording');
      first = { exchanges: [], cursor: {}, recorded: 0, skipped: 0 };
    }
    if (this.#stopped) return;
    this.#cursor = first.cursor;
    this.#schedulePoll();
    if (replay) {
      const usable = first.exchanges.filter((e) => this.#eligible(e.request.method));
      this.#replayPlanned = usable.length;
      await this.#replayAll(usable, replay.set);
    }
    this.#replayDone = true;
    this.#judge();
  }

  #eligible(method: string): boolean {
    return SAFE_METHODS.has(method) || this.config.unsafeMethods;
  }

  /** Replays run at the dispatcher's concurrency, waiting (not dropping): they are ours, not live traffic. */
  async #replayAll(list: WireExchange[], set: Record<string, string>): Promise<void> {
    for (const ex of list) {
      if (this.#stopped) return;
      while (this.#dispatcher.inFlight >= this.#dispatcher.maxInFlight) await this.#dispatcher.idle();
      this.#dispatcher.offer(() => this.#pair(ex, set, this.#deps.againstRecorded ? 'shadow' : 'replay'));
    }
    await this.#dispatcher.idle();
  }

  #schedulePoll(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => void this.#poll(), this.#deps.pollMs);
    this.#timer.unref?.();
  }

  async #poll(): Promise<void> {
    if (this.#stopped || this.#polling) return;
    this.#polling = true;
    try {
      const shadow = this.config.shadow;
      if (shadow && shadow.percent > 0) {
        const live = await this.#deps.requestTraffic(this.target.app, SHADOW_BATCH, this.#cursor);
        if (this.#stopped) return;
        this.#cursor = { ...this.#cursor, ...live.cursor };
        for (const ex of live.exchanges) {
          if (isShadowCopy(ex)) continue; // never copy a copy
          if (!this.#eligible(ex.request.method)) continue;
          if (shadow.percent < 100 && this.#deps.random() * 100 >= shadow.percent) continue;
          if (!this.#dispatcher.offer(() => this.#pair(ex, {}, 'shadow'))) this.#dropped++;
        }
      }
      this.#judge();
    } catch (err) {
      this.#deps.log?.warn({ err, app: this.target.app }, 'preflight: reading live traffic failed');
    } finally {
      this.#polling = false;
      this.#schedulePoll();
    }
  }

  #nextServingEndpoint(): Endpoint {
    const eps = this.target.serving!.endpoints;
    return eps[this.#rr++ % eps.length]!;
  }

  /**
   * One compared request. replay: old = the serving version now; shadow: old = what the client got.
   * A second answer of the serving version (noise probe) teaches the noise model first.
   */
  async #pair(ex: WireExchange, set: Record<string, string>, kind: 'replay' | 'shadow'): Promise<void> {
    const req: ShadowRequest = {
      method: ex.request.method,
      target: ex.request.target,
      headers: ex.request.headers,
      body: ex.request.bodyTruncated ? undefined : Buffer.from(ex.request.body, 'base64'),
    };
    if (ex.request.bodyTruncated) { this.#skipped++; return; }
    const safe = SAFE_METHODS.has(req.method);
    const send = (ep: Endpoint) => this.#deps.client.send(ep, req, { set, timeoutMs: REPLAY_TIMEOUT_MS });
    const newEp = this.target.endpoints[this.#rr % this.target.endpoints.length]!;
    const recorded: ShadowResult = {
      ok: true,
      status: ex.response.status,
      headers: ex.response.headers,
      body: Buffer.from(ex.response.body, 'base64'),
      bodyTruncated: ex.response.bodyTruncated,
      latencyMs: ex.durationMicros / 1000,
    };
    let old: ShadowResult;
    let second: ShadowResult | null = null;
    let neu: ShadowResult;
    if (!safe) {
      // Isolation: an unsafe request runs once, on the new version, compared with the recorded answer.
      old = recorded;
      neu = await send(newEp);
    } else if (kind === 'replay') {
      // The noise probe follows the first answer rather than racing it: two answers given in the same
      // instant would hide a timestamp that the new version's answer, a moment later, shows.
      const oldEp = this.#nextServingEndpoint();
      const probeEp = this.config.compare.noise === 'auto' ? this.#nextServingEndpoint() : null;
      [[old, second], neu] = await Promise.all([
        send(oldEp).then(async (o) => [o, probeEp ? await send(probeEp) : null] as const),
        send(newEp),
      ]);
    } else {
      old = recorded;
      const probeEp = this.config.compare.noise === 'auto' && this.target.serving !== null ? this.#nextServingEndpoint() : null;
      [neu, second] = await Promise.all([send(newEp), probeEp ? send(probeEp) : Promise.resolve(null)]);
    }
    if (this.#stopped) return;
    try {
      this.#count(req, old, second, neu);
    } finally {
      this.#deps.onPair?.(); // after counting: the progress line shows this pair
    }
  }

  #count(req: { method: string; target: string }, old: ShadowResult, second: ShadowResult | null, neu: ShadowResult): void {
    const outcome = classifyPair(old.ok ? { ok: true, status: old.status } : { ok: false }, neu.ok ? { ok: true, status: neu.status } : { ok: false });
    if (outcome === 'skip') { this.#skipped++; return; }
    if (outcome === 'error') { this.#errors++; this.#judge(); return; }
    if (!old.ok || !neu.ok) return; // classifyPair said both answered
    const route = noiseRouteKey(req.method, req.target);
    if (second !== null && second.ok) {
      this.noise.learn(route, compareResponses(captured(old), captured(second), this.#compare).differences);
    }
    const pair: PairRecord = { route, diffs: compareResponses(captured(old), captured(neu), this.#compare).differences, oldMs: old.latencyMs, newMs: neu.latencyMs };
    if (this.#pairs.length < MAX_KEPT_PAIRS) this.#pairs.push(pair);
    else this.#overflow.recordComparison(this.noise.filter(route, pair.diffs), { oldMs: pair.oldMs, newMs: pair.newMs });
    this.#judge();
  }

  #minRequests(): number {
    const shadow = this.config.shadow;
    if (shadow) return Math.max(1, shadow.minRequests);
    // Replay only: judge once every planned replay was answered (at least one).
    return Math.max(1, this.#replayPlanned);
  }

  /** The tally as judged now: every kept pair filtered by everything the noise model knows by now. */
  #rebuild(): PreflightTally {
    const t = new PreflightTally();
    for (const p of this.#pairs) t.recordComparison(this.noise.filter(p.route, p.diffs), { oldMs: p.oldMs, newMs: p.newMs });
    t.merge(this.#overflow);
    for (let i = 0; i < this.#errors; i++) t.recordError();
    for (let i = 0; i < this.#skipped; i++) t.recordSkipped();
    t.recordDropped(this.#dropped);
    this.#tally = t;
    return t;
  }

  #judge(): void {
    if (this.#stopped || this.#hooksRunning) return;
    const tally = this.#rebuild();
    const elapsedMs = this.#deps.now() - this.startedAt;
    const min = this.#minRequests();
    // Mismatches are judged only once minRequests pairs were seen (the noise model needs them);
    // errors (5xx, resets, timeouts where the serving version answered) fail at once.
    if (tally.compared + tally.errors < min && tally.errors === 0 && elapsedMs < this.config.maxDurationMs &&
        (!this.#replayDone || this.config.shadow)) {
      const msg = `${tally.compared + tally.errors} of ${min} request(s) compared so far`;
      if (msg !== this.#outcome.message) this.#setOutcome({ verdict: 'Pending', message: msg });
      return;
    }
    // Without shadowing, nothing more can come once the replay is done: judge what there is.
    const waitingForReplay = !this.#replayDone && !this.config.shadow;
    const d: Decision = decide(tally, this.config.pass, {
      minRequests: min,
      elapsedMs: waitingForReplay ? Math.min(elapsedMs, this.config.maxDurationMs - 1) : elapsedMs,
      maxDurationMs: this.config.maxDurationMs,
      onNoTraffic: this.config.onNoTraffic,
    });
    if (d.verdict === 'Fail') {
      this.#setOutcome({ verdict: 'Fail', reason: d.reason, message: d.message });
      return;
    }
    if (d.verdict === 'Pass') {
      if (waitingForReplay) return;
      void this.#runHooks(d.message);
      return;
    }
    if (d.message !== this.#outcome.message) this.#setOutcome({ verdict: 'Pending', message: d.message });
  }

  async #runHooks(passMessage = 'no traffic tests (first version)'): Promise<void> {
    if (this.#hooksRunning) return;
    this.#hooksRunning = true;
    if (this.#timer) clearTimeout(this.#timer);
    for (const hook of this.config.hooks) {
      const failure = await callHook(hook, {
        app: this.target.app,
        version: this.target.version,
        name: this.target.name,
        phase: 'Testing',
        preflight: this.status(),
      });
      if (failure !== null) {
        this.#hooksRunning = false;
        this.#setOutcome({ verdict: 'Fail', reason: 'HookFailed', message: `hook ${hook.url}: ${failure}` });
        return;
      }
    }
    this.#hooksRunning = false;
    const hooks = this.config.hooks.length;
    this.#setOutcome({ verdict: 'Pass', message: hooks ? `${passMessage}; ${hooks} hook(s) passed` : passMessage });
  }
}

function captured(r: ShadowResult & { ok: true }): CapturedResponse {
  return { status: r.status, headers: r.headers, body: r.body, bodyTruncated: r.bodyTruncated };
}

function isShadowCopy(ex: WireExchange): boolean {
  for (const [n] of ex.request.headers) if (n.toLowerCase() === 'x-molt-shadow') return true;
  return false;
}

/** POST the evidence as JSON; null when the hook answered 2xx in time, else why not. */
export async function callHook(hook: { url: string; timeoutMs: number }, body: unknown): Promise<string | null> {
  try {
    const res = await fetch(hook.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-molt-shadow': '1' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(hook.timeoutMs),
      redirect: 'manual',
    });
    const text = await res.text().catch(() => '');
    if (res.status >= 200 && res.status < 300) return null;
    return `answered ${res.status}${text ? `: ${text.slice(0, 200)}` : ''}`;
  } catch (err) {
    const e = err as Error;
    if (e.name === 'TimeoutError' || e.name === 'AbortError') return `no answer within ${hook.timeoutMs} ms`;
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    return `request failed: ${cause?.code ?? cause?.message ?? e.message}`;
  }
}

/** spec.preflight (validated, defaults applied by the loader) as a run's configuration. */
export function runConfigFrom(p: SpecPreflight): PreflightRunConfig {
  return {
    maxDurationMs: p.maxDurationMs,
    onNoTraffic: p.onNoTraffic,
    replay: p.replay.requests > 0 ? { requests: p.replay.requests, set: p.replay.setHeaders } : null,
    shadow: p.shadow.percent > 0 ? { percent: p.shadow.percent, minRequests: p.shadow.minRequests } : null,
    compare: { status: p.compare.status, headers: p.compare.headers, body: p.compare.body, ignore: p.compare.ignore, noise: p.compare.noise },
    pass: { maxMismatchRate: p.pass.maxMismatchRate, maxErrorRate: p.pass.maxErrorRate, maxLatencyRatio: p.pass.maxLatencyRatio },
    unsafeMethods: p.unsafeMethods,
    hooks: p.hooks.map((h) => ({ url: h.url, timeoutMs: h.timeoutMs })),
  };
}

/**
 * The preflights in progress, one per version under test, shared by both modes. Level-triggered use:
 * every reconcile calls ensure() for each version in Testing and retain() with that set; a run is
 * keyed by the rollout (name, spec hash, admission epoch), so a changed spec tests again.
 */
export class PreflightManager {
  readonly #runs = new Map<string, { key: string; run: PreflightRun }>();
  readonly #deps: Omit<PreflightDeps, 'client'>;
  readonly #client = new ShadowClient({ maxSockets: 16 });
  readonly #onChange: (name: string, run: PreflightRun) => void;

  constructor(deps: Omit<PreflightDeps, 'client'>, onChange: (name: string, run: PreflightRun) => void) {
    this.#deps = deps;
    this.#onChange = onChange;
  }

  ensure(name: string, key: string, target: PreflightTarget, config: PreflightRunConfig): PreflightRun {
    const have = this.#runs.get(name);
    if (have && have.key === key) return have.run;
    have?.run.stop();
    const run = new PreflightRun(target, config, { ...this.#deps, client: this.#client });
    this.#runs.set(name, { key, run });
    this.#deps.log?.info({ name, app: target.app, version: target.version, against: target.serving?.version ?? null }, 'preflight started');
    run.start(() => this.#onChange(name, run));
    return run;
  }

  get(name: string): PreflightRun | undefined {
    return this.#runs.get(name)?.run;
  }

  /** Stop runs of versions no longer under test (promoted past it, deleted, spec changed). */
  retain(names: ReadonlySet<string>): void {
    for (const [name, { run }] of this.#runs) {
      if (names.has(name)) continue;
      run.stop();
      this.#runs.delete(name);
    }
  }

  close(): void {
    this.retain(new Set());
    this.#client.close();
  }
}
