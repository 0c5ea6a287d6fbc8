// Preflight response comparison (pure, no I/O): the serving version's answer ("old") against the
// new version's answer ("new") to the same request.
//
//   - `parseIgnorePattern` reads the `compare.ignore` subset of JSONPath: `$`, `.name`, `['name']`,
//     `[n]`, `[*]`, and `header:NAME`. A pattern also covers everything below the node it names.
//   - `compareResponses` lists the differences: `status`, `header:<name>`, JSON paths such as
//     `$.items[3].price` (structural: key order is irrelevant, arrays compare by index), or `body`
//     when the bodies are compared as bytes.
//   - `NoiseModel` learns which (route, path) pairs differ between two answers of the *serving*
//     version (Diffy's primary/secondary idea); those differences are noise, not regressions.
//
// Every difference carries its concrete path and its general path (indices replaced by `[*]`),
// so counts and noise group `$.items[3].price` and `$.items[4].price` together.

import { MoltError } from './errors.js';
import { decodeContent } from './har.js';

// ---- ignore patterns ----

export type PathSegment =
  | { kind: 'key'; name: string }
  | { kind: 'index'; index: number }
  /** `[*]`: any array element or any object member. */
  | { kind: 'any' };

export type IgnorePattern =
  | { kind: 'json'; source: string; segments: PathSegment[] }
  /** `header:NAME`; name is lower-case. */
  | { kind: 'header'; source: string; name: string };

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const NAME_START = /[A-Za-z_$]/;
const NAME_CHAR = /[A-Za-z0-9_$-]/;

function patternError(source: string, at: number, expected: string): MoltError {
  const where = at >= source.length ? 'at the end' : `at character ${at + 1} (${JSON.stringify(source[at])})`;
  return new MoltError('MOLT_ERR_VALIDATION', `invalid ignore path ${JSON.stringify(source)}: expected ${expected} ${where}`);
}

/**
 * Parse one `compare.ignore` entry. Throws MoltError MOLT_ERR_VALIDATION (without a location; the
 * caller adds the field) naming what was expected at which character (1-based).
 */
export function parseIgnorePattern(source: string): IgnorePattern {
  if (typeof source !== 'string') {
    throw new MoltError('MOLT_ERR_VALIDATION', `invalid ignore path: expected a string such as "$.generatedAt" or "header:etag"`);
  }
  if (source.toLowerCase().startsWith('header:')) {
    const name = source.slice('header:'.length);
    if (!TOKEN.test(name)) throw patternError(source, 'header:'.length + firstNonToken(name), 'a header name (letters, digits and !#$%&\'*+-.^_`|~)');
    return { kind: 'header', source, name: name.toLowerCase() };
  }
  if (source[0] !== '$') throw patternError(source, 0, '"$" (a JSON path such as "$.items[*].updatedAt") or "header:NAME"');
  const segments: PathSegment[] = [];
  let i = 1;
  while (i < source.length) {
    const c = source[i];
    if (c === '.') {
      i++;
      if (i >= source.length || !NAME_START.test(source[i]!)) {
        throw patternError(source, i, 'a member name after "." (letters, digits, "_", "$" or "-", not starting with a digit; use [\'name\'] for others)');
      }
      const start = i;
      while (i < source.length && NAME_CHAR.test(source[i]!)) i++;
      segments.push({ kind: 'key', name: source.slice(start, i) });
    } else if (c === '[') {
      i++;
      const d = source[i];
      if (d === '*') {
        i++;
        segments.push({ kind: 'any' });
      } else if (d !== undefined && d >= '0' && d <= '9') {
        const start = i;
        while (i < source.length && source[i]! >= '0' && source[i]! <= '9') i++;
        const text = source.slice(start, i);
        if (text.length > 1 && text[0] === '0') throw patternError(source, start, 'an index without leading zeros');
        const index = Number(text);
        if (!Number.isSafeInteger(index)) throw patternError(source, start, 'a smaller index');
        segments.push({ kind: 'index', index });
      } else if (d === "'" || d === '"') {
        i++;
        let name = '';
        for (;;) {
          if (i >= source.length) throw patternError(source, i, `a closing ${d}`);
          const ch = source[i]!;
          if (ch === d) break;
          if (ch === '\\') {
            const next = source[i + 1];
            if (next !== d && next !== '\\') throw patternError(source, i + 1, `${d} or \\ after \\`);
            name += next;
            i += 2;
          } else {
            name += ch;
            i++;
          }
        }
        i++;
        segments.push({ kind: 'key', name });
      } else {
        throw patternError(source, i, 'an index, "*" or a quoted name after "["');
      }
      if (source[i] !== ']') throw patternError(source, i, '"]"');
      i++;
    } else {
      throw patternError(source, i, '"." or "["');
    }
  }
  return { kind: 'json', source, segments };
}

