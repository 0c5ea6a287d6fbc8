// The sidecar's listen backlog (`--backlog N`, default DEFAULT_BACKLOG): parsed and validated like
// every other flag, and the listening socket really gets it — bound by the proxy itself, by the
// cluster primary with --workers N, and on a socket inherited from the supervisor (--listen-fd).
// The queue length is read back with `ss -ltn` (Send-Q of a listening socket = its backlog); where
// `ss` is missing those checks are skipped.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MoltError } from '../common/errors.js';
import { bindListenSocket } from '../controller/listen-socket.js';
import { parseSidecarArgs } from '../sidecar/main.js';
import { createProxy, DEFAULT_BACKLOG } from '../sidecar/proxy.js';
import { createRoutingState } from '../sidecar/routing.js';
import { freePort, waitFor } from './helpers/molt.js';

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../sidecar/main.js');
const BASE = ['--listen', '127.0.0.1:8080', '--control', '/tmp/c.sock'];

function hasSs(): boolean {
  try {
    execFileSync('ss', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const noSs = hasSs() ? false : 'ss (iproute2) is not installed';

/** The backlog of the TCP socket listening on 127.0.0.1:port, or null if none listens. */
function listenBacklog(port: number): number | null {
  const out = execFileSync('ss', ['-ltnH', `sport = :${port}`], { encoding: 'utf8' }).trim();
  if (out === '') return null;
  return Number(out.split(/\s+/)[2]); // State Recv-Q Send-Q …
}

test('--backlog: accepted, passed on to workers, absent means the default', () => {
  assert.equal(parseSidecarArgs([...BASE, '--backlog', '8192']).backlog, 8192);
  assert.equal(parseSidecarArgs([...BASE, '--backlog=1']).backlog, 1);
  assert.equal(parseSidecarArgs(BASE).backlog, undefined);
  assert.equal(DEFAULT_BACKLOG, 4096);
});

test('--backlog: bad values are usage errors naming the flag and the accepted range', () => {
  for (const bad of ['0', '-1', '65536', 'abc', '1.5', '']) {
    assert.throws(() => parseSidecarArgs([...BASE, `--backlog=${bad}`]), (e: unknown) => {
      assert.ok(e instanceof MoltError, String(e));
      assert.equal(e.code, 'MOLT_ERR_USAGE');
      assert.equal(e.location.path, '--backlog');
      assert.match(e.message, /whole number from 1 to 65535/);
      return true;
    }, `--backlog=${bad}`);
  }
  assert.throws(() => parseSidecarArgs([...BASE, '--backlog']), (e: unknown) => e instanceof MoltError && e.location.path === '--backlog');
});

test('proxy.listen: backlog DEFAULT_BACKLOG unless told otherwise (never Node\'s 511)', { skip: noSs }, async () => {
  const a = createProxy({ routing: createRoutingState({}) });
  const b = createProxy({ routing: createRoutingState({}) });
  try {
    const pa = (await a.listen(0, '127.0.0.1')).port;
    const pb = (await b.listen(0, '127.0.0.1', undefined, 100)).port;
    const somaxconn = Number(execFileSync('cat', ['/proc/sys/net/core/somaxconn'], { encoding: 'utf8' }));
    assert.equal(listenBacklog(pa), Math.min(DEFAULT_BACKLOG, somaxconn));
    assert.equal(listenBacklog(pb), 100);
  } finally {
    await a.close(100);
    await b.close(100);
  }
});

for (const mode of ['--workers 2', '--listen-fd']) {
  test(`sidecar process with ${mode} listens with --backlog`, { skip: noSs, timeout: 20_000 }, async (t) => {
    const port = await freePort();
    const args = [MAIN, '--listen', `127.0.0.1:${port}`, '--control', '/nonexistent/molt.sock', '--log-level', 'error', '--backlog', '1234'];
    let held: ReturnType<typeof bindListenSocket>['socket'] = null;
    if (mode === '--workers 2') args.push('--workers', '2');
    else {
      const r = bindListenSocket('127.0.0.1', port);
      // Without the tcp_wrap fast path (MOLT_NODE_INTERNALS=off) molt up lets the sidecar bind itself.
      if (r.socket === null) { t.skip(`no held socket: ${r.reason}`); return; }
      held = r.socket;
      args.push('--listen-fd', '3');
    }
    // No controller: the sidecar listens anyway after FIRST_TABLE_WAIT_MS.
    const child = spawn(process.execPath, args, { stdio: held ? ['ignore', 'inherit', 'inherit', held.fd] : ['ignore', 'inherit', 'inherit'] });
    try {
      await waitFor('the sidecar listening', () => listenBacklog(port) !== null, 15_000);
      assert.equal(listenBacklog(port), 1234);
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      held?.close();
    }
  });
}
