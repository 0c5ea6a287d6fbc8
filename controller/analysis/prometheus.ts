// The Prometheus provider of canary analysis: PromQL templates with {{app}}, {{version}} and
// {{baseline}}, a successCondition "OP NUMBER", and an instant query against the Prometheus HTTP
// API (POST /api/v1/query). A query must return exactly one finite sample; anything else — a
// query error (Prometheus's own text is kept), NaN or ±Inf, no series, several series, a range
// vector, an unreachable or slow Prometheus — is Inconclusive with the reason, never a Pass.
//
// Every call is async and bounded by a timeout (AbortSignal.timeout), so a Prometheus that is down
// or hangs never blocks the reconciler for longer than `timeoutMs`.

import { MoltError } from '../../common/errors.js';
import type { MetricResult, Verdict } from './types.js';

export const PLACEHOLDERS = ['app', 'version', 'baseline'] as const;
export type Placeholder = (typeof PLACEHOLDERS)[number];
export type QueryVars = Record<Placeholder, string>;

const PLACEHOLDER = /\{\{\s*([^{}]*?)\s*\}\}/g;

function invalid(message: string): MoltError {
  return new MoltError('MOLT_ERR_VALIDATION', message);
}

/** Throws MoltError (MOLT_ERR_VALIDATION, no location: the caller adds the field) on unknown or malformed placeholders. */
export function checkTemplate(template: string): void {
  if (template.trim() === '') throw invalid('query is empty');
  for (const m of template.matchAll(PLACEHOLDER)) {
    const name = m[1]!;
    if (!(PLACEHOLDERS as readonly string[]).includes(name)) {
      throw invalid(`unknown placeholder {{${name}}} in query; known placeholders: ${PLACEHOLDERS.map((p) => `{{${p}}}`).join(', ')}`);
    }
  }
  const rest = template.replace(PLACEHOLDER, '');
  const stray = rest.indexOf('{{') >= 0 ? '{{' : rest.indexOf('}}') >= 0 ? '}}' : '';
  if (stray) throw invalid(`unbalanced "${stray}" in query; placeholders are written {{app}}, {{version}}, {{baseline}}`);
}

/** The query with placeholders replaced (values are inserted as they are: app and version names are restricted to [A-Za-z0-9._+-]). */
export function renderQuery(template: string, vars: QueryVars): string {
  checkTemplate(template);
  return template.replace(PLACEHOLDER, (_, name: Placeholder) => vars[name]);
}

// ---------------------------------------------------------------------------------------------
// successCondition

export type ConditionOp = '>=' | '>' | '<=' | '<' | '==' | '!=';
export interface Condition {
  op: ConditionOp;
  threshold: number;
  /** As written, trimmed. */
  text: string;
}

const CONDITION = /^(>=|<=|==|!=|>|<)\s*(\S.*)$/;
const NUMBER = /^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$/;

/** Parses "OP NUMBER" (>=, >, <=, <, ==, !=). Throws MoltError MOLT_ERR_VALIDATION with a hint. */
export function parseCondition(input: unknown): Condition {
  if (typeof input !== 'string') throw invalid(`successCondition must be a string such as ">= 0.99", got ${typeof input === 'number' ? `the number ${input}` : typeof input}`);
  const text = input.trim();
  if (text === '') throw invalid('successCondition is empty; write an operator and a number, e.g. ">= 0.99"');
  const m = CONDITION.exec(text);
  if (!m) {
    if (NUMBER.test(text)) throw invalid(`successCondition "${text}" has no operator; write e.g. ">= ${text}" (operators: >=, >, <=, <, ==, !=)`);
    const typo = /^(=>|=<|=(?!=)|<>|≥|≤|≠)/.exec(text);
    const hint = typo ? `; "${typo[1]}" is not an operator${({ '=>': ', did you mean ">="?', '=<': ', did you mean "<="?', '=': ', did you mean "=="?', '<>': ', did you mean "!="?', '≥': ', did you mean ">="?', '≤': ', did you mean "<="?', '≠': ', did you mean "!="?' } as Record<string, string>)[typo[1]!]}` : '';
    throw invalid(`successCondition "${text}" must be OP NUMBER with OP one of >=, >, <=, <, ==, != (e.g. ">= 0.99")${hint}`);
  }
  const num = m[2]!.trim();
  if (!NUMBER.test(num)) throw invalid(`successCondition "${text}": expected a number after "${m[1]}", got "${num}"`);
  return { op: m[1] as ConditionOp, threshold: Number(num), text };
}

