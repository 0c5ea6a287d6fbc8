// Loading AppVersion resources: YAML files (with precise line/column for every error), and raw
// objects from the API or Kubernetes. Validation is two passes over the raw object:
//   1. structure: Ajv against the strict local schema (controller/schema.ts): unknown fields,
//      types, enums, patterns;
//   2. meaning: durations, quantities, exactly one runtime, mode-specific fields, step order.
// Both report issues as a path of segments; the YAML loader maps a path to the node it names.

import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { isMap, isScalar, isSeq, isAlias, LineCounter, parseAllDocuments, type Document, type Node, type Pair } from 'yaml';
import { API_VERSION, KIND, type AppVersion, type AppVersionSpec, type DockerRuntime, type HealthCheck, type PreflightConfig, type Runtime } from './appversion.js';
import { MoltError, MoltValidationErrors, type MoltErrorCode } from '../common/errors.js';
import { describe, parseDuration, parseQuantity } from '../common/duration.js';
import {
  COOKIE_NAME_PATTERN,
  HEADER_NAME_PATTERN,
  HOOK_URL_PATTERN,
  HOST_PATTERN,
  NAME_PATTERN,
  SERVER_HOST_PATTERN,
  VERSION_PATTERN,
  localSchema,
  type SchemaNode,
} from './schema.js';
import { DEFAULT_COMPARE_CONFIG, parseIgnorePattern } from '../common/preflight-diff.js';
import { normalizeTransitionAnalysis } from './analysis/config.js';
import { ANALYSIS_PATTERN_HINTS } from './analysis/schema-fragment.js';
import {
  DEFAULT_FAILURE_POLICY,
  DEFAULT_TRANSITION,
  type FailurePolicyConfig,
  type GradualStep,
  type TransitionConfig,
  type TransitionMode,
} from '../common/protocol.js';

export const MAX_FILE_BYTES = 1024 * 1024;

export const DEFAULT_HEALTH_CHECK: Readonly<HealthCheck> = { intervalMs: 1000, timeoutMs: 1000, startupTimeoutMs: 60_000 };
export const DEFAULT_DOCKER_TAG = 'latest';
export const DEFAULT_IMAGE_POLL_INTERVAL_MS = 30_000;
export const DEFAULT_CALLS_PER_INTERACTION = 1;
/** spec.preflight defaults (docs/preflight.md). */
export const PREFLIGHT_DEFAULTS = Object.freeze({
  maxDurationMs: 120_000,
  onNoTraffic: 'reject' as const,
  replayRequests: 200,
  /** When spec.preflight.shadow is given without percent; without shadow nothing is copied. */
  shadowPercent: 100,
  /** When shadow is given; without shadow min(100, replay.requests). */
  minRequests: 100,
  compare: DEFAULT_COMPARE_CONFIG,
  maxMismatchRate: 0,
  maxErrorRate: 0,
  maxLatencyRatio: 2,
  hookTimeoutMs: 30_000,
});
/** Headers replay.headers.set may not change: molt writes them (framing, routing, the shadow mark). */
const UNSETTABLE_HEADERS = new Set(['content-length', 'transfer-encoding', 'connection', 'keep-alive', 'upgrade', 'te', 'trailer', 'x-molt-shadow']);
/** Docker refuses memory limits below 6 MiB. */
const DOCKER_MIN_MEMORY = 6 * 1024 * 1024;

type Segment = string | number;

/** One problem with a raw resource. `at` says which YAML node to point at. */
interface Issue {
  path: Segment[];
  message: string;
  /** value (default): the node at path; key: the key naming it; parent: path is the mapping missing a field. */
  at?: 'value' | 'key' | 'parent';
  /** Shown path when it differs from `path` (a missing field: path is the parent). */
  field?: string;
  code?: MoltErrorCode;
}

/** Original spelling of a scalar (e.g. "1.10" for a value YAML read as 1.1), when known. */
type SourceOf = (path: Segment[]) => string | undefined;

// ---- public API ----

