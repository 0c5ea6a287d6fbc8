// End to end through the whole product with the docker runtime: real `molt up` (controller in this
// process, sidecar as a child process), real containers from the FROM-scratch busybox test images,
// real files, traffic over 127.0.0.1 only (published ports; never a bridge IP).
//
// Images (test/helpers/docker.ts): v1 → "v1", v2 → "v2", v3 → 500 on /, v4 serves then exits (code 3)
// after ~2 s. Every test owns a state dir, hence its own controller id (container label), and removes
// its containers in t.after.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import type Dockerode from 'dockerode';
import { controllerIdFor, runUp, type UpHandle } from '../controller/up.js';
import type { VersionStatus } from '../controller/controller-api.js';
import { LABEL_APPVERSION, LABEL_MANAGED_BY } from '../controller/runtime/types.js';
import { buildTestImages, ensureDocker, TEST_IMAGE } from './helpers/docker.js';
import { appVersionYaml, CookieClient, freePort, LoadGenerator, request, tempDir, waitFor } from './helpers/molt.js';

const env = await ensureDocker();
const skip = 'skip' in env ? env.skip : false;
const docker: Dockerode | undefined = 'docker' in env ? env.docker : undefined;
if (docker && 'socketPath' in env) {
  // The controller's DockerDriver uses new Dockerode(): point it at the daemon the tests found.
  process.env.DOCKER_HOST = `unix://${env.socketPath}`;
  await buildTestImages(docker);
}

interface Env {
  root: string;
  port: number;
  controllerId: string;
  h: UpHandle;
  loads: LoadGenerator[];
}

async function up(root: string, port: number): Promise<UpHandle> {
  const h = await runUp(['--dir', path.join(root, 'versions'), '--state', path.join(root, 'state'), '--listen', `127.0.0.1:${port}`, '--admin', '127.0.0.1:0', '--log-level', 'warn', '--drain', '300']);
  assert.ok(h);
  return h;
}

/** A fresh molt up; on test end: shut it down and remove every container it labelled. */
async function start(t: TestContext): Promise<Env> {
  const root = tempDir('molt-e2e-docker-');
  const port = await freePort();
  const e: Env = { root, port, controllerId: controllerIdFor(path.join(root, 'state')), h: await up(root, port), loads: [] };
  t.after(async () => {
    await Promise.all(e.loads.map((g) => g.stop()));
    await e.h.shutdown();
    for (const c of await containers(e.controllerId)) await docker!.getContainer(c.Id).remove({ force: true, v: true }).catch(() => undefined);
  });
  return e;
}

function containers(controllerId: string, versionName?: string): Promise<Dockerode.ContainerInfo[]> {
  const label = [`${LABEL_MANAGED_BY}=${controllerId}`];
  if (versionName) label.push(`${LABEL_APPVERSION}=${versionName}`);
  return docker!.listContainers({ all: true, filters: { label } });
}

function write(root: string, name: string, yaml: string): void {
  const dir = path.join(root, 'versions');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, `.${name}.tmp`), yaml);
  fs.renameSync(path.join(dir, `.${name}.tmp`), path.join(dir, `${name}.yaml`));
}

function dockerYaml(tag: string, extra = '', image = TEST_IMAGE): string {
  return `  docker:\n    image: ${image}\n    tag: "${tag}"\n    containerPort: 8080\n${extra}`;
}

function version(o: { name: string; tag: string; version: string; mode?: string; extraTransition?: string; extraDocker?: string; app?: string; image?: string }): string {
  return appVersionYaml({ name: o.name, app: o.app, version: o.version, mode: o.mode, extraTransition: o.extraTransition, runtime: dockerYaml(o.tag, o.extraDocker, o.image) });
}

function status(h: UpHandle, name: string): VersionStatus | undefined {
  for (const app of h.controller.status().apps) for (const v of app.versions) if (v.name === name) return v;
  return undefined;
}

/** Steady GETs, stopped at test end even when an assertion fails first (else it would spin forever). */
function load(e: Env, concurrency: number): LoadGenerator {
  const g = new LoadGenerator(e.port, concurrency).start();
  e.loads.push(g);
  return g;
}

const phase = (h: UpHandle, name: string): string | undefined => status(h, name)?.phase;

