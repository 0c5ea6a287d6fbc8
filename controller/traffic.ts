// Recorded traffic outside the preflight: `molt traffic export APP` (HAR 1.2) and
// `molt traffic replay FILE --app APP --to VERSION [--compare-with VERSION]`.
//
// Export reads the sidecar's recording through the controller and redacts it (Authorization,
// Cookie, Set-Cookie and configured names) before it leaves the controller. Replay sends a HAR's
// requests to one version and compares the answers with another version's (noise learned as in the
// preflight), or with the answers recorded in the HAR when no version to compare with is named.

import fs from 'node:fs';
import path from 'node:path';
import type { WireExchange } from '../common/protocol.js';
import { fromHar, Redactor, toHar, type Har, type RecordedExchange, type RedactOptions } from '../common/har.js';
import { MoltError, MoltValidationErrors } from '../common/errors.js';
import { ShadowClient } from '../common/shadow-client.js';
import { PreflightRun, type PreflightEvidence, type PreflightRunConfig, type PreflightOutcome } from './preflight.js';
import type { TrafficAnswer } from './control-server.js';
import type { AppStatus, VersionStatus } from './controller-api.js';
import type { AppVersion } from './appversion.js';

const httpVersion = (v: string) => v.replace(/^HTTP\//, '');

export function wireToRecorded(ex: WireExchange): RecordedExchange {
  const waitMs = ex.durationMicros / 1000;
  return {
    startedAt: ex.startedAt,
    request: { ...ex.request, httpVersion: httpVersion(ex.request.httpVersion), body: Buffer.from(ex.request.body, 'base64') },
    response: { ...ex.response, httpVersion: httpVersion(ex.response.httpVersion), body: Buffer.from(ex.response.body, 'base64') },
    timings: { waitMs, receiveMs: 0 },
  };
}

export function recordedToWire(ex: RecordedExchange, i: number): WireExchange {
  const res = ex.response;
  return {
    recorder: 'har',
    seq: i + 1,
    startedAt: ex.startedAt,
    durationMicros: Math.round(((ex.timings.waitMs ?? 0) + (ex.timings.receiveMs ?? 0)) * 1000),
    request: { ...ex.request, httpVersion: `HTTP/${ex.request.httpVersion}`, body: ex.request.body.toString('base64') },
    // An entry without a response (aborted in the browser) can still be replayed against a version.
    response: res
      ? { status: res.status, statusText: res.statusText ?? '', httpVersion: `HTTP/${res.httpVersion}`, headers: res.headers, body: res.body.toString('base64'), bodyTruncated: res.bodyTruncated }
      : { status: 0, statusText: '', httpVersion: 'HTTP/1.1', headers: [], body: '', bodyTruncated: true },
  };
}

/** The recording as HAR 1.2, redacted. `host` names requests that carried no Host header. */
export function trafficToHar(answer: TrafficAnswer, host: string, redact: RedactOptions = {}, creatorVersion?: string): Har {
  const r = new Redactor(redact);
  return toHar(answer.exchanges.map((e) => r.exchange(wireToRecorded(e))), { host, creatorVersion });
}

/** Redaction for an app's exported traffic: every version's configured `preflight.redact` (on top of
 *  Authorization, Cookie, Set-Cookie, which the Redactor always covers). */
export function appRedaction(avs: readonly AppVersion[]): { headers: string[]; queryParams: string[]; keep: string[] } {
  const redact = { headers: [] as string[], queryParams: [] as string[], keep: [] as string[] };
  for (const av of avs) {
    const r = av.spec.preflight?.redact;
    if (!r) continue;
    redact.headers.push(...r.headers);
    redact.queryParams.push(...r.queryParams);
    redact.keep.push(...r.keep);
  }
  return redact;
}

/** Read and validate a HAR file: errors name the file and the entry's field path. Bodies kept next
 *  to the HAR (playwright's `content: 'attach'`: `_file` names) are read from the HAR's directory. */
export function readHarFile(file: string): RecordedExchange[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new MoltError('MOLT_ERR_USAGE', `cannot read HAR file ${file}: ${(err as Error).message}`, { file });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new MoltError('MOLT_ERR_VALIDATION', `${file} is not JSON: ${(err as Error).message}`, { file });
  }
  const dir = path.dirname(path.resolve(file));
  const loadFile = (name: string): Buffer => {
    const resolved = path.resolve(dir, name);
    const rel = path.relative(dir, resolved);
    if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) throw new MoltError('MOLT_ERR_VALIDATION', `"${name}" is outside the HAR's directory ${dir}`);
    try {
      return fs.readFileSync(resolved);
    } catch (err) {
      throw new MoltError('MOLT_ERR_VALIDATION', `cannot read "${name}" next to the HAR: ${(err as Error).message}`);
    }
  };
  try {
    return fromHar(json, { loadFile });
  } catch (err) {
    if (err instanceof MoltValidationErrors) throw new MoltValidationErrors(err.errors.map((e) => new MoltError(e.code, e.message, { ...e.location, file })));
    throw err;
  }
}