/** Parse a (multi-document) YAML text. Invalid documents are left out and reported in `errors`. */
export function parseAppVersionText(text: string, file: string): { resources: AppVersion[]; errors: MoltError[] } {
  const resources: AppVersion[] = [];
  const errors: MoltError[] = [];
  const lineCounter = new LineCounter();
  const docs = parseAllDocuments(text.startsWith('\uFEFF') ? text.slice(1) : text, { lineCounter, prettyErrors: false, merge: true });
  const list = Array.isArray(docs) ? docs : [];
  const seen = new Map<string, number>();

  for (const doc of list) {
    if (doc.errors.length > 0) {
      for (const e of doc.errors) {
        const pos = e.linePos?.[0] ?? lineCounter.linePos(e.pos[0]);
        errors.push(new MoltError('MOLT_ERR_YAML_SYNTAX', `YAML syntax error: ${firstLine(e.message)}`, { file, line: pos.line, column: pos.col }));
      }
      continue;
    }
    if (doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null)) continue;

    let raw: unknown;
    try {
      raw = doc.toJS({ maxAliasCount: 100 });
    } catch (err) {
      const pos = lineCounter.linePos(doc.contents.range?.[0] ?? 0);
      errors.push(new MoltError('MOLT_ERR_YAML_SYNTAX', `YAML error: ${(err as Error).message}`, { file, line: pos.line, column: pos.col }, { cause: err }));
      continue;
    }
    const sourceOf: SourceOf = (path) => {
      const node = doc.getIn(path, true);
      return isScalar(node) && typeof node.source === 'string' ? node.source : undefined;
    };
    const { resource, issues } = check(raw, file, sourceOf);
    const locate = (issue: Issue): MoltError => {
      const pos = lineCounter.linePos(offsetOf(doc, issue));
      return new MoltError(issue.code ?? 'MOLT_ERR_VALIDATION', issue.message, {
        file,
        line: pos.line,
        column: pos.col,
        path: issue.field ?? formatPath(issue.path),
      });
    };
    if (!resource) {
      errors.push(...issues.map(locate).sort(byPosition));
      continue;
    }
    const name = resource.metadata.name;
    const firstAt = seen.get(name);
    if (firstAt !== undefined) {
      errors.push(locate({
        path: ['metadata', 'name'],
        code: 'MOLT_ERR_DUPLICATE_NAME',
        message: `duplicate AppVersion name "${name}" (first defined at line ${firstAt}); names must be unique`,
      }));
      continue;
    }
    seen.set(name, lineCounter.linePos(offsetOf(doc, { path: ['metadata', 'name'], message: '' })).line);
    resources.push(resource);
  }
  return { resources, errors };
}

/** Validate and normalise a raw object (API JSON, a Kubernetes object). Throws MoltValidationErrors. */
export function normalizeAppVersion(raw: unknown, source: string): AppVersion {
  // Objects from client libraries may hold undefined fields and Date objects: validate their JSON form.
  const plain: unknown = isPlainObject(raw) ? JSON.parse(JSON.stringify(raw)) : raw;
  const { resource, issues } = check(plain, source, () => undefined);
  if (resource) return resource;
  throw new MoltValidationErrors(
    issues.map((i) => new MoltError(i.code ?? 'MOLT_ERR_VALIDATION', i.message, { path: i.field ?? formatPath(i.path) })),
  );
}

/** Read and parse one YAML file. Files over 1 MiB are refused. Never throws for bad content. */
export async function loadAppVersionFile(path: string): Promise<{ resources: AppVersion[]; errors: MoltError[] }> {
  let text: string;
  try {
    const handle = await open(path, 'r');
    try {
      const { size } = await handle.stat();
      if (size > MAX_FILE_BYTES) return { resources: [], errors: [tooBig(path, size)] };
      const buf = await handle.readFile();
      if (buf.length > MAX_FILE_BYTES) return { resources: [], errors: [tooBig(path, buf.length)] };
      text = new TextDecoder('utf-8', { fatal: true }).decode(buf);
    } finally {
      await handle.close();
    }
  } catch (err) {
    const reason = err instanceof TypeError ? 'it is not valid UTF-8 text' : (err as Error).message;
    return {
      resources: [],
      errors: [new MoltError('MOLT_ERR_CONFIG_FILE', `cannot read AppVersion file: ${reason}`, { file: path }, { cause: err })],
    };
  }
  return parseAppVersionText(text, path);
}

function tooBig(file: string, size: number): MoltError {
  return new MoltError(
    'MOLT_ERR_CONFIG_FILE',
    `file is ${size} bytes; AppVersion files may be at most ${MAX_FILE_BYTES} bytes (1 MiB)`,
    { file },
  );
}

/** "spec.docker.portBindings[0].hostPort" */
export function formatPath(path: readonly Segment[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out ? `.${seg}` : seg;
  }
  return out;
}

// ---- checking ----

