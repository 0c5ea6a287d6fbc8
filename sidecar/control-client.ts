// The sidecar's end of the control socket (protocol in common/protocol.ts).
//
// Connects to the controller's Unix socket, says hello, applies every `routes` table (then acks
// it), sends `failure` reports at once and `stats` every second. When the controller goes away
// the sidecar keeps serving the last table (static stability) and reconnects with exponential
// backoff (100 ms -> 5 s, jittered). Failure reports that cannot be delivered meanwhile are queued
// (bounded) and sent after the next hello. A bad line is logged, counted and ignored; a line longer
// than MAX_LINE_BYTES is dropped without being buffered.

import { EventEmitter } from 'node:events';
import net from 'node:net';
import type { Logger } from 'pino';
import type { TrafficPart } from '../common/traffic.js';
import {
  MAX_LINE_BYTES,
  PROTOCOL_VERSION,
  type ControllerMessage,
  type FailureMessage,
  type HelloMessage,
  type RoutingTable,
  type SidecarMessage,
  type TrafficRequestMessage,
  type VersionStats,
} from '../common/protocol.js';

export interface ControlClientOptions {
  socketPath: string;
  /** Put a table in force. The ack is sent once this returns (or its promise resolves). */
  apply(table: RoutingTable): void | Promise<void>;
  /** The revision currently served (sent in hello and stats). */
  revision(): number;
  stats(): VersionStats[];
  /** Recorded exchanges for a `traffic-request` (absent: answered with none). */
  traffic?(req: TrafficRequestMessage): TrafficPart | Promise<TrafficPart>;
  log?: Logger;
  statsIntervalMs?: number;
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  random?: () => number;
  maxQueuedFailures?: number;
  maxLineBytes?: number;
}

export interface ControlClientEvents {
  connected: [];
  disconnected: [];
  /** A table was applied and acked. */
  applied: [number];
}

export class ControlClient extends EventEmitter<ControlClientEvents> {
  readonly #o: Required<Omit<ControlClientOptions, 'log' | 'traffic'>> & Pick<ControlClientOptions, 'traffic'> & { log: Logger | undefined };
  #socket: net.Socket | null = null;
  #open = false;
  #closing = false;
  #attempt = 0;
  #reconnectTimer: NodeJS.Timeout | null = null;
  #statsTimer: NodeJS.Timeout | null = null;
  #queue: FailureMessage[] = [];
  /** Reports not yet confirmed by a routing table, keyed "versionId@epoch". */
  #unconfirmed = new Map<string, FailureMessage>();
  #parts: Buffer[] = [];
  #partLen = 0;
  #discarding = false;
  #applyChain: Promise<void> = Promise.resolve();
  #warnedUnavailable = false;
  /** Plain counters, cheap to keep; exposed for tests and debugging. */
  readonly counters = { connects: 0, badLines: 0, droppedLongLines: 0, applied: 0, applyErrors: 0, droppedFailures: 0 };

