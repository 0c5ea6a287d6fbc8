import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { loadAppVersionFile, normalizeAppVersion, parseAppVersionText } from '../controller/load.js';
import { formatDuration, parseDuration, parseQuantity } from '../common/duration.js';
import { MoltError, MoltValidationErrors } from '../common/errors.js';
import { DEFAULT_FAILURE_POLICY, DEFAULT_TRANSITION } from '../common/protocol.js';

const HEAD = 'apiVersion: molt.dev/v1alpha1\nkind: AppVersion\nmetadata: { name: shop-v2 }\nspec:\n  app: shop\n  version: "2.0.0"\n';

function parseOk(text: string) {
  const r = parseAppVersionText(text, 'f.yaml');
  assert.deepEqual(r.errors.map(String), []);
  return r.resources;
}

/** Exactly one error; returns it. */
function parseBad(text: string): MoltError {
  const r = parseAppVersionText(text, 'f.yaml');
  assert.equal(r.resources.length, 0, 'no resource from an invalid document');
  assert.equal(r.errors.length, 1, `one error expected, got:\n${r.errors.map(String).join('\n')}`);
  return r.errors[0]!;
}

function assertAt(e: MoltError, code: string, line: number, column: number, p: string): void {
  assert.deepEqual(
    { code: e.code, line: e.location.line, column: e.location.column, path: e.location.path, file: e.location.file },
    { code, line, column, path: p, file: 'f.yaml' },
    e.toString(),
  );
}

