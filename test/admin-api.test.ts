import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { checkAdminBind, createAdminServer, isLoopbackHost, MAX_BODY_BYTES, ThesisStore } from '../controller/admin-api.js';
import { AdminApiError, AdminClient } from '../controller/admin-client.js';
import type { AppStatus, ControllerApi, ControllerStatus, VersionStatus } from '../controller/controller-api.js';
import { MoltError, MoltValidationErrors } from '../common/errors.js';
import { normalizeAppVersion } from '../controller/load.js';
import { MoltMetrics } from '../controller/metrics.js';

// ---- fake controller -------------------------------------------------------------------------------------

interface Stored {
  raw: Record<string, any>;
  source: string;
}

/** Minimal ControllerApi: stores resources, records calls. Validation mimics the real one's error types. */
class FakeController implements ControllerApi {
  readonly resources = new Map<string, Stored>();
  readonly calls: string[] = [];

  status(): ControllerStatus {
    const apps = new Map<string, AppStatus>();
    for (const [name, { raw }] of this.resources) {
      const app = raw.spec.app as string;
      let a = apps.get(app);
      if (!a) apps.set(app, (a = { app, hosts: [], versions: [] }));
      a.versions.push(this.#versionStatus(name));
    }
    return { sidecarConnected: true, routingRevision: 3, apps: [...apps.values()], errors: [] };
  }

  getResource(name: string) {
    const s = this.resources.get(name);
    if (!s) return undefined;
    return { resource: s.raw, status: this.#versionStatus(name) };
  }

  async applyResource(raw: unknown, source = 'api') {
    this.calls.push(`apply ${source}`);
    if (source === 'thesis-api') {
      // Like LocalController: validate with the real loader, keep the normalised resource.
      const av = normalizeAppVersion(raw, source);
      const existing = this.resources.has(av.metadata.name);
      this.resources.set(av.metadata.name, { raw: { apiVersion: av.apiVersion, kind: av.kind, metadata: av.metadata, spec: av.spec }, source });
      return { created: !existing, name: av.metadata.name };
    }
    const r = raw as Record<string, any>;
    const errors: MoltError[] = [];
    const name = r?.metadata?.name;
    if (typeof name !== 'string' || !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(name)) {
      errors.push(new MoltError('MOLT_ERR_VALIDATION', 'must be a DNS label', { file: source, path: 'metadata.name' }));
    }
    if (typeof r?.spec?.app !== 'string') errors.push(new MoltError('MOLT_ERR_VALIDATION', 'is required', { file: source, path: 'spec.app' }));
    if (errors.length) throw new MoltValidationErrors(errors);
    const existing = this.resources.get(name);
    if (existing?.source === 'file') throw new MoltError('MOLT_ERR_CONFLICT', `${name} is file-backed`);
    this.resources.set(name, { raw: r, source });
    return { created: !existing, name };
  }

  async deleteResource(name: string) {
    this.calls.push(`delete ${name}`);
    const s = this.resources.get(name);
    if (!s) throw new MoltError('MOLT_ERR_NOT_FOUND', `AppVersion ${name} not found`);
    if (s.source === 'file') throw new MoltError('MOLT_ERR_CONFLICT', `${name} is file-backed`);
    this.resources.delete(name);
  }

  async promote(app: string, version?: string) {
    this.calls.push(`promote ${app} ${version ?? '-'}`);
    const name = this.#find(app, version);
    return { ...this.#versionStatus(name), phase: 'Promoted' as const };
  }

  async rollback(app: string) {
    this.calls.push(`rollback ${app}`);
    if (app === 'boom') throw new Error('secret internal detail');
    const name = this.#find(app);
    return { ...this.#versionStatus(name), phase: 'RolledBack' as const, reason: 'manual' };
  }

  #find(app: string, version?: string): string {
    for (const [name, { raw }] of this.resources) {
      if (raw.spec.app === app && (version === undefined || raw.spec.version === version)) return name;
    }
    throw new MoltError('MOLT_ERR_NOT_FOUND', `no version of ${app}`);
  }

  #versionStatus(name: string): VersionStatus {
    const { raw, source } = this.resources.get(name)!;
    return {
      name,
      app: raw.spec.app,
      version: String(raw.spec.version ?? '0.0'),
      mode: 'INSTANT',
      phase: 'Serving',
      traffic: 1,
      reason: '',
      message: '',
      source,
      endpoints: [],
      timestamps: {},
      requests: 0,
      errors: 0,
    };
  }
}

// ---- harness ---------------------------------------------------------------------------------------------

interface Res {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json: any;
}

async function start(t: TestContext, opts: { token?: string; thesis?: ThesisStore } = {}) {
  const controller = new FakeController();
  const metrics = new MoltMetrics({ defaultMetrics: false });
  const server = createAdminServer({ controller, metrics, ...opts });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const { port } = server.address() as AddressInfo;
  const base = `http://127.0.0.1:${port}`;

  function call(method: string, p: string, o: { body?: string | Buffer; headers?: Record<string, string> } = {}): Promise<Res> {
    return new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, method, path: p, headers: { ...o.headers }, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode!, headers: res.headers, text, json });
        });
      });
      req.on('error', reject);
      req.end(o.body);
    });
  }
  return { controller, metrics, server, port, base, call };
}

