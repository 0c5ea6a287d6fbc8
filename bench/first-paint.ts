// First paint of the dashboard, measured in a real browser (issue 13): `node dist/bench/first-paint.js`.
//
// Starts a real `node bin/molt.js up` (child process) with one app (examples/demo-app, process runtime)
// on 127.0.0.1, opens /ui in headless Chromium (Debian's /usr/bin/chromium through playwright-core,
// never a downloaded browser; MOLT_CHROMIUM overrides the path) and loads it N times (default 5), each
// in a fresh browser context (empty cache, no cookies). Per load:
//   - first contentful paint: the `paint` performance entry `first-contentful-paint` (ms after the
//     navigation started);
//   - apps visible: when the apps table first shows a version row (`article[data-app] tr[data-version]`),
//     seen by a MutationObserver installed before any page script runs (ms after navigation start, same
//     clock), so no polling delay is included.
// Prints one line: `first paint: X ms (median of 5), apps visible: Y ms` (medians), the single loads on
// stderr. Every request the browser makes must go to 127.0.0.1 (else exit 1). Only prints: no thresholds.
//
//   node dist/bench/first-paint.js [--loads N]

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = path.join(REPO, 'bin', 'molt.js');
const DEMO_APP = path.join(REPO, 'examples', 'demo-app', 'server.mjs');
const CHROMIUM = process.env.MOLT_CHROMIUM ?? '/usr/bin/chromium';
const ROW = 'article[data-app] tr[data-version]';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function getJson(port: number, p: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: p, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => { try { resolve(JSON.parse(body)); } catch (err) { reject(err); } });
    }).on('error', reject).setTimeout(5000, function (this: http.ClientRequest) { this.destroy(new Error('timeout')); });
  });
}

async function waitFor(what: string, fn: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await fn().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function appVersion(): string {
  return `apiVersion: molt.dev/v1alpha1
kind: AppVersion
metadata:
  name: shop-v1
spec:
  app: shop
  version: "1.0.0"
  transition:
    mode: INSTANT
  healthCheck:
    path: /healthz
    interval: 100ms
    timeout: 1s
    startupTimeout: 20s
  process:
    command: ${JSON.stringify(process.execPath)}
    args: [${JSON.stringify(DEMO_APP)}]
    env:
      APP_VERSION: "1.0.0"
`;
}

/** `molt up` as a child; resolves once shop-v1 is Promoted. */
async function startMolt(root: string): Promise<{ child: ChildProcess; adminPort: number }> {
  const versions = path.join(root, 'versions');
  fs.mkdirSync(versions, { recursive: true });
  fs.writeFileSync(path.join(versions, 'shop-v1.yaml'), appVersion());
  const [port, adminPort] = [await freePort(), await freePort()];
  const log = fs.openSync(path.join(root, 'molt-up.log'), 'a');
  const child = spawn(process.execPath, [BIN, 'up', '--dir', versions, '--state', path.join(root, 'state'), '--listen', `127.0.0.1:${port}`, '--admin', `127.0.0.1:${adminPort}`, '--log-level', 'warn'], { stdio: ['ignore', log, log] });
  fs.closeSync(log);
  const exited = new Promise<never>((_, reject) => child.once('exit', (code) => reject(new Error(`molt up exited (${code}); see ${path.join(root, 'molt-up.log')}`))));
  exited.catch(() => {});
  try {
    await Promise.race([exited, waitFor('shop-v1 to be Promoted', async () => {
      const st = await getJson(adminPort, '/status') as { apps: Array<{ versions: Array<{ name: string; phase: string }> }> };
      return st.apps.some((a) => a.versions.some((v) => v.name === 'shop-v1' && v.phase === 'Promoted'));
    }, 60000)]);
  } catch (err) {
    await stopMolt(child);
    throw err;
  }
  return { child, adminPort };
}

async function stopMolt(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 30000);
  await gone;
  clearTimeout(timer);
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const at = args.indexOf('--loads');
  const loads = at >= 0 ? Number(args[at + 1]) : 5;
  if (!Number.isInteger(loads) || loads < 1 || loads > 50) throw new Error(`--loads: expected an integer 1-50, got ${args[at + 1]}`);
  if (!fs.existsSync(CHROMIUM)) throw new Error(`no chromium at ${CHROMIUM} (apt-get install chromium, or set MOLT_CHROMIUM)`);

  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'molt-first-paint-'));
  const { child, adminPort } = await startMolt(root);
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
  const urls: string[] = [];
  const fcp: number[] = [];
  const visible: number[] = [];
  try {
    for (let i = 0; i < loads; i++) {
      const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
      context.on('request', (r) => urls.push(r.url()));
      // Before any page script: note when the first version row of the apps table appears.
      await context.addInitScript((selector: string) => {
        const g = globalThis as unknown as { __appsVisible?: number; document: { querySelector(s: string): unknown } };
        const Observer = (globalThis as unknown as { MutationObserver: new (cb: () => void) => { observe(n: unknown, o: unknown): void; disconnect(): void } }).MutationObserver;
        const seen = (): boolean => {
          if (g.__appsVisible === undefined && g.document.querySelector(selector)) g.__appsVisible = performance.now();
          return g.__appsVisible !== undefined;
        };
        const obs = new Observer(() => { if (seen()) obs.disconnect(); });
        obs.observe(g.document, { childList: true, subtree: true });
      }, ROW);
      const page = await context.newPage();
      await page.goto(`http://127.0.0.1:${adminPort}/ui`);
      await page.locator(ROW).first().waitFor({ timeout: 30000 });
      const m = await page.evaluate(() => ({
        fcp: performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? -1,
        visible: (globalThis as unknown as { __appsVisible?: number }).__appsVisible ?? -1,
      }));
      if (m.fcp < 0 || m.visible < 0) throw new Error(`load ${i + 1}: no measurement (first-contentful-paint ${m.fcp}, apps visible ${m.visible})`);
      fcp.push(m.fcp);
      visible.push(m.visible);
      process.stderr.write(`load ${i + 1}: first contentful paint ${m.fcp.toFixed(1)} ms, apps visible ${m.visible.toFixed(1)} ms\n`);
      await context.close();
    }
  } finally {
    await browser.close();
    await stopMolt(child);
  }
  const outside = urls.filter((u) => !u.startsWith('data:') && new URL(u).hostname !== '127.0.0.1');
  if (outside.length) throw new Error(`requests left 127.0.0.1: ${outside.join(', ')}`);
  fs.rmSync(root, { recursive: true, force: true });
  process.stdout.write(`first paint: ${Math.round(median(fcp))} ms (median of ${loads}), apps visible: ${Math.round(median(visible))} ms\n`);
}

main().then(() => process.exit(0), (err: unknown) => {
  process.stderr.write(`first-paint: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
