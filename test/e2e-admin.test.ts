// End to end through the admin surface of a real `molt up`: the REST API (/apps, /appversions,
// promote, rollback), the thesis-compatible /configuration/cluster API, a thesis JSON config file,
// and the `molt` CLI spawned as a user would run it. Backends are local HTTP servers (servers runtime)
// and the e2e fixture app (process runtime); traffic over 127.0.0.1.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test, type TestContext } from 'node:test';
import { runUp, type UpHandle } from '../controller/up.js';
import type { AppStatus, VersionStatus } from '../controller/controller-api.js';
import { appVersionYaml, freePort, processRuntimeYaml, request, tempDir, waitFor, type Reply } from './helpers/molt.js';

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/molt.js');

/** A backend answering GET / with `body` and /healthz with 200. */
async function backend(t: TestContext, body: string): Promise<number> {
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(req.url === '/healthz' ? 'ok' : body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));
  return (server.address() as AddressInfo).port;
}

async function up(t: TestContext, extra: string[] = []): Promise<{ h: UpHandle; root: string; port: number; admin: number }> {
  const root = tempDir('molt-e2e-admin-');
  const port = await freePort();
  const args = ['--dir', path.join(root, 'versions'), '--state', path.join(root, 'state'), '--log-level', 'warn', '--drain', '300', ...extra];
  if (!extra.includes('--config-file')) args.push('--listen', `127.0.0.1:${port}`, '--admin', '127.0.0.1:0');
  const h = await runUp(args);
  assert.ok(h);
  t.after(() => h.shutdown());
  return { h, root, port, admin: h.adminAddress.port };
}

function api(admin: number, method: string, p: string, body?: string, contentType?: string): Promise<Reply> {
  return request(admin, { method, path: p, body, headers: contentType ? { 'content-type': contentType } : {}, agent: false });
}

function json<T = unknown>(r: Reply): T {
  return JSON.parse(r.body) as T;
}

function serversYaml(port: number): string {
  return `  servers:\n    - host: 127.0.0.1\n      port: ${port}`;
}

function versionOf(h: UpHandle, name: string): VersionStatus | undefined {
  for (const app of h.controller.status().apps) for (const v of app.versions) if (v.name === name) return v;
  return undefined;
}

function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, MOLT_ADMIN: '', MOLT_ADMIN_TOKEN: '' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

test('admin API: PUT appversions (servers and process runtimes), GET /apps, rollback, promote, DELETE', async (t) => {
  const { h, port, admin } = await up(t, ['--allow-api-process']);
  const s1 = await backend(t, 's1');

  let r = await api(admin, 'PUT', '/appversions/web-v1', appVersionYaml({ name: 'web-v1', app: 'web', version: '1.0.0', runtime: serversYaml(s1) }), 'application/yaml');
  assert.equal(r.status, 201, r.body);
  assert.equal(json<{ created: boolean }>(r).created, true);
  await waitFor('v1 to serve', async () => (await request(port)).body === 's1');

  // A process runtime through the API; metadata.name may be left out (the URL names it).
  const v2yaml = appVersionYaml({ name: 'web-v2', app: 'web', version: '2.0.0', runtime: processRuntimeYaml({ BODY: 'p2' }) }).replace(/metadata:\n {2}name: web-v2\n/, '');
  r = await api(admin, 'PUT', '/appversions/web-v2', v2yaml, 'application/yaml');
  assert.equal(r.status, 201, r.body);
  await waitFor('v2 to serve', async () => (await request(port)).body === 'p2', 30000);

  r = await api(admin, 'GET', '/apps');
  assert.equal(r.status, 200);
  const apps = json<AppStatus[]>(r);
  assert.deepEqual(apps.map((a) => a.app), ['web']);
  assert.deepEqual(apps[0].versions.map((v) => v.name), ['web-v2', 'web-v1'], 'newest first');
  r = await api(admin, 'GET', '/appversions/web-v2');
  assert.equal(r.status, 200);
  assert.equal(json<{ resource: { spec: { version: string } } }>(r).resource.spec.version, '2.0.0');

  // Updating an existing resource: 200, created false.
  r = await api(admin, 'PUT', '/appversions/web-v1', appVersionYaml({ name: 'web-v1', app: 'web', version: '1.0.0', runtime: serversYaml(s1) }), 'application/yaml');
  assert.equal(r.status, 200, r.body);
  assert.equal(json<{ created: boolean }>(r).created, false);

  r = await api(admin, 'POST', '/apps/web/rollback');
  assert.equal(r.status, 200, r.body);
  assert.equal(json<VersionStatus>(r).name, 'web-v2');
  await waitFor('traffic back on v1', async () => (await request(port)).body === 's1');
  assert.equal(versionOf(h, 'web-v2')?.phase, 'RolledBack');
  assert.equal((await api(admin, 'POST', '/apps/web/rollback')).status, 409, 'nothing left to roll back');

  // Promote re-admits the rolled-back version by name.
  r = await api(admin, 'POST', '/apps/web/promote', JSON.stringify({ version: '2.0.0' }), 'application/json');
  assert.equal(r.status, 200, r.body);
  await waitFor('v2 serving again', async () => (await request(port)).body === 'p2', 30000);
  await waitFor('v2 promoted', () => versionOf(h, 'web-v2')?.phase === 'Promoted');
  assert.equal((await api(admin, 'POST', '/apps/nope/promote')).status, 409);
  assert.equal((await api(admin, 'POST', '/apps/web/promote', '{"version": "9.9.9"}', 'application/json')).status, 404);

  // Bad input: validation errors name the field.
  r = await api(admin, 'PUT', '/appversions/web-v3', appVersionYaml({ name: 'web-v3', app: 'web', version: '3.0.0', mode: 'INSTANTLY', runtime: serversYaml(s1) }), 'application/yaml');
  assert.equal(r.status, 400);
  assert.match(r.body, /spec\.transition\.mode/);
  assert.match(r.body, /did you mean INSTANT/);
  assert.equal((await api(admin, 'PUT', '/appversions/web-v3', 'spec: [unclosed', 'application/yaml')).status, 400);

  r = await api(admin, 'DELETE', '/appversions/web-v2');
  assert.equal(r.status, 202, r.body);
  await waitFor('v1 serves after the delete', async () => (await request(port)).body === 's1');
  await waitFor('v2 gone', async () => (await api(admin, 'GET', '/appversions/web-v2')).status === 404);
  assert.equal((await api(admin, 'DELETE', '/appversions/web-v2')).status, 404);
});

