import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Ajv } from 'ajv';
import {
  ANALYSIS_DEFAULTS, mergeAnalysis, normalizeAnalysis, normalizeTransitionAnalysis, parsePercent, parsePercentagePoints,
} from '../controller/analysis/config.js';
import { analysisSchema, stepAnalysisSchema, ANALYSIS_PATTERN_HINTS } from '../controller/analysis/schema-fragment.js';
import { appVersionSchema, localSchema } from '../controller/schema.js';

const validation = (re: RegExp) => (e: any) => e.code === 'MOLT_ERR_VALIDATION' && re.test(e.message);

test('"20%" and "0.5pp" parse; mixing them up or leaving out the unit is a clear error', () => {
  assert.equal(parsePercent('20%'), 0.2);
  assert.equal(parsePercent(' 2.5% '), 0.025);
  assert.equal(parsePercent('0%'), 0);
  assert.equal(parsePercentagePoints('0.5pp'), 0.005);
  assert.equal(parsePercentagePoints('3pp'), 0.03);
  assert.throws(() => parsePercent('20'), validation(/no unit; write "20%"/));
  assert.throws(() => parsePercent('20pp'), validation(/percentage points; latency takes a relative increase such as "20%"/));
  assert.throws(() => parsePercent(0.2), validation(/"20%" \(quoted\), got the number 0\.2/));
  assert.throws(() => parsePercent('-5%'), validation(/must not be negative/));
  assert.throws(() => parsePercent('twenty'), validation(/expected a percentage such as "20%", got "twenty"/));
  assert.throws(() => parsePercentagePoints('0.5%'), validation(/ambiguous for an error ratio; write percentage points, e\.g\. "0\.5pp"/));
  assert.throws(() => parsePercentagePoints('0.5'), validation(/no unit; write "0\.5pp"/));
  assert.throws(() => parsePercentagePoints('150pp'), validation(/more than 100 percentage points/));
});

test('the issue\'s example block normalises to milliseconds, fractions and a parsed condition', () => {
  const r = normalizeAnalysis({
    interval: '30s', initialDelay: '5s', minRequests: 200, maxHold: '5m', onInconclusive: 'rollback',
    latency: { maxIncrease: '20%', confidence: 0.98 },
    errors: { maxIncrease: '0.5pp', confidence: 0.98, statusCodes: [503, 500, 502, 504, 500] },
    prometheus: {
      address: 'http://127.0.0.1:9091',
      queries: [{ name: 'checkout-success', query: 'sum(rate(shop_checkout_ok_total{version="{{version}}"}[1m])) / sum(rate(shop_checkout_total{version="{{version}}"}[1m]))', successCondition: '>= 0.99' }],
    },
  }, ['spec', 'transition', 'analysis']);
  assert.deepEqual(r.issues, []);
  const c = r.config!;
  assert.equal(c.intervalMs, 30_000);
  assert.equal(c.initialDelayMs, 5_000);
  assert.equal(c.maxHoldMs, 300_000);
  assert.deepEqual(c.latency, { maxIncrease: 0.2, confidence: 0.98 });
  assert.deepEqual(c.errors, { maxIncrease: 0.005, confidence: 0.98, include4xx: false, statusCodes: [500, 502, 503, 504] });
  assert.equal(c.prometheus!.timeoutMs, ANALYSIS_DEFAULTS.prometheusTimeoutMs);
  assert.deepEqual(c.prometheus!.queries[0]!.condition, { op: '>=', threshold: 0.99, text: '>= 0.99' });
});

test('an empty analysis block means the defaults: latency +20 % and errors +0.5 pp at 98 %', () => {
  const c = normalizeAnalysis({}, ['a']).config!;
  assert.deepEqual(c.latency, { maxIncrease: 0.2, confidence: 0.98 });
  assert.deepEqual(c.errors, { maxIncrease: 0.005, confidence: 0.98, include4xx: false });
  assert.equal(c.prometheus, null);
  assert.equal(c.minRequests, 200);
  assert.equal(c.onInconclusive, 'rollback');
});