export function testCondition(c: Condition, value: number): boolean {
  switch (c.op) {
    case '>=': return value >= c.threshold;
    case '>': return value > c.threshold;
    case '<=': return value <= c.threshold;
    case '<': return value < c.threshold;
    case '==': return value === c.threshold;
    case '!=': return value !== c.threshold;
  }
}

/** Checks an address: http(s) URL without query or fragment. Returns the /api/v1/query URL. Throws MoltError. */
export function queryEndpoint(address: string): URL {
  let url: URL;
  try {
    url = new URL(address);
  } catch {
    throw invalid(`Prometheus address "${address}" is not a URL; expected e.g. "http://127.0.0.1:9090"`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw invalid(`Prometheus address "${address}" must start with http:// or https://`);
  if (url.search || url.hash) throw invalid(`Prometheus address "${address}" must not carry a query or fragment`);
  if (url.username || url.password) throw invalid(`Prometheus address "${address}" must not carry credentials`);
  url.pathname = url.pathname.replace(/\/+$/, '') + '/api/v1/query';
  return url;
}

// ---------------------------------------------------------------------------------------------
// Querying

export type QueryOutcome =
  | { ok: true; value: number; labels: Record<string, string>; warnings: string[] }
  | { ok: false; reason: string; warnings: string[] };

export interface QueryOptions {
  /** Upper bound for the whole request (connect, Prometheus's evaluation, body). */
  timeoutMs: number;
  /** Cancels early (e.g. the controller shutting down). */
  signal?: AbortSignal;
  /** Largest response body read, bytes. Default 1 MiB. */
  maxBodyBytes?: number;
}

/**
 * One instant query. Never throws for anything Prometheus or the network does: every failure is
 * `{ ok: false, reason }`. Throws only for a malformed address (a configuration error).
 */
export async function queryPrometheus(address: string, query: string, opts: QueryOptions): Promise<QueryOutcome> {
  const url = queryEndpoint(address);
  const where = `Prometheus at ${address}`;
  const timeout = AbortSignal.timeout(opts.timeoutMs);
  const signal = opts.signal ? AbortSignal.any([timeout, opts.signal]) : timeout;
  const fail = (reason: string, warnings: string[] = []): QueryOutcome => ({ ok: false, reason, warnings });
  let status: number;
  let body: string;
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      // Prometheus stops evaluating after its own timeout too.
      body: new URLSearchParams({ query, timeout: `${Math.max(1, Math.ceil(opts.timeoutMs / 1000))}s` }),
      signal,
      redirect: 'error',
    });
    status = res.status;
    body = await readCapped(res, opts.maxBodyBytes ?? 1024 * 1024);
  } catch (err) {
    if (err instanceof BodyTooLarge) return fail(`${where}: ${err.message}`);
    if (timeout.aborted) return fail(`${where} did not answer within ${opts.timeoutMs} ms`);
    if (opts.signal?.aborted) return fail(`query to ${where} was cancelled`);
    return fail(`cannot reach ${where}: ${describeFetchError(err)}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    const snippet = body.slice(0, 120).replace(/\s+/g, ' ').trim();
    return fail(`${where} answered HTTP ${status} without a Prometheus API response${snippet ? ` ("${snippet}")` : ''}; is this the right address?`);
  }
  const r = parsed as { status?: unknown; errorType?: unknown; error?: unknown; warnings?: unknown; data?: { resultType?: unknown; result?: unknown } };
  const warnings = Array.isArray(r.warnings) ? r.warnings.map(String) : [];
  if (r.status === 'error') {
    return fail(`query failed (HTTP ${status}${typeof r.errorType === 'string' ? `, ${r.errorType}` : ''}): ${String(r.error ?? 'no error text')}`, warnings);
  }
  if (r.status !== 'success' || typeof r.data !== 'object' || r.data === null) {
    return fail(`${where} answered HTTP ${status} with an unexpected body (status ${JSON.stringify(r.status)})`, warnings);
  }
  const { resultType, result } = r.data;
  let sample: unknown;
  let labels: Record<string, string> = {};
  if (resultType === 'scalar') {
    sample = result;
  } else if (resultType === 'vector' && Array.isArray(result)) {
    if (result.length === 0) return fail('query returned no series (the metric may not exist yet, or the selector matches nothing)', warnings);
    if (result.length > 1) {
      const first = (result as { metric?: Record<string, string> }[]).slice(0, 2).map((s) => formatLabels(s.metric ?? {})).join(', ');
      return fail(`query returned ${result.length} series, expected exactly one (aggregate, e.g. sum(...), or narrow the selector); first: ${first}`, warnings);
    }
    const only = result[0] as { metric?: Record<string, string>; value?: unknown };
    labels = only.metric ?? {};
    sample = only.value;
  } else if (resultType === 'matrix') {
    return fail('query returned a range vector; it must return one instant value (e.g. wrap the range in rate() or avg_over_time())', warnings);
  } else {
    return fail(`query returned a ${String(resultType)} result; it must return one number`, warnings);
  }
  if (!Array.isArray(sample) || sample.length !== 2 || typeof sample[1] !== 'string') {
    return fail(`${where} returned a malformed sample: ${JSON.stringify(sample)?.slice(0, 100)}`, warnings);
  }
  const value = parseSampleValue(sample[1]);
  if (Number.isNaN(value)) return fail(`query returned ${sample[1]} (e.g. a ratio of two zero rates: no traffic in the range?)`, warnings);
  if (!Number.isFinite(value)) return fail(`query returned ${sample[1]} (a division by zero?)`, warnings);
  return { ok: true, value, labels, warnings };
}

/** Prometheus formats sample values as Go floats: "1.5", "NaN", "+Inf", "-Inf", "1e-05". */
function parseSampleValue(s: string): number {
  if (s === '+Inf' || s === 'Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  if (s === 'NaN') return NaN;
  const n = Number(s);
  return s.trim() === '' ? NaN : n;
}

class BodyTooLarge extends Error {}

async function readCapped(res: Response, max: number): Promise<string> {
  if (!res.body) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    size += chunk.byteLength;
    if (size > max) {
      await res.body.cancel().catch(() => {});
      throw new BodyTooLarge(`response larger than ${max} bytes (does the query return many series?)`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function describeFetchError(err: unknown): string {
  const e = err as { message?: string; cause?: { code?: string; message?: string } };
  if (e?.cause?.code) return `${e.cause.code}${e.cause.message && !e.cause.message.includes(e.cause.code) ? ` (${e.cause.message})` : ''}`;
  return e?.cause?.message ?? e?.message ?? String(err);
}

function formatLabels(labels: Record<string, string>): string {
  return `{${Object.entries(labels).map(([k, v]) => `${k}="${v}"`).join(', ')}}`;
}

function formatValue(v: number): string {
  return String(Number(v.toPrecision(6)));
}

// ---------------------------------------------------------------------------------------------
// Checks

export interface PrometheusQueryConfig {
  name: string;
  /** Template with {{app}}, {{version}}, {{baseline}}. */
  query: string;
  condition: Condition;
}

export interface PrometheusConfig {
  address: string;
  /** Per-query timeout. */
  timeoutMs: number;
  queries: PrometheusQueryConfig[];
}

export interface PrometheusResult extends MetricResult {
  kind: 'prometheus';
  /** The query as sent (placeholders filled in). */
  query: string;
  /** The sample, when there was exactly one finite sample. */
  value?: number;
  condition: string;
  /** Why it is Inconclusive (query error text, NaN, series count, unreachable …). */
  reason?: string;
  warnings?: string[];
}

/** Runs one query and judges it against its condition. Never throws except for a malformed address or template. */
export async function runPrometheusQuery(address: string, q: PrometheusQueryConfig, vars: QueryVars, opts: QueryOptions): Promise<PrometheusResult> {
  const query = renderQuery(q.query, vars);
  const out = await queryPrometheus(address, query, opts);
  const base = { metric: q.name, kind: 'prometheus' as const, query, condition: q.condition.text, ...(out.warnings.length ? { warnings: out.warnings } : {}) };
  if (!out.ok) {
    return { ...base, verdict: 'Inconclusive', reason: out.reason, message: `${q.name}: inconclusive: ${out.reason}` };
  }
  const verdict: Verdict = testCondition(q.condition, out.value) ? 'Pass' : 'Fail';
  const shown = formatValue(out.value);
  const message = verdict === 'Pass'
    ? `${q.name}: ${shown} ${q.condition.text}`
    : `${q.name}: ${shown}, expected ${q.condition.text}`;
  return { ...base, verdict, value: out.value, message };
}

/** All queries of a provider, concurrently; each bounded by cfg.timeoutMs. */
export async function runPrometheusChecks(cfg: PrometheusConfig, vars: QueryVars, opts: { signal?: AbortSignal } = {}): Promise<PrometheusResult[]> {
  return Promise.all(cfg.queries.map((q) => runPrometheusQuery(cfg.address, q, vars, { timeoutMs: cfg.timeoutMs, ...(opts.signal ? { signal: opts.signal } : {}) })));
}
