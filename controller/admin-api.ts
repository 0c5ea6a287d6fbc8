// Admin REST API of the controller: status, AppVersion CRUD, promote/rollback, Prometheus metrics and the
// thesis-compatible /configuration/cluster endpoints. Plain node:http (not a hot path).
//
// Security model: bound to loopback by default. With a token, every mutating call needs
// `Authorization: Bearer <token>`, and so do GETs from non-loopback clients (/healthz stays open).
// checkAdminBind refuses a non-loopback bind without a token. Mutations carrying a browser Origin from a
// different host are refused (cross-site requests from a web page), and without a token the Host header
// must name a loopback address (DNS rebinding). Nothing here runs commands or proxies the Docker socket.

import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import type { Logger } from 'pino';
import { parseAllDocuments } from 'yaml';
import type { AppVersion } from './appversion.js';
import type { ControllerApi } from './controller-api.js';
import { isLoopbackHost } from './net-util.js';
import { MoltError, MoltValidationErrors, type MoltErrorCode } from '../common/errors.js';
import type { MoltMetrics } from './metrics.js';
import { appVersionToThesisCluster, thesisClusterToRaw } from './thesis.js';

export const MAX_BODY_BYTES = 1024 * 1024;
const JSON_TYPE = 'application/json; charset=utf-8';
const TEXT_TYPE = 'text/plain; charset=utf-8';
/** Source recorded for resources applied through this API. */
export const API_SOURCE = 'api';
export const THESIS_SOURCE = 'thesis-api';

// ---------------------------------------------------------------------------------------------------------
// Thesis uuid -> AppVersion name map

/** uuid -> AppVersion name of clusters added through PUT /configuration/cluster. In memory, persisted as
 *  JSON (atomic tmp + rename) when a file is given, so thesis clients keep their ids across restarts. */
export class ThesisStore {
  readonly file: string | undefined;
  readonly #byUuid = new Map<string, string>();

