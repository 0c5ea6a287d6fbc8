// The controller under hostile or unlucky input: malformed control messages, a rolled-back version's
// file deleted and restored, path tricks on the admin API, a reconcile that keeps failing.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { test } from 'node:test';
import { runUp, type UpHandle } from '../controller/up.js';
import { appVersionYaml, freePort, LoadGenerator, processRuntimeYaml, request, tempDir, waitFor } from './helpers/molt.js';

async function up(root: string, port: number): Promise<UpHandle> {
  const h = await runUp(['--dir', path.join(root, 'versions'), '--state', path.join(root, 'state'), '--listen', `127.0.0.1:${port}`, '--admin', '127.0.0.1:0', '--log-level', 'fatal', '--drain', '300']);
  assert.ok(h);
  return h;
}

function phase(h: UpHandle, name: string): string | undefined {
  for (const app of h.controller.status().apps) for (const v of app.versions) if (v.name === name) return v.phase;
  return undefined;
}

function write(root: string, name: string, yaml: string): string {
  const dir = path.join(root, 'versions');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${name}.yaml`);
  fs.writeFileSync(`${file}.tmp`, yaml);
  fs.renameSync(`${file}.tmp`, file);
  return file;
}

test('a rolled-back version stays rolled back when its file is deleted and restored', async (t) => {
  const root = tempDir();
  const port = await freePort();
  const h = await up(root, port);
  t.after(() => h.shutdown());
  write(root, 'r-v1', appVersionYaml({ name: 'r-v1', version: '1.0.0', runtime: processRuntimeYaml({ BODY: 'v1' }) }));
  await waitFor('v1', async () => (await request(port)).body === 'v1');
  const v2 = appVersionYaml({ name: 'r-v2', version: '2.0.0', runtime: processRuntimeYaml({ BODY: 'v2', STATUS: '500' }) });
  const file = write(root, 'r-v2', v2);
  await waitFor('v2 rolled back', async () => { await request(port); return phase(h, 'r-v2') === 'RolledBack'; });

  const load = new LoadGenerator(port, 2).start();
  t.after(() => load.stop()); // also when an assertion fails: the load would keep the process alive
  fs.unlinkSync(file);
  await waitFor('v2 gone from status', () => phase(h, 'r-v2') === undefined);
  // Restore only once the removal is complete (past the deletion grace and the drain): the record is
  // then kept, marked removed, and nothing but that record can keep v2 from being rolled out afresh.
  await waitFor('v2 drained and removed', () => { const rec = h.controller.state.get('r-v2'); return !rec || rec.timestamps.removed !== undefined; });
  write(root, 'r-v2', v2);
  await waitFor('v2 back in status', () => phase(h, 'r-v2') !== undefined);
  await h.controller.reconcileNow();
  assert.equal(phase(h, 'r-v2'), 'RolledBack', 'restoring the same spec does not revive a version known to be bad');
  await load.stop();
  assert.deepEqual(load.errors, []);
  assert.deepEqual([...load.byBody.keys()], ['v1']);
});

test('malformed control messages and admin path tricks do not hurt the controller', async (t) => {
  const root = tempDir();
  const port = await freePort();
  const h = await up(root, port);
  t.after(() => h.shutdown());
  const victim = path.join(root, 'versions', 'x.yaml');
  write(root, 'm-v1', appVersionYaml({ name: 'm-v1', version: '1.0.0', runtime: processRuntimeYaml({ BODY: 'v1' }) }));
  fs.copyFileSync(path.join(root, 'versions', 'm-v1.yaml'), victim);
  await waitFor('v1', async () => (await request(port)).body === 'v1');

  // A rogue peer on the control socket: not JSON, JSON null, messages before hello, half messages,
  // wrong types. Every one of the failure reports below names a real version with its real epoch,
  // so any that got through would roll m-v1 back; the stats ones carry at: 1 to be recognised.
  const epoch = h.controller.state.get('m-v1')!.epoch;
  const good = { type: 'failure', app: 'shop', versionId: 'm-v1', version: '1.0.0', epoch, reason: 'x', firstFailureAt: 1, rolledBackAt: 1 };
  const without = (k: string) => JSON.stringify(Object.fromEntries(Object.entries(good).filter(([key]) => key !== k)));
  const reached: string[] = [];
  // Prepended: they see each message before the controller's own listeners (which could throw).
  h.controller.control.prependListener('failure', (m) => reached.push(`failure ${JSON.stringify(m)}`));
  h.controller.control.prependListener('stats', (m) => { if (m.at === 1) reached.push(`stats ${JSON.stringify(m)}`); });
  const sentinel = new Promise<void>((resolve) => h.controller.control.on('ack', (rev) => { if (rev === 4242) resolve(); }));
  const s = net.connect(h.controller.control.socketPath);
  t.after(() => s.destroy());
  await new Promise<void>((r) => s.once('connect', () => r()));
  s.write(`not json\nnull\n[]\n${JSON.stringify(good)}\n{"type":"stats","at":1,"revision":1,"versions":[]}\n`); // before hello: ignored
  s.write('{"type":"hello","protocol":1,"pid":4242}\n{"type":"failure","app":"default"}\n{"type":"stats","at":1,"revision":1,"versions":7}\n');
  s.write('{"type":"stats","at":1,"revision":1,"versions":[null]}\n{"type":"stats","at":1,"revision":1,"versions":[{"requests":3}]}\n');
  for (const k of ['app', 'version', 'reason', 'firstFailureAt', 'rolledBackAt']) s.write(`${without(k)}\n`);
  s.write(`${JSON.stringify({ ...good, firstFailureAt: 'soon' })}\n${JSON.stringify({ ...good, rolledBackAt: '1' })}\n${JSON.stringify({ ...good, reason: 7 })}\n`);
  // Lines are handled in order: once this ack arrives, every line above has been judged.
  s.write('{"type":"ack","revision":4242}\n');
  await sentinel;
  s.destroy();
  await h.controller.reconcileNow();
  assert.equal(phase(h, 'm-v1'), 'Promoted', 'malformed failure reports are ignored');
  assert.equal((await request(port)).body, 'v1');
  assert.deepEqual(reached, [], 'no malformed message reaches the controller');

  // DELETE with an encoded path must not reach outside the API's own store.
  const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: h.adminAddress.port, method: 'DELETE', path: '/appversions/..%2F..%2Fversions%2Fx' }, (r) => {
      let body = '';
      r.on('data', (c) => (body += c));
      r.on('end', () => resolve({ status: r.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
  assert.equal(res.status, 400, res.body);
  assert.ok(fs.existsSync(victim), 'the file outside the API store is untouched');
});