function check(raw: unknown, source: string, sourceOf: SourceOf): { resource?: AppVersion; issues: Issue[] } {
  if (!isPlainObject(raw)) {
    return { issues: [{ path: [], message: `expected an AppVersion resource (a mapping with apiVersion, kind, metadata and spec), got ${describe(raw)}` }] };
  }
  if (raw.apiVersion !== API_VERSION || raw.kind !== KIND) {
    const which = raw.apiVersion !== API_VERSION ? 'apiVersion' : 'kind';
    const got = `apiVersion ${raw.apiVersion === undefined ? '(none)' : JSON.stringify(raw.apiVersion)}, kind ${raw.kind === undefined ? '(none)' : JSON.stringify(raw.kind)}`;
    return {
      issues: [{
        path: which in raw ? [which] : [],
        at: which in raw ? 'value' : 'parent',
        field: which,
        message: `expected apiVersion: ${API_VERSION} and kind: ${KIND}, got ${got}`,
      }],
    };
  }

  const issues = [...quotedStringHints(raw, sourceOf)];
  const hinted = new Set(issues.map((i) => formatPath(i.path)));
  const validate = compiled();
  if (!validate(raw)) {
    for (const issue of ajvIssues(validate.errors ?? [], raw)) {
      if (!hinted.has(formatPath(issue.path))) issues.push(issue);
    }
  }
  if (issues.length > 0) return { issues: dedupe(issues) };

  const ctx = new Normalizer();
  const spec = ctx.spec(raw.spec as Raw);
  if (ctx.issues.length > 0 || !spec) return { issues: ctx.issues };

  const meta = raw.metadata as Raw;
  const metadata: AppVersion['metadata'] = { name: meta.name as string };
  if (typeof meta.namespace === 'string') metadata.namespace = meta.namespace;
  if (typeof meta.generation === 'number') metadata.generation = meta.generation;
  if (typeof meta.uid === 'string') metadata.uid = meta.uid;
  if (isPlainObject(meta.labels)) metadata.labels = { ...(meta.labels as Record<string, string>) };
  return {
    issues: [],
    resource: { apiVersion: API_VERSION, kind: KIND, metadata, spec, source, specHash: specHash(spec) },
  };
}

/** version: 1.10 reads as the number 1.1; say so, with the user's own spelling. */
function quotedStringHints(raw: Raw, sourceOf: SourceOf): Issue[] {
  const out: Issue[] = [];
  const spec = isPlainObject(raw.spec) ? raw.spec : undefined;
  const candidates: Array<[Segment[], unknown]> = [
    [['spec', 'version'], spec?.version],
    [['spec', 'docker', 'tag'], isPlainObject(spec?.docker) ? spec.docker.tag : undefined],
  ];
  for (const [path, value] of candidates) {
    if (typeof value !== 'number') continue;
    const spelled = sourceOf(path) ?? String(value);
    const key = path[path.length - 1];
    const lost = spelled !== String(value) ? ` (unquoted, YAML reads ${spelled} as the number ${value})` : '';
    out.push({ path, message: `${key} must be a string: quote it, ${key}: "${spelled}"${lost}` });
  }
  return out;
}

let validator: ValidateFunction | undefined;
/** Compile the schema validator now (hundreds of ms of synchronous work) rather than inside the first
 *  reconcile, where it would stall lease renewals and everything else on the event loop. */
export function warmValidator(): void {
  compiled();
}
function compiled(): ValidateFunction {
  validator ??= new Ajv({ allErrors: true, verbose: true, strict: true, allowUnionTypes: true }).compile(localSchema());
  return validator;
}

const TYPE_NAMES: Record<string, string> = {
  integer: 'a whole number',
  number: 'a number',
  string: 'a string',
  boolean: 'true or false',
  object: 'a mapping',
  array: 'a list',
};

const PATTERN_HINTS: Record<string, string> = {
  [NAME_PATTERN]: 'lower-case letters, digits and "-", starting and ending with a letter or digit',
  [VERSION_PATTERN]: 'letters, digits, ".", "_", "+" and "-", starting with a letter or digit, e.g. "2.0.0"',
  [HOST_PATTERN]: 'a host name without port or scheme, e.g. shop.example.com',
  [SERVER_HOST_PATTERN]: 'a host name or IP address without port, e.g. 127.0.0.1',
  [COOKIE_NAME_PATTERN]: 'a cookie name (letters, digits and !#$%&\'*+-.^_`|~)',
  '^/': 'a path starting with "/"',
  [HEADER_NAME_PATTERN]: 'a header name (letters, digits and !#$%&\'*+-.^_`|~)',
  [HOOK_URL_PATTERN]: 'an absolute http(s) URL such as "http://127.0.0.1:7000/check"',
  ...ANALYSIS_PATTERN_HINTS,
};

