// Admin REST API of the controller: status, AppVersion CRUD, promote/rollback, Prometheus metrics and the
// thesis-compatible /configuration/cluster endpoints. Plain node:http (not a hot path).
//
// Security model: bound to loopback by default. With a token, every mutating call needs
// `Authorization: Bearer <token>`, and so do GETs from non-loopback clients (/healthz stays open).
// checkAdminBind refuses a non-loopback bind without a token. Nothing here runs commands or proxies the
// Docker socket.
//
// Browsers (any request carrying Origin, Sec-Fetch-Site or the dashboard cookie — same-origin included) are
// held to stricter rules: every mutating call needs a dashboard session (POST /ui/login with the dashboard
// token: --admin-token, or one generated into the state dir; a generated one never enables bearer auth or a
// non-loopback bind), the bearer token does not count for them, and the Kubernetes-mode dashboard
// (readOnly) refuses them. Whether or not a token is set, a foreign Origin (CSRF) is refused on mutations and
// on /ui, and a non-loopback Host name is refused on connections to a loopback address (DNS rebinding) —
// without a token on every connection. Non-browser clients (curl, `molt`, thesis clients) keep the bearer
// rules above. Every mutation that passed these checks is an audit line in the log and the dashboard timeline.

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
import { DashboardAssets } from './dashboard/assets.js';
import { DashboardSessions, isBrowserRequest, type Session } from './dashboard/auth.js';
import { DashboardObserver, type ObserverMessage } from './dashboard/observer.js';
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
  /** The dashboard at /ui. */
  dashboard?: DashboardOptions;
}

export interface DashboardOptions {
  /** Login token for dashboard sessions. Default: `token`. Without either nobody can log in: the page is
   *  view-only (on loopback). Never used for bearer auth. */
  token?: string;
  /** Kubernetes mode: the page shows no actions and browser-originated mutations are refused. */
  readOnly?: boolean;
  /** Session lifetime (cookie Max-Age and server-side expiry). Default 12 h. */
  sessionTtlMs?: number;
  /** How often the controller status is sampled for the timeline and charts. Default 1000. */
  sampleIntervalMs?: number;
  /** Open event streams at most (further ones get 503). Default 32. */
  maxStreams?: number;
  /** Heartbeat comment interval on event streams. Default 15000. */
  heartbeatMs?: number;
}

interface Reply {
  status: number;
  body?: unknown;
  /** Send `body` as text/plain instead of JSON. */
  text?: boolean;
  contentType?: string;
  headers?: Record<string, string>;
  /** The handler wrote the response itself (event stream). */
  streamed?: boolean;
}

interface Ctx {
  req: http.IncomingMessage;
  res: http.ServerResponse;
  url: URL;
  params: string[];
  body: () => Promise<Buffer>;
  auth: AuthResult;
}

type Handler = (ctx: Ctx) => Promise<Reply> | Reply;

interface Route {
  pattern: RegExp;
  methods: Partial<Record<string, Handler>>;
  allow: string;
  /** Mutations on this route are audited as this action; the app comes from the handler's answer. */
  audit?: string;
}

/** The dashboard parts shared by the routes. */
interface Dashboard {
  sessions: DashboardSessions;
  observer: DashboardObserver;
  assets: DashboardAssets;
  readOnly: boolean;
  streams: Set<http.ServerResponse>;
  maxStreams: number;
  heartbeatMs: number;
  log: Logger | undefined;
}

