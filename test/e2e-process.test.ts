// End to end in local mode with the process runtime: real `molt up` (controller in this process,
// sidecar as a child process), real backend processes, real files, traffic over 127.0.0.1.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { runUp, type UpHandle } from '../controller/up.js';
import { appVersionYaml, CookieClient, freePort, LoadGenerator, processRuntimeYaml, request, tempDir, waitFor } from './helpers/molt.js';

async function up(root: string, port: number): Promise<UpHandle> {
  const h = await runUp(['--dir', path.join(root, 'versions'), '--state', path.join(root, 'state'), '--listen', `127.0.0.1:${port}`, '--admin', '127.0.0.1:0', '--log-level', 'warn', '--drain', '300']);
  assert.ok(h);
  return h;
}

function write(root: string, name: string, yaml: string): void {
  const dir = path.join(root, 'versions');
  fs.mkdirSync(dir, { recursive: true });
  // Write-then-rename: what an editor or a deploy script does.
  fs.writeFileSync(path.join(dir, `.${name}.tmp`), yaml);
  fs.renameSync(path.join(dir, `.${name}.tmp`), path.join(dir, `${name}.yaml`));
}

function phase(h: UpHandle, name: string): string | undefined {
  for (const app of h.controller.status().apps) for (const v of app.versions) if (v.name === name) return v.phase;
  return undefined;
}

test('process runtime: switch, roll back on 500s with zero client errors, durable across a controller restart', async (t) => {
  const root = tempDir();
  const port = await freePort();
  let h = await up(root, port);
  t.after(async () => {
    await h.shutdown();
  });

  write(root, 'shop-v1', appVersionYaml({ name: 'shop-v1', version: '1.0.0', runtime: processRuntimeYaml({ BODY: 'v1' }) }));
  await waitFor('v1 to serve', async () => (await request(port)).body === 'v1');

  // INSTANT switch to v2 under load: nobody sees an error.
  const load = new LoadGenerator(port, 4).start();
  write(root, 'shop-v2', appVersionYaml({ name: 'shop-v2', version: '2.0.0', runtime: processRuntimeYaml({ BODY: 'v2' }) }));
  await waitFor('v2 to serve', async () => (await request(port)).body === 'v2');
  await waitFor('v2 promoted', () => phase(h, 'shop-v2') === 'Promoted');

  // v3 answers 500 to everything but its health check: the first failing request rolls it back
  // and is retried on v2, so clients see no error at all.
  write(root, 'shop-v3', appVersionYaml({ name: 'shop-v3', version: '3.0.0', runtime: processRuntimeYaml({ BODY: 'v3', STATUS: '500' }) }));
  await waitFor('v3 rolled back', () => phase(h, 'shop-v3') === 'RolledBack', 30000);
  await load.stop();
  assert.deepEqual(load.errors, [], 'no client-visible errors during switch and rollback');
  assert.ok((load.byBody.get('v2') ?? 0) > 0);
  assert.equal(load.byBody.get('v3'), undefined, 'no client ever got a v3 answer');
  const st = h.controller.status().apps[0].versions.find((v) => v.name === 'shop-v3')!;
  assert.match(st.message, /500/);
  assert.equal((await request(port)).body, 'v2');

  // Controller crash: the sidecar keeps serving; a new controller adopts sidecar and processes.
  const sidecarPid = h.supervisor.pid;
  const processesBefore = JSON.parse(fs.readFileSync(path.join(root, 'state', 'processes.json'), 'utf8'));
  const load2 = new LoadGenerator(port, 2).start();
  h.supervisor.detach();
  await h.controller.stop(); // stops reconciling; leaves instances and the sidecar running
  h.admin.close();
  assert.equal((await request(port)).body, 'v2', 'sidecar serves with the controller gone');
  h = await up(root, port);
  await waitFor('sidecar to reconnect', () => h.controller.status().sidecarConnected);
  assert.equal(h.supervisor.pid, sidecarPid, 'the running sidecar was adopted, not replaced');
  await h.controller.reconcileNow();
  const processesAfter = JSON.parse(fs.readFileSync(path.join(root, 'state', 'processes.json'), 'utf8'));
  assert.deepEqual(Object.keys(processesAfter).sort(), Object.keys(processesBefore).sort(), 'same processes adopted: no duplicates, no orphans');
  assert.equal(phase(h, 'shop-v3'), 'RolledBack', 'the rollback survived the restart');
  await load2.stop();
  assert.deepEqual(load2.errors, []);
  assert.equal(load2.byBody.get('v3'), undefined, 'never routed to the rolled-back version again');

  // Deleting a file drains and removes the version: traffic goes back to v1.
  fs.unlinkSync(path.join(root, 'versions', 'shop-v3.yaml'));
  fs.unlinkSync(path.join(root, 'versions', 'shop-v2.yaml'));
  await waitFor('v1 to serve again', async () => (await request(port)).body === 'v1');
  await waitFor('v2 removed', () => phase(h, 'shop-v2') === undefined);
});

