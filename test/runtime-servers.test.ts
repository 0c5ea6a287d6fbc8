import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MoltError } from '../common/errors.js';
import { ServersDriver } from '../controller/runtime/servers.js';
import { dockerRuntime, makeAppVersion } from './helpers/runtime.js';

const serversAv = (name: string, ports: number[], hash = `hash-${name}`) => ({
  ...makeAppVersion(name, { kind: 'servers', servers: ports.map((port) => ({ host: '127.0.0.1', port })) }),
  specHash: hash,
});

test('list derives from setResources: one running instance per server; other runtimes ignored', async () => {
  const d = new ServersDriver();
  assert.deepEqual(await d.list(), []);
  d.setResources([serversAv('shop-v1', [9001, 9002]), makeAppVersion('shop-d', dockerRuntime())]);
  const list = await d.list();
  assert.deepEqual(
    list.map((i) => [i.id, i.index, i.endpoint, i.running, i.runtime, i.versionName, i.specHash]),
    [
      ['servers-shop-v1-0', 0, { host: '127.0.0.1', port: 9001 }, true, 'servers', 'shop-v1', 'hash-shop-v1'],
      ['servers-shop-v1-1', 1, { host: '127.0.0.1', port: 9002 }, true, 'servers', 'shop-v1', 'hash-shop-v1'],
    ],
  );
  const again = await d.list();
  assert.equal(again[0]!.startedAt, list[0]!.startedAt, 'startedAt stable across calls');
  d.setResources([]);
  assert.deepEqual(await d.list(), []);
});

test('create returns the listed server; remove hides it until created again or the spec changes', async () => {
  const d = new ServersDriver();
  const av = serversAv('shop-v1', [9001, 9002]);
  d.setResources([av]);
  const inst = await d.create(av, 1);
  assert.deepEqual(inst.endpoint, { host: '127.0.0.1', port: 9002 });
  await d.remove(inst);
  assert.deepEqual((await d.list()).map((i) => i.index), [0]);
  d.setResources([av]);
  assert.deepEqual((await d.list()).map((i) => i.index), [0], 'same spec: still removed');
  d.setResources([serversAv('shop-v1', [9001, 9002], 'changed')]);
  assert.deepEqual((await d.list()).map((i) => i.index), [0, 1], 'changed spec: shown again');
  await d.remove((await d.list())[1]!);
  await d.create(serversAv('shop-v1', [9001, 9002], 'changed'), 1);
  assert.deepEqual((await d.list()).map((i) => i.index), [0, 1], 'create shows it again');
  await assert.rejects(d.create(av, 5), (e: unknown) => e instanceof MoltError && e.code === 'MOLT_ERR_VALIDATION');
});
