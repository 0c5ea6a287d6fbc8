// Preflight end to end (issue 11): real `molt up`, real backend processes, client traffic over
// 127.0.0.1. A new version under spec.preflight gets only x-molt-shadow copies and replays until it
// passes; a failing one is Rejected and no client ever sees it.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { test } from 'node:test';
import { runUp, type UpHandle } from '../controller/up.js';
import type { VersionStatus } from '../controller/controller-api.js';
import { FIXTURES, freePort, tempDir, waitFor } from './helpers/molt.js';

function catalog(name: string, version: string, env: Record<string, string>, preflight: string): string {
  const envLines = Object.entries(env).map(([k, v]) => `      ${k}: "${v}"`).join('\n');
  return `apiVersion: molt.dev/v1alpha1
kind: AppVersion
metadata:
  name: ${name}
spec:
  app: catalog
  version: "${version}"
  transition:
    mode: INSTANT
${preflight}
  healthCheck:
    path: /healthz
    interval: 100ms
    startupTimeout: 20s
  process:
    command: ${process.execPath}
    args: [${JSON.stringify(path.join(FIXTURES, 'catalog-app.mjs'))}]
    env:
${envLines}
`;
}

const PREFLIGHT = `  preflight:
    maxDuration: 40s
    replay: { requests: 30 }
    shadow: { percent: 100, minRequests: 40 }
    compare: { ignore: ["header:x-served-by"] }
    pass: { maxLatencyRatio: 100 }   # these tests judge content and errors; on a loaded CI machine p95 ratios reach 5x
`;

interface Seen { status: number; servedBy: string | undefined; error?: string }

