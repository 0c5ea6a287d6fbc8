// HAR with a real reader and a real writer (issue 11, "Proof"): headless Chromium (Debian's
// /usr/bin/chromium through playwright-core; never a downloaded browser) against a real `molt up`
// (controller, supervised sidecar, app processes from test/fixtures/har-app.mjs).
//  (a) Chromium browses the app through molt; `molt traffic export` writes the recording as HAR; molt is
//      stopped; a fresh browser context serves the page from that HAR alone (routeFromHAR, notFound:
//      'abort'): the page renders, its stylesheet (gzip on the wire) applies, and the JSON its script
//      fetched is the very answer molt recorded (a per-answer nonce).
//  (b) Chromium records a HAR itself (recordHar) while browsing the app through molt; `molt traffic
//      replay` sends it to v2 and compares with v1: a v2 that changes one JSON field is reported as one
//      mismatch at that field (exit 1); v1 against v1 passes (exit 0); against the recorded answers
//      only the per-answer nonce differs (gzip bodies compare as the decoded bodies the HAR holds).
// No request leaves 127.0.0.1. Under CI=true a missing chromium fails the tests instead of skipping them.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import type { VersionStatus } from '../controller/controller-api.js';
import { runUp, type UpHandle } from '../controller/up.js';
import { appVersionYaml, FIXTURES, freePort, tempDir, waitFor } from './helpers/molt.js';

const CHROMIUM = process.env.MOLT_CHROMIUM ?? '/usr/bin/chromium';
const BIN = path.resolve(FIXTURES, '../../bin/molt.js');
const HAR_APP = path.join(FIXTURES, 'har-app.mjs');

const skip = !fs.existsSync(CHROMIUM) && process.env.CI !== 'true' ? `no chromium at ${CHROMIUM} (apt-get install chromium; under CI=true this fails)` : false;

function runtime(env: Record<string, string>): string {
  const lines = Object.entries(env).map(([k, v]) => `      ${k}: "${v}"`).join('\n');
  return `  process:\n    command: ${process.execPath}\n    args: [${JSON.stringify(HAR_APP)}]\n    env:\n${lines}`;
}

interface Molt {
  h: UpHandle;
  port: number;
  root: string;
  admin: string;
  write(name: string, yaml: string): void;
  version(name: string): VersionStatus | undefined;
}

async function startMolt(t: TestContext): Promise<Molt> {
  const root = tempDir('molt-har-browser-');
  const versions = path.join(root, 'versions');
  fs.mkdirSync(versions, { recursive: true });
  const port = await freePort();
  const h = await runUp(['--dir', versions, '--state', path.join(root, 'state'), '--listen', `127.0.0.1:${port}`, '--admin', '127.0.0.1:0', '--log-level', 'warn', '--drain', '300']);
  assert.ok(h);
  t.after(() => h.shutdown());
  return {
    h, port, root, admin: `127.0.0.1:${h.adminAddress.port}`,
    write: (name, yaml) => {
      fs.writeFileSync(path.join(versions, `.${name}.tmp`), yaml);
      fs.renameSync(path.join(versions, `.${name}.tmp`), path.join(versions, `${name}.yaml`));
    },
    version: (name) => h.controller.status().apps.flatMap((a) => a.versions).find((v) => v.name === name),
  };
}

async function launch(t: TestContext): Promise<Browser> {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
  t.after(() => browser.close());
  return browser;
}

/** Every URL a context asks for (to check that nothing leaves 127.0.0.1) and every failed request. */
function watch(context: BrowserContext): { urls: string[]; failed: string[] } {
  const seen = { urls: [] as string[], failed: [] as string[] };
  context.on('request', (r) => seen.urls.push(r.url()));
  context.on('requestfailed', (r) => seen.failed.push(`${r.method()} ${r.url()}: ${r.failure()?.errorText}`));
  return seen;
}

function outside(urls: string[]): string[] {
  return urls.filter((u) => !u.startsWith('data:') && new URL(u).hostname !== '127.0.0.1');
}

/** Load the shop page and wait until its script rendered the JSON answer. */
async function loadShop(page: Page, url: string): Promise<{ stamp: string; items: string[] }> {
  await page.goto(url);
  await page.locator('body[data-loaded]').waitFor({ timeout: 15000 });
  assert.equal(await page.locator('body').getAttribute('data-loaded'), '1', `the page script got its JSON: ${await page.locator('#stamp').innerText()}`);
  return { stamp: await page.locator('#stamp').innerText(), items: await page.locator('#items li').allInnerTexts() };
}

/** `node bin/molt.js ARGS`: exit code, stdout, stderr. */
function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, MOLT_ADMIN_TOKEN: '' } });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60000);
    child.on('error', reject);
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
  });
}

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => { s.destroy(); resolve(false); });
    s.once('error', () => resolve(true));
  });
}

interface HarFile { log: { entries: Array<{ request: { method: string; url: string }; response: { status: number; headers: Array<{ name: string; value: string }>; content: { text?: string; encoding?: string; compression?: number; size: number } } }> } }

