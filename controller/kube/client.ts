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
  setHeaderOptions,
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

export function makeClients(kc: KubeConfig): KubeClients {
  return {
    custom: kc.makeApiClient(CustomObjectsApi),
    apps: kc.makeApiClient(AppsV1Api),
    core: kc.makeApiClient(CoreV1Api),
    coordination: kc.makeApiClient(CoordinationV1Api),
    discovery: kc.makeApiClient(DiscoveryV1Api),
  };
}

/** Options that make a generated patch call send a JSON merge patch (the default is a JSON patch). */
export const MERGE_PATCH = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

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
