// Compatibility with the thesis's Go proxy: its cluster JSON (REST API, Appendix I) and its config
// file ({proxy:{port}, configService:{port}, cluster:{…}}, section 5.5) map onto AppVersion.
//
// A thesis cluster is one version of the single app the proxy fronts: app "default" (default: true)
// unless the caller names one. Its `containers` list is the Go proxy's Docker config (image, tag,
// portToProxy, portBindings {"80/tcp": [{HostIp, HostPort}]}, env ["K=V"], …); molt runs one
// container spec per version, so exactly one container must carry portToProxy.

import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document } from 'yaml';
import type { AppVersion } from './appversion.js';
import { API_VERSION, KIND } from './appversion.js';
import { describe } from '../common/duration.js';
import { MoltError, MoltValidationErrors } from '../common/errors.js';
import { MAX_FILE_BYTES, normalizeAppVersion, suggest } from './load.js';
import { TRANSITION_MODES } from './schema.js';

export interface ThesisCluster {
  servers?: { hostname: string; port: number }[];
  containers?: unknown[];
  version?: string;
  upgradeTransition?: { mode?: string; sessionTimeout?: number; percentageTransitionPerRequest?: number };
}

type Raw = Record<string, unknown>;

const CLUSTER_FIELDS = ['servers', 'containers', 'version', 'upgradeTransition', 'uuid'];
const TRANSITION_FIELDS = ['mode', 'sessionTimeout', 'percentageTransitionPerRequest'];
const CONTAINER_FIELDS = [
  'image', 'tag', 'alwaysPull', 'portToProxy', 'name', 'workingDir', 'entrypoint', 'env', 'cmd', 'hostname',
  'volumes', 'volumesFrom', 'exposedPorts', 'publishAllPorts', 'portBindings', 'portSpecs', 'links', 'user',
  'memory', 'cpuShares', 'lxcConf', 'privileged',
];

function bad(path: string, message: string): MoltError {
  return new MoltError('MOLT_ERR_BAD_REQUEST', message, { path });
}

function isObject(v: unknown): v is Raw {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function onlyKnown(obj: Raw, known: string[], path: string): void {
  for (const k of Object.keys(obj)) {
    if (known.includes(k)) continue;
    const guess = suggest(k, known);
    throw bad(`${path}.${k}`, `unknown field ${path}.${k}${guess ? `; did you mean ${guess}?` : ''}`);
  }
}

function str(v: unknown, path: string): string {
  if (typeof v !== 'string') throw bad(path, `expected a string, got ${describe(v)}`);
  return v;
}

function portOf(v: unknown, path: string): number {
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 65535) throw bad(path, `expected a port number 1-65535, got ${describe(v)}`);
  return n;
}

function strList(v: unknown, path: string): string[] {
  if (!Array.isArray(v)) throw bad(path, `expected a list of strings, got ${describe(v)}`);
  return v.map((x, i) => str(x, `${path}[${i}]`));
}

/**
 * A thesis cluster (the body of PUT /configuration/cluster, with or without the {"cluster": …}
 * wrapper) as a raw AppVersion object. Throws MoltError MOLT_ERR_BAD_REQUEST with a field path.
 */
