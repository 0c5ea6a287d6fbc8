// Dashboard auth rules through real HTTP against createAdminServer (a fake controller records what reached
// it): browser requests (Origin, Sec-Fetch-Site or the dashboard cookie, same-origin included) need a session
// for every mutation; login with the dashboard token sets an HttpOnly SameSite=Strict cookie with an expiry;
// wrong, expired and logged-out sessions are refused; foreign Origin and rebinding Host names are refused
// with or without a token; failed logins are rate-limited and logged without the token; non-browser calls
// keep the bearer rules; the generated token file is 0600 and unlocks neither bearer auth nor a public bind.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import pino from 'pino';
import { createAdminServer, type DashboardOptions } from '../controller/admin-api.js';
import type { ControllerApi, ControllerStatus, VersionStatus } from '../controller/controller-api.js';
import { LOGIN_MAX_FAILURES, loadOrCreateDashboardToken, SESSION_COOKIE } from '../controller/dashboard/auth.js';
import { MoltError } from '../common/errors.js';
import { MoltMetrics } from '../controller/metrics.js';
import { runUp } from '../controller/up.js';
import { freePort, tempDir, waitFor } from './helpers/molt.js';

const DASH_TOKEN = 'dashboard-token-0123456789abcdef';

class FakeController implements ControllerApi {
  calls: string[] = [];
  version: VersionStatus = {
    name: 'shop-v2', app: 'shop', version: '2.0.0', mode: 'GRADUAL', phase: 'Serving', traffic: 0.25, reason: 'Transitioning',
    message: '25% of new traffic', source: 'file', endpoints: [], timestamps: {}, requests: 0, errors: 0,
  };
  status(): ControllerStatus {
    return { sidecarConnected: true, routingRevision: 1, apps: [{ app: 'shop', hosts: [], versions: [{ ...this.version }] }], errors: [] };
  }
  getResource() {
    return undefined;
  }
  async applyResource(): Promise<{ created: boolean; name: string }> {
    this.calls.push('apply');
    return { created: true, name: 'x' };
  }
  async deleteResource(): Promise<void> {
    this.calls.push('delete');
  }
  async promote(app: string): Promise<VersionStatus> {
    if (app !== 'shop') throw new MoltError('MOLT_ERR_NOT_FOUND', `no app ${app}`);
    this.calls.push('promote');
    this.version = { ...this.version, phase: 'Promoted', traffic: 1 };
    return this.version;
  }
  async rollback(app: string): Promise<VersionStatus> {
    if (app !== 'shop') throw new MoltError('MOLT_ERR_NOT_FOUND', `no app ${app}`);
    this.calls.push('rollback');
    this.version = { ...this.version, phase: 'RolledBack', traffic: 0, reason: 'manual' };
    return this.version;
  }
}

interface Res { status: number; headers: http.IncomingHttpHeaders; body: string }

async function start(t: TestContext, o: { token?: string; dashboard?: DashboardOptions } = {}) {
  const controller = new FakeController();
  const lines: string[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(s) });
  const server = createAdminServer({ controller, metrics: new MoltMetrics({ defaultMetrics: false }), log, token: o.token, dashboard: { ...(o.token ? {} : { token: DASH_TOKEN }), ...o.dashboard } });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as AddressInfo).port;
  const origin = `http://127.0.0.1:${port}`;

  function call(method: string, p: string, headers: Record<string, string> = {}, body?: string): Promise<Res> {
    return new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, method, path: p, headers, agent: false }, (res) => {
        let b = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (b += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: b }));
      });
      req.on('error', reject);
      req.end(body);
    });
  }
  /** Log in like the page does; returns the cookie pair for later requests. */
  async function login(token = DASH_TOKEN): Promise<{ res: Res; cookie?: string }> {
    const res = await call('POST', '/ui/login', { origin, 'content-type': 'application/json' }, JSON.stringify({ token }));
    const set = res.headers['set-cookie']?.[0];
    return { res, cookie: set?.split(';')[0] };
  }
  /** A browser's same-origin fetch POST: Origin and Sec-Fetch-Site, plus the cookie when given. */
  const browser = (cookie?: string): Record<string, string> => ({ origin, 'sec-fetch-site': 'same-origin', ...(cookie ? { cookie } : {}) });
  return { controller, server, port, origin, call, login, browser, lines };
}