/** v1 serving and promoted: the common starting point. */
async function startV1(e: Env, app = 'shop'): Promise<void> {
  write(e.root, `${app}-v1`, version({ name: `${app}-v1`, app, tag: 'v1', version: '1.0.0' }));
  await waitFor('v1 to serve', async () => (await request(e.port)).body === 'v1', 60000);
  await waitFor('v1 promoted', () => phase(e.h, `${app}-v1`) === 'Promoted');
}

test('docker: INSTANT v1 → v2, 500s and a crash rolled back with zero GET errors, published on 127.0.0.1 only', { skip }, async (t) => {
  const e = await start(t);
  await startV1(e);

  // Published only on loopback: every port binding of every container names 127.0.0.1.
  for (const c of await containers(e.controllerId)) {
    const info = await docker!.getContainer(c.Id).inspect();
    const bindings = Object.values(info.HostConfig.PortBindings ?? {}).flat() as Array<{ HostIp: string }>;
    assert.ok(bindings.length > 0);
    for (const b of bindings) assert.equal(b.HostIp, '127.0.0.1', `${c.Names[0]} binds ${JSON.stringify(b)}`);
    for (const p of c.Ports) if (p.PublicPort) assert.equal(p.IP, '127.0.0.1');
  }

  const gen = load(e, 4);
  write(e.root, 'shop-v2', version({ name: 'shop-v2', tag: 'v2', version: '2.0.0' }));
  await waitFor('v2 to serve', async () => (await request(e.port)).body === 'v2', 60000);
  await waitFor('v2 promoted', () => phase(e.h, 'shop-v2') === 'Promoted');
  await waitFor('v1 kept as the rollback target', () => phase(e.h, 'shop-v1') === 'Ready');

  // v3 answers 500 on /: the first failing GET rolls it back and is retried on v2.
  write(e.root, 'shop-v3', version({ name: 'shop-v3', tag: 'v3', version: '3.0.0' }));
  await waitFor('v3 rolled back', () => phase(e.h, 'shop-v3') === 'RolledBack', 60000);
  assert.match(status(e.h, 'shop-v3')!.message, /500/);
  await waitFor('v3 containers removed', async () => (await containers(e.controllerId, 'shop-v3')).length === 0);

  // v4 serves for ~2 s, then its container exits with code 3: rolled back, GETs retried on v2.
  write(e.root, 'shop-v4', version({ name: 'shop-v4', tag: 'v4', version: '4.0.0' }));
  await waitFor('v4 rolled back', () => phase(e.h, 'shop-v4') === 'RolledBack', 60000);
  await gen.stop();
  // The sidecar usually trips first (connection reset); the controller then adds the exit it observed.
  await waitFor('v4 rollback to name the exit', () => /exited with code 3/.test(status(e.h, 'shop-v4')!.message), 15000)
    .catch((err: Error) => assert.fail(`${err.message}; status: ${JSON.stringify(status(e.h, 'shop-v4'))}`));

  assert.deepEqual(gen.errors, [], 'no client-visible errors during switch and rollbacks');
  assert.ok((gen.byBody.get('v2') ?? 0) > 0);
  assert.equal(gen.byBody.get('v3 fails\n'), undefined, 'no client ever got a v3 answer');
  assert.equal((await request(e.port)).body, 'v2');
  assert.equal(phase(e.h, 'shop-v2'), 'Promoted');
});

test('docker: SESSION keeps a client on v1 by cookie while new clients get v2', { skip }, async (t) => {
  const e = await start(t);
  await startV1(e);
  const alice = new CookieClient(e.port);
  assert.equal((await alice.get()).body, 'v1');

  write(e.root, 'shop-v2', version({ name: 'shop-v2', tag: 'v2', version: '2.0.0', mode: 'SESSION', extraTransition: '    sessionTimeout: 60s' }));
  const bob = await waitFor('new clients to get v2', async () => {
    const c = new CookieClient(e.port);
    return (await c.get()).body === 'v2' ? c : undefined;
  }, 60000);
  for (let i = 0; i < 10; i++) assert.equal((await alice.get()).body, 'v1', 'alice keeps her session on v1');
  for (let i = 0; i < 10; i++) assert.equal((await bob.get()).body, 'v2');
  alice.cookies.clear(); // the session cookie expired
  assert.equal((await alice.get()).body, 'v2');
  assert.equal(phase(e.h, 'shop-v2'), 'Serving', 'SESSION: v1 still has sessions, so v2 is not promoted yet');
});

