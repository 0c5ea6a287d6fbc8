// A minimal controller for benchmarking: a Unix-socket server speaking the control protocol
// (common/protocol.ts). It says hello, sends the current routing table to every sidecar that
// connects, and reads (and otherwise ignores) the sidecar's hello/ack/failure/stats lines, keeping
// only the highest acked revision so the benchmark can wait until a table is in force.

import { once } from 'node:events';
import net from 'node:net';
import { line, onLines } from '../common/ndjson.js';
import {
  DEFAULT_FAILURE_POLICY,
  DEFAULT_TRANSITION,
  PROTOCOL_VERSION,
  type Endpoint,
  type RouteVersion,
  type RoutingTable,
  type TransitionConfig,
} from '../common/protocol.js';

export class FakeController {
  readonly socketPath: string;
  #server: net.Server | null = null;
  #sockets = new Set<net.Socket>();
  #table: RoutingTable;
  #acked = 0;
  #waiters: Array<() => void> = [];
  /** Plain counters for the report: what the sidecar sent us. */
  readonly counters = { hellos: 0, acks: 0, failures: 0, stats: 0, badLines: 0 };

  constructor(socketPath: string, table: RoutingTable) {
    this.socketPath = socketPath;
    this.#table = table;
  }

  get ackedRevision(): number {
    return this.#acked;
  }

  async start(): Promise<void> {
    const server = net.createServer((s) => this.#onConnection(s));
    this.#server = server;
    server.listen(this.socketPath);
    await once(server, 'listening');
  }

  /** Replaces the table and pushes it to every connected sidecar. */
  setTable(table: RoutingTable): void {
    this.#table = table;
    const msg = line({ type: 'routes', table });
    for (const s of this.#sockets) s.write(msg);
  }

  /** Resolves once a sidecar acked `revision` (or a later one); rejects after timeoutMs. */
  async waitForAck(revision: number, timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.#acked < revision) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`fake controller: no ack for revision ${revision} within ${timeoutMs} ms (socket ${this.socketPath})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 200));
        this.#waiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    const server = this.#server;
    this.#server = null;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  #onConnection(s: net.Socket): void {
    this.#sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => this.#sockets.delete(s));
    s.write(line({ type: 'hello', protocol: PROTOCOL_VERSION, role: 'controller', pid: process.pid }));
    onLines(s, (l) => {
      let m: { type?: unknown; revision?: unknown };
      try {
        m = JSON.parse(l) as typeof m;
      } catch {
        this.counters.badLines++;
        return;
      }
      switch (m.type) {
        case 'hello':
          this.counters.hellos++;
          s.write(line({ type: 'routes', table: this.#table }));
          break;
        case 'ack':
          this.counters.acks++;
          if (typeof m.revision === 'number' && m.revision > this.#acked) this.#acked = m.revision;
          for (const w of this.#waiters.splice(0)) w();
          break;
        case 'failure':
          this.counters.failures++;
          break;
        case 'stats':
          this.counters.stats++;
          break;
        default:
          break;
      }
    });
  }
}

/** One routable version with the protocol defaults. */
export function benchVersion(id: string, version: string, endpoint: Endpoint, transition: Partial<TransitionConfig> = {}): RouteVersion {
  return {
    id,
    version,
    epoch: 0,
    state: 'serving',
    transition: { ...DEFAULT_TRANSITION, ...transition },
    failurePolicy: { ...DEFAULT_FAILURE_POLICY },
    endpoints: [endpoint],
    servingSince: Date.now(),
    promoted: false,
  };
}

export type BenchMode = 'INSTANT' | 'GRADUAL' | 'CONCURRENT';

/**
 * A table with one default app (takes every Host, so wrk's `Host: 127.0.0.1:PORT` matches).
 * INSTANT: one version on `v1`. GRADUAL: v2 (newest) holds 50 % of clients via a one-step schedule,
 * v1 the rest; wrk keeps no cookies, so every request is a new client that gets a bucket cookie.
 * CONCURRENT: every GET goes to v2 and is duplicated to v1.
 */
export function benchTable(revision: number, mode: BenchMode, v1: Endpoint, v2: Endpoint): RoutingTable {
  const versions: RouteVersion[] = mode === 'INSTANT'
    ? [benchVersion('bench-v1', '1.0.0', v1)]
    : [
      benchVersion('bench-v2', '2.0.0', v2, mode === 'GRADUAL' ? { mode, steps: [{ weight: 50 }] } : { mode }),
      benchVersion('bench-v1', '1.0.0', v1, { mode }),
    ];
  return {
    revision,
    apps: [{
      name: 'bench',
      hosts: ['bench.local'],
      default: true,
      versionCookie: 'molt-version-bench',
      bucketCookie: 'molt-bucket-bench',
      versions,
    }],
  };
}
