// Kubernetes mode, issue 13 item 1: each replica's admin port serves the admin API's read endpoints and the
// dashboard read-only; actions are refused with the kubectl command to use, and change nothing.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import pino from 'pino';
import { startKubeController } from '../../controller/kube/main.js';
import { FakeApiServer } from './fake-apiserver.js';
import { FakeSidecar, NS, serversAV, versionsOf, waitFor, writeKubeconfig } from './helpers.js';

interface Answer { status: number; headers: http.IncomingHttpHeaders; body: string }

function request(port: number, method: string, p: string, opts: { headers?: Record<string, string>; body?: string } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: p, headers: opts.headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** The dashboard's event stream: its `init` message, once some message (init or a later sample) mentions
 *  `wanted` (the status in init is the observer's last sample, up to a second old). */
function streamUntil(port: number, wanted: string): Promise<{ readOnly: boolean } & Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    let init: ({ readOnly: boolean } & Record<string, unknown>) | undefined;
    const timer = setTimeout(() => { req.destroy(); reject(new Error(`no event-stream message mentioned ${wanted} within 10 s`)); }, 10_000);
    const req = http.get({ host: '127.0.0.1', port, path: '/ui/events' }, (res) => {
      if (res.statusCode !== 200) { reject(new Error(`event stream answered ${res.statusCode}`)); res.resume(); return; }
      assert.match(String(res.headers['content-type']), /^text\/event-stream/);
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        buf += c;
        let end: number;
        while ((end = buf.indexOf('\n\n')) !== -1) {
          const block = buf.slice(0, end);
          buf = buf.slice(end + 2);
          const m = /^event: (\w+)\ndata: (.*)$/s.exec(block);
          if (!m) continue;
          if (m[1] === 'init') init = JSON.parse(m[2]!);
          if (init && m[2]!.includes(wanted)) { clearTimeout(timer); req.destroy(); resolve(init); return; }
        }
      });
    });
    req.on('error', (err) => { if (!req.destroyed) reject(err); });
  });
}

