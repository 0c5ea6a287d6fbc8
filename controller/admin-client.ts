// The CLI's client for the admin API (controller/admin-api.ts). fetch-based; every failure becomes a
// MoltError whose code comes from the API's JSON error, so the CLI matches on codes like everywhere else.

import type { Har } from '../common/har.js';
import type { AppStatus, ControllerStatus, VersionStatus } from './controller-api.js';
import { MoltError, type MoltErrorCode } from '../common/errors.js';

const KNOWN_CODES: ReadonlySet<string> = new Set<MoltErrorCode>([
  'MOLT_ERR_YAML_SYNTAX',
  'MOLT_ERR_VALIDATION',
  'MOLT_ERR_DUPLICATE_NAME',
  'MOLT_ERR_CONFLICT',
  'MOLT_ERR_NOT_FOUND',
  'MOLT_ERR_UNAUTHORIZED',
  'MOLT_ERR_BAD_REQUEST',
  'MOLT_ERR_DOCKER',
  'MOLT_ERR_PROCESS',
  'MOLT_ERR_NOT_READY',
  'MOLT_ERR_PROTOCOL',
  'MOLT_ERR_CONFIG_FILE',
  'MOLT_ERR_USAGE',
  'MOLT_ERR_KUBERNETES',
]);

/** An error answered by the admin API: the MoltError code it sent, plus the HTTP status and details. */
export class AdminApiError extends MoltError {
  readonly status: number;
  readonly details: unknown;
  /** The code as sent by the server (may be outside the catalogue, e.g. MOLT_ERR_INTERNAL on a 500). */
  readonly remoteCode: string;
  constructor(code: MoltErrorCode, message: string, status: number, remoteCode: string, details?: unknown) {
    super(code, message);
    this.name = 'AdminApiError';
    this.status = status;
    this.remoteCode = remoteCode;
    this.details = details;
  }
}

export interface ApplyResult {
  name: string;
  created: boolean;
  status: VersionStatus | null;
}

export interface AdminClientOptions {
  /** Per-request timeout. Default 30 s (promote/rollback wait for the sidecar's ack). */
  timeoutMs?: number;
}

export class AdminClient {
  readonly baseUrl: string;
  readonly #token: string | undefined;
  readonly #timeoutMs: number;

  constructor(baseUrl: string, token?: string, opts: AdminClientOptions = {}) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.#token = token || undefined;
    this.#timeoutMs = opts.timeoutMs ?? 30_000;
  }

  status(): Promise<ControllerStatus> {
    return this.#request('GET', '/status') as Promise<ControllerStatus>;
  }

  apps(): Promise<AppStatus[]> {
    return this.#request('GET', '/apps') as Promise<AppStatus[]>;
  }

  get(name: string): Promise<{ resource: unknown; status: VersionStatus | null }> {
    return this.#request('GET', `/appversions/${encodeURIComponent(name)}`) as Promise<{ resource: unknown; status: VersionStatus | null }>;
  }

  /** Create or update an AppVersion from YAML (or JSON) text. */
  apply(name: string, yamlText: string): Promise<ApplyResult> {
    return this.#request('PUT', `/appversions/${encodeURIComponent(name)}`, {
      body: yamlText,
      contentType: 'application/yaml',
    }) as Promise<ApplyResult>;
  }

  async delete(name: string): Promise<void> {
    await this.#request('DELETE', `/appversions/${encodeURIComponent(name)}`);
  }

  promote(app: string, version?: string, opts: { full?: boolean } = {}): Promise<VersionStatus> {
    return this.#request('POST', `/apps/${encodeURIComponent(app)}/promote`, {
      body: JSON.stringify({ ...(version === undefined ? {} : { version }), ...(opts.full ? { full: true } : {}) }),
      contentType: 'application/json',
    }) as Promise<VersionStatus>;
  }

  /** The recorded traffic of an app as HAR 1.2 (redacted). */
  trafficHar(app: string, limit = 500): Promise<Har> {
    return this.#request('GET', `/apps/${encodeURIComponent(app)}/traffic.har?limit=${limit}`) as Promise<Har>;
  }

  rollback(app: string): Promise<VersionStatus> {
    return this.#request('POST', `/apps/${encodeURIComponent(app)}/rollback`) as Promise<VersionStatus>;
  }

  async #request(method: string, path: string, opts: { body?: string; contentType?: string } = {}): Promise<unknown> {
    const headers: Record<string, string> = { Accept: 'application/json' };
    if (opts.contentType) headers['Content-Type'] = opts.contentType;
    if (this.#token) headers.Authorization = `Bearer ${this.#token}`;
    let res: Response;
    try {
      res = await fetch(this.baseUrl + path, {
        method,
        headers,
        body: opts.body,
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
    } catch (err) {
      if ((err as Error).name === 'TimeoutError') {
        throw new MoltError('MOLT_ERR_NOT_READY', `molt admin API at ${this.baseUrl} did not answer ${method} ${path} within ${this.#timeoutMs} ms`, {}, { cause: err });
      }
      throw new MoltError('MOLT_ERR_NOT_READY', `cannot reach molt admin API at ${this.baseUrl}: is \`molt up\` running?`, {}, { cause: err });
    }
    const text = await res.text();
    if (res.ok) {
      if (!text) return undefined;
      const type = res.headers.get('content-type') ?? '';
      if (!type.includes('json')) return text;
      try {
        return JSON.parse(text);
      } catch (err) {
        throw new MoltError('MOLT_ERR_PROTOCOL', `admin API answered ${method} ${path} with invalid JSON`, {}, { cause: err });
      }
    }
    throw toError(res.status, text, method, path);
  }
}

function toError(status: number, text: string, method: string, path: string): AdminApiError {
  let remote: { code?: unknown; message?: unknown; details?: unknown } | undefined;
  try {
    remote = (JSON.parse(text) as { error?: typeof remote }).error;
  } catch {
    remote = undefined;
  }
  const remoteCode = typeof remote?.code === 'string' ? remote.code : '';
  const code: MoltErrorCode = KNOWN_CODES.has(remoteCode) ? (remoteCode as MoltErrorCode) : codeForStatus(status);
  const message =
    typeof remote?.message === 'string' && remote.message ? remote.message : `admin API answered ${method} ${path} with HTTP ${status}`;
  return new AdminApiError(code, message, status, remoteCode || code, remote?.details);
}

function codeForStatus(status: number): MoltErrorCode {
  if (status === 401 || status === 403) return 'MOLT_ERR_UNAUTHORIZED';
  if (status === 404) return 'MOLT_ERR_NOT_FOUND';
  if (status === 409) return 'MOLT_ERR_CONFLICT';
  if (status >= 400 && status < 500) return 'MOLT_ERR_BAD_REQUEST';
  return 'MOLT_ERR_PROTOCOL';
}