export function createAdminServer(opts: AdminServerOptions): http.Server {
  const { controller, metrics, log } = opts;
  const thesis = opts.thesis ?? new ThesisStore(opts.thesisStateFile);
  const tokenDigest = opts.token ? sha256(opts.token) : undefined;
  const d = opts.dashboard ?? {};
  const dashboard: Dashboard = {
    sessions: new DashboardSessions({ token: d.token ?? opts.token, ttlMs: d.sessionTtlMs }),
    observer: new DashboardObserver({ controller, metrics, intervalMs: d.sampleIntervalMs }),
    assets: new DashboardAssets(),
    readOnly: d.readOnly ?? false,
    streams: new Set(),
    maxStreams: d.maxStreams ?? 32,
    heartbeatMs: d.heartbeatMs ?? 15000,
    log,
  };

  const routes: Route[] = [...buildRoutes({ controller, metrics, thesis }), ...dashboardRoutes(dashboard)];

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      // handle() answers every error itself; this only fires if writing the answer failed.
      log?.error({ err }, 'admin API: failed to answer request');
      res.destroy();
    });
  });
  server.once('listening', () => dashboard.observer.start());
  // Event streams never go idle: end them when the server closes, or close() would wait for them forever.
  const close = server.close.bind(server);
  server.close = ((cb?: (err?: Error) => void) => {
    dashboard.observer.stop();
    for (const res of dashboard.streams) res.end();
    dashboard.streams.clear();
    return close(cb);
  }) as typeof server.close;

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    let reply: Reply;
    let audit: { route: Route; auth: AuthResult; params: string[] } | undefined;
    try {
      const url = new URL(req.url ?? '/', 'http://admin.invalid');
      const { route, params } = match(routes, url.pathname);
      if (!route) throw new HttpError(404, 'MOLT_ERR_NOT_FOUND', `no route for ${url.pathname}`);
      const handler = route.methods[method === 'HEAD' ? 'GET' : method];
      if (!handler) throw new HttpError(405, 'MOLT_ERR_BAD_REQUEST', `method ${method} not allowed on ${url.pathname}`, { Allow: route.allow });
      const auth = authorize(req, method, url.pathname, { tokenDigest, sessions: dashboard.sessions, readOnly: dashboard.readOnly });
      const mutating = method !== 'GET' && method !== 'HEAD';
      if (mutating && route.audit) audit = { route, auth, params };
      reply = await handler({ req, res, url, params, body: () => readBody(req), auth });
      if (reply.streamed) return;
      if (mutating) log?.info({ method, path: url.pathname, status: reply.status }, 'admin API call');
    } catch (err) {
      const { status, body, headers } = errorResponse(err);
      if (status >= 500) log?.error({ err, method, url: req.url }, 'admin API request failed');
      else log?.debug({ method, url: req.url, status, code: body.error.code }, 'admin API request rejected');
      reply = { status, body, headers };
      if (status === 413) reply.headers = { ...reply.headers, Connection: 'close' };
    }
    if (audit) recordAudit(method, audit.route, audit.params, audit.auth, reply);
    send(req, res, reply);
  }

  /** Who did what, in the log and on the timeline. */
  function recordAudit(method: string, route: Route, params: string[], auth: AuthResult, reply: Reply): void {
    const ok = reply.status < 400;
    const b = reply.body as { app?: unknown; version?: unknown; name?: unknown; error?: { code?: string; message?: string } } | undefined;
    const target = params[0] ?? '';
    const st = (b as { status?: { app?: unknown } } | undefined)?.status;
    const app = typeof b?.app === 'string' ? b.app : typeof st?.app === 'string' ? st.app : route.audit === 'promote' || route.audit === 'rollback' ? target : '';
    const version = typeof b?.name === 'string' ? b.name : '';
    const verb = method === 'PUT' ? 'apply ' : method === 'DELETE' ? 'delete ' : '';
    // Under canary analysis a promote moves one step: say so (and where to).
    const a = (b as { analysis?: { state?: string; step?: number; steps?: number } } | undefined)?.analysis;
    const stepped = route.audit === 'promote' && ok && a && a.state !== 'Done' && a.step !== undefined && a.steps !== undefined;
    const what = `${verb}${route.audit}${stepped ? ` one step (now ${a!.step! + 1}/${a!.steps})` : ''} ${target}`.trim();
    const message = ok
      ? `${what}${typeof b?.version === 'string' ? ` → ${b.version}` : ''}: done`
      : `${what}: failed (${reply.status} ${b?.error?.code ?? ''})`;
    log?.info({ audit: { actor: auth.actor, via: auth.via, action: route.audit, target, status: reply.status } }, `audit: ${auth.actor}: ${message}`);
    dashboard.observer.record({ app, version, kind: 'audit', message, actor: auth.actor });
    void dashboard.observer.sample();
  }

  return server;
}

