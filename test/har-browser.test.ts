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
//      only the per-answer nonce differs (gzip bodies compare as the decoded bodies the HAR holds), also
//      for a HAR recorded with `content: 'attach'` (bodies in files next to it).
// No request leaves 127.0.0.1. Under CI=true a missing chromium fails the tests instead of skipping them.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import zlib from 'node:zlib';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { decodeContent, fromHar, toHar, type RecordedExchange } from '../common/har.js';
import type { VersionStatus } from '../controller/controller-api.js';
import { readHarFile } from '../controller/traffic.js';
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
  // playwright's `content: 'attach'` keeps the bodies in files next to the HAR (`_file`).
  const attachDir = path.join(m.root, 'attach');
  fs.mkdirSync(attachDir);
  const attachFile = path.join(attachDir, 'attach.har');
  const rec2 = await browser.newContext({ recordHar: { path: attachFile, content: 'attach' } });
  await loadShop(await rec2.newPage(), url);
  await rec2.close();
  const attachHar = JSON.parse(fs.readFileSync(attachFile, 'utf8')) as { log: { entries: Array<{ response: { content: { _file?: string; text?: string } } }> } };
  assert.ok(attachHar.log.entries.some((e) => e.response.content._file && e.response.content.text === undefined), 'bodies are in files, not in the HAR');

  // ---- v2 changes one JSON field; it holds at 10 % next to v1 so that both run
  m.write('shop-v2', appVersionYaml({
    name: 'shop-v2', version: '2.0.0', mode: 'GRADUAL', extraTransition: '    steps: [{weight: 10}]',
    runtime: runtime({ APP_VERSION: '2.0.0', PRICE_BUG: '1' }),
  }));
  await waitFor('v2 serving at 10%', () => m.version('shop-v2')?.phase === 'Serving' && m.version('shop-v2')!.traffic > 0, 30000);

  // Readable output and exit code: v2 against v1 fails with the one field.
  const bad = await cli(['traffic', 'replay', harFile, '--app', 'shop', '--to', '2.0.0', '--compare-with', '1.0.0', '--admin', m.admin]);
  t.diagnostic(`v2 vs v1 (exit ${bad.code}): ${(bad.stdout + bad.stderr).trim().split('\n').join(' | ')}`);
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
  t.diagnostic(`v1 vs v1 (exit ${same.code}): ${same.stdout.trim().split('\n').join(' | ')}`);
  assert.equal(same.code, 0, same.stdout + same.stderr);
  assert.match(same.stdout, new RegExp(`compared ${gets}, mismatched 0, errors 0`));

  // v1 against the answers Chromium recorded: the HAR holds decoded bodies (the stylesheet, script
  // and JSON were gzip on the wire); only the per-answer nonce differs.
  const recorded = await cli(['traffic', 'replay', harFile, '--app', 'shop', '--to', '1.0.0', '--admin', m.admin, '--json']);
  const rr = JSON.parse(recorded.stdout) as typeof r;
  t.diagnostic(`v1 vs the recorded answers: ${rr.verdict}, compared ${rr.preflight.compared}, mismatched ${rr.preflight.mismatched}: ${JSON.stringify(rr.preflight.topMismatches.map((x) => [x.path, x.count]))}`);
  assert.equal(rr.preflight.compared, gets);
  assert.deepEqual(rr.preflight.topMismatches.map((x) => x.path), ['$.stamp'], 'assets and HTML match the recorded (decoded) bodies');

  // The attach-mode HAR: its recorded bodies are read from the files next to it (unread, they would
  // count as not saved and nothing would be compared but the status): again only the nonce differs.
  const attached = await cli(['traffic', 'replay', attachFile, '--app', 'shop', '--to', '1.0.0', '--admin', m.admin, '--json']);
  const ra = JSON.parse(attached.stdout) as typeof r;
  t.diagnostic(`v1 vs the answers recorded with content: 'attach': ${ra.verdict}, compared ${ra.preflight.compared}: ${JSON.stringify(ra.preflight.topMismatches.map((x) => [x.path, x.count]))}`);
  assert.equal(ra.preflight.compared, attachHar.log.entries.length);
  assert.deepEqual(ra.preflight.topMismatches.map((x) => [x.path, x.count]), [['$.stamp', 1]]);
});

// ---- the same HAR handling without a browser (always runs): what playwright writes, what molt writes

