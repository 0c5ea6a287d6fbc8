// An in-process Kubernetes API server double: node:http on 127.0.0.1:0, close enough to the real protocol
// that @kubernetes/client-node's own ListWatch/informer and generated API classes run against it unmodified,
// and strict where a real cluster is strict, so molt cannot pass a test by relying on something a real
// apiserver would refuse or never send.
//
// What it speaks:
// - namespaced resources under /api/v1/namespaces/NS/PLURAL[/NAME[/status]] and
//   /apis/GROUP/VERSION/namespaces/NS/PLURAL[/NAME[/status]]
// - AppVersions are admitted as kube-apiserver admits custom resources, against the openAPIV3Schema of
//   crds/appversion.yaml (the file users apply): unknown fields pruned, `default:` values applied, then
//   validated; an invalid object is refused with 422 Invalid and a Status listing every cause
//   (structural-schema.ts). metadata.name must be a DNS subdomain for every resource.
// - list (labelSelector: =, ==, !=, exists, !exists) answering with metadata.resourceVersion
// - watch (?watch=true): a chunked stream of {"type","object"} JSON lines; replays the kept history after
//   the given resourceVersion, or synthetic ADDED events when none is given. A change that moves an object
//   into or out of a watch's label selector arrives as ADDED / DELETED, as from the real watch cache.
//   BOOKMARK events only to watches that asked (allowWatchBookmarks=true). The history is bounded
//   (historyLimit events): a watch from a resourceVersion older than the kept window gets a 410 Expired
//   ERROR event ("too old resource version") (or HTTP 410, see goneAsHttpStatus), so the client must re-list.
// - create / replace / delete; PUT needs metadata.resourceVersion (missing: 422 for resources that do not
//   allow unconditional update, i.e. custom resources and Leases; Deployments, Services and EndpointSlices
//   allow it as their real strategies do), a stale one is 409 Conflict
// - PATCH with application/merge-patch+json, application/strategic-merge-patch+json (treated as merge)
//   and application/json-patch+json; metadata.resourceVersion in a patch is a precondition
// - status subresource for appversions and deployments: writes to the main resource keep status, writes to
//   /status keep everything else; metadata.generation bumps on changes outside metadata and status
// - deletion as the real registry does it: an object with finalizers only gets metadata.deletionTimestamp
//   (and a generation bump), announced as MODIFIED, and goes away (DELETED) once an update empties its
//   finalizers; no new finalizers may be added meanwhile. propagationPolicy Background (default), Foreground
//   (owner waits with the foregroundDeletion finalizer until its blocking dependents are gone) and Orphan.
// - garbage collection is asynchronous, as the real garbage collector is: gcDelayMs after a deletion,
//   dependents whose ownerReferences all name vanished uids are deleted, dangling references among live
//   owners are removed (pauseGc()/resumeGc() to hold it).
// Test controls: closeWatches(), holdWatches()/releaseWatches(), bookmark(), compact(), failNext(), hold(),
// pauseGc()/resumeGc(), direct store access (create/update/modify/remove, admitted like client writes).

import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { applyDefaults, invalidStatus, prune, validate, type FieldError, type Schema } from './structural-schema.js';

type Obj = Record<string, any>;

interface HistoryEvent {
  rv: number;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  resource: string;
  namespace: string;
  object: Obj;
  /** The object before a MODIFIED (for label-selector transitions). */
  old?: Obj;
}

interface WatchConn {
  resource: string;
  namespace: string;
  selector: Selector;
  bookmarks: boolean;
  res: http.ServerResponse;
}

interface Failure {
  method: string;
  pattern: RegExp;
  status: number;
  remaining: number;
}

export interface RequestRecord {
  method: string;
  path: string;
  query: Record<string, string>;
  contentType?: string;
  watch: boolean;
}

/** A request the test holds: it reaches the server but is not processed until release(). */
export interface HeldRequest {
  /** Resolves when the request arrived. */
  arrived: Promise<void>;
  /** Resolves when the client gave up on it (closed the connection) before it was released. */
  clientAborted: Promise<void>;
  readonly aborted: boolean;
  /** Process it now (a request the client already abandoned is dropped, never applied). */
  release(): void;
}

type Result = { obj: Obj } | { fail: Obj };

/** Resources with a status subresource (spec/status split like a CRD with subresources.status). */
const STATUS_SUBRESOURCE = new Set(['appversions', 'deployments']);
/** Resources whose registry strategy allows an update without metadata.resourceVersion. */
const UNCONDITIONAL_UPDATE = new Set(['deployments', 'services', 'endpointslices']);

