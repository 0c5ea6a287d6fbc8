// The dashboard in real headless Chromium (Debian's /usr/bin/chromium through playwright-core; never a
// downloaded browser) against a real `molt up` (controller, supervised sidecar, demo app processes):
// the page shows the app; a GRADUAL rollout is captured in a screenshot; a failing v2 is rolled back and the
// page shows it without a reload (the time it took is reported, not asserted); promote is refused — and
// nothing changes — without a session, with a wrong one, with an expired one and from a foreign origin, and
// works with a valid session; no request leaves 127.0.0.1; the page logs no console errors.
// Under CI=true a missing chromium fails the test instead of skipping it.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test, type TestContext } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import type { VersionStatus } from '../controller/controller-api.js';
import { runUp, type UpHandle } from '../controller/up.js';
import { appVersionYaml, freePort, LoadGenerator, request, tempDir, waitFor } from './helpers/molt.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const DEMO_APP = path.join(ROOT, 'examples', 'demo-app', 'server.mjs');
const OUT = path.join(ROOT, 'test-output');
const CHROMIUM = process.env.MOLT_CHROMIUM ?? '/usr/bin/chromium';
const SESSION_TTL_S = 10;

const skip = !fs.existsSync(CHROMIUM) && process.env.CI !== 'true' ? `no chromium at ${CHROMIUM} (apt-get install chromium)` : false;

function demoRuntime(env: Record<string, string>): string {
  const lines = Object.entries(env).map(([k, v]) => `      ${k}: "${v}"`).join('\n');
  return `  process:\n    command: ${process.execPath}\n    args: [${JSON.stringify(DEMO_APP)}]\n    env:\n${lines}`;
}

function version(h: UpHandle, name: string): VersionStatus | undefined {
  for (const app of h.controller.status().apps) for (const v of app.versions) if (v.name === name) return v;
  return undefined;
}

/** What a refused action must leave untouched. */
function picture(h: UpHandle): string {
  return JSON.stringify(h.controller.status().apps.map((a) => a.versions.map((v) => [v.name, v.phase, v.traffic])));
}