test('docker: GRADUAL percentagePerRequest moves clients to v2 and they stay', { skip }, async (t) => {
  const e = await start(t);
  await startV1(e);

  write(e.root, 'shop-v2', version({ name: 'shop-v2', tag: 'v2', version: '2.0.0', mode: 'GRADUAL', extraTransition: '    percentagePerRequest: 10' }));
  await waitFor('v2 in the table', () => ['Serving', 'Promoted'].includes(phase(e.h, 'shop-v2') ?? ''), 60000);
  const clients = Array.from({ length: 8 }, () => new CookieClient(e.port));
  const seen: string[][] = [];
  for (let round = 0; round < 14; round++) seen.push(await Promise.all(clients.map(async (c) => (await c.get()).body)));
  // 10 points per routed request: past 10 requests the threshold is 100, everyone is on v2.
  assert.deepEqual(seen.at(-1), clients.map(() => 'v2'));
  assert.ok(seen[0].some((b) => b === 'v1'), `early on most clients stay on v1: ${seen[0].join(',')}`);
  for (let i = 0; i < clients.length; i++) {
    const first = seen.findIndex((r) => r[i] === 'v2');
    for (let round = first; round < seen.length; round++) assert.equal(seen[round][i], 'v2', `client ${i} never flips back`);
  }
  await waitFor('v2 promoted once the share reached 100%', () => phase(e.h, 'shop-v2') === 'Promoted');
});

test('docker: CONCURRENT sends each GET to v1 and v2; the client gets a good answer', { skip }, async (t) => {
  const e = await start(t);
  // v1 with httpd -vv: it logs the URL of every request it serves to stderr, so `docker logs` shows what it received.
  const verbose = '    entrypoint: ["/bin/busybox", "httpd", "-f", "-vv", "-p", "8080", "-h", "/www"]\n';
  write(e.root, 'shop-v1', version({ name: 'shop-v1', tag: 'v1', version: '1.0.0', extraDocker: verbose }));
  await waitFor('v1 to serve', async () => (await request(e.port)).body === 'v1', 60000);
  const [v1] = await containers(e.controllerId, 'shop-v1');
  const logLines = async (): Promise<number> => {
    const buf = (await docker!.getContainer(v1.Id).logs({ stdout: true, stderr: true })) as unknown as Buffer;
    return buf.toString('latin1').split('\n').filter((l) => /url:\/marker-/.test(l)).length;
  };

  write(e.root, 'shop-v2', version({ name: 'shop-v2', tag: 'v2', version: '2.0.0', mode: 'CONCURRENT' }));
  await waitFor('v2 serving', () => ['Serving', 'Promoted'].includes(phase(e.h, 'shop-v2') ?? ''), 60000);
  const before = await logLines();
  for (let i = 0; i < 20; i++) {
    // Neither image has /marker-N: both answer 404, a good (non-5xx) answer.
    assert.equal((await request(e.port, { path: `/marker-${i}` })).status, 404);
  }
  const seenByV2 = await waitFor('sidecar stats for v2', () => (status(e.h, 'shop-v2')?.requests ?? 0) >= 20 ? status(e.h, 'shop-v2')!.requests : undefined, 10000);
  assert.ok(seenByV2 >= 20);
  // Each GET also reached v1: its own access log has one line per marker request.
  await waitFor('v1 to log every duplicated GET', async () => (await logLines()) - before >= 20 || undefined, 10000);
  // Plain GETs: the client gets the first good answer of the two versions, never an error.
  for (let i = 0; i < 10; i++) {
    const r = await request(e.port);
    assert.ok(r.status === 200 && ['v1', 'v2'].includes(r.body), `${r.status} ${r.body}`);
  }
});