const KINDS: Record<string, { kind: string; apiVersion: string; group: string }> = {
  appversions: { kind: 'AppVersion', apiVersion: 'molt.dev/v1alpha1', group: 'molt.dev' },
  deployments: { kind: 'Deployment', apiVersion: 'apps/v1', group: 'apps' },
  services: { kind: 'Service', apiVersion: 'v1', group: '' },
  endpointslices: { kind: 'EndpointSlice', apiVersion: 'discovery.k8s.io/v1', group: 'discovery.k8s.io' },
  leases: { kind: 'Lease', apiVersion: 'coordination.k8s.io/v1', group: 'coordination.k8s.io' },
};

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
let crdSchema: Schema | undefined;

/** openAPIV3Schema of crds/appversion.yaml (the CRD users install). */
export function appVersionSchema(): Schema {
  if (!crdSchema) {
    const crd = YAML.parse(fs.readFileSync(path.join(ROOT, 'crds', 'appversion.yaml'), 'utf8'));
    const version = crd.spec.versions.find((v: Obj) => v.storage) ?? crd.spec.versions[0];
    crdSchema = version.schema.openAPIV3Schema as Schema;
  }
  return crdSchema;
}

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const CONFLICT_MESSAGE = 'the object has been modified; please apply your changes to the latest version and try again';

export interface FakeApiServerOptions {
  /** Watch events kept for resuming watches (default 1000). */
  historyLimit?: number;
  /** Delay before the garbage collector acts on a deletion (default 25 ms). */
  gcDelayMs?: number;
}

export class FakeApiServer {
  readonly token = 'fake-token';
  /** Every request, in order: for assertions on counts (lists, watches, patch content types). */
  readonly requests: RequestRecord[] = [];
  /** Answer too-old watches with HTTP 410 instead of a 200 stream carrying an ERROR event. */
  goneAsHttpStatus = false;
  readonly historyLimit: number;
  readonly gcDelayMs: number;

  #server: http.Server | null = null;
  #rv = 1;
  /** Watches must start at or after this resourceVersion (older: 410 Gone). */
  #minWatchRv = 0;
  #store = new Map<string, Map<string, Obj>>(); // resource -> "ns/name" -> object
  #history: HistoryEvent[] = [];
  #watches = new Set<WatchConn>();
  #failures: Failure[] = [];
  #holds: Array<{ method: string; pattern: RegExp; take: (run: () => void, res: http.ServerResponse) => void }> = [];
  #heldWatches: Array<() => void> | null = null;
  #gcTimer: NodeJS.Timeout | null = null;
  #gcPaused = false;
  #url = '';

  constructor(opts: FakeApiServerOptions = {}) {
    this.historyLimit = opts.historyLimit ?? 1000;
    this.gcDelayMs = opts.gcDelayMs ?? 25;
  }

  get url(): string {
    return this.#url;
  }

