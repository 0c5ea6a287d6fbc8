// KubeConfig loading and the typed API clients Kubernetes mode uses.

import fs from 'node:fs';
import {
  AppsV1Api,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  DiscoveryV1Api,
  KubeConfig,
  PatchStrategy,
  ServerConfiguration,
  Observable,
  createConfiguration,
  setHeaderOptions,
  type ConfigurationOptions,
  type Middleware,
} from '@kubernetes/client-node';
import { MoltError } from '../../common/errors.js';

export const GROUP = 'molt.dev';
export const VERSION = 'v1alpha1';
export const PLURAL = 'appversions';
export const APPVERSIONS_PATH = (ns: string) => `/apis/${GROUP}/${VERSION}/namespaces/${encodeURIComponent(ns)}/${PLURAL}`;
export const DEPLOYMENTS_PATH = (ns: string) => `/apis/apps/v1/namespaces/${encodeURIComponent(ns)}/deployments`;
export const ENDPOINTSLICES_PATH = (ns: string) => `/apis/discovery.k8s.io/v1/namespaces/${encodeURIComponent(ns)}/endpointslices`;

/** Label on everything molt creates; the Deployment and EndpointSlice informers select on it. */
export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const MANAGED_BY = 'molt';
/** Label naming the owning AppVersion's object name (see objectName()); also the pod selector. */
export const APPVERSION_LABEL = 'molt.dev/appversion';
/** Annotation carrying the raw app name (label values are too restricted for arbitrary app names). */
export const APP_ANNOTATION = 'molt.dev/app';

const SA_NAMESPACE_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

/** --kubeconfig FILE, else $KUBECONFIG / ~/.kube/config, else the in-cluster service account. */
export function loadKubeConfig(file?: string): KubeConfig {
  const kc = new KubeConfig();
  try {
    if (file) kc.loadFromFile(file);
    else kc.loadFromDefault();
  } catch (err) {
    throw new MoltError('MOLT_ERR_KUBERNETES', `cannot load kubeconfig${file ? ` ${file}` : ''}: ${(err as Error).message}`, { file }, { cause: err });
  }
  if (!kc.getCurrentCluster()) {
    throw new MoltError('MOLT_ERR_KUBERNETES', 'no Kubernetes cluster configured (no kubeconfig and not running in a pod)', { file });
  }
  return kc;
}

/** --namespace, else the pod's own namespace, else the kubeconfig context's, else "default". */
export function resolveNamespace(kc: KubeConfig, flag?: string): string {
  if (flag) return flag;
  try {
    const ns = fs.readFileSync(SA_NAMESPACE_FILE, 'utf8').trim();
    if (ns) return ns;
  } catch {
    /* not in a pod */
  }
  const ctx = kc.getContextObject(kc.getCurrentContext());
  return ctx?.namespace || 'default';
}

export interface KubeClients {
  custom: CustomObjectsApi;
  apps: AppsV1Api;
  core: CoreV1Api;
  coordination: CoordinationV1Api;
  discovery: DiscoveryV1Api;
}

/**
 * What makes a set of clients "fenced": every request first asks allowed() (false: the request is never
 * sent and fails with NotLeaderError) and carries signal, so requests in flight are aborted the moment the
 * fence closes. The leader's writers are fenced by its leadership term (see LeaderElector.term()).
 */
export interface WriteFence {
  signal: AbortSignal;
  allowed(): boolean;
}

/** A write refused (or aborted) because this replica is no longer the leader that started it. */
export class NotLeaderError extends Error {
  readonly code = 'MOLT_NOT_LEADER';
  constructor(message = 'not the leader (lease lost): write fenced') {
    super(message);
    this.name = 'NotLeaderError';
  }
}

export function isNotLeader(err: unknown): boolean {
  if (err instanceof NotLeaderError) return true;
  // A fenced request aborted in flight surfaces as the fetch library's AbortError.
  const e = err as { name?: unknown; type?: unknown } | null;
  return !!e && (e.name === 'AbortError' || e.type === 'aborted');
}

export function makeClients(kc: KubeConfig, fence?: WriteFence): KubeClients {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new MoltError('MOLT_ERR_KUBERNETES', 'no Kubernetes cluster configured');
  const middleware: Middleware[] = [];
  if (fence) {
    middleware.push({
      pre: async (ctx) => {
        if (!fence.allowed() || fence.signal.aborted) throw new NotLeaderError();
        ctx.setSignal(fence.signal);
        return ctx;
      },
      post: async (ctx) => ctx,
    });
  }
  const config = createConfiguration({
    baseServer: new ServerConfiguration(cluster.server, {}),
    authMethods: { default: kc },
    promiseMiddleware: middleware,
  });
  return {
    custom: new CustomObjectsApi(config),
    apps: new AppsV1Api(config),
    core: new CoreV1Api(config),
    coordination: new CoordinationV1Api(config),
    discovery: new DiscoveryV1Api(config),
  };
}

/** Options that make a generated patch call send a JSON merge patch (the default is a JSON patch). */
export const MERGE_PATCH = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

/** Per-call options that make one request abortable (e.g. a lease renewal with a deadline). */
export function withSignal(signal: AbortSignal): ConfigurationOptions {
  return {
    middleware: [
      {
        pre: (ctx) => {
          ctx.setSignal(signal);
          return new Observable(Promise.resolve(ctx));
        },
        post: (ctx) => new Observable(Promise.resolve(ctx)),
      },
    ],
    middlewareMergeStrategy: 'append',
  };
}

/** HTTP status of an ApiException (or a watch error), undefined for other errors. */
export function httpStatus(err: unknown): number | undefined {
  const e = err as { code?: unknown; statusCode?: unknown } | null;
  if (e && typeof e.code === 'number') return e.code;
  if (e && typeof e.statusCode === 'number') return e.statusCode;
  return undefined;
}

/** One line for logs and status messages: the Status message from the body when there is one. */
export function describeError(err: unknown): string {
  const e = err as { code?: number; body?: unknown; message?: string } | null;
  if (e && typeof e.code === 'number') {
    let msg = '';
    try {
      const body = typeof e.body === 'string' ? JSON.parse(e.body) : e.body;
      msg = (body as { message?: string })?.message ?? '';
    } catch {
      msg = String(e.body ?? '');
    }
    return `HTTP ${e.code}${msg ? `: ${msg}` : ''}`;
  }
  return e?.message ?? String(err);
}