  constructor(opts: ControlClientOptions) {
    super();
    this.#o = {
      statsIntervalMs: 1000,
      initialBackoffMs: 100,
      maxBackoffMs: 5000,
      random: Math.random,
      maxQueuedFailures: 256,
      maxLineBytes: MAX_LINE_BYTES,
      ...opts,
      log: opts.log,
    };
  }

  /** Connected and hello sent. */
  get connected(): boolean {
    return this.#open;
  }

  get queuedFailures(): number {
    return this.#queue.length;
  }

  start(): void {
    this.#closing = false;
    this.#connect();
  }

  async close(): Promise<void> {
    this.#closing = true;
    if (this.#reconnectTimer) clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = null;
    this.#stopStats();
    const s = this.#socket;
    if (!s || s.destroyed) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => s.destroy(), 200); // bounded: a flush must not hold shutdown
      s.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      if (this.#open) s.end();
      else s.destroy();
    });
  }

  /** Send a failure report now, or after the next reconnect if the controller is away. Every report
   *  is also re-sent after each reconnect until a table shows the controller took it (the version
   *  is no longer listed as serving with that epoch): a write that reached a dying controller's
   *  socket buffer is not a delivery. */
  reportFailure(msg: FailureMessage): void {
    this.#unconfirmed.set(`${msg.versionId}@${msg.epoch}`, msg);
    this.#deliver(msg);
  }

  #deliver(msg: FailureMessage): void {
    if (this.#open && this.#socket) {
      const s = this.#socket;
      s.write(JSON.stringify(msg) + '\n', (err) => {
        if (err) this.#enqueue(msg);
      });
      return;
    }
    this.#enqueue(msg);
  }

  #enqueue(msg: FailureMessage): void {
    if (this.#queue.length >= this.#o.maxQueuedFailures) {
      this.#queue.shift();
      this.counters.droppedFailures++;
      this.#o.log?.warn('control: failure queue full, dropping the oldest report');
    }
    this.#queue.push(msg);
  }

  #send(msg: SidecarMessage): void {
    if (this.#socket && this.#open) this.#socket.write(JSON.stringify(msg) + '\n');
  }

  #connect(): void {
    if (this.#closing) return;
    this.#reconnectTimer = null;
    const s = net.createConnection(this.#o.socketPath);
    this.#socket = s;
    this.#parts = [];
    this.#partLen = 0;
    this.#discarding = false;
    s.on('connect', () => {
      this.#open = true;
      this.#warnedUnavailable = false;
      this.counters.connects++;
      const hello: HelloMessage = { type: 'hello', protocol: PROTOCOL_VERSION, role: 'sidecar', pid: process.pid, revision: this.#o.revision() };
      s.write(JSON.stringify(hello) + '\n');
      // Everything not yet confirmed (this includes the queue) goes again; the controller ignores repeats.
      const queued = this.#queue;
      this.#queue = [];
      const again = new Map(this.#unconfirmed);
      for (const m of queued) again.set(`${m.versionId}@${m.epoch}`, m);
      for (const m of again.values()) this.#deliver(m);
      this.#o.log?.info({ socket: this.#o.socketPath, revision: hello.revision, resent: again.size }, 'control: connected');
      this.#startStats();
      this.emit('connected');
    });
    s.on('data', (chunk: Buffer) => this.#onData(s, chunk));
    s.on('error', (err: NodeJS.ErrnoException) => {
      if (!this.#open) {
        if (!this.#warnedUnavailable) {
          this.#warnedUnavailable = true;
          this.#o.log?.warn({ code: err.code, socket: this.#o.socketPath }, 'control: controller unavailable; serving the last table, retrying');
        } else {
          this.#o.log?.debug({ code: err.code }, 'control: connect failed');
        }
      } else {
        this.#o.log?.debug({ code: err.code }, 'control: socket error');
      }
    });
    s.on('close', () => {
      const wasOpen = this.#open;
      this.#open = false;
      if (this.#socket === s) this.#socket = null;
      this.#stopStats();
      if (wasOpen) {
        this.#o.log?.warn({ socket: this.#o.socketPath, revision: this.#o.revision() }, 'control: disconnected; serving the last table');
        this.emit('disconnected');
      }
      this.#scheduleReconnect();
    });
  }

  #scheduleReconnect(): void {
    if (this.#closing || this.#reconnectTimer) return;
    const base = Math.min(this.#o.maxBackoffMs, this.#o.initialBackoffMs * 2 ** Math.min(this.#attempt, 30));
    this.#attempt++;
    const delay = base / 2 + this.#o.random() * (base / 2);
    this.#reconnectTimer = setTimeout(() => this.#connect(), delay);
    this.#reconnectTimer.unref();
  }

  #startStats(): void {
    this.#stopStats();
    this.#statsTimer = setInterval(() => {
      let versions: VersionStats[];
      try {
        versions = this.#o.stats();
      } catch (err) {
        this.#o.log?.error({ err }, 'control: stats snapshot failed');
        return;
      }
      this.#send({ type: 'stats', at: Date.now(), revision: this.#o.revision(), versions });
    }, this.#o.statsIntervalMs);
    this.#statsTimer.unref();
  }

  #stopStats(): void {
    if (this.#statsTimer) clearInterval(this.#statsTimer);
    this.#statsTimer = null;
  }

  // ---- framing: newline-delimited, bounded; views into the chunk until a line completes ----

  #onData(s: net.Socket, chunk: Buffer): void {
    let start = 0;
    // Once the socket is closed (e.g. the controller speaks another protocol), the rest of the
    // chunk is not read: a table sent right after a mismatched hello must not be applied.
    while (start < chunk.length && !s.destroyed) {
      const nl = chunk.indexOf(10, start);
      if (nl === -1) {
        this.#append(chunk.subarray(start));
        return;
      }
      this.#append(chunk.subarray(start, nl));
      this.#endLine();
      start = nl + 1;
    }
  }

  #append(part: Buffer): void {
    if (this.#discarding || part.length === 0) return;
    if (this.#partLen + part.length > this.#o.maxLineBytes) {
      this.#discarding = true;
      this.#parts = [];
      this.#partLen = 0;
      this.counters.droppedLongLines++;
      this.#o.log?.warn({ limit: this.#o.maxLineBytes }, 'control: dropping a line longer than the limit');
      return;
    }
    this.#parts.push(part);
    this.#partLen += part.length;
  }

  #endLine(): void {
    if (this.#discarding) {
      this.#discarding = false;
      return;
    }
    if (this.#partLen === 0) return;
    const buf = this.#parts.length === 1 ? this.#parts[0] : Buffer.concat(this.#parts, this.#partLen);
    this.#parts = [];
    this.#partLen = 0;
    this.#onLine(buf.toString('utf8'));
  }

  #onLine(line: string): void {
    let msg: ControllerMessage;
    try {
      msg = JSON.parse(line) as ControllerMessage;
    } catch {
      this.counters.badLines++;
      this.#o.log?.warn({ bytes: line.length }, 'control: ignoring a line that is not JSON');
      return;
    }
    if (msg === null || typeof msg !== 'object') {
      this.counters.badLines++;
      this.#o.log?.warn('control: ignoring a message that is not an object');
      return;
    }
    switch (msg.type) {
      case 'hello':
        if (msg.protocol !== PROTOCOL_VERSION) {
          this.#o.log?.error({ theirs: msg.protocol, ours: PROTOCOL_VERSION }, 'control: controller speaks another protocol version; closing');
          this.#socket?.destroy();
          return;
        }
        this.#attempt = 0; // a healthy controller: the next reconnect starts fast again
        break;
      case 'routes':
        this.#onRoutes(msg.table);
        break;
      case 'traffic-request':
        this.#onTrafficRequest(msg);
        break;
      default:
        break; // unknown types are ignored (forward compatibility)
    }
  }

  #onTrafficRequest(req: TrafficRequestMessage): void {
    if (typeof req.id !== 'number' || typeof req.app !== 'string' || typeof req.limit !== 'number' ||
        (req.after !== undefined && (typeof req.after !== 'object' || req.after === null))) {
      this.counters.badLines++;
      this.#o.log?.warn('control: ignoring a malformed traffic-request message');
      return;
    }
    const socket = this.#socket;
    const answer = (part: TrafficPart) => {
      if (!socket || socket !== this.#socket || !this.#open) return;
      const msg: SidecarMessage = { type: 'traffic', id: req.id, app: req.app, ...part };
      socket.write(JSON.stringify(msg) + '\n');
    };
    const empty: TrafficPart = { exchanges: [], cursor: {}, recorded: 0, skipped: 0 };
    if (!this.#o.traffic) { answer(empty); return; }
    Promise.resolve()
      .then(() => this.#o.traffic!(req))
      .then(answer, (err: unknown) => {
        this.#o.log?.error({ err, app: req.app }, 'control: could not read recorded traffic');
        answer(empty);
      });
  }

  #onRoutes(table: RoutingTable): void {
    if (!table || typeof table !== 'object' || typeof table.revision !== 'number' || !Array.isArray(table.apps)) {
      this.counters.badLines++;
      this.#o.log?.warn('control: ignoring a malformed routes message');
      return;
    }
    const socket = this.#socket;
    // A report is confirmed once a table no longer lists that version as serving with that epoch.
    if (this.#unconfirmed.size > 0) {
      const serving = new Set<string>();
      for (const app of table.apps) for (const v of app.versions ?? []) if (v.state === 'serving') serving.add(`${v.id}@${v.epoch}`);
      for (const key of this.#unconfirmed.keys()) if (!serving.has(key)) this.#unconfirmed.delete(key);
    }
    // Tables are applied strictly in arrival order, even when apply is asynchronous (workers).
    this.#applyChain = this.#applyChain.then(async () => {
      try {
        await this.#o.apply(table);
      } catch (err) {
        this.counters.applyErrors++;
        this.#o.log?.error({ err, revision: table.revision }, 'control: could not apply the routing table');
        return;
      }
      this.counters.applied++;
      this.#o.log?.info({ revision: table.revision, apps: table.apps.length }, 'routing table applied');
      if (socket && socket === this.#socket && this.#open) {
        const ack: SidecarMessage = { type: 'ack', revision: table.revision };
        socket.write(JSON.stringify(ack) + '\n');
      }
      this.emit('applied', table.revision);
    });
  }
}
