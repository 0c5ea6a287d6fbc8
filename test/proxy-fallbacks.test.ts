// The proxy with every Node-internals fast path off (common/node-internals.ts): the fallbacks
// (socket.write() instead of direct handle writes, 'data' events instead of reads into the
// connection's own buffer, the sidecar binding by itself instead of the supervisor's tcp_wrap
// socket) are what a newer Node gets when a self-test fails, so they must pass the same tests.
// This file re-runs the proxy suites in a child `node --test` with MOLT_NODE_INTERNALS=off.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { selfTest } from '../common/node-internals.js';

const DIR = path.dirname(fileURLToPath(import.meta.url));
const SUITES = ['proxy', 'proxy-readbuf', 'smuggling', 'workers'].map((n) => path.join(DIR, `${n}.test.js`));

function run(args: string[], env: Record<string, string>, timeoutMs: number): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    // NODE_TEST_CONTEXT off: the child is a test runner of its own, not one of ours.
    const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
    delete childEnv.NODE_TEST_CONTEXT;
    const child = spawn(process.execPath, args, { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, out }); });
  });
}

test('self-test: every fast path that passes is on; MOLT_SOCKET_WRITER=stream turns off only direct writes', { skip: process.env.MOLT_NODE_INTERNALS === 'off' }, async () => {
  const r = await selfTest();
  for (const [k, v] of Object.entries(r)) assert.match(v, /^(on|off: .+)$/, k);
  // The Node versions CI runs (engines >=20): all four paths work there; a newer Node may turn
  // one off (the self-test's job), which then says why.
  if (['20', '22'].includes(process.versions.node.split('.')[0]!)) {
    assert.deepEqual(r, { directWrite: 'on', ownReadBuffer: 'on', tcpWrap: 'on', nativeCopy: 'on' });
  }
  const probe = `import('${path.join(DIR, '..', 'common', 'node-internals.js')}').then(async (m) => console.log(JSON.stringify(await m.selfTest())))`;
  const stream = await run(['-e', probe], { MOLT_SOCKET_WRITER: 'stream' }, 30_000);
  assert.equal(stream.code, 0, stream.out);
  const sr = JSON.parse(stream.out) as Record<string, string>;
  assert.equal(sr.directWrite, 'off: MOLT_SOCKET_WRITER=stream');
  assert.equal(sr.ownReadBuffer, r.ownReadBuffer);
  const off = await run(['-e', probe], { MOLT_NODE_INTERNALS: 'off' }, 30_000);
  assert.equal(off.code, 0, off.out);
  assert.deepEqual(JSON.parse(off.out), {
    directWrite: 'off: MOLT_NODE_INTERNALS=off', ownReadBuffer: 'off: MOLT_NODE_INTERNALS=off', tcpWrap: 'off: MOLT_NODE_INTERNALS=off',
    nativeCopy: 'off: MOLT_NODE_INTERNALS=off',
  });
});

test('the proxy suites pass with every Node-internals fallback forced (MOLT_NODE_INTERNALS=off)', { timeout: 900_000 }, async () => {
  const r = await run(['--test', '--test-concurrency=1', '--test-reporter=tap', ...SUITES], { MOLT_NODE_INTERNALS: 'off' }, 880_000);
  const pass = Number(/^# pass (\d+)$/m.exec(r.out)?.[1] ?? -1);
  const fail = Number(/^# fail (\d+)$/m.exec(r.out)?.[1] ?? -1);
  const tail = r.out.split('\n').filter((l) => /^not ok|^# (pass|fail|tests)/.test(l)).join('\n');
  assert.equal(fail, 0, tail || r.out.slice(-4000));
  assert.ok(pass >= 50, `only ${pass} tests ran:\n${r.out.slice(-2000)}`);
  assert.equal(r.code, 0, tail);
});

test("the sidecar's startup log says which Node-internals paths are active", { timeout: 60_000 }, async () => {
  const main = path.join(DIR, '..', 'sidecar', 'main.js');
  for (const [env, want] of [
    [{ MOLT_NODE_INTERNALS: 'off' }, 'off: MOLT_NODE_INTERNALS=off'],
    [{ MOLT_SOCKET_WRITER: 'stream' }, null],
  ] as const) {
    const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
    delete childEnv.NODE_TEST_CONTEXT;
    // No controller at that path: the sidecar listens anyway after its first-table wait.
    const child = spawn(process.execPath, [main, '--listen', '127.0.0.1:0', '--control', path.join(DIR, 'no-such-control.sock')], { env: childEnv, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    const line = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no "sidecar listening" line:\n' + err)), 30_000);
      child.stderr.on('data', (d: Buffer) => {
        err += d.toString();
        const l = err.split('\n').find((x) => x.includes('"sidecar listening"'));
        if (l !== undefined) { clearTimeout(timer); resolve(l); }
      });
    });
    child.kill('SIGKILL');
    const internals = (JSON.parse(line) as { internals: Record<string, string> }).internals;
    if (want !== null) assert.deepEqual(internals, { directWrite: want, ownReadBuffer: want, tcpWrap: want, nativeCopy: want });
    else {
      assert.equal(internals.directWrite, 'off: MOLT_SOCKET_WRITER=stream');
      assert.match(internals.ownReadBuffer!, /^(on|off: .+)$/);
    }
  }
});
