// Imago's mixed-version risk during a real transition (issue 11, item 7): a GRADUAL schedule holding
// 50 % with callsPerInteraction 2 gives P = 0.5 × (1 − 0.5²) = 0.375, in status and as a metric.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { runUp, type UpHandle } from '../controller/up.js';
import { appVersionYaml, freePort, processRuntimeYaml, request, tempDir, waitFor } from './helpers/molt.js';

test('a GRADUAL step at 50 % with c = 2 shows a mixed-version risk of 0.375 in status and metrics', async (t) => {
  const root = tempDir('molt-risk-');
  const port = await freePort();
  const h = (await runUp(['--dir', path.join(root, 'versions'), '--state', path.join(root, 'state'), '--listen', `127.0.0.1:${port}`, '--admin', '127.0.0.1:0', '--log-level', 'warn'])) as UpHandle;
  t.after(() => h.shutdown());
  const dir = path.join(root, 'versions');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'v1.yaml'), appVersionYaml({ name: 'shop-v1', version: '1.0.0', runtime: processRuntimeYaml({ BODY: 'v1' }) }));
  await waitFor('v1 serving', async () => (await request(port)).body === 'v1');
  fs.writeFileSync(path.join(dir, 'v2.yaml'), appVersionYaml({
    name: 'shop-v2', version: '2.0.0', mode: 'GRADUAL',
    extraTransition: '    steps: [{ weight: 50 }]\n    callsPerInteraction: 2',
    runtime: processRuntimeYaml({ BODY: 'v2' }),
  }));
  const v2 = await waitFor('risk reported for v2', () => {
    const v = h.controller.status().apps[0]?.versions.find((x) => x.name === 'shop-v2');
    return v?.mixedVersionRisk && Math.abs(v.mixedVersionRisk.current - 0.375) < 1e-9 ? v : undefined;
  });
  assert.ok(v2.mixedVersionRisk!.max >= 0.375 - 1e-9);
  assert.ok(v2.mixedVersionRisk!.mean > 0 && v2.mixedVersionRisk!.mean <= v2.mixedVersionRisk!.max);
  const metrics = await (await fetch(`http://127.0.0.1:${h.adminAddress.port}/metrics`)).text();
  assert.match(metrics, /molt_mixed_version_risk\{app="shop"\} 0\.375/);
});
