// The controller's end of the control socket (see common/protocol.ts for the protocol).
// One Unix socket; normally one sidecar connects, but every connected sidecar gets every table
// (several sidecars may share one controller, e.g. while an old one drains).

import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Logger } from 'pino';
import { line, onLines } from '../common/ndjson.js';
import { mergeTraffic, type TrafficPart } from '../common/traffic.js';
import {
  PROTOCOL_VERSION,
  type FailureMessage,
  type HelloMessage,
  type RoutingTable,
  type SidecarMessage,
  type StatsMessage,
  type TrafficMessage,
  type TrafficRequestMessage,
} from '../common/protocol.js';

/** Recorded traffic, as merged over every connected sidecar. */
export type TrafficAnswer = TrafficPart;
/** A sidecar that has not answered a traffic request by then is left out. */
export const TRAFFIC_REQUEST_TIMEOUT_MS = 3000;

export interface ControlServerEvents {
  failure: [FailureMessage];
  stats: [StatsMessage];
  connected: [number];
  disconnected: [number];
  ack: [number];
}

interface Peer {
  socket: net.Socket;
  pid: number;
  acked: number;
}

export class ControlServer extends EventEmitter<ControlServerEvents> {
  readonly socketPath: string;
  #server: net.Server | null = null;
  #peers = new Set<Peer>();
  #table: RoutingTable | null = null;
  #log: Logger | undefined;
  #trafficId = 0;
  readonly #trafficWaits = new Map<number, { parts: TrafficMessage[]; pending: Set<Peer>; done: () => void }>();

  constructor(opts: { socketPath: string; log?: Logger }) {
    super();
    this.socketPath = opts.socketPath;
    this.#log = opts.log;
  }

  get connected(): boolean {
    for (const p of this.#peers) if (p.pid) return true;
    return false;
  }

  /** Highest revision every connected sidecar has acknowledged (0 if none connected). */
  get ackedRevision(): number {
    let min = Infinity;
    for (const p of this.#peers) if (p.pid) min = Math.min(min, p.acked);
    return min === Infinity ? 0 : min;
  }

  get table(): RoutingTable | null {
    return this.#table;
  }

  async start(): Promise<void> {
    fs.mkdirSync(path.dirname(this.socketPath), { recursive: true });
    // A stale socket file from a crashed controller would make listen fail with EADDRINUSE.
    // Only remove it if nobody answers on it.
    if (fs.existsSync(this.socketPath)) {
      const alive = await new Promise<boolean>((resolve) => {
        const s = net.connect(this.socketPath);
        s.once('connect', () => { s.destroy(); resolve(true); });
        s.once('error', () => resolve(false));
      });
      if (alive) throw new Error(`control socket ${this.socketPath} is in use by another controller`);
      fs.unlinkSync(this.socketPath);
    }
    const server = net.createServer((socket) => this.#accept(socket));
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.socketPath, () => { server.off('error', reject); resolve(); });
    });
    fs.chmodSync(this.socketPath, 0o600);
  }

