// JSON Schema of `spec.transition.analysis` and of a step's `analysis` override, in the style of
// controller/schema.ts (structural for Kubernetes: every node typed, durations as
// x-kubernetes-int-or-string with DURATION_PATTERN). NOT wired in yet — to wire it (lead):
//
//   controller/schema.ts
//     import { analysisSchema, stepAnalysisSchema, ANALYSIS_TRANSITION_VALIDATIONS } from './analysis/schema-fragment.js';
//     transition: add `analysis: analysisSchema` to its properties, and
//                 `'x-kubernetes-validations': ANALYSIS_TRANSITION_VALIDATIONS` to the node (optional,
//                 Kubernetes ≥ 1.25 evaluates it; strict() drops x-kubernetes-* for the local schema);
//     steps.items: add `analysis: stepAnalysisSchema` to its properties.
//   controller/load.ts
//     PATTERN_HINTS: spread in ANALYSIS_PATTERN_HINTS;
//     Normalizer.transition(): const a = normalizeTransitionAnalysis(raw) (./analysis/config.ts);
//       push a.issues into this.issues (same { path, message } shape), keep a.analysis and
//       a.steps[i] on TransitionConfig / GradualStep.
//
// The cross-field rules (analysis with percentagePerRequest is an error; interval only with
// CONCURRENT; initialDelay shorter than each gated pause; something to judge) live in
// normalizeTransitionAnalysis, re-exported here.

import { DURATION_PATTERN } from '../../common/duration.js';
import { PERCENT_PATTERN, PERCENTAGE_POINTS_PATTERN } from './config.js';

export { normalizeTransitionAnalysis, normalizeAnalysis, mergeAnalysis } from './config.js';

type SchemaNode = { [key: string]: unknown };

const str = (description: string, extra: SchemaNode = {}): SchemaNode => ({ type: 'string', description, ...extra });
const bool = (description: string): SchemaNode => ({ type: 'boolean', description });
const duration = (description: string): SchemaNode => ({
  'x-kubernetes-int-or-string': true,
  description: `${description} A duration: "500ms", "60s", "5m", "1h30m", or a whole number of seconds.`,
  pattern: DURATION_PATTERN,
});
const object = (description: string, properties: Record<string, SchemaNode>, required?: string[]): SchemaNode => ({
  type: 'object',
  description,
  ...(required ? { required } : {}),
  properties,
});
const confidence: SchemaNode = {
  type: 'number',
  description: 'Confidence required to call a difference real: 0.98 fails only when p < 0.02. Default 0.98.',
  minimum: 0.5,
  // Below 1 (1 could never fail): checked by normalizeAnalysis. No exclusiveMaximum here:
  // schema.ts's strict() converts only the OpenAPI v3.0 boolean form of exclusiveMinimum.
  maximum: 1,
};

/** successCondition: OP NUMBER. */
export const CONDITION_PATTERN = '^\\s*(>=|<=|==|!=|>|<)\\s*[-+]?([0-9]+(\\.[0-9]*)?|\\.[0-9]+)([eE][-+]?[0-9]+)?\\s*$';
export const PROMETHEUS_ADDRESS_PATTERN = '^https?://[^\\s?#]+$';
export const QUERY_NAME_PATTERN = '^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$';

/** For load.ts PATTERN_HINTS: what each pattern means in an error message. */
export const ANALYSIS_PATTERN_HINTS: Record<string, string> = {
  [PERCENT_PATTERN]: 'a percentage such as "20%"',
  [PERCENTAGE_POINTS_PATTERN]: 'percentage points such as "0.5pp"',
  [CONDITION_PATTERN]: 'an operator and a number, e.g. ">= 0.99" (operators >=, >, <=, <, ==, !=)',
  [PROMETHEUS_ADDRESS_PATTERN]: 'an http:// or https:// address, e.g. "http://127.0.0.1:9090"',
  [QUERY_NAME_PATTERN]: 'lower-case letters, digits, "-" and "_", e.g. "checkout-success"',
};