test('kube mode admin port: /status, /ui and its event stream served read-only; promote, rollback, apply, delete refused with the kubectl command', async (t) => {
  const server = new FakeApiServer();
  await server.start();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'molt-kube-admin-'));
  const kubeconfig = path.join(dir, 'kubeconfig');
  writeKubeconfig(server, kubeconfig);
  const control = path.join(dir, 'control.sock');
  const h = await startKubeController(
    ['--kubeconfig', kubeconfig, '--namespace', NS, '--control', control, '--admin', '127.0.0.1:0', '--identity', 'admin-1', '--lease-duration', '3s'],
    pino({ level: 'silent' }),
  );
  const sidecar = new FakeSidecar();
  t.after(async () => {
    sidecar.close();
    await h.shutdown();
    await server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  await sidecar.connect(control);
  const port = h.adminAddress!.port;
  await waitFor('leader', () => h.controller.isLeader);
  server.create('appversions', NS, serversAV('shop-v1', 'shop', '1.0.0', 7611));
  server.create('appversions', NS, serversAV('shop-v2', 'shop', '2.0.0', 7612, { transition: { mode: 'GRADUAL', steps: [{ weight: 10, pause: '1h' }] } }));
  await waitFor('both routed', () => versionsOf(sidecar.last, 'shop').length === 2);
  await waitFor('status written', () => server.get('appversions', NS, 'shop-v2')?.status?.phase === 'Serving');

  // Read endpoints.
  const st = await request(port, 'GET', '/status');
  assert.equal(st.status, 200);
  const body = JSON.parse(st.body);
  assert.equal(body.identity, 'admin-1');
  assert.equal(body.leader, true);
  const shop = body.apps.find((a: { app: string }) => a.app === 'shop');
  assert.deepEqual(shop.versions.map((v: { name: string; phase: string }) => [v.name, v.phase]), [['shop-v2', 'Serving'], ['shop-v1', 'Serving']]);
  assert.deepEqual(shop.versions[0].endpoints, [{ host: '127.0.0.1', port: 7612 }]);
  // Mixed-version risk from this replica's sidecar: v2 at 10 % of new traffic, c = 1 -> P = 0.1 * 0.9.
  const statsLine = (share: number) => ({ at: Date.now(), revision: sidecar.last!.revision, versions: [
    { app: 'shop', versionId: 'shop-v2', version: '2.0.0', requests: 10, errors: 0, mismatches: 0, latencyBuckets: [], latencyCounts: [], latencySum: 0, trafficShare: share },
    { app: 'shop', versionId: 'shop-v1', version: '1.0.0', requests: 90, errors: 0, mismatches: 0, latencyBuckets: [], latencyCounts: [], latencySum: 0, trafficShare: 1 - share },
  ] });
  sidecar.stats(statsLine(0.1));
  sidecar.stats(statsLine(0.5));
  const risky = await waitFor('risk in status', async () => {
    const v = JSON.parse((await request(port, 'GET', '/status')).body).apps.find((a: { app: string }) => a.app === 'shop').versions[0];
    return v.mixedVersionRisk?.max === 0.25 ? v : undefined;
  });
  assert.equal(risky.mixedVersionRisk.current, 0.25);
  assert.ok(Math.abs(risky.mixedVersionRisk.mean - (0.09 + 0.25) / 2) < 1e-9, `mean ${risky.mixedVersionRisk.mean}`);
  assert.match((await request(port, 'GET', '/metrics')).body, /molt_mixed_version_risk\{app="shop"\} 0\.25/);
  const one = JSON.parse((await request(port, 'GET', '/appversions/shop-v2')).body);
  assert.equal(one.resource.spec.version, '2.0.0');

  const ui = await request(port, 'GET', '/ui');
  assert.equal(ui.status, 200);
  assert.match(String(ui.headers['content-type']), /^text\/html/);
  assert.match(ui.body, /id="readonly"/);
  const init = await streamUntil(port, 'shop-v2'); // the stream carries the apps
  assert.equal(init.readOnly, true, 'the page is told it is read-only (no action buttons)');

  // Actions: refused, pointing to kubectl, and nothing changes.
  const before = JSON.stringify(server.get('appversions', NS, 'shop-v2')!.metadata.annotations ?? {});
  const promote = await request(port, 'POST', '/apps/shop/promote', { headers: { 'content-type': 'application/json' }, body: '{"version":"2.0.0"}' });
  assert.equal(promote.status, 403);
  assert.match(JSON.parse(promote.body).error.message, /read-only in Kubernetes mode: promote with kubectl molt promote shop 2\.0\.0/);
  const rollback = await request(port, 'POST', '/apps/shop/rollback');
  assert.equal(rollback.status, 403);
  assert.match(JSON.parse(rollback.body).error.message, /kubectl molt rollback shop/);
  const fromPage = await request(port, 'POST', '/apps/shop/promote', { headers: { origin: `http://127.0.0.1:${port}`, 'sec-fetch-site': 'same-origin' }, body: '{}' });
  assert.equal(fromPage.status, 403);
  assert.match(JSON.parse(fromPage.body).error.message, /read-only here: act through kubectl \(kubectl molt promote/);
  const put = await request(port, 'PUT', '/appversions/shop-v3', { headers: { 'content-type': 'application/json' }, body: JSON.stringify(serversAV('shop-v3', 'shop', '3.0.0', 7613)) });
  assert.equal(put.status, 403);
  assert.match(JSON.parse(put.body).error.message, /kubectl apply/);
  assert.equal((await request(port, 'DELETE', '/appversions/shop-v1')).status, 403);
  assert.equal(JSON.stringify(server.get('appversions', NS, 'shop-v2')!.metadata.annotations ?? {}), before, 'no annotation written');
  assert.equal(server.get('appversions', NS, 'shop-v3'), undefined);
  assert.ok(server.get('appversions', NS, 'shop-v1'));

  // Probes and metrics answer any Host (kubelet, Prometheus on the pod IP); the API keeps its loopback-Host rule.
  assert.equal((await request(port, 'GET', '/healthz', { headers: { host: '10.1.2.3:9090' } })).status, 200);
  assert.equal((await request(port, 'GET', '/metrics', { headers: { host: '10.1.2.3:9090' } })).status, 200);
  assert.equal((await request(port, 'GET', '/status', { headers: { host: '10.1.2.3:9090' } })).status, 403);
});