const YAML_DOC = `apiVersion: molt.dev/v1alpha1
kind: AppVersion
metadata:
  name: shop-v2
spec:
  app: shop
  version: "2.0"
  servers:
    - host: 127.0.0.1
      port: 1036
`;

const JSON_TYPE = { 'Content-Type': 'application/json' };

function assertError(res: Res, status: number, code: string): void {
  assert.equal(res.status, status, res.text);
  assert.match(String(res.headers['content-type']), /^application\/json; charset=utf-8/);
  assert.equal(res.json?.error?.code, code, res.text);
  assert.equal(typeof res.json.error.message, 'string');
}

// ---- routes ----------------------------------------------------------------------------------------------

test('GET /healthz, /metrics, /status, /apps', async (t) => {
  const { call, controller } = await start(t);
  await controller.applyResource({ metadata: { name: 'shop-v1' }, spec: { app: 'shop', version: '1.0' } });

  const h = await call('GET', '/healthz');
  assert.equal(h.status, 200);
  assert.equal(h.text, 'ok');

  const m = await call('GET', '/metrics');
  assert.equal(m.status, 200);
  assert.match(String(m.headers['content-type']), /^text\/plain; version=0.0.4/);
  assert.match(m.text, /^molt_reconcile_total\{result="error"\} 0$/m);

  const s = await call('GET', '/status');
  assert.equal(s.status, 200);
  assert.match(String(s.headers['content-type']), /^application\/json; charset=utf-8$/);
  assert.equal(s.json.routingRevision, 3);
  assert.equal(s.json.apps.length, 1);

  const a = await call('GET', '/apps');
  assert.deepEqual(a.json.map((x: AppStatus) => x.app), ['shop']);
  assert.equal(a.json[0].versions[0].name, 'shop-v1');

  const head = await call('HEAD', '/status');
  assert.equal(head.status, 200);
  assert.equal(head.text, '');
});

test('PUT /appversions/{name} with YAML creates (201) then updates (200); GET returns it; DELETE 202', async (t) => {
  const { call, controller } = await start(t);
  const created = await call('PUT', '/appversions/shop-v2', { body: YAML_DOC, headers: { 'Content-Type': 'application/yaml' } });
  assert.equal(created.status, 201, created.text);
  assert.deepEqual({ name: created.json.name, created: created.json.created }, { name: 'shop-v2', created: true });
  assert.equal(created.json.status.app, 'shop');
  assert.deepEqual(controller.calls, ['apply api']);

  const updated = await call('PUT', '/appversions/shop-v2', { body: YAML_DOC.replace('"2.0"', '"2.1"'), headers: { 'Content-Type': 'application/yaml' } });
  assert.equal(updated.status, 200);
  assert.equal(updated.json.created, false);

  const got = await call('GET', '/appversions/shop-v2');
  assert.equal(got.status, 200);
  assert.equal(got.json.resource.spec.version, '2.1');
  assert.equal(got.json.status.name, 'shop-v2');

  const del = await call('DELETE', '/appversions/shop-v2');
  assert.equal(del.status, 202);
  assertError(await call('GET', '/appversions/shop-v2'), 404, 'MOLT_ERR_NOT_FOUND');
  assertError(await call('DELETE', '/appversions/shop-v2'), 404, 'MOLT_ERR_NOT_FOUND');
});