test('docker: a restarted controller adopts its containers; deleting a file drains then removes them', { skip }, async (t) => {
  const e = await start(t);
  await startV1(e);
  write(e.root, 'shop-v2', version({ name: 'shop-v2', tag: 'v2', version: '2.0.0', extraDocker: '    replicas: 2\n' }));
  await waitFor('v2 promoted', () => phase(e.h, 'shop-v2') === 'Promoted', 60000);
  const before = (await containers(e.controllerId)).map((c) => c.Id).sort();
  assert.equal(before.length, 3);

  // Controller crash: the sidecar keeps serving from the containers; a new controller adopts both.
  const gen = load(e, 2);
  const sidecarPid = e.h.supervisor.pid;
  e.h.supervisor.detach();
  await e.h.controller.stop();
  e.h.admin.close();
  assert.equal((await request(e.port)).body, 'v2', 'sidecar serves with the controller gone');
  e.h = await up(e.root, e.port);
  await waitFor('sidecar to reconnect', () => e.h.controller.status().sidecarConnected);
  assert.equal(e.h.supervisor.pid, sidecarPid);
  await e.h.controller.reconcileNow();
  await e.h.controller.reconcileNow();
  const after = (await containers(e.controllerId)).map((c) => c.Id).sort();
  assert.deepEqual(after, before, 'same containers adopted: no duplicates, no orphans');
  assert.equal(phase(e.h, 'shop-v2'), 'Promoted');
  await gen.stop();
  assert.deepEqual(gen.errors, []);
  assert.equal(gen.byBody.get('v1'), undefined);

  // Delete v2: out of the table at once (traffic back on v1), containers removed after the drain.
  fs.unlinkSync(path.join(e.root, 'versions', 'shop-v2.yaml'));
  await waitFor('v1 to serve again', async () => (await request(e.port)).body === 'v1', 30000);
  await waitFor('v2 containers removed', async () => (await containers(e.controllerId, 'shop-v2')).length === 0, 30000);
  await waitFor('v2 forgotten', () => phase(e.h, 'shop-v2') === undefined);
  const left = (await containers(e.controllerId)).map((c) => c.Id);
  assert.equal(left.length, 1, 'only v1 is left');
  assert.ok(before.includes(left[0]!), 'v1 is the container it always was');
});

test('docker: an image that does not exist fails the version with a clear message; v1 keeps serving', { skip }, async (t) => {
  const e = await start(t);
  await startV1(e);
  const missing = `molt-test-missing-${randomBytes(4).toString('hex')}`;
  write(e.root, 'shop-v2', version({ name: 'shop-v2', tag: 'v9', version: '2.0.0', image: missing }));
  await waitFor('v2 failed', () => phase(e.h, 'shop-v2') === 'Failed', 60000);
  const st = status(e.h, 'shop-v2')!;
  assert.equal(st.reason, 'CreateFailed');
  assert.match(st.message, new RegExp(`image ${missing}:v9 not found locally`));
  assert.equal((await request(e.port)).body, 'v1');
  assert.equal((await containers(e.controllerId, 'shop-v2')).length, 0);
});

