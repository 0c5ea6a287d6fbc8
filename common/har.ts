// Recorded exchanges (what the ingress ring keeps per request) and their HAR 1.2 form
// (http://www.softwareishard.com/blog/har-12-spec/), for `molt traffic export` and
// `molt traffic replay`. Pure: no I/O.
//
//   toHar(exchanges, { host })     -> HAR 1.2 object (JSON.stringify it)
//   fromHar(json)                  -> exchanges, or MoltValidationErrors naming the field
//                                     ("log.entries[3].request.url: expected an absolute http(s) URL")
//   redactExchange(ex, opts)       -> a copy with secrets replaced by "[REDACTED]" and hop-by-hop
//                                     headers dropped (apply before anything leaves the process)
//
// Bodies: text (valid UTF-8 without control bytes) is written as-is; anything else as base64 with
// `encoding: "base64"` (response content, per the spec) or `_encoding: "base64"` (request postData,
// which the spec gives no encoding; custom fields start with "_"). A body cut at the capture limit
// carries `_truncated: true` and its full size where known.
//
// Content-Encoding: HAR's `content.text` is the *decoded* body (what browsers write, and what HAR
// readers such as playwright's routeFromHAR serve), with the coding still named in the headers and
// `content.compression` = bytes saved. The ingress records bytes as they travelled, so toHar decodes
// gzip / deflate / br bodies; one it cannot decode (cut at the capture limit, corrupt, an unknown
// coding, larger than MAX_DECODED_BYTES) is written as it travelled, base64, with
// `_contentEncoded: true`, and fromHar decodes such a body back when it can.
//
// Reading HARs written by browsers (Chromium / playwright recordHar, Firefox, Chrome DevTools):
// custom `_` fields are ignored; status 0 or -1 = no response; `content._file` (playwright's
// `content: 'attach'`) is read through `FromHarOptions.loadFile`; `postData` may be absent, carry
// only `params`, or its own `encoding`.

import zlib from 'node:zlib';
import { MoltError, MoltValidationErrors } from './errors.js';

export type HeaderPairs = Array<[string, string]>;

export interface RecordedRequest {
  method: string;
  /** As received: origin-form "/path?query" (or absolute-form, or "*"). */
  target: string;
  /** "1.1" or "1.0". */
  httpVersion: string;
  headers: HeaderPairs;
  /** Up to the capture limit. */
  body: Buffer;
  bodyTruncated: boolean;
  /** Full body size when known (it may exceed body.length when truncated). */
  bodySize?: number;
}

export interface RecordedResponse {
  status: number;
  statusText?: string;
  httpVersion: string;
  headers: HeaderPairs;
  body: Buffer;
  bodyTruncated: boolean;
  bodySize?: number;
}

export interface RecordedExchange {
  /** Epoch milliseconds when the request head was received. */
  startedAt: number;
  request: RecordedRequest;
  /** Absent when no response was received (upstream error, client gone). */
  response?: RecordedResponse;
  /** Milliseconds; -1 (or absent) where unknown. send: request forwarded; wait: until the response
   *  head; receive: the response body. */
  timings: { sendMs?: number; waitMs: number; receiveMs: number };
}

// ---- redaction ----

export const REDACTED = '[REDACTED]';
/** Redacted unless listed in `keep`. */
export const DEFAULT_REDACTED_HEADERS: readonly string[] = ['authorization', 'proxy-authorization', 'cookie', 'set-cookie'];
/** Never recorded nor exported: they describe one connection, not the request (RFC 9110 §7.6.1). */
export const HOP_BY_HOP_HEADERS: readonly string[] = [
  'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade',
];

export interface RedactOptions {
  /** More header names to redact (any case). */
  headers?: readonly string[];
  /** Query parameter names whose values are redacted (exact names). */
  queryParams?: readonly string[];
  /** Header or query parameter names to keep even though redacted by default or listed above. */
  keep?: readonly string[];
}

/** Compiled RedactOptions; build once (per app), apply per exchange. */
export class Redactor {
  readonly #headers: Set<string>;
  readonly #query: Set<string>;