test('HAR exported by molt: Chromium serves the page from it alone (routeFromHAR) with molt stopped', { skip, timeout: 180_000 }, async (t) => {
  const m = await startMolt(t);
  m.write('shop-v1', appVersionYaml({ name: 'shop-v1', version: '1.0.0', runtime: runtime({ APP_VERSION: '1.0.0' }) }));
  await waitFor('v1 promoted', () => m.version('shop-v1')?.phase === 'Promoted', 30000);
  const url = `http://127.0.0.1:${m.port}/`;
  const browser = await launch(t);

  // ---- browse through molt (it records at the ingress)
  const live = await browser.newContext();
  const liveSeen = watch(live);
  const first = await loadShop(await live.newPage(), url);
  await live.close();
  assert.deepEqual(first.items, ['tea: 4.5 EUR', 'coffee: 3.2 EUR', 'cocoa: 3.9 EUR']);
  assert.match(first.stamp, /^[0-9a-f-]{36}$/);

  // ---- export with the CLI, then stop molt
  const harFile = path.join(m.root, 'exported.har');
  const exported = await cli(['traffic', 'export', 'shop', '--admin', m.admin]);
  assert.equal(exported.code, 0, exported.stderr);
  fs.writeFileSync(harFile, exported.stdout);
  t.diagnostic(exported.stderr.trim());
  await m.h.shutdown();
  assert.equal(await refused(m.port), true, 'molt is stopped: its port refuses connections');

  // What the HAR holds: every request the page made, bodies decoded (HAR 1.2: content.text is the
  // decoded body; the gzip on the wire shows as content-encoding and content.compression).
  const har = JSON.parse(fs.readFileSync(harFile, 'utf8')) as HarFile;
  const byPath = new Map(har.log.entries.map((e) => [new URL(e.request.url).pathname + new URL(e.request.url).search, e]));
  assert.deepEqual([...byPath.keys()].sort(), ['/', '/api/items?currency=EUR', '/static/app.css', '/static/app.js']);
  const css = byPath.get('/static/app.css')!.response;
  assert.equal(css.headers.find((h) => h.name.toLowerCase() === 'content-encoding')?.value, 'gzip', 'the stylesheet was gzip on the wire');
  assert.equal(css.content.encoding, undefined, 'the stylesheet is exported as decoded text');
  assert.match(css.content.text ?? '', /rgb\(10, 20, 30\)/);
  assert.ok((css.content.compression ?? 0) > 0, `content.compression counts the bytes gzip saved: ${css.content.compression}`);
  assert.equal(css.content.size, Buffer.byteLength(css.content.text ?? ''));
  assert.equal(JSON.parse(byPath.get('/api/items?currency=EUR')!.response.content.text ?? '{}').stamp, first.stamp, 'the recorded JSON answer is the one the page rendered');

  // ---- a fresh context, nothing but the HAR
  const offline = await browser.newContext();
  const seen = watch(offline);
  await offline.routeFromHAR(harFile, { notFound: 'abort' });
  const page = await offline.newPage();
  const apiAnswer = page.waitForResponse((r) => r.url() === `${url}api/items?currency=EUR`);
  const fromHar = await loadShop(page, url);
  assert.equal((await apiAnswer).status(), 200);
  assert.equal(await page.title(), 'HAR shop');
  assert.equal(await page.locator('#title').innerText(), 'HAR shop');
  assert.deepEqual(fromHar.items, first.items, 'the items rendered from the HAR');
  assert.equal(fromHar.stamp, first.stamp, 'the JSON the page fetched came from the HAR (the nonce molt recorded), molt being stopped');
  assert.equal(await page.locator('#title').evaluate((el) => (globalThis as unknown as { getComputedStyle(e: unknown): { color: string } }).getComputedStyle(el).color), 'rgb(10, 20, 30)', 'the stylesheet from the HAR applies');
  assert.deepEqual(seen.failed, [], 'every request the page made was answered from the HAR');
  assert.deepEqual([...new Set(seen.urls.map((u) => new URL(u).pathname))].sort(), ['/', '/api/items', '/static/app.css', '/static/app.js']);
  await offline.close();

  assert.deepEqual(outside([...liveSeen.urls, ...seen.urls]), [], 'every request went to 127.0.0.1');
  t.diagnostic(`${liveSeen.urls.length} requests through molt, ${seen.urls.length} served from the HAR`);
});

