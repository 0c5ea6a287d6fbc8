import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { normalizeAppVersion, parseAppVersionText } from '../controller/load.js';
import { buildCrd } from '../controller/crd.js';
import { MoltValidationErrors, type MoltError } from '../common/errors.js';
import { compareOptions, compareResponses } from '../common/preflight-diff.js';

const HEAD = 'apiVersion: molt.dev/v1alpha1\nkind: AppVersion\nmetadata: { name: shop-v2 }\nspec:\n  app: shop\n  version: "2.0.0"\n  servers: [{host: 127.0.0.1, port: 8081}]\n';
// HEAD is 7 lines: what follows starts on line 8.

function parseOk(text: string) {
  const r = parseAppVersionText(HEAD + text, 'f.yaml');
  assert.deepEqual(r.errors.map(String), []);
  return r.resources[0]!.spec;
}

function errors(text: string): MoltError[] {
  const r = parseAppVersionText(HEAD + text, 'f.yaml');
  assert.equal(r.resources.length, 0, 'no resource from an invalid document');
  return r.errors;
}

function oneError(text: string): { where: string; path: string | undefined; message: string } {
  const e = errors(text);
  assert.equal(e.length, 1, e.map(String).join('\n'));
  return { where: `${e[0]!.location.line}:${e[0]!.location.column}`, path: e[0]!.location.path, message: e[0]!.message };
}

describe('spec.preflight: valid', () => {
  it('absent: no preflight; callsPerInteraction defaults to 1', () => {
    const spec = parseOk('');
    assert.equal(spec.preflight, undefined);
    assert.equal(spec.callsPerInteraction, 1);
  });

  it('empty: every default', () => {
    const spec = parseOk('  preflight: {}\n');
    assert.deepEqual(spec.preflight, {
      maxDurationMs: 120_000,
      onNoTraffic: 'reject',
      replay: { requests: 200, setHeaders: {} },
      shadow: { percent: 0, minRequests: 100 },
      compare: { status: true, headers: ['content-type'], body: 'auto', ignore: [], noise: 'auto' },
      pass: { maxMismatchRate: 0, maxErrorRate: 0, maxLatencyRatio: 2 },
      unsafeMethods: false,
      hooks: [],
      keepFailed: false,
      redact: { headers: [], queryParams: [], keep: [] },
    });
  });

  it('the issue\'s example, field for field', () => {
    const spec = parseOk(`  keepFailed: true
  transition: { mode: GRADUAL, steps: [{weight: 10, pause: 1m}, {weight: 100}], callsPerInteraction: 3 }
  preflight:
    maxDuration: 2m
    onNoTraffic: reject
    replay: { requests: 200, headers: { set: { authorization: "Bearer test-token" } } }
    shadow: { percent: 100, minRequests: 100 }
    compare:
      status: true
      headers: [content-type, ETag]
      body: auto
      ignore: ["$.generatedAt", "$.items[*].updatedAt", "header:etag"]
      noise: auto
    pass: { maxMismatchRate: 0, maxErrorRate: 0, maxLatencyRatio: 2.0 }
    unsafeMethods: false
    hooks: [{ url: http://127.0.0.1:7000/check, timeout: 30s }, { url: "https://hooks.example/a?b=1" }]
    redact: { headers: [X-Api-Key], queryParams: [token], keep: [cookie] }
`);
    assert.equal(spec.callsPerInteraction, 3);
    assert.equal(spec.transition.mode, 'GRADUAL');
    assert.equal((spec.transition as unknown as Record<string, unknown>).callsPerInteraction, undefined, 'not in the routing table\'s TransitionConfig');
    const p = spec.preflight!;
    assert.equal(p.maxDurationMs, 120_000);
    assert.deepEqual(p.replay, { requests: 200, setHeaders: { authorization: 'Bearer test-token' } });
    assert.deepEqual(p.shadow, { percent: 100, minRequests: 100 });
    assert.deepEqual(p.compare, { status: true, headers: ['content-type', 'etag'], body: 'auto', ignore: ['$.generatedAt', '$.items[*].updatedAt', 'header:etag'], noise: 'auto' });
    assert.deepEqual(p.pass, { maxMismatchRate: 0, maxErrorRate: 0, maxLatencyRatio: 2 });
    assert.deepEqual(p.hooks, [{ url: 'http://127.0.0.1:7000/check', timeoutMs: 30_000 }, { url: 'https://hooks.example/a?b=1', timeoutMs: 30_000 }]);
    assert.equal(p.keepFailed, true, 'defaults to spec.keepFailed');
    assert.deepEqual(p.redact, { headers: ['x-api-key'], queryParams: ['token'], keep: ['cookie'] });
    // the compare config drives the diff directly
    const opts = compareOptions(p.compare);
    const r = (etag: string, at: number) => ({ status: 200, headers: [['content-type', 'application/json'], ['etag', etag]] as Array<[string, string]>, body: Buffer.from(JSON.stringify({ generatedAt: at, items: [{ updatedAt: at, price: 1 }] })), bodyTruncated: false });
    assert.deepEqual(compareResponses(r('"a"', 1), r('"b"', 2), opts).differences, []);
  });

  it('shadow given without percent copies everything; without shadow minRequests follows replay.requests', () => {
    assert.deepEqual(parseOk('  preflight: { shadow: {} }\n').preflight!.shadow, { percent: 100, minRequests: 100 });
    assert.deepEqual(parseOk('  preflight: { replay: { requests: 30 } }\n').preflight!.shadow, { percent: 0, minRequests: 30 });
    assert.deepEqual(parseOk('  preflight: { replay: { requests: 0 } }\n').preflight!.shadow, { percent: 0, minRequests: 0 });
    assert.equal(parseOk('  preflight: { keepFailed: false }\n  keepFailed: true\n').preflight!.keepFailed, false);
  });

  it('a changed preflight is a changed spec (a new test)', () => {
    const a = parseAppVersionText(HEAD + '  preflight: { maxDuration: 1m }\n', 'f.yaml').resources[0]!;
    const b = parseAppVersionText(HEAD + '  preflight: { maxDuration: 2m }\n', 'f.yaml').resources[0]!;
    assert.notEqual(a.specHash, b.specHash);
  });
});

