// Bounded soak (issue 5): `molt up` in-process, process runtime, mixed keep-alive/non-keep-alive
// GET+POST load, a new version every few seconds by writing files (the one before last deleted).
// Samples sidecar RSS and open fds (/proc/<pid>/status, /proc/<pid>/fd), controller heap and fds, and
// asserts the second half is not above the first beyond a generous tolerance: flat, not fast.
//
// SOAK_SECONDS (default 90) makes it longer, e.g. SOAK_SECONDS=600 node --test dist/test/soak.test.js

import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import { MoltEnv } from './helpers/faults/harness.js';
import { MixedLoad } from './helpers/faults/load.js';
import { waitFor } from './helpers/molt.js';

const SECONDS = Number(process.env.SOAK_SECONDS ?? 90);
const FLIP_MS = 3000;
const SAMPLE_MS = 2000;

interface Sample {
  at: number;
  sidecarRssKb: number;
  sidecarFds: number;
  controllerHeapMb: number;
  controllerRssMb: number;
  controllerFds: number;
  requests: number;
}

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

function fds(pid: number | 'self'): number {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

test(`soak: ${SECONDS}s of load with a version flip every ${FLIP_MS / 1000}s; memory and fds stay flat`, { timeout: (SECONDS + 120) * 1000 }, async (t) => {
  const env = await new MoltEnv().start();
  t.after(() => env.stop());
  const name = (n: number) => `shop-${n}`;
  env.write({ name: name(1), version: '1.0.1' });
  await env.waitServing(name(1));

  const load = new MixedLoad(env.port, undefined, { retain: false }).start();
  const samples: Sample[] = [];
  const start = Date.now();
  let n = 1;
  let nextFlip = start + FLIP_MS;
  let nextSample = start;
  while (Date.now() - start < SECONDS * 1000) {
    const now = Date.now();
    if (now >= nextFlip) {
      n++;
      env.write({ name: name(n), version: `1.0.${n}` });
      if (n > 2) env.unlink(name(n - 2));
      nextFlip += FLIP_MS;
    }
    if (now >= nextSample) {
      const pid = env.handle.supervisor.pid;
      const mem = process.memoryUsage();
      samples.push({ at: now - start, sidecarRssKb: rssKb(pid), sidecarFds: fds(pid), controllerHeapMb: mem.heapUsed / 2 ** 20, controllerRssMb: mem.rss / 2 ** 20, controllerFds: fds('self'), requests: load.total });
      nextSample += SAMPLE_MS;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  await waitFor('the last version to serve', () => env.phase(name(n)) === 'Promoted', 30000);
  await load.stop();

  const half = Math.floor(samples.length / 2);
  const first = samples.slice(1, half); // skip the warm-up sample
  const second = samples.slice(half);
  const stat = (k: keyof Sample) => ({ first: median(first.map((s) => s[k])), second: median(second.map((s) => s[k])), max: Math.max(...samples.map((s) => s[k])) });
  const report = {
    seconds: SECONDS, versions: n, requests: load.total, errors: Object.fromEntries(load.errorKinds),
    sidecarRssKb: stat('sidecarRssKb'), sidecarFds: stat('sidecarFds'), controllerHeapMb: stat('controllerHeapMb'), controllerRssMb: stat('controllerRssMb'), controllerFds: stat('controllerFds'),
  };
  t.diagnostic(JSON.stringify(report));
  if (process.env.SOAK_SAMPLES) fs.writeFileSync(process.env.SOAK_SAMPLES, JSON.stringify({ report, samples }, null, 2));

  assert.ok(n >= 10, 'versions flipped throughout');
  assert.equal([...load.errorKinds.keys()].filter((k) => k.startsWith('GET')).length, 0, `no GET errors: ${JSON.stringify(report.errors)}`);
  // Generous: the second half's median may exceed the first's by 50 % plus a fixed slack.
  assert.ok(report.sidecarRssKb.second <= report.sidecarRssKb.first * 1.5 + 20_000, `sidecar RSS flat: ${JSON.stringify(report.sidecarRssKb)}`);
  assert.ok(report.sidecarFds.second <= report.sidecarFds.first * 1.5 + 20, `sidecar fds flat: ${JSON.stringify(report.sidecarFds)}`);
  assert.ok(report.controllerHeapMb.second <= report.controllerHeapMb.first * 1.5 + 20, `controller heap flat: ${JSON.stringify(report.controllerHeapMb)}`);
  assert.ok(report.controllerFds.second <= report.controllerFds.first * 1.5 + 20, `controller fds flat: ${JSON.stringify(report.controllerFds)}`);
});
