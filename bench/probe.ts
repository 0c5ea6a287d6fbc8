// A measurement probe preloaded into a process under test (`node --import …/dist/bench/probe.js
// dist/sidecar/main.js …`), for the tail-latency investigation (bench/tail.ts). Nothing of it is
// in the product. Every SIGUSR2 ends one measurement window and starts the next: it writes what
// the window saw to MOLT_PROBE_OUT (JSON, overwritten) and a marker line to stdout (so `--trace-gc`
// lines in the same log can be counted per window):
//   - event-loop delay percentiles (perf_hooks.monitorEventLoopDelay, 1 ms resolution sampling
//     by default: MOLT_PROBE_ELD_RES_MS),
//   - GC pauses by kind (PerformanceObserver 'gc'): count, total and max ms,
//   - with MOLT_PROBE_HEAP=1, a sampling heap profile of *every* allocation in the window (also
//     the ones a scavenge collected), top sites by bytes, to MOLT_PROBE_OUT + '.heap.json'.

import fs from 'node:fs';
import inspector from 'node:inspector';
import { constants, monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';

const out = process.env.MOLT_PROBE_OUT;
const heap = process.env.MOLT_PROBE_HEAP === '1';
const eld = monitorEventLoopDelay({ resolution: Number(process.env.MOLT_PROBE_ELD_RES_MS ?? 1) });
eld.enable();

interface GcAgg { count: number; totalMs: number; maxMs: number }
const gcKinds: Record<number, string> = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'scavenge',
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'mark-compact',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental-marking',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weak-callbacks',
};
let gc: Record<string, GcAgg> = {};
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    const kind = gcKinds[((e as unknown as { detail?: unknown }).detail as { kind?: number } | undefined)?.kind ?? -1] ?? 'other';
    const a = gc[kind] ?? (gc[kind] = { count: 0, totalMs: 0, maxMs: 0 });
    a.count++;
    a.totalMs += e.duration;
    if (e.duration > a.maxMs) a.maxMs = e.duration;
  }
}).observe({ entryTypes: ['gc'] });

let session: inspector.Session | null = null;
const post = (method: string, params?: object): Promise<unknown> =>
  new Promise((resolve, reject) => session!.post(method, params ?? {}, (err, res) => (err ? reject(err) : resolve(res))));

async function startHeap(): Promise<void> {
  if (!heap) return;
  if (session === null) { session = new inspector.Session(); session.connect(); }
  await post('HeapProfiler.startSampling', { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
}

interface HeapNode { callFrame: { functionName: string; url: string; lineNumber: number }; selfSize: number; children: HeapNode[] }

async function stopHeap(file: string): Promise<void> {
  if (!heap || session === null) return;
  const r = (await post('HeapProfiler.stopSampling')) as { profile: { head: HeapNode } };
  const agg = new Map<string, number>();
  let total = 0;
  const walk = (n: HeapNode, stack: string): void => {
    const cf = n.callFrame;
    const here = `${cf.functionName || '(anonymous)'} ${cf.url.replace(/^.*\/dist\//, '').replace(/^node:/, 'node:')}:${cf.lineNumber + 1}`;
    if (n.selfSize > 0) {
      const key = `${here} ← ${stack}`;
      agg.set(key, (agg.get(key) ?? 0) + n.selfSize);
      total += n.selfSize;
    }
    for (const c of n.children) walk(c, here);
  };
  walk(r.profile.head, '(root)');
  const top = [...agg.entries()].sort((a, b) => b[1] - a[1]).slice(0, 40).map(([site, bytes]) => ({ site, bytes }));
  fs.writeFileSync(file, JSON.stringify({ totalBytes: total, top }, null, 1));
}

let window = 0;
let since = performance.now();
void startHeap();
process.on('SIGUSR2', () => {
  void (async () => {
    window++;
    const ms = performance.now() - since;
    const pct = (p: number): number => eld.percentile(p) / 1e6;
    const snap = {
      window,
      ms,
      eventLoopDelayMs: { p50: pct(50), p90: pct(90), p99: pct(99), p999: pct(99.9), max: eld.max / 1e6, mean: eld.mean / 1e6, samples: eld.count },
      gc,
    };
    gc = {};
    eld.reset();
    if (out) {
      await stopHeap(out + '.heap.json');
      fs.writeFileSync(out, JSON.stringify(snap));
    }
    fs.writeSync(1, `MOLT-PROBE-MARK ${window}\n`);
    since = performance.now();
    await startHeap();
  })();
});
