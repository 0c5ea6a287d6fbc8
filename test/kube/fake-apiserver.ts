// An in-process Kubernetes API server double: node:http on 127.0.0.1:0, close enough to the real protocol
// that @kubernetes/client-node's own ListWatch/informer and generated API classes run against it unmodified.
//
// What it speaks:
// - namespaced resources under /api/v1/namespaces/NS/PLURAL[/NAME[/status]] and
//   /apis/GROUP/VERSION/namespaces/NS/PLURAL[/NAME[/status]]; every resource is a plain stored object
// - list (labelSelector: =, ==, !=, exists, !exists) answering with metadata.resourceVersion
// - watch (?watch=true): a chunked stream of {"type","object"} JSON lines; replays history after the given
//   resourceVersion, or synthetic ADDED events when none is given; BOOKMARK events on demand; a too-old
//   resourceVersion answers an ERROR event carrying a 410 Status (or HTTP 410, see goneAsHttpStatus)
// - create/replace/delete, optimistic concurrency on metadata.resourceVersion (409 Conflict)
// - PATCH with application/merge-patch+json, application/strategic-merge-patch+json (treated as merge)
//   and application/json-patch+json
// - status subresource for appversions: writes to the main resource keep status, writes to /status keep
//   spec and metadata; generation bumps only when spec changes
// - owner-reference garbage collection on delete (background, by uid)
// Test controls: closeWatches(), bookmark(), compact(), failNext(), direct store access (create/update/remove).

import http from 'node:http';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';

type Obj = Record<string, any>;

interface HistoryEvent {
  rv: number;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  resource: string;
  namespace: string;
  object: Obj;
}

interface WatchConn {
  resource: string;
  namespace: string;
  selector: Selector;
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

/** Resources with a status subresource (spec/status split like a CRD with subresources.status). */
const STATUS_SUBRESOURCE = new Set(['appversions', 'deployments']);

const KINDS: Record<string, { kind: string; apiVersion: string }> = {
  appversions: { kind: 'AppVersion', apiVersion: 'molt.dev/v1alpha1' },
  deployments: { kind: 'Deployment', apiVersion: 'apps/v1' },
  services: { kind: 'Service', apiVersion: 'v1' },
  endpointslices: { kind: 'EndpointSlice', apiVersion: 'discovery.k8s.io/v1' },
  leases: { kind: 'Lease', apiVersion: 'coordination.k8s.io/v1' },
};

export class FakeApiServer {
  readonly token = 'fake-token';
  /** Every request, in order: for assertions on counts (lists, watches, patch content types). */
  readonly requests: RequestRecord[] = [];
  /** Answer too-old watches with HTTP 410 instead of a 200 stream carrying an ERROR event. */
  goneAsHttpStatus = false;

  #server: http.Server | null = null;
  #rv = 1;
  /** Watches starting at or below this resourceVersion get 410 Gone. */
  #compactedRv = 0;
  #store = new Map<string, Map<string, Obj>>(); // resource -> "ns/name" -> object
  #history: HistoryEvent[] = [];
  #watches = new Set<WatchConn>();
  #failures: Failure[] = [];
  #url = '';

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

  /** Send a BOOKMARK with the current resourceVersion to every watch. */
  bookmark(): void {
    for (const w of this.#watches) {
      const { kind, apiVersion } = KINDS[w.resource] ?? { kind: 'Unknown', apiVersion: 'v1' };
      this.#send(w, { type: 'BOOKMARK', object: { kind, apiVersion, metadata: { resourceVersion: String(this.#rv) } } });
    }
  }