function firstNonToken(name: string): number {
  for (let i = 0; i < name.length; i++) if (!TOKEN.test(name[i]!)) return i;
  return name.length;
}

/** Parse every pattern; throws on the first invalid one. */
export function compileIgnore(sources: readonly string[]): IgnorePattern[] {
  return sources.map(parseIgnorePattern);
}

// ---- paths ----

const IDENT = /^[A-Za-z_$][A-Za-z0-9_$-]*$/;

/** `$.items[3].price`; names that are not identifiers as `['a b']`. */
export function formatJsonPath(segments: readonly PathSegment[]): string {
  let out = '$';
  for (const s of segments) {
    if (s.kind === 'any') out += '[*]';
    else if (s.kind === 'index') out += `[${s.index}]`;
    else if (IDENT.test(s.name)) out += `.${s.name}`;
    else out += `['${s.name.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}']`;
  }
  return out;
}

function generalise(segments: readonly PathSegment[]): PathSegment[] {
  return segments.map((s) => (s.kind === 'index' ? ANY : s));
}

const ANY: PathSegment = { kind: 'any' };

/** True when `pattern` names `path` or one of its ancestors. */
function covers(pattern: readonly PathSegment[], path: readonly PathSegment[]): boolean {
  if (pattern.length > path.length) return false;
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i]!;
    const s = path[i]!;
    if (p.kind === 'any') continue;
    if (p.kind === 'key' ? s.kind !== 'key' || s.name !== p.name : s.kind !== 'index' || s.index !== p.index) return false;
  }
  return true;
}

// ---- comparing responses ----

/** A response as captured for comparison. Header names as received (any case). */
export interface CapturedResponse {
  status: number;
  headers: ReadonlyArray<readonly [string, string]>;
  body: Buffer;
  /** The body was cut at the capture limit: it cannot be compared. */
  bodyTruncated: boolean;
}

export type BodyMode = 'auto' | 'bytes' | 'none';

export interface CompareOptions {
  /** Compare status codes. */
  status: boolean;
  /** Header names to compare (any case). */
  headers: readonly string[];
  /** auto: JSON structurally when both bodies are JSON, else bytes. bytes: always bytes. none: skip. */
  body: BodyMode;
  /** Compiled `compare.ignore` patterns. */
  ignore: readonly IgnorePattern[];
  /** Most differences listed per comparison (then `truncated` is set and comparing stops). Default 50. */
  maxDifferences?: number;
  /** Example values are cut to this many characters. Default 80. */
  maxValueChars?: number;
}

/** spec.preflight.compare as configured (JSON-safe: for the AppVersion type and the routing table). */
export interface PreflightCompareConfig {
  status: boolean;
  /** Lower-case header names. */
  headers: string[];
  body: BodyMode;
  /** `compare.ignore` as written; each parses with parseIgnorePattern. */
  ignore: string[];
  /** auto: learn noise from two answers of the serving version (NoiseModel); off. */
  noise: 'auto' | 'off';
}

export const DEFAULT_COMPARE_CONFIG: Readonly<PreflightCompareConfig> = Object.freeze({
  status: true,
  headers: ['content-type'],
  body: 'auto',
  ignore: [],
  noise: 'auto',
});