  constructor(opts: RedactOptions = {}) {
    const keep = new Set((opts.keep ?? []).map((k) => k.toLowerCase()));
    const keepExact = new Set(opts.keep ?? []);
    this.#headers = new Set([...DEFAULT_REDACTED_HEADERS, ...(opts.headers ?? []).map((h) => h.toLowerCase())].filter((h) => !keep.has(h)));
    this.#query = new Set((opts.queryParams ?? []).filter((q) => !keepExact.has(q)));
  }

  headers(pairs: readonly (readonly [string, string])[]): HeaderPairs {
    const connectionNamed = new Set<string>();
    for (const [k, v] of pairs) {
      if (k.toLowerCase() === 'connection') for (const t of v.split(',')) connectionNamed.add(t.trim().toLowerCase());
    }
    const out: HeaderPairs = [];
    for (const [k, v] of pairs) {
      const lower = k.toLowerCase();
      if (HOP_BY_HOP_HEADERS.includes(lower) || connectionNamed.has(lower)) continue;
      out.push([k, this.#headers.has(lower) ? REDACTED : v]);
    }
    return out;
  }

  target(target: string): string {
    if (this.#query.size === 0) return target;
    const q = target.indexOf('?');
    if (q < 0) return target;
    const hash = target.indexOf('#', q);
    const query = target.slice(q + 1, hash < 0 ? undefined : hash);
    const parts = query.split('&').map((part) => {
      const eq = part.indexOf('=');
      const rawName = eq < 0 ? part : part.slice(0, eq);
      let name = rawName;
      try {
        name = decodeURIComponent(rawName.replace(/\+/g, ' '));
      } catch {
        // keep the raw name
      }
      return this.#query.has(name) ? `${rawName}=${REDACTED}` : part;
    });
    return `${target.slice(0, q + 1)}${parts.join('&')}${hash < 0 ? '' : target.slice(hash)}`;
  }

  exchange(ex: RecordedExchange): RecordedExchange {
    const out: RecordedExchange = {
      startedAt: ex.startedAt,
      request: { ...ex.request, target: this.target(ex.request.target), headers: this.headers(ex.request.headers) },
      timings: { ...ex.timings },
    };
    if (ex.response) out.response = { ...ex.response, headers: this.headers(ex.response.headers) };
    return out;
  }
}

/** A copy of `ex` with Authorization, Cookie, Set-Cookie (and configured headers and query
 *  parameters) replaced by "[REDACTED]", and hop-by-hop headers dropped. Bodies are kept. */
export function redactExchange(ex: RecordedExchange, opts: RedactOptions = {}): RecordedExchange {
  return new Redactor(opts).exchange(ex);
}

// ---- HAR 1.2 types (the parts molt writes and reads) ----

export interface HarNameValue {
  name: string;
  value: string;
  comment?: string;
}

export interface HarCookie extends HarNameValue {
  path?: string;
  domain?: string;
  expires?: string;
  httpOnly?: boolean;
  secure?: boolean;
}

export interface HarPostData {
  mimeType: string;
  params: HarNameValue[];
  text: string;
  _encoding?: 'base64';
  _truncated?: boolean;
}

/** Larger decoded bodies stay content-encoded in a HAR (a small gzip can expand enormously). */
export const MAX_DECODED_BYTES = 16 * 1024 * 1024;

export interface HarRequest {
  method: string;
  url: string;
  httpVersion: string;
  cookies: HarCookie[];
  headers: HarNameValue[];
  queryString: HarNameValue[];
  postData?: HarPostData;
  headersSize: number;
  bodySize: number;
}

export interface HarContent {
  size: number;
  compression?: number;
  mimeType: string;
  text?: string;
  encoding?: string;
  _truncated?: boolean;
  /** The text is still content-encoded (Content-Encoding header): it could not be decoded. */
  _contentEncoded?: boolean;
}

export interface HarResponse {
  status: number;
  statusText: string;
  httpVersion: string;
  cookies: HarCookie[];
  headers: HarNameValue[];
  content: HarContent;
  redirectURL: string;
  headersSize: number;
  bodySize: number;
}

export interface HarTimings {
  blocked?: number;
  dns?: number;
  connect?: number;
  send: number;
  wait: number;
  receive: number;
  ssl?: number;
}

export interface HarEntry {
  startedDateTime: string;
  time: number;
  request: HarRequest;
  response: HarResponse;
  cache: Record<string, never>;
  timings: HarTimings;
  _noResponse?: boolean;
}

export interface Har {
  log: {
    version: '1.2';
    creator: { name: string; version: string };
    entries: HarEntry[];
  };
}

// ---- export ----

export interface ToHarOptions {
  /** Host for URLs when a request has no Host header (e.g. the app's first host). */
  host: string;
  /** Default "http". */
  scheme?: 'http' | 'https';
  /** creator.version; default "0". */
  creatorVersion?: string;
}

/** HAR 1.2 for these exchanges (oldest first, as given). Redact them first. */
export function toHar(exchanges: readonly RecordedExchange[], opts: ToHarOptions): Har {
  return {
    log: {
      version: '1.2',
      creator: { name: 'molt', version: opts.creatorVersion ?? '0' },
      entries: exchanges.map((ex) => toEntry(ex, opts)),
    },
  };
}

function toEntry(ex: RecordedExchange, opts: ToHarOptions): HarEntry {
  const req = ex.request;
  const url = absoluteUrl(req, opts);
  const reqType = header(req.headers, 'content-type') ?? '';
  const request: HarRequest = {
    method: req.method,
    url,
    httpVersion: `HTTP/${req.httpVersion}`,
    cookies: requestCookies(header(req.headers, 'cookie')),
    headers: req.headers.map(([name, value]) => ({ name, value })),
    queryString: queryString(url),
    headersSize: -1,
    bodySize: req.bodyTruncated ? (req.bodySize ?? -1) : req.body.length,
  };
  if (req.body.length > 0 || req.bodyTruncated) {
    const text = asText(req.body);
    request.postData = {
      mimeType: reqType,
      params: [],
      text: text ?? req.body.toString('base64'),
      ...(text === undefined ? { _encoding: 'base64' as const } : {}),
      ...(req.bodyTruncated ? { _truncated: true } : {}),
    };
  }
  const res = ex.response;
  const t = ex.timings;
  const timings: HarTimings = {
    blocked: -1,
    dns: -1,
    connect: -1,
    send: nonNegative(t.sendMs ?? 0),
    wait: nonNegative(t.waitMs),
    receive: nonNegative(t.receiveMs),
    ssl: -1,
  };
  const entry: HarEntry = {
    startedDateTime: new Date(ex.startedAt).toISOString(),
    time: timings.send + timings.wait + timings.receive,
    request,
    response: res ? toResponse(res) : noResponse(),
    cache: {},
    timings,
  };
  if (!res) entry._noResponse = true;
  return entry;
}

function toResponse(res: RecordedResponse): HarResponse {
  const coding = header(res.headers, 'content-encoding');
  const decoded = coding && !res.bodyTruncated && res.body.length > 0 ? decodeContent(res.body, coding) : undefined;
  const body = decoded ?? res.body;
  const text = asText(body);
  const content: HarContent = {
    size: decoded ? decoded.length : res.bodyTruncated ? (res.bodySize ?? res.body.length) : res.body.length,
    mimeType: header(res.headers, 'content-type') ?? '',
  };
  if (decoded) content.compression = decoded.length - res.body.length;
  if (body.length > 0) {
    content.text = text ?? body.toString('base64');
    if (text === undefined) content.encoding = 'base64';
  }
  if (res.bodyTruncated) content._truncated = true;
  if (coding && !decoded && res.body.length > 0 && !/^\s*identity\s*$/i.test(coding)) content._contentEncoded = true;
  return {
    status: res.status,
    statusText: res.statusText ?? '',
    httpVersion: `HTTP/${res.httpVersion}`,
    cookies: responseCookies(res.headers),
    headers: res.headers.map(([name, value]) => ({ name, value })),
    content,
    redirectURL: header(res.headers, 'location') ?? '',
    headersSize: -1,
    bodySize: res.bodyTruncated ? (res.bodySize ?? -1) : res.body.length,
  };
}

/**
 * The body with its Content-Encoding undone (codings applied in order, undone in reverse: "gzip, br"),
 * or undefined when a coding is unknown, the data is corrupt or the result exceeds MAX_DECODED_BYTES.
 */
export function decodeContent(body: Buffer, contentEncoding: string): Buffer | undefined {
  const codings = contentEncoding.split(',').map((c) => c.trim().toLowerCase()).filter((c) => c !== '' && c !== 'identity');
  if (codings.length === 0) return undefined;
  let out = body;
  try {
    for (const c of codings.reverse()) {
      const opts = { maxOutputLength: MAX_DECODED_BYTES };
      if (c === 'gzip' || c === 'x-gzip') out = zlib.gunzipSync(out, opts);
      else if (c === 'br') out = zlib.brotliDecompressSync(out, opts);
      else if (c === 'deflate') {
        // RFC 9110 "deflate" is zlib-wrapped; some servers send raw deflate.
        try {
          out = zlib.inflateSync(out, opts);
        } catch {
          out = zlib.inflateRawSync(out, opts);
        }
      } else return undefined;
    }
  } catch {
    return undefined;
  }
  return out;
}

/** HAR has no "no response"; browsers write status 0 for aborted requests, and so do we. */
function noResponse(): HarResponse {
  return {
    status: 0,
    statusText: '',
    httpVersion: '',
    cookies: [],
    headers: [],
    content: { size: 0, mimeType: '' },
    redirectURL: '',
    headersSize: -1,
    bodySize: -1,
  };
}

function nonNegative(n: number): number {
  return Number.isFinite(n) && n >= 0 ? Math.round(n * 1000) / 1000 : 0;
}

function absoluteUrl(req: RecordedRequest, opts: ToHarOptions): string {
  if (/^https?:\/\//i.test(req.target)) return req.target;
  const host = header(req.headers, 'host') || opts.host;
  const path = req.target.startsWith('/') ? req.target : `/${req.target === '*' ? '' : req.target}`;
  return `${opts.scheme ?? 'http'}://${host}${path}`;
}

function header(pairs: readonly (readonly [string, string])[], lower: string): string | undefined {
  for (const [k, v] of pairs) if (k.toLowerCase() === lower) return v;
  return undefined;
}

function queryString(url: string): HarNameValue[] {
  const q = url.indexOf('?');
  if (q < 0) return [];
  const hash = url.indexOf('#', q);
  const out: HarNameValue[] = [];
  for (const part of url.slice(q + 1, hash < 0 ? undefined : hash).split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    out.push({ name: decode(eq < 0 ? part : part.slice(0, eq)), value: eq < 0 ? '' : decode(part.slice(eq + 1)) });
  }
  return out;
}

function decode(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return s;
  }
}

function requestCookies(cookie: string | undefined): HarCookie[] {
  if (!cookie || cookie === REDACTED) return [];
  const out: HarCookie[] = [];
  for (const part of cookie.split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    out.push({ name: part.slice(0, eq).trim(), value: part.slice(eq + 1).trim() });
  }
  return out;
}

function responseCookies(headers: readonly (readonly [string, string])[]): HarCookie[] {
  const out: HarCookie[] = [];
  for (const [k, v] of headers) {
    if (k.toLowerCase() !== 'set-cookie' || v === REDACTED) continue;
    const [pair, ...attrs] = v.split(';');
    const eq = pair!.indexOf('=');
    if (eq <= 0) continue;
    const c: HarCookie = { name: pair!.slice(0, eq).trim(), value: pair!.slice(eq + 1).trim() };
    for (const a of attrs) {
      const [name, ...rest] = a.split('=');
      const key = name!.trim().toLowerCase();
      const val = rest.join('=').trim();
      if (key === 'path') c.path = val;
      else if (key === 'domain') c.domain = val;
      else if (key === 'expires') {
        const d = new Date(val);
        if (!Number.isNaN(d.getTime())) c.expires = d.toISOString();
      } else if (key === 'httponly') c.httpOnly = true;
      else if (key === 'secure') c.secure = true;
    }
    out.push(c);
  }
  return out;
}

/** The text when the body is valid UTF-8 without control bytes (tab, CR, LF allowed). */
function asText(body: Buffer): string | undefined {
  if (body.length === 0) return '';
  for (const c of body) if (c < 0x09 || (c > 0x0d && c < 0x20) || c === 0x0b || c === 0x0c || c === 0x7f) return undefined;
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(body);
  } catch {
    return undefined;
  }
}

// ---- import ----

export interface FromHarOptions {
  /** At most this many entries (default 100 000); more is an error. */
  maxEntries?: number;
  /** Reported errors stop after this many (default 20). */
  maxErrors?: number;
  /** Reads a body kept outside the HAR (`content._file` / `postData._file`, playwright's
   *  `content: 'attach'`), relative to the HAR. Without it such a body counts as not saved. Throw a
   *  MoltError to report a problem (it is reported with the field path). */
  loadFile?: (name: string) => Buffer;
}

const METHOD = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const HEADER_NAME = METHOD;
/** Pseudo-headers (":authority") of HTTP/2 captures and these never go into a replayed request. */
const NOT_REPLAYED = new Set([...HOP_BY_HOP_HEADERS, 'content-length']);

/**
 * Exchanges from a parsed HAR document (HAR 1.2; 1.1 documents are read too). Every problem is
 * reported with its field path; throws MoltValidationErrors. Requests keep only what can be replayed
 * over HTTP/1.1: pseudo-headers, hop-by-hop headers and Content-Length are dropped, a missing Host is
 * taken from the URL. A response with status 0 (browsers: aborted) is absent; a response body HAR does
 * not contain (no `text`, but a size) is marked truncated so it is never compared.
 */
export function fromHar(json: unknown, opts: FromHarOptions = {}): RecordedExchange[] {
  const problems = new Problems(opts.maxErrors ?? 20);
  const fail = problems.fail;
  const done = (): never => {
    const more = problems.count - problems.errors.length;
    const list = more > 0 ? [...problems.errors, new MoltError('MOLT_ERR_VALIDATION', `${more} more problem(s) not shown`, { path: 'log.entries' })] : problems.errors;
    throw new MoltValidationErrors(list);
  };
  if (!isObject(json) || !isObject(json.log)) {
    fail('log', 'expected a HAR document: an object with a "log" object');
    return done();
  }
  const log = json.log;
  if (typeof log.version !== 'string' || !/^1\.[12]$/.test(log.version)) fail('log.version', `expected "1.2", got ${show(log.version)}`);
  if (!Array.isArray(log.entries)) {
    fail('log.entries', `expected a list of entries, got ${show(log.entries)}`);
    return done();
  }
  const max = opts.maxEntries ?? 100_000;
  if (log.entries.length > max) {
    fail('log.entries', `too many entries: ${log.entries.length} (at most ${max})`);
    return done();
  }
  const out: RecordedExchange[] = [];
  log.entries.forEach((entry: unknown, i: number) => {
    const at = `log.entries[${i}]`;
    const ex = readEntry(entry, at, problems, opts.loadFile);
    if (ex) out.push(ex);
  });
  if (problems.count > 0) done();
  return out;
}

type Fail = (path: string, message: string) => void;

/** Collects errors (at most `max` kept) and counts them all. */
class Problems {
  readonly errors: MoltError[] = [];
  count = 0;
  constructor(private readonly max: number) {}
  readonly fail: Fail = (path, message) => {
    this.count++;
    if (this.errors.length < this.max) this.errors.push(new MoltError('MOLT_ERR_VALIDATION', message, { path }));
  };
}

type LoadFile = FromHarOptions['loadFile'];

function readEntry(entry: unknown, at: string, problems: Problems, loadFile: LoadFile): RecordedExchange | undefined {
  const fail = problems.fail;
  if (!isObject(entry)) {
    fail(at, `expected an entry object, got ${show(entry)}`);
    return undefined;
  }
  const before = problems.count;
  const started = typeof entry.startedDateTime === 'string' ? Date.parse(entry.startedDateTime) : NaN;
  if (Number.isNaN(started)) fail(`${at}.startedDateTime`, `expected an ISO 8601 date, got ${show(entry.startedDateTime)}`);
  const request = readRequest(entry.request, `${at}.request`, fail, loadFile);
  const response = readResponse(entry.response, `${at}.response`, fail, loadFile);
  const t = isObject(entry.timings) ? entry.timings : {};
  if (!isObject(entry.timings)) fail(`${at}.timings`, `expected a timings object, got ${show(entry.timings)}`);
  if (!request || problems.count !== before) return undefined;
  const ms = (v: unknown): number => (typeof v === 'number' && v >= 0 ? v : -1);
  const ex: RecordedExchange = {
    startedAt: started,
    request,
    timings: { sendMs: ms(t.send), waitMs: ms(t.wait), receiveMs: ms(t.receive) },
  };
  if (response) ex.response = response;
  return ex;
}

/** A body kept in a file next to the HAR; undefined (not saved) without a loader. */
function attached(file: unknown, at: string, bad: Fail, loadFile: LoadFile): Buffer | undefined {
  if (typeof file !== 'string' || file === '') {
    bad(at, `expected a file name, got ${show(file)}`);
    return undefined;
  }
  if (!loadFile) return undefined;
  try {
    return loadFile(file);
  } catch (err) {
    bad(at, (err as Error).message);
    return undefined;
  }
}

function readRequest(raw: unknown, at: string, fail: Fail, loadFile: LoadFile): RecordedRequest | undefined {
  if (!isObject(raw)) {
    fail(at, `expected a request object, got ${show(raw)}`);
    return undefined;
  }
  let ok = true;
  const bad = (path: string, message: string): void => {
    ok = false;
    fail(path, message);
  };
  if (typeof raw.method !== 'string' || !METHOD.test(raw.method)) bad(`${at}.method`, `expected an HTTP method such as "GET", got ${show(raw.method)}`);
  let url: URL | undefined;
  if (typeof raw.url === 'string') {
    try {
      url = new URL(raw.url);
    } catch {
      url = undefined;
    }
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.host === '') {
    bad(`${at}.url`, `expected an absolute http(s) URL, got ${show(raw.url)}`);
  }
  const headers = readHeaders(raw.headers, `${at}.headers`, bad);
  const version = readVersion(raw.httpVersion, `${at}.httpVersion`, bad);
  let body: Buffer = Buffer.alloc(0);
  let bodyTruncated = false;
  if (raw.postData !== undefined) {
    const pd = raw.postData;
    if (!isObject(pd)) bad(`${at}.postData`, `expected a postData object, got ${show(pd)}`);
    else if (pd.text !== undefined && typeof pd.text !== 'string') bad(`${at}.postData.text`, `expected a string, got ${show(pd.text)}`);
    else if (pd._file !== undefined && pd.text === undefined) {
      const b = attached(pd._file, `${at}.postData._file`, bad, loadFile);
      if (b) body = b;
      else bodyTruncated = true; // not saved with the HAR: never sent half
    } else if (typeof pd.text === 'string') {
      const enc = pd._encoding ?? pd.encoding;
      if (enc !== undefined && enc !== 'base64') bad(`${at}.postData.encoding`, `expected "base64" or nothing, got ${show(enc)}`);
      else body = enc === 'base64' ? Buffer.from(pd.text, 'base64') : Buffer.from(pd.text, 'utf8');
      bodyTruncated = pd._truncated === true;
    } else if (Array.isArray(pd.params) && pd.params.length > 0) {
      // application/x-www-form-urlencoded given as params only
      const params = pd.params as unknown[];
      const parts: string[] = [];
      params.forEach((p, j) => {
        if (!isObject(p) || typeof p.name !== 'string') bad(`${at}.postData.params[${j}]`, 'expected {name, value}');
        else parts.push(`${encodeURIComponent(p.name)}=${encodeURIComponent(typeof p.value === 'string' ? p.value : '')}`);
      });
      body = Buffer.from(parts.join('&'));
    }
  }
  if (!ok || !url) return undefined;
  const kept = headers.filter(([k]) => !k.startsWith(':') && !NOT_REPLAYED.has(k.toLowerCase()));
  if (!kept.some(([k]) => k.toLowerCase() === 'host')) kept.unshift(['Host', url.host]);
  return {
    method: raw.method as string,
    target: `${url.pathname}${url.search}`,
    httpVersion: version,
    headers: kept,
    body,
    bodyTruncated,
    ...(typeof raw.bodySize === 'number' && raw.bodySize >= 0 ? { bodySize: raw.bodySize } : {}),
  };
}

function readResponse(raw: unknown, at: string, fail: Fail, loadFile: LoadFile): RecordedResponse | undefined {
  if (!isObject(raw)) {
    fail(at, `expected a response object, got ${show(raw)}`);
    return undefined;
  }
  let ok = true;
  const bad = (path: string, message: string): void => {
    ok = false;
    fail(path, message);
  };
  // No response: 0 (browsers, molt) or -1 (playwright) — the request failed or was aborted.
  const status = raw.status === -1 ? 0 : raw.status;
  if (typeof status !== 'number' || !Number.isInteger(status) || (status !== 0 && (status < 100 || status > 999))) {
    bad(`${at}.status`, `expected a status code 100-999 (or 0: no response), got ${show(raw.status)}`);
  }
  if (status === 0) return undefined; // whatever else a failed entry carries is not a response
  const headers = readHeaders(raw.headers, `${at}.headers`, bad);
  const version = readVersion(raw.httpVersion, `${at}.httpVersion`, bad);
  let body: Buffer = Buffer.alloc(0);
  let bodyTruncated = false;
  let bodySize: number | undefined;
  const content = raw.content;
  if (!isObject(content)) bad(`${at}.content`, `expected a content object, got ${show(content)}`);
  else {
    if (typeof content.size === 'number' && content.size >= 0) bodySize = content.size;
    if (content.text !== undefined && typeof content.text !== 'string') bad(`${at}.content.text`, `expected a string, got ${show(content.text)}`);
    else if (content.encoding !== undefined && content.encoding !== 'base64' && content.encoding !== '') bad(`${at}.content.encoding`, `expected "base64" or nothing, got ${show(content.encoding)}`);
    else if (typeof content.text === 'string') {
      body = content.encoding === 'base64' ? Buffer.from(content.text, 'base64') : Buffer.from(content.text, 'utf8');
      bodyTruncated = content._truncated === true;
    } else if (content._file !== undefined) {
      const b = attached(content._file, `${at}.content._file`, bad, loadFile);
      if (b) body = b;
      else bodyTruncated = (bodySize ?? 1) > 0; // not saved with the HAR: never compared
    } else {
      // No text: the body was not saved (e.g. recorded with content omitted).
      bodyTruncated = (bodySize ?? 1) > 0;
    }
    if (content._contentEncoded === true && !bodyTruncated) {
      // Written as it travelled (molt could not decode it then): decode it now if possible.
      const coding = headers.find(([k]) => k.toLowerCase() === 'content-encoding')?.[1];
      const decoded = coding ? decodeContent(body, coding) : undefined;
      if (decoded) body = decoded;
      else bodyTruncated = true; // still encoded: not comparable with a decoded answer
    }
  }
  if (!ok) return undefined;
  return {
    status: status as number,
    ...(typeof raw.statusText === 'string' && raw.statusText !== '' ? { statusText: raw.statusText } : {}),
    httpVersion: version,
    headers: headers.filter(([k]) => !k.startsWith(':')),
    body,
    bodyTruncated,
    ...(bodySize !== undefined ? { bodySize } : {}),
  };
}

function readHeaders(raw: unknown, at: string, bad: Fail): HeaderPairs {
  if (!Array.isArray(raw)) {
    bad(at, `expected a list of {name, value}, got ${show(raw)}`);
    return [];
  }
  const out: HeaderPairs = [];
  raw.forEach((h: unknown, j: number) => {
    if (!isObject(h) || typeof h.name !== 'string' || typeof h.value !== 'string') {
      bad(`${at}[${j}]`, `expected {name, value} with string name and value, got ${show(h)}`);
      return;
    }
    const name = h.name.startsWith(':') ? h.name.slice(1) : h.name;
    if (!HEADER_NAME.test(name)) bad(`${at}[${j}].name`, `expected a header name, got ${show(h.name)}`);
    else if (/[\r\n\0]/.test(h.value)) bad(`${at}[${j}].value`, 'a header value must not contain CR, LF or NUL');
    else out.push([h.name, h.value]);
  });
  return out;
}

/** "HTTP/1.1" -> "1.1"; HTTP/2 and 3 captures (h2, HTTP/2.0, h3) replay as "1.1". */
function readVersion(raw: unknown, at: string, bad: Fail, optional = false): string {
  if (typeof raw !== 'string') {
    if (!optional) bad(at, `expected an HTTP version such as "HTTP/1.1", got ${show(raw)}`);
    return '1.1';
  }
  const m = /^HTTP\/(1\.[01])$/i.exec(raw.trim());
  if (m) return m[1]!;
  if (/^(h2|h2c|h3|http\/2(\.0)?|http\/3(\.0)?|)$/i.test(raw.trim())) return '1.1';
  bad(at, `expected an HTTP version such as "HTTP/1.1", got ${show(raw)}`);
  return '1.1';
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function show(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'an object';
  const s = JSON.stringify(v);
  return s.length > 60 ? `${s.slice(0, 59)}…` : s;
}