export function thesisClusterToRaw(cluster: unknown, uuid: string, app?: string): object {
  let c = cluster;
  if (isObject(c) && 'cluster' in c && Object.keys(c).length === 1) c = c.cluster;
  const at = 'cluster';
  if (!isObject(c)) throw bad(at, `expected a cluster object, got ${describe(c)}`);
  onlyKnown(c, CLUSTER_FIELDS, at);

  const spec: Raw = {};
  if (app !== undefined) spec.app = app;
  else {
    spec.app = 'default';
    spec.default = true;
  }
  if (c.version === undefined) spec.version = '0.0';
  else if (typeof c.version === 'number' && Number.isFinite(c.version)) spec.version = String(c.version);
  else spec.version = str(c.version, `${at}.version`);

  if (c.upgradeTransition !== undefined) spec.transition = transition(c.upgradeTransition, `${at}.upgradeTransition`);

  if (c.servers !== undefined && c.containers !== undefined) throw bad(`${at}.containers`, 'give either servers or containers, not both');
  if (c.servers !== undefined) {
    if (!Array.isArray(c.servers) || c.servers.length === 0) throw bad(`${at}.servers`, `"servers" must be a list with at least one entry, got ${describe(c.servers)}`);
    spec.servers = c.servers.map((s, i) => {
      const p = `${at}.servers[${i}]`;
      if (!isObject(s)) throw bad(p, `expected {"hostname": …, "port": …}, got ${describe(s)}`);
      onlyKnown(s, ['hostname', 'ip', 'port'], p);
      const host = s.hostname ?? s.ip;
      if (typeof host !== 'string' || host === '') throw bad(`${p}.hostname`, `expected a host name or IP address, got ${describe(host)}`);
      return { host, port: portOf(s.port, `${p}.port`) };
    });
  } else if (c.containers !== undefined) {
    spec.docker = containers(c.containers, `${at}.containers`);
  } else {
    throw bad(at, 'a cluster must contain a "servers" or a "containers" list');
  }

  const raw = {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: { name: `cluster-${uuid.toLowerCase().replace(/[^a-z0-9]/g, '').slice(0, 8)}` },
    spec,
  };
  // Anything the thesis checks above missed (e.g. a bad host name) is still a bad request.
  try {
    normalizeAppVersion(raw, 'thesis');
  } catch (err) {
    if (!(err instanceof MoltValidationErrors)) throw err;
    const first = err.errors[0]!;
    throw new MoltError('MOLT_ERR_BAD_REQUEST', first.message, { path: thesisPath(first.location.path ?? '') }, { cause: err });
  }
  return raw;
}

function transition(v: unknown, path: string): Raw {
  if (!isObject(v)) throw bad(path, `expected an object with "mode", got ${describe(v)}`);
  onlyKnown(v, TRANSITION_FIELDS, path);
  // As in the Go proxy: an upgradeTransition without mode means SESSION.
  const mode = v.mode === undefined ? 'SESSION' : str(v.mode, `${path}.mode`);
  if (!(TRANSITION_MODES as readonly string[]).includes(mode)) {
    throw bad(`${path}.mode`, `expected one of ${TRANSITION_MODES.join(', ')}, got ${describe(v.mode)}`);
  }
  const out: Raw = { mode };
  if (v.sessionTimeout !== undefined) {
    if (mode !== 'SESSION') throw bad(`${path}.sessionTimeout`, '"sessionTimeout" is only supported for mode SESSION');
    if (typeof v.sessionTimeout !== 'number' || !Number.isInteger(v.sessionTimeout) || v.sessionTimeout <= 0) {
      throw bad(`${path}.sessionTimeout`, `expected a whole number of seconds > 0, got ${describe(v.sessionTimeout)}`);
    }
    out.sessionTimeout = v.sessionTimeout;
  }
  if (v.percentageTransitionPerRequest !== undefined) {
    if (mode !== 'GRADUAL') throw bad(`${path}.percentageTransitionPerRequest`, '"percentageTransitionPerRequest" is only supported for mode GRADUAL');
    const pct = v.percentageTransitionPerRequest;
    if (typeof pct !== 'number' || !(pct > 0 && pct <= 100)) throw bad(`${path}.percentageTransitionPerRequest`, `expected a number > 0 and <= 100, got ${describe(pct)}`);
    out.percentagePerRequest = pct;
  } else if (mode === 'GRADUAL') {
    throw bad(`${path}.percentageTransitionPerRequest`, '"percentageTransitionPerRequest" must be specified for mode GRADUAL');
  }
  return out;
}