describe('spec.preflight: errors with file:line:column and field path', () => {
  const table: Array<[string, string, string, string, RegExp]> = [
    // name, YAML after HEAD, line:col, path, message
    ['invalid ignore path (post-schema check)', '  preflight:\n    compare:\n      ignore: ["$.a", "$.b[*].c", "$.items[x]"]\n', '10:35', 'spec.preflight.compare.ignore[2]', /invalid ignore path "\$\.items\[x\]": expected an index, "\*" or a quoted name after "\[" at character 9 \("x"\)/],
    ['ignore path in block style', '  preflight:\n    compare:\n      ignore:\n        - $.ok\n        - items.x\n', '12:11', 'spec.preflight.compare.ignore[1]', /expected "\$"/],
    ['percent over 100', '  preflight: { shadow: { percent: 150 } }\n', '8:35', 'spec.preflight.shadow.percent', /must be <= 100, got 150/],
    ['negative percent', '  preflight: { shadow: { percent: -1 } }\n', '8:35', 'spec.preflight.shadow.percent', /must be >= 0, got -1/],
    ['rate over 1', '  preflight:\n    pass: { maxErrorRate: 5 }\n', '9:27', 'spec.preflight.pass.maxErrorRate', /must be <= 1, got 5/],
    ['latency ratio 0', '  preflight:\n    pass: { maxLatencyRatio: 0 }\n', '9:30', 'spec.preflight.pass.maxLatencyRatio', /must be > 0, got 0/],
    ['duration without a unit', '  preflight: { maxDuration: "120" }\n', '8:29', 'spec.preflight.maxDuration', /has no unit; write "120s"/],
    ['duration in words', '  preflight: { maxDuration: 2 minutes }\n', '8:29', 'spec.preflight.maxDuration', /invalid duration "2 minutes"/],
    ['zero hook timeout', '  preflight:\n    hooks: [{ url: "http://127.0.0.1:7000/check", timeout: 0s }]\n', '9:60', 'spec.preflight.hooks[0].timeout', /must be longer than 0/],
    ['hook URL not http', '  preflight:\n    hooks:\n      - url: ftp://hooks.example/x\n', '10:14', 'spec.preflight.hooks[0].url', /expected an absolute http\(s\) URL such as "http:\/\/127\.0\.0\.1:7000\/check", got the string "ftp:\/\/hooks\.example\/x"/],
    ['hook URL the schema lets through but URL does not', '  preflight:\n    hooks:\n      - url: "http://[::1/x"\n', '10:14', 'spec.preflight.hooks[0].url', /expected an absolute http\(s\) URL/],
    ['hook without url', '  preflight:\n    hooks:\n      - timeout: 1s\n', '10:9', 'spec.preflight.hooks[0].url', /missing required field spec\.preflight\.hooks\[0\]\.url/],
    ['onNoTraffic typo', '  preflight: { onNoTraffic: rejct }\n', '8:29', 'spec.preflight.onNoTraffic', /expected one of reject, pass, wait, got the string "rejct"; did you mean reject\?/],
    ['body mode', '  preflight: { compare: { body: json } }\n', '8:33', 'spec.preflight.compare.body', /expected one of auto, bytes, none/],
    ['unknown field', '  preflight: { compare: { ignores: [] } }\n', '8:27', 'spec.preflight.compare.ignores', /unknown field spec\.preflight\.compare\.ignores; did you mean ignore\?/],
    ['header name with a space', '  preflight: { compare: { headers: ["content type"] } }\n', '8:37', 'spec.preflight.compare.headers[0]', /expected a header name/],
    ['setting a header molt writes', '  preflight:\n    replay: { headers: { set: { X-Molt-Shadow: "0" } } }\n', '9:33', 'spec.preflight.replay.headers.set.X-Molt-Shadow', /x-molt-shadow cannot be set: molt writes it itself/],
    ['setting a header twice', '  preflight:\n    replay: { headers: { set: { a: "1", A: "2" } } }\n', '9:41', 'spec.preflight.replay.headers.set.A', /header a is set twice/],
    ['minRequests that can never be reached', '  preflight:\n    replay: { requests: 10 }\n    shadow: { percent: 0, minRequests: 50 }\n', '10:40', 'spec.preflight.shadow.minRequests', /minRequests 50 can never be reached: replay\.requests is 10 and no live requests are copied/],
    ['callsPerInteraction 0', '  transition: { callsPerInteraction: 0 }\n', '8:38', 'spec.transition.callsPerInteraction', /must be >= 1, got 0/],
    ['callsPerInteraction not whole', '  transition: { callsPerInteraction: 1.5 }\n', '8:38', 'spec.transition.callsPerInteraction', /expected a whole number/],
  ];
  for (const [name, yaml, where, path, message] of table) {
    it(name, () => {
      const e = oneError(yaml);
      assert.equal(e.path, path, e.message);
      assert.match(e.message, message);
      assert.equal(e.where, where, `${e.path}: ${e.message}`);
    });
  }

  it('several mistakes are all reported', () => {
    const e = errors('  preflight:\n    maxDuration: 0s\n    compare: { ignore: ["$.", "header:"] }\n');
    assert.deepEqual(e.map((x) => x.location.path), ['spec.preflight.maxDuration', 'spec.preflight.compare.ignore[0]', 'spec.preflight.compare.ignore[1]']);
  });

  it('API/Kubernetes objects get the field path', () => {
    assert.throws(
      () => normalizeAppVersion({ apiVersion: 'molt.dev/v1alpha1', kind: 'AppVersion', metadata: { name: 'a' }, spec: { app: 'a', version: '1', servers: [{ host: 'h', port: 1 }], preflight: { compare: { ignore: ['$.ok', 'nope'] } } } }, 'api'),
      (e: unknown) => e instanceof MoltValidationErrors && e.errors.length === 1 && e.errors[0]!.location.path === 'spec.preflight.compare.ignore[1]',
    );
  });
});

