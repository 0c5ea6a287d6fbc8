// A version's metric series go away with it and stay away, even when a stats line from the sidecar
// that still mentions it arrives after it was removed (the sidecar reports every second; --drain
// can be shorter). Found by the hour-long soak as slow controller heap growth.

import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import { test } from 'node:test';
import { MoltEnv } from './helpers/faults/harness.js';
import { PROTOCOL_VERSION, type StatsMessage } from '../common/protocol.js';
import { waitFor } from './helpers/molt.js';

function metricsText(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/metrics' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

test('stats for a removed version do not bring its metric series back', { timeout: 60_000 }, async (t) => {
  const env = await new MoltEnv().start();
  t.after(() => env.stop());
  env.write({ name: 'shop-v1', version: '1.0.0' });
  await env.waitServing('shop-v1');
  env.write({ name: 'shop-v2', version: '2.0.0' });
  await env.waitServing('shop-v2');
  const adminPort = env.handle.adminAddress.port;
  const series = async () => (await metricsText(adminPort)).split('\n').filter((l) => l.startsWith('molt_requests_total{') && l.includes('version="1.0.0"'));

  env.unlink('shop-v1');
  await waitFor('shop-v1 removed', () => env.phase('shop-v1') === undefined, 20_000);
  await waitFor('its series gone', async () => (await series()).length === 0, 10_000);

  // A late stats line naming the removed version, as a sidecar that had not applied the new table yet would send.
  const peer = net.connect(env.handle.controller.control.socketPath);
  t.after(() => peer.destroy());
  await once(peer, 'connect');
  const late: StatsMessage = {
    type: 'stats', at: Date.now(), revision: 1,
    versions: [{ app: 'shop', versionId: 'shop-v1', version: '1.0.0', requests: 12345, errors: 0, mismatches: 0, latencyBuckets: [], latencyCounts: [], latencySum: 0, trafficShare: 0 }],
  };
  // Listeners run in order: when this one sees the late line, the controller's own has handled it.
  const handled = new Promise<void>((resolve) => env.handle.controller.control.on('stats', (m) => { if (m.at === late.at && m.versions[0]?.requests === 12345) resolve(); }));
  peer.write(JSON.stringify({ type: 'hello', protocol: PROTOCOL_VERSION, role: 'sidecar', pid: 999_999, revision: 1 }) + '\n');
  peer.write(JSON.stringify(late) + '\n');
  await handled;
  assert.deepEqual(await series(), [], 'no series for the removed version');
  // The live version's series are still updated by stats.
  assert.ok((await metricsText(adminPort)).includes('version="2.0.0"'));
});