function containers(v: unknown, path: string): Raw {
  if (!Array.isArray(v) || v.length === 0) throw bad(path, `"containers" must be a list with at least one entry, got ${describe(v)}`);
  const proxied = v.map((c, i) => (isObject(c) && c.portToProxy !== undefined ? i : -1)).filter((i) => i >= 0);
  if (proxied.length !== 1) {
    throw bad(path, proxied.length === 0
      ? 'one container must have "portToProxy" (the port molt routes to)'
      : `only one container may have "portToProxy" (molt runs one container spec per version); found ${proxied.length}`);
  }
  if (v.length > 1) {
    const other = v.findIndex((_, i) => i !== proxied[0]);
    throw bad(`${path}[${other}]`, 'helper containers without "portToProxy" are not supported: start them separately and use "links"');
  }
  const p = `${path}[0]`;
  const c = v[0];
  if (!isObject(c)) throw bad(p, `expected a container object, got ${describe(c)}`);
  onlyKnown(c, CONTAINER_FIELDS, p);
  const d: Raw = { image: str(c.image, `${p}.image`) };
  if (c.tag !== undefined) d.tag = typeof c.tag === 'number' ? String(c.tag) : str(c.tag, `${p}.tag`);
  const portToProxy = portOf(c.portToProxy, `${p}.portToProxy`);

  // portBindings {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}: the binding whose host port is
  // portToProxy names the container port molt routes to; the rest become extra published ports.
  let containerPort = portToProxy;
  const bindings: Raw[] = [];
  if (c.portBindings !== undefined) {
    if (!isObject(c.portBindings)) throw bad(`${p}.portBindings`, `expected {"<port>/<protocol>": [{"HostPort": "…"}]}, got ${describe(c.portBindings)}`);
    for (const [spec, list] of Object.entries(c.portBindings)) {
      const bp = `${p}.portBindings["${spec}"]`;
      const m = /^(\d+)(?:\/(tcp|udp))?$/.exec(spec);
      if (!m) throw bad(bp, `expected a key like "80/tcp", got ${JSON.stringify(spec)}`);
      const cport = portOf(Number(m[1]), bp);
      const protocol = m[2] ?? 'tcp';
      if (!Array.isArray(list)) throw bad(bp, `expected a list of {"HostPort": "…"}, got ${describe(list)}`);
      list.forEach((b, i) => {
        if (!isObject(b)) throw bad(`${bp}[${i}]`, `expected {"HostPort": "…"}, got ${describe(b)}`);
        const hostPort = portOf(b.HostPort, `${bp}[${i}].HostPort`);
        if (hostPort === portToProxy && protocol === 'tcp') containerPort = cport;
        else bindings.push({ containerPort: cport, hostPort, protocol });
      });
    }
  }
  d.containerPort = containerPort;
  if (bindings.length) d.portBindings = bindings;

  for (const k of ['name', 'workingDir', 'hostname', 'user'] as const) if (c[k] !== undefined) d[k] = str(c[k], `${p}.${k}`);
  for (const k of ['entrypoint', 'cmd', 'volumesFrom', 'links'] as const) if (c[k] != null) d[k] = strList(c[k], `${p}.${k}`);
  if (c.env != null) {
    const env: Record<string, string> = {};
    if (isObject(c.env)) for (const [k, x] of Object.entries(c.env)) env[k] = String(x);
    else strList(c.env, `${p}.env`).forEach((kv, i) => {
      const eq = kv.indexOf('=');
      if (eq <= 0) throw bad(`${p}.env[${i}]`, `expected "NAME=value", got ${JSON.stringify(kv)}`);
      env[kv.slice(0, eq)] = kv.slice(eq + 1);
    });
    d.env = env;
  }
  if (c.volumes != null) {
    // A list (or the Docker API's {"/path": {}} map); "host:container" entries are bind mounts.
    const list = isObject(c.volumes) ? Object.keys(c.volumes) : strList(c.volumes, `${p}.volumes`);
    const volumes = list.filter((x) => !x.includes(':'));
    const binds = list.filter((x) => x.includes(':'));
    if (volumes.length) d.volumes = volumes;
    if (binds.length) d.binds = binds;
  }
  if (c.memory !== undefined && c.memory !== 0) {
    if (typeof c.memory !== 'number' && typeof c.memory !== 'string') throw bad(`${p}.memory`, `expected a number of bytes, got ${describe(c.memory)}`);
    d.memory = c.memory;
  }
  if (c.cpuShares !== undefined && c.cpuShares !== 0) d.cpuShares = c.cpuShares;
  for (const [from, to] of [['privileged', 'privileged'], ['alwaysPull', 'checkForNewImages']] as const) {
    if (c[from] === undefined) continue;
    if (typeof c[from] !== 'boolean') throw bad(`${p}.${from}`, `expected true or false, got ${describe(c[from])}`);
    d[to] = c[from];
  }
  if (c.publishAllPorts === true) throw bad(`${p}.publishAllPorts`, 'publishAllPorts is not supported; list the ports in portBindings');
  if (c.lxcConf != null && !(Array.isArray(c.lxcConf) ? c.lxcConf.length === 0 : isObject(c.lxcConf) && Object.keys(c.lxcConf).length === 0)) {
    throw bad(`${p}.lxcConf`, 'lxcConf is not supported (Docker no longer has the LXC driver)');
  }
  // exposedPorts and portSpecs only document ports; molt publishes what it routes to itself.
  return d;
}