test('dashboard in Chromium: live rollback, promote only with a valid session, nothing leaves 127.0.0.1', { skip, timeout: 240_000 }, async (t) => {
  const root = tempDir('molt-dash-browser-');
  const versions = path.join(root, 'versions');
  fs.mkdirSync(versions, { recursive: true });
  const port = await freePort();
  const h = await runUp(['--dir', versions, '--state', path.join(root, 'state'), '--listen', `127.0.0.1:${port}`, '--admin', '127.0.0.1:0',
    '--log-level', 'warn', '--drain', '300', '--session-ttl', `${SESSION_TTL_S}s`]);
  assert.ok(h);
  t.after(() => h.shutdown());
  const admin = `http://127.0.0.1:${h.adminAddress.port}`;
  const token = fs.readFileSync(h.dashboardTokenFile!, 'utf8').trim();
  const write = (name: string, yaml: string): void => fs.writeFileSync(path.join(versions, `${name}.yaml`), yaml);

  write('shop-v1', appVersionYaml({ name: 'shop-v1', version: '1.0.0', runtime: demoRuntime({ APP_VERSION: '1.0.0' }) }));
  await waitFor('v1 to serve', async () => (await request(port)).body.includes('1.0.0'), 30000);

  const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
  t.after(() => browser.close());
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const requests: string[] = [];
  context.on('request', (r) => requests.push(r.url()));
  const page = await context.newPage();
  const consoleErrors: string[] = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(`pageerror: ${e.message}`));

  // ---- the page loads and shows the app
  await page.goto(`${admin}/ui`);
  await page.locator('article[data-app="shop"] tr[data-version="shop-v1"]').waitFor();
  const fcp = () => page.evaluate(() => performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? -1);
  const cold = await fcp();
  await page.goto(`${admin}/ui`); // once more with a warm browser (the first load includes Chromium's own start-up work)
  await page.locator('article[data-app="shop"] tr[data-version="shop-v1"]').waitFor();
  t.diagnostic(`first contentful paint: ${Math.round(cold)} ms on the first load, ${Math.round(await fcp())} ms on the second`);
  await page.evaluate(() => { (globalThis as unknown as { marker: number }).marker = 42; }); // gone if the page reloads
  assert.equal(await page.locator('button[data-action="promote"]').isDisabled(), true, 'no actions without a session');
  assert.equal(await page.locator('button[data-action="promote-step"]').getAttribute('title') !== null, true, 'one-step promote explains why it is off');

  // ---- a GRADUAL rollout of a v2 that can break: screenshot while it runs
  const load = new LoadGenerator(port, 2).start();
  t.after(() => load.stop());
  write('shop-v2', appVersionYaml({
    name: 'shop-v2', version: '2.0.0', mode: 'GRADUAL', extraTransition: '    steps: [{weight: 20, pause: 2s}, {weight: 50}]',
    runtime: demoRuntime({ APP_VERSION: '2.0.0', CAN_FAIL: '1' }),
  }));
  await page.locator('tr[data-version="shop-v2"] .phase', { hasText: 'Serving' }).waitFor({ timeout: 30000 });
  await page.locator('#timeline li[data-kind="traffic"][data-version="shop-v2"]', { hasText: '→ 50%' }).waitFor({ timeout: 30000 });
  await waitFor('a few chart samples with v2 traffic', () => (version(h, 'shop-v2')?.requests ?? 0) > 20, 30000);
  await new Promise((r) => setTimeout(r, 1500)); // let the charts draw a few points for the picture
  fs.mkdirSync(OUT, { recursive: true });
  await page.screenshot({ path: path.join(OUT, 'dashboard.png'), fullPage: true });
  t.diagnostic(`screenshot during the rollout: ${path.join(OUT, 'dashboard.png')}`);

  // ---- v2 breaks: the sidecar rolls it back; the page shows it without a reload
  const shown = page.locator('#timeline li[data-kind="rollback"][data-version="shop-v2"]').waitFor({ timeout: 60000 }).then(() => Date.now());
  const tFail = Date.now();
  await waitFor('v2 rolled back', async () => {
    if (version(h, 'shop-v2')?.phase === 'RolledBack') return true;
    await request(port, { path: '/fail' }); // lands on v2 half of the time; v1 ignores it
    return false;
  }, 30000);
  const tController = Date.now();
  const tPage = await shown;
  await page.locator('tr[data-version="shop-v2"] .phase', { hasText: 'RolledBack' }).waitFor();
  assert.equal(await page.evaluate(() => (globalThis as unknown as { marker?: number }).marker), 42, 'same page: no reload');
  t.diagnostic(`rollback: in the controller ${tController - tFail} ms after the first /fail, on the page ${tPage - tController} ms after that (${tPage - tFail} ms in all)`);
  await load.stop();

  // ---- v3 rolls out and holds at 10 %: the target of the promote attempts
  write('shop-v3', appVersionYaml({
    name: 'shop-v3', version: '3.0.0', mode: 'GRADUAL', extraTransition: '    steps: [{weight: 10}]',
    runtime: demoRuntime({ APP_VERSION: '3.0.0' }),
  }));
  await waitFor('v3 serving at 10%', () => version(h, 'shop-v3')?.phase === 'Serving' && version(h, 'shop-v3')!.traffic > 0, 30000);
  await page.locator('tr[data-version="shop-v3"] .phase', { hasText: 'Serving' }).waitFor();
  const before = picture(h);

  // Refused attempts run in a second tab of the same browser (its console may log the 401/403s).
  const probe = await context.newPage();
  await probe.goto(`${admin}/ui/style.css`); // same origin, no scripts
  const promote = (p: Page) => p.evaluate(async () => (await fetch('/apps/shop/promote', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })).status);

  assert.equal(await promote(probe), 401, 'no session');
  await context.addCookies([{ name: 'molt_session', value: 'not-a-session', url: admin }]);
  assert.equal(await promote(probe), 401, 'a wrong session');
  assert.equal(picture(h), before, 'nothing changed');

  // Expired: log in through the page, wait out the session, try again.
  await page.fill('#token', token);
  await page.click('#login button[type="submit"]');
  await page.locator('#who', { hasText: 'logged in' }).waitFor();
  const cookie = (await context.cookies(admin)).find((c) => c.name === 'molt_session')!;
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.sameSite, 'Strict');
  await new Promise((r) => setTimeout(r, SESSION_TTL_S * 1000 + 500));
  await context.addCookies([{ name: 'molt_session', value: cookie.value, url: admin }]); // the browser dropped it at Max-Age
  assert.equal(await promote(probe), 401, 'an expired session');
  assert.equal(picture(h), before, 'nothing changed');

  // Foreign origin with a live session: a page on another port of 127.0.0.1 (same site, so the SameSite
  // cookie is sent) posts to the admin API; the Origin check refuses it.
  await page.fill('#token', token);
  await page.click('#login button[type="submit"]');
  await page.locator('#who', { hasText: 'logged in' }).waitFor();
  const evil = await evilSite(t, `${admin}/apps/shop/promote`);
  const foreign = await context.newPage();
  const answered = foreign.waitForResponse((r) => r.url() === `${admin}/apps/shop/promote`);
  await foreign.goto(evil);
  const foreignRes = await answered;
  assert.equal(foreignRes.status(), 403, 'a foreign Origin');
  t.diagnostic(`foreign-origin promote with a live session: ${foreignRes.status()}`);
  assert.equal(picture(h), before, 'nothing changed');

  // A valid session: the button works.
  await page.locator('button[data-action="promote"]:not([disabled])').click();
  await waitFor('v3 promoted', () => version(h, 'shop-v3')?.phase === 'Promoted', 30000);
  await page.locator('tr[data-version="shop-v3"] .phase', { hasText: 'Promoted' }).waitFor();
  await page.locator('#timeline li[data-kind="audit"]', { hasText: 'promote shop' }).waitFor();
  assert.match(await page.locator('#timeline li[data-kind="audit"]', { hasText: 'promote shop' }).first().innerText(), /session [0-9a-f]{8} \(127\.0\.0\.1\)/);

  // ---- nothing left 127.0.0.1; the dashboard logged no errors
  const outside = requests.filter((u) => !u.startsWith('data:') && new URL(u).hostname !== '127.0.0.1');
  assert.deepEqual(outside, [], 'every request went to 127.0.0.1');
  t.diagnostic(`${requests.length} browser requests, all to 127.0.0.1`);
  assert.deepEqual(consoleErrors, [], 'no console errors on the dashboard page');
});

/** A page on another 127.0.0.1 port that POSTs to `target` with credentials as soon as it loads. */
async function evilSite(t: TestContext, target: string): Promise<string> {
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(`<!doctype html><script>fetch(${JSON.stringify(target)}, { method: 'POST', mode: 'no-cors', credentials: 'include', body: '{}' })</script>`);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
}
