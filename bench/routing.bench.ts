// Micro-benchmark: routing decisions per second for each transition mode, and the Cookie scan.
// Run: npx tsc -p tsconfig.json && node dist/bench/routing.bench.js [iterations]

import { cookieValue } from '../sidecar/cookies.js';
import { DEFAULT_FAILURE_POLICY, DEFAULT_TRANSITION, type RoutingTable, type TransitionMode } from '../common/protocol.js';
import { createRoutingState } from '../sidecar/routing.js';

const N = Number(process.argv[2] ?? 2_000_000);
const COOKIE = 'session=abcdef0123456789; molt-bucket-shop=17; molt-version-shop=shop-v1; theme=dark';

function table(mode: TransitionMode): RoutingTable {
  const version = (id: string, v: string, port: number) => ({
    id, version: v, epoch: 0, state: 'serving' as const, promoted: false, servingSince: Date.now(),
    transition: { ...DEFAULT_TRANSITION, mode, sessionTimeoutSeconds: 60, ...(mode === 'GRADUAL' ? { percentagePerRequest: 0.0001 } : {}) },
    failurePolicy: DEFAULT_FAILURE_POLICY,
    endpoints: [{ host: '127.0.0.1', port }, { host: '127.0.0.1', port: port + 1 }],
  });
  return {
    revision: 1,
    apps: [{ name: 'shop', hosts: ['shop.example.com'], default: true, versionCookie: 'molt-version-shop', bucketCookie: 'molt-bucket-shop', versions: [version('shop-v2', '2.0.0', 9002), version('shop-v1', '1.0.0', 9000)] }],
  };
}

let sink = 0;
for (const mode of ['INSTANT', 'SESSION', 'GRADUAL', 'CONCURRENT'] as const) {
  const routing = createRoutingState();
  routing.apply(table(mode));
  for (let i = 0; i < 10000; i++) sink += routing.route('shop.example.com', COOKIE, 'GET') ? 1 : 0; // warm up
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) {
    const d = routing.route('shop.example.com', COOKIE, 'GET');
    if (d) sink += d.primary.nextEndpoint();
  }
  const ns = Number(process.hrtime.bigint() - t0);
  console.log(`route ${mode.padEnd(10)} ${Math.round(N / (ns / 1e9)).toLocaleString('en-US').padStart(12)} decisions/s`);
}

const t0 = process.hrtime.bigint();
for (let i = 0; i < N; i++) sink += cookieValue(COOKIE, 'molt-version-shop')?.length ?? 0;
const ns = Number(process.hrtime.bigint() - t0);
console.log(`cookieValue      ${Math.round(N / (ns / 1e9)).toLocaleString('en-US').padStart(12)} lookups/s`);
if (sink === 42) console.log('');
