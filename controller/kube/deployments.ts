// AppVersion (docker runtime) -> the Deployment that runs it and the headless Service whose EndpointSlices
// tell us which pods are ready. Pure functions, plus apply helpers that create or replace only when the
// desired object differs from what is there (compared by a hash annotation, so defaults the apiserver fills
// in never cause update loops).

import { createHash } from 'node:crypto';
import type { AppsV1Api, CoreV1Api, V1Container, V1Deployment, V1EndpointSlice, V1OwnerReference, V1Probe, V1Service } from '@kubernetes/client-node';
import type { AppVersion, DockerRuntime } from '../appversion.js';
import type { Endpoint } from '../../common/protocol.js';
import { APP_ANNOTATION, APPVERSION_LABEL, MANAGED_BY, MANAGED_BY_LABEL, httpStatus } from './client.js';

export const HASH_ANNOTATION = 'molt.dev/desired-hash';
const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

/**
 * Name for the Deployment and Service of an AppVersion: a DNS-1035 label (Services need one), so
 * lower-case alphanumerics and '-', starting with a letter, at most 63 characters. Names that need changing
 * get a short hash suffix so two AppVersions never collide.
 */
export function objectName(avName: string): string {
  if (/^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/.test(avName)) return avName;
  const hash = createHash('sha256').update(avName).digest('hex').slice(0, 8);
  let base = avName.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^[^a-z]+/, '').replace(/-+$/, '');
  base = base.slice(0, 63 - 9).replace(/-+$/, '');
  return `${base || 'v'}-${hash}`;
}

export function labelsFor(av: AppVersion): Record<string, string> {
  return { [MANAGED_BY_LABEL]: MANAGED_BY, [APPVERSION_LABEL]: objectName(av.metadata.name) };
}

export function ownerReference(av: AppVersion): V1OwnerReference {
  return {
    apiVersion: av.apiVersion,
    kind: av.kind,
    name: av.metadata.name,
    uid: av.metadata.uid ?? '',
    controller: true,
    blockOwnerDeletion: true,
  };
}

function seconds(ms: number): number {
  return Math.max(1, Math.ceil(ms / 1000));
}

export function readinessProbe(av: AppVersion, port: number): V1Probe {
  const hc = av.spec.healthCheck;
  const probe: V1Probe = {
    periodSeconds: seconds(hc.intervalMs),
    timeoutSeconds: seconds(hc.timeoutMs),
    successThreshold: 1,
    failureThreshold: 3,
  };
  if (hc.path) probe.httpGet = { path: hc.path, port };
  else probe.tcpSocket = { port };
  return probe;
}

function container(av: AppVersion, d: DockerRuntime): V1Container {
  const c: V1Container = {
    name: 'app',
    image: `${d.image}:${d.tag}`,
    ports: [{ name: 'http', containerPort: d.containerPort, protocol: 'TCP' }],
    readinessProbe: readinessProbe(av, d.containerPort),
  };
  const env = Object.entries(d.env).sort(([a], [b]) => a.localeCompare(b)).map(([name, value]) => ({ name, value }));
  if (env.length) c.env = env;
  if (d.entrypoint?.length) c.command = d.entrypoint;
  if (d.cmd?.length) c.args = d.cmd;
  if (d.workingDir) c.workingDir = d.workingDir;
  if (d.memory || d.cpuShares) {
    c.resources = {};
    if (d.memory) c.resources.limits = { memory: String(d.memory) };
    // Docker CPU shares are relative weights, 1024 = one CPU's worth: map them to a CPU request.
    if (d.cpuShares) c.resources.requests = { cpu: `${Math.max(1, Math.round((d.cpuShares / 1024) * 1000))}m` };
  }
  const sc: NonNullable<V1Container['securityContext']> = {};
  if (d.privileged) sc.privileged = true;
  if (d.user && /^\d+$/.test(d.user)) sc.runAsUser = Number(d.user);
  else if (d.user && /^\d+:\d+$/.test(d.user)) {
    const [u, g] = d.user.split(':');
    sc.runAsUser = Number(u);
    sc.runAsGroup = Number(g);
  }
  if (Object.keys(sc).length) c.securityContext = sc;
  if (d.volumes.length) c.volumeMounts = d.volumes.map((mountPath, i) => ({ name: `vol-${i}`, mountPath }));
  return c;
}

/**
 * The Deployment for a docker-runtime AppVersion. `rolledBack` (and not keepFailed, or `keep` when given:
 * a Rejected version follows spec.preflight.keepFailed) scales it to zero:
 * the sidecar no longer routes there, so the pods only cost resources.
 * Docker-only settings without a Kubernetes meaning (binds, links, volumesFrom, portBindings, hostname,
 * checkForNewImages) are ignored; anonymous volumes become emptyDir volumes.
 */
