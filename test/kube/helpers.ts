// Shared pieces for the Kubernetes-mode tests: a fake apiserver, KubeConfigs pointing at it, a fake sidecar
// on the controller's control socket, and waiting for a condition without fixed sleeps.

import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { ControlServer } from '../../controller/control-server.js';
import { KubeController, type KubeControllerOptions } from '../../controller/kube/controller.js';
import { PROTOCOL_VERSION, type FailureMessage, type RoutingTable, type StatsMessage, type WireExchange } from '../../common/protocol.js';
import { FakeApiServer } from './fake-apiserver.js';

export const NS = 'molt-test';

export function kubeConfigFor(server: FakeApiServer): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions(server.kubeConfigOptions());
  return kc;
}

export async function waitFor<T>(what: string, fn: () => T | undefined | false | null, timeoutMs = 8000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A sidecar double: speaks the control protocol, records tables (with the time each arrived), can report
 *  failures and stats, and answers traffic requests from `recording` (one recorder, "0"). */
export class FakeSidecar {
  tables: RoutingTable[] = [];
  /** Date.now() when each table arrived, index for index with `tables`. */
  arrivals: number[] = [];
  /** Recorded exchanges per app, oldest first; seq is their position + 1. */
  recording = new Map<string, WireExchange[]>();
  trafficRequests = 0;
  #socket: net.Socket | null = null;
  #buf = '';

  async connect(socketPath: string): Promise<void> {
    const socket = net.connect(socketPath);
    this.#socket = socket;
    socket.setEncoding('utf8');
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    socket.on('data', (chunk: string) => {
      this.#buf += chunk;
      let nl: number;
      while ((nl = this.#buf.indexOf('\n')) !== -1) {
        const line = this.#buf.slice(0, nl);
        this.#buf = this.#buf.slice(nl + 1);
        const msg = JSON.parse(line);
        if (msg.type === 'routes') {
          this.tables.push(msg.table);
          this.arrivals.push(Date.now());
          this.#send({ type: 'ack', revision: msg.table.revision });
        } else if (msg.type === 'traffic-request') {
          this.trafficRequests++;
          const after = msg.after?.['0'] ?? 0;
          const all = (this.recording.get(msg.app) ?? []).map((e, i) => ({ ...e, recorder: '0', seq: i + 1 }));
          const fresh = all.filter((e) => e.seq > after);
          this.#send({ type: 'traffic', id: msg.id, app: msg.app, exchanges: fresh.slice(-msg.limit), cursor: { '0': all.length }, recorded: all.length, skipped: 0 });
        }
      }
    });
    this.#send({ type: 'hello', protocol: PROTOCOL_VERSION, role: 'sidecar', pid: 4242, revision: 0 });
  }

  get last(): RoutingTable | undefined {
    return this.tables[this.tables.length - 1];
  }

  failure(m: Omit<FailureMessage, 'type'>): void {
    this.#send({ type: 'failure', ...m });
  }

  stats(m: Omit<StatsMessage, 'type'>): void {
    this.#send({ type: 'stats', ...m });
  }

  close(): void {
    this.#socket?.destroy();
  }

  #send(m: object): void {
    this.#socket?.write(JSON.stringify(m) + '\n');
  }
}

export interface Replica {
  controller: KubeController;
  control: ControlServer;
  sidecar: FakeSidecar;
  tables: RoutingTable[];
  stop(releaseLease?: boolean): Promise<void>;
}

let counter = 0;

/** A controller replica with its own control socket and fake sidecar. Not started. */
export async function replica(server: FakeApiServer, identity: string, extra: Partial<KubeControllerOptions> = {}): Promise<Replica> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `molt-kube-${process.pid}-${counter++}-`));
  const control = new ControlServer({ socketPath: path.join(dir, 'control.sock') });
  await control.start();
  const tables: RoutingTable[] = [];
  const controller = new KubeController({
    kubeConfig: kubeConfigFor(server),
    namespace: NS,
    controlServer: control,
    identity,
    leaseDurationMs: 600,
    renewMs: 100,
    backoff: { initialMs: 20, maxMs: 200 },
    informerBackoff: { initialMs: 20, maxMs: 200 },
    onTable: (t) => tables.push(t),
    ...extra,
  });
  const sidecar = new FakeSidecar();
  await sidecar.connect(control.socketPath);
  let stopped = false;
  return {
    controller,
    control,
    sidecar,
    tables,
    async stop(releaseLease = true) {
      if (stopped) return;
      stopped = true;
      sidecar.close();
      await controller.stop({ releaseLease });
      await control.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function serversAV(name: string, app: string, version: string, port: number, spec: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    apiVersion: 'molt.dev/v1alpha1',
    kind: 'AppVersion',
    metadata: { name },
    spec: { app, version, servers: [{ host: '127.0.0.1', port }], ...spec },
  };
}

export function dockerAV(name: string, app: string, version: string, spec: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    apiVersion: 'molt.dev/v1alpha1',
    kind: 'AppVersion',
    metadata: { name },
    spec: { app, version, healthCheck: { path: '/healthz', interval: '2s' }, docker: { image: 'ghcr.io/example/shop', tag: version, containerPort: 8080, replicas: 2 }, ...spec },
  };
}

