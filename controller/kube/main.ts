// `molt controller --kubernetes`: the Kubernetes-mode controller process. Starts the control socket the
// sidecar (a second container in the same pod) connects to, the admin port, and the KubeController.
// SIGTERM/SIGINT release the Lease so another replica takes over at once.
//
// The admin port: /healthz, /readyz and /metrics answer any Host (kubelet probes, Prometheus scrapes of the
// pod IP); everything else is the admin API (controller/admin-api.ts) over this replica's caches, read-only:
// /status, /apps/{app}/traffic.har, /appversions/{name}, and the dashboard at /ui with its event stream.
// Actions (promote, rollback, apply, delete) answer 403 naming the kubectl command to use: in Kubernetes
// mode the AppVersions are the desired state, and kubectl (`kubectl molt promote/rollback`) changes them.
// The admin API's own rules apply: without a token only loopback Host names are served (reach it with
// `kubectl port-forward`).

import http from 'node:http';
import os from 'node:os';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { parseCommandLine, parseHostPort } from '../../common/args.js';
import { ControlServer } from '../control-server.js';
import { MoltError } from '../../common/errors.js';
import { createLogger, LOG_LEVELS } from '../../common/logger.js';
import { createAdminServer } from '../admin-api.js';
import { MoltMetrics } from '../metrics.js';
import { warmValidator } from '../load.js';
import { loadKubeConfig, resolveNamespace } from './client.js';
import { KubeController } from './controller.js';

export const KUBE_HELP = `Usage: molt controller --kubernetes [flags]

Runs the molt controller against a Kubernetes cluster: watches AppVersion resources (molt.dev/v1alpha1),
runs docker-runtime versions as Deployments, writes status, and pushes routing tables to the sidecar on
--control. Several replicas may run; a Lease elects the one that writes.

Flags:
  --namespace NS          namespace to watch (default: the pod's namespace, else the kubeconfig context's)
  --kubeconfig FILE       kubeconfig (default: $KUBECONFIG, ~/.kube/config, else in-cluster service account)
  --control SOCKET        control socket for the sidecar (default /var/run/molt/control.sock)
  --admin HOST:PORT       /healthz, /readyz, /metrics, and the read-only admin API and dashboard (/status,
                          /ui) for loopback Host names, e.g. through kubectl port-forward
                          (default 0.0.0.0:9090; "off" to disable)
  --identity NAME         this replica's Lease identity (default $POD_NAME, else the host name)
  --lease-name NAME       Lease object name (default molt-controller)
  --lease-duration DUR    Lease duration, at least 1s (default 15s); renewals every 2/15 of it, step down after 2/3
  --resync-period DUR     reconcile every AppVersion again this often without events (default 5m; 0 = never)
  --log-level LEVEL       ${LOG_LEVELS.join('|')} (default info)
`;

export interface KubeControllerHandle {
  controller: KubeController;
  control: ControlServer;
  admin: http.Server | null;
  adminAddress: AddressInfo | null;
  shutdown(): Promise<void>;
}

/** Build and start everything; returns a handle (tests, embedding). */
export async function startKubeController(argv: string[], log?: Logger): Promise<KubeControllerHandle> {
  const args = parseCommandLine(
    argv,
    {
      namespace: { type: 'string' },
      kubeconfig: { type: 'string' },
      control: { type: 'string', default: '/var/run/molt/control.sock' },
      admin: { type: 'string', default: '0.0.0.0:9090' },
      identity: { type: 'string' },
      'lease-name': { type: 'string', default: 'molt-controller' },
      'lease-duration': { type: 'duration', default: '15s', minMs: 1000 },
      'resync-period': { type: 'duration', default: '5m' },
      'log-level': { type: 'logLevel', default: 'info' },
    },
    'controller --kubernetes',
  );
  if (args.help) throw new MoltError('MOLT_ERR_USAGE', KUBE_HELP);
  const flags = { ...args.values, identity: args.values.identity ?? (process.env.POD_NAME || os.hostname()) };
  if (args.positionals.length) throw new MoltError('MOLT_ERR_USAGE', `unexpected argument "${args.positionals[0]}" (see molt controller --kubernetes --help)`);
  const adminAddr = flags.admin === 'off' ? null : parseHostPort(flags.admin, 'admin');
  log ??= createLogger(flags['log-level']);
  const leaseDurationMs = flags['lease-duration'];
  const resyncMs = flags['resync-period'];
  const kubeConfig = loadKubeConfig(flags.kubeconfig);
  const namespace = resolveNamespace(kubeConfig, flags.namespace);
  warmValidator(); // before campaigning: the first reconcile must not block lease renewals
  const metrics = new MoltMetrics();
  const control = new ControlServer({ socketPath: flags.control, log });
  await control.start();
  const controller = new KubeController({
    kubeConfig,
    namespace,
    controlServer: control,
    identity: flags.identity,
    leaseName: flags['lease-name'],
    leaseDurationMs,
    // client-go's proportions (15s lease: renew every 2s, give up after 10s): several renewals fit before
    // the renew deadline, so one slow or failed renewal does not cost the leadership.
    renewMs: Math.max(100, Math.round((leaseDurationMs * 2) / 15)),
    resyncMs,
    metrics,
    log,
  });

  let ready = false;
  let admin: http.Server | null = null;
  let adminAddress: AddressInfo | null = null;
  // The admin API never listens itself: this server hands it every request but the probes and metrics.
  const api = adminAddr ? createAdminServer({ controller, metrics, log, dashboard: { readOnly: true } }) : null;
  if (adminAddr && api) {
    const { host, port } = adminAddr;
    admin = http.createServer((req, res) => {
      const url = (req.url ?? '/').split('?')[0];
      const probe = url === '/healthz' || url === '/readyz' || url === '/metrics';
      if (!probe) {
        api.emit('request', req, res);
      } else if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { Allow: 'GET, HEAD' }).end();
      } else if (url === '/healthz') {
        res.writeHead(200, { 'Content-Type': 'text/plain' }).end('ok\n');
      } else if (url === '/readyz') {
        res.writeHead(ready ? 200 : 503, { 'Content-Type': 'text/plain' }).end(ready ? 'ok\n' : 'caches not synced\n');
      } else if (url === '/metrics') {
        metrics.text().then(
          (text) => res.writeHead(200, { 'Content-Type': metrics.contentType }).end(text),
          (err) => res.writeHead(500).end(String(err)),
        );
      }
    });
    const server = admin;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => { server.off('error', reject); resolve(); });
    });
    adminAddress = server.address() as AddressInfo;
    api.emit('listening'); // starts the dashboard's status sampler (createAdminServer starts it on 'listening')
  }

  log.info({ namespace, identity: controller.identity, control: control.socketPath, admin: adminAddress }, 'starting Kubernetes-mode controller');
  await controller.start();
  ready = true;

  let stopping: Promise<void> | null = null;
  const shutdown = () =>
    (stopping ??= (async () => {
      await controller.stop({ releaseLease: true });
      await control.close();
      // Ends the dashboard's event streams and its sampler first: open streams would hold admin.close() forever.
      api?.close(() => undefined);
      if (admin) await new Promise<void>((resolve) => admin!.close(() => resolve()));
    })());
  return { controller, control, admin, adminAddress, shutdown };
}

/** `molt controller --kubernetes …`: runs until SIGTERM/SIGINT. */
export async function runKubeController(argv: string[]): Promise<void> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(KUBE_HELP);
    return;
  }
  const handle = await startKubeController(argv);
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      handle.shutdown().then(resolve, resolve);
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}
