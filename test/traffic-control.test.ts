// Recorded traffic travels from the sidecar's recorders (every worker's) over the control socket to
// the controller (issue 11: replay, shadow and `molt traffic export` all read it this way).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';
import { ControlServer } from '../controller/control-server.js';
import { ControlClient } from '../sidecar/control-client.js';
import { TrafficRecorder } from '../sidecar/recorder.js';
import { readTraffic } from '../sidecar/traffic.js';
import { createRoutingState } from '../sidecar/routing.js';
import { ipcPair } from './helpers/ipc-pair.js';
import { PrimaryCoordinator, WorkerAgent } from '../sidecar/workers.js';

function record(r: TrafficRecorder, app: string, target: string, body: string): void {
  const c = r.begin(Date.now())!;
  c.requestHead(Buffer.from(`GET ${target} HTTP/1.1\r\nHost: ${app}\r\nAuthorization: Bearer secret\r\n\r\n`), r.limits.maxHeadBytes);
  const res = Buffer.from(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  c.appendResponse(res, 0, res.length);
  c.status = 200;
  r.commit(app, c);
}

const pair = ipcPair;

test('the controller reads recorded exchanges of every worker, and then only the newer ones', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'molt-traffic-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const coord = new PrimaryCoordinator();
  const recorders = [new TrafficRecorder(), new TrafficRecorder()];
  const agents = recorders.map((rec, i) => {
    const p = pair();
    coord.addWorker(p.primary);
    const agent = new WorkerAgent(createRoutingState(), p.worker, { traffic: (req) => readTraffic(rec, `w${i + 1}`, req) });
    agent.start();
    return agent;
  });
  t.after(() => agents.forEach((a) => a.stop()));
  record(recorders[0]!, 'shop', '/a', '{"n":1}');
  record(recorders[1]!, 'shop', '/b', '{"n":2}');
  record(recorders[1]!, 'blog', '/c', '{}');

  const server = new ControlServer({ socketPath: path.join(dir, 'c.sock') });
  await server.start();
  t.after(() => server.close());
  const client = new ControlClient({
    socketPath: server.socketPath, apply: () => {}, revision: () => 0, stats: () => [],
    traffic: (req) => coord.traffic(req),
  });
  client.start();
  t.after(() => client.close());
  await new Promise<void>((resolve) => server.once('connected', () => resolve()));

  const first = await server.requestTraffic('shop', 100);
  assert.deepEqual(first.exchanges.map((e) => e.request.target).sort(), ['/a', '/b']);
  const b = first.exchanges.find((e) => e.request.target === '/b')!;
  assert.equal(b.response.status, 200);
  assert.equal(Buffer.from(b.response.body, 'base64').toString(), '{"n":2}');
  assert.deepEqual(b.request.headers.find(([n]) => n === 'Authorization'), ['Authorization', 'Bearer secret'],
    'the control socket carries the raw exchange; the controller redacts');
  assert.deepEqual(Object.keys(first.cursor).sort(), ['w1', 'w2']);

  record(recorders[0]!, 'shop', '/d', '{}');
  const next = await server.requestTraffic('shop', 100, first.cursor);
  assert.deepEqual(next.exchanges.map((e) => e.request.target), ['/d'], 'only what was recorded after the cursor');
  assert.equal(next.recorded, 4);
});

test('with no sidecar connected a traffic request answers at once with nothing', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'molt-traffic-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const server = new ControlServer({ socketPath: path.join(dir, 'c.sock') });
  await server.start();
  t.after(() => server.close());
  const answer = await server.requestTraffic('shop', 10);
  assert.deepEqual(answer.exchanges, []);
});