test('docker: checkForNewImages rolls a rebuilt image:tag out as a new version; a bad rebuild is rolled back', { skip }, async (t) => {
  // A private tag that the test moves between the test images, like `docker build -t app:live .` would.
  const repo = `molt-test-retag-${randomBytes(4).toString('hex')}`;
  const retag = (from: string) => docker!.getImage(`${TEST_IMAGE}:${from}`).tag({ repo, tag: 'live' });
  const idOf = async (tag: string) => (await docker!.getImage(`${TEST_IMAGE}:${tag}`).inspect()).Id;
  const hex = async (tag: string) => (await idOf(tag)).replace(/^sha256:/, '').slice(0, 12);
  await retag('v1');
  t.after(() => docker!.getImage(`${repo}:live`).remove().catch(() => undefined));
  const e = await start(t);

  const watch = '    checkForNewImages: true\n    imagePollInterval: 200ms\n';
  write(e.root, 'shop-v1', version({ name: 'shop-v1', tag: 'live', version: '1.0.0', image: repo, extraDocker: watch }));
  await waitFor('v1 to serve', async () => (await request(e.port)).body === 'v1', 60000);
  const [original] = await containers(e.controllerId, 'shop-v1');
  assert.equal(original.ImageID, await idOf('v1'));

  // Rebuild: the tag now names the v2 image. A derived version rolls out (INSTANT, like the original).
  const gen = load(e, 4);
  await retag('v2');
  const v2name = `shop-v1-${await hex('v2')}`;
  await waitFor('the rebuilt image to serve', async () => (await request(e.port)).body === 'v2', 60000);
  await waitFor('the derived version promoted', () => phase(e.h, v2name) === 'Promoted');
  const derived = status(e.h, v2name)!;
  assert.equal(derived.version, `1.0.0.1+${await hex('v2')}`);
  assert.equal(derived.app, 'shop');
  await waitFor('the original kept as the rollback target', () => phase(e.h, 'shop-v1') === 'Ready');
  const [v2c] = await containers(e.controllerId, v2name);
  assert.equal(v2c.ImageID, await idOf('v2'));
  assert.deepEqual((await containers(e.controllerId, 'shop-v1')).map((c) => c.Id), [original.Id], 'the original container is untouched');

  // A bad rebuild (500 on /): its generation rolls back with zero GET errors; the previous one keeps serving.
  await retag('v3');
  const v3name = `shop-v1-${await hex('v3')}`;
  await waitFor('the bad rebuild rolled back', () => phase(e.h, v3name) === 'RolledBack', 60000);
  assert.equal(status(e.h, v3name)!.version, `1.0.0.2+${await hex('v3')}`);
  assert.match(status(e.h, v3name)!.message, /500/);
  await gen.stop();
  assert.deepEqual(gen.errors, []);
  assert.equal((await request(e.port)).body, 'v2');

  // A restarted controller rebuilds the same derived versions from STATE/images.json and adopts their containers.
  const before = (await containers(e.controllerId)).map((c) => c.Id).sort();
  e.h.supervisor.detach();
  await e.h.controller.stop();
  e.h.admin.close();
  e.h = await up(e.root, e.port);
  await e.h.controller.reconcileNow();
  assert.deepEqual((await containers(e.controllerId)).map((c) => c.Id).sort(), before);
  assert.equal(phase(e.h, v2name), 'Promoted');
  assert.equal(phase(e.h, v3name), 'RolledBack');
  assert.equal((await request(e.port)).body, 'v2');

  // Deleting the file removes every generation.
  fs.unlinkSync(path.join(e.root, 'versions', 'shop-v1.yaml'));
  await waitFor('all generations removed', async () => (await containers(e.controllerId)).length === 0, 30000);
  await waitFor('all generations forgotten', () => e.h.controller.status().apps.length === 0);
});

test('docker: preflight rejects a v2 with other content and a v3 that answers 500, before any client reaches them', { skip }, async (t) => {
  const e = await start(t);
  await startV1(e);
  const g = load(e, 2);
  await waitFor('traffic recorded', () => (g.byBody.get('v1') ?? 0) > 50);
  const preflight = '  preflight:\n    maxDuration: 60s\n    replay: { requests: 20 }\n    shadow: { percent: 100, minRequests: 20 }\n';
  write(e.root, 'shop-v2', version({ name: 'shop-v2', tag: 'v2', version: '2.0.0', extraTransition: preflight }));
  const v2 = await waitFor('v2 rejected', () => (phase(e.h, 'shop-v2') === 'Rejected' ? status(e.h, 'shop-v2') : undefined), 90_000);
  assert.equal(v2.reason, 'PreflightMismatch');
  assert.equal(v2.preflight?.topMismatches[0]?.path, 'body');
  write(e.root, 'shop-v3', version({ name: 'shop-v3', tag: 'v3', version: '3.0.0', extraTransition: preflight }));
  const v3 = await waitFor('v3 rejected', () => (phase(e.h, 'shop-v3') === 'Rejected' ? status(e.h, 'shop-v3') : undefined), 90_000);
  assert.equal(v3.reason, 'PreflightErrors');
  await g.stop();
  assert.deepEqual(g.errors, [], 'no client error');
  assert.deepEqual([...g.byBody.keys()], ['v1'], 'every client answer came from v1');
  // Rejected instances are stopped (keepFailed is off).
  await waitFor('v2 and v3 containers gone', async () => (await containers(e.controllerId, 'shop-v2')).length + (await containers(e.controllerId, 'shop-v3')).length === 0, 30_000);
});