/** CompareOptions for a configuration (parses the ignore paths once; throws on an invalid one). */
export function compareOptions(cfg: PreflightCompareConfig, limits: { maxDifferences?: number; maxValueChars?: number } = {}): CompareOptions {
  return { status: cfg.status, headers: [...cfg.headers], body: cfg.body, ignore: compileIgnore(cfg.ignore), ...limits };
}

export interface Difference {
  /** `status`, `header:content-type`, `body`, or a JSON path such as `$.items[3].price`. */
  path: string;
  /** The same with array indices as `[*]` (`$.items[*].price`); equal to path for the others. */
  generalPath: string;
  /** Example values, cut to maxValueChars: JSON text, a header value, or "(absent)". */
  old: string;
  new: string;
}

export interface Comparison {
  differences: Difference[];
  /** There were more than maxDifferences differences; the rest are not listed. */
  truncated: boolean;
  /** How the bodies were compared: json, bytes, or why not: none (configured), status (statuses
   *  differ, the bodies are not comparable), truncated (a body was cut at the capture limit). */
  body: 'json' | 'bytes' | 'none' | 'status' | 'truncated';
}

export const ABSENT = '(absent)';
const DEFAULT_MAX_DIFFERENCES = 50;
const DEFAULT_MAX_VALUE_CHARS = 80;
/** Below this depth a differing JSON subtree is reported as one difference (no unbounded recursion). */
const MAX_DEPTH = 64;

/**
 * Compare two answers to the same request. Ignored paths (and headers) never appear. The bodies are
 * compared only when the statuses are equal (or status is not compared) and neither is truncated.
 */
export function compareResponses(old: CapturedResponse, neu: CapturedResponse, opts: CompareOptions): Comparison {
  const out = new Collector(opts);
  const headerIgnored = new Set<string>();
  const jsonIgnored: PathSegment[][] = [];
  for (const p of opts.ignore) {
    if (p.kind === 'header') headerIgnored.add(p.name);
    else jsonIgnored.push(p.segments);
  }
  if (opts.status && old.status !== neu.status) {
    out.add('status', 'status', String(old.status), String(neu.status));
  }
  for (const raw of opts.headers) {
    const name = raw.toLowerCase();
    if (headerIgnored.has(name)) continue;
    const a = headerValue(old.headers, name);
    const b = headerValue(neu.headers, name);
    if (a !== b) out.add(`header:${name}`, `header:${name}`, a ?? ABSENT, b ?? ABSENT);
  }
  let body: Comparison['body'];
  if (opts.body === 'none') body = 'none';
  else if (old.status !== neu.status) body = 'status';
  else if (old.bodyTruncated || neu.bodyTruncated) body = 'truncated';
  else {
    // Compare content, not transfer bytes: gzip of equal JSON differs in its header bytes, and a changed
    // field inside a compressed body would otherwise be learned as noise on `body`.
    const oldBody = content(old);
    const neuBody = content(neu);
    const a = opts.body === 'auto' ? jsonBody(old, oldBody) : NOT_JSON;
    const b = a === NOT_JSON ? NOT_JSON : jsonBody(neu, neuBody);
    if (a !== NOT_JSON && b !== NOT_JSON) {
      body = 'json';
      diffJson(a, b, [], 0, out, jsonIgnored);
    } else {
      body = 'bytes';
      if (!oldBody.equals(neuBody) && !jsonIgnored.some((p) => p.length === 0)) {
        const [x, y] = bytesExamples(oldBody, neuBody, out.maxChars);
        out.add('body', 'body', x, y);
      }
    }
  }
  return { differences: out.list, truncated: out.truncated, body };
}

class Collector {
  readonly list: Difference[] = [];
  truncated = false;
  readonly max: number;
  readonly maxChars: number;
  constructor(opts: CompareOptions) {
    this.max = opts.maxDifferences ?? DEFAULT_MAX_DIFFERENCES;
    this.maxChars = opts.maxValueChars ?? DEFAULT_MAX_VALUE_CHARS;
  }
  get full(): boolean {
    return this.list.length >= this.max;
  }
  add(path: string, generalPath: string, old: string, neu: string): void {
    if (this.full) {
      this.truncated = true;
      return;
    }
    this.list.push({ path, generalPath, old: cut(old, this.maxChars), new: cut(neu, this.maxChars) });
  }
}