describe('CRD', () => {
  type Node = { properties?: Record<string, Node>; items?: Node; enum?: string[]; [k: string]: unknown };
  const root = (buildCrd() as { spec: { versions: Array<{ schema: { openAPIV3Schema: Node } }> } }).spec.versions[0]!.schema.openAPIV3Schema;
  const spec = root.properties!.spec!;

  it('spec.preflight has exactly the issue\'s field names (plus keepFailed, redact)', () => {
    const pf = spec.properties!.preflight!;
    assert.deepEqual(Object.keys(pf.properties!), ['maxDuration', 'onNoTraffic', 'replay', 'shadow', 'compare', 'pass', 'unsafeMethods', 'hooks', 'keepFailed', 'redact']);
    assert.deepEqual(Object.keys(pf.properties!.replay!.properties!), ['requests', 'headers']);
    assert.deepEqual(Object.keys(pf.properties!.replay!.properties!.headers!.properties!), ['set']);
    assert.deepEqual(Object.keys(pf.properties!.shadow!.properties!), ['percent', 'minRequests']);
    assert.deepEqual(Object.keys(pf.properties!.compare!.properties!), ['status', 'headers', 'body', 'ignore', 'noise']);
    assert.deepEqual(Object.keys(pf.properties!.pass!.properties!), ['maxMismatchRate', 'maxErrorRate', 'maxLatencyRatio']);
    assert.deepEqual(Object.keys(pf.properties!.hooks!.items!.properties!), ['url', 'timeout']);
    assert.deepEqual(pf.properties!.onNoTraffic!.enum, ['reject', 'pass', 'wait']);
    assert.deepEqual(pf.properties!.compare!.properties!.body!.enum, ['auto', 'bytes', 'none']);
    assert.deepEqual(pf.properties!.compare!.properties!.noise!.enum, ['auto', 'off']);
    assert.ok(spec.properties!.transition!.properties!.callsPerInteraction);
  });

  it('status.preflight has the issue\'s shape', () => {
    const st = root.properties!.status!.properties!.preflight!;
    assert.deepEqual(Object.keys(st.properties!), ['verdict', 'compared', 'mismatched', 'errors', 'dropped', 'skipped', 'topMismatches', 'latency', 'note', 'message', 'reason', 'hooksOnly']);
    assert.deepEqual(Object.keys(st.properties!.topMismatches!.items!.properties!), ['path', 'count', 'examples']);
    assert.deepEqual(Object.keys(st.properties!.topMismatches!.items!.properties!.examples!.items!.properties!), ['old', 'new']);
    assert.deepEqual(Object.keys(st.properties!.latency!.properties!), ['oldP50', 'oldP95', 'newP50', 'newP95']);
    assert.deepEqual(Object.keys(root.properties!.status!.properties!.mixedVersionRisk!.properties!), ['current', 'mean', 'max']);
  });
});
