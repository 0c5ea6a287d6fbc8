import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { MoltError } from '../common/errors.js';
import { probe } from '../controller/runtime/health.js';
import { ProcessDriver, readProcStat, type ProcessRecord } from '../controller/runtime/process.js';
import type { Instance } from '../controller/runtime/types.js';
import { TEST_HEALTH, httpGet, makeAppVersion, processRuntime, waitFor } from './helpers/runtime.js';

const DEMO = fileURLToPath(new URL('../../test/fixtures/demo-server.mjs', import.meta.url));
const stateRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'molt-process-test-'));
const controllerId = `test-${process.pid}`;
const spawned: number[] = []; // pgids/pids to clean up whatever happens

after(() => {
  for (const pid of spawned) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  fs.rmSync(stateRoot, { recursive: true, force: true });
});

function newStateDir(): string {
  return fs.mkdtempSync(path.join(stateRoot, 'state-'));
}

function demoAv(name: string, env: Record<string, string> = {}, extra: { source?: string; workingDir?: string } = {}) {
  return makeAppVersion(
    name,
    processRuntime({ command: process.execPath, args: [DEMO], env, ...(extra.workingDir ? { workingDir: extra.workingDir } : {}) }),
    extra.source ? { source: extra.source } : {},
  );
}

function registry(driver: ProcessDriver): { processes: Record<string, ProcessRecord> } {
  return JSON.parse(fs.readFileSync(driver.registryPath, 'utf8'));
}

async function waitReady(inst: Instance): Promise<void> {
  await waitFor(async () => ((await probe(inst.endpoint!, TEST_HEALTH)).ok ? true : undefined), `${inst.id} ready`);
}

function alive(pid: number): boolean {
  const st = readProcStat(pid);
  return st !== null && st.state !== 'Z';
}

test('create: serves on the chosen loopback port with PORT and spec env; recorded in the registry', async () => {
  const driver = new ProcessDriver({ stateDir: newStateDir(), controllerId });
  const inst = await driver.create(demoAv('shop-v1', { BODY: 'v1' }), 0);
  const rec = registry(driver).processes[inst.id]!;
  spawned.push(rec.pgid);
  assert.equal(inst.runtime, 'process');
  assert.equal(inst.running, true);
  assert.equal(inst.endpoint?.host, '127.0.0.1');
  assert.deepEqual({ app: inst.app, versionName: inst.versionName, specHash: inst.specHash, index: inst.index }, { app: 'shop', versionName: 'shop-v1', specHash: 'hash-shop-v1', index: 0 });
  await waitReady(inst);
  assert.equal((await httpGet(inst.endpoint!, '/')).body, 'v1');

  assert.equal(rec.port, inst.endpoint!.port);
  assert.equal(rec.pgid, rec.pid, 'own process group');
  assert.equal(readProcStat(rec.pid)!.pgrp, rec.pid);
  assert.equal(rec.startTime, readProcStat(rec.pid)!.startTime);
  assert.equal(rec.labels['molt.dev/managed-by'], controllerId);
  assert.match(fs.readFileSync(rec.logFile, 'utf8'), /demo-server pid \d+ listening/);
  assert.equal(path.basename(rec.logFile), 'shop-v1-0.log');

  await driver.remove(inst, { graceMs: 2000 });
  assert.equal(alive(rec.pid), false);
  assert.deepEqual(await driver.list(), []);
  await driver.remove(inst); // idempotent
});

test('workingDir is relative to the AppVersion file; default is its directory', async () => {
  const dir = fs.mkdtempSync(path.join(stateRoot, 'app-'));
  fs.mkdirSync(path.join(dir, 'work'));
  const source = path.join(dir, 'shop.yaml');
  const driver = new ProcessDriver({ stateDir: newStateDir(), controllerId });
  const a = await driver.create(demoAv('shop-cwd', {}, { source, workingDir: 'work' }), 0);
  const b = await driver.create(demoAv('shop-cwd', {}, { source }), 1);
  for (const i of [a, b]) spawned.push(registry(driver).processes[i.id]!.pgid);
  await waitReady(a);
  await waitReady(b);
  assert.equal(JSON.parse((await httpGet(a.endpoint!, '/info')).body).cwd, fs.realpathSync(path.join(dir, 'work')));
  assert.equal(JSON.parse((await httpGet(b.endpoint!, '/info')).body).cwd, fs.realpathSync(dir));
  await Promise.all([driver.remove(a, { graceMs: 2000 }), driver.remove(b, { graceMs: 2000 })]);
});