/** All values of a header joined with ", " (RFC 9110 §5.3), trimmed; undefined when absent. */
function headerValue(headers: CapturedResponse['headers'], lower: string): string | undefined {
  let out: string | undefined;
  for (const [k, v] of headers) {
    if (k.length !== lower.length || k.toLowerCase() !== lower) continue;
    out = out === undefined ? v.trim() : `${out}, ${v.trim()}`;
  }
  return out;
}

const NOT_JSON = Symbol('not json');

function isJsonType(contentType: string | undefined): boolean {
  if (!contentType) return false;
  const media = contentType.split(';')[0]!.trim().toLowerCase();
  return media === 'application/json' || media.endsWith('+json') || media === 'text/json';
}

/** The body with its Content-Encoding undone (gzip, deflate, br), or as it is when it has none or
 *  cannot be decoded. */
function content(r: CapturedResponse): Buffer {
  const coding = headerValue(r.headers, 'content-encoding');
  return (coding !== undefined && r.body.length > 0 ? decodeContent(r.body, coding) : undefined) ?? r.body;
}

/** The parsed body when it is JSON (by content type, or an object/array by its first byte). */
function jsonBody(r: CapturedResponse, body: Buffer): unknown {
  const looksJson = isJsonType(headerValue(r.headers, 'content-type')) || startsLikeJson(body);
  if (!looksJson || body.length === 0) return NOT_JSON;
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    return NOT_JSON;
  }
}

function startsLikeJson(body: Buffer): boolean {
  for (const b of body) {
    if (b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d) continue;
    return b === 0x7b /* { */ || b === 0x5b /* [ */;
  }
  return false;
}

function typeOf(v: unknown): 'object' | 'array' | 'scalar' {
  if (Array.isArray(v)) return 'array';
  return v !== null && typeof v === 'object' ? 'object' : 'scalar';
}

function diffJson(a: unknown, b: unknown, path: PathSegment[], depth: number, out: Collector, ignored: PathSegment[][]): void {
  if (ignored.some((p) => covers(p, path))) return;
  const ta = typeOf(a);
  const tb = typeOf(b);
  if (ta !== tb || ta === 'scalar' || depth >= MAX_DEPTH) {
    if (ta === tb && (ta === 'scalar' ? a === b : jsonEqual(a, b))) return;
    out.add(formatJsonPath(path), formatJsonPath(generalise(path)), render(a, out.maxChars), render(b, out.maxChars));
    return;
  }
  if (ta === 'array') {
    const x = a as unknown[];
    const y = b as unknown[];
    const n = Math.max(x.length, y.length);
    for (let i = 0; i < n; i++) {
      if (out.truncated) return;
      path.push({ kind: 'index', index: i });
      if (i >= x.length || i >= y.length) {
        if (!ignored.some((p) => covers(p, path))) {
          out.add(formatJsonPath(path), formatJsonPath(generalise(path)), i < x.length ? render(x[i], out.maxChars) : ABSENT, i < y.length ? render(y[i], out.maxChars) : ABSENT);
        }
      } else {
        diffJson(x[i], y[i], path, depth + 1, out, ignored);
      }
      path.pop();
    }
    return;
  }
  const x = a as Record<string, unknown>;
  const y = b as Record<string, unknown>;
  const keys = new Set([...Object.keys(x), ...Object.keys(y)]);
  for (const k of [...keys].sort()) {
    if (out.truncated) return;
    const inX = Object.prototype.hasOwnProperty.call(x, k);
    const inY = Object.prototype.hasOwnProperty.call(y, k);
    path.push({ kind: 'key', name: k });
    if (inX && inY) diffJson(x[k], y[k], path, depth + 1, out, ignored);
    else if (!ignored.some((p) => covers(p, path))) {
      out.add(formatJsonPath(path), formatJsonPath(generalise(path)), inX ? render(x[k], out.maxChars) : ABSENT, inY ? render(y[k], out.maxChars) : ABSENT);
    }
    path.pop();
  }
}