/** The version `molt promote` would name: by spec.version or by AppVersion name. */
export function findVersion(apps: AppStatus[], app: string, version: string): VersionStatus {
  const a = apps.find((x) => x.app === app);
  if (!a) throw new MoltError('MOLT_ERR_NOT_FOUND', `no app "${app}" (known: ${apps.map((x) => x.app).join(', ') || 'none'})`);
  const v = a.versions.find((x) => x.version === version || x.name === version);
  if (!v) throw new MoltError('MOLT_ERR_NOT_FOUND', `app "${app}" has no version "${version}" (known: ${a.versions.map((x) => x.version).join(', ')})`);
  if (v.endpoints.length === 0) throw new MoltError('MOLT_ERR_NOT_READY', `${app} ${v.version} has no endpoints yet (phase ${v.phase})`);
  return v;
}

export interface ReplayOptions {
  to: VersionStatus;
  compareWith?: VersionStatus;
  app: string;
  compare?: Partial<PreflightRunConfig['compare']>;
  set?: Record<string, string>;
  unsafeMethods?: boolean;
  concurrency?: number;
  onProgress?: (done: number, total: number, status: PreflightEvidence) => void;
}

export interface ReplayResult {
  outcome: PreflightOutcome;
  status: PreflightEvidence;
  total: number;
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * Replay recorded exchanges; resolves with the same verdict and evidence a preflight gives.
 * Requests ask for `accept-encoding: identity` unless `set` names it: a HAR holds decoded bodies
 * (HAR 1.2 `content.text`), so answers are compared as decoded bodies, not as gzip bytes (which hide
 * a changed field behind a changed byte stream). `total` counts the requests that will be sent
 * (unsafe methods only with unsafeMethods).
 */
export async function replayExchanges(exchanges: RecordedExchange[], o: ReplayOptions): Promise<ReplayResult> {
  const wire = exchanges.map(recordedToWire);
  const total = wire.filter((e) => o.unsafeMethods || SAFE_METHODS.has(e.request.method)).length;
  const set: Record<string, string> = { ...o.set };
  if (!Object.keys(set).some((k) => k.toLowerCase() === 'accept-encoding')) set['accept-encoding'] = 'identity';
  const client = new ShadowClient({ maxSockets: o.concurrency ?? 8 });
  const config: PreflightRunConfig = {
    maxDurationMs: 24 * 3600_000,
    onNoTraffic: 'pass',
    replay: { requests: wire.length, set },
    shadow: null,
    compare: { status: true, headers: ['content-type'], body: 'auto', ignore: [], noise: 'auto', ...o.compare },
    pass: { maxMismatchRate: 0, maxErrorRate: 0 },
    unsafeMethods: o.unsafeMethods ?? false,
    hooks: [],
  };
  let done = 0;
  let served = false;
  const run: PreflightRun = new PreflightRun(
    {
      app: o.app,
      name: o.to.name,
      version: o.to.version,
      endpoints: o.to.endpoints,
      serving: o.compareWith ? { name: o.compareWith.name, version: o.compareWith.version, endpoints: o.compareWith.endpoints } : null,
    },
    config,
    {
      client,
      maxInFlight: o.concurrency ?? 8,
      againstRecorded: !o.compareWith,
      requestTraffic: async () => {
        if (served) return { exchanges: [], cursor: {}, recorded: 0, skipped: 0 };
        served = true;
        return { exchanges: wire, cursor: {}, recorded: wire.length, skipped: 0 };
      },
      onPair: () => o.onProgress?.(++done, total, run.status()),
    },
  );
  try {
    const outcome = await new Promise<PreflightOutcome>((resolve) => {
      run.start(() => {
        if (run.outcome.verdict !== 'Pending') resolve(run.outcome);
      });
    });
    return { outcome, status: run.status(), total };
  } finally {
    run.stop();
    client.close();
  }
}