  /** Forget history: any watch from a resourceVersion at or below the current one now gets 410 Gone.
   *  With `expireActive`, open watches receive the 410 ERROR event and are closed too. */
  compact(expireActive = false): void {
    this.#compactedRv = this.#rv;
    this.#rv++; // etcd's revision moves on with writes elsewhere: a fresh list is newer than the compaction
    this.#history = [];
    if (expireActive) {
      for (const w of this.#watches) this.#gone(w.res);
      this.#watches.clear();
    }
  }

  /** The next `times` requests with METHOD whose path matches PATTERN answer STATUS. */
  failNext(method: string, pattern: RegExp, status: number, times = 1): void {
    this.#failures.push({ method, pattern, status, remaining: times });
  }

  get(resource: string, namespace: string, name: string): Obj | undefined {
    const o = this.#bucket(resource).get(`${namespace}/${name}`);
    return o ? clone(o) : undefined;
  }

  list(resource: string, namespace?: string): Obj[] {
    return [...this.#bucket(resource).values()].filter((o) => !namespace || o.metadata.namespace === namespace).map(clone);
  }

  /** Create as a client would (POST semantics). */
  create(resource: string, namespace: string, obj: Obj): Obj {
    const r = this.#create(resource, namespace, clone(obj));
    if ('error' in r) throw new Error(`create ${resource} ${namespace}/${obj.metadata?.name}: ${r.error}`);
    return clone(r.obj);
  }

  /** Replace as a client would (PUT on the main resource, no resourceVersion check). */
  update(resource: string, namespace: string, obj: Obj): Obj {
    const o = clone(obj);
    delete o.metadata.resourceVersion;
    const r = this.#replace(resource, namespace, o.metadata.name, o, false);
    if ('error' in r) throw new Error(`update ${resource} ${namespace}/${obj.metadata?.name}: ${r.error}`);
    return clone(r.obj);
  }

  /** Edit in place with a function (main resource semantics unless `subresource` is 'status'). */
  modify(resource: string, namespace: string, name: string, fn: (o: Obj) => void, subresource?: 'status'): Obj {
    const cur = this.get(resource, namespace, name);
    if (!cur) throw new Error(`modify: ${resource} ${namespace}/${name} not found`);
    fn(cur);
    delete cur.metadata.resourceVersion;
    const r = this.#replace(resource, namespace, name, cur, subresource === 'status');
    if ('error' in r) throw new Error(`modify ${resource} ${namespace}/${name}: ${r.error}`);
    return clone(r.obj);
  }

  remove(resource: string, namespace: string, name: string): void {
    this.#delete(resource, namespace, name);
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
    const m = /^\/(?:api\/v1|apis\/[^/]+\/[^/]+)\/namespaces\/([^/]+)\/([^/]+)(?:\/([^/]+))?(?:\/([^/]+))?$/.exec(url.pathname);
    if (!m) return this.#status(res, 404, 'NotFound', `the server could not find the requested resource (${url.pathname})`);
    const [, namespace, resource, name, sub] = m as unknown as [string, string, string, string | undefined, string | undefined];
    if (sub && sub !== 'status') return this.#status(res, 404, 'NotFound', `unknown subresource ${sub}`);
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
        const r = this.#create(resource, namespace, obj);
        return 'error' in r ? this.#status(res, r.code, r.reason, r.error) : this.#json(res, 201, r.obj);
      }
      return this.#status(res, 405, 'MethodNotAllowed', method);
    }

    const key = `${namespace}/${name}`;
    const cur = this.#bucket(resource).get(key);
    switch (method) {
      case 'GET':
        return cur ? this.#json(res, 200, cur) : this.#notFound(res, resource, name);
      case 'PUT': {
        const obj = parse(body);
        if (!obj) return this.#status(res, 400, 'BadRequest', 'body is not JSON');
        const r = this.#replace(resource, namespace, name, obj, isStatus);
        return 'error' in r ? this.#status(res, r.code, r.reason, r.error) : this.#json(res, 200, r.obj);
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
        const wanted = next.metadata?.resourceVersion;
        if (wanted !== undefined && wanted !== cur.metadata.resourceVersion && patchMentionsRv(patch)) {
          return this.#status(res, 409, 'Conflict', 'the object has been modified; please apply your changes to the latest version and try again');
        }
        delete next.metadata.resourceVersion;
        const r = this.#replace(resource, namespace, name, next, isStatus);
        return 'error' in r ? this.#status(res, r.code, r.reason, r.error) : this.#json(res, 200, r.obj);
      }
      case 'DELETE': {
        if (!cur) return this.#notFound(res, resource, name);
        this.#delete(resource, namespace, name);
        return this.#json(res, 200, { kind: 'Status', apiVersion: 'v1', status: 'Success', details: { name, kind: resource } });
      }
      default:
        return this.#status(res, 405, 'MethodNotAllowed', method);
    }
  }

  #watch(res: http.ServerResponse, resource: string, namespace: string, query: Record<string, string>): void {
    const conn: WatchConn = { resource, namespace, selector: parseSelector(query.labelSelector ?? ''), res };
    const from = query.resourceVersion;
    const tooOld = !!from && from !== '0' && (!Number.isFinite(Number(from)) || Number(from) <= this.#compactedRv);
    if (tooOld && this.goneAsHttpStatus) return this.#status(res, 410, 'Expired', 'too old resource version');
    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
    res.flushHeaders();
    if (tooOld) return this.#gone(res);
    if (from && from !== '0') {
      const rv = Number(from);
      for (const e of this.#history) {
        if (e.rv > rv && e.resource === resource && e.namespace === namespace && conn.selector(e.object.metadata.labels ?? {})) {
          this.#send(conn, { type: e.type, object: e.object });
        }
      }
    } else {
      for (const o of this.#bucket(resource).values()) {
        if (o.metadata.namespace === namespace && conn.selector(o.metadata.labels ?? {})) this.#send(conn, { type: 'ADDED', object: o });
      }
    }
    this.#watches.add(conn);
    res.on('close', () => this.#watches.delete(conn));
  }

  #gone(res: http.ServerResponse): void {
    res.end(
      JSON.stringify({
        type: 'ERROR',
        object: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'too old resource version', reason: 'Expired', code: 410 },
      }) + '\n',
    );
  }