  constructor(file?: string) {
    this.file = file;
    if (!file) return;
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw new MoltError('MOLT_ERR_CONFIG_FILE', `cannot read thesis cluster map: ${(err as Error).message}`, { file }, { cause: err });
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw new MoltError('MOLT_ERR_CONFIG_FILE', `thesis cluster map is not valid JSON: ${(err as Error).message}`, { file }, { cause: err });
    }
    const clusters = (parsed as { clusters?: unknown } | null)?.clusters;
    if (clusters && typeof clusters === 'object') {
      for (const [uuid, name] of Object.entries(clusters)) if (typeof name === 'string') this.#byUuid.set(uuid, name);
    }
  }

  get(uuid: string): string | undefined {
    return this.#byUuid.get(uuid);
  }

  /** uuids in insertion order. */
  entries(): Array<[uuid: string, name: string]> {
    return [...this.#byUuid];
  }

  set(uuid: string, name: string): void {
    this.#byUuid.set(uuid, name);
    this.#persist();
  }

  delete(uuid: string): boolean {
    const had = this.#byUuid.delete(uuid);
    if (had) this.#persist();
    return had;
  }

  #persist(): void {
    if (!this.file) return;
    // Small file, rare writes: synchronous keeps writes ordered without a queue.
    fs.mkdirSync(path.dirname(this.file), { recursive: true });
    const tmp = `${this.file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify({ clusters: Object.fromEntries(this.#byUuid) }, null, 2) + '\n');
    fs.renameSync(tmp, this.file);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Bind check

export { isLoopbackHost };

/** Refuse to expose the admin API beyond loopback without a token. */
export function checkAdminBind(host: string, token: string | undefined): void {
  if (isLoopbackHost(host)) return;
  if (token) return;
  throw new MoltError(
    'MOLT_ERR_USAGE',
    `refusing to bind the admin API to ${host} without a token: set an admin token or bind to 127.0.0.1`,
  );
}

// ---------------------------------------------------------------------------------------------------------
// Errors

export function httpStatusFor(code: string): number {
  switch (code) {
    case 'MOLT_ERR_YAML_SYNTAX':
    case 'MOLT_ERR_VALIDATION':
    case 'MOLT_ERR_BAD_REQUEST':
    case 'MOLT_ERR_USAGE':
    case 'MOLT_ERR_CONFIG_FILE':
      return 400;
    case 'MOLT_ERR_UNAUTHORIZED':
      return 401;
    case 'MOLT_ERR_FORBIDDEN':
      return 403;
    case 'MOLT_ERR_NOT_FOUND':
      return 404;
    case 'MOLT_ERR_CONFLICT':
    case 'MOLT_ERR_DUPLICATE_NAME':
    case 'MOLT_ERR_NOT_READY':
      return 409;
    default:
      return 500;
  }
}

/** An HTTP-level failure (route, method, size) that is not a controller error. */
class HttpError extends MoltError {
  readonly status: number;
  readonly headers: Record<string, string>;
  constructor(status: number, code: MoltErrorCode, message: string, headers: Record<string, string> = {}) {
    super(code, message);
    this.status = status;
    this.headers = headers;
  }
}

interface ErrorBody {
  error: { code: string; message: string; details?: unknown };
}

function errorResponse(err: unknown): { status: number; body: ErrorBody; headers: Record<string, string> } {
  if (err instanceof HttpError) {
    return { status: err.status, headers: err.headers, body: { error: { code: err.code, message: err.message } } };
  }
  if (err instanceof MoltValidationErrors) {
    return {
      status: 400,
      headers: {},
      body: {
        error: {
          code: err.code,
          message: err.message,
          details: err.errors.map((e) => ({ code: e.code, message: e.toString(), location: e.location })),
        },
      },
    };
  }
  if (err instanceof MoltError) {
    const hasLocation = Object.keys(err.location).length > 0;
    return {
      status: httpStatusFor(err.code),
      headers: {},
      body: { error: { code: err.code, message: err.toString(), ...(hasLocation ? { details: { location: err.location } } : {}) } },
    };
  }
  // Unexpected: logged by the caller; never leak internals.
  return { status: 500, headers: {}, body: { error: { code: 'MOLT_ERR_INTERNAL', message: 'internal error' } } };
}

// ---------------------------------------------------------------------------------------------------------
// Server

export interface AdminServerOptions {
  controller: ControllerApi;
  metrics: MoltMetrics;
  /** Bearer token for mutating calls (and for GETs from non-loopback clients). */
  token?: string;
  log?: Logger;
  /** uuid map for /configuration/cluster. When omitted: a ThesisStore persisted to thesisStateFile, or an
   *  in-memory one. */
  thesis?: ThesisStore;
  /** JSON file (in the state dir) for the uuid map when `thesis` is not given. */
  thesisStateFile?: string;
}

interface Reply {
  status: number;
  body?: unknown;
  /** Send `body` as text/plain instead of JSON. */
  text?: boolean;
  contentType?: string;
  headers?: Record<string, string>;
}

interface Ctx {
  req: http.IncomingMessage;
  url: URL;
  params: string[];
  body: () => Promise<Buffer>;
}

type Handler = (ctx: Ctx) => Promise<Reply> | Reply;

interface Route {
  pattern: RegExp;
  methods: Partial<Record<string, Handler>>;
  allow: string;
}

export function createAdminServer(opts: AdminServerOptions): http.Server {
  const { controller, metrics, log } = opts;
  const thesis = opts.thesis ?? new ThesisStore(opts.thesisStateFile);
  const tokenDigest = opts.token ? sha256(opts.token) : undefined;

  const routes: Route[] = buildRoutes({ controller, metrics, thesis });

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      // handle() answers every error itself; this only fires if writing the answer failed.
      log?.error({ err }, 'admin API: failed to answer request');
      res.destroy();
    });
  });

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    let reply: Reply;
    try {
      const url = new URL(req.url ?? '/', 'http://admin.invalid');
      const { route, params } = match(routes, url.pathname);
      if (!route) throw new HttpError(404, 'MOLT_ERR_NOT_FOUND', `no route for ${url.pathname}`);
      const handler = route.methods[method === 'HEAD' ? 'GET' : method];
      if (!handler) throw new HttpError(405, 'MOLT_ERR_BAD_REQUEST', `method ${method} not allowed on ${url.pathname}`, { Allow: route.allow });
      authorize(req, method, url.pathname, tokenDigest);
      reply = await handler({ req, url, params, body: () => readBody(req) });
      if (method !== 'GET' && method !== 'HEAD') log?.info({ method, path: url.pathname, status: reply.status }, 'admin API call');
    } catch (err) {
      const { status, body, headers } = errorResponse(err);
      if (status >= 500) log?.error({ err, method, url: req.url }, 'admin API request failed');
      else log?.debug({ method, url: req.url, status, code: body.error.code }, 'admin API request rejected');
      reply = { status, body, headers };
      if (status === 413) reply.headers = { ...reply.headers, Connection: 'close' };
    }
    send(req, res, reply);
  }

  return server;
}

function buildRoutes(deps: {
  controller: ControllerApi;
  metrics: MoltMetrics;
  thesis: ThesisStore;
}): Route[] {
  const { controller, metrics, thesis } = deps;
  const route = (pattern: RegExp, methods: Partial<Record<string, Handler>>): Route => ({
    pattern,
    methods,
    allow: [...Object.keys(methods), ...(methods.GET ? ['HEAD'] : [])].join(', '),
  });

  const thesisCluster = (uuid: string): object => {
    const name = thesis.get(uuid);
    const found = name === undefined ? undefined : controller.getResource(name);
    if (!name || !found) throw new MoltError('MOLT_ERR_NOT_FOUND', `cluster ${uuid} not found`);
    return appVersionToThesisCluster(found.resource as AppVersion, uuid, found.status?.endpoints);
  };

  return [
    route(/^\/healthz$/, { GET: () => ({ status: 200, body: 'ok', text: true }) }),
    route(/^\/metrics$/, {
      GET: async () => ({ status: 200, body: await metrics.text(), contentType: metrics.contentType }),
    }),
    route(/^\/status$/, { GET: () => ({ status: 200, body: controller.status() }) }),
    route(/^\/apps$/, { GET: () => ({ status: 200, body: controller.status().apps }) }),
    route(/^\/appversions\/([^/]+)$/, {
      GET: ({ params }) => {
        const name = params[0]!;
        const found = controller.getResource(name);
        if (!found) throw new MoltError('MOLT_ERR_NOT_FOUND', `AppVersion ${name} not found`);
        return { status: 200, body: { resource: found.resource, status: found.status ?? null } };
      },
      PUT: async ({ params, req, body }) => {
        const name = params[0]!;
        const raw = parseResourceBody(await body(), req.headers['content-type']);
        setResourceName(raw, name);
        const result = await controller.applyResource(raw, API_SOURCE);
        const status = controller.getResource(result.name)?.status ?? null;
        return { status: result.created ? 201 : 200, body: { name: result.name, created: result.created, status } };
      },
      DELETE: async ({ params }) => {
        const name = params[0]!;
        await controller.deleteResource(name);
        return { status: 202, body: { name, deleted: true } };
      },
    }),
    route(/^\/apps\/([^/]+)\/promote$/, {
      POST: async ({ params, body }) => {
        const version = parsePromoteBody(await body());
        return { status: 200, body: await controller.promote(params[0]!, version) };
      },
    }),
    route(/^\/apps\/([^/]+)\/rollback$/, {
      POST: async ({ params, body }) => {
        await body(); // enforce the size limit and drain; no fields
        return { status: 200, body: await controller.rollback(params[0]!) };
      },
    }),
    route(/^\/configuration\/cluster\/?$/, {
      GET: () => {
        const list: object[] = [];
        for (const [uuid, name] of thesis.entries()) {
          const found = controller.getResource(name);
          if (found) list.push(appVersionToThesisCluster(found.resource as AppVersion, uuid, found.status?.endpoints));
        }
        return { status: 200, body: list };
      },
      PUT: async ({ body, url }) => {
        const buf = await body();
        let parsed: unknown;
        try {
          parsed = JSON.parse(buf.toString('utf8'));
        } catch (err) {
          throw new MoltError('MOLT_ERR_BAD_REQUEST', `request body is not valid JSON: ${(err as Error).message}`);
        }
        const uuid = randomUUID();
        const raw = thesisClusterToRaw(parsed, uuid, url.searchParams.get('app') ?? undefined);
        const result = await controller.applyResource(raw, THESIS_SOURCE);
        thesis.set(uuid, result.name);
        return { status: 202, body: uuid, text: true };
      },
    }),
    route(/^\/configuration\/cluster\/([^/]+)$/, {
      GET: ({ params }) => ({ status: 200, body: thesisCluster(params[0]!) }),
      DELETE: async ({ params }) => {
        const uuid = params[0]!;
        const name = thesis.get(uuid);
        if (!name) throw new MoltError('MOLT_ERR_NOT_FOUND', `cluster ${uuid} not found`);
        try {
          await controller.deleteResource(name);
        } catch (err) {
          // Already gone (deleted through /appversions): forget the id, answer 404 like any unknown id.
          if (err instanceof MoltError && err.code === 'MOLT_ERR_NOT_FOUND') thesis.delete(uuid);
          throw err;
        }
        thesis.delete(uuid);
        return { status: 202, body: '', text: true };
      },
    }),
  ];
}

function match(routes: Route[], pathname: string): { route?: Route; params: string[] } {
  for (const route of routes) {
    const m = route.pattern.exec(pathname);
    if (!m) continue;
    const params = m.slice(1).map((p) => {
      try {
        return decodeURIComponent(p);
      } catch {
        throw new HttpError(400, 'MOLT_ERR_BAD_REQUEST', `bad percent-encoding in ${pathname}`);
      }
    });
    return { route, params };
  }
  return { params: [] };
}

// ---------------------------------------------------------------------------------------------------------
// Auth

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

function authorize(req: http.IncomingMessage, method: string, pathname: string, tokenDigest: Buffer | undefined): void {
  const mutating = method !== 'GET' && method !== 'HEAD';
  if (mutating) {
    // A web page the operator visits must not be able to drive the API (simple cross-site POSTs).
    const origin = req.headers.origin;
    if (origin !== undefined && !sameHost(origin, req.headers.host)) {
      throw new HttpError(403, 'MOLT_ERR_UNAUTHORIZED', 'cross-origin requests are not allowed');
    }
  }
  if (!tokenDigest) {
    // No token means loopback only (checkAdminBind); refuse foreign Host names (DNS rebinding).
    const host = hostname(req.headers.host);
    if (host !== undefined && !isLoopbackHost(host)) {
      throw new HttpError(403, 'MOLT_ERR_UNAUTHORIZED', `Host ${host} is not allowed without an admin token`);
    }
    return;
  }
  if (pathname === '/healthz') return;
  if (!mutating && isLoopbackHost(req.socket.remoteAddress ?? '')) return;
  const header = req.headers.authorization ?? '';
  const m = /^Bearer[ \t]+(.+)$/i.exec(header);
  // Compare fixed-length digests: constant time, and the token length does not leak either.
  if (!m || !timingSafeEqual(sha256(m[1]!.trim()), tokenDigest)) {
    throw new HttpError(401, 'MOLT_ERR_UNAUTHORIZED', 'missing or wrong bearer token', { 'WWW-Authenticate': 'Bearer' });
  }
}

function hostname(hostHeader: string | undefined): string | undefined {
  if (!hostHeader) return undefined;
  try {
    return new URL(`http://${hostHeader}`).hostname;
  } catch {
    return hostHeader;
  }
}