test('generated dashboard token: 0600 in the state dir, stable across starts, permissions re-tightened', () => {
  const dir = tempDir('molt-dash-token-');
  const a = loadOrCreateDashboardToken(dir);
  assert.equal(a.created, true);
  assert.ok(a.token.length >= 32, 'long random token');
  assert.equal(fs.statSync(a.file).mode & 0o777, 0o600);
  const b = loadOrCreateDashboardToken(dir);
  assert.deepEqual([b.created, b.token], [false, a.token], 'the second start reuses it and does not show it again');
  fs.chmodSync(a.file, 0o644);
  loadOrCreateDashboardToken(dir);
  assert.equal(fs.statSync(a.file).mode & 0o777, 0o600);
  assert.notEqual(loadOrCreateDashboardToken(tempDir('molt-dash-token-')).token, a.token, 'each state dir gets its own');
});

test('browser mutations need a session: none, a wrong one, same-origin or not — nothing reaches the controller', async (t) => {
  const { controller, call, browser, origin } = await start(t);
  // The page and the read-only view are open on loopback.
  const page = await call('GET', '/ui');
  assert.equal(page.status, 200);
  assert.match(String(page.headers['content-security-policy']), /default-src 'none'/);
  assert.equal((await call('GET', '/status', { origin })).status, 200);

  for (const [what, headers] of [
    ['same-origin Origin', { origin }],
    ['Sec-Fetch-Site: same-origin only', { 'sec-fetch-site': 'same-origin' }],
    ['a full same-origin browser request', browser()],
    ['a made-up session cookie', browser(`${SESSION_COOKIE}=forged`)],
    ['only a made-up cookie (no Origin)', { cookie: `${SESSION_COOKIE}=forged` }],
    ['the dashboard token as a bearer token', { ...browser(), authorization: `Bearer ${DASH_TOKEN}` }],
  ] as const) {
    for (const action of ['promote', 'rollback']) {
      const r = await call('POST', `/apps/shop/${action}`, headers);
      assert.equal(r.status, 401, `${action} with ${what}: ${r.body}`);
      assert.match(r.body, /MOLT_ERR_UNAUTHORIZED/);
    }
  }
  assert.equal((await call('PUT', '/appversions/x', browser(), '{}')).status, 401);
  assert.deepEqual(controller.calls, [], 'no refused action reached the controller');

  // Non-browser calls keep today's rules: no admin token, so curl may act (the dashboard token is no bearer token).
  assert.equal((await call('POST', '/apps/shop/promote')).status, 200);
  assert.deepEqual(controller.calls, ['promote']);
});

test('login sets an HttpOnly SameSite=Strict cookie with an expiry; the session can act; logout ends it', async (t) => {
  const { controller, call, login, browser, lines } = await start(t);
  const { res, cookie } = await login();
  assert.equal(res.status, 200, res.body);
  const set = res.headers['set-cookie']![0]!;
  assert.match(set, new RegExp(`^${SESSION_COOKIE}=[A-Za-z0-9_-]{40,};`));
  for (const attr of ['HttpOnly', 'SameSite=Strict', 'Path=/']) assert.ok(set.split('; ').includes(attr), `${attr} in ${set}`);
  assert.match(set, /; Max-Age=43200(;|$)/, '12 h by default');
  assert.ok(!set.includes(DASH_TOKEN), 'the cookie is a session id, not the token');

  const r = await call('POST', '/apps/shop/promote', browser(cookie), '{}');
  assert.equal(r.status, 200, r.body);
  assert.deepEqual(controller.calls, ['promote']);

  // Audit: a log line naming the session (by its tag, never the id) and the timeline event in the stream.
  const tag = (JSON.parse(res.body) as { session: string }).session;
  const audit = lines.map((l) => JSON.parse(l) as { msg: string; audit?: { actor: string; action: string } }).find((l) => l.audit?.action === 'promote');
  assert.ok(audit, 'an audit log line');
  assert.equal(audit.audit!.actor, `session ${tag} (127.0.0.1)`);
  const init = await firstStreamMessage(call, browser(cookie));
  const ev = init.events.find((e) => e.kind === 'audit' && e.message.startsWith('promote shop'));
  assert.ok(ev, `audit event in the timeline: ${JSON.stringify(init.events)}`);
  assert.equal(ev.actor, `session ${tag} (127.0.0.1)`);
  assert.equal(ev.app, 'shop');
  assert.deepEqual(init.session?.tag, tag, 'the stream tells the page it is logged in');

  const out = await call('POST', '/ui/logout', browser(cookie));
  assert.equal(out.status, 200);
  assert.match(out.headers['set-cookie']![0]!, /^molt_session=; .*Max-Age=0/);
  assert.equal((await call('POST', '/apps/shop/rollback', browser(cookie))).status, 401, 'the old cookie is dead after logout');
  assert.deepEqual(controller.calls, ['promote']);
  const text = lines.join('');
  assert.ok(!text.includes(DASH_TOKEN), 'the token never reaches the log');
  assert.ok(!text.includes(cookie!.split('=')[1]!), 'nor the session id');
});