test('instances outlive the controller process and are adopted by a new driver', async () => {
  const stateDir = newStateDir();
  // A separate "controller" process creates the instance and exits without cleaning up.
  const script = `
    import { ProcessDriver } from ${JSON.stringify(new URL('../controller/runtime/process.js', import.meta.url).href)};
    const d = new ProcessDriver({ stateDir: ${JSON.stringify(stateDir)}, controllerId: ${JSON.stringify(controllerId)} });
    const av = JSON.parse(process.env.AV);
    const inst = await d.create(av, 0);
    console.log(JSON.stringify(inst));
    process.exit(0);`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...process.env, AV: JSON.stringify(demoAv('shop-adopt', { BODY: 'adopted' })) },
    encoding: 'utf8',
    timeout: 15_000,
  });
  assert.equal(r.status, 0, r.stderr);
  const created = JSON.parse(r.stdout) as Instance;
  const driver = new ProcessDriver({ stateDir, controllerId });
  const rec = registry(driver).processes[created.id]!;
  spawned.push(rec.pgid);
  assert.notEqual(readProcStat(rec.pid)!.ppid, r.pid, 'no longer a child of the exited controller');

  const listed = await driver.list();
  assert.equal(listed.length, 1);
  assert.equal(listed[0]!.id, created.id);
  assert.equal(listed[0]!.running, true);
  assert.deepEqual(listed[0]!.endpoint, created.endpoint);
  await waitReady(listed[0]!);
  assert.equal((await httpGet(listed[0]!.endpoint!, '/')).body, 'adopted');
  // A driver for another controller id does not see it.
  assert.deepEqual(await new ProcessDriver({ stateDir, controllerId: 'someone-else' }).list(), []);

  await driver.remove(listed[0]!, { graceMs: 2000 });
  assert.equal(alive(rec.pid), false);
  assert.deepEqual(await driver.list(), []);
});

test('an exited process is listed running:false with its exit code', async () => {
  const driver = new ProcessDriver({ stateDir: newStateDir(), controllerId });
  const av = makeAppVersion('shop-exit', processRuntime({ command: process.execPath, args: ['-e', 'setTimeout(() => process.exit(7), 100)'] }));
  const inst = await driver.create(av, 0);
  const exited = await waitFor(async () => (await driver.list()).find((i) => i.id === inst.id && !i.running && i.exitCode !== undefined), 'exit recorded');
  assert.equal(exited.exitCode, 7);
  assert.equal(exited.endpoint, null);
  await driver.remove(exited, { graceMs: 0 });
  assert.deepEqual(await driver.list(), []);
});

test('pid reuse: a recorded pid now owned by another process is not ours, and is never signalled', async () => {
  const driver = new ProcessDriver({ stateDir: newStateDir(), controllerId });
  const inst = await driver.create(demoAv('shop-reuse'), 0);
  const rec = registry(driver).processes[inst.id]!;
  spawned.push(rec.pgid);
  await driver.remove(inst, { graceMs: 2000 });

  // An unrelated process (own group, like ours would be) takes over "our" pid in the registry.
  const victim = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { detached: true, stdio: 'ignore' });
  spawned.push(victim.pid!);
  const forged: ProcessRecord = { ...rec, pid: victim.pid!, pgid: victim.pid! }; // startTime is the old process's
  fs.writeFileSync(driver.registryPath, JSON.stringify({ version: 1, processes: { [rec.id]: forged } }));

  const [listed] = await driver.list();
  assert.equal(listed!.running, false, 'start time mismatch → not running');
  assert.equal(listed!.endpoint, null);
  await driver.remove(listed!, { graceMs: 0 });
  assert.equal(alive(victim.pid!), true, 'the unrelated process survives remove()');
  assert.deepEqual(await driver.list(), []);
  victim.kill('SIGKILL');
});

test('remove kills the whole process group, escalating to SIGKILL after graceMs', async () => {
  const driver = new ProcessDriver({ stateDir: newStateDir(), controllerId });
  const inst = await driver.create(demoAv('shop-group', { SPAWN_CHILD: '1', IGNORE_TERM: '1' }), 0);
  const rec = registry(driver).processes[inst.id]!;
  spawned.push(rec.pgid);
  await waitReady(inst);
  const info = JSON.parse((await httpGet(inst.endpoint!, '/info')).body) as { pid: number; childPid: number };
  assert.equal(info.pid, rec.pid);
  assert.equal(readProcStat(info.childPid)!.pgrp, rec.pgid, 'grandchild shares the group');

  await driver.remove(inst, { graceMs: 300 });
  assert.equal(alive(info.pid), false, 'leader killed despite ignoring SIGTERM');
  assert.equal(alive(info.childPid), false, 'child in the group killed');
});

test('a command that cannot start → MOLT_ERR_PROCESS; nothing recorded', async () => {
  const driver = new ProcessDriver({ stateDir: newStateDir(), controllerId });
  const av = makeAppVersion('shop-bad', processRuntime({ command: `/nonexistent/molt-${randomBytes(3).toString('hex')}` }));
  await assert.rejects(driver.create(av, 0), (err: unknown) => err instanceof MoltError && err.code === 'MOLT_ERR_PROCESS' && err.location.path === 'spec.runtime.process.command');
  const badDir = makeAppVersion('shop-bad', processRuntime({ command: process.execPath, workingDir: '/nonexistent-molt-dir' }));
  await assert.rejects(driver.create(badDir, 0), (err: unknown) => err instanceof MoltError && err.code === 'MOLT_ERR_PROCESS');
  assert.deepEqual(await driver.list(), []);
});