test('HAR recorded by Chromium (recordHar) replays through `molt traffic replay`: a changed JSON field is a mismatch', { skip, timeout: 180_000 }, async (t) => {
  const m = await startMolt(t);
  m.write('shop-v1', appVersionYaml({ name: 'shop-v1', version: '1.0.0', runtime: runtime({ APP_VERSION: '1.0.0' }) }));
  await waitFor('v1 promoted', () => m.version('shop-v1')?.phase === 'Promoted', 30000);
  const url = `http://127.0.0.1:${m.port}/`;
  const browser = await launch(t);

  // ---- Chromium writes the HAR: the page, its assets, its JSON, a POST and a JSON URL opened directly
  const harFile = path.join(m.root, 'chromium.har');
  const rec = await browser.newContext({ recordHar: { path: harFile } });
  const seen = watch(rec);
  const page = await rec.newPage();
  await loadShop(page, url);
  const posted = await page.evaluate(async () => (await fetch('/api/cart', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ item: 2, qty: 1 }) })).json());
  assert.deepEqual(posted, { ok: true, received: { item: 2, qty: 1 } });
  await page.goto(`${url}api/items?currency=USD`);
  await rec.close(); // writes the HAR
  assert.deepEqual(outside(seen.urls), [], 'every request went to 127.0.0.1');
  const har = JSON.parse(fs.readFileSync(harFile, 'utf8')) as HarFile;
  const gets = har.log.entries.filter((e) => e.request.method === 'GET').length;
  t.diagnostic(`Chromium recorded ${har.log.entries.length} entries (${gets} GET): ${har.log.entries.map((e) => `${e.request.method} ${new URL(e.request.url).pathname} ${e.response.status}`).join(', ')}`);
  assert.ok(gets >= 5, 'page, stylesheet, script, two JSON answers');

  // ---- v2 changes one JSON field; it holds at 10 % next to v1 so that both run
  m.write('shop-v2', appVersionYaml({
    name: 'shop-v2', version: '2.0.0', mode: 'GRADUAL', extraTransition: '    steps: [{weight: 10}]',
    runtime: runtime({ APP_VERSION: '2.0.0', PRICE_BUG: '1' }),
  }));
  await waitFor('v2 serving at 10%', () => m.version('shop-v2')?.phase === 'Serving' && m.version('shop-v2')!.traffic > 0, 30000);

  // Readable output and exit code: v2 against v1 fails with the one field.
  const bad = await cli(['traffic', 'replay', harFile, '--app', 'shop', '--to', '2.0.0', '--compare-with', '1.0.0', '--admin', m.admin]);
  t.diagnostic(`v2 vs v1 (exit ${bad.code}):\n${bad.stdout}${bad.stderr}`);
  assert.equal(bad.code, 1, 'a mismatch fails the replay');
  assert.match(bad.stdout, /^shop 2\.0\.0 vs 1\.0\.0: Fail \(PreflightMismatch\)/m);
  assert.match(bad.stdout, /compared \d+, mismatched 2, errors 0/);
  assert.match(bad.stdout, /\$\.items\[\*\]\.price: 2 mismatch\(es\), e\.g\. 3\.2 → 32/);

  // The same as JSON: every GET compared, the two /api/items answers mismatched at that one path.
  const json = await cli(['traffic', 'replay', harFile, '--app', 'shop', '--to', '2.0.0', '--compare-with', '1.0.0', '--admin', m.admin, '--json']);
  assert.equal(json.code, 1, json.stderr);
  const r = JSON.parse(json.stdout) as { verdict: string; reason: string; preflight: { compared: number; mismatched: number; errors: number; topMismatches: Array<{ path: string; count: number }> } };
  assert.equal(r.verdict, 'Fail');
  assert.equal(r.reason, 'PreflightMismatch');
  assert.equal(r.preflight.compared, gets, 'every GET of the HAR was compared (the POST is not replayed by default)');
  assert.equal(r.preflight.mismatched, 2);
  assert.equal(r.preflight.errors, 0);
  assert.deepEqual(r.preflight.topMismatches.map((x) => [x.path, x.count]), [['$.items[*].price', 2]], 'only the changed field: the nonce is learned as noise');

  // v1 against v1: the same HAR passes (exit 0).
  const same = await cli(['traffic', 'replay', harFile, '--app', 'shop', '--to', '1.0.0', '--compare-with', '1.0.0', '--admin', m.admin]);
  t.diagnostic(`v1 vs v1 (exit ${same.code}):\n${same.stdout}`);
  assert.equal(same.code, 0, same.stdout + same.stderr);
  assert.match(same.stdout, new RegExp(`compared ${gets}, mismatched 0, errors 0`));

  // v1 against the answers Chromium recorded: the HAR holds decoded bodies (the stylesheet, script
  // and JSON were gzip on the wire); only the per-answer nonce differs.
  const recorded = await cli(['traffic', 'replay', harFile, '--app', 'shop', '--to', '1.0.0', '--admin', m.admin, '--json']);
  const rr = JSON.parse(recorded.stdout) as typeof r;
  t.diagnostic(`v1 vs the recorded answers: ${rr.verdict}, compared ${rr.preflight.compared}, mismatched ${rr.preflight.mismatched}: ${JSON.stringify(rr.preflight.topMismatches.map((x) => [x.path, x.count]))}`);
  assert.equal(rr.preflight.compared, gets);
  assert.deepEqual(rr.preflight.topMismatches.map((x) => x.path), ['$.stamp'], 'assets and HTML match the recorded (decoded) bodies');
});