test('process runtime: SESSION keeps a client on its version until idle, GRADUAL moves buckets', async (t) => {
  const root = tempDir();
  const port = await freePort();
  const h = await up(root, port);
  t.after(() => h.shutdown());

  write(root, 'web-v1', appVersionYaml({ name: 'web-v1', app: 'web', version: '1.9.0', runtime: processRuntimeYaml({ BODY: 'v1' }) }));
  const alice = new CookieClient(port);
  await waitFor('v1 to serve', async () => (await alice.get()).body === 'v1');

  // 1.10.0 is newer than 1.9.0 (semver, not string order).
  write(root, 'web-v2', appVersionYaml({ name: 'web-v2', app: 'web', version: '1.10.0', mode: 'SESSION', extraTransition: '    sessionTimeout: 60s', runtime: processRuntimeYaml({ BODY: 'v2' }) }));
  // A client that arrives once v2 is ready gets v2 (each attempt is a brand-new client).
  const bob = await waitFor('new clients to get v2', async () => {
    const c = new CookieClient(port);
    return (await c.get()).body === 'v2' ? c : undefined;
  });
  for (let i = 0; i < 10; i++) assert.equal((await alice.get()).body, 'v1', 'alice keeps her session on v1');
  for (let i = 0; i < 10; i++) assert.equal((await bob.get()).body, 'v2');
  alice.cookies.clear(); // idle past sessionTimeout: the cookie expired in the browser
  assert.equal((await alice.get()).body, 'v2');
  // v1 answered within the last sessionTimeout, so sessions may still be open on it: v2 is not Promoted,
  // even after the sidecar has reported (every second) that it takes all new clients.
  const v2Status = () => h.controller.status().apps[0].versions.find((v) => v.name === 'web-v2')!;
  await waitFor('stats for v2', () => v2Status().requests > 0);
  await new Promise((r) => setTimeout(r, 2500));
  assert.equal(v2Status().phase, 'Serving', 'SESSION: v1 still has sessions, so v2 is not promoted yet');

  // GRADUAL, 25 points per request: a fresh client lands on v3 once the threshold passes its bucket,
  // then stays there.
  write(root, 'web-v3', appVersionYaml({ name: 'web-v3', app: 'web', version: '1.11.0', mode: 'GRADUAL', extraTransition: '    percentagePerRequest: 25', runtime: processRuntimeYaml({ BODY: 'v3' }) }));
  await waitFor('v3 in the table', () => h.controller.status().apps[0].versions.some((v) => v.name === 'web-v3' && (v.phase === 'Serving' || v.phase === 'Promoted')));
  const clients = Array.from({ length: 8 }, () => new CookieClient(port));
  const seen: string[][] = [];
  for (let round = 0; round < 6; round++) {
    seen.push([]);
    for (const c of clients) seen[round].push((await c.get()).body);
  }
  // After 4+ routed requests the threshold is 100: everyone is on v3 by the last round.
  assert.deepEqual(seen[5], clients.map(() => 'v3'));
  // Stickiness: once a client was on v3 it never went back.
  for (let i = 0; i < clients.length; i++) {
    const first = seen.findIndex((r) => r[i] === 'v3');
    for (let round = first; round < seen.length; round++) assert.equal(seen[round][i], 'v3');
  }
});
