// `spec.transition.analysis` (and a step's `analysis` override): semantic checks and defaults.
// The JSON Schema in ./schema-fragment.ts checks shapes and types; this file checks what JSON
// Schema can't say well (durations, "20%", "0.5pp", conditions, placeholders, cross-field rules)
// and returns issues in controller/load.ts's shape ({ path, message }), so the loader can add
// file:line and report them together with its own.

import { parseDuration, formatDuration } from '../../common/duration.js';
import { MoltError } from '../../common/errors.js';
import type { ErrorsCriterion, LatencyCriterion } from './judge.js';
import { checkTemplate, parseCondition, queryEndpoint, type PrometheusConfig } from './prometheus.js';

export type Segment = string | number;
export interface AnalysisIssue {
  path: Segment[];
  message: string;
}
type Raw = Record<string, unknown>;

export type OnInconclusive = 'rollback' | 'promote' | 'hold';
export const ON_INCONCLUSIVE: readonly OnInconclusive[] = ['rollback', 'promote', 'hold'];

export interface AnalysisConfig {
  /** CONCURRENT: length of each analysis window. (GRADUAL steps use each step's pause.) */
  intervalMs: number;
  /** Excluded from the start of each window (warm-up). */
  initialDelayMs: number;
  /** Requests each version needs in a window; fewer is Inconclusive. */
  minRequests: number;
  /** How long a step may stay Inconclusive before onInconclusive decides. */
  maxHoldMs: number;
  onInconclusive: OnInconclusive;
  /** null: not judged. */
  latency: LatencyCriterion | null;
  errors: ErrorsCriterion | null;
  prometheus: PrometheusConfig | null;
}

export const ANALYSIS_DEFAULTS = {
  intervalMs: 30_000,
  initialDelayMs: 5_000,
  minRequests: 200,
  maxHoldMs: 5 * 60_000,
  onInconclusive: 'rollback' as OnInconclusive,
  latency: { maxIncrease: 0.2, confidence: 0.98 },
  errors: { maxIncrease: 0.005, confidence: 0.98 },
  prometheusTimeoutMs: 5_000,
};

function invalid(message: string): MoltError {
  return new MoltError('MOLT_ERR_VALIDATION', message);
}

const DECIMAL = '[0-9]+(\\.[0-9]+)?';
/** Also used by the schema fragment. */
export const PERCENT_PATTERN = `^${DECIMAL}%$`;
export const PERCENTAGE_POINTS_PATTERN = `^${DECIMAL}pp$`;

/** "20%" → 0.2. Throws MoltError MOLT_ERR_VALIDATION (no location) with a hint. */
export function parsePercent(input: unknown): number {
  if (typeof input !== 'string') throw invalid(`expected a percentage such as "20%" (quoted), got ${describeValue(input)}`);
  const text = input.trim();
  if (new RegExp(PERCENT_PATTERN).test(text)) return Number(text.slice(0, -1)) / 100;
  if (new RegExp(PERCENTAGE_POINTS_PATTERN).test(text)) {
    throw invalid(`"${text}" is in percentage points; latency takes a relative increase such as "${text.slice(0, -2)}%"`);
  }
  if (new RegExp(`^${DECIMAL}$`).test(text)) throw invalid(`"${text}" has no unit; write "${text}%"`);
  if (text.startsWith('-')) throw invalid(`"${text}" must not be negative`);
  throw invalid(`expected a percentage such as "20%", got "${text}"`);
}

/** "0.5pp" → 0.005 (percentage points of requests). Throws MoltError MOLT_ERR_VALIDATION with a hint. */
export function parsePercentagePoints(input: unknown): number {
  if (typeof input !== 'string') throw invalid(`expected percentage points such as "0.5pp" (quoted), got ${describeValue(input)}`);
  const text = input.trim();
  if (new RegExp(PERCENTAGE_POINTS_PATTERN).test(text)) {
    const v = Number(text.slice(0, -2)) / 100;
    if (v > 1) throw invalid(`"${text}" is more than 100 percentage points: the error ratio can never rise that much`);
    return v;
  }
  if (new RegExp(PERCENT_PATTERN).test(text)) {
    throw invalid(`"${text}" is ambiguous for an error ratio; write percentage points, e.g. "${text.slice(0, -1)}pp" (error ratio may rise from 0.1 % to ${formatPp(0.1 + Number(text.slice(0, -1)))} %)`);
  }
  if (new RegExp(`^${DECIMAL}$`).test(text)) throw invalid(`"${text}" has no unit; write "${text}pp" (percentage points)`);
  if (text.startsWith('-')) throw invalid(`"${text}" must not be negative`);
  throw invalid(`expected percentage points such as "0.5pp", got "${text}"`);
}