function buildRoutes(deps: {
  controller: ControllerApi;
  metrics: MoltMetrics;
  thesis: ThesisStore;
}): Route[] {
  const { controller, metrics, thesis } = deps;
  const route = (pattern: RegExp, methods: Partial<Record<string, Handler>>, audit?: string): Route => ({
    pattern,
    methods,
    allow: [...Object.keys(methods), ...(methods.GET ? ['HEAD'] : [])].join(', '),
    audit,
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
    }, 'appversion'),
    route(/^\/apps\/([^/]+)\/promote$/, {
      POST: async ({ params, body }) => {
        const { version, full } = parsePromoteBody(await body());
        return { status: 200, body: await controller.promote(params[0]!, version, { full }) };
      },
    }, 'promote'),
    route(/^\/apps\/([^/]+)\/traffic\.har$/, {
      // `molt traffic export`: the sidecar's recent recorded exchanges, redacted, as HAR 1.2.
      GET: async ({ params, url }) => {
        if (!controller.trafficHar) throw new MoltError('MOLT_ERR_NOT_FOUND', 'this controller has no recording sidecar');
        const raw = url.searchParams.get('limit') ?? '500';
        const limit = Number(raw);
        if (!Number.isInteger(limit) || limit < 1 || limit > 100_000) throw new MoltError('MOLT_ERR_BAD_REQUEST', `limit must be a whole number 1-100000, got "${raw}"`, { path: 'limit' });
        return { status: 200, body: await controller.trafficHar(params[0]!, limit) };
      },
    }),
    route(/^\/apps\/([^/]+)\/rollback$/, {
      POST: async ({ params, body }) => {
        await body(); // enforce the size limit and drain; no fields
        return { status: 200, body: await controller.rollback(params[0]!) };
      },
    }, 'rollback'),
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
    }, 'thesis cluster'),
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
    }, 'thesis cluster'),
  ];
}

// ---------------------------------------------------------------------------------------------------------
// Dashboard routes: the page and its assets, the event stream, login and logout

const HTML_CSP = [
  "default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "img-src 'self' data:",
  "base-uri 'none'", "form-action 'self'", "frame-ancestors 'none'",
].join('; ');

function dashboardRoutes(d: Dashboard): Route[] {
  const asset = (name: string): Reply => {
    const a = d.assets.get(name);
    if (!a) throw new HttpError(404, 'MOLT_ERR_NOT_FOUND', `no dashboard file ${name}`);
    const headers: Record<string, string> = { 'Referrer-Policy': 'no-referrer', 'X-Frame-Options': 'DENY' };
    if (name === '') headers['Content-Security-Policy'] = HTML_CSP;
    return { status: 200, body: a.body, contentType: a.type, headers };
  };
  const route = (pattern: RegExp, methods: Partial<Record<string, Handler>>): Route => ({
    pattern, methods, allow: [...Object.keys(methods), ...(methods.GET ? ['HEAD'] : [])].join(', '),
  });
  return [
    route(/^\/ui\/?$/, { GET: () => asset('') }),
    route(/^\/ui\/(app\.js|style\.css|vendor\/uplot\.esm\.js|vendor\/uplot\.css)$/, { GET: ({ params }) => asset(params[0]!) }),
    route(/^\/ui\/events$/, { GET: (ctx) => eventStream(d, ctx) }),
    route(/^\/ui\/login$/, {
      POST: async ({ req, body }) => {
        const remote = req.socket.remoteAddress ?? '';
        let token: unknown;
        try {
          token = (JSON.parse((await body()).toString('utf8')) as { token?: unknown } | null)?.token;
        } catch {
          throw new MoltError('MOLT_ERR_BAD_REQUEST', 'login body must be JSON: {"token": "..."}');
        }
        if (typeof token !== 'string' || token === '') throw new MoltError('MOLT_ERR_BAD_REQUEST', 'login body must be JSON: {"token": "..."}', { path: 'token' });
        const r = d.sessions.login(token, remote);
        if (!r.ok) {
          if (r.reason === 'no-token') throw new HttpError(403, 'MOLT_ERR_FORBIDDEN', 'dashboard login is not enabled on this server');
          d.log?.warn({ remote, reason: r.reason }, 'dashboard login failed');
          if (r.reason === 'rate-limited') {
            throw new HttpError(429, 'MOLT_ERR_UNAUTHORIZED', `too many failed logins from ${remote}: try again in ${r.retryAfterS} s`, { 'Retry-After': String(r.retryAfterS) });
          }
          throw new HttpError(401, 'MOLT_ERR_UNAUTHORIZED', 'wrong dashboard token');
        }
        d.log?.info({ remote, session: r.session.tag }, 'dashboard login');
        d.observer.record({ app: '', version: '', kind: 'audit', message: 'logged in', actor: actorOf(r.session) });
        return {
          status: 200,
          body: { loggedIn: true, expires: new Date(r.session.expires).toISOString(), session: r.session.tag, readOnly: d.readOnly },
          headers: { 'Set-Cookie': d.sessions.cookieFor(r.id) },
        };
      },
    }),
    route(/^\/ui\/logout$/, {
      POST: async ({ req, body }) => {
        await body();
        const s = d.sessions.logout(req);
        if (s) {
          d.log?.info({ remote: req.socket.remoteAddress, session: s.tag }, 'dashboard logout');
          d.observer.record({ app: '', version: '', kind: 'audit', message: 'logged out', actor: actorOf(s) });
        }
        return { status: 200, body: { loggedIn: false }, headers: { 'Set-Cookie': d.sessions.clearCookie() } };
      },
    }),
  ];
}