  #send(w: WatchConn, event: object): void {
    w.res.write(JSON.stringify(event) + '\n');
  }

  #emit(type: HistoryEvent['type'], resource: string, namespace: string, object: Obj): void {
    const e: HistoryEvent = { rv: this.#rv, type, resource, namespace, object: clone(object) };
    this.#history.push(e);
    for (const w of this.#watches) {
      if (w.resource === resource && w.namespace === namespace && w.selector(object.metadata.labels ?? {})) {
        this.#send(w, { type, object: e.object });
      }
    }
  }

  #create(resource: string, namespace: string, obj: Obj): { obj: Obj } | { error: string; code: number; reason: string } {
    const name = obj.metadata?.name ?? (obj.metadata?.generateName ? obj.metadata.generateName + randomUUID().slice(0, 5) : undefined);
    if (!name) return { error: 'metadata.name is required', code: 422, reason: 'Invalid' };
    const bucket = this.#bucket(resource);
    if (bucket.has(`${namespace}/${name}`)) return { error: `${resource} "${name}" already exists`, code: 409, reason: 'AlreadyExists' };
    const { kind, apiVersion } = KINDS[resource] ?? { kind: obj.kind, apiVersion: obj.apiVersion };
    const stored: Obj = {
      ...obj,
      apiVersion: obj.apiVersion ?? apiVersion,
      kind: obj.kind ?? kind,
      metadata: {
        ...obj.metadata,
        name,
        namespace,
        uid: randomUUID(),
        resourceVersion: String(++this.#rv),
        generation: 1,
        creationTimestamp: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
      },
    };
    if (STATUS_SUBRESOURCE.has(resource)) delete stored.status;
    bucket.set(`${namespace}/${name}`, stored);
    this.#emit('ADDED', resource, namespace, stored);
    return { obj: stored };
  }

  #replace(resource: string, namespace: string, name: string, obj: Obj, statusOnly: boolean): { obj: Obj } | { error: string; code: number; reason: string } {
    const bucket = this.#bucket(resource);
    const cur = bucket.get(`${namespace}/${name}`);
    if (!cur) return { error: `${resource} "${name}" not found`, code: 404, reason: 'NotFound' };
    const rv = obj.metadata?.resourceVersion;
    if (rv !== undefined && rv !== '' && rv !== cur.metadata.resourceVersion) {
      return { error: 'the object has been modified; please apply your changes to the latest version and try again', code: 409, reason: 'Conflict' };
    }
    let next: Obj;
    if (statusOnly) {
      next = { ...clone(cur), status: obj.status };
    } else {
      next = { ...obj, apiVersion: cur.apiVersion, kind: cur.kind };
      next.metadata = { ...obj.metadata, name, namespace, uid: cur.metadata.uid, creationTimestamp: cur.metadata.creationTimestamp, generation: cur.metadata.generation };
      if (STATUS_SUBRESOURCE.has(resource)) {
        if (cur.status === undefined) delete next.status;
        else next.status = clone(cur.status);
      }
      if (JSON.stringify(cur.spec) !== JSON.stringify(next.spec)) next.metadata.generation = (cur.metadata.generation ?? 1) + 1;
    }
    if (JSON.stringify(stripRv(next)) === JSON.stringify(stripRv(cur))) return { obj: cur }; // no-op: no new resourceVersion, no event
    next.metadata.resourceVersion = String(++this.#rv);
    bucket.set(`${namespace}/${name}`, next);
    this.#emit('MODIFIED', resource, namespace, next);
    return { obj: next };
  }

  #delete(resource: string, namespace: string, name: string): void {
    const bucket = this.#bucket(resource);
    const cur = bucket.get(`${namespace}/${name}`);
    if (!cur) return;
    bucket.delete(`${namespace}/${name}`);
    cur.metadata.resourceVersion = String(++this.#rv);
    this.#emit('DELETED', resource, namespace, cur);
    // Background garbage collection: delete dependents whose ownerReferences name this uid.
    const uid = cur.metadata.uid;
    for (const [res, b] of this.#store) {
      for (const o of [...b.values()]) {
        if ((o.metadata.ownerReferences ?? []).some((r: Obj) => r.uid === uid)) this.#delete(res, o.metadata.namespace, o.metadata.name);
      }
    }
  }

  #bucket(resource: string): Map<string, Obj> {
    let b = this.#store.get(resource);
    if (!b) this.#store.set(resource, (b = new Map()));
    return b;
  }

  #notFound(res: http.ServerResponse, resource: string, name: string): void {
    this.#status(res, 404, 'NotFound', `${resource} "${name}" not found`);
  }

  #status(res: http.ServerResponse, code: number, reason: string, message: string): void {
    this.#json(res, code, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code });
  }

  #json(res: http.ServerResponse, code: number, body: unknown): void {
    const text = JSON.stringify(body);
    res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  }
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

function stripRv(o: Obj): Obj {
  return { ...o, metadata: { ...o.metadata, resourceVersion: undefined } };
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