test('an expired session is refused', async (t) => {
  const { controller, call, login, browser } = await start(t, { dashboard: { sessionTtlMs: 1000 } });
  const { res, cookie } = await login();
  assert.match(res.headers['set-cookie']![0]!, /Max-Age=1(;|$)/);
  await new Promise((r) => setTimeout(r, 1300));
  const r = await call('POST', '/apps/shop/promote', browser(cookie));
  assert.equal(r.status, 401, r.body);
  assert.deepEqual(controller.calls, []);
});

test('foreign Origin, cross-site fetch metadata and rebinding Host names are refused even with a valid session', async (t) => {
  const { controller, call, login, browser, port } = await start(t, { token: 'admin-bearer-token' });
  const { cookie } = await login('admin-bearer-token'); // with --admin-token that is the dashboard token
  assert.ok(cookie);
  for (const [what, headers] of [
    ['a foreign Origin', { ...browser(cookie), origin: 'http://attacker.example' }],
    ['another port on the same host (same site, other origin)', { ...browser(cookie), origin: `http://127.0.0.1:${port + 1}` }],
    ['Origin: null', { ...browser(cookie), origin: 'null' }],
    ['Sec-Fetch-Site: cross-site', { cookie, 'sec-fetch-site': 'cross-site' }],
    ['Sec-Fetch-Site: same-site', { cookie, 'sec-fetch-site': 'same-site' }],
    ['a rebinding Host (token set)', { ...browser(cookie), host: `attacker.example:${port}`, origin: `http://attacker.example:${port}` }],
  ] as const) {
    const r = await call('POST', '/apps/shop/promote', headers as Record<string, string>);
    assert.equal(r.status, 403, `${what}: ${r.body}`);
  }
  // Reads with a rebinding Host are refused too, token or not; so is logging in from another origin.
  assert.equal((await call('GET', '/status', { host: `attacker.example:${port}` })).status, 403);
  assert.equal((await call('GET', '/ui/events', { host: `attacker.example:${port}` })).status, 403);
  assert.equal((await call('POST', '/ui/login', { origin: 'http://attacker.example', 'content-type': 'application/json' }, JSON.stringify({ token: 'admin-bearer-token' }))).status, 403);
  assert.deepEqual(controller.calls, []);

  // With --admin-token: a browser needs its session (the bearer token does not stand in for it) ...
  assert.equal((await call('POST', '/apps/shop/promote', { ...browser(), authorization: 'Bearer admin-bearer-token' })).status, 401);
  // ... and non-browser calls keep the bearer rule.
  assert.equal((await call('POST', '/apps/shop/promote')).status, 401);
  assert.equal((await call('POST', '/apps/shop/promote', { authorization: 'Bearer admin-bearer-token' })).status, 200);
  assert.equal((await call('POST', '/apps/shop/rollback', browser(cookie))).status, 200);
  assert.deepEqual(controller.calls, ['promote', 'rollback']);
});