test('bad fields are reported together, each with its path', () => {
  const r = normalizeAnalysis({
    initialDelay: '5 seconds', minRequests: 0, onInconclusive: 'retry',
    latency: { maxIncrease: '20' }, errors: { maxIncrease: '1%', confidence: 1, statusCodes: [503], include4xx: true },
    prometheus: {
      address: 'prometheus:9090',
      queries: [
        { name: 'latency', query: 'x{v="{{canary}}"}', successCondition: '0.99' },
        { name: 'b', query: 'y', successCondition: '=> 1' },
        { name: 'b', query: 'z' },
      ],
    },
  }, ['spec', 'transition', 'analysis']);
  assert.equal(r.config, undefined);
  const byPath = new Map(r.issues.map((i) => [i.path.join('.'), i.message]));
  const expect: [string, RegExp][] = [
    ['spec.transition.analysis.initialDelay', /invalid duration/],
    ['spec.transition.analysis.minRequests', /whole number >= 1/],
    ['spec.transition.analysis.onInconclusive', /rollback, promote, hold/],
    ['spec.transition.analysis.latency.maxIncrease', /write "20%"/],
    ['spec.transition.analysis.errors.maxIncrease', /"1pp"/],
    ['spec.transition.analysis.errors.confidence', /up to \(not including\) 1/],
    ['spec.transition.analysis.errors.include4xx', /statusCodes .* or include4xx, not both/],
    ['spec.transition.analysis.prometheus.address', /must start with http/],
    ['spec.transition.analysis.prometheus.queries.0.name', /built-in metric/],
    ['spec.transition.analysis.prometheus.queries.0.query', /unknown placeholder \{\{canary\}\}/],
    ['spec.transition.analysis.prometheus.queries.0.successCondition', /no operator/],
    ['spec.transition.analysis.prometheus.queries.1.successCondition', /did you mean ">="/],
    ['spec.transition.analysis.prometheus.queries.2.name', /used twice/],
    ['spec.transition.analysis.prometheus.queries.2.successCondition', /is required/],
  ];
  for (const [p, re] of expect) assert.match(byPath.get(p) ?? '(missing)', re, p);
  assert.equal(r.issues.length, expect.length, JSON.stringify(r.issues, null, 1));
});

test('an analysis that judges nothing is an error, not a silent pass', () => {
  const r = normalizeAnalysis({ latency: { enabled: false }, errors: { enabled: false } }, ['x']);
  assert.match(r.issues[0]!.message, /judges nothing/);
});

const steps = [{ weight: 10, pause: '1m' }, { weight: 50, pause: '2m' }, { weight: 100 }];

test('cross-field: analysis with percentagePerRequest is an error (and with INSTANT or SESSION)', () => {
  const r = normalizeTransitionAnalysis({ mode: 'GRADUAL', percentagePerRequest: 1, analysis: {} });
  assert.deepEqual(r.issues.map((i) => i.path.join('.')), ['spec.transition.analysis']);
  assert.match(r.issues[0]!.message, /does not work with percentagePerRequest.*before any analysis window fills; use steps/);
  const viaStep = normalizeTransitionAnalysis({ mode: 'GRADUAL', percentagePerRequest: 1, steps: [{ weight: 10, pause: '1m', analysis: {} }] });
  assert.match(viaStep.issues[0]!.message, /percentagePerRequest/);
  const instant = normalizeTransitionAnalysis({ mode: 'INSTANT', analysis: {} });
  assert.match(instant.issues[0]!.message, /GRADUAL with steps and to mode CONCURRENT \(mode is INSTANT\)/);
  assert.equal(normalizeTransitionAnalysis({ mode: 'SESSION', analysis: {} }).issues.length, 1);
});

test('GRADUAL steps: every step with a pause gets a gate; a step\'s analysis overrides field by field', () => {
  const r = normalizeTransitionAnalysis({
    mode: 'GRADUAL',
    analysis: { initialDelay: '10s', latency: { maxIncrease: '20%', confidence: 0.99 } },
    steps: [steps[0], { ...steps[1], analysis: { latency: { maxIncrease: '50%' }, minRequests: 50 } }, steps[2]],
  });
  assert.deepEqual(r.issues, []);
  assert.equal(r.analysis!.latency!.maxIncrease, 0.2);
  assert.equal(r.steps[0]!.latency!.maxIncrease, 0.2);
  assert.deepEqual(r.steps[1]!.latency, { maxIncrease: 0.5, confidence: 0.99 }, 'confidence kept from the transition');
  assert.equal(r.steps[1]!.minRequests, 50);
  assert.equal(r.steps[1]!.initialDelayMs, 10_000);
  assert.equal(r.steps[2], undefined, 'the last step (no pause) has no gate');
  // Without any analysis: nothing, no issues.
  assert.deepEqual(normalizeTransitionAnalysis({ mode: 'GRADUAL', steps }), { steps: [undefined, undefined, undefined], issues: [] });
});

test('impossible windows: initialDelay not shorter than a pause or the interval; interval with steps', () => {
  const short = normalizeTransitionAnalysis({ mode: 'GRADUAL', analysis: { initialDelay: '1m' }, steps });
  assert.deepEqual(short.issues.map((i) => i.path.join('.')), ['spec.transition.steps.0.pause']);
  assert.match(short.issues[0]!.message, /pause 1m leaves no analysis window after initialDelay 1m/);
  const interval = normalizeTransitionAnalysis({ mode: 'GRADUAL', analysis: { interval: '30s' }, steps });
  assert.match(interval.issues[0]!.message, /interval applies to mode CONCURRENT/);
  const conc = normalizeTransitionAnalysis({ mode: 'CONCURRENT', analysis: { interval: '10s', initialDelay: '10s' } });
  assert.match(conc.issues[0]!.message, /initialDelay 10s leaves no window: it must be shorter than interval 10s/);
  const ok = normalizeTransitionAnalysis({ mode: 'CONCURRENT', analysis: { interval: '30s' } });
  assert.equal(ok.analysis!.intervalMs, 30_000);
  const lastStep = normalizeTransitionAnalysis({ mode: 'GRADUAL', steps: [steps[0], steps[1], { weight: 100, analysis: {} }] });
  assert.match(lastStep.issues[0]!.message, /without a pause has no analysis window/);
});