test('PUT /appversions/{name} with JSON; name is filled in from the URL, a different name is 400', async (t) => {
  const { call, controller } = await start(t);
  const body = { apiVersion: 'molt.dev/v1alpha1', kind: 'AppVersion', spec: { app: 'shop', version: '3' } };
  const res = await call('PUT', '/appversions/shop-v3', { body: JSON.stringify(body), headers: JSON_TYPE });
  assert.equal(res.status, 201, res.text);
  assert.equal(controller.resources.get('shop-v3')!.raw.metadata.name, 'shop-v3');

  const mismatch = await call('PUT', '/appversions/shop-v4', {
    body: JSON.stringify({ ...body, metadata: { name: 'other' } }),
    headers: JSON_TYPE,
  });
  assertError(mismatch, 400, 'MOLT_ERR_BAD_REQUEST');
  assert.equal(controller.resources.has('other'), false);
});

test('PUT /appversions: syntax and validation errors are 400 with codes and details; conflicts 409', async (t) => {
  const { call, controller } = await start(t);
  assertError(await call('PUT', '/appversions/x', { body: '{"spec": ', headers: JSON_TYPE }), 400, 'MOLT_ERR_BAD_REQUEST');
  const yamlErr = await call('PUT', '/appversions/x', { body: 'spec:\n  app: [unclosed\n', headers: { 'Content-Type': 'application/yaml' } });
  assertError(yamlErr, 400, 'MOLT_ERR_YAML_SYNTAX');
  assertError(await call('PUT', '/appversions/x', { body: '- a\n- b\n', headers: { 'Content-Type': 'application/yaml' } }), 400, 'MOLT_ERR_BAD_REQUEST');
  assertError(await call('PUT', '/appversions/x', { body: 'a: 1\n---\nb: 2\n', headers: { 'Content-Type': 'application/yaml' } }), 400, 'MOLT_ERR_BAD_REQUEST');

  const invalid = await call('PUT', '/appversions/x', { body: 'spec: {}\n', headers: { 'Content-Type': 'application/yaml' } });
  assertError(invalid, 400, 'MOLT_ERR_VALIDATION');
  assert.equal(invalid.json.error.details.length, 1);
  assert.equal(invalid.json.error.details[0].location.path, 'spec.app');

  controller.resources.set('file-v1', { raw: { metadata: { name: 'file-v1' }, spec: { app: 'f' } }, source: 'file' });
  assertError(await call('DELETE', '/appversions/file-v1'), 409, 'MOLT_ERR_CONFLICT');
});

test('POST promote (optional version) and rollback return the VersionStatus', async (t) => {
  const { call, controller } = await start(t);
  await controller.applyResource({ metadata: { name: 'shop-v1' }, spec: { app: 'shop', version: '1.0' } });
  await controller.applyResource({ metadata: { name: 'shop-v2' }, spec: { app: 'shop', version: '2.0' } });

  const p1 = await call('POST', '/apps/shop/promote');
  assert.equal(p1.status, 200);
  assert.equal(p1.json.phase, 'Promoted');
  const p2 = await call('POST', '/apps/shop/promote', { body: '{"version":"2.0"}', headers: JSON_TYPE });
  assert.equal(p2.json.name, 'shop-v2');
  assertError(await call('POST', '/apps/shop/promote', { body: '{"version":2}', headers: JSON_TYPE }), 400, 'MOLT_ERR_BAD_REQUEST');
  assertError(await call('POST', '/apps/shop/promote', { body: 'nope', headers: JSON_TYPE }), 400, 'MOLT_ERR_BAD_REQUEST');

  const rb = await call('POST', '/apps/shop/rollback');
  assert.equal(rb.status, 200);
  assert.equal(rb.json.phase, 'RolledBack');
  assertError(await call('POST', '/apps/nope/rollback'), 404, 'MOLT_ERR_NOT_FOUND');
  assert.deepEqual(controller.calls.slice(2), ['promote shop -', 'promote shop 2.0', 'rollback shop', 'rollback nope']);
});