describe('valid resources', () => {
  it('servers runtime with every default applied', () => {
    const [av] = parseOk(HEAD + '  hosts: [Shop.Example.com]\n  servers: [{host: 127.0.0.1, port: 8081}]\n');
    assert.equal(av!.metadata.name, 'shop-v2');
    assert.equal(av!.source, 'f.yaml');
    assert.match(av!.specHash, /^[0-9a-f]{16}$/);
    const s = av!.spec;
    assert.deepEqual(s.hosts, ['shop.example.com']);
    assert.equal(s.default, false);
    assert.deepEqual(s.transition, DEFAULT_TRANSITION);
    assert.deepEqual(s.failurePolicy, DEFAULT_FAILURE_POLICY);
    assert.deepEqual(s.healthCheck, { intervalMs: 1000, timeoutMs: 1000, startupTimeoutMs: 60000 });
    assert.equal(s.keepFailed, false);
    assert.equal(s.versionCookie, 'molt-version-shop');
    assert.equal(s.bucketCookie, 'molt-bucket-shop');
    assert.deepEqual(s.runtime, { kind: 'servers', servers: [{ host: '127.0.0.1', port: 8081 }] });
  });

  it('process runtime, SESSION, liberal env/args', () => {
    const [av] = parseOk(HEAD + `  transition: { mode: SESSION, sessionTimeout: 90 }
  healthCheck: { path: /healthz, interval: 500ms, startupTimeout: 2m }
  process: { command: node, args: [server.js, --port, 8080], env: { A: b, N: 1, T: true } }
`);
    assert.equal(av!.spec.transition.mode, 'SESSION');
    assert.equal(av!.spec.transition.sessionTimeoutSeconds, 90);
    assert.deepEqual(av!.spec.healthCheck, { path: '/healthz', intervalMs: 500, timeoutMs: 1000, startupTimeoutMs: 120000 });
    assert.deepEqual(av!.spec.runtime, {
      kind: 'process',
      process: { command: 'node', args: ['server.js', '--port', '8080'], env: { A: 'b', N: '1', T: 'true' }, replicas: 1 },
    });
  });

  it('docker runtime, GRADUAL steps, defaults', () => {
    const [av] = parseOk(HEAD + `  transition:
    mode: GRADUAL
    steps: [{weight: 5, pause: 60s}, {weight: 50, pause: 1h30m}, {weight: 100}]
  failurePolicy: { window: 30s, connectTimeout: 500ms, failureStatusCodes: [503, 500, 503] }
  docker: { image: shop, containerPort: 8080, memory: 256Mi, portBindings: [{containerPort: 9100, hostPort: 19100}] }
`);
    const t = av!.spec.transition;
    assert.equal(t.mode, 'GRADUAL');
    assert.deepEqual(t.steps, [{ weight: 5, pauseMs: 60000 }, { weight: 50, pauseMs: 5400000 }, { weight: 100 }]);
    assert.equal(av!.spec.failurePolicy.windowSeconds, 30);
    assert.equal(av!.spec.failurePolicy.connectTimeoutMs, 500);
    assert.deepEqual(av!.spec.failurePolicy.failureStatusCodes, [500, 503]);
    assert.equal(av!.spec.runtime.kind, 'docker');
    if (av!.spec.runtime.kind !== 'docker') return;
    const d = av!.spec.runtime.docker;
    assert.equal(d.tag, 'latest');
    assert.equal(d.replicas, 1);
    assert.equal(d.imagePollIntervalMs, 30000);
    assert.equal(d.memory, 256 * 1024 * 1024);
    assert.deepEqual(d.portBindings, [{ containerPort: 9100, hostPort: 19100, protocol: 'tcp' }]);
    assert.deepEqual([d.env, d.volumes, d.binds, d.volumesFrom, d.links, d.privileged, d.checkForNewImages], [{}, [], [], [], [], false, false]);
  });

  it('GRADUAL per request and CONCURRENT', () => {
    const [g] = parseOk(HEAD + '  transition: { mode: GRADUAL, percentagePerRequest: 0.5 }\n  servers: [{host: a, port: 1}]\n');
    assert.equal(g!.spec.transition.percentagePerRequest, 0.5);
    const [c] = parseOk(HEAD + '  transition: { mode: CONCURRENT, duplicateUnsafeMethods: true, maxDuplicateBodySize: 64Ki }\n  servers: [{host: a, port: 1}]\n');
    assert.equal(c!.spec.transition.duplicateUnsafeMethods, true);
    assert.equal(c!.spec.transition.maxDuplicateBodyBytes, 65536);
  });

  it('multi-document files skip empty documents', () => {
    const doc = (n: string, v: string) => HEAD.replace('shop-v2', n).replace('2.0.0', v) + '  servers: [{host: a, port: 1}]\n';
    const res = parseOk(`# leading comment\n---\n${doc('a-1', '1')}---\n---\n# only a comment\n---\n${doc('a-2', '2')}`);
    assert.deepEqual(res.map((r) => r.metadata.name), ['a-1', 'a-2']);
  });

  it('specHash is stable and changes with the spec', () => {
    const a = parseOk(HEAD + '  servers: [{host: a, port: 1}]\n')[0]!;
    const b = parseOk(HEAD + '  servers: [{port: 1, host: a}]\n  keepFailed: false\n')[0]!;
    const c = parseOk(HEAD + '  servers: [{host: a, port: 2}]\n')[0]!;
    assert.equal(a.specHash, b.specHash);
    assert.notEqual(a.specHash, c.specHash);
  });

  it('normalizeAppVersion takes JSON and Kubernetes objects', () => {
    const av = normalizeAppVersion({
      apiVersion: 'molt.dev/v1alpha1', kind: 'AppVersion',
      metadata: { name: 'x', namespace: 'ns', generation: 3, uid: 'u', resourceVersion: '9', labels: { a: 'b' } },
      spec: { app: 'x', version: '1', servers: [{ host: 'h', port: 80 }] },
      status: { phase: 'Serving' },
    }, 'kubernetes');
    assert.deepEqual(av.metadata, { name: 'x', namespace: 'ns', generation: 3, uid: 'u', labels: { a: 'b' } });
    assert.equal(av.source, 'kubernetes');
  });

  it('normalizeAppVersion throws every error, with paths', () => {
    assert.throws(
      () => normalizeAppVersion({ apiVersion: 'molt.dev/v1alpha1', kind: 'AppVersion', metadata: { name: 'x' }, spec: { app: 'x', version: 1, transition: { mode: 'FAST' } } }, 'api'),
      (err: unknown) => {
        assert.ok(err instanceof MoltValidationErrors);
        assert.deepEqual(err.errors.map((e) => e.location.path).sort(), ['spec.transition.mode', 'spec.version']);
        assert.ok(err.errors.every((e) => e.code === 'MOLT_ERR_VALIDATION' && e.location.line === undefined));
        return true;
      },
    );
  });
});