test('mergeAnalysis: prometheus is replaced whole, latency/errors merged one level', () => {
  const base = { minRequests: 100, latency: { maxIncrease: '20%', confidence: 0.98 }, prometheus: { address: 'http://a', queries: [{ name: 'a' }] } };
  const m = mergeAnalysis(base, { latency: { confidence: 0.9 }, prometheus: { address: 'http://b', queries: [] } })!;
  assert.deepEqual(m.latency, { maxIncrease: '20%', confidence: 0.9 });
  assert.deepEqual(m.prometheus, { address: 'http://b', queries: [] });
  assert.equal(m.minRequests, 100);
  assert.equal(mergeAnalysis(undefined, undefined), undefined);
});

/** Every node typed (or int-or-string / preserve-unknown), as Kubernetes requires of a structural schema. */
function assertStructural(node: Record<string, unknown>, at: string): void {
  assert.ok(node.type || node['x-kubernetes-int-or-string'], `${at}: no type`);
  for (const [k, child] of Object.entries((node.properties ?? {}) as Record<string, Record<string, unknown>>)) assertStructural(child, `${at}.${k}`);
  if (node.items) assertStructural(node.items as Record<string, unknown>, `${at}[]`);
}

test('the schema fragment is structural and wired into the loader\'s strict local schema', () => {
  assertStructural(analysisSchema, 'analysis');
  assertStructural(stepAnalysisSchema, 'step.analysis');
  // Wired in controller/schema.ts (the real schema, not a copy).
  const transition = (appVersionSchema as any).properties.spec.properties.transition;
  assert.equal(transition.properties.analysis, analysisSchema);
  assert.equal(transition.properties.steps.items.properties.analysis, stepAnalysisSchema);
  const validate = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true }).compile(localSchema());
  const doc = (analysis: unknown, stepAnalysis?: unknown) => ({
    apiVersion: 'molt.dev/v1alpha1', kind: 'AppVersion', metadata: { name: 'shop-v2' },
    spec: {
      app: 'shop', version: '2.0.0', servers: [{ host: '127.0.0.1', port: 8080 }],
      transition: { mode: 'GRADUAL', steps: [{ weight: 10, pause: '1m', ...(stepAnalysis ? { analysis: stepAnalysis } : {}) }, { weight: 100 }], analysis },
    },
  });
  const good = {
    initialDelay: '5s', minRequests: 200, maxHold: '5m', onInconclusive: 'hold',
    latency: { maxIncrease: '20%', confidence: 0.98 }, errors: { maxIncrease: '0.5pp', statusCodes: [500, 503] },
    prometheus: { address: 'https://prom.example.com/p', timeout: '3s', queries: [{ name: 'checkout-success', query: 'up', successCondition: '>= 0.99' }] },
  };
  assert.ok(validate(doc(good, { latency: { maxIncrease: '50%' } })), JSON.stringify(validate.errors));
  const bad: [unknown, string][] = [
    [{ ...good, latency: { maxIncrease: '20pp' } }, 'pattern'],
    [{ ...good, errors: { maxIncrease: '0.5%' } }, 'pattern'],
    [{ ...good, onInconclusive: 'retry' }, 'enum'],
    [{ ...good, minRequests: 0 }, 'minimum'],
    [{ ...good, latency: { confidence: 0.3 } }, 'minimum'],
    [{ ...good, prometheus: { ...good.prometheus, queries: [{ name: 'x', query: 'up', successCondition: '0.99' }] } }, 'pattern'],
    [{ ...good, prometheus: { address: 'http://x', queries: [] } }, 'minItems'],
    [{ ...good, colour: 'red' }, 'additionalProperties'],
  ];
  for (const [analysis, keyword] of bad) {
    assert.equal(validate(doc(analysis)), false, JSON.stringify(analysis));
    assert.ok(validate.errors!.some((e) => e.keyword === keyword), `${JSON.stringify(analysis)}: ${JSON.stringify(validate.errors)}`);
  }
  // A step override has no interval (CONCURRENT only): unknown there.
  assert.equal(validate(doc(good, { interval: '30s' })), false);
  for (const pattern of Object.keys(ANALYSIS_PATTERN_HINTS)) assert.doesNotThrow(() => new RegExp(pattern));
});