  get resourceVersion(): string {
    return String(this.#rv);
  }

  get activeWatches(): number {
    return this.#watches.size;
  }

  async start(): Promise<string> {
    const server = http.createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => {
        try {
          this.#handle(req, res, body);
        } catch (err) {
          this.#status(res, 500, 'InternalError', String(err));
        }
      });
    });
    this.#server = server;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    this.#url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    return this.#url;
  }

  async close(): Promise<void> {
    this.closeWatches();
    if (this.#gcTimer) clearTimeout(this.#gcTimer);
    this.#gcTimer = null;
    const server = this.#server;
    this.#server = null;
    if (server) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  }

  /** A kubeconfig (as an object for KubeConfig.loadFromOptions) pointing at this server. */
  kubeConfigOptions(): object {
    return {
      clusters: [{ name: 'fake', server: this.#url, skipTLSVerify: true }],
      users: [{ name: 'fake', token: this.token }],
      contexts: [{ name: 'fake', cluster: 'fake', user: 'fake', namespace: 'default' }],
      currentContext: 'fake',
    };
  }

  // ---- test controls ----

  /** Drop every watch connection (the client sees the stream end and reconnects with its resourceVersion). */
  closeWatches(): void {
    for (const w of this.#watches) w.res.destroy();
    this.#watches.clear();
  }

  /** New watch requests wait (unanswered) until releaseWatches(): a client that cannot reconnect for a while. */
  holdWatches(): void {
    this.#heldWatches ??= [];
  }

  releaseWatches(): void {
    const held = this.#heldWatches ?? [];
    this.#heldWatches = null;
    for (const run of held) run();
  }

  /** Send a BOOKMARK with the current resourceVersion to every watch that asked for bookmarks. */
  bookmark(): void {
    for (const w of this.#watches) {
      if (!w.bookmarks) continue;
      const { kind, apiVersion } = KINDS[w.resource] ?? { kind: 'Unknown', apiVersion: 'v1' };
      this.#send(w, { type: 'BOOKMARK', object: { kind, apiVersion, metadata: { resourceVersion: String(this.#rv) } } });
    }
  }

  /** Forget all history: a watch from any resourceVersion before now gets 410 Gone. With `expireActive`,
   *  open watches receive the 410 ERROR event and are closed too (as when the watch cache is re-initialised). */
  compact(expireActive = false): void {
    this.#rv++; // etcd's revision moves on with writes elsewhere: a fresh list is newer than the compaction
    this.#minWatchRv = this.#rv;
    this.#history = [];
    if (expireActive) {
      for (const w of this.#watches) this.#gone(w.res, '0');
      this.#watches.clear();
    }
  }

  /** The next `times` requests with METHOD whose path matches PATTERN answer STATUS. */
  failNext(method: string, pattern: RegExp, status: number, times = 1): void {
    this.#failures.push({ method, pattern, status, remaining: times });
  }

  /** Hold the next request with METHOD whose path matches PATTERN until release(). */
  hold(method: string, pattern: RegExp): HeldRequest {
    let arrived!: () => void;
    let abortedFn!: () => void;
    let run: (() => void) | null = null;
    let aborted = false;
    let released = false;
    const h: HeldRequest = {
      arrived: new Promise<void>((r) => (arrived = r)),
      clientAborted: new Promise<void>((r) => (abortedFn = r)),
      get aborted() {
        return aborted;
      },
      release() {
        released = true;
        if (run && !aborted) run();
      },
    };
    this.#holds.push({
      method,
      pattern,
      take: (r, res) => {
        run = r;
        res.on('close', () => {
          if (!res.writableEnded && !released) {
            aborted = true;
            abortedFn();
          }
        });
        arrived();
        if (released) r();
      },
    });
    return h;
  }

  /** Hold garbage collection (deleted owners keep their dependents) until resumeGc(). */
  pauseGc(): void {
    this.#gcPaused = true;
  }

  resumeGc(): void {
    this.#gcPaused = false;
    this.#scheduleGc();
  }

  get(resource: string, namespace: string, name: string): Obj | undefined {
    const o = this.#bucket(resource).get(`${namespace}/${name}`);
    return o ? clone(o) : undefined;
  }

  list(resource: string, namespace?: string): Obj[] {
    return [...this.#bucket(resource).values()].filter((o) => !namespace || o.metadata.namespace === namespace).map(clone);
  }

  /** Create as a client would (POST semantics, admission included). Throws with the Status message on refusal. */
  create(resource: string, namespace: string, obj: Obj): Obj {
    return unwrap(this.#create(resource, namespace, clone(obj)), `create ${resource} ${namespace}/${obj.metadata?.name}`);
  }

  /** Replace as a client that has just read the object would (PUT with the current resourceVersion). */
  update(resource: string, namespace: string, obj: Obj): Obj {
    const o = clone(obj);
    delete o.metadata.resourceVersion;
    return unwrap(this.#replace(resource, namespace, o.metadata.name, o, { statusOnly: false, checkRv: false }), `update ${resource} ${namespace}/${obj.metadata?.name}`);
  }

  /** Read-modify-write with a function (main resource semantics unless `subresource` is 'status'). */
  modify(resource: string, namespace: string, name: string, fn: (o: Obj) => void, subresource?: 'status'): Obj {
    const cur = this.get(resource, namespace, name);
    if (!cur) throw new Error(`modify: ${resource} ${namespace}/${name} not found`);
    fn(cur);
    delete cur.metadata.resourceVersion;
    return unwrap(this.#replace(resource, namespace, name, cur, { statusOnly: subresource === 'status', checkRv: false }), `modify ${resource} ${namespace}/${name}`);
  }

  /** DELETE as a client would (finalizers and propagation policy apply). */
  remove(resource: string, namespace: string, name: string, propagationPolicy?: 'Background' | 'Foreground' | 'Orphan'): void {
    this.#delete(resource, namespace, name, propagationPolicy);
  }

  // ---- HTTP ----

  #handle(req: http.IncomingMessage, res: http.ServerResponse, body: string): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const query = Object.fromEntries(url.searchParams);
    const method = req.method ?? 'GET';
    const watch = query.watch === 'true' || query.watch === '1';
    const contentType = req.headers['content-type']?.split(';')[0]?.trim();
    this.requests.push({ method, path: url.pathname, query, contentType, watch });

    if (req.headers.authorization !== `Bearer ${this.token}`) {
      return this.#status(res, 401, 'Unauthorized', 'Unauthorized');
    }
    for (const f of this.#failures) {
      if (f.remaining > 0 && f.method === method && f.pattern.test(url.pathname)) {
        f.remaining--;
        return this.#status(res, f.status, f.status === 409 ? 'Conflict' : 'InternalError', `injected ${f.status}`);
      }
    }
    const run = () => this.#dispatch(res, method, url.pathname, query, watch, contentType, body);
    const hi = this.#holds.findIndex((h) => h.method === method && h.pattern.test(url.pathname));
    if (hi !== -1) {
      const [h] = this.#holds.splice(hi, 1);
      h!.take(() => {
        if (!res.destroyed) run();
      }, res);
      return;
    }
    if (watch && method === 'GET' && this.#heldWatches) {
      this.#heldWatches.push(() => {
        if (!res.destroyed) run();
      });
      return;
    }
    run();
  }

  #dispatch(res: http.ServerResponse, method: string, pathname: string, query: Record<string, string>, watch: boolean, contentType: string | undefined, body: string): void {
    const m = /^\/(?:api\/v1|apis\/[^/]+\/[^/]+)\/namespaces\/([^/]+)\/([^/]+)(?:\/([^/]+))?(?:\/([^/]+))?$/.exec(pathname);
    if (!m) return this.#status(res, 404, 'NotFound', `the server could not find the requested resource (${pathname})`);
    const [, namespace, resource, name, sub] = m as unknown as [string, string, string, string | undefined, string | undefined];
    if (sub && sub !== 'status') return this.#status(res, 404, 'NotFound', `unknown subresource ${sub}`);
    if (sub === 'status' && !STATUS_SUBRESOURCE.has(resource)) return this.#status(res, 404, 'NotFound', `${resource} has no status subresource`);
    const isStatus = sub === 'status';

    if (!name) {
      if (method === 'GET' && watch) return this.#watch(res, resource, namespace, query);
      if (method === 'GET') {
        const selector = parseSelector(query.labelSelector ?? '');
        const items = [...this.#bucket(resource).values()]
          .filter((o) => o.metadata.namespace === namespace && selector(o.metadata.labels ?? {}))
          .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name))
          .map(clone);
        const { kind, apiVersion } = KINDS[resource] ?? { kind: 'Unknown', apiVersion: 'v1' };
        return this.#json(res, 200, { apiVersion, kind: `${kind}List`, metadata: { resourceVersion: String(this.#rv) }, items });
      }
      if (method === 'POST') {
        const obj = parse(body);
        if (!obj) return this.#status(res, 400, 'BadRequest', 'body is not JSON');
        return this.#answer(res, this.#create(resource, namespace, obj), 201);
      }
      return this.#status(res, 405, 'MethodNotAllowed', method);
    }

    const cur = this.#bucket(resource).get(`${namespace}/${name}`);
    switch (method) {
      case 'GET':
        return cur ? this.#json(res, 200, cur) : this.#notFound(res, resource, name);
      case 'PUT': {
        const obj = parse(body);
        if (!obj) return this.#status(res, 400, 'BadRequest', 'body is not JSON');
        if (obj.metadata?.name !== undefined && obj.metadata.name !== name) {
          return this.#status(res, 400, 'BadRequest', `the name of the object (${obj.metadata.name}) does not match the name on the URL (${name})`);
        }
        return this.#answer(res, this.#replace(resource, namespace, name, obj, { statusOnly: isStatus, checkRv: true }), 200);
      }
      case 'PATCH': {
        if (!cur) return this.#notFound(res, resource, name);
        const patch = parse(body, true);
        if (patch === undefined) return this.#status(res, 400, 'BadRequest', 'body is not JSON');
        let next: Obj;
        if (contentType === 'application/json-patch+json') {
          if (!Array.isArray(patch)) return this.#status(res, 400, 'BadRequest', 'json patch must be an array');
          try {
            next = applyJsonPatch(clone(cur), patch);
          } catch (err) {
            return this.#status(res, 422, 'Invalid', String((err as Error).message));
          }
        } else if (contentType === 'application/merge-patch+json' || contentType === 'application/strategic-merge-patch+json') {
          next = mergePatch(clone(cur), patch) as Obj;
        } else {
          return this.#status(res, 415, 'UnsupportedMediaType', `unsupported patch type ${contentType}`);
        }
        // A patch may carry metadata.resourceVersion as a precondition; absent means "no check".
        const checkRv = patchMentionsRv(patch);
        if (!checkRv) next.metadata = { ...next.metadata, resourceVersion: cur.metadata.resourceVersion };
        return this.#answer(res, this.#replace(resource, namespace, name, next, { statusOnly: isStatus, checkRv: true }), 200);
      }
      case 'DELETE': {
        if (!cur) return this.#notFound(res, resource, name);
        const opts = parse(body) ?? {};
        const policy = opts.propagationPolicy ?? query.propagationPolicy;
        const after = this.#delete(resource, namespace, name, policy);
        if (after) return this.#json(res, 200, after); // still there (finalizers): the real server answers the object
        return this.#json(res, 200, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details: { name, kind: resource, uid: cur.metadata.uid } });
      }
      default:
        return this.#status(res, 405, 'MethodNotAllowed', method);
    }
  }

  #watch(res: http.ServerResponse, resource: string, namespace: string, query: Record<string, string>): void {
    const conn: WatchConn = {
      resource,
      namespace,
      selector: parseSelector(query.labelSelector ?? ''),
      bookmarks: query.allowWatchBookmarks === 'true',
      res,
    };
    const from = query.resourceVersion;
    const tooOld = !!from && from !== '0' && (!Number.isFinite(Number(from)) || Number(from) < this.#minWatchRv);
    if (tooOld && this.goneAsHttpStatus) return this.#status(res, 410, 'Expired', `too old resource version: ${from} (${this.#minWatchRv})`);
    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
    res.flushHeaders();
    if (tooOld) return this.#gone(res, from);
    if (from && from !== '0') {
      const rv = Number(from);
      for (const e of this.#history) {
        if (e.rv > rv && e.resource === resource && e.namespace === namespace) this.#deliver(conn, e);
      }
    } else {
      for (const o of this.#bucket(resource).values()) {
        if (o.metadata.namespace === namespace && conn.selector(o.metadata.labels ?? {})) this.#send(conn, { type: 'ADDED', object: o });
      }
    }
    this.#watches.add(conn);
    res.on('close', () => this.#watches.delete(conn));
  }

  #gone(res: http.ServerResponse, from: string): void {
    res.end(
      JSON.stringify({
        type: 'ERROR',
        object: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: `too old resource version: ${from} (${this.#minWatchRv})`, reason: 'Expired', code: 410 },
      }) + '\n',
    );
  }

  #send(w: WatchConn, event: object): void {
    w.res.write(JSON.stringify(event) + '\n');
  }

  /** One event to one watch, through its label selector: entering the selection is ADDED, leaving it DELETED. */
  #deliver(w: WatchConn, e: HistoryEvent): void {
    const now = w.selector(e.object.metadata.labels ?? {});
    if (e.type !== 'MODIFIED') {
      if (now) this.#send(w, { type: e.type, object: e.object });
      return;
    }
    const before = e.old ? w.selector(e.old.metadata.labels ?? {}) : now;
    if (now && before) this.#send(w, { type: 'MODIFIED', object: e.object });
    else if (now) this.#send(w, { type: 'ADDED', object: e.object });
    else if (before) this.#send(w, { type: 'DELETED', object: e.object });
  }

  #emit(type: HistoryEvent['type'], resource: string, namespace: string, object: Obj, old?: Obj): void {
    const e: HistoryEvent = { rv: this.#rv, type, resource, namespace, object: clone(object), old: old ? clone(old) : undefined };
    this.#history.push(e);
    while (this.#history.length > this.historyLimit) {
      const evicted = this.#history.shift()!;
      this.#minWatchRv = Math.max(this.#minWatchRv, evicted.rv);
    }
    for (const w of this.#watches) {
      if (w.resource === resource && w.namespace === namespace) this.#deliver(w, e);
    }
  }

  // ---- admission and storage ----

  /** Validation and (for AppVersions) pruning/defaulting, as the real server does before storing. */
  #admit(resource: string, obj: Obj): FieldError[] {
    const errors: FieldError[] = [];
    const name = obj.metadata?.name;
    if (typeof name === 'string' && (name.length > 253 || !DNS_SUBDOMAIN.test(name))) {
      errors.push({
        reason: 'FieldValueInvalid',
        field: 'metadata.name',
        detail: `Invalid value: ${JSON.stringify(name)}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character`,
      });
    }
    if (resource === 'appversions') {
      const schema = appVersionSchema();
      prune(obj, schema);
      applyDefaults(obj, schema);
      errors.push(...validate(obj, schema));
    }
    return errors;
  }

  #invalid(resource: string, name: string, errors: FieldError[]): { fail: Obj } {
    const { kind, group } = KINDS[resource] ?? { kind: resource, group: '' };
    return { fail: invalidStatus(kind, group, name, errors) };
  }

  #create(resource: string, namespace: string, obj: Obj): Result {
    const name = obj.metadata?.name ?? (obj.metadata?.generateName ? obj.metadata.generateName + randomUUID().slice(0, 5) : undefined);
    const { kind, apiVersion } = KINDS[resource] ?? { kind: obj.kind, apiVersion: obj.apiVersion };
    if (!name) return this.#invalid(resource, '', [{ reason: 'FieldValueRequired', field: 'metadata.name', detail: 'Required value: name or generateName is required' }]);
    const bucket = this.#bucket(resource);
    if (bucket.has(`${namespace}/${name}`)) return { fail: statusBody(409, 'AlreadyExists', `${resource} "${name}" already exists`) };
    const meta = { ...obj.metadata };
    for (const k of ['uid', 'resourceVersion', 'generation', 'creationTimestamp', 'deletionTimestamp', 'deletionGracePeriodSeconds']) delete meta[k];
    const stored: Obj = {
      ...obj,
      apiVersion: obj.apiVersion ?? apiVersion,
      kind: obj.kind ?? kind,
      metadata: { ...meta, name, namespace },
    };
    if (STATUS_SUBRESOURCE.has(resource)) delete stored.status;
    const errors = this.#admit(resource, stored);
    if (errors.length) return this.#invalid(resource, name, errors);
    stored.metadata = {
      ...stored.metadata,
      uid: randomUUID(),
      resourceVersion: String(++this.#rv),
      generation: 1,
      creationTimestamp: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    };
    bucket.set(`${namespace}/${name}`, stored);
    this.#emit('ADDED', resource, namespace, stored);
    return { obj: stored };
  }

  #replace(resource: string, namespace: string, name: string, obj: Obj, o: { statusOnly: boolean; checkRv: boolean }): Result {
    const bucket = this.#bucket(resource);
    const key = `${namespace}/${name}`;
    const cur = bucket.get(key);
    if (!cur) return { fail: statusBody(404, 'NotFound', `${resource} "${name}" not found`) };
    const { kind, group } = KINDS[resource] ?? { kind: resource, group: '' };
    if (o.checkRv) {
      const rv = obj.metadata?.resourceVersion;
      if (rv === undefined || rv === '') {
        if (!UNCONDITIONAL_UPDATE.has(resource)) {
          return this.#invalid(resource, name, [{ reason: 'FieldValueInvalid', field: 'metadata.resourceVersion', detail: 'Invalid value: 0x0: must be specified for an update' }]);
        }
      } else if (rv !== cur.metadata.resourceVersion) {
        return { fail: statusBody(409, 'Conflict', `Operation cannot be fulfilled on ${resource}${group ? `.${group}` : ''} "${name}": ${CONFLICT_MESSAGE}`) };
      }
    }
    let next: Obj;
    if (o.statusOnly) {
      next = { ...clone(cur), status: obj.status };
      if (next.status === undefined) delete next.status;
    } else {
      next = { ...obj, apiVersion: cur.apiVersion, kind: cur.kind };
      next.metadata = {
        ...obj.metadata,
        name,
        namespace,
        uid: cur.metadata.uid,
        creationTimestamp: cur.metadata.creationTimestamp,
        generation: cur.metadata.generation,
        deletionTimestamp: cur.metadata.deletionTimestamp,
        deletionGracePeriodSeconds: cur.metadata.deletionGracePeriodSeconds,
      };
      for (const k of ['deletionTimestamp', 'deletionGracePeriodSeconds']) if (next.metadata[k] === undefined) delete next.metadata[k];
      if (STATUS_SUBRESOURCE.has(resource)) {
        if (cur.status === undefined) delete next.status;
        else next.status = clone(cur.status);
      }
    }
    delete next.metadata.resourceVersion;
    const errors = this.#admit(resource, next);
    if (cur.metadata.deletionTimestamp) {
      const added = (next.metadata.finalizers ?? []).filter((f: string) => !(cur.metadata.finalizers ?? []).includes(f));
      if (added.length) {
        errors.push({ reason: 'FieldValueForbidden', field: 'metadata.finalizers', detail: `Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{${added.map((f: string) => JSON.stringify(f)).join(', ')}}` });
      }
    }
    if (errors.length) return this.#invalid(resource, name, errors);
    if (!o.statusOnly && specOf(resource, cur) !== specOf(resource, next)) next.metadata.generation = (cur.metadata.generation ?? 1) + 1;
    if (stripRv(next) === stripRv(cur)) return { obj: cur }; // no-op: no new resourceVersion, no event
    next.metadata.resourceVersion = String(++this.#rv);
    if (next.metadata.deletionTimestamp && !(next.metadata.finalizers ?? []).length) {
      // The last finalizer is gone: the object is deleted now (one DELETED event with the final state).
      bucket.delete(key);
      this.#emit('DELETED', resource, namespace, next);
      this.#scheduleGc();
      return { obj: next };
    }
    bucket.set(key, next);
    this.#emit('MODIFIED', resource, namespace, next, cur);
    return { obj: next };
  }

  /** Returns the object when it is not gone yet (finalizers), undefined when deleted. */
  #delete(resource: string, namespace: string, name: string, policy?: string): Obj | undefined {
    const bucket = this.#bucket(resource);
    const key = `${namespace}/${name}`;
    const cur = bucket.get(key);
    if (!cur) return undefined;
    const finalizers: string[] = [...(cur.metadata.finalizers ?? [])];
    if (!cur.metadata.deletionTimestamp) {
      if (policy === 'Orphan' && !finalizers.includes('orphan')) finalizers.push('orphan');
      if (policy === 'Foreground' && !finalizers.includes('foregroundDeletion')) finalizers.push('foregroundDeletion');
    }
    if (finalizers.length) {
      if (cur.metadata.deletionTimestamp) return clone(cur);
      const next = clone(cur);
      next.metadata.finalizers = finalizers;
      next.metadata.deletionTimestamp = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
      next.metadata.deletionGracePeriodSeconds = 0;
      if (next.metadata.generation) next.metadata.generation++;
      next.metadata.resourceVersion = String(++this.#rv);
      bucket.set(key, next);
      this.#emit('MODIFIED', resource, namespace, next, cur);
      this.#scheduleGc();
      return clone(next);
    }
    bucket.delete(key);
    cur.metadata.resourceVersion = String(++this.#rv);
    this.#emit('DELETED', resource, namespace, cur);
    this.#scheduleGc();
    return undefined;
  }

  // ---- garbage collector ----

  #scheduleGc(): void {
    if (this.#gcTimer || this.#gcPaused || !this.#server) return;
    this.#gcTimer = setTimeout(() => {
      this.#gcTimer = null;
      if (this.#gcPaused) return;
      if (this.#gcPass()) this.#scheduleGc();
    }, this.gcDelayMs);
    this.#gcTimer.unref();
  }

  /** One pass of the garbage collector; true when it changed something (another pass may follow). */
  #gcPass(): boolean {
    const all: Array<{ resource: string; o: Obj }> = [];
    for (const [resource, b] of this.#store) for (const o of b.values()) all.push({ resource, o });
    const byUid = new Map(all.map((x) => [x.o.metadata.uid as string, x]));
    const dependentsOf = (uid: string) => all.filter((x) => (x.o.metadata.ownerReferences ?? []).some((r: Obj) => r.uid === uid));
    let changed = false;
    const setFinalizers = (x: { resource: string; o: Obj }, f: string[]) => {
      const cur = this.get(x.resource, x.o.metadata.namespace, x.o.metadata.name);
      if (!cur) return;
      cur.metadata.finalizers = f;
      this.#replace(x.resource, cur.metadata.namespace, cur.metadata.name, cur, { statusOnly: false, checkRv: false });
      changed = true;
    };
    for (const x of all) {
      const m = x.o.metadata;
      if (!m.deletionTimestamp) continue;
      const fins: string[] = m.finalizers ?? [];
      if (fins.includes('orphan')) {
        for (const d of dependentsOf(m.uid)) {
          const cur = this.get(d.resource, d.o.metadata.namespace, d.o.metadata.name)!;
          cur.metadata.ownerReferences = (cur.metadata.ownerReferences ?? []).filter((r: Obj) => r.uid !== m.uid);
          if (!cur.metadata.ownerReferences.length) delete cur.metadata.ownerReferences;
          this.#replace(d.resource, cur.metadata.namespace, cur.metadata.name, cur, { statusOnly: false, checkRv: false });
        }
        setFinalizers(x, fins.filter((f) => f !== 'orphan'));
      } else if (fins.includes('foregroundDeletion')) {
        const deps = dependentsOf(m.uid);
        for (const d of deps) if (!d.o.metadata.deletionTimestamp) this.#delete(d.resource, d.o.metadata.namespace, d.o.metadata.name);
        const blocking = dependentsOf(m.uid).filter((d) => this.get(d.resource, d.o.metadata.namespace, d.o.metadata.name) && (d.o.metadata.ownerReferences ?? []).some((r: Obj) => r.uid === m.uid && r.blockOwnerDeletion));
        if (!blocking.length) setFinalizers(x, fins.filter((f) => f !== 'foregroundDeletion'));
        else changed = true;
      }
    }
    for (const x of all) {
      const refs: Obj[] = x.o.metadata.ownerReferences ?? [];
      if (!refs.length || !this.get(x.resource, x.o.metadata.namespace, x.o.metadata.name)) continue;
      const present = refs.filter((r) => byUid.has(r.uid) && this.get(byUid.get(r.uid)!.resource, byUid.get(r.uid)!.o.metadata.namespace, byUid.get(r.uid)!.o.metadata.name));
      if (present.length === refs.length) continue;
      if (present.length === 0) {
        if (!x.o.metadata.deletionTimestamp) {
          this.#delete(x.resource, x.o.metadata.namespace, x.o.metadata.name);
          changed = true;
        }
      } else {
        const cur = this.get(x.resource, x.o.metadata.namespace, x.o.metadata.name)!;
        cur.metadata.ownerReferences = present;
        this.#replace(x.resource, cur.metadata.namespace, cur.metadata.name, cur, { statusOnly: false, checkRv: false });
        changed = true;
      }
    }
    return changed;
  }

  #bucket(resource: string): Map<string, Obj> {
    let b = this.#store.get(resource);
    if (!b) this.#store.set(resource, (b = new Map()));
    return b;
  }

  #answer(res: http.ServerResponse, r: Result, okCode: number): void {
    if ('fail' in r) return this.#json(res, r.fail.code, r.fail);
    return this.#json(res, okCode, r.obj);
  }

  #notFound(res: http.ServerResponse, resource: string, name: string): void {
    this.#status(res, 404, 'NotFound', `${resource} "${name}" not found`);
  }

  #status(res: http.ServerResponse, code: number, reason: string, message: string): void {
    this.#json(res, code, statusBody(code, reason, message));
  }

  #json(res: http.ServerResponse, code: number, body: unknown): void {
    const text = JSON.stringify(body);
    res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  }
}