/** Structural equality (object key order ignored), iterative: no recursion limit. */
function jsonEqual(a: unknown, b: unknown): boolean {
  const stack: unknown[] = [a, b];
  while (stack.length > 0) {
    const y = stack.pop();
    const x = stack.pop();
    const t = typeOf(x);
    if (t !== typeOf(y)) return false;
    if (t === 'scalar') {
      if (x !== y) return false;
    } else if (t === 'array') {
      const xa = x as unknown[];
      const ya = y as unknown[];
      if (xa.length !== ya.length) return false;
      for (let i = 0; i < xa.length; i++) stack.push(xa[i], ya[i]);
    } else {
      const xo = x as Record<string, unknown>;
      const yo = y as Record<string, unknown>;
      const keys = Object.keys(xo);
      if (keys.length !== Object.keys(yo).length) return false;
      for (const k of keys) {
        if (!Object.prototype.hasOwnProperty.call(yo, k)) return false;
        stack.push(xo[k], yo[k]);
      }
    }
  }
  return true;
}

/** Compact JSON text (keys in their order), iterative, stopping after `max` characters. */
function render(v: unknown, max: number): string {
  let out = '';
  type Frame = { text: string } | { value: unknown };
  const stack: Frame[] = [{ value: v }];
  while (stack.length > 0 && out.length <= max) {
    const f = stack.pop()!;
    if ('text' in f) {
      out += f.text;
      continue;
    }
    const x = f.value;
    if (Array.isArray(x)) {
      stack.push({ text: ']' });
      for (let i = x.length - 1; i >= 0; i--) {
        stack.push({ value: x[i] });
        if (i > 0) stack.push({ text: ',' });
      }
      out += '[';
    } else if (x !== null && typeof x === 'object') {
      const keys = Object.keys(x);
      stack.push({ text: '}' });
      for (let i = keys.length - 1; i >= 0; i--) {
        stack.push({ value: (x as Record<string, unknown>)[keys[i]!] });
        stack.push({ text: `${JSON.stringify(keys[i])}:` });
        if (i > 0) stack.push({ text: ',' });
      }
      out += '{';
    } else {
      out += JSON.stringify(x) ?? 'null';
    }
  }
  return out;
}