/** Map an AppVersion error path back to the thesis field that produced it, roughly. */
function thesisPath(path: string): string {
  const rules: Array<[RegExp, string]> = [
    [/^spec\.servers\[(\d+)\]\.host/, 'cluster.servers[$1].hostname'],
    [/^spec\.servers\[(\d+)\]\.port/, 'cluster.servers[$1].port'],
    [/^spec\.version/, 'cluster.version'],
    [/^spec\.transition\.percentagePerRequest/, 'cluster.upgradeTransition.percentageTransitionPerRequest'],
    [/^spec\.transition\.(\w+)/, 'cluster.upgradeTransition.$1'],
    [/^spec\.docker\.checkForNewImages/, 'cluster.containers[0].alwaysPull'],
    [/^spec\.docker\.(\w+)/, 'cluster.containers[0].$1'],
    [/^spec\.app/, 'app'],
  ];
  for (const [re, to] of rules) if (re.test(path)) return path.replace(re, to).replace(/^(cluster\.containers\[0\]\.[^.[]+).*$/, '$1');
  return 'cluster';
}

/**
 * An AppVersion as the thesis GET /configuration/cluster/{id} answer: {cluster: {servers,
 * upgradeTransition, uuid, version}}. Accepts a normalised AppVersion or the raw resource.
 * `endpoints` gives the servers of process/docker runtimes (only known while running).
 */
export function appVersionToThesisCluster(av: AppVersion, uuid: string, endpoints?: Array<{ host: string; port: number }>): object {
  const resource = (av as { spec?: { runtime?: unknown } }).spec?.runtime ? av : normalizeAppVersion(av, 'thesis');
  const { spec } = resource;
  const eps = spec.runtime.kind === 'servers' ? spec.runtime.servers : endpoints ?? [];
  const t = spec.transition;
  const upgradeTransition: Raw = { mode: t.mode };
  if (t.mode === 'SESSION') upgradeTransition.sessionTimeout = t.sessionTimeoutSeconds;
  if (t.mode === 'GRADUAL' && t.percentagePerRequest !== undefined) upgradeTransition.percentageTransitionPerRequest = t.percentagePerRequest;
  return {
    cluster: {
      servers: eps.map((e) => ({ hostname: e.host, port: e.port })),
      upgradeTransition,
      uuid,
      version: spec.version,
    },
  };
}

/** A uuid derived from the file and the cluster's position, so restarts keep the same names. */
function stableUuid(file: string, index: number): string {
  const h = createHash('sha256').update(`${file}#${index}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

/**
 * The thesis proxy's JSON config file: {"proxy": {"port"}, "configService": {"port"}, "cluster": {…} | [{…}]}.
 * Errors are MOLT_ERR_CONFIG_FILE with the file, field path and (when known) line and column.
 */
export async function loadThesisConfigFile(path: string): Promise<{ proxyPort?: number; adminPort?: number; raws: object[]; uuids: string[] }> {
  let text: string;
  try {
    const { size } = await stat(path);
    if (size > MAX_FILE_BYTES) throw new Error(`file is ${size} bytes; config files may be at most 1 MiB`);
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new MoltError('MOLT_ERR_CONFIG_FILE', `cannot read config file: ${(err as Error).message}`, { file: path }, { cause: err });
  }
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const pos = e.linePos?.[0] ?? lineCounter.linePos(e.pos[0]);
    throw new MoltError('MOLT_ERR_CONFIG_FILE', `not valid JSON: ${e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`, { file: path, line: pos.line, column: pos.col });
  }
  const fail = (fieldPath: string, message: string, cause?: unknown): MoltError => {
    const pos = positionOf(doc, lineCounter, fieldPath);
    return new MoltError('MOLT_ERR_CONFIG_FILE', message, { file: path, ...pos, path: fieldPath }, cause ? { cause } : undefined);
  };
  const json: unknown = doc.toJS();
  if (!isObject(json)) throw fail('', `expected a JSON object with "proxy", "configService" and "cluster", got ${describe(json)}`);
  const known = ['proxy', 'configService', 'cluster', 'dockerHost'];
  for (const k of Object.keys(json)) {
    if (known.includes(k)) continue;
    const guess = suggest(k, known);
    throw fail(k, `unknown field ${k}${guess ? `; did you mean ${guess}?` : ''}`);
  }
  const portField = (section: 'proxy' | 'configService'): number | undefined => {
    const s = json[section];
    if (s === undefined) return undefined;
    if (!isObject(s)) throw fail(section, `expected {"port": …}, got ${describe(s)}`);
    for (const k of Object.keys(s)) if (k !== 'port') throw fail(`${section}.${k}`, `unknown field ${section}.${k}`);
    if (s.port === undefined) throw fail(section, `missing ${section}.port`);
    if (typeof s.port !== 'number' || !Number.isInteger(s.port) || s.port < 1 || s.port > 65535) {
      throw fail(`${section}.port`, `expected a port number 1-65535, got ${describe(s.port)}`);
    }
    return s.port;
  };
  const out: { proxyPort?: number; adminPort?: number; raws: object[]; uuids: string[] } = { raws: [], uuids: [] };
  const proxyPort = portField('proxy');
  const adminPort = portField('configService');
  if (proxyPort !== undefined) out.proxyPort = proxyPort;
  if (adminPort !== undefined) out.adminPort = adminPort;

  const clusters = json.cluster === undefined ? [] : Array.isArray(json.cluster) ? json.cluster : [json.cluster];
  clusters.forEach((cluster, i) => {
    const prefix = Array.isArray(json.cluster) ? `cluster[${i}]` : 'cluster';
    const uuid = isObject(cluster) && typeof cluster.uuid === 'string' ? cluster.uuid : stableUuid(path, i);
    try {
      out.raws.push(thesisClusterToRaw(cluster, uuid));
      out.uuids.push(uuid);
    } catch (err) {
      if (!(err instanceof MoltError)) throw err;
      const fieldPath = (err.location.path ?? 'cluster').replace(/^cluster/, prefix);
      throw fail(fieldPath, err.message, err);
    }
  });
  return out;
}

/** Line and column of a field path like cluster[0].servers[1].port (nearest existing node). */
function positionOf(doc: Document, lc: LineCounter, fieldPath: string): { line?: number; column?: number } {
  const segs: Array<string | number> = [];
  for (const m of fieldPath.matchAll(/([^.[\]"]+)|\[(\d+)\]|\["([^"]*)"\]/g)) {
    if (m[2] !== undefined) segs.push(Number(m[2]));
    else segs.push(m[3] ?? m[1]!);
  }
  let node: unknown = doc.contents;
  let offset = (node as { range?: [number] } | null)?.range?.[0];
  for (const seg of segs) {
    if (isMap(node)) {
      const pair = node.items.find((it) => isScalar(it.key) && String(it.key.value) === String(seg));
      if (!pair) break;
      offset = (pair.key as { range?: [number] }).range?.[0] ?? offset;
      node = pair.value;
      if (isScalar(node) && node.range) offset = node.range[0];
    } else if (isSeq(node) && typeof seg === 'number' && node.items[seg]) {
      node = node.items[seg];
      offset = (node as { range?: [number] }).range?.[0] ?? offset;
    } else break;
  }
  if (offset === undefined) return {};
  const pos = lc.linePos(offset);
  return { line: pos.line, column: pos.col };
}
