// A memory probe preloaded into the sidecar for bench/mem5000.ts (`node --import
// dist/bench/mem-probe.js dist/sidecar/main.js …`). Nothing of it is in the product. On every
// SIGUSR2 it appends one JSON line to MOLT_MEM_OUT: RSS split by mapping kind (/proc/self/smaps:
// the V8 heap's own mappings are anonymous, malloc's main arena is [heap], other malloc arenas and
// big allocations are anonymous too), process.memoryUsage(), V8 heap spaces, live handles by type.
// With MOLT_MEM_SNAPSHOT=N the Nth signal also writes a heap snapshot next to MOLT_MEM_OUT.

import fs from 'node:fs';
import v8 from 'node:v8';

const out = process.env.MOLT_MEM_OUT;
const snapshotAt = Number(process.env.MOLT_MEM_SNAPSHOT ?? 0);
let signals = 0;

function smaps(): Record<string, number> {
  const r: Record<string, number> = { heapKiB: 0, anonKiB: 0, fileKiB: 0, stackKiB: 0 };
  let kind = 'anonKiB';
  for (const l of fs.readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    const m = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ (\d+)\s*(.*)$/.exec(l);
    if (m) {
      const name = m[2];
      kind = name === '[heap]' ? 'heapKiB' : name === '[stack]' ? 'stackKiB' : name === '' || name.startsWith('[anon') ? 'anonKiB' : 'fileKiB';
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(l);
    if (rss) r[kind] += Number(rss[1]);
  }
  return r;
}

process.on('SIGUSR2', () => {
  const mu = process.memoryUsage();
  const spaces: Record<string, number> = {};
  for (const s of v8.getHeapSpaceStatistics()) spaces[s.space_name] = Math.round(s.space_used_size / 1024);
  const committed: Record<string, number> = {};
  for (const s of v8.getHeapSpaceStatistics()) committed[s.space_name] = Math.round(s.physical_space_size / 1024);
  const handles: Record<string, number> = {};
  for (const h of (process as unknown as { _getActiveHandles(): object[] })._getActiveHandles()) {
    const n = h.constructor?.name ?? '?';
    handles[n] = (handles[n] ?? 0) + 1;
  }
  const rec = {
    t: Date.now(),
    rssKiB: Math.round(mu.rss / 1024),
    smaps: smaps(),
    heapUsedKiB: Math.round(mu.heapUsed / 1024),
    heapTotalKiB: Math.round(mu.heapTotal / 1024),
    externalKiB: Math.round(mu.external / 1024),
    arrayBuffersKiB: Math.round(mu.arrayBuffers / 1024),
    spaceUsedKiB: spaces,
    spaceCommittedKiB: committed,
    handles,
  };
  if (out) fs.appendFileSync(out, JSON.stringify(rec) + '\n');
  if (++signals === snapshotAt && out) v8.writeHeapSnapshot(out + '.heapsnapshot');
});
