// `molt controller --kubernetes` wiring: flags, kubeconfig file, control socket, admin endpoints, shutdown.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import pino from 'pino';
import YAML from 'yaml';
import { startKubeController } from '../../controller/kube/main.js';
import { FakeApiServer } from './fake-apiserver.js';
import { FakeSidecar, NS, serversAV, versionsOf, waitFor } from './helpers.js';

function get(port: number, p: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: p }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
}

test('startKubeController: kubeconfig file, namespace flag, control socket, /healthz /readyz /metrics /status', async (t) => {
  const server = new FakeApiServer();
  await server.start();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'molt-kube-main-'));
  const kubeconfig = path.join(dir, 'kubeconfig');
  const o = server.kubeConfigOptions() as any;
  fs.writeFileSync(kubeconfig, YAML.stringify({
    apiVersion: 'v1', kind: 'Config', 'current-context': o.currentContext,
    clusters: o.clusters.map((c: any) => ({ name: c.name, cluster: { server: c.server, 'insecure-skip-tls-verify': true } })),
    users: o.users.map((u: any) => ({ name: u.name, user: { token: u.token } })),
    contexts: o.contexts.map((c: any) => ({ name: c.name, context: { cluster: c.cluster, user: c.user } })),
  }));
  const control = path.join(dir, 'control.sock');
  const h = await startKubeController(
    ['--kubeconfig', kubeconfig, '--namespace', NS, '--control', control, '--admin', '127.0.0.1:0', '--identity', 'main-1', '--lease-duration', '15s'], // long: a loaded CI machine must not lose the lease mid-test
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
  assert.equal((await get(port, '/healthz')).status, 200);
  assert.equal((await get(port, '/readyz')).status, 200);
  await waitFor('leader', () => h.controller.isLeader);
  server.create('appversions', NS, serversAV('m-v1', 'm', '1.0.0', 7501));
  await waitFor('routed', () => versionsOf(sidecar.last, 'm').length === 1);
  const metrics = await get(port, '/metrics');
  assert.match(metrics.body, /molt_reconcile_total\{result="success"\} [1-9]/);
  const status = JSON.parse((await get(port, '/status')).body);
  assert.equal(status.leader, true);
  assert.equal(status.identity, 'main-1');

  await h.shutdown();
  assert.equal(server.get('leases', NS, 'molt-controller')!.spec.holderIdentity, undefined, 'lease released on shutdown');
  assert.equal(fs.existsSync(control), false);
});
