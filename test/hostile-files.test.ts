// Hostile AppVersion files through the real controller (runUp, process runtime, test/fixtures/e2e-app.mjs):
// malformed YAML, unknown fields, wrong types, files over 1 MiB, symlinks (valid, dangling, loop), a file
// written in two halves, and a serving file deleted and re-added fast. While all of this happens,
// continuous GETs must see zero errors and only the serving version, and every problem must show up in
// controller.status().errors naming the file (and line:column where the file has lines to point at).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { runUp, type UpHandle } from '../controller/up.js';
import { appVersionYaml, freePort, LoadGenerator, processRuntimeYaml, request, tempDir, waitFor } from './helpers/molt.js';

function errorsFor(h: UpHandle, file: string): string[] {
  return h.controller.status().errors.filter((e) => e.source === file).map((e) => e.message);
}

async function expectError(h: UpHandle, file: string, re: RegExp): Promise<string> {
  return waitFor(`an error for ${path.basename(file)} matching ${re}`, () => errorsFor(h, file).find((m) => re.test(m)), 10000);
}

async function expectNoError(h: UpHandle, file: string): Promise<void> {
  await waitFor(`errors for ${path.basename(file)} to clear`, () => errorsFor(h, file).length === 0, 10000);
}

function phase(h: UpHandle, name: string): string | undefined {
  for (const app of h.controller.status().apps) for (const v of app.versions) if (v.name === name) return v.phase;
  return undefined;
}

const at = (file: string): string => `${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+:\\d+: `;