function sameHost(origin: string, hostHeader: string | undefined): boolean {
  try {
    return hostHeader !== undefined && new URL(origin).host === hostHeader.toLowerCase();
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Bodies

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > MAX_BODY_BYTES) {
    req.resume();
    return Promise.reject(tooLarge());
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on('data', (chunk: Buffer) => {
      if (done) return;
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        done = true;
        chunks.length = 0;
        reject(tooLarge()); // keep reading (discarding) so the client can read our 413
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (!done) resolve(Buffer.concat(chunks, size));
    });
    req.on('error', (err) => {
      if (!done) reject(new HttpError(400, 'MOLT_ERR_BAD_REQUEST', `reading request body: ${err.message}`));
      done = true;
    });
  });
}

function tooLarge(): HttpError {
  return new HttpError(413, 'MOLT_ERR_BAD_REQUEST', `request body exceeds ${MAX_BODY_BYTES} bytes`);
}

/** A resource from a JSON or YAML body (one document). */
function parseResourceBody(buf: Buffer, contentType: string | undefined): Record<string, unknown> {
  const text = buf.toString('utf8');
  const type = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  let value: unknown;
  if (type === 'application/json' || type.endsWith('+json')) {
    try {
      value = JSON.parse(text);
    } catch (err) {
      throw new MoltError('MOLT_ERR_BAD_REQUEST', `request body is not valid JSON: ${(err as Error).message}`, { file: API_SOURCE });
    }
  } else {
    // YAML (a JSON superset) for application/yaml, text/yaml, or no/unknown content type.
    const docs = parseAllDocuments(text, { prettyErrors: true });
    if (!Array.isArray(docs)) throw new MoltError('MOLT_ERR_BAD_REQUEST', 'request body is empty');
    if (docs.length !== 1) throw new MoltError('MOLT_ERR_BAD_REQUEST', `expected one YAML document, got ${docs.length}`);
    const doc = docs[0]!;
    const e = doc.errors[0];
    if (e) {
      const pos = e.linePos?.[0];
      throw new MoltError('MOLT_ERR_YAML_SYNTAX', e.message.split('\n')[0]!, { file: API_SOURCE, line: pos?.line, column: pos?.col });
    }
    value = doc.toJS();
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new MoltError('MOLT_ERR_BAD_REQUEST', 'request body must be one AppVersion object');
  }
  return value as Record<string, unknown>;
}

