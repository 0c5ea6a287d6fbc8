// Terminal output: pino JSON lines as human lines when stderr is a terminal (issue 13, item 3).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { prettyLine, resolveLogFormat } from '../common/log-format.js';
import { FIXTURES, freePort, tempDir, waitFor } from './helpers/molt.js';

test('a log line: time, level, message, then the fields; errors with their stack; colour only when asked', () => {
  const t = new Date(2026, 11, 1, 9, 5, 7, 42).getTime();
  const line = JSON.stringify({ level: 40, time: t, pid: 1, name: 'molt', msg: 'version rolled back', app: 'shop', version: '2.0.0', message: 'status 500 (first failure)' });
  assert.equal(prettyLine(line, false), '09:05:07.042 WARN  version rolled back  app=shop version=2.0.0 message="status 500 (first failure)"\n');
  const colored = prettyLine(line, true);
  assert.match(colored, /\x1b\[33mWARN /);
  const err = prettyLine(JSON.stringify({ level: 50, time: t, msg: 'reconcile failed', err: { message: 'boom', stack: 'Error: boom\n    at x' } }), false);
  assert.equal(err, '09:05:07.042 ERROR reconcile failed\n    Error: boom\n        at x\n');
  assert.equal(prettyLine('not json', false), 'not json\n');
});

test('the format: explicit, then MOLT_LOG_FORMAT, then pretty only on a terminal', () => {
  const saved = process.env.MOLT_LOG_FORMAT;
  try {
    delete process.env.MOLT_LOG_FORMAT;
    assert.equal(resolveLogFormat('json'), 'json');
    assert.equal(resolveLogFormat('pretty'), 'pretty');
    process.env.MOLT_LOG_FORMAT = 'pretty';
    assert.equal(resolveLogFormat(), 'pretty');
    delete process.env.MOLT_LOG_FORMAT;
    assert.equal(resolveLogFormat(), process.stderr.isTTY ? 'pretty' : 'json');
  } finally {
    if (saved === undefined) delete process.env.MOLT_LOG_FORMAT;
    else process.env.MOLT_LOG_FORMAT = saved;
  }
});

test('molt up on a terminal logs human lines; piped it logs JSON', async (t) => {
  const script = ['/usr/bin/script', '/bin/script'].find((p) => fs.existsSync(p));
  const bin = path.resolve(FIXTURES, '../../bin/molt.js');
  const run = async (viaTerminal: boolean): Promise<string> => {
    const root = tempDir('molt-logfmt-');
    const args = ['up', '--dir', path.join(root, 'versions'), '--state', path.join(root, 'state'), '--listen', `127.0.0.1:${await freePort()}`, '--admin', '127.0.0.1:0'];
    const env = { ...process.env };
    delete env.MOLT_LOG_FORMAT;
    const child = viaTerminal
      ? spawn(script!, ['-qefc', [process.execPath, bin, ...args].join(' '), '/dev/null'], { env })
      : spawn(process.execPath, [bin, ...args], { env });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const exited = new Promise((r) => child.on('exit', r));
    t.after(() => { child.kill('SIGKILL'); });
    await waitFor('molt up to log its first table', () => out.includes('routing table pushed') && out.includes('molt is up'), 30_000);
    if (viaTerminal) child.stdin!.write('\x03'); else child.kill('SIGINT');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
    return out;
  };
  const piped = await run(false);
  assert.match(piped, /\{"level":30,.*"msg":"routing table pushed"/);
  if (!script) { t.diagnostic('script(1) not installed: the terminal half is skipped'); return; }
  const tty = await run(true);
  assert.match(tty, /\d\d:\d\d:\d\d\.\d\d\d\x1b\[0m \x1b\[32mINFO \x1b\[0m routing table pushed/);
  assert.ok(!tty.includes('{"level"'), 'no JSON lines on the terminal');
});