function statusBody(code: number, reason: string, message: string): Obj {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

function unwrap(r: Result, what: string): Obj {
  if ('fail' in r) {
    const err = new Error(`${what}: ${r.fail.code} ${r.fail.reason}: ${r.fail.message}`) as Error & { status: Obj };
    err.status = r.fail;
    throw err;
  }
  return clone(r.obj);
}

/** What a generation counts: custom resources everything outside metadata and status; others spec. */
function specOf(resource: string, o: Obj): string {
  if (resource === 'appversions') {
    const { metadata: _m, status: _s, ...rest } = o;
    return canonicalJson(rest);
  }
  return canonicalJson(o.spec);
}

function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v).filter((k) => (v as Obj)[k] !== undefined).sort().map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Obj)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

// ---- helpers ----

type Selector = (labels: Record<string, string>) => boolean;

export function parseSelector(s: string): Selector {
  const terms = s
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean)
    .map((t): Selector => {
      let m: RegExpExecArray | null;
      if ((m = /^([^!=]+)!=(.*)$/.exec(t))) {
        const [, k, v] = m as unknown as [string, string, string];
        return (l) => l[k.trim()] !== v.trim();
      }
      if ((m = /^([^!=]+)==?(.*)$/.exec(t))) {
        const [, k, v] = m as unknown as [string, string, string];
        return (l) => l[k.trim()] === v.trim();
      }
      if (t.startsWith('!')) return (l) => !(t.slice(1) in l);
      return (l) => t in l;
    });
  return (labels) => terms.every((f) => f(labels));
}