/** Clients: GET /items and now and then a POST /orders, until stopped. */
function clients(port: number) {
  const seen: Seen[] = [];
  let stop = false;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
  const one = (method: string, p: string) => new Promise<void>((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: p, agent, headers: { 'content-type': 'application/json' } }, (res) => {
      res.resume();
      res.on('end', () => { seen.push({ status: res.statusCode!, servedBy: res.headers['x-served-by'] as string | undefined }); resolve(); });
    });
    req.on('error', (e) => { seen.push({ status: 0, servedBy: undefined, error: e.message }); resolve(); });
    req.end(method === 'POST' ? '{"item":1}' : undefined);
  });
  const loops = [0, 1].map(async (k) => {
    for (let i = 0; !stop && i < 20_000; i++) {
      await one(i % 10 === 5 && k === 0 ? 'POST' : 'GET', i % 10 === 5 && k === 0 ? '/orders' : `/items?page=${i % 3}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  });
  return { seen, async stop() { stop = true; await Promise.all(loops); agent.destroy(); } };
}

async function setup(t: { after(fn: () => unknown): void }) {
  const root = tempDir('molt-preflight-');
  const port = await freePort();
  const h = (await runUp(['--dir', path.join(root, 'versions'), '--state', path.join(root, 'state'), '--listen', `127.0.0.1:${port}`, '--admin', '127.0.0.1:0', '--log-level', 'warn', '--drain', '300'])) as UpHandle;
  t.after(() => h.shutdown());
  fs.mkdirSync(path.join(root, 'versions'), { recursive: true });
  const write = (name: string, yaml: string) => {
    fs.writeFileSync(path.join(root, 'versions', `.${name}.tmp`), yaml);
    fs.renameSync(path.join(root, 'versions', `.${name}.tmp`), path.join(root, 'versions', `${name}.yaml`));
  };
  const status = (name: string): VersionStatus | undefined => h.controller.status().apps.flatMap((a) => a.versions).find((v) => v.name === name);
  write('catalog-v1', catalog('catalog-v1', '1.0.0', { APP_VERSION: 'v1' }, ''));
  await waitFor('v1 promoted', () => status('catalog-v1')?.phase === 'Promoted');
  const load = clients(port);
  t.after(() => load.stop());
  // Something recorded before v2 arrives (the replay's material).
  await waitFor('traffic recorded', () => load.seen.length > 60);
  return { root, h, write, status, load };
}

function logOf(file: string): string[] {
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').trim().split('\n').filter(Boolean) : [];
}

test('a v2 that changes one JSON field is Rejected; it only ever saw x-molt-shadow GETs and no client saw it', async (t) => {
  const { root, write, status, load } = await setup(t);
  const v2log = path.join(root, 'v2-requests.log');
  write('catalog-v2', catalog('catalog-v2', '2.0.0', { APP_VERSION: 'v2', PRICE_BUG: '1', REQUEST_LOG: v2log }, PREFLIGHT));
  await waitFor('v2 in Testing', () => status('catalog-v2')?.phase === 'Testing');
  const v2 = await waitFor('v2 rejected', () => (status('catalog-v2')?.phase === 'Rejected' ? status('catalog-v2') : undefined), 60_000);
  await load.stop();
  assert.equal(v2.reason, 'PreflightMismatch');
  assert.equal(v2.preflight?.verdict, 'Fail');
  assert.equal(v2.preflight?.topMismatches[0]?.path, '$.items[*].price');
  assert.deepEqual(v2.preflight?.topMismatches[0]?.examples[0], { old: '3.2', new: '32' });
  const lines = logOf(v2log);
  assert.ok(lines.length > 0, 'v2 was exercised');
  assert.deepEqual(lines.filter((l) => !l.endsWith('shadow=1')), [], 'every request v2 saw carries x-molt-shadow: 1');
  assert.deepEqual(lines.filter((l) => l.startsWith('POST')), [], 'no POST was ever sent to v2');
  assert.deepEqual(load.seen.filter((s) => s.error || s.status >= 500), [], 'clients saw no error');
  assert.equal(load.seen.filter((s) => s.servedBy === 'v2').length, 0, 'no client got an answer from v2');
  assert.equal((await fetch(`http://127.0.0.1:${(status('catalog-v1')!.endpoints[0]!).port}/items`)).status, 200);
});

test('a v2 whose only differences are a timestamp and a request id passes its preflight, then takes traffic', async (t) => {
  const { write, status, load } = await setup(t);
  write('catalog-v2', catalog('catalog-v2', '2.0.0', { APP_VERSION: 'v2' }, PREFLIGHT));
  await waitFor('v2 in Testing', () => status('catalog-v2')?.phase === 'Testing');
  const beforePass = load.seen.length;
  await waitFor('v2 promoted after its preflight', () => status('catalog-v2')?.phase === 'Promoted', 60_000);
  const v2 = status('catalog-v2')!;
  assert.equal(v2.preflight?.verdict, 'Pass', v2.preflight?.message);
  assert.ok((v2.preflight?.compared ?? 0) >= 40, `compared ${v2.preflight?.compared}`);
  assert.equal(v2.preflight?.mismatched, 0);
  assert.ok(load.seen.slice(0, beforePass).every((s) => s.servedBy !== 'v2'), 'nothing v2 answered reached a client while it was tested');
  await waitFor('clients served by v2', () => load.seen.slice(-5).every((s) => s.servedBy === 'v2'));
  await load.stop();
  assert.deepEqual(load.seen.filter((s) => s.error || s.status >= 500), [], 'clients saw no error');
});

test('a v2 that answers 500 is Rejected with PreflightErrors, and no client request fails, POST included', async (t) => {
  const { write, status, load } = await setup(t);
  write('catalog-v2', catalog('catalog-v2', '2.0.0', { APP_VERSION: 'v2', FAIL_ITEMS: '1' }, PREFLIGHT));
  const v2 = await waitFor('v2 rejected', () => (status('catalog-v2')?.phase === 'Rejected' ? status('catalog-v2') : undefined), 60_000);
  await load.stop();
  assert.equal(v2.reason, 'PreflightErrors');
  const posts = load.seen.length;
  assert.ok(posts > 0);
  assert.deepEqual(load.seen.filter((s) => s.error || s.status >= 500), [], 'no client error of any method');
  assert.equal(load.seen.filter((s) => s.servedBy === 'v2').length, 0);
});