test('unexpected controller errors are 500 without internals', async (t) => {
  const { call } = await start(t);
  const res = await call('POST', '/apps/boom/rollback');
  assertError(res, 500, 'MOLT_ERR_INTERNAL');
  assert.doesNotMatch(res.text, /secret/);
});

test('unknown route 404, wrong method 405 with Allow, oversized body 413', async (t) => {
  const { call, controller } = await start(t);
  assertError(await call('GET', '/nope'), 404, 'MOLT_ERR_NOT_FOUND');
  assertError(await call('GET', '/appversions/a/b'), 404, 'MOLT_ERR_NOT_FOUND');

  const m = await call('POST', '/status');
  assertError(m, 405, 'MOLT_ERR_BAD_REQUEST');
  assert.equal(m.headers.allow, 'GET, HEAD');
  const m2 = await call('PATCH', '/appversions/x');
  assert.equal(m2.status, 405);
  assert.equal(m2.headers.allow, 'GET, PUT, DELETE, HEAD');
  const m3 = await call('GET', '/apps/shop/rollback');
  assert.equal(m3.headers.allow, 'POST');

  // Declared too large: refused before reading.
  const big = Buffer.alloc(MAX_BODY_BYTES + 1, 'a');
  assertError(await call('PUT', '/appversions/x', { body: big, headers: JSON_TYPE }), 413, 'MOLT_ERR_BAD_REQUEST');
  // Chunked (no Content-Length): refused while reading.
  const chunked = await call('PUT', '/appversions/x', { body: big, headers: { ...JSON_TYPE, 'Transfer-Encoding': 'chunked' } });
  assertError(chunked, 413, 'MOLT_ERR_BAD_REQUEST');
  assert.equal(controller.calls.length, 0);
  // Exactly at the limit is read (and then rejected as not JSON, which proves it was parsed).
  const atLimit = Buffer.alloc(MAX_BODY_BYTES, ' ');
  assertError(await call('PUT', '/appversions/x', { body: atLimit, headers: JSON_TYPE }), 400, 'MOLT_ERR_BAD_REQUEST');
});

// ---- auth ------------------------------------------------------------------------------------------------

