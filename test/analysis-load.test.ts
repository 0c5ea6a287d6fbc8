// spec.transition.analysis through the real loader (issue 12): normalised beside the transition, and bad
// input reported with file:line and the field path.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAppVersionText } from '../controller/load.js';

const HEAD = 'apiVersion: molt.dev/v1alpha1\nkind: AppVersion\nmetadata: { name: shop-v2 }\nspec:\n  app: shop\n  version: "2.0.0"\n  servers: [{host: 127.0.0.1, port: 8081}]\n';

function errors(text: string): string[] {
  const r = parseAppVersionText(HEAD + text, 'f.yaml');
  assert.equal(r.resources.length, 0, 'no resource from an invalid document');
  return r.errors.map(String);
}

test('a GRADUAL transition with analysis loads: the gate of each paused step, a step override merged in', () => {
  const r = parseAppVersionText(HEAD + [
    '  transition:',
    '    mode: GRADUAL',
    '    steps:',
    '      - { weight: 10, pause: 20s }',
    '      - { weight: 50, pause: 20s, analysis: { latency: { maxIncrease: "50%" } } }',
    '      - { weight: 100 }',
    '    analysis:',
    '      initialDelay: 2s',
    '      minRequests: 50',
    '      onInconclusive: hold',
    '      errors: { maxIncrease: "1pp" }',
    '',
  ].join('\n'), 'f.yaml');
  assert.deepEqual(r.errors.map(String), []);
  const spec = r.resources[0]!.spec;
  const a = spec.analysis!;
  assert.equal(a.analysis!.initialDelayMs, 2000);
  assert.equal(a.steps.length, 3);
  assert.equal(a.steps[0]!.latency!.maxIncrease, 0.2);
  assert.equal(a.steps[1]!.latency!.maxIncrease, 0.5);
  assert.equal(a.steps[1]!.errors!.maxIncrease, 0.01, 'the transition\'s errors stay under the step\'s override');
  assert.equal(a.steps[1]!.onInconclusive, 'hold');
  assert.equal(a.steps[2], undefined, 'the last step has no pause: no gate');
  assert.equal((spec.transition as unknown as Record<string, unknown>).analysis, undefined, 'the sidecar\'s transition does not carry it');
});

test('analysis with percentagePerRequest is an error at the analysis key, with file:line', () => {
  const e = errors('  transition:\n    mode: GRADUAL\n    percentagePerRequest: 1\n    analysis: { minRequests: 10 }\n');
  assert.equal(e.length, 1, e.join('\n'));
  assert.match(e[0]!, /f\.yaml:11:\d+/);
  assert.match(e[0]!, /spec\.transition\.analysis/);
  assert.match(e[0]!, /percentagePerRequest/);
});

test('schema errors in an analysis block name the line, the field and what was expected', () => {
  const e = errors([
    '  transition:',
    '    mode: GRADUAL',
    '    steps: [{ weight: 10, pause: 10s }, { weight: 100 }]',
    '    analysis:',
    '      latency: { maxIncrease: 20 }',
    '      errors: { maxIncrease: "0.5%" }',
    '      onInconclusive: retry',
    '',
  ].join('\n'));
  const all = e.join('\n');
  assert.match(all, /f\.yaml:12:\d+.*spec\.transition\.analysis\.latency\.maxIncrease/);
  assert.match(all, /f\.yaml:13:\d+.*spec\.transition\.analysis\.errors\.maxIncrease.*percentage points such as "0\.5pp"/);
  assert.match(all, /f\.yaml:14:\d+.*spec\.transition\.analysis\.onInconclusive/);
});

test('semantic errors: an unknown query placeholder; a pause shorter than initialDelay', () => {
  const q = errors([
    '  transition:',
    '    mode: GRADUAL',
    '    steps: [{ weight: 10, pause: 10s }, { weight: 100 }]',
    '    analysis:',
    '      prometheus:',
    '        address: http://127.0.0.1:9091',
    '        queries: [{ name: ok, query: "up{job=\\"{{canary}}\\"}", successCondition: ">= 0.99" }]',
    '',
  ].join('\n'));
  assert.match(q.join('\n'), /f\.yaml:14:\d+.*queries\[0\]\.query.*unknown placeholder \{\{canary\}\}/);
  const p = errors('  transition:\n    mode: GRADUAL\n    steps: [{ weight: 10, pause: 3s }, { weight: 100 }]\n    analysis: { initialDelay: 5s }\n');
  assert.match(p.join('\n'), /f\.yaml:10:\d+.*spec\.transition\.steps\[0\]\.pause.*leaves no analysis window after initialDelay 5s/);
});
