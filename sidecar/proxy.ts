// The sidecar data path: a raw `net` HTTP/1.1 reverse proxy. Where things are:
//
// - proxy.ts (this file): the server, its limits and shared state (routing, upstream pool, timer
//   wheel, counters), listen/close.
// - client-conn.ts: one client connection — request parsing, routing, relaying the response,
//   Upgrade tunnels, timeouts; carries out the policy's decisions.
// - exchange.ts: one attempt to get a response from one upstream version (primary, fallback,
//   CONCURRENT shadow) on a pooled connection (upstream-pool.ts).
// - exchange-policy.ts: failover, connect retries, blame and CONCURRENT arbitration as one pure
//   function decide(event, state).
// - head-writer.ts: request and response head rewriting (which header lines go on, what we add).
// - framing.ts: the strict HTTP/1.1 scanners; socket-writer.ts: hot-path writes; timers.ts: the
//   coarse timer wheel; common/node-internals.ts: the Node-internals fast paths and their self-test.
//
// See sidecar/README.md "Data path" for limits, retry and smuggling rules.

import type { TrafficRecorder } from './recorder.js';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { RoutingState } from './routing-types.js';
import { UpstreamPool } from './upstream-pool.js';
import { TimerWheel } from './timers.js';
import { selfTest } from '../common/node-internals.js';
import { ClientConn } from './client-conn.js';

export interface ProxyLimits {
  maxHeaderBytes: number;
  maxHeaders: number;
  headerTimeoutMs: number;
  idleTimeoutMs: number;
  maxRetryBodyBytes: number;
  maxPipelined: number;
  /** A response of known length up to this size, to a request that could still fail over, is
   *  relayed only once it is complete: an upstream dying mid-body then costs a retry, not a
   *  truncated response. 0 = always stream. */
  maxBufferedResponseBytes: number;
  /** When every candidate version refused the connection (nothing of the request was sent), retry
   *  — re-routed — after 50, 100, 200, 400, 500… ms until this long after the first refusal,
   *  then answer 502. Masks brief blips such as a Docker daemon restart reloading its NAT rules.
   *  0 = answer 502 at once. */
  connectRetryMs: number;
}

export const DEFAULT_LIMITS: ProxyLimits = {
  maxHeaderBytes: 65536,
  maxHeaders: 100,
  headerTimeoutMs: 10000,
  idleTimeoutMs: 60000,
  maxRetryBodyBytes: 1048576,
  maxPipelined: 32,
  maxBufferedResponseBytes: 65536,
  connectRetryMs: 2000,
};

/** listen(2) backlog: connections the kernel completes and queues until we accept them. Node's own
 *  default (511) overflows when thousands of clients connect at once (a load balancer reconnecting,
 *  a benchmark): the kernel then drops SYNs and the clients retry after 1 s, 3 s… Linux silently
 *  caps the value at net.core.somaxconn (4096 by default since 5.4). */
export const DEFAULT_BACKLOG = 4096;

export interface ProxyOptions {
  routing: RoutingState;
  limits?: Partial<ProxyLimits>;
  log?: Logger;
  /** Recording at the ingress for preflight (sidecar/recorder.ts); absent = not recorded. */
  recorder?: TrafficRecorder;
}

export interface Proxy {
  readonly server: net.Server;
  /** Bind host:port, or with `fd`, listen on that inherited socket (already bound). `backlog`:
   *  listen(2) queue length, default DEFAULT_BACKLOG. */
  listen(port: number, host: string, fd?: number, backlog?: number): Promise<AddressInfo>;
  close(graceMs?: number): Promise<void>;
}

export function createProxy(opts: ProxyOptions): Proxy {
  return new ProxyImpl(opts);
}

/** The proxy server; ClientConn and Exchange reach shared state (routing, pool, wheel, limits, counters) through it. */
export class ProxyImpl implements Proxy {
  readonly server: net.Server;
  readonly routing: RoutingState;
  readonly limits: ProxyLimits;
  readonly log: Logger | undefined;
  readonly wheel: TimerWheel;
  readonly pool: UpstreamPool;
  readonly conns = new Set<ClientConn>();
  readonly recorder: TrafficRecorder | null;
  closing = false;
  #closedResolve: (() => void) | null = null;
  // counters: plain fields, cheap when unused
  requests = 0;
  rejected = 0;
  retries = 0;
  staleRetries = 0;
  connectRetries = 0;
  shadowed = 0;

  constructor(opts: ProxyOptions) {
    this.routing = opts.routing;
    this.limits = { ...DEFAULT_LIMITS, ...opts.limits };
    this.log = opts.log;
    this.recorder = opts.recorder ?? null;
    this.wheel = new TimerWheel();
    this.pool = new UpstreamPool({ wheel: this.wheel, maxHeaderBytes: this.limits.maxHeaderBytes, maxHeaders: this.limits.maxHeaders });
    this.server = net.createServer({ allowHalfOpen: true, noDelay: true }, (s) => this.#onConnection(s));
    this.server.on('error', (e) => this.log?.error({ err: e }, 'proxy server error'));
  }

  #onConnection(s: net.Socket): void {
    if (this.closing) { s.destroy(); return; }
    const c = new ClientConn(this, s);
    this.conns.add(c);
  }

  connClosed(c: ClientConn): void {
    this.conns.delete(c);
    if (this.closing && this.conns.size === 0 && this.#closedResolve !== null) this.#closedResolve();
  }

  async listen(port: number, host: string, fd?: number, backlog = DEFAULT_BACKLOG): Promise<AddressInfo> {
    // Node-internals fast paths are enabled only once their self-test passed (common/node-internals.ts).
    await selfTest();
    return new Promise((resolve, reject) => {
      const onErr = (e: Error): void => reject(e);
      this.server.once('error', onErr);
      const done = (): void => {
        this.server.off('error', onErr);
        resolve(this.server.address() as AddressInfo);
      };
      // Node reads `backlog` from the options object for a port, but for an fd only from the
      // argument after it (lib/net.js backlogFromArgs): listen({ fd }, backlog, cb).
      if (fd !== undefined) this.server.listen({ fd }, backlog, done);
      else this.server.listen({ port, host, backlog }, done);
    });
  }

  async close(graceMs = 5000): Promise<void> {
    this.closing = true;
    const serverClosed = new Promise<void>((r) => this.server.close(() => r()));
    const allClosed = new Promise<void>((r) => { this.#closedResolve = r; });
    for (const c of [...this.conns]) c.shutdownIfIdle();
    this.pool.closeIdle();
    if (this.conns.size > 0) {
      let t: NodeJS.Timeout | undefined;
      const grace = new Promise<void>((r) => { t = setTimeout(r, graceMs); });
      await Promise.race([allClosed, grace]);
      clearTimeout(t);
      for (const c of [...this.conns]) c.socket.destroy();
    }
    this.pool.close();
    await serverClosed;
    this.wheel.close();
  }
}