function setResourceName(raw: Record<string, unknown>, name: string): void {
  const meta = raw.metadata;
  if (meta === undefined || meta === null) {
    raw.metadata = { name };
    return;
  }
  if (typeof meta !== 'object' || Array.isArray(meta)) {
    throw new MoltError('MOLT_ERR_VALIDATION', 'metadata must be an object', { file: API_SOURCE, path: 'metadata' });
  }
  const m = meta as Record<string, unknown>;
  if (m.name === undefined || m.name === null || m.name === '') m.name = name;
  else if (m.name !== name) {
    throw new MoltError('MOLT_ERR_BAD_REQUEST', `metadata.name "${String(m.name)}" does not match the URL name "${name}"`, {
      file: API_SOURCE,
      path: 'metadata.name',
    });
  }
}

function parsePromoteBody(buf: Buffer): string | undefined {
  const text = buf.toString('utf8').trim();
  if (!text) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new MoltError('MOLT_ERR_BAD_REQUEST', `request body is not valid JSON: ${(err as Error).message}`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new MoltError('MOLT_ERR_BAD_REQUEST', 'body must be {"version": "..."}');
  const version = (v as { version?: unknown }).version;
  if (version === undefined || version === null) return undefined;
  if (typeof version !== 'string' || !version) throw new MoltError('MOLT_ERR_BAD_REQUEST', 'version must be a non-empty string', { path: 'version' });
  return version;
}

// ---------------------------------------------------------------------------------------------------------
// Responses

function send(req: http.IncomingMessage, res: http.ServerResponse, reply: Reply): void {
  let payload: string;
  let type: string;
  if (reply.contentType !== undefined) {
    payload = String(reply.body ?? '');
    type = reply.contentType;
  } else if (reply.text) {
    payload = String(reply.body ?? '');
    type = TEXT_TYPE;
  } else {
    payload = JSON.stringify(reply.body ?? null) + '\n';
    type = JSON_TYPE;
  }
  const headers: Record<string, string | number> = {
    'Content-Type': type,
    'Content-Length': Buffer.byteLength(payload),
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
    ...reply.headers,
  };
  res.writeHead(reply.status, headers);
  res.end(req.method === 'HEAD' ? undefined : payload);
}