const latency = object('Latency: Mann–Whitney U test of canary against baseline; fails when the canary is significantly slower AND its typical slowdown (Hodges–Lehmann: median of canary/baseline latency ratios) exceeds maxIncrease.', {
  enabled: bool('Judge latency. Default true.'),
  maxIncrease: str('Allowed typical slowdown relative to the baseline, e.g. "20%". Default "20%".', { pattern: PERCENT_PATTERN }),
  confidence,
});

const errors = object('Error ratio: Fisher\u2019s exact test at small counts, else a two-proportion z-test; fails when the canary\u2019s ratio is significantly higher AND higher by more than maxIncrease. Requests without a response always count as errors.', {
  enabled: bool('Judge the error ratio. Default true.'),
  maxIncrease: str('Allowed increase in percentage points of requests, e.g. "0.5pp" (0.1 % → 0.6 %). Default "0.5pp".', { pattern: PERCENTAGE_POINTS_PATTERN }),
  confidence,
  statusCodes: {
    type: 'array',
    description: 'Status codes that count as errors. Default 500-599 (plus 400-499 with include4xx).',
    minItems: 1,
    items: { type: 'integer', minimum: 100, maximum: 599 },
  },
  include4xx: bool('Also count 400-499 as errors (only without statusCodes). Default false.'),
});

const prometheus = object('Queries against a Prometheus HTTP API, each judged by its successCondition. A query must return exactly one sample; errors, NaN, no or several series make the run Inconclusive.', {
  address: str('Base address of the Prometheus HTTP API, e.g. "http://127.0.0.1:9090".', { pattern: PROMETHEUS_ADDRESS_PATTERN }),
  timeout: duration('Per-query timeout. Default 5s.'),
  queries: {
    type: 'array',
    description: 'Instant PromQL queries. Placeholders: {{app}}, {{version}} (the canary), {{baseline}} (the previous version).',
    minItems: 1,
    items: object('One query.', {
      name: str('Name shown in verdicts, e.g. "checkout-success".', { pattern: QUERY_NAME_PATTERN, maxLength: 63 }),
      query: str('PromQL returning one number.', { minLength: 1 }),
      successCondition: str('OP NUMBER, e.g. ">= 0.99".', { pattern: CONDITION_PATTERN }),
    }, ['name', 'query', 'successCondition']),
  },
}, ['address', 'queries']);

const common: Record<string, SchemaNode> = {
  initialDelay: duration('Warm-up excluded from the start of each window. Default 5s.'),
  minRequests: { type: 'integer', description: 'Requests each version needs in a window; fewer is Inconclusive. Default 200.', minimum: 1 },
  maxHold: duration('How long a step may stay Inconclusive before onInconclusive decides. Default 5m.'),
  onInconclusive: str('After maxHold: rollback, promote, or hold (until promoted or rolled back by hand). Default rollback.', { enum: ['rollback', 'promote', 'hold'] }),
  latency,
  errors,
  prometheus,
};

/** `spec.transition.analysis`. */
export const analysisSchema: SchemaNode = object(
  'Canary analysis: compare this version with the previous one over each window and gate each step (GRADUAL with steps, CONCURRENT; not with percentagePerRequest).',
  {
    interval: duration('CONCURRENT: length of each analysis window. Default 30s. (GRADUAL steps use each step\u2019s pause.)'),
    ...common,
  },
);

/** `spec.transition.steps[i].analysis`: overrides the transition's analysis for the gate after this step. */
export const stepAnalysisSchema: SchemaNode = object(
  'Analysis for the gate after this step\u2019s pause; fields given here override spec.transition.analysis (latency and errors field by field, prometheus as a whole).',
  common,
);

/** CEL rules for the transition node (Kubernetes ≥ 1.25); locally normalizeTransitionAnalysis says the same. */
export const ANALYSIS_TRANSITION_VALIDATIONS = [
  {
    rule: '!has(self.analysis) || !has(self.percentagePerRequest)',
    message: 'analysis does not work with percentagePerRequest (the ramp can finish before any window fills); use steps',
  },
];