function clone<T>(o: T): T {
  return structuredClone(o);
}

function parse(body: string, allowArray = false): any {
  try {
    const v = JSON.parse(body);
    if (v === null || typeof v !== 'object' || (Array.isArray(v) && !allowArray)) return undefined;
    return v;
  } catch {
    return undefined;
  }
}

function stripRv(o: Obj): string {
  return canonicalJson({ ...o, metadata: { ...o.metadata, resourceVersion: undefined } });
}

function patchMentionsRv(patch: unknown): boolean {
  if (Array.isArray(patch)) return patch.some((op) => typeof op?.path === 'string' && op.path === '/metadata/resourceVersion');
  return typeof (patch as Obj)?.metadata?.resourceVersion === 'string';
}

/** RFC 7386 JSON merge patch. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const out: Obj = target !== null && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Obj) } : {};
  for (const [k, v] of Object.entries(patch as Obj)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** RFC 6902 JSON patch: add, remove, replace, move, copy, test. */
export function applyJsonPatch(doc: Obj, ops: Array<{ op: string; path: string; value?: unknown; from?: string }>): Obj {
  const split = (p: string) => (p === '' ? [] : p.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~')));
  const parentOf = (path: string): [any, string] => {
    const parts = split(path);
    const last = parts.pop();
    if (last === undefined) throw new Error('cannot address the document root');
    let node: any = doc;
    for (const p of parts) {
      if (node === null || typeof node !== 'object' || !(p in node)) throw new Error(`path ${path} does not exist`);
      node = node[p];
    }
    return [node, last];
  };
  const read = (path: string): unknown => {
    let node: any = doc;
    for (const p of split(path)) {
      if (node === null || typeof node !== 'object' || !(p in node)) throw new Error(`path ${path} does not exist`);
      node = node[p];
    }
    return node;
  };
  const add = (path: string, value: unknown) => {
    const [parent, key] = parentOf(path);
    if (Array.isArray(parent)) {
      const i = key === '-' ? parent.length : Number(key);
      if (!Number.isInteger(i) || i < 0 || i > parent.length) throw new Error(`bad array index in ${path}`);
      parent.splice(i, 0, value);
    } else parent[key] = value;
  };
  const remove = (path: string) => {
    const [parent, key] = parentOf(path);
    if (Array.isArray(parent)) parent.splice(Number(key), 1);
    else {
      if (!(key in parent)) throw new Error(`path ${path} does not exist`);
      delete parent[key];
    }
  };
  for (const op of ops) {
    switch (op.op) {
      case 'add':
        add(op.path, structuredClone(op.value));
        break;
      case 'remove':
        remove(op.path);
        break;
      case 'replace':
        read(op.path);
        remove(op.path);
        add(op.path, structuredClone(op.value));
        break;
      case 'move': {
        const v = read(op.from!);
        remove(op.from!);
        add(op.path, v);
        break;
      }
      case 'copy':
        add(op.path, structuredClone(read(op.from!)));
        break;
      case 'test':
        if (JSON.stringify(read(op.path)) !== JSON.stringify(op.value)) throw new Error(`test failed at ${op.path}`);
        break;
      default:
        throw new Error(`unknown op ${op.op}`);
    }
  }
  return doc;
}