function actorOf(s: Session): string {
  return `session ${s.tag} (${s.remote})`;
}

/** One Server-Sent Events stream per page: an "init" message with everything, then samples and events as
 *  they happen, heartbeat comments in between. */
function eventStream(d: Dashboard, { req, res, auth }: Ctx): Reply {
  if (d.streams.size >= d.maxStreams) throw new HttpError(503, 'MOLT_ERR_NOT_READY', 'too many dashboard event streams open', { 'Retry-After': '5' });
  res.writeHead(200, {
    'Content-Type': 'text/event-stream; charset=utf-8',
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
    // The stream is the connection's last response: ending it (server close) closes the socket too.
    Connection: 'close',
  });
  if (req.method === 'HEAD') {
    res.end();
    return { status: 200, streamed: true };
  }
  const send = (event: string, data: unknown): void => {
    res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  };
  const snap = d.observer.snapshot();
  res.write('retry: 2000\n\n');
  send('init', {
    ...snap,
    readOnly: d.readOnly,
    loginEnabled: d.sessions.enabled,
    session: auth.session ? { tag: auth.session.tag, expires: new Date(auth.session.expires).toISOString() } : null,
  });
  const unsubscribe = d.observer.subscribe((m: ObserverMessage) => {
    if (m.type === 'sample') send('sample', { sample: m.sample, status: m.status });
    else send('event', m.event);
  });
  const heartbeat = setInterval(() => res.write(': hb\n\n'), d.heartbeatMs);
  heartbeat.unref();
  d.streams.add(res);
  const done = (): void => {
    clearInterval(heartbeat);
    unsubscribe();
    d.streams.delete(res);
  };
  res.on('close', done);
  req.on('close', done);
  // A fresh picture right away instead of up to one interval later.
  void d.observer.sample();
  return { status: 200, streamed: true };
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

interface AuthResult {
  /** Who is acting, for the audit line: "session 1a2b3c4d (127.0.0.1)", "bearer (10.0.0.5)", "api (127.0.0.1)". */
  actor: string;
  via: 'session' | 'bearer' | 'loopback' | 'public';
  session?: Session;
}

function authorize(
  req: http.IncomingMessage,
  method: string,
  pathname: string,
  a: { tokenDigest: Buffer | undefined; sessions: DashboardSessions; readOnly: boolean },
): AuthResult {
  const mutating = method !== 'GET' && method !== 'HEAD';
  const remote = req.socket.remoteAddress ?? '';
  const ui = pathname === '/ui' || pathname.startsWith('/ui/');
  if (mutating || ui) {
    // A web page the operator visits must not be able to drive the API (cross-site POSTs, login CSRF).
    const origin = req.headers.origin;
    if (origin !== undefined && !sameHost(origin, req.headers.host)) {
      throw new HttpError(403, 'MOLT_ERR_UNAUTHORIZED', 'cross-origin requests are not allowed');
    }
    const site = req.headers['sec-fetch-site'];
    if (mutating && site !== undefined && site !== 'same-origin' && site !== 'none') {
      throw new HttpError(403, 'MOLT_ERR_UNAUTHORIZED', `cross-site requests are not allowed (Sec-Fetch-Site: ${site})`);
    }
  }
  // DNS rebinding: a page on attacker.example resolving to 127.0.0.1 reaches us with its own Host name.
  // Without a token we are loopback-only, so every Host must be loopback; with one, connections to a
  // loopback address still must name a loopback host.
  const host = hostname(req.headers.host);
  if (host !== undefined && !isLoopbackHost(host) && (!a.tokenDigest || isLoopbackHost(req.socket.localAddress ?? ''))) {
    throw new HttpError(403, 'MOLT_ERR_UNAUTHORIZED', `Host ${host} is not allowed on a loopback listener`);
  }
  if (pathname === '/healthz') return { actor: `api (${remote})`, via: 'public' };
  // The page, its assets, login and logout carry no data and need no credentials (their own checks apply).
  if (ui && pathname !== '/ui/events') return { actor: `browser (${remote})`, via: 'public' };

  const session = a.sessions.fromRequest(req);
  if (mutating && isBrowserRequest(req)) {
    if (a.readOnly) throw new HttpError(403, 'MOLT_ERR_FORBIDDEN', 'the dashboard is read-only here: act through kubectl (kubectl molt promote APP [VERSION], kubectl molt rollback APP)');
    if (!session) throw new HttpError(401, 'MOLT_ERR_UNAUTHORIZED', 'browser requests need a dashboard session: log in at /ui');
    return { actor: `session ${session.tag} (${remote})`, via: 'session', session };
  }
  if (session) return { actor: `session ${session.tag} (${remote})`, via: 'session', session };
  if (!a.tokenDigest) return { actor: `api (${remote})`, via: 'loopback' };
  if (!mutating && isLoopbackHost(remote)) return { actor: `api (${remote})`, via: 'loopback' };
  const header = req.headers.authorization ?? '';
  const m = /^Bearer[ \t]+(.+)$/i.exec(header);
  // Compare fixed-length digests: constant time, and the token length does not leak either.
  if (!m || !timingSafeEqual(sha256(m[1]!.trim()), a.tokenDigest)) {
    throw new HttpError(401, 'MOLT_ERR_UNAUTHORIZED', 'missing or wrong bearer token', { 'WWW-Authenticate': 'Bearer' });
  }
  return { actor: `bearer (${remote})`, via: 'bearer' };
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

/** `{"version"?: string, "full"?: boolean}`: full finishes a transition under canary analysis (else one step). */
function parsePromoteBody(buf: Buffer): { version?: string; full: boolean } {
  const text = buf.toString('utf8').trim();
  if (!text) return { full: false };
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new MoltError('MOLT_ERR_BAD_REQUEST', `request body is not valid JSON: ${(err as Error).message}`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new MoltError('MOLT_ERR_BAD_REQUEST', 'body must be {"version": "...", "full": true|false}');
  const full = (v as { full?: unknown }).full;
  if (full !== undefined && full !== null && typeof full !== 'boolean') throw new MoltError('MOLT_ERR_BAD_REQUEST', 'full must be true or false', { path: 'full' });
  const version = (v as { version?: unknown }).version;
  if (version === undefined || version === null) return { full: full === true };
  if (typeof version !== 'string' || !version) throw new MoltError('MOLT_ERR_BAD_REQUEST', 'version must be a non-empty string', { path: 'version' });
  return { version, full: full === true };
}

// ---------------------------------------------------------------------------------------------------------
// Responses

function send(req: http.IncomingMessage, res: http.ServerResponse, reply: Reply): void {
  let payload: string | Buffer;
  let type: string;
  if (reply.contentType !== undefined) {
    payload = Buffer.isBuffer(reply.body) ? reply.body : String(reply.body ?? '');
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
