import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { ControlClient } from '../sidecar/control-client.js';
import { line, onLines } from '../common/ndjson.js';
import { createRoutingState } from '../sidecar/routing.js';
import { waitFor } from './helpers/molt.js';
import { DEFAULT_FAILURE_POLICY, DEFAULT_TRANSITION, PROTOCOL_VERSION, type FailureMessage, type RoutingTable } from '../common/protocol.js';

/** A fake controller: records every line received, lets the test send lines. */
class FakeController {
  server: net.Server;
  received: any[] = [];
  peers = new Set<net.Socket>();
  #waiters: Array<{ pred: (m: any) => boolean; resolve: (m: any) => void }> = [];
  constructor(readonly socketPath: string, readonly onHello?: (s: net.Socket) => void) {
    this.server = net.createServer((s) => {
      this.peers.add(s);
      s.on('error', () => {});
      s.on('close', () => this.peers.delete(s));
      s.write(line({ type: 'hello', protocol: PROTOCOL_VERSION, role: 'controller', pid: 1 }));
      onLines(s, (l) => {
        const m = JSON.parse(l);
        this.received.push(m);
        if (m.type === 'hello') this.onHello?.(s);
        this.#waiters = this.#waiters.filter((w) => (w.pred(m) ? (w.resolve(m), false) : true));
      });
    });
  }
  async listen(): Promise<void> {
    this.server.listen(this.socketPath);
    await once(this.server, 'listening');
  }
  next(pred: (m: any) => boolean): Promise<any> {
    const found = this.received.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve) => this.#waiters.push({ pred, resolve }));
  }
  send(line: string): void {
    for (const s of this.peers) s.write(line);
  }
  async close(): Promise<void> {
    for (const s of this.peers) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

function tableOf(revision: number): RoutingTable {
  return {
    revision,
    apps: [{
      name: 'shop', hosts: [], default: true, versionCookie: 'mv', bucketCookie: 'mb',
      versions: [
        { id: 'shop-v2', version: '2.0', epoch: 1, state: 'serving', transition: DEFAULT_TRANSITION, failurePolicy: DEFAULT_FAILURE_POLICY, endpoints: [{ host: '127.0.0.1', port: 9 }], servingSince: 0, promoted: false },
        { id: 'shop-v1', version: '1.0', epoch: 1, state: 'serving', transition: DEFAULT_TRANSITION, failurePolicy: DEFAULT_FAILURE_POLICY, endpoints: [{ host: '127.0.0.1', port: 8 }], servingSince: 0, promoted: false },
      ],
    }],
  };
}

function setup(t: { after(fn: () => unknown): void }, extra: Partial<ConstructorParameters<typeof ControlClient>[0]> = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'molt-cc-'));
  const socketPath = path.join(dir, 'control.sock');
  const routing = createRoutingState();
  const client = new ControlClient({
    socketPath,
    apply: (tbl) => routing.apply(tbl),
    revision: () => routing.revision,
    stats: () => routing.stats(),
    statsIntervalMs: 30,
    initialBackoffMs: 10,
    maxBackoffMs: 40,
    maxLineBytes: 4096,
    ...extra,
  });
  routing.onFailure = (m) => client.reportFailure(m);
  t.after(async () => {
    await client.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return { socketPath, routing, client };
}

test('hello both ways, routes -> apply + ack, stats, failure delivered', { timeout: 10_000 }, async (t) => {
  const { socketPath, routing, client } = setup(t);
  const ctl = new FakeController(socketPath, (s) => s.write(JSON.stringify({ type: 'routes', table: tableOf(7) }) + '\n'));
  await ctl.listen();
  t.after(() => ctl.close());
  client.start();
  const hello = await ctl.next((m) => m.type === 'hello');
  assert.deepEqual({ ...hello, pid: 0 }, { type: 'hello', protocol: PROTOCOL_VERSION, role: 'sidecar', pid: 0, revision: 0 });
  const ack = await ctl.next((m) => m.type === 'ack');
  assert.equal(ack.revision, 7);
  assert.equal(routing.revision, 7);
  const stats = await ctl.next((m) => m.type === 'stats' && m.revision === 7); // an earlier one may predate the table
  assert.equal(stats.revision, 7);
  assert.deepEqual(stats.versions.map((v: any) => v.versionId), ['shop-v2', 'shop-v1']);

  // bad JSON, non-object, unknown type and an over-long line are ignored; the connection survives
  ctl.send('{nope\n' + '42\n' + '{"type":"future-thing"}\n' + 'x'.repeat(10_000) + '\n');
  ctl.send(JSON.stringify({ type: 'routes', table: tableOf(8) }) + '\n');
  assert.equal((await ctl.next((m) => m.type === 'ack' && m.revision === 8)).revision, 8);
  assert.equal(client.counters.droppedLongLines, 1);
  assert.equal(client.counters.badLines, 2);

  const d = routing.route('any', undefined, 'GET')!;
  routing.recordFailure(d.primary, 'connect', 'ECONNREFUSED', 1);
  const f = await ctl.next((m) => m.type === 'failure');
  assert.equal(f.versionId, 'shop-v2');
  assert.equal(f.reason, 'connect ECONNREFUSED');
});

test('reconnects after the controller restarts; static stability; queued failure re-sent', { timeout: 10_000 }, async (t) => {
  const { socketPath, routing, client } = setup(t);
  let ctl = new FakeController(socketPath, (s) => s.write(JSON.stringify({ type: 'routes', table: tableOf(3) }) + '\n'));
  await ctl.listen();
  client.start();
  await ctl.next((m) => m.type === 'ack');
  const disconnected = once(client, 'disconnected');
  await ctl.close();
  await disconnected;
  assert.equal(client.connected, false);

  // the controller is away: the last table keeps serving, and a failure is queued
  assert.equal(routing.route('x', undefined, 'GET')!.primary.id, 'shop-v2');
  routing.recordFailure(routing.route('x', undefined, 'GET')!.primary, 'status', '503', 1);
  assert.equal(routing.route('x', undefined, 'GET')!.primary.id, 'shop-v1');
  assert.equal(client.queuedFailures, 1);

  // a new controller on the same path: the client finds it, says hello with its revision, re-sends
  const gotHello = new Promise<void>((resolve) => {
    ctl = new FakeController(socketPath, () => resolve());
  });
  await ctl.listen();
  t.after(() => ctl.close());
  await gotHello;
  const hello = await ctl.next((m) => m.type === 'hello');
  assert.equal(hello.revision, 3);
  const f: FailureMessage = await ctl.next((m) => m.type === 'failure');
  assert.equal(f.versionId, 'shop-v2');
  assert.equal(f.reason, 'status 503');
  assert.equal(client.queuedFailures, 0);
  assert.ok(client.counters.connects >= 2);
});

test('starts before the controller exists and connects when it appears', { timeout: 10_000 }, async (t) => {
  // The jitter source is called once per scheduled reconnect: it counts the failed attempts.
  let retries = 0;
  const { socketPath, client, routing } = setup(t, { random: () => (retries++, 0.5) });
  client.start();
  await waitFor('a few failed connection attempts (ENOENT)', () => retries >= 3, 5000);
  assert.equal(client.connected, false);
  assert.equal(client.counters.connects, 0);
  const ctl = new FakeController(socketPath, (s) => s.write(JSON.stringify({ type: 'routes', table: tableOf(1) }) + '\n'));
  await ctl.listen();
  t.after(() => ctl.close());
  await ctl.next((m) => m.type === 'ack');
  assert.equal(routing.revision, 1);
});

test('protocol version mismatch: the client closes and keeps the table it had', { timeout: 10_000 }, async (t) => {
  const { socketPath, client, routing } = setup(t);
  // A good controller first: table 5 in force, then the controller goes away.
  const ctl = new FakeController(socketPath, (s) => s.write(JSON.stringify({ type: 'routes', table: tableOf(5) }) + '\n'));
  await ctl.listen();
  client.start();
  await ctl.next((m) => m.type === 'ack' && m.revision === 5);
  const lost = once(client, 'disconnected');
  await ctl.close();
  await lost;

  // Then one that speaks another protocol, and sends a table of its own right after its hello.
  const foreign: RoutingTable = { revision: 99, apps: [{ ...tableOf(99).apps[0]!, versions: [{ ...tableOf(99).apps[0]!.versions[0]!, id: 'foreign-v9', endpoints: [{ host: '127.0.0.1', port: 7 }] }] }] };
  const conns = new Set<net.Socket>();
  const received: any[] = [];
  const server = net.createServer((s) => {
    conns.add(s);
    s.on('error', () => {});
    onLines(s, (l) => received.push(JSON.parse(l)));
    s.write(JSON.stringify({ type: 'hello', protocol: 999, role: 'controller', pid: 1 }) + '\n' + JSON.stringify({ type: 'routes', table: foreign }) + '\n');
  });
  t.after(() => new Promise<void>((r) => {
    for (const c of conns) c.destroy();
    server.close(() => r());
  }));
  const cycle = (async () => { await once(client, 'connected'); await once(client, 'disconnected'); })();
  server.listen(socketPath);
  await once(server, 'listening');
  await cycle;
  assert.equal(client.connected, false);

  // Still table 5, routing as before; nothing from the foreign controller applied or acked.
  assert.equal(routing.revision, 5);
  const d = routing.route('x', undefined, 'GET')!;
  assert.equal(d.primary.id, 'shop-v2');
  assert.deepEqual(d.primary.endpoints, [{ host: '127.0.0.1', port: 9 }]);
  assert.equal(client.counters.applied, 1);
  assert.deepEqual(received.filter((m) => m.type === 'ack'), []);
});
