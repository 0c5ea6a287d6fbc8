import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DockerDriver, buildContainerOptions } from '../controller/runtime/docker.js';
import { probe } from '../controller/runtime/health.js';
import type { Instance } from '../controller/runtime/types.js';
import { MoltError } from '../common/errors.js';
import { buildTestImages, ensureDocker } from './helpers/docker.js';
import { TEST_HEALTH, dockerRuntime, httpGet, makeAppVersion, waitFor } from './helpers/runtime.js';

const env = await ensureDocker();
const skip = 'skip' in env ? env.skip : false;
const controllerId = `test-${process.pid}-${randomBytes(3).toString('hex')}`;

async function waitReady(inst: Instance, p = '/healthz'): Promise<void> {
  assert.ok(inst.endpoint, 'instance has an endpoint');
  await waitFor(async () => ((await probe(inst.endpoint!, { ...TEST_HEALTH, path: p })).ok ? true : undefined), `${inst.id} ready`);
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

test('buildContainerOptions: privileged only when the spec says so; all ports bound to 127.0.0.1', () => {
  const base = makeAppVersion('shop-v1', dockerRuntime({ portBindings: [{ containerPort: 9000, hostPort: 19000, protocol: 'udp' }] }));
  const o = buildContainerOptions(base, 0, 'c1', 'n');
  assert.equal(o.HostConfig?.Privileged, undefined);
  assert.deepEqual(o.HostConfig?.PortBindings, {
    '8080/tcp': [{ HostIp: '127.0.0.1', HostPort: '' }],
    '9000/udp': [{ HostIp: '127.0.0.1', HostPort: '19000' }],
  });
  const priv = buildContainerOptions(makeAppVersion('shop-v1', dockerRuntime({ privileged: true })), 0, 'c1', 'n');
  assert.equal(priv.HostConfig?.Privileged, true);
});

describe('DockerDriver (real daemon)', { skip }, () => {
  let driver: DockerDriver;
  let docker: import('dockerode');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'molt-docker-test-'));

  before(async () => {
    if ('skip' in env) return;
    docker = env.docker;
    await buildTestImages(docker);
    driver = new DockerDriver({ docker, controllerId });
  });

  after(async () => {
    if ('skip' in env) return;
    const left = await docker.listContainers({ all: true, filters: { label: [`molt.dev/managed-by=${controllerId}`] } });
    const others = await docker.listContainers({ all: true, filters: { label: [`molt.test/owner=${controllerId}`] } });
    await Promise.all([...left, ...others].map((c) => docker.getContainer(c.Id).remove({ force: true, v: true }).catch(() => {})));
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test('create v1: published on 127.0.0.1 only, serves "v1", labelled; a restarted driver adopts it; remove cleans up', async () => {
    const av = makeAppVersion('shop-v1', dockerRuntime({ tag: 'v1' }), { version: '1.0.0' });
    const inst = await driver.create(av, 0);
    assert.equal(inst.runtime, 'docker');
    assert.equal(inst.running, true);
    assert.equal(inst.endpoint?.host, '127.0.0.1');
    assert.ok(inst.endpoint!.port > 0);

    const info = await docker.getContainer(inst.id).inspect();
    assert.match(info.Name, /^\/molt-shop-shop-v1-0-[0-9a-f]{4}$/);
    assert.deepEqual(info.HostConfig.PortBindings, { '8080/tcp': [{ HostIp: '127.0.0.1', HostPort: '' }] });
    const published = info.NetworkSettings.Ports['8080/tcp'];
    assert.ok(published.length >= 1);
    for (const b of published) assert.equal(b.HostIp, '127.0.0.1');
    assert.equal(Number(published[0]!.HostPort), inst.endpoint!.port);
    assert.equal(info.Config.Image, 'molt-test-app:v1');
    assert.equal(info.HostConfig.Privileged, false);
    const labels = info.Config.Labels;
    assert.equal(labels['molt.dev/app'], 'shop');
    assert.equal(labels['molt.dev/version'], '1.0.0');
    assert.equal(labels['molt.dev/appversion'], 'shop-v1');
    assert.equal(labels['molt.dev/spec-hash'], 'hash-shop-v1');
    assert.equal(labels['molt.dev/index'], '0');
    assert.equal(labels['molt.dev/managed-by'], controllerId);

    await waitReady(inst);
    const res = await httpGet(inst.endpoint!, '/');
    assert.equal(res.status, 200);
    assert.equal(res.body.trim(), 'v1');

    // "Controller restart": a fresh driver with the same controllerId sees the same instance.
    const adopted = (await new DockerDriver({ docker, controllerId }).list()).find((i) => i.id === inst.id);
    assert.ok(adopted, 'restarted driver lists the container');
    assert.deepEqual(
      { app: adopted.app, versionName: adopted.versionName, specHash: adopted.specHash, index: adopted.index, endpoint: adopted.endpoint, running: adopted.running },
      { app: 'shop', versionName: 'shop-v1', specHash: 'hash-shop-v1', index: 0, endpoint: inst.endpoint, running: true },
    );
    // Another controller's driver does not see it.
    assert.equal((await new DockerDriver({ docker, controllerId: `${controllerId}-other` }).list()).length, 0);

    await driver.remove(inst, { graceMs: 1000 });
    assert.equal((await driver.list()).some((i) => i.id === inst.id), false);
    await assert.rejects(docker.getContainer(inst.id).inspect(), (err: { statusCode?: number }) => err.statusCode === 404);
    await driver.remove(inst, { graceMs: 0 }); // idempotent
  });

  test('v4 exits: listed as running:false with its exit code', async () => {
    const inst = await driver.create(makeAppVersion('shop-v4', dockerRuntime({ tag: 'v4' })), 0);
    const exited = await waitFor(async () => (await driver.list()).find((i) => i.id === inst.id && !i.running), 'v4 to exit', 20_000, 200);
    assert.equal(exited.exitCode, 3);
    assert.equal(exited.endpoint, null);
    assert.match(exited.detail ?? '', /Exited \(3\)/);
    await driver.remove(exited, { graceMs: 0 });
    assert.equal((await driver.list()).some((i) => i.id === inst.id), false);
  });

  test('v3 becomes ready on /healthz and fails traffic; hang never answers', async () => {
    const v3 = await driver.create(makeAppVersion('shop-v3', dockerRuntime({ tag: 'v3' })), 0);
    const hang = await driver.create(makeAppVersion('shop-hang', dockerRuntime({ tag: 'hang' })), 0);
    await waitReady(v3);
    await waitReady(hang);
    assert.equal((await httpGet(v3.endpoint!, '/')).status, 500);
    assert.equal((await httpGet(v3.endpoint!, '/cgi-bin/fail')).status, 500);
    const r = await probe(hang.endpoint!, { ...TEST_HEALTH, path: '/', timeoutMs: 300 });
    assert.equal(r.ok, false);
    assert.match(r.detail, /timed out/);
    await Promise.all([driver.remove(v3, { graceMs: 0 }), driver.remove(hang, { graceMs: 0 })]);
  });

  test('missing image → MOLT_ERR_DOCKER naming the image', async () => {
    const av = makeAppVersion('shop-v9', dockerRuntime({ image: 'molt-test-missing', tag: '9' }));
    await assert.rejects(driver.create(av, 0), (err: unknown) => {
      assert.ok(err instanceof MoltError);
      assert.equal(err.code, 'MOLT_ERR_DOCKER');
      assert.match(err.message, /molt-test-missing:9 not found locally/);
      return true;
    });
    assert.equal(await driver.imageId('molt-test-missing:9'), null);
    assert.match((await driver.imageId('molt-test-app:v1')) ?? '', /^sha256:/);
    await driver.ping();
  });

  test('a daemon that cannot be reached → MOLT_ERR_DOCKER', async () => {
    const Dockerode = (await import('dockerode')).default;
    const bad = new DockerDriver({ docker: new Dockerode({ socketPath: path.join(tmp, 'nope.sock') }), controllerId });
    await assert.rejects(bad.list(), (err: unknown) => err instanceof MoltError && err.code === 'MOLT_ERR_DOCKER' && /cannot reach the Docker daemon/.test(err.message));
  });

  test('every container option reaches the container config', async () => {
    const peer = await docker.createContainer({
      name: `molt-test-peer-${controllerId}`,
      Image: 'molt-test-app:v1',
      Labels: { 'molt.test/owner': controllerId },
      Volumes: { '/shared': {} },
    });
    await peer.start();
    const peerName = `molt-test-peer-${controllerId}`;
    const extraHostPort = await freePort();
    const bindDir = path.join(tmp, 'bind');
    fs.mkdirSync(bindDir);
    const av = makeAppVersion(
      'shop-opts',
      dockerRuntime({
        tag: 'v2',
        name: `molt-test-opts-${controllerId}`,
        replicas: 2,
        workingDir: '/www',
        entrypoint: ['/bin/busybox'],
        cmd: ['httpd', '-f', '-p', '8080', '-h', '/www'],
        env: { GREETING: 'hello', MODE: 'test' },
        hostname: 'molt-opts',
        volumes: ['/scratch'],
        binds: [`${bindDir}:/data:ro`],
        volumesFrom: [`${peerName}:ro`],
        portBindings: [{ containerPort: 9090, hostPort: extraHostPort, protocol: 'tcp' }],
        links: [`${peerName}:peer`],
        user: '65534:65534',
        memory: 64 * 1024 * 1024,
        cpuShares: 512,
      }),
    );
    const inst = await driver.create(av, 1);
    const info = await docker.getContainer(inst.id).inspect();
    assert.equal(info.Name, `/molt-test-opts-${controllerId}-1`);
    assert.equal(info.Config.WorkingDir, '/www');
    assert.deepEqual(info.Config.Entrypoint, ['/bin/busybox']);
    assert.deepEqual(info.Config.Cmd, ['httpd', '-f', '-p', '8080', '-h', '/www']);
    assert.ok(info.Config.Env.includes('GREETING=hello') && info.Config.Env.includes('MODE=test'));
    assert.equal(info.Config.Hostname, 'molt-opts');
    assert.ok('/scratch' in (info.Config.Volumes ?? {}));
    assert.equal(info.Config.User, '65534:65534');
    assert.deepEqual(info.HostConfig.Binds, [`${bindDir}:/data:ro`]);
    assert.deepEqual(info.HostConfig.VolumesFrom, [`${peerName}:ro`]);
    assert.equal(info.HostConfig.Links?.length, 1);
    assert.match(info.HostConfig.Links![0]!, new RegExp(`^/${peerName}:/molt-test-opts-${controllerId}-1/peer$`));
    assert.equal(info.HostConfig.Memory, 64 * 1024 * 1024);
    assert.equal(info.HostConfig.CpuShares, 512);
    assert.equal(info.HostConfig.Privileged, false);
    assert.deepEqual(info.HostConfig.PortBindings, {
      '8080/tcp': [{ HostIp: '127.0.0.1', HostPort: '' }],
      '9090/tcp': [{ HostIp: '127.0.0.1', HostPort: String(extraHostPort) }],
    });
    for (const bindings of Object.values(info.NetworkSettings.Ports)) for (const b of bindings ?? []) assert.equal(b.HostIp, '127.0.0.1');
    const mounts = Object.fromEntries(info.Mounts.map((m) => [m.Destination, m]));
    assert.equal(mounts['/data']?.RW, false);
    assert.equal(mounts['/shared']?.RW, false, 'volumesFrom :ro mounts read-only');
    assert.ok(mounts['/scratch']);

    await waitReady(inst);
    assert.equal((await httpGet(inst.endpoint!, '/')).body.trim(), 'v2');
    await driver.remove(inst, { graceMs: 0 });
    await peer.remove({ force: true, v: true });
  });
});