function cut(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, Math.max(0, max - 1))}…`;
}

/** Text around the first differing byte (or a size note for binary bodies). */
function bytesExamples(a: Buffer, b: Buffer, max: number): [string, string] {
  let i = 0;
  const n = Math.min(a.length, b.length);
  while (i < n && a[i] === b[i]) i++;
  const show = (buf: Buffer): string => {
    if (buf.length === 0) return '(empty)';
    if (!isText(buf)) return `(${buf.length} bytes, binary, first difference at byte ${i})`;
    const from = Math.max(0, i - 20);
    const text = buf.subarray(from, from + max * 4).toString('utf8');
    return `${from > 0 ? '…' : ''}${JSON.stringify(text).slice(1, -1)}`;
  };
  return [show(a), show(b)];
}

function isText(buf: Buffer): boolean {
  const sample = buf.subarray(0, 512);
  for (const c of sample) if (c < 0x09 || (c > 0x0d && c < 0x20) || c === 0x7f) return false;
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(sample.length < buf.length ? trimPartial(sample) : sample);
    return true;
  } catch {
    return false;
  }
}

/** Drop a multi-byte UTF-8 sequence cut at the end of a sample. */
function trimPartial(buf: Buffer): Buffer {
  let end = buf.length;
  for (let k = 1; k <= 3 && end - k >= 0; k++) {
    const c = buf[end - k]!;
    if ((c & 0xc0) === 0x80) continue;
    if (c >= 0xc0) end -= k;
    break;
  }
  return buf.subarray(0, end);
}

// ---- route keys ----

/** "GET /items": method and path without query (absolute-form targets reduced to their path). */
export function routeKey(method: string, target: string): string {
  let path = target;
  if (!path.startsWith('/')) {
    const scheme = path.indexOf('://');
    if (scheme > 0) {
      const slash = path.indexOf('/', scheme + 3);
      path = slash < 0 ? '/' : path.slice(slash);
    }
  }
  const q = path.search(/[?#]/);
  if (q >= 0) path = path.slice(0, q);
  return `${method.toUpperCase()} ${path}`;
}

// ---- noise ----

export interface NoiseModelLimits {
  /** Route keys remembered; the least recently used is forgotten beyond this. Default 1000. */
  maxRoutes?: number;
  /** Noisy paths remembered per route; later ones are not learned (and counted). Default 64. */
  maxPathsPerRoute?: number;
}

/**
 * Paths that differ between two answers of the serving version to the same request. A difference
 * at such a path (or below it) between old and new is noise. Bounded: maxRoutes route keys (LRU),
 * maxPathsPerRoute general paths each (first seen).
 */
export class NoiseModel {
  readonly #routes = new Map<string, Set<string>>();
  readonly #maxRoutes: number;
  readonly #maxPaths: number;
  #overflow = 0;

  constructor(limits: NoiseModelLimits = {}) {
    this.#maxRoutes = limits.maxRoutes ?? 1000;
    this.#maxPaths = limits.maxPathsPerRoute ?? 64;
  }

  /**
   * Learn from the differences between two answers of the serving version. A status difference is
   * never learned: a flaky status on the serving side must not hide a broken new version.
   */
  learn(route: string, diffs: readonly Difference[]): void {
    diffs = diffs.filter((d) => d.generalPath !== 'status');
    if (diffs.length === 0) return;
    let paths = this.#routes.get(route);
    if (paths) {
      this.#routes.delete(route);
    } else {
      paths = new Set();
      if (this.#routes.size >= this.#maxRoutes) this.#routes.delete(this.#routes.keys().next().value!);
    }
    this.#routes.set(route, paths);
    for (const d of diffs) {
      if (paths.has(d.generalPath)) continue;
      if (paths.size >= this.#maxPaths) {
        this.#overflow++;
        continue;
      }
      paths.add(d.generalPath);
    }
  }

  /** Is a difference at this path (concrete or general) noise for this route? */
  isNoise(route: string, path: string): boolean {
    const paths = this.#routes.get(route);
    if (!paths || paths.size === 0) return false;
    const general = path.replace(/\[\d+\]/g, '[*]');
    if (paths.has(general)) return true;
    for (const p of paths) if (isPrefixPath(p, general)) return true;
    return false;
  }

  /** The differences that are not noise. */
  filter(route: string, diffs: readonly Difference[]): Difference[] {
    return diffs.filter((d) => !this.isNoise(route, d.generalPath));
  }

  /** For status and tests: routes known, noisy paths in total, paths not learned because a route was full. */
  get size(): { routes: number; paths: number; overflow: number } {
    let paths = 0;
    for (const s of this.#routes.values()) paths += s.size;
    return { routes: this.#routes.size, paths, overflow: this.#overflow };
  }

  /** Noisy general paths per route (for status and merging workers' models). */
  toJSON(): Record<string, string[]> {
    return Object.fromEntries([...this.#routes].map(([k, v]) => [k, [...v]]));
  }

  /** Add another model's knowledge (e.g. another sidecar worker's). */
  merge(other: NoiseModel | Record<string, string[]>): void {
    const entries = other instanceof NoiseModel ? other.toJSON() : other;
    for (const [route, paths] of Object.entries(entries)) {
      this.learn(route, paths.map((p) => ({ path: p, generalPath: p, old: '', new: '' })));
    }
  }
}

/** `$.meta` covers `$.meta.x` and `$.meta[*]`; `status`/`body`/`header:x` cover only themselves. */
function isPrefixPath(prefix: string, path: string): boolean {
  if (!prefix.startsWith('$') || path.length <= prefix.length || !path.startsWith(prefix)) return false;
  const next = path[prefix.length];
  return next === '.' || next === '[';
}