export function desiredDeployment(av: AppVersion, namespace: string, opts: { rolledBack: boolean; keep?: boolean }): V1Deployment {
  if (av.spec.runtime.kind !== 'docker') throw new Error(`${av.metadata.name}: not a docker runtime`);
  const d = av.spec.runtime.docker;
  const name = objectName(av.metadata.name);
  const labels = labelsFor(av);
  const replicas = opts.rolledBack && !(opts.keep ?? av.spec.keepFailed) ? 0 : d.replicas;
  const dep: V1Deployment = {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: {
      name,
      namespace,
      labels,
      annotations: { [APP_ANNOTATION]: av.spec.app, 'molt.dev/version': av.spec.version },
      ownerReferences: [ownerReference(av)],
    },
    spec: {
      replicas,
      selector: { matchLabels: { [APPVERSION_LABEL]: name } },
      template: {
        metadata: { labels: { ...labels } },
        spec: {
          containers: [container(av, d)],
          ...(d.volumes.length ? { volumes: d.volumes.map((_, i) => ({ name: `vol-${i}`, emptyDir: {} })) } : {}),
        },
      },
    },
  };
  dep.metadata!.annotations![HASH_ANNOTATION] = hashOf(dep);
  return dep;
}

/** Headless Service selecting the AppVersion's pods: Kubernetes maintains EndpointSlices for it, which
 *  carry the Service's labels and kubernetes.io/service-name. */
export function desiredService(av: AppVersion, namespace: string): V1Service {
  if (av.spec.runtime.kind !== 'docker') throw new Error(`${av.metadata.name}: not a docker runtime`);
  const port = av.spec.runtime.docker.containerPort;
  const name = objectName(av.metadata.name);
  const svc: V1Service = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      name,
      namespace,
      labels: labelsFor(av),
      annotations: { [APP_ANNOTATION]: av.spec.app },
      ownerReferences: [ownerReference(av)],
    },
    spec: {
      clusterIP: 'None',
      selector: { [APPVERSION_LABEL]: name },
      ports: [{ name: 'http', port, targetPort: port, protocol: 'TCP' }],
      publishNotReadyAddresses: false,
    },
  };
  svc.metadata!.annotations![HASH_ANNOTATION] = hashOf(svc);
  return svc;
}

function hashOf(o: { metadata?: object; spec?: object }): string {
  return createHash('sha256').update(JSON.stringify({ m: o.metadata, s: o.spec })).digest('hex').slice(0, 16);
}

/** Ready endpoints of an AppVersion's Service from the EndpointSlices in the cache. Endpoints without
 *  conditions.ready are treated as ready (the API's documented meaning of an absent value), terminating
 *  ones are not. */
export function readyEndpoints(slices: readonly V1EndpointSlice[], serviceName: string, defaultPort: number): Endpoint[] {
  const seen = new Set<string>();
  const out: Endpoint[] = [];
  for (const s of slices) {
    if (s.metadata?.labels?.[SERVICE_NAME_LABEL] !== serviceName) continue;
    if (s.addressType && s.addressType !== 'IPv4' && s.addressType !== 'IPv6') continue;
    const port = s.ports?.find((p) => p.name === 'http')?.port ?? s.ports?.[0]?.port ?? defaultPort;
    for (const e of s.endpoints ?? []) {
      const c = e.conditions ?? {};
      if (c.ready === false || c.terminating === true) continue;
      for (const host of e.addresses ?? []) {
        const key = `${host}:${port}`;
        if (seen.has(key)) continue;
        seen.add(key);
        out.push({ host, port });
      }
    }
  }
  return out.sort((a, b) => a.host.localeCompare(b.host) || a.port - b.port);
}

/** The hash annotation of an existing object ('' when absent). */
export function currentHash(o: { metadata?: { annotations?: Record<string, string> } } | undefined): string {
  return o?.metadata?.annotations?.[HASH_ANNOTATION] ?? '';
}

/** Create or replace the Deployment when it is missing or differs. Returns what it did. */
export async function applyDeployment(api: AppsV1Api, desired: V1Deployment, existing: V1Deployment | undefined): Promise<'created' | 'updated' | 'unchanged'> {
  const ns = desired.metadata!.namespace!;
  const name = desired.metadata!.name!;
  if (!existing) {
    try {
      await api.createNamespacedDeployment({ namespace: ns, body: desired });
      return 'created';
    } catch (err) {
      if (httpStatus(err) !== 409) throw err;
      existing = await api.readNamespacedDeployment({ name, namespace: ns });
    }
  }
  if (currentHash(existing) === currentHash(desired)) return 'unchanged';
  const body: V1Deployment = { ...desired, metadata: { ...desired.metadata, resourceVersion: existing!.metadata?.resourceVersion } };
  await api.replaceNamespacedDeployment({ name, namespace: ns, body });
  return 'updated';
}

export async function applyService(api: CoreV1Api, desired: V1Service, existing: V1Service | undefined): Promise<'created' | 'updated' | 'unchanged'> {
  const ns = desired.metadata!.namespace!;
  const name = desired.metadata!.name!;
  if (!existing) {
    try {
      await api.createNamespacedService({ namespace: ns, body: desired });
      return 'created';
    } catch (err) {
      if (httpStatus(err) !== 409) throw err;
      existing = await api.readNamespacedService({ name, namespace: ns });
    }
  }
  if (currentHash(existing) === currentHash(desired)) return 'unchanged';
  // clusterIP is immutable once set; keep the existing value.
  const body: V1Service = {
    ...desired,
    metadata: { ...desired.metadata, resourceVersion: existing!.metadata?.resourceVersion },
    spec: { ...desired.spec, clusterIP: existing!.spec?.clusterIP ?? desired.spec?.clusterIP },
  };
  await api.replaceNamespacedService({ name, namespace: ns, body });
  return 'updated';
}
