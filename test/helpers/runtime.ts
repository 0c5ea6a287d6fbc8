// Build validated-looking AppVersion objects for runtime tests without going through the loader.

import http from 'node:http';
import type { AppVersion, DockerRuntime, HealthCheck, ProcessRuntime, Runtime } from '../../controller/appversion.js';

export const TEST_HEALTH: HealthCheck = { path: '/healthz', intervalMs: 100, timeoutMs: 1000, startupTimeoutMs: 10_000 };

export function dockerRuntime(over: Partial<DockerRuntime> = {}): Runtime {
  return {
    kind: 'docker',
    docker: {
      image: 'molt-test-app',
      tag: 'v1',
      containerPort: 8080,
      replicas: 1,
      env: {},
      volumes: [],
      binds: [],
      volumesFrom: [],
      portBindings: [],
      links: [],
      privileged: false,
      checkForNewImages: false,
      imagePollIntervalMs: 60_000,
      ...over,
    },
  };
}

export function processRuntime(over: Partial<ProcessRuntime> & { command: string }): Runtime {
  return { kind: 'process', process: { args: [], env: {}, replicas: 1, ...over } };
}

export function makeAppVersion(name: string, runtime: Runtime, opts: { app?: string; version?: string; source?: string } = {}): AppVersion {
  return {
    apiVersion: 'molt.dev/v1alpha1',
    kind: 'AppVersion',
    metadata: { name },
    source: opts.source ?? 'api',
    specHash: `hash-${name}`,
    spec: {
      app: opts.app ?? 'shop',
      version: opts.version ?? '1.0.0',
      hosts: ['shop.local'],
      default: false,
      transition: { mode: 'INSTANT', sessionTimeoutSeconds: 3600, duplicateUnsafeMethods: false, maxDuplicateBodyBytes: 1 << 20 },
      failurePolicy: {
        consecutiveFailures: 1,
        errorRateThreshold: 1,
        windowSeconds: 60,
        minRequests: 10,
        failureStatusCodes: [500, 502, 503, 504],
        connectTimeoutMs: 1000,
        responseTimeoutMs: 5000,
      },
      healthCheck: TEST_HEALTH,
      keepFailed: false,
      versionCookie: 'molt-version-shop',
      bucketCookie: 'molt-bucket-shop',
      runtime,
    },
  };
}

/** Poll fn until it returns a non-undefined value or the deadline passes (then throw with `what`). */
export async function waitFor<T>(fn: () => Promise<T | undefined>, what: string, timeoutMs = 15_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      lastErr = err;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}${lastErr ? `: ${(lastErr as Error).message}` : ''}`);
}

/** One GET with Connection: close; loopback only. */
export function httpGet(endpoint: { host: string; port: number }, path = '/', timeoutMs = 3000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: endpoint.host, port: endpoint.port, path, agent: false, headers: { Connection: 'close' }, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path} timed out after ${timeoutMs}ms`)));
    req.on('error', reject);
  });
}