export function endpointSlice(service: string, endpoints: Array<{ ip: string; ready: boolean }>, port = 8080): Record<string, unknown> {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name: `${service}-abcde`,
      labels: { 'kubernetes.io/service-name': service, 'app.kubernetes.io/managed-by': 'molt', 'molt.dev/appversion': service },
    },
    addressType: 'IPv4',
    ports: [{ name: 'http', port, protocol: 'TCP' }],
    endpoints: endpoints.map((e) => ({ addresses: [e.ip], conditions: { ready: e.ready } })),
  };
}

/** A recorded exchange as the sidecar would report it (bodies are text here, base64 on the wire). */
export function exchange(method: string, target: string, response: { status: number; body: string; contentType?: string }): WireExchange {
  return {
    recorder: '0',
    seq: 0,
    startedAt: Date.now(),
    durationMicros: 1000,
    request: { method, target, httpVersion: '1.1', headers: [['host', 'shop.example']], body: '', bodyTruncated: false },
    response: {
      status: response.status,
      statusText: 'OK',
      httpVersion: '1.1',
      headers: [['content-type', response.contentType ?? 'application/json']],
      body: Buffer.from(response.body).toString('base64'),
      bodyTruncated: false,
    },
  };
}

export function versionsOf(t: RoutingTable | null | undefined, app: string): Array<{ id: string; state: string; endpoints: string[]; mode: string }> {
  const a = t?.apps.find((x) => x.name === app);
  return (a?.versions ?? []).map((v) => ({ id: v.id, state: v.state, endpoints: v.endpoints.map((e) => `${e.host}:${e.port}`), mode: v.transition.mode }));
}

/** A kubeconfig file pointing at the fake apiserver (for startKubeController's --kubeconfig). */
export function writeKubeconfig(server: FakeApiServer, file: string): void {
  const o = server.kubeConfigOptions() as {
    currentContext: string;
    clusters: Array<{ name: string; server: string }>;
    users: Array<{ name: string; token: string }>;
    contexts: Array<{ name: string; cluster: string; user: string }>;
  };
  const doc = {
    apiVersion: 'v1', kind: 'Config', 'current-context': o.currentContext,
    clusters: o.clusters.map((c) => ({ name: c.name, cluster: { server: c.server, 'insecure-skip-tls-verify': true } })),
    users: o.users.map((u) => ({ name: u.name, user: { token: u.token } })),
    contexts: o.contexts.map((c) => ({ name: c.name, context: { cluster: c.cluster, user: c.user } })),
  };
  fs.writeFileSync(file, JSON.stringify(doc)); // JSON is YAML
}