describe('invalid resources: code, line, column, path', () => {
  it('YAML syntax error', () => {
    const e = parseBad(HEAD + '  servers: [{host: a, port: 1}\n');
    assert.equal(e.code, 'MOLT_ERR_YAML_SYNTAX');
    assert.equal(e.location.file, 'f.yaml');
    assert.equal(e.location.line, 8);
    assert.equal(typeof e.location.column, 'number');
  });

  it('duplicate key is a syntax error at the second key', () => {
    const e = parseBad(HEAD + '  app: other\n  servers: [{host: a, port: 1}]\n');
    assert.equal(e.code, 'MOLT_ERR_YAML_SYNTAX');
    assert.deepEqual([e.location.line, e.location.column], [7, 3]);
  });

  it('unknown field, with a suggestion', () => {
    const e = parseBad(HEAD + '  transtion:\n    mode: SESSION\n  servers: [{host: a, port: 1}]\n');
    assertAt(e, 'MOLT_ERR_VALIDATION', 7, 3, 'spec.transtion');
    assert.match(e.message, /did you mean transition\?/);
  });

  it('unknown nested field', () => {
    // two errors: the unknown field, and the missing port
    const r = parseAppVersionText(HEAD + '  servers: [{host: a, prot: 1}]\n', 'f.yaml');
    const unknown = r.errors.find((x) => x.location.path === 'spec.servers[0].prot')!;
    assertAt(unknown, 'MOLT_ERR_VALIDATION', 7, 23, 'spec.servers[0].prot');
    assert.match(unknown.message, /did you mean port\?/);
    assert.equal(r.errors.length, 2);
    assertAt(r.errors[0]!, 'MOLT_ERR_VALIDATION', 7, 13, 'spec.servers[0].port');
  });

  it('wrong type says what was expected', () => {
    const e = parseBad(HEAD + '  docker: { image: shop, containerPort: 80, portBindings: [{containerPort: 1, hostPort: "x"}] }\n');
    assertAt(e, 'MOLT_ERR_VALIDATION', 7, 89, 'spec.docker.portBindings[0].hostPort');
    assert.match(e.message, /expected a whole number, got the string "x"/);
  });

  it('bad enum lists the allowed values', () => {
    const e = parseBad(HEAD + '  transition:\n    mode: GRADUALL\n  servers: [{host: a, port: 1}]\n');
    assertAt(e, 'MOLT_ERR_VALIDATION', 8, 11, 'spec.transition.mode');
    assert.match(e.message, /INSTANT, SESSION, GRADUAL, CONCURRENT/);
    assert.match(e.message, /did you mean GRADUAL\?/);
  });

  it('unquoted version 1.10 gets a hint to quote it, with the original spelling', () => {
    const e = parseBad(HEAD.replace('"2.0.0"', '1.10') + '  servers: [{host: a, port: 1}]\n');
    assertAt(e, 'MOLT_ERR_VALIDATION', 6, 12, 'spec.version');
    assert.match(e.message, /"1\.10"/);
    assert.match(e.message, /quote/);
  });

  it('two runtimes', () => {
    const e = parseBad(HEAD + '  servers: [{host: a, port: 1}]\n  process: { command: node }\n');
    assertAt(e, 'MOLT_ERR_VALIDATION', 8, 3, 'spec.process');
    assert.match(e.message, /exactly one runtime/);
  });

  it('no runtime points at the spec mapping', () => {
    const e = parseBad(HEAD);
    assertAt(e, 'MOLT_ERR_VALIDATION', 5, 3, 'spec');
    assert.match(e.message, /servers, process or docker/);
  });

  it('missing required field points at the parent mapping', () => {
    const e = parseBad(HEAD + '  docker:\n    containerPort: 8080\n');
    assertAt(e, 'MOLT_ERR_VALIDATION', 8, 5, 'spec.docker.image');
    assert.match(e.message, /missing required field/);
  });

  it('bad duration', () => {
    const e = parseBad(HEAD + '  healthCheck:\n    interval: 5 min\n  servers: [{host: a, port: 1}]\n');
    assertAt(e, 'MOLT_ERR_VALIDATION', 8, 15, 'spec.healthCheck.interval');
    assert.match(e.message, /units are ms, s, m and h/);
  });

  it('mode-specific field under another mode', () => {
    const e = parseBad(HEAD + '  transition: { mode: SESSION, percentagePerRequest: 5 }\n  servers: [{host: a, port: 1}]\n');
    assertAt(e, 'MOLT_ERR_VALIDATION', 7, 32, 'spec.transition.percentagePerRequest');
  });

  it('steps must increase', () => {
    const e = parseBad(HEAD + '  transition:\n    mode: GRADUAL\n    steps:\n      - { weight: 50, pause: 1m }\n      - { weight: 40 }\n  servers: [{host: a, port: 1}]\n');
    assertAt(e, 'MOLT_ERR_VALIDATION', 11, 19, 'spec.transition.steps[1].weight');
  });

  it('duplicate name within one file', () => {
    const doc = HEAD + '  servers: [{host: a, port: 1}]\n';
    const r = parseAppVersionText(`${doc}---\n${doc}`, 'f.yaml');
    assert.equal(r.resources.length, 1);
    assert.equal(r.errors.length, 1);
    assertAt(r.errors[0]!, 'MOLT_ERR_DUPLICATE_NAME', 11, 19, 'metadata.name');
  });

  it('wrong apiVersion/kind names what was expected', () => {
    const e = parseBad('apiVersion: apps/v1\nkind: Deployment\nmetadata: { name: x }\nspec: {}\n');
    assertAt(e, 'MOLT_ERR_VALIDATION', 1, 13, 'apiVersion');
    assert.match(e.message, /molt\.dev\/v1alpha1/);
    assert.match(e.message, /AppVersion/);
    const k = parseBad('apiVersion: molt.dev/v1alpha1\nkind: AppVersoin\nmetadata: { name: x }\nspec: {}\n');
    assertAt(k, 'MOLT_ERR_VALIDATION', 2, 7, 'kind');
  });

  it('a document that is not a mapping', () => {
    const e = parseBad('- a\n- b\n');
    assertAt(e, 'MOLT_ERR_VALIDATION', 1, 1, '');
  });

  it('bad name charset', () => {
    const e = parseBad(HEAD.replace('shop-v2', 'Shop_V2') + '  servers: [{host: a, port: 1}]\n');
    assertAt(e, 'MOLT_ERR_VALIDATION', 3, 19, 'metadata.name');
    assert.match(e.message, /lower-case/);
  });

  it('half-written file reports errors and never throws', () => {
    const full = HEAD + '  transition:\n    mode: GRADUAL\n    percentagePerRequest: 5\n  servers:\n    - host: 127.0.0.1\n      port: 8081\n';
    for (let cut = 0; cut < full.length; cut += 7) {
      const r = parseAppVersionText(full.slice(0, cut), 'f.yaml');
      assert.equal(r.resources.length + r.errors.length <= 1 || r.errors.length > 0, true);
      for (const e of r.errors) {
        assert.ok(e.code === 'MOLT_ERR_VALIDATION' || e.code === 'MOLT_ERR_YAML_SYNTAX');
        assert.ok(e.location.line! >= 1 && e.location.column! >= 1);
      }
    }
    // a specific cut: mid-way through the runtime
    const e = parseAppVersionText(full.slice(0, full.indexOf('    - host')), 'f.yaml').errors;
    assert.equal(e.length, 1);
    assertAt(e[0]!, 'MOLT_ERR_VALIDATION', 10, 3, 'spec.servers');
    assert.match(e[0]!.message, /expected a list, got nothing/);
  });

  it('several mistakes in one document are all reported, in file order', () => {
    const r = parseAppVersionText(HEAD + '  hosts: [shop.example.com:8080]\n  default: yes\n  servers: [{host: a, port: 0}]\n', 'f.yaml');
    assert.deepEqual(r.errors.map((e) => [e.location.path, e.location.line]), [
      ['spec.hosts[0]', 7],
      ['spec.default', 8],
      ['spec.servers[0].port', 9],
    ]);
  });
});