function formatPp(n: number): string {
  return String(Number(n.toFixed(3)));
}

function describeValue(v: unknown): string {
  if (v === null || v === undefined) return 'nothing';
  if (typeof v === 'number') return `the number ${v}`;
  return Array.isArray(v) ? 'a list' : typeof v === 'object' ? 'a mapping' : `${typeof v} ${String(v)}`;
}

/**
 * A step's `analysis` over the transition's: top-level fields of the step win; `latency` and
 * `errors` are merged one level deep (a step may change only `maxIncrease`); `prometheus` is
 * replaced whole. Either may be absent.
 */
export function mergeAnalysis(base: Raw | undefined, override: Raw | undefined): Raw | undefined {
  if (!override) return base;
  if (!base) return override;
  const out: Raw = { ...base, ...override };
  for (const k of ['latency', 'errors'] as const) {
    if (isObject(base[k]) && isObject(override[k])) out[k] = { ...(base[k] as Raw), ...(override[k] as Raw) };
  }
  return out;
}

const isObject = (v: unknown): v is Raw => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Normalises one analysis block (after schema validation). Issues carry paths under `path`.
 * Returns a config only when there is no issue.
 */
export function normalizeAnalysis(raw: Raw, path: Segment[]): { config?: AnalysisConfig; issues: AnalysisIssue[] } {
  const issues: AnalysisIssue[] = [];
  const at = (...k: Segment[]): Segment[] => [...path, ...k];
  const fail = (p: Segment[], message: string) => issues.push({ path: p, message });
  const duration = (value: unknown, p: Segment[], fallback: number, positive: boolean): number => {
    if (value === undefined) return fallback;
    try {
      const ms = parseDuration(value);
      if (positive && ms <= 0) fail(p, `must be longer than 0, got ${JSON.stringify(value)}`);
      return ms;
    } catch (err) {
      fail(p, (err as Error).message);
      return fallback;
    }
  };
  const parse = <T>(fn: (v: unknown) => T, value: unknown, p: Segment[], fallback: T): T => {
    if (value === undefined) return fallback;
    try {
      return fn(value);
    } catch (err) {
      fail(p, (err as Error).message);
      return fallback;
    }
  };
  const confidence = (value: unknown, p: Segment[], fallback: number): number => {
    if (value === undefined) return fallback;
    if (typeof value !== 'number' || !(value >= 0.5 && value < 1)) {
      fail(p, `confidence must be a number from 0.5 up to (not including) 1, e.g. 0.98; got ${JSON.stringify(value)}`);
      return fallback;
    }
    return value;
  };

  const minRequests = raw.minRequests ?? ANALYSIS_DEFAULTS.minRequests;
  if (!Number.isSafeInteger(minRequests) || (minRequests as number) < 1) fail(at('minRequests'), `must be a whole number >= 1, got ${JSON.stringify(raw.minRequests)}`);
  const onInconclusive = (raw.onInconclusive ?? ANALYSIS_DEFAULTS.onInconclusive) as OnInconclusive;
  if (!ON_INCONCLUSIVE.includes(onInconclusive)) fail(at('onInconclusive'), `must be one of ${ON_INCONCLUSIVE.join(', ')}; got ${JSON.stringify(raw.onInconclusive)}`);

  let latency: LatencyCriterion | null = null;
  const rl = (raw.latency ?? {}) as Raw;
  if (rl.enabled !== false) {
    latency = {
      maxIncrease: parse(parsePercent, rl.maxIncrease, at('latency', 'maxIncrease'), ANALYSIS_DEFAULTS.latency.maxIncrease),
      confidence: confidence(rl.confidence, at('latency', 'confidence'), ANALYSIS_DEFAULTS.latency.confidence),
    };
  }

  let errors: ErrorsCriterion | null = null;
  const re = (raw.errors ?? {}) as Raw;
  if (re.enabled !== false) {
    errors = {
      maxIncrease: parse(parsePercentagePoints, re.maxIncrease, at('errors', 'maxIncrease'), ANALYSIS_DEFAULTS.errors.maxIncrease),
      confidence: confidence(re.confidence, at('errors', 'confidence'), ANALYSIS_DEFAULTS.errors.confidence),
      include4xx: re.include4xx === true,
    };
    if (re.statusCodes !== undefined) {
      const codes = re.statusCodes as unknown[];
      codes.forEach((c, i) => {
        if (!Number.isInteger(c) || (c as number) < 100 || (c as number) > 599) fail(at('errors', 'statusCodes', i), `must be an HTTP status code 100-599, got ${JSON.stringify(c)}`);
      });
      if (codes.length === 0) fail(at('errors', 'statusCodes'), 'is empty: no response would count as an error; leave it out for 500-599');
      if (re.include4xx !== undefined) fail(at('errors', 'include4xx'), 'give either statusCodes (the exact list) or include4xx, not both');
      errors.statusCodes = [...new Set(codes as number[])].sort((a, b) => a - b);
    }
  }

  let prometheus: PrometheusConfig | null = null;
  if (raw.prometheus !== undefined) {
    const rp = raw.prometheus as Raw;
    try {
      queryEndpoint(String(rp.address));
    } catch (err) {
      fail(at('prometheus', 'address'), (err as Error).message);
    }
    const queries = ((rp.queries as Raw[] | undefined) ?? []);
    if (queries.length === 0) fail(at('prometheus', 'queries'), 'needs at least one query');
    const seen = new Set<string>(['latency', 'errors']);
    prometheus = {
      address: String(rp.address),
      timeoutMs: duration(rp.timeout, at('prometheus', 'timeout'), ANALYSIS_DEFAULTS.prometheusTimeoutMs, true),
      queries: queries.map((q, i) => {
        const name = String(q.name);
        if (seen.has(name)) fail(at('prometheus', 'queries', i, 'name'), name === 'latency' || name === 'errors' ? `"${name}" is the name of a built-in metric; choose another name` : `query name "${name}" is used twice`);
        seen.add(name);
        try {
          checkTemplate(String(q.query));
        } catch (err) {
          fail(at('prometheus', 'queries', i, 'query'), (err as Error).message);
        }
        const condition = parse(parseCondition, q.successCondition, at('prometheus', 'queries', i, 'successCondition'), { op: '>=' as const, threshold: 0, text: '' });
        if (q.successCondition === undefined) fail(at('prometheus', 'queries', i, 'successCondition'), 'is required, e.g. ">= 0.99"');
        return { name, query: String(q.query), condition };
      }),
    };
  }

  if (!latency && !errors && !prometheus) {
    fail(path, 'analysis judges nothing: latency and errors are disabled and there are no prometheus queries');
  }

  const config: AnalysisConfig = {
    intervalMs: duration(raw.interval, at('interval'), ANALYSIS_DEFAULTS.intervalMs, true),
    initialDelayMs: duration(raw.initialDelay, at('initialDelay'), ANALYSIS_DEFAULTS.initialDelayMs, false),
    minRequests: minRequests as number,
    maxHoldMs: duration(raw.maxHold, at('maxHold'), ANALYSIS_DEFAULTS.maxHoldMs, false),
    onInconclusive,
    latency,
    errors,
    prometheus,
  };
  return issues.length ? { issues } : { config, issues };
}