  /** Send a table to every connected sidecar (and to any that connects later). */
  push(table: RoutingTable): void {
    this.#table = table;
    const msg = line({ type: 'routes', table });
    for (const p of this.#peers) if (p.pid) p.socket.write(msg);
  }

  /** Ask every connected sidecar for recorded exchanges of `app` (see TrafficRequestMessage). */
  requestTraffic(app: string, limit: number, after?: Record<string, number>): Promise<TrafficAnswer> {
    const id = ++this.#trafficId;
    const pending = new Set<Peer>();
    for (const p of this.#peers) if (p.pid) pending.add(p);
    return new Promise<TrafficAnswer>((resolve) => {
      const parts: TrafficMessage[] = [];
      const timer = setTimeout(() => done(), TRAFFIC_REQUEST_TIMEOUT_MS);
      timer.unref();
      const done = () => {
        clearTimeout(timer);
        if (!this.#trafficWaits.delete(id)) return;
        resolve(mergeTraffic(parts));
      };
      this.#trafficWaits.set(id, { parts, pending, done });
      if (pending.size === 0) { done(); return; }
      const req: TrafficRequestMessage = { type: 'traffic-request', id, app, limit, ...(after ? { after } : {}) };
      const msg = line(req);
      for (const p of pending) p.socket.write(msg);
    });
  }

  #trafficGone(peer: Peer): void {
    for (const wait of this.#trafficWaits.values()) {
      if (wait.pending.delete(peer) && wait.pending.size === 0) wait.done();
    }
  }

  async close(): Promise<void> {
    for (const p of this.#peers) p.socket.destroy();
    this.#peers.clear();
    const server = this.#server;
    this.#server = null;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    try { fs.unlinkSync(this.socketPath); } catch { /* already gone */ }
  }

  #accept(socket: net.Socket): void {
    const peer: Peer = { socket, pid: 0, acked: 0 };
    this.#peers.add(peer);
    const hello: HelloMessage = { type: 'hello', protocol: PROTOCOL_VERSION, role: 'controller', pid: process.pid };
    socket.write(line(hello));
    onLines(socket, (l) => this.#onLine(peer, l), {
      onTooLong: () => {
        this.#log?.warn({ pid: peer.pid }, 'control: line too long from sidecar, closing');
        socket.destroy();
      },
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      this.#peers.delete(peer);
      this.#trafficGone(peer);
      if (peer.pid) {
        this.#log?.info({ pid: peer.pid }, 'sidecar disconnected');
        this.emit('disconnected', peer.pid);
      }
    });
  }

  #onLine(peer: Peer, line: string): void {
    let msg: SidecarMessage;
    try {
      msg = JSON.parse(line) as SidecarMessage;
    } catch {
      this.#log?.warn('control: ignoring a line that is not JSON');
      return;
    }
    const problem = checkMessage(msg);
    if (problem) {
      this.#log?.warn({ problem }, 'control: ignoring a malformed message');
      return;
    }
    // Nothing but hello counts before hello: a peer must say who it is first.
    if (msg.type !== 'hello' && !peer.pid) return;
    try {
      this.#dispatch(peer, msg);
    } catch (err) {
      // A listener's bug must not take the controller down with the socket's data handler.
      this.#log?.error({ err, type: msg.type }, 'control: error while handling a message');
    }
  }

  #dispatch(peer: Peer, msg: SidecarMessage): void {
    switch (msg.type) {
      case 'hello':
        if (msg.protocol !== PROTOCOL_VERSION) {
          this.#log?.error({ theirs: msg.protocol, ours: PROTOCOL_VERSION }, 'control: sidecar speaks another protocol version; closing');
          peer.socket.destroy();
          return;
        }
        peer.pid = msg.pid;
        peer.acked = msg.revision ?? 0;
        this.#log?.info({ pid: msg.pid, revision: peer.acked }, 'sidecar connected');
        if (this.#table) peer.socket.write(line({ type: 'routes', table: this.#table }));
        this.emit('connected', msg.pid);
        break;
      case 'ack':
        peer.acked = msg.revision;
        this.emit('ack', msg.revision);
        break;
      case 'failure':
        this.emit('failure', msg);
        break;
      case 'stats':
        this.emit('stats', msg);
        break;
      case 'traffic': {
        const wait = this.#trafficWaits.get(msg.id);
        if (!wait || !wait.pending.delete(peer)) return;
        wait.parts.push(msg);
        if (wait.pending.size === 0) wait.done();
        break;
      }
      default:
        // Unknown message types are ignored: forward compatibility.
        break;
    }
  }
}

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isStr = (v: unknown): v is string => typeof v === 'string';

/** What is wrong with a parsed message, or null. Unknown types pass (forward compatibility). */
export function checkMessage(m: unknown): string | null {
  if (typeof m !== 'object' || m === null || Array.isArray(m)) return 'not an object';
  const o = m as Record<string, unknown>;
  if (!isStr(o.type)) return 'no type';
  switch (o.type) {
    case 'hello':
      return isNum(o.protocol) && isNum(o.pid) && (o.revision === undefined || isNum(o.revision)) ? null : 'hello needs protocol and pid';
    case 'ack':
      return isNum(o.revision) ? null : 'ack needs revision';
    case 'failure':
      return isStr(o.app) && isStr(o.versionId) && isStr(o.version) && isNum(o.epoch) && isStr(o.reason) && isNum(o.firstFailureAt) && isNum(o.rolledBackAt)
        ? null : 'failure needs app, versionId, version, epoch, reason, firstFailureAt, rolledBackAt';
    case 'stats':
      return isNum(o.at) && isNum(o.revision) && Array.isArray(o.versions) && o.versions.every((v) => typeof v === 'object' && v !== null && isStr((v as Record<string, unknown>).versionId))
        ? null : 'stats needs at, revision and versions[]';
    case 'traffic':
      return isNum(o.id) && isStr(o.app) && Array.isArray(o.exchanges) && typeof o.cursor === 'object' && o.cursor !== null && isNum(o.recorded) && isNum(o.skipped)
        ? null : 'traffic needs id, app, exchanges[], cursor, recorded, skipped';
    default:
      return null;
  }
}