test('failed logins: 401, logged (without the token), then rate-limited per address with Retry-After', async (t) => {
  const { call, login, lines, browser } = await start(t);
  for (let i = 0; i < LOGIN_MAX_FAILURES; i++) {
    const { res, cookie } = await login('wrong-' + i);
    assert.equal(res.status, 401, res.body);
    assert.equal(cookie, undefined);
  }
  const limited = await login(); // even the right token while limited
  assert.equal(limited.res.status, 429);
  assert.ok(Number(limited.res.headers['retry-after']) > 0);
  assert.equal(limited.cookie, undefined);
  const failed = lines.filter((l) => l.includes('dashboard login failed'));
  assert.equal(failed.length, LOGIN_MAX_FAILURES + 1);
  assert.match(failed[0]!, /"remote":"127\.0\.0\.1"/);
  assert.ok(!lines.join('').includes('wrong-0'), 'the attempted token is not logged');
  assert.equal((await call('POST', '/apps/shop/promote', browser())).status, 401);
});

test('Kubernetes mode (readOnly): browsers cannot act even with a session; the stream says read-only', async (t) => {
  const { controller, call, login, browser } = await start(t, { dashboard: { readOnly: true } });
  const { cookie } = await login();
  assert.ok(cookie);
  const r = await call('POST', '/apps/shop/promote', browser(cookie));
  assert.equal(r.status, 403, r.body);
  assert.deepEqual(controller.calls, []);
  const init = await firstStreamMessage(call, browser(cookie));
  assert.equal(init.readOnly, true);
});

test('event stream: init, samples, heartbeats; server.close() ends it instead of hanging', async (t) => {
  const { server, port } = await start(t, { dashboard: { heartbeatMs: 50, sampleIntervalMs: 100 } });
  const chunks: string[] = [];
  const ended = new Promise<void>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/ui/events', agent: false }, (res) => {
      assert.equal(res.headers['content-type'], 'text/event-stream; charset=utf-8');
      res.setEncoding('utf8');
      res.on('data', (c: string) => chunks.push(c));
      res.on('end', resolve);
      res.on('error', reject);
    }).on('error', reject);
  });
  await waitFor('init, a sample and a heartbeat', () => {
    const text = chunks.join('');
    return text.includes('event: init') && text.includes('event: sample') && text.includes(': hb');
  }, 10000);
  await new Promise<void>((r) => server.close(() => r()));
  await ended;
});

test('runUp: a generated dashboard token neither enables bearer auth nor unlocks a non-loopback bind', async (t) => {
  const saved = process.env.MOLT_ADMIN_TOKEN;
  delete process.env.MOLT_ADMIN_TOKEN;
  t.after(() => { if (saved !== undefined) process.env.MOLT_ADMIN_TOKEN = saved; });
  const root = tempDir('molt-dash-up-');
  const state = path.join(root, 'state');
  const base = ['--dir', path.join(root, 'versions'), '--state', state, '--log-level', 'fatal', '--drain', '100'];
  const h = await runUp([...base, '--listen', `127.0.0.1:${await freePort()}`, '--admin', '127.0.0.1:0']);
  assert.ok(h);
  try {
    assert.equal(h.dashboardTokenFile, path.join(state, 'dashboard-token'));
    assert.equal(fs.statSync(h.dashboardTokenFile).mode & 0o777, 0o600);
    // curl without a token may still act (404: no such app, i.e. it reached the controller).
    const r = await fetch(`http://127.0.0.1:${h.adminAddress.port}/apps/none/rollback`, { method: 'POST' });
    assert.equal(r.status, 404);
  } finally {
    await h.shutdown();
  }
  await assert.rejects(runUp([...base, '--listen', `127.0.0.1:${await freePort()}`, '--admin', '0.0.0.0:0']),
    (e: unknown) => e instanceof MoltError && e.code === 'MOLT_ERR_USAGE');
});

interface Init { events: Array<{ kind: string; message: string; actor: string; app: string }>; readOnly: boolean; session: { tag: string } | null }

/** The stream's first message (init), read through real HTTP, then the connection is dropped. */
function firstStreamMessage(_call: unknown, headers: Record<string, string>): Promise<Init> {
  const port = Number(/:(\d+)$/.exec(headers.origin ?? '')?.[1]);
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/ui/events', headers: { cookie: headers.cookie ?? '' }, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        text += c;
        const m = /event: init\ndata: (.*)\n\n/.exec(text);
        if (m) {
          req.destroy();
          resolve(JSON.parse(m[1]!) as Init);
        }
      });
      res.on('error', () => {});
    });
    req.on('error', (e) => { if (!req.destroyed) reject(e); });
  });
}
