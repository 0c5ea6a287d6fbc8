// Admin API hardening: bind and token rules (checkAdminBind, runUp), no endpoint runs commands or
// reaches the Docker socket, and privileged containers only when a file says so.
//
// Where commands come from: the `process` runtime runs spec.process.command. Such specs come only from
// AppVersion files (whoever can write the watched folder) and from PUT /appversions/NAME, which needs the
// bearer token when one is set. Without a token the API is loopback-only (checkAdminBind) and refuses
// foreign Host names and cross-site Origins, but any local process can still apply a `process` runtime —
// i.e. run a command as the molt user. Recommendation (not implemented here): refuse API-applied
// `process` runtimes unless `molt up --allow-api-process` is given (files stay allowed); see docs/limits.md.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { test } from 'node:test';
import { checkAdminBind } from '../controller/admin-api.js';
import { MoltError } from '../common/errors.js';
import { parseAppVersionText } from '../controller/load.js';
import { buildContainerOptions } from '../controller/runtime/docker.js';
import { runUp, type UpHandle } from '../controller/up.js';
import { freePort, tempDir, waitFor } from './helpers/molt.js';

interface Res { status: number; body: string }

function call(port: number, method: string, p: string, o: { token?: string; body?: string; headers?: Record<string, string> } = {}): Promise<Res> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...o.headers };
    if (o.token) headers.authorization = `Bearer ${o.token}`;
    if (o.body) headers['content-type'] = 'application/json';
    const req = http.request({ host: '127.0.0.1', port, method, path: p, headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end(o.body);
  });
}

function serversVersion(name: string): string {
  return JSON.stringify({
    apiVersion: 'molt.dev/v1alpha1', kind: 'AppVersion', metadata: { name },
    spec: { app: 'sec', version: '1.0.0', hosts: ['sec.test'], servers: [{ host: '127.0.0.1', port: 9 }] },
  });
}

function processVersion(name: string, marker: string): string {
  return JSON.stringify({
    apiVersion: 'molt.dev/v1alpha1', kind: 'AppVersion', metadata: { name },
    spec: {
      app: 'cmd', version: '1.0.0', hosts: ['cmd.test'],
      process: { command: process.execPath, args: ['-e', `require('fs').writeFileSync(${JSON.stringify(marker)}, 'ran')`] },
    },
  });
}

async function up(root: string, admin: string, token?: string): Promise<UpHandle> {
  const argv = ['--dir', path.join(root, 'versions'), '--state', path.join(root, 'state'), '--listen', `127.0.0.1:${await freePort()}`, '--admin', admin, '--log-level', 'fatal', '--drain', '100'];
  if (token) argv.push('--admin-token', token);
  const h = await runUp(argv);
  assert.ok(h);
  return h;
}

test('checkAdminBind: loopback without a token is fine; anything else needs a token', () => {
  for (const host of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]', '::ffff:127.0.0.1', ' LOCALHOST ']) {
    assert.doesNotThrow(() => checkAdminBind(host, undefined), host);
  }
  for (const host of ['0.0.0.0', '::', '[::]', '10.0.0.1', '192.168.1.10', 'example.com', 'localhost.evil.test', '127.0.0.1.nip.io', '::ffff:10.0.0.1']) {
    assert.throws(() => checkAdminBind(host, undefined), (e: unknown) => e instanceof MoltError && e.code === 'MOLT_ERR_USAGE', host);
    assert.throws(() => checkAdminBind(host, ''), (e: unknown) => e instanceof MoltError && e.code === 'MOLT_ERR_USAGE', `${host} with an empty token`);
    assert.doesNotThrow(() => checkAdminBind(host, 's3cret'), host);
  }
});