function ajvIssues(errors: ErrorObject[], raw: Raw): Issue[] {
  const out: Issue[] = [];
  for (const e of errors) {
    const path = toSegments(e.instancePath, raw);
    const data = e.data;
    switch (e.keyword) {
      case 'additionalProperties': {
        const name = (e.params as { additionalProperty: string }).additionalProperty;
        const known = Object.keys(((e.parentSchema as SchemaNode | undefined)?.properties ?? {}) as object);
        const full = formatPath([...path, name]);
        const guess = suggest(name, known);
        out.push({
          path: [...path, name],
          at: 'key',
          message: `unknown field ${full}${guess ? `; did you mean ${guess}?` : known.length ? ` (known fields: ${known.join(', ')})` : ''}`,
        });
        break;
      }
      case 'required': {
        const name = (e.params as { missingProperty: string }).missingProperty;
        out.push({ path, at: 'parent', field: formatPath([...path, name]), message: `missing required field ${formatPath([...path, name])}` });
        break;
      }
      case 'type': {
        const t = (e.params as { type: string | string[] }).type;
        const names = (Array.isArray(t) ? t : String(t).split(',')).map((x) => TYPE_NAMES[x] ?? x);
        let hint = '';
        if (names.includes('true or false') && typeof data === 'string' && /^(yes|no|on|off|y|n|true|false)$/i.test(data)) {
          hint = ' (write true or false, unquoted)';
        }
        out.push({ path, message: `expected ${names.join(' or ')}, got ${describe(data)}${hint}` });
        break;
      }
      case 'enum': {
        const allowed = (e.params as { allowedValues: unknown[] }).allowedValues.map(String);
        const guess = typeof data === 'string' ? suggest(data, allowed) : undefined;
        out.push({
          path,
          message: `expected one of ${allowed.join(', ')}, got ${describe(data)}${guess ? `; did you mean ${guess}?` : ''}`,
        });
        break;
      }
      case 'pattern': {
        const pattern = (e.params as { pattern: string }).pattern;
        out.push({ path, message: `expected ${PATTERN_HINTS[pattern] ?? `a string matching ${pattern}`}, got ${describe(data)}` });
        break;
      }
      case 'minimum':
      case 'maximum':
      case 'exclusiveMinimum':
      case 'exclusiveMaximum': {
        const { comparison, limit } = e.params as { comparison: string; limit: number };
        out.push({ path, message: `must be ${comparison} ${limit}, got ${String(data)}` });
        break;
      }
      case 'minItems':
        out.push({ path, message: `must have at least ${(e.params as { limit: number }).limit} item(s)` });
        break;
      case 'minLength':
        out.push({ path, message: 'must not be empty' });
        break;
      case 'maxLength':
        out.push({ path, message: `must be at most ${(e.params as { limit: number }).limit} characters, got ${String(data).length}` });
        break;
      default:
        out.push({ path, message: e.message ?? `invalid (${e.keyword})` });
    }
  }
  return out;
}