test('thesis API: PUT /configuration/cluster → 202 + uuid, traffic, GET list/one, DELETE, 404, 400', async (t) => {
  const { port, admin } = await up(t);
  const s1 = await backend(t, 'thesis-1');

  let r = await api(admin, 'PUT', '/configuration/cluster', JSON.stringify({ cluster: { servers: [{ hostname: '127.0.0.1', port: s1 }], version: '1.0' } }), 'application/json');
  assert.equal(r.status, 202, r.body);
  const uuid = r.body.trim();
  assert.match(uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  await waitFor('traffic to the thesis cluster', async () => (await request(port)).body === 'thesis-1');

  r = await api(admin, 'GET', '/configuration/cluster');
  assert.equal(r.status, 200);
  const list = json<Array<{ cluster: { uuid: string; version: string; servers: Array<{ hostname: string; port: number }> } }>>(r);
  assert.deepEqual(list.map((c) => c.cluster.uuid), [uuid]);
  assert.deepEqual(list[0].cluster.servers, [{ hostname: '127.0.0.1', port: s1 }]);
  r = await api(admin, 'GET', `/configuration/cluster/${uuid}`);
  assert.equal(r.status, 200);
  assert.equal(json<{ cluster: { version: string } }>(r).cluster.version, '1.0');

  // A second cluster is a newer version with a SESSION transition.
  const s2 = await backend(t, 'thesis-2');
  r = await api(admin, 'PUT', '/configuration/cluster', JSON.stringify({ servers: [{ hostname: '127.0.0.1', port: s2 }], version: '2.0', upgradeTransition: { mode: 'SESSION', sessionTimeout: 60 } }), 'application/json');
  assert.equal(r.status, 202, r.body);
  const uuid2 = r.body.trim();
  await waitFor('new clients on the second cluster', async () => (await request(port, { agent: false })).body === 'thesis-2');

  assert.equal((await api(admin, 'GET', '/configuration/cluster/00000000-0000-0000-0000-000000000000')).status, 404);
  assert.equal((await api(admin, 'DELETE', '/configuration/cluster/00000000-0000-0000-0000-000000000000')).status, 404);
  r = await api(admin, 'PUT', '/configuration/cluster', '{"cluster": {', 'application/json');
  assert.equal(r.status, 400);
  assert.match(r.body, /not valid JSON/);
  r = await api(admin, 'PUT', '/configuration/cluster', JSON.stringify({ cluster: { servers: [{ hostname: '127.0.0.1', port: 70000 }] } }), 'application/json');
  assert.equal(r.status, 400);
  assert.match(r.body, /port/);

  r = await api(admin, 'DELETE', `/configuration/cluster/${uuid2}`);
  assert.equal(r.status, 202);
  await waitFor('traffic back on the first cluster', async () => (await request(port, { agent: false })).body === 'thesis-1');
  assert.equal((await api(admin, 'GET', `/configuration/cluster/${uuid2}`)).status, 404);
  assert.deepEqual(json<Array<{ cluster: { uuid: string } }>>(await api(admin, 'GET', '/configuration/cluster')).map((c) => c.cluster.uuid), [uuid]);
});

test('molt up --config-file: a thesis JSON config sets the proxy and admin ports and the first cluster', async (t) => {
  const s1 = await backend(t, 'from-config');
  const dir = tempDir('molt-e2e-config-');
  const proxyPort = await freePort();
  const adminPort = await freePort();
  const file = path.join(dir, 'config.json');
  fs.writeFileSync(file, JSON.stringify({
    proxy: { port: proxyPort },
    configService: { port: adminPort },
    cluster: { servers: [{ hostname: '127.0.0.1', port: s1 }], version: '1.0', upgradeTransition: { mode: 'INSTANT' } },
  }, null, 2));
  const { h } = await up(t, ['--config-file', file]);
  assert.equal(h.listen, `127.0.0.1:${proxyPort}`);
  assert.equal(h.adminAddress.port, adminPort);
  await waitFor('traffic from the config file cluster', async () => (await request(proxyPort)).body === 'from-config');

  // A broken config file is refused with file:line:col and the field.
  const bad = path.join(dir, 'bad.json');
  fs.writeFileSync(bad, '{\n  "proxy": {"port": 8080},\n  "cluster": {"servers": [{"hostname": "127.0.0.1", "port": "http"}]}\n}\n');
  const root = tempDir('molt-e2e-config-bad-');
  await assert.rejects(runUp(['--config-file', bad, '--state', path.join(root, 'state'), '--dir', path.join(root, 'v'), '--log-level', 'silent']), (err: Error) => {
    assert.equal((err as { code?: string }).code, 'MOLT_ERR_CONFIG_FILE');
    assert.match(String(err), new RegExp(`${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:3:\\d+: cluster\\.servers\\[0\\]\\.port`));
    return true;
  });
});

test('molt CLI against a running molt up: status, apply -f, validate, promote, rollback, exit codes', async (t) => {
  const { h, root, port, admin } = await up(t);
  const flag = ['--admin', `127.0.0.1:${admin}`];
  const s1 = await backend(t, 'c1');
  const s2 = await backend(t, 'c2');
  const good = path.join(root, 'cli-v1.yaml');
  fs.writeFileSync(good, appVersionYaml({ name: 'cli-v1', app: 'cli', version: '1.0.0', runtime: serversYaml(s1) }) + '---\n' + appVersionYaml({ name: 'cli-v2', app: 'cli', version: '2.0.0', runtime: serversYaml(s2) }));

  let r = await cli(['validate', good]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /cli-v1 \(app cli, version 1\.0\.0, INSTANT, servers\) is valid/);

  // A bad file: every error with file:line:col and the field; exit 1.
  const bad = path.join(root, 'bad.yaml');
  fs.writeFileSync(bad, 'apiVersion: molt.dev/v1alpha1\nkind: AppVersion\nmetadata:\n  name: bad\nspec:\n  app: cli\n  version: 1.10\n  servers:\n    - host: 127.0.0.1\n      port: 80\n');
  r = await cli(['validate', bad]);
  assert.equal(r.code, 1);
  assert.ok(r.stderr.includes(`${bad}:7:12: spec.version: version must be a string`), r.stderr);
  fs.writeFileSync(bad, 'apiVersion: molt.dev/v1alpha1\nkind: AppVersion\nmetadata:\n  name: [bad\n');
  r = await cli(['validate', bad]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, new RegExp(`${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+:\\d+: YAML syntax error`));

  r = await cli(['apply', '-f', good, ...flag]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'appversion/cli-v1 created\nappversion/cli-v2 created\n');
  await waitFor('v2 to serve', async () => (await request(port)).body === 'c2');
  r = await cli(['apply', '-f', bad, ...flag]);
  assert.equal(r.code, 1, 'apply refuses an invalid file before sending it');

  r = await cli(['status', ...flag]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /sidecar: connected/);
  assert.match(r.stdout, /cli\s+2\.0\.0\s+cli-v2\s+INSTANT\s+Promoted/);
  r = await cli(['status', '--json', ...flag]);
  assert.equal(r.code, 0);
  assert.deepEqual((JSON.parse(r.stdout) as { apps: AppStatus[] }).apps[0].versions.map((v) => v.name), ['cli-v2', 'cli-v1']);

  r = await cli(['rollback', 'cli', ...flag]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /cli-v2 \(version 2\.0\.0\) rolled back/);
  await waitFor('traffic back on v1', async () => (await request(port)).body === 'c1');
  r = await cli(['rollback', 'cli', ...flag]);
  assert.equal(r.code, 1, 'nothing to roll back: an error, exit 1');
  assert.match(r.stderr, /no previous version/);

  r = await cli(['promote', 'cli', '2.0.0', ...flag]);
  assert.equal(r.code, 0, r.stderr);
  await waitFor('v2 re-admitted', async () => (await request(port)).body === 'c2');
  assert.equal(h.controller.status().apps[0].versions[0].name, 'cli-v2');

  // Usage errors exit 2; an unreachable admin API exits 1 with a hint.
  assert.equal((await cli(['status', '--bogus', ...flag])).code, 2);
  assert.equal((await cli(['frobnicate'])).code, 2);
  r = await cli(['status', '--admin', `127.0.0.1:${await freePort()}`]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /is `molt up` running\?/);
});

// Known bug (controller/up.ts, the config-file loop): clusters from --config-file are applied with
// controller.applyResource but never registered in the admin API's ThesisStore, so the thesis API neither
// lists them nor finds them by uuid (the Go proxy listed its config-file cluster).
test('molt up --config-file: the config file cluster is visible through the thesis API', async (t) => {
  const s1 = await backend(t, 'from-config');
  const dir = tempDir('molt-e2e-config-');
  const adminPort = await freePort();
  const file = path.join(dir, 'config.json');
  const uuid = '6f1c2a7e-1111-4222-8333-944455556666';
  fs.writeFileSync(file, JSON.stringify({ proxy: { port: await freePort() }, configService: { port: adminPort }, cluster: { uuid, servers: [{ hostname: '127.0.0.1', port: s1 }] } }));
  await up(t, ['--config-file', file]);
  const list = json<Array<{ cluster: { uuid: string } }>>(await api(adminPort, 'GET', '/configuration/cluster'));
  assert.deepEqual(list.map((c) => c.cluster.uuid), [uuid]);
  assert.equal((await api(adminPort, 'GET', `/configuration/cluster/${uuid}`)).status, 200);
});

test('bad YAML in the versions folder: reported with file:line:col, what serves keeps serving', async (t) => {
  const { h, root, port, admin } = await up(t);
  const s1 = await backend(t, 'y1');
  const s2 = await backend(t, 'y2');
  const dir = path.join(root, 'versions');
  const file = path.join(dir, 'yaml-v1.yaml');
  fs.writeFileSync(file, appVersionYaml({ name: 'yaml-v1', app: 'yaml', version: '1.0.0', runtime: serversYaml(s1) }));
  await waitFor('v1 to serve', async () => (await request(port)).body === 'y1');

  // A broken edit of the serving file: the last good version keeps serving, the error is shown.
  fs.writeFileSync(file, appVersionYaml({ name: 'yaml-v1', app: 'yaml', version: '1.0.0', runtime: serversYaml(s2) }).replace('mode: INSTANT', 'mode: [INSTANT'));
  const err = await waitFor('the error in status', () => h.controller.status().errors.find((e) => e.source === file));
  assert.equal(err.code, 'MOLT_ERR_YAML_SYNTAX');
  assert.ok(err.message.startsWith(`${file}:`), err.message);
  assert.match(err.message, /^[^:]+:\d+:\d+: /);
  assert.equal((await request(port)).body, 'y1');

  // A validation error in a new file: never applied, reported with the field path.
  const other = path.join(dir, 'yaml-v2.yaml');
  fs.writeFileSync(other, appVersionYaml({ name: 'yaml-v2', app: 'yaml', version: '2.0.0', runtime: serversYaml(s2) }).replace('interval: 100ms', 'interval: soon'));
  const verr = await waitFor('the validation error', () => h.controller.status().errors.find((e) => e.source === other));
  assert.equal(verr.code, 'MOLT_ERR_VALIDATION');
  assert.match(verr.message, /:\d+:\d+: spec\.healthCheck\.interval: /);
  const st = json<{ errors: Array<{ source: string }> }>(await api(admin, 'GET', '/status'));
  assert.deepEqual(st.errors.map((e) => e.source).sort(), [file, other].sort());
  assert.equal((await request(port)).body, 'y1');
  assert.equal(versionOf(h, 'yaml-v2'), undefined);

  // Fixing the file applies it.
  fs.writeFileSync(other, appVersionYaml({ name: 'yaml-v2', app: 'yaml', version: '2.0.0', runtime: serversYaml(s2) }));
  await waitFor('v2 to serve once fixed', async () => (await request(port)).body === 'y2');
});