test('runUp: a non-loopback --admin without a token fails with MOLT_ERR_USAGE before starting anything', async () => {
  const saved = process.env.MOLT_ADMIN_TOKEN;
  delete process.env.MOLT_ADMIN_TOKEN;
  try {
    const root = tempDir('molt-adminsec-');
    await assert.rejects(up(root, '0.0.0.0:0'), (e: unknown) => e instanceof MoltError && e.code === 'MOLT_ERR_USAGE');
    assert.equal(fs.existsSync(path.join(root, 'state', 'control.sock')), false, 'no controller was started');
  } finally {
    if (saved !== undefined) process.env.MOLT_ADMIN_TOKEN = saved;
  }
});

test('with a token: every mutating call needs it; nothing runs commands or reaches Docker', async (t) => {
  const token = 'tok-' + Math.random().toString(36).slice(2);
  const root = tempDir('molt-adminsec-');
  const h = await up(root, '127.0.0.1:0', token);
  t.after(() => h.shutdown());
  const port = h.adminAddress.port;

  // Reads from loopback are open; writes need the token.
  assert.equal((await call(port, 'GET', '/status')).status, 200);
  assert.equal((await call(port, 'GET', '/healthz')).status, 200);
  const marker = path.join(root, 'pwned');
  for (const [method, p, body] of [
    ['PUT', '/appversions/sec-v1', serversVersion('sec-v1')],
    ['PUT', '/appversions/cmd-v1', processVersion('cmd-v1', marker)],
    ['DELETE', '/appversions/sec-v1', undefined],
    ['POST', '/apps/sec/promote', undefined],
    ['POST', '/apps/sec/rollback', undefined],
    ['PUT', '/configuration/cluster', '{}'],
  ] as const) {
    assert.equal((await call(port, method, p, { body })).status, 401, `${method} ${p} without a token`);
    assert.equal((await call(port, method, p, { body, token: token + 'x' })).status, 401, `${method} ${p} with a wrong token`);
    assert.equal((await call(port, method, p, { body, headers: { authorization: token } })).status, 401, `${method} ${p}: token without "Bearer"`);
  }
  assert.equal(h.controller.getResource('cmd-v1'), undefined, 'the refused process runtime was not stored');

  // Unknown paths: 404, with or without a token — there is no exec, shell, or Docker passthrough.
  for (const p of ['/exec', '/run', '/shell', '/cmd', '/docker.sock', '/var/run/docker.sock', '/v1.41/containers/json', '/containers/create',
    '/_ping', '/debug/pprof', '/%2e%2e/%2e%2e/etc/passwd', '/appversions', '/appversions/x/exec', '/apps/x/exec']) {
    for (const method of ['GET', 'POST']) {
      const r = await call(port, method, p, { token, body: method === 'POST' ? '{}' : undefined });
      assert.equal(r.status, 404, `${method} ${p}: ${r.body}`);
      assert.match(r.body, /MOLT_ERR_NOT_FOUND/);
    }
  }

  // A PUT is validated and stored; a servers runtime runs nothing.
  const put = await call(port, 'PUT', '/appversions/sec-v1', { token, body: serversVersion('sec-v1') });
  assert.equal(put.status, 201, put.body);
  assert.match(JSON.stringify(h.controller.getResource('sec-v1')?.resource), /"servers":\[\{"host":"127\.0\.0\.1","port":9\}\]/);
  // Unknown fields (e.g. an attempt to smuggle in a command) are refused, not ignored.
  const sneaky = JSON.parse(serversVersion('sec-v2')) as { spec: Record<string, unknown> };
  sneaky.spec.command = '/bin/sh -c id';
  const bad = await call(port, 'PUT', '/appversions/sec-v2', { token, body: JSON.stringify(sneaky) });
  assert.equal(bad.status, 400);
  assert.match(bad.body, /unknown field spec\.command/);
  assert.equal(fs.existsSync(marker), false);

  // Even with the token, an API-applied `process` runtime is refused (403) unless molt up was started
  // with --allow-api-process: it would run a command on this machine.
  const cmd = await call(port, 'PUT', '/appversions/cmd-v1', { token, body: processVersion('cmd-v1', marker) });
  assert.equal(cmd.status, 403, cmd.body);
  assert.match(cmd.body, /MOLT_ERR_FORBIDDEN/);
  assert.match(cmd.body, /--allow-api-process/);
  assert.equal(h.controller.getResource('cmd-v1'), undefined);
  assert.equal(fs.existsSync(marker), false);
});