/**
 * The analysis of a whole `spec.transition` (raw, after schema validation): the cross-field rules
 * and each step's effective analysis (the transition's merged with the step's own).
 *
 *  - analysis applies to GRADUAL with `steps` and to CONCURRENT; with `percentagePerRequest` (or
 *    INSTANT/SESSION) it is an error: that ramp can finish within a hundred requests, before
 *    any window fills;
 *  - `interval` is the CONCURRENT window; with steps each step's pause is the window, so
 *    `interval` there is an error rather than silently ignored;
 *  - `initialDelay` must leave a window: shorter than each gated step's pause (and than interval).
 *
 * `steps[i]` is the analysis run after step i's pause (undefined: no gate, e.g. the last step
 * without a pause, or no analysis at all).
 */
export function normalizeTransitionAnalysis(transition: Raw): { analysis?: AnalysisConfig; steps: (AnalysisConfig | undefined)[]; issues: AnalysisIssue[] } {
  const issues: AnalysisIssue[] = [];
  const base: Segment[] = ['spec', 'transition'];
  const mode = (transition.mode as string | undefined) ?? 'INSTANT';
  const rawSteps = Array.isArray(transition.steps) ? (transition.steps as Raw[]) : [];
  const top = isObject(transition.analysis) ? transition.analysis : undefined;
  const stepOverrides = rawSteps.map((s, i) => (isObject(s.analysis) ? { i, raw: s.analysis } : undefined)).filter((x) => x !== undefined);
  const steps: (AnalysisConfig | undefined)[] = rawSteps.map(() => undefined);
  if (!top && stepOverrides.length === 0) return { steps, issues };

  const where = top ? [...base, 'analysis'] : [...base, 'steps', stepOverrides[0]!.i, 'analysis'];
  if (transition.percentagePerRequest !== undefined) {
    issues.push({ path: where, message: 'analysis does not work with percentagePerRequest: that ramp can finish within a hundred requests, before any analysis window fills; use steps (e.g. [{weight: 10, pause: 2m}, {weight: 50, pause: 2m}, {weight: 100}])' });
    return { steps, issues };
  }
  if (mode !== 'CONCURRENT' && !(mode === 'GRADUAL' && rawSteps.length > 0)) {
    issues.push({ path: where, message: `analysis applies to mode GRADUAL with steps and to mode CONCURRENT (mode is ${mode})` });
    return { steps, issues };
  }

  let analysis: AnalysisConfig | undefined;
  if (top) {
    const r = normalizeAnalysis(top, [...base, 'analysis']);
    issues.push(...r.issues);
    analysis = r.config;
    if (mode === 'GRADUAL' && top.interval !== undefined) {
      issues.push({ path: [...base, 'analysis', 'interval'], message: 'interval applies to mode CONCURRENT; with steps, each step\u2019s pause is the analysis window' });
    }
    if (mode === 'CONCURRENT' && analysis && analysis.initialDelayMs >= analysis.intervalMs) {
      issues.push({ path: [...base, 'analysis', 'initialDelay'], message: `initialDelay ${formatDuration(analysis.initialDelayMs)} leaves no window: it must be shorter than interval ${formatDuration(analysis.intervalMs)}` });
    }
  }
  rawSteps.forEach((s, i) => {
    const own = isObject(s.analysis) ? s.analysis : undefined;
    const path: Segment[] = [...base, 'steps', i, 'analysis'];
    if (own?.interval !== undefined) issues.push({ path: [...path, 'interval'], message: 'interval applies to mode CONCURRENT; a step\u2019s pause is its analysis window' });
    const merged = mergeAnalysis(top, own);
    if (!merged || s.pause === undefined) {
      if (own && s.pause === undefined) issues.push({ path, message: 'a step without a pause has no analysis window; give the step a pause or move its analysis to an earlier step' });
      return;
    }
    let cfg = analysis;
    if (own) {
      const r = normalizeAnalysis(merged, path);
      // Issues of the transition's own fields are reported once, at the transition.
      for (const issue of r.issues) if (!top || !issues.some((x) => x.message === issue.message)) issues.push(issue);
      cfg = r.config;
    }
    if (!cfg) return;
    let pauseMs: number;
    try {
      pauseMs = parseDuration(s.pause);
    } catch {
      return; // the loader reports the pause itself
    }
    if (cfg.initialDelayMs >= pauseMs) {
      issues.push({ path: [...base, 'steps', i, 'pause'], message: `pause ${formatDuration(pauseMs)} leaves no analysis window after initialDelay ${formatDuration(cfg.initialDelayMs)}; make the pause longer than initialDelay` });
    }
    steps[i] = cfg;
  });
  return issues.length ? { steps: rawSteps.map(() => undefined), issues } : { ...(analysis ? { analysis } : {}), steps, issues };
}
