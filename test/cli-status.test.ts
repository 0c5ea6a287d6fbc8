// `molt status APP` (one app in detail) and `molt status --watch` (redraw, clean exit on Ctrl-C),
// run as a user would: the real CLI against a running `molt up`.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { runUp, type UpHandle } from '../controller/up.js';
import { appVersionYaml, FIXTURES, freePort, processRuntimeYaml, request, tempDir, waitFor } from './helpers/molt.js';

const BIN = path.resolve(FIXTURES, '../../bin/molt.js');

/** The CLI as a child process (asynchronously: the admin API answers from this process). */
function molt(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [BIN, ...args]);
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d) => (stdout += d));
    c.stderr.on('data', (d) => (stderr += d));
    c.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

test('molt status APP shows one app in detail; --watch redraws until Ctrl-C, in place on a terminal', async (t) => {
  const root = tempDir('molt-status-');
  const port = await freePort();
  const h = (await runUp(['--dir', path.join(root, 'versions'), '--state', path.join(root, 'state'), '--listen', `127.0.0.1:${port}`, '--admin', '127.0.0.1:0', '--log-level', 'warn'])) as UpHandle;
  t.after(() => h.shutdown());
  fs.mkdirSync(path.join(root, 'versions'), { recursive: true });
  fs.writeFileSync(path.join(root, 'versions', 'v1.yaml'), appVersionYaml({ name: 'shop-v1', version: '1.0.0', runtime: processRuntimeYaml({ BODY: 'v1' }) }));
  await waitFor('v1 serving', async () => (await request(port)).body === 'v1');
  const admin = `127.0.0.1:${h.adminAddress.port}`;

  const one = await molt(['status', 'shop', '--admin', admin]);
  assert.equal(one.status, 0, one.stderr);
  assert.match(one.stdout, /^app shop/);
  assert.match(one.stdout, /1\.0\.0 {2}shop-v1 {2}INSTANT {2}Promoted \(TransitionComplete\) {2}traffic 100%/);
  const none = await molt(['status', 'nosuch', '--admin', admin]);
  assert.equal(none.status, 1);
  assert.match(none.stderr, /no app "nosuch" \(known: shop\)/);

  // Not a terminal: one frame after another; SIGINT ends it with exit 0.
  const w = spawn(process.execPath, [BIN, 'status', '--watch', '--admin', admin]);
  let out = '';
  w.stdout.on('data', (d) => (out += d));
  await waitFor('two frames', () => (out.match(/molt status --watch/g) ?? []).length >= 2, 15_000);
  const exited = new Promise<number | null>((resolve) => w.on('exit', (code) => resolve(code)));
  w.kill('SIGINT');
  assert.equal(await exited, 0);
  assert.ok(!out.includes('\x1b[2J'), 'no terminal control codes when stdout is not a terminal');

  // A terminal (through script(1)'s pseudo-terminal): every frame clears and redraws in place.
  const script = ['/usr/bin/script', '/bin/script'].find((p) => fs.existsSync(p));
  if (!script) { t.diagnostic('script(1) not installed: the pseudo-terminal check is skipped'); return; }
  // `exec`: script(1) runs the command through $SHELL -c; dash (Debian's /bin/sh) does not exec the last
  // command and, being non-interactive, dies of the terminal's SIGINT itself (exit 130) whatever molt does.
  const tty = spawn(script, ['-qefc', `exec ${process.execPath} ${BIN} status shop --watch --admin ${admin}`, '/dev/null']);
  let ttyOut = '';
  tty.stdout.on('data', (d) => (ttyOut += d));
  await waitFor('two redraws on the terminal', () => (ttyOut.match(/\x1b\[H\x1b\[2J/g) ?? []).length >= 2, 15_000);
  assert.match(ttyOut, /app shop/);
  const ttyExit = new Promise<number | null>((resolve) => tty.on('exit', (code) => resolve(code)));
  tty.stdin.write('\x03'); // Ctrl-C as the terminal sends it
  const code = await Promise.race([ttyExit, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 5000))]);
  if (code === 'timeout') tty.kill('SIGKILL');
  assert.equal(code, 0, 'Ctrl-C ends --watch cleanly');
});