test('hostile AppVersion files never disturb what is serving, and every error names its file', async (t) => {
  const root = tempDir('molt-hostile-');
  const dir = path.join(root, 'versions');
  const elsewhere = path.join(root, 'elsewhere');
  fs.mkdirSync(dir, { recursive: true });
  fs.mkdirSync(elsewhere, { recursive: true });
  const port = await freePort();
  const h = await runUp(['--dir', dir, '--state', path.join(root, 'state'), '--listen', `127.0.0.1:${port}`, '--admin', '127.0.0.1:0', '--log-level', 'fatal', '--drain', '300']);
  assert.ok(h);
  let load: LoadGenerator | null = null;
  t.after(async () => { await load?.stop(); await h.shutdown(); });

  const v1 = appVersionYaml({ name: 'shop-v1', version: '1.0.0', runtime: processRuntimeYaml({ BODY: 'v1' }) });
  const v1File = path.join(dir, 'shop-v1.yaml');
  fs.writeFileSync(path.join(dir, '.shop-v1.tmp'), v1);
  fs.renameSync(path.join(dir, '.shop-v1.tmp'), v1File);
  await waitFor('v1 to serve', async () => (await request(port)).body === 'v1');
  await waitFor('v1 promoted', () => phase(h, 'shop-v1') === 'Promoted');
  const endpointsBefore = JSON.stringify(h.controller.status().apps[0]!.versions[0]!.endpoints);

  load = new LoadGenerator(port, 4).start();
  const other = (name: string, extra = ''): string =>
    appVersionYaml({ name, app: 'other', version: '1.0.0', runtime: '  servers:\n    - host: 127.0.0.1\n      port: 9\n' }).replace('spec:\n', `spec:\n  hosts: [other.test]\n${extra}`);

  // Malformed YAML: the syntax error points at a line and column.
  const malformed = path.join(dir, 'malformed.yaml');
  fs.writeFileSync(malformed, 'apiVersion: molt.dev/v1alpha1\nkind: AppVersion\nmetadata:\n  name: bad\nspec: [unclosed\n  app: "x\n');
  await expectError(h, malformed, new RegExp(`^${at(malformed)}YAML syntax error`));

  // Unknown field, with a suggestion, at the key's line.
  const unknown = path.join(dir, 'unknown.yaml');
  fs.writeFileSync(unknown, other('unknown-field', '  hostz: [x.test]\n'));
  const u = await expectError(h, unknown, new RegExp(`^${at(unknown)}spec\\.hostz: unknown field spec\\.hostz; did you mean hosts\\?`));
  assert.match(u, /unknown\.yaml:7:3: /, 'points at the key hostz (line 7, column 3)');

  // Wrong types.
  const types = path.join(dir, 'types.yaml');
  fs.writeFileSync(types, other('wrong-types').replace('port: 9', 'port: "nine"').replace('version: "1.0.0"', 'version: 1.10'));
  await expectError(h, types, new RegExp(`^${at(types)}spec\\.servers\\[0\\]\\.port: expected a whole number, got`));
  await expectError(h, types, new RegExp(`^${at(types)}spec\\.version: version must be a string: quote it, version: "1.10"`));

  // Over 1 MiB: refused without being parsed.
  const huge = path.join(dir, 'huge.yaml');
  fs.writeFileSync(huge, other('huge') + '# ' + 'x'.repeat(1024 * 1024 + 10) + '\n');
  await expectError(h, huge, new RegExp(`^${at(huge).replace(':\\d+:\\d+', '')}file is \\d+ bytes; AppVersion files may be at most 1048576 bytes`));

  // Symlinks: to a valid file (loaded), dangling, and a loop.
  fs.writeFileSync(path.join(elsewhere, 'other-v1.yaml'), other('other-v1'));
  fs.symlinkSync(path.join(elsewhere, 'other-v1.yaml'), path.join(dir, 'link-valid.yaml'));
  await waitFor('the symlinked AppVersion to be loaded', () => phase(h, 'other-v1') !== undefined);
  const dangling = path.join(dir, 'link-dangling.yaml');
  fs.symlinkSync(path.join(elsewhere, 'missing.yaml'), dangling);
  const loopA = path.join(dir, 'loop-a.yaml');
  const loopB = path.join(dir, 'loop-b.yaml');
  fs.symlinkSync(loopB, loopA);
  fs.symlinkSync(loopA, loopB);
  await expectError(h, dangling, new RegExp(`^${at(dangling).replace(':\\d+:\\d+', '')}cannot read AppVersion file: .*ENOENT`));
  await expectError(h, loopA, new RegExp(`^${at(loopA).replace(':\\d+:\\d+', '')}cannot read AppVersion file: .*ELOOP`));

  // Partial write of the serving file itself (no rename): the first half is reported, the last good
  // version keeps serving; the rest arrives and the error clears.
  const half = Math.floor(v1.length / 2);
  fs.writeFileSync(v1File, v1.slice(0, half));
  await expectError(h, v1File, new RegExp(`^${at(v1File)}`));
  assert.equal((await request(port)).body, 'v1');
  fs.appendFileSync(v1File, v1.slice(half));
  await expectNoError(h, v1File);

  // Delete and re-add the serving file fast, several times.
  for (let i = 0; i < 10; i++) {
    fs.unlinkSync(v1File);
    // Every third time the controller surely reads the folder while the file is missing (the
    // watcher's debounce alone might never fire mid-churn); otherwise only the watcher sees it.
    if (i % 3 === 0) await h.controller.reconcileNow();
    else if (i % 2 === 1) await new Promise((r) => setTimeout(r, 20));
    fs.writeFileSync(v1File, v1);
    await new Promise((r) => setTimeout(r, 30));
  }
  // A marker file written after the churn: once the controller lists it, it has read the folder with
  // the final v1 file in place and settled (it is older than the marker), so no deletion seen during
  // the churn can still count. Then v1 must be exactly as before.
  const marker = path.join(dir, 'after-churn.yaml');
  fs.writeFileSync(marker, other('after-churn').replace('app: other', 'app: marker').replace('hosts: [other.test]', 'hosts: [marker.test]'));
  await waitFor('the folder to be read after the churn', async () => {
    await h.controller.reconcileNow();
    return phase(h, 'after-churn') !== undefined && errorsFor(h, v1File).length === 0;
  }, 10000);
  assert.equal(phase(h, 'shop-v1'), 'Promoted');
  assert.equal(JSON.stringify(h.controller.status().apps.find((a) => a.app === 'shop')!.versions[0]!.endpoints), endpointsBefore, 'same process: not restarted');

  await load.stop();
  const done = load;
  load = null;
  assert.deepEqual(done.errors, [], 'no client-visible errors');
  assert.deepEqual([...done.byBody.keys()], ['v1'], 'only the serving version answered');
  assert.ok(done.total > 50, `continuous traffic (${done.total} requests)`);

  // Removing the bad files clears their errors.
  for (const f of [malformed, unknown, types, huge, dangling, loopA, loopB, marker]) fs.unlinkSync(f);
  for (const f of [malformed, unknown, types, huge, dangling, loopA]) await expectNoError(h, f);
});