test('HAR bodies: molt exports decoded content (gzip, br, deflate); undecodable ones stay encoded and are decoded on import', () => {
  const json = Buffer.from(JSON.stringify({ items: [{ id: 2, price: 3.2 }] }));
  const ex = (coding: string, body: Buffer, truncated = false): RecordedExchange => ({
    startedAt: Date.parse('2026-12-01T10:00:00Z'),
    request: { method: 'GET', target: '/api/items', httpVersion: '1.1', headers: [['Host', '127.0.0.1:8080']], body: Buffer.alloc(0), bodyTruncated: false },
    response: { status: 200, httpVersion: '1.1', headers: [['Content-Type', 'application/json'], ['Content-Encoding', coding]], body, bodyTruncated: truncated },
    timings: { waitMs: 1, receiveMs: 0 },
  });
  const cases: Array<[string, Buffer]> = [['gzip', zlib.gzipSync(json)], ['br', zlib.brotliCompressSync(json)], ['deflate', zlib.deflateSync(json)], ['deflate', zlib.deflateRawSync(json)]];
  for (const [coding, wire] of cases) {
    const har = toHar([ex(coding, wire)], { host: 'x' });
    const c = har.log.entries[0]!.response.content;
    assert.equal(c.text, json.toString(), `${coding}: content.text is the decoded body`);
    assert.equal(c.encoding, undefined);
    assert.equal(c.size, json.length);
    assert.equal(c.compression, json.length - wire.length);
    assert.equal(har.log.entries[0]!.response.bodySize, wire.length, 'bodySize: bytes on the wire');
    assert.equal(fromHar(JSON.parse(JSON.stringify(har)))[0]!.response!.body.toString(), json.toString());
  }
  // Cut at the capture limit: cannot be decoded, written as it travelled and never compared.
  const cut = toHar([ex('gzip', zlib.gzipSync(json).subarray(0, 10), true)], { host: 'x' }).log.entries[0]!.response.content;
  assert.equal(cut.encoding, 'base64');
  assert.equal(cut._contentEncoded, true);
  // Not decodable now (unknown coding), but complete: kept encoded; decoded on import when it can be.
  const odd = toHar([ex('zstd', Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0, 1]))], { host: 'x' });
  assert.equal(odd.log.entries[0]!.response.content._contentEncoded, true);
  assert.equal(fromHar(JSON.parse(JSON.stringify(odd)))[0]!.response!.bodyTruncated, true, 'still encoded: not comparable, so never compared');
  const later = toHar([ex('gzip', zlib.gzipSync(json))], { host: 'x' });
  Object.assign(later.log.entries[0]!.response.content, { text: zlib.gzipSync(json).toString('base64'), encoding: 'base64', _contentEncoded: true });
  assert.equal(fromHar(JSON.parse(JSON.stringify(later)))[0]!.response!.body.toString(), json.toString(), '_contentEncoded bodies are decoded on import');
  assert.equal(decodeContent(Buffer.from('not gzip'), 'gzip'), undefined);
  assert.equal(decodeContent(zlib.gzipSync(zlib.brotliCompressSync(json)), 'br, gzip')!.toString(), json.toString(), 'codings undone in reverse order');
});

test('HAR from playwright: status -1 is no response, `_` fields are ignored, `content._file` bodies are read next to the HAR', () => {
  const dir = tempDir('molt-har-attach-');
  fs.writeFileSync(path.join(dir, 'abc.json'), '{"price":3.2}');
  fs.writeFileSync(path.join(dir, 'post.bin'), 'item=2');
  const entry = (url: string, response: Record<string, unknown>, request: Record<string, unknown> = {}) => ({
    startedDateTime: '2026-12-01T10:00:00.000Z', time: -1, _monotonicTime: 1, pageref: 'page@1', serverIPAddress: '127.0.0.1', _serverPort: 8080,
    request: { method: 'GET', url, httpVersion: 'HTTP/1.1', cookies: [], headers: [{ name: 'Host', value: '127.0.0.1:8080' }, { name: 'Accept-Encoding', value: 'gzip, deflate, br, zstd' }], queryString: [], headersSize: -1, bodySize: 0, ...request },
    response,
    cache: {}, timings: { send: -1, wait: -1, receive: -1 },
  });
  const har = {
    log: {
      version: '1.2', creator: { name: 'Playwright', version: '1.65.1' }, browser: { name: 'chromium', version: '1' },
      pages: [{ startedDateTime: '2026-12-01T10:00:00.000Z', id: 'page@1', title: 'x', pageTimings: { onContentLoad: -1, onLoad: -1 } }],
      entries: [
        entry('http://127.0.0.1:8080/aborted', { status: -1, statusText: '', httpVersion: 'HTTP/1.1', cookies: [], headers: [], content: { size: -1, mimeType: 'x-unknown' }, headersSize: -1, bodySize: -1, redirectURL: '', _transferSize: -1, _failureText: 'net::ERR_ABORTED' }),
        entry('http://127.0.0.1:8080/api/items', { status: 200, statusText: 'OK', httpVersion: 'HTTP/1.1', cookies: [], headers: [{ name: 'content-type', value: 'application/json' }, { name: 'content-encoding', value: 'gzip' }], content: { size: 13, mimeType: 'application/json', compression: -7, _file: 'abc.json' }, headersSize: -1, bodySize: 20, redirectURL: '', _transferSize: 120 }),
        entry('http://127.0.0.1:8080/api/cart', { status: 201, statusText: 'Created', httpVersion: 'HTTP/1.1', cookies: [], headers: [], content: { size: 0, mimeType: 'x-unknown' }, headersSize: -1, bodySize: 0, redirectURL: '' },
          { method: 'POST', postData: { mimeType: 'application/x-www-form-urlencoded', _file: 'post.bin' }, bodySize: 6 }),
      ],
    },
  };
  const file = path.join(dir, 'attach.har');
  fs.writeFileSync(file, JSON.stringify(har));
  const got = readHarFile(file);
  assert.equal(got.length, 3);
  assert.equal(got[0]!.response, undefined, 'status -1: no response');
  assert.equal(got[1]!.response!.body.toString(), '{"price":3.2}', 'content._file read from the HAR directory');
  assert.equal(got[1]!.response!.bodyTruncated, false);
  assert.equal(got[2]!.request.body.toString(), 'item=2', 'postData._file read too');
  // Without the files (content omitted or moved): bodies not saved, never compared; a name escaping
  // the HAR's directory is an error naming the field.
  assert.equal(fromHar(har)[1]!.response!.bodyTruncated, true);
  (har.log.entries[1]!.response.content as { _file: string })._file = '../../etc/passwd';
  fs.writeFileSync(file, JSON.stringify(har));
  assert.throws(() => readHarFile(file), (err: Error) => /log\.entries\[1\]\.response\.content\._file: "\.\.\/\.\.\/etc\/passwd" is outside the HAR's directory/.test(String(err)) && String(err).includes(file));
});