describe('loadAppVersionFile', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'molt-load-'));

  it('reads a file', async () => {
    const f = path.join(dir, 'ok.yaml');
    fs.writeFileSync(f, HEAD + '  servers: [{host: a, port: 1}]\n');
    const r = await loadAppVersionFile(f);
    assert.equal(r.errors.length, 0);
    assert.equal(r.resources[0]!.source, f);
  });

  it('refuses files over 1 MiB', async () => {
    const f = path.join(dir, 'big.yaml');
    fs.writeFileSync(f, HEAD + '  servers: [{host: a, port: 1}]\n' + `# ${'x'.repeat(1024 * 1024)}\n`);
    const r = await loadAppVersionFile(f);
    assert.equal(r.resources.length, 0);
    assert.equal(r.errors.length, 1);
    assert.equal(r.errors[0]!.code, 'MOLT_ERR_CONFIG_FILE');
    assert.equal(r.errors[0]!.location.file, f);
    assert.match(r.errors[0]!.message, /1 MiB/);
  });

  it('a missing file is an error, not a throw', async () => {
    const r = await loadAppVersionFile(path.join(dir, 'nope.yaml'));
    assert.equal(r.errors[0]!.code, 'MOLT_ERR_CONFIG_FILE');
  });
});

describe('durations and quantities', () => {
  it('parses', () => {
    assert.equal(parseDuration('500ms'), 500);
    assert.equal(parseDuration('60s'), 60000);
    assert.equal(parseDuration('1h30m'), 5400000);
    assert.equal(parseDuration('1.5s'), 1500);
    assert.equal(parseDuration(2), 2000);
    assert.equal(parseQuantity('1Mi'), 1048576);
    assert.equal(parseQuantity('1k'), 1000);
    assert.equal(parseQuantity(42), 42);
    assert.equal(formatDuration(5400500), '1h30m500ms');
  });

  it('rejects with clear messages', () => {
    assert.throws(() => parseDuration('60'), /no unit; write "60s"/);
    assert.throws(() => parseDuration('-1s'), /negative/);
    assert.throws(() => parseDuration('1d'), /units are ms, s, m and h/);
    assert.throws(() => parseQuantity('256m'), /did you mean "256Mi"/);
    assert.throws(() => parseQuantity('0.3'), /whole number/);
  });
});