test('--allow-api-process: an API-applied process runtime runs its command', async (t) => {
  const root = tempDir('molt-sec-');
  const port = await freePort();
  const h = await runUp(['--dir', path.join(root, 'versions'), '--state', path.join(root, 'state'), '--listen', `127.0.0.1:${await freePort()}`, '--admin', `127.0.0.1:${port}`, '--log-level', 'fatal', '--allow-api-process']);
  assert.ok(h);
  t.after(() => h.shutdown());
  const marker = path.join(root, 'ran');
  const cmd = await call(port, 'PUT', '/appversions/cmd-v1', { body: processVersion('cmd-v1', marker) });
  assert.equal(cmd.status, 201, cmd.body);
  await waitFor('the API-applied command to run', () => fs.existsSync(marker), 15000);
});

test('without a token (loopback only): foreign Host and cross-site Origin are refused', async (t) => {
  const saved = process.env.MOLT_ADMIN_TOKEN;
  delete process.env.MOLT_ADMIN_TOKEN;
  const root = tempDir('molt-adminsec-');
  const h = await up(root, '127.0.0.1:0');
  if (saved !== undefined) process.env.MOLT_ADMIN_TOKEN = saved;
  t.after(() => h.shutdown());
  const port = h.adminAddress.port;
  const r1 = await call(port, 'GET', '/status', { headers: { host: 'attacker.example:9090' } });
  assert.equal(r1.status, 403, 'DNS rebinding: a foreign Host name is refused');
  const r2 = await call(port, 'PUT', '/appversions/sec-v1', { body: serversVersion('sec-v1'), headers: { origin: 'http://attacker.example' } });
  assert.equal(r2.status, 403, 'a cross-site browser request is refused');
  assert.equal(h.controller.getResource('sec-v1'), undefined);
  const r3 = await call(port, 'PUT', '/appversions/sec-v1', { body: serversVersion('sec-v1') });
  assert.equal(r3.status, 201, 'a local client needs no token when none is configured');
});

const DOCKER_YAML = (extra: string): string => `apiVersion: molt.dev/v1alpha1
kind: AppVersion
metadata:
  name: web-v1
spec:
  app: web
  version: "1.0.0"
  docker:
    image: nginx
    tag: "1.27"
    containerPort: 80
${extra}`;

function containerOptions(extra: string): ReturnType<typeof buildContainerOptions> {
  const { resources, errors } = parseAppVersionText(DOCKER_YAML(extra), 'web.yaml');
  assert.deepEqual(errors.map(String), []);
  return buildContainerOptions(resources[0]!, 0, 'molt-test', 'web-v1-0');
}

test('docker: privileged only when the file says privileged: true; no Docker socket unless bound explicitly', () => {
  const plain = containerOptions('');
  assert.notEqual(plain.HostConfig?.Privileged, true);
  assert.equal(plain.HostConfig?.Binds, undefined);
  assert.equal(plain.HostConfig?.VolumesFrom, undefined);
  for (const b of plain.HostConfig?.PortBindings?.['80/tcp'] ?? []) assert.equal(b.HostIp, '127.0.0.1', 'published on loopback only');
  assert.notEqual(containerOptions('    privileged: false\n').HostConfig?.Privileged, true);
  assert.equal(containerOptions('    privileged: true\n').HostConfig?.Privileged, true);
  // Truthy strings are not true: a type error, reported with its line.
  const { errors } = parseAppVersionText(DOCKER_YAML('    privileged: "yes"\n'), 'web.yaml');
  assert.equal(errors.length, 1);
  assert.match(errors[0]!.toString(), /^web\.yaml:12:17: spec\.docker\.privileged: expected true or false/);
});