test('with a token: mutations need the bearer token, GETs on loopback stay open', async (t) => {
  const token = 's3cret-token';
  const { call, controller } = await start(t, { token });
  await controller.applyResource({ metadata: { name: 'shop-v1' }, spec: { app: 'shop', version: '1.0' } });
  controller.calls.length = 0;

  for (const [method, p] of [
    ['PUT', '/appversions/shop-v2'],
    ['DELETE', '/appversions/shop-v1'],
    ['POST', '/apps/shop/promote'],
    ['POST', '/apps/shop/rollback'],
    ['PUT', '/configuration/cluster'],
    ['DELETE', '/configuration/cluster/abc'],
  ] as const) {
    const none = await call(method, p, { body: YAML_DOC });
    assertError(none, 401, 'MOLT_ERR_UNAUTHORIZED');
    assert.equal(none.headers['www-authenticate'], 'Bearer');
    assertError(await call(method, p, { body: YAML_DOC, headers: { Authorization: 'Bearer wrong' } }), 401, 'MOLT_ERR_UNAUTHORIZED');
    assertError(await call(method, p, { body: YAML_DOC, headers: { Authorization: `Basic ${token}` } }), 401, 'MOLT_ERR_UNAUTHORIZED');
    assertError(await call(method, p, { body: YAML_DOC, headers: { Authorization: `Bearer ${token}x` } }), 401, 'MOLT_ERR_UNAUTHORIZED');
  }
  assert.deepEqual(controller.calls, [], 'no unauthorised call reached the controller');

  const ok = await call('PUT', '/appversions/shop-v2', { body: YAML_DOC, headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/yaml' } });
  assert.equal(ok.status, 201, ok.text);
  assert.equal((await call('POST', '/apps/shop/rollback', { headers: { Authorization: `Bearer ${token}` } })).status, 200);

  for (const p of ['/healthz', '/metrics', '/status', '/apps', '/appversions/shop-v1', '/configuration/cluster']) {
    assert.equal((await call('GET', p)).status, 200, p);
  }
});

test('cross-origin mutations and foreign Host names are refused', async (t) => {
  const { call, port } = await start(t);
  const res = await call('POST', '/apps/shop/rollback', { headers: { Origin: 'https://evil.example' } });
  assertError(res, 403, 'MOLT_ERR_UNAUTHORIZED');
  // Same-origin is a browser too: it needs a dashboard session (test/dashboard-auth.test.ts); without an
  // Origin (curl) it reaches the controller: 404 for the unknown app.
  assertError(await call('POST', '/apps/shop/rollback', { headers: { Origin: `http://127.0.0.1:${port}` } }), 401, 'MOLT_ERR_UNAUTHORIZED');
  assertError(await call('POST', '/apps/shop/rollback'), 404, 'MOLT_ERR_NOT_FOUND');
  assertError(await call('GET', '/status', { headers: { Host: `attacker.example:${port}` } }), 403, 'MOLT_ERR_UNAUTHORIZED');
  assert.equal((await call('GET', '/status', { headers: { Host: `localhost:${port}` } })).status, 200);
});

test('checkAdminBind: non-loopback needs a token', () => {
  for (const host of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost', 'LOCALHOST', '::ffff:127.0.0.1']) {
    assert.doesNotThrow(() => checkAdminBind(host, undefined), host);
    assert.equal(isLoopbackHost(host), true, host);
  }
  for (const host of ['0.0.0.0', '::', '192.168.1.10', '10.0.0.1', 'example.com', '128.0.0.1']) {
    assert.throws(() => checkAdminBind(host, undefined), (e: unknown) => e instanceof MoltError && e.code === 'MOLT_ERR_USAGE', host);
    assert.throws(() => checkAdminBind(host, ''), (e: unknown) => e instanceof MoltError && e.code === 'MOLT_ERR_USAGE', host);
    assert.doesNotThrow(() => checkAdminBind(host, 'tok'), host);
  }
});

// ---- thesis compatibility --------------------------------------------------------------------------------

const THESIS_CLUSTER = {
  cluster: {
    servers: [
      { hostname: '127.0.0.1', port: 1036 },
      { hostname: '127.0.0.1', port: 1038 },
    ],
    version: '1.1',
    upgradeTransition: { mode: 'SESSION', sessionTimeout: 60 },
  },
};

test('thesis: PUT /configuration/cluster -> 202 + uuid -> GET -> list -> DELETE -> 404', async (t) => {
  const { call, controller } = await start(t);
  // curl --data sends application/x-www-form-urlencoded: the body is JSON regardless.
  const put = await call('PUT', '/configuration/cluster', {
    body: JSON.stringify(THESIS_CLUSTER),
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
  });
  assert.equal(put.status, 202, put.text);
  assert.match(String(put.headers['content-type']), /^text\/plain; charset=utf-8/);
  const uuid = put.text;
  assert.match(uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  assert.deepEqual(controller.calls, ['apply thesis-api']);

  const got = await call('GET', `/configuration/cluster/${uuid}`);
  assert.equal(got.status, 200, got.text);
  assert.equal(got.json.cluster.uuid, uuid);
  assert.equal(got.json.cluster.version, '1.1');
  assert.deepEqual(got.json.cluster.servers, THESIS_CLUSTER.cluster.servers);
  assert.equal(got.json.cluster.upgradeTransition.mode, 'SESSION');

  const put2 = await call('PUT', '/configuration/cluster', {
    body: JSON.stringify({ cluster: { servers: [{ hostname: '127.0.0.1', port: 1040 }], version: '1.2' } }),
  });
  assert.equal(put2.status, 202, put2.text);
  assert.notEqual(put2.text, uuid);

  for (const p of ['/configuration/cluster', '/configuration/cluster/']) {
    const list = await call('GET', p);
    assert.equal(list.status, 200);
    assert.deepEqual(list.json.map((c: any) => c.cluster.uuid), [uuid, put2.text]);
  }

  const del = await call('DELETE', `/configuration/cluster/${uuid}`);
  assert.equal(del.status, 202);
  assert.equal(del.text, '');
  assertError(await call('GET', `/configuration/cluster/${uuid}`), 404, 'MOLT_ERR_NOT_FOUND');
  assertError(await call('DELETE', `/configuration/cluster/${uuid}`), 404, 'MOLT_ERR_NOT_FOUND');
  assert.equal((await call('GET', '/configuration/cluster')).json.length, 1);
});

test('thesis: bad JSON and bad fields are 400, unknown ids 404', async (t) => {
  const { call, controller } = await start(t);
  assertError(await call('PUT', '/configuration/cluster', { body: '{"cluster": {' }), 400, 'MOLT_ERR_BAD_REQUEST');
  const badPort = { cluster: { servers: [{ hostname: '127.0.0.1', port: 'eighty' }], version: '1' } };
  const res = await call('PUT', '/configuration/cluster', { body: JSON.stringify(badPort) });
  assert.equal(res.status, 400, res.text);
  const badMode = { cluster: { servers: [{ hostname: '127.0.0.1', port: 80 }], upgradeTransition: { mode: 'SIDEWAYS' } } };
  assert.equal((await call('PUT', '/configuration/cluster', { body: JSON.stringify(badMode) })).status, 400);
  assert.equal(controller.resources.size, 0);
  assertError(await call('GET', '/configuration/cluster/00000000-0000-0000-0000-000000000000'), 404, 'MOLT_ERR_NOT_FOUND');
  assertError(await call('DELETE', '/configuration/cluster/nope'), 404, 'MOLT_ERR_NOT_FOUND');
  assertError(await call('POST', '/configuration/cluster'), 405, 'MOLT_ERR_BAD_REQUEST');
});

test('thesis: ids survive a restart through the ThesisStore file', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'molt-thesis-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'state', 'thesis-clusters.json');
  const first = await start(t, { thesis: new ThesisStore(file) });
  const put = await first.call('PUT', '/configuration/cluster', { body: JSON.stringify(THESIS_CLUSTER) });
  assert.equal(put.status, 202);
  const store = new ThesisStore(file);
  assert.deepEqual(store.entries().map(([u]) => u), [put.text]);
  assert.equal(store.get(put.text), [...first.controller.resources.keys()][0]);
  store.delete(put.text);
  assert.deepEqual(new ThesisStore(file).entries(), []);
  assert.deepEqual(new ThesisStore(path.join(dir, 'missing.json')).entries(), []);
});

// ---- client ----------------------------------------------------------------------------------------------

test('AdminClient: calls every route and turns JSON errors into MoltError codes', async (t) => {
  const token = 'tok';
  const { base, controller } = await start(t, { token });
  const c = new AdminClient(base + '/', token);

  const applied = await c.apply('shop-v2', YAML_DOC);
  assert.deepEqual({ name: applied.name, created: applied.created }, { name: 'shop-v2', created: true });
  assert.equal((await c.apply('shop-v2', YAML_DOC)).created, false);
  assert.equal((await c.status()).apps[0]!.app, 'shop');
  assert.equal((await c.promote('shop', '2.0')).phase, 'Promoted');
  assert.equal((await c.promote('shop')).name, 'shop-v2');
  assert.equal((await c.rollback('shop')).phase, 'RolledBack');
  await c.delete('shop-v2');
  assert.equal(controller.resources.size, 0);

  await assert.rejects(c.delete('shop-v2'), (e: unknown) => e instanceof AdminApiError && e.code === 'MOLT_ERR_NOT_FOUND' && e.status === 404);
  await assert.rejects(c.apply('x', 'spec: {}\n'), (e: unknown) => e instanceof MoltError && e.code === 'MOLT_ERR_VALIDATION');
  await assert.rejects(new AdminClient(base).rollback('shop'), (e: unknown) => e instanceof MoltError && e.code === 'MOLT_ERR_UNAUTHORIZED');
  await assert.rejects(c.rollback('boom'), (e: unknown) => e instanceof AdminApiError && e.status === 500 && e.remoteCode === 'MOLT_ERR_INTERNAL');
});

test('AdminClient: a clear message when the controller is not running', async () => {
  // Reserve a port, then close it so nothing listens there.
  const s = http.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  const base = `http://127.0.0.1:${port}`;
  await assert.rejects(new AdminClient(base).status(), (e: unknown) => {
    assert.ok(e instanceof MoltError);
    assert.equal(e.message, `cannot reach molt admin API at ${base}: is \`molt up\` running?`);
    return true;
  });
});