function dedupe(issues: Issue[]): Issue[] {
  const seen = new Set<string>();
  return issues.filter((i) => {
    const key = `${i.field ?? formatPath(i.path)}\0${i.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

function toSegments(pointer: string, raw: unknown): Segment[] {
  if (pointer === '') return [];
  const out: Segment[] = [];
  let cur: unknown = raw;
  for (const part of pointer.slice(1).split('/')) {
    const key = part.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(cur)) {
      const i = Number(key);
      out.push(i);
      cur = cur[i];
    } else {
      out.push(key);
      cur = isPlainObject(cur) ? cur[key] : undefined;
    }
  }
  return out;
}

/** Closest candidate within a small edit distance (or equal ignoring case / dashes). */
export function suggest(word: string, candidates: readonly string[]): string | undefined {
  const norm = (s: string) => s.toLowerCase().replace(/[-_]/g, '');
  let best: string | undefined;
  let bestScore = Infinity;
  for (const c of candidates) {
    const d = norm(c) === norm(word) ? 0 : editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestScore) {
      best = c;
      bestScore = d;
    }
  }
  return best !== undefined && bestScore <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}

// ---- normalisation (the raw object already passed the structural schema) ----

type Raw = Record<string, unknown>;

class Normalizer {
  readonly issues: Issue[] = [];

  private fail(path: Segment[], message: string, at?: Issue['at']): void {
    this.issues.push({ path, message, ...(at ? { at } : {}) });
  }

  private duration(value: unknown, path: Segment[], fallbackMs: number, opts: { positive?: boolean } = {}): number {
    if (value === undefined) return fallbackMs;
    try {
      const ms = parseDuration(value);
      if (opts.positive && ms <= 0) {
        this.fail(path, `must be longer than 0, got ${JSON.stringify(value)}`);
        return fallbackMs;
      }
      return ms;
    } catch (err) {
      this.fail(path, (err as Error).message);
      return fallbackMs;
    }
  }

  private quantity(value: unknown, path: Segment[]): number | undefined {
    if (value === undefined) return undefined;
    try {
      return parseQuantity(value);
    } catch (err) {
      this.fail(path, (err as Error).message);
      return undefined;
    }
  }

  spec(raw: Raw): AppVersionSpec | undefined {
    const app = raw.app as string;
    const runtimes = (['servers', 'process', 'docker'] as const).filter((k) => raw[k] !== undefined);
    if (runtimes.length === 0) {
      this.issues.push({ path: ['spec'], at: 'parent', message: 'no runtime: give exactly one of servers, process or docker' });
    } else if (runtimes.length > 1) {
      this.fail(['spec', runtimes[1]!], `spec has both ${runtimes[0]} and ${runtimes[1]}; give exactly one runtime (servers, process or docker)`, 'key');
    }
    const hosts = [...new Set(((raw.hosts as string[] | undefined) ?? []).map((h) => h.toLowerCase()))];
    const transition = this.transition((raw.transition as Raw | undefined) ?? {});
    const failurePolicy = this.failurePolicy((raw.failurePolicy as Raw | undefined) ?? {});
    const healthCheck = this.healthCheck((raw.healthCheck as Raw | undefined) ?? {});
    const cookies = (raw.cookies as Raw | undefined) ?? {};
    const versionCookie = (cookies.version as string | undefined) ?? `molt-version-${app}`;
    const bucketCookie = (cookies.bucket as string | undefined) ?? `molt-bucket-${app}`;
    if (versionCookie === bucketCookie) this.fail(['spec', 'cookies', 'bucket'], 'the bucket cookie must be named differently from the version cookie');
    const runtime = runtimes.length === 1 ? this.runtime(runtimes[0]!, raw) : undefined;
    const keepFailed = (raw.keepFailed as boolean | undefined) ?? false;
    const preflight = raw.preflight === undefined ? undefined : this.preflight(raw.preflight as Raw, keepFailed);
    const analysis = this.analysis((raw.transition as Raw | undefined) ?? {});
    if (!runtime || this.issues.length > 0) return undefined;
    return {
      app,
      version: raw.version as string,
      hosts,
      default: (raw.default as boolean | undefined) ?? false,
      transition,
      failurePolicy,
      healthCheck,
      keepFailed,
      versionCookie,
      bucketCookie,
      runtime,
      ...(preflight ? { preflight } : {}),
      ...(analysis ? { analysis } : {}),
      callsPerInteraction: (((raw.transition as Raw | undefined) ?? {}).callsPerInteraction as number | undefined) ?? DEFAULT_CALLS_PER_INTERACTION,
    };
  }

  // ---- spec.preflight (issue 11) ----

  private preflight(raw: Raw, specKeepFailed: boolean): PreflightConfig {
    const p = (...k: Segment[]): Segment[] => ['spec', 'preflight', ...k];
    const d = PREFLIGHT_DEFAULTS;
    const replay = (raw.replay as Raw | undefined) ?? {};
    const shadow = raw.shadow as Raw | undefined;
    const compare = (raw.compare as Raw | undefined) ?? {};
    const pass = (raw.pass as Raw | undefined) ?? {};
    const redact = (raw.redact as Raw | undefined) ?? {};

    const requests = (replay.requests as number | undefined) ?? d.replayRequests;
    const setHeaders: Record<string, string> = {};
    const seen = new Map<string, string>();
    for (const [name, value] of Object.entries(((replay.headers as Raw | undefined)?.set as Record<string, string> | undefined) ?? {})) {
      const at = p('replay', 'headers', 'set', name);
      const lower = name.toLowerCase();
      if (!new RegExp(HEADER_NAME_PATTERN).test(name)) this.fail(at, `"${name}" is not a header name (letters, digits and !#$%&'*+-.^_\`|~)`, 'key');
      else if (UNSETTABLE_HEADERS.has(lower)) this.fail(at, `${lower} cannot be set: molt writes it itself`, 'key');
      else if (seen.has(lower)) this.fail(at, `header ${lower} is set twice (also as "${seen.get(lower)}")`, 'key');
      else if (/[\r\n\0]/.test(value)) this.fail(at, 'a header value must not contain line breaks or NUL');
      seen.set(lower, name);
      setHeaders[name] = value;
    }

    const percent = shadow ? ((shadow.percent as number | undefined) ?? d.shadowPercent) : 0;
    const minRequests = (shadow?.minRequests as number | undefined) ?? (shadow ? d.minRequests : Math.min(d.minRequests, requests));
    if (percent === 0 && minRequests > requests) {
      this.fail(p('shadow', 'minRequests'), `minRequests ${minRequests} can never be reached: replay.requests is ${requests} and no live requests are copied (shadow.percent 0)`);
    }

    const ignore = (compare.ignore as string[] | undefined) ?? [];
    ignore.forEach((pattern, i) => {
      try {
        parseIgnorePattern(pattern);
      } catch (err) {
        this.fail(p('compare', 'ignore', i), (err as Error).message);
      }
    });

    const hooks = ((raw.hooks as Raw[] | undefined) ?? []).map((h, i) => {
      const url = h.url as string;
      try {
        const parsed = new URL(url);
        if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new Error('not http(s)');
        if (parsed.hostname === '') throw new Error('no host');
      } catch {
        this.fail(p('hooks', i, 'url'), `expected an absolute http(s) URL such as "http://127.0.0.1:7000/check", got ${describe(url)}`);
      }
      return { url, timeoutMs: this.duration(h.timeout, p('hooks', i, 'timeout'), d.hookTimeoutMs, { positive: true }) };
    });

    const lowerSet = (v: unknown): string[] => [...new Set(((v as string[] | undefined) ?? []).map((x) => x.toLowerCase()))];
    return {
      maxDurationMs: this.duration(raw.maxDuration, p('maxDuration'), d.maxDurationMs, { positive: true }),
      onNoTraffic: (raw.onNoTraffic as PreflightConfig['onNoTraffic'] | undefined) ?? d.onNoTraffic,
      replay: { requests, setHeaders },
      shadow: { percent, minRequests },
      compare: {
        status: (compare.status as boolean | undefined) ?? d.compare.status,
        headers: compare.headers === undefined ? [...d.compare.headers] : lowerSet(compare.headers),
        body: (compare.body as PreflightConfig['compare']['body'] | undefined) ?? d.compare.body,
        ignore: [...new Set(ignore)],
        noise: (compare.noise as PreflightConfig['compare']['noise'] | undefined) ?? d.compare.noise,
      },
      pass: {
        maxMismatchRate: (pass.maxMismatchRate as number | undefined) ?? d.maxMismatchRate,
        maxErrorRate: (pass.maxErrorRate as number | undefined) ?? d.maxErrorRate,
        maxLatencyRatio: (pass.maxLatencyRatio as number | undefined) ?? d.maxLatencyRatio,
      },
      unsafeMethods: (raw.unsafeMethods as boolean | undefined) ?? false,
      hooks,
      keepFailed: (raw.keepFailed as boolean | undefined) ?? specKeepFailed,
      redact: {
        headers: lowerSet(redact.headers),
        queryParams: [...new Set((redact.queryParams as string[] | undefined) ?? [])],
        keep: [...new Set((redact.keep as string[] | undefined) ?? [])],
      },
    };
  }

  private transition(raw: Raw): TransitionConfig {
    const p = (k: string): Segment[] => ['spec', 'transition', k];
    const mode = (raw.mode as TransitionMode | undefined) ?? DEFAULT_TRANSITION.mode;
    const sessionMs = this.duration(raw.sessionTimeout, p('sessionTimeout'), DEFAULT_TRANSITION.sessionTimeoutSeconds * 1000, { positive: true });
    const out: TransitionConfig = {
      mode,
      sessionTimeoutSeconds: Math.max(1, Math.ceil(sessionMs / 1000)),
      duplicateUnsafeMethods: (raw.duplicateUnsafeMethods as boolean | undefined) ?? DEFAULT_TRANSITION.duplicateUnsafeMethods,
      maxDuplicateBodyBytes: DEFAULT_TRANSITION.maxDuplicateBodyBytes,
    };
    for (const [key, wanted] of [['percentagePerRequest', 'GRADUAL'], ['steps', 'GRADUAL'], ['duplicateUnsafeMethods', 'CONCURRENT'], ['maxDuplicateBodySize', 'CONCURRENT']] as const) {
      if (raw[key] !== undefined && mode !== wanted) this.fail(p(key), `${key} applies only to mode ${wanted} (mode is ${mode})`, 'key');
    }
    const body = this.quantity(raw.maxDuplicateBodySize, p('maxDuplicateBodySize'));
    if (body !== undefined) out.maxDuplicateBodyBytes = body;
    if (mode === 'GRADUAL') {
      if (raw.percentagePerRequest !== undefined && raw.steps !== undefined) {
        this.fail(p('steps'), 'give either percentagePerRequest or steps for GRADUAL, not both', 'key');
      } else if (raw.percentagePerRequest === undefined && raw.steps === undefined) {
        this.fail(p('mode'), 'mode GRADUAL needs percentagePerRequest (e.g. 1) or steps (e.g. [{weight: 10, pause: 5m}, {weight: 100}])');
      }
      if (raw.percentagePerRequest !== undefined) out.percentagePerRequest = raw.percentagePerRequest as number;
      if (raw.steps !== undefined) out.steps = this.steps(raw.steps as Raw[]);
    }
    return out;
  }

  /** spec.transition.analysis and the steps' own (issue 12): cross-field rules and each gate's config. */
  private analysis(raw: Raw): AppVersionSpec['analysis'] {
    const r = normalizeTransitionAnalysis(raw);
    for (const issue of r.issues) this.fail(issue.path, issue.message);
    if (r.issues.length > 0 || (!r.analysis && r.steps.every((s) => s === undefined))) return undefined;
    return { ...(r.analysis ? { analysis: r.analysis } : {}), steps: r.steps };
  }

  private steps(raw: Raw[]): GradualStep[] {
    const steps: GradualStep[] = [];
    raw.forEach((s, i) => {
      const path: Segment[] = ['spec', 'transition', 'steps', i];
      const weight = s.weight as number;
      const prev = steps[i - 1];
      if (prev && weight <= prev.weight) this.fail([...path, 'weight'], `weights must increase strictly: step ${i} has weight ${weight} after ${prev.weight}`);
      const step: GradualStep = { weight };
      if (s.pause !== undefined) step.pauseMs = this.duration(s.pause, [...path, 'pause'], 0);
      else if (i < raw.length - 1) this.issues.push({ path, at: 'parent', field: formatPath([...path, 'pause']), message: 'every step but the last needs a pause (how long to hold this weight)' });
      steps.push(step);
    });
    return steps;
  }

  private failurePolicy(raw: Raw): FailurePolicyConfig {
    const p = (k: string): Segment[] => ['spec', 'failurePolicy', k];
    const d = DEFAULT_FAILURE_POLICY;
    const codes = raw.failureStatusCodes as number[] | undefined;
    return {
      consecutiveFailures: (raw.consecutiveFailures as number | undefined) ?? d.consecutiveFailures,
      errorRateThreshold: (raw.errorRate as number | undefined) ?? d.errorRateThreshold,
      windowSeconds: this.duration(raw.window, p('window'), d.windowSeconds * 1000, { positive: true }) / 1000,
      minRequests: (raw.minRequests as number | undefined) ?? d.minRequests,
      failureStatusCodes: codes ? [...new Set(codes)].sort((a, b) => a - b) : [...d.failureStatusCodes],
      connectTimeoutMs: this.duration(raw.connectTimeout, p('connectTimeout'), d.connectTimeoutMs, { positive: true }),
      responseTimeoutMs: this.duration(raw.responseTimeout, p('responseTimeout'), d.responseTimeoutMs, { positive: true }),
    };
  }

  private healthCheck(raw: Raw): HealthCheck {
    const p = (k: string): Segment[] => ['spec', 'healthCheck', k];
    const d = DEFAULT_HEALTH_CHECK;
    const out: HealthCheck = {
      intervalMs: this.duration(raw.interval, p('interval'), d.intervalMs, { positive: true }),
      timeoutMs: this.duration(raw.timeout, p('timeout'), d.timeoutMs, { positive: true }),
      startupTimeoutMs: this.duration(raw.startupTimeout, p('startupTimeout'), d.startupTimeoutMs, { positive: true }),
    };
    if (raw.path !== undefined) out.path = raw.path as string;
    return out;
  }

  private runtime(kind: 'servers' | 'process' | 'docker', spec: Raw): Runtime | undefined {
    if (kind === 'servers') {
      const servers = (spec.servers as Raw[]).map((s) => ({ host: s.host as string, port: s.port as number }));
      const seen = new Set<string>();
      servers.forEach((s, i) => {
        const key = `${s.host.toLowerCase()}:${s.port}`;
        if (seen.has(key)) this.fail(['spec', 'servers', i], `server ${key} is listed twice`);
        seen.add(key);
      });
      return { kind, servers };
    }
    if (kind === 'process') {
      const raw = spec.process as Raw;
      const process = {
        command: raw.command as string,
        args: stringList(raw.args),
        env: stringMap(raw.env),
        replicas: (raw.replicas as number | undefined) ?? 1,
        ...(raw.workingDir !== undefined ? { workingDir: raw.workingDir as string } : {}),
      };
      return { kind, process };
    }
    const docker = this.docker(spec.docker as Raw);
    return docker && { kind, docker };
  }

  private docker(raw: Raw): DockerRuntime | undefined {
    const p = (...k: Segment[]): Segment[] => ['spec', 'docker', ...k];
    let image = raw.image as string;
    let tag = raw.tag as string | undefined;
    if (image.includes('@')) {
      this.fail(p('image'), 'image digests ("@sha256:…") are not supported; give image and tag');
    }
    const colon = image.lastIndexOf(':');
    if (colon > 0 && !image.slice(colon).includes('/')) {
      if (tag !== undefined) this.fail(p('image'), `image "${image}" already names a tag; put the tag in tag only`);
      else {
        tag = image.slice(colon + 1);
        image = image.slice(0, colon);
      }
    }
    const memory = this.quantity(raw.memory, p('memory'));
    if (memory !== undefined && memory < DOCKER_MIN_MEMORY) {
      this.fail(p('memory'), `memory ${memory} bytes is below Docker's minimum of 6Mi${memory > 0 && memory < 1024 * 1024 ? `; did you mean "${memory}Mi"?` : ''}`);
    }
    const portBindings = ((raw.portBindings as Raw[] | undefined) ?? []).map((b) => ({
      containerPort: b.containerPort as number,
      hostPort: b.hostPort as number,
      protocol: ((b.protocol as 'tcp' | 'udp' | undefined) ?? 'tcp'),
    }));
    const hostPorts = new Set<string>();
    portBindings.forEach((b, i) => {
      const key = `${b.hostPort}/${b.protocol}`;
      if (hostPorts.has(key)) this.fail(p('portBindings', i, 'hostPort'), `host port ${key} is bound twice`);
      hostPorts.add(key);
    });
    const out: DockerRuntime = {
      image,
      tag: tag ?? DEFAULT_DOCKER_TAG,
      containerPort: raw.containerPort as number,
      replicas: (raw.replicas as number | undefined) ?? 1,
      env: stringMap(raw.env),
      volumes: (raw.volumes as string[] | undefined) ?? [],
      binds: (raw.binds as string[] | undefined) ?? [],
      volumesFrom: (raw.volumesFrom as string[] | undefined) ?? [],
      portBindings,
      links: (raw.links as string[] | undefined) ?? [],
      privileged: (raw.privileged as boolean | undefined) ?? false,
      checkForNewImages: (raw.checkForNewImages as boolean | undefined) ?? false,
      imagePollIntervalMs: this.duration(raw.imagePollInterval, p('imagePollInterval'), DEFAULT_IMAGE_POLL_INTERVAL_MS, { positive: true }),
    };
    for (const k of ['name', 'workingDir', 'hostname', 'user'] as const) if (raw[k] !== undefined) out[k] = raw[k] as string;
    if (raw.entrypoint !== undefined) out.entrypoint = stringList(raw.entrypoint);
    if (raw.cmd !== undefined) out.cmd = stringList(raw.cmd);
    if (memory !== undefined) out.memory = memory;
    if (raw.cpuShares !== undefined) out.cpuShares = raw.cpuShares as number;
    return out;
  }
}

function stringList(v: unknown): string[] {
  return ((v as unknown[] | undefined) ?? []).map(String);
}

function stringMap(v: unknown): Record<string, string> {
  return Object.fromEntries(Object.entries((v as Raw | undefined) ?? {}).map(([k, x]) => [k, String(x)]));
}

function isPlainObject(v: unknown): v is Raw {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** sha256 of the canonical JSON (sorted keys) of the normalised spec, first 16 hex chars. */
export function specHash(spec: AppVersionSpec): string {
  return createHash('sha256').update(canonicalJson(spec)).digest('hex').slice(0, 16);
}

export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (isPlainObject(value)) {
    const keys = Object.keys(value).filter((k) => value[k] !== undefined).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

// ---- YAML locations ----

function offsetOf(doc: Document, issue: Issue): number {
  let node: unknown = doc.contents;
  let pair: Pair | undefined;
  let found = true;
  for (const seg of issue.path) {
    if (isAlias(node)) node = node.resolve(doc);
    if (isMap(node)) {
      pair = node.items.find((it) => (isScalar(it.key) ? it.key.value : it.key) === seg || String(isScalar(it.key) ? it.key.value : it.key) === String(seg));
      if (!pair) {
        found = false;
        break;
      }
      node = pair.value;
    } else if (isSeq(node) && typeof seg === 'number' && seg < node.items.length) {
      pair = undefined;
      node = node.items[seg];
    } else {
      found = false;
      break;
    }
  }
  const start = (n: unknown): number | undefined => (n && typeof n === 'object' && 'range' in n ? (n as Node).range?.[0] : undefined);
  if (found && issue.at === 'key' && pair) return start(pair.key) ?? 0;
  const hasValue = node !== null && node !== undefined && !(isScalar(node) && node.value === null && node.source === '');
  if (hasValue) return start(node) ?? start(pair?.key) ?? 0;
  return start(pair?.key) ?? start(doc.contents) ?? 0;
}

function firstLine(message: string): string {
  return message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
}

function byPosition(a: MoltError, b: MoltError): number {
  return (a.location.line ?? 0) - (b.location.line ?? 0) || (a.location.column ?? 0) - (b.location.column ?? 0);
}
