// Docker runtime: one container per replica, labelled so that list() can find (and a restarted
// controller can adopt) everything this controller started. The application port is published on
// 127.0.0.1 only, on a free host port Docker picks; the endpoint is read back from Docker.
//
// molt never pulls images: an image missing locally is a MOLT_ERR_DOCKER naming the image.

import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Dockerode from 'dockerode';
import type { Logger } from 'pino';
import type { AppVersion, DockerRuntime } from '../appversion.js';
import { MoltError } from '../../common/errors.js';
import type { Endpoint } from '../../common/protocol.js';
import {
  LABEL_APP,
  LABEL_APPVERSION,
  LABEL_INDEX,
  LABEL_MANAGED_BY,
  LABEL_PORT,
  LABEL_SPEC_HASH,
  LABEL_VERSION,
  type Instance,
  type RuntimeDriver,
} from './types.js';

export const LOOPBACK = '127.0.0.1';
const DEFAULT_GRACE_MS = 10_000;

export interface DockerDriverOptions {
  /** Default: new Dockerode(), which honours DOCKER_HOST (unix:// or tcp://) and the default socket. */
  docker?: Dockerode;
  controllerId: string;
  log?: Logger;
}

/** "image:tag", leaving digests ("image@sha256:…") and already tagged references alone. */
export function imageRef(spec: Pick<DockerRuntime, 'image' | 'tag'>): string {
  if (spec.image.includes('@')) return spec.image;
  const lastSegment = spec.image.slice(spec.image.lastIndexOf('/') + 1);
  if (lastSegment.includes(':')) return spec.image;
  return `${spec.image}:${spec.tag || 'latest'}`;
}

/** Docker container names: [a-zA-Z0-9][a-zA-Z0-9_.-]*. */
function sanitizeName(name: string): string {
  const s = name.replace(/[^a-zA-Z0-9_.-]+/g, '-');
  return /^[a-zA-Z0-9]/.test(s) ? s : `m${s}`;
}

export function containerName(av: AppVersion, index: number): string {
  const spec = dockerSpec(av);
  if (spec.name) return sanitizeName(spec.replicas > 1 ? `${spec.name}-${index}` : spec.name);
  return sanitizeName(`molt-${av.spec.app}-${av.metadata.name}-${index}-${randomBytes(2).toString('hex')}`);
}

function dockerSpec(av: AppVersion): DockerRuntime {
  if (av.spec.runtime.kind !== 'docker') {
    throw new MoltError('MOLT_ERR_DOCKER', `AppVersion ${av.metadata.name} has runtime "${av.spec.runtime.kind}", not docker`, {
      file: av.source,
      path: 'spec.runtime',
    });
  }
  return av.spec.runtime.docker;
}

/** The full createContainer body for one replica: every thesis container option mapped. Pure, exported
 *  for tests. Published ports are always bound to 127.0.0.1. */
export function buildContainerOptions(av: AppVersion, index: number, controllerId: string, name: string): Dockerode.ContainerCreateOptions {
  const spec = dockerSpec(av);
  const mainPort = `${spec.containerPort}/tcp`;
  const exposed: Record<string, {}> = { [mainPort]: {} };
  const bindings: Record<string, Array<{ HostIp: string; HostPort: string }>> = {
    [mainPort]: [{ HostIp: LOOPBACK, HostPort: '' }],
  };
  for (const pb of spec.portBindings) {
    const key = `${pb.containerPort}/${pb.protocol}`;
    exposed[key] = {};
    (bindings[key] ??= []).push({ HostIp: LOOPBACK, HostPort: String(pb.hostPort) });
  }

  const hostConfig: Dockerode.HostConfig = {
    PortBindings: bindings,
    Binds: spec.binds.length ? [...spec.binds] : undefined,
    VolumesFrom: spec.volumesFrom.length ? [...spec.volumesFrom] : undefined,
    Links: spec.links.length ? [...spec.links] : undefined,
  };
  if (spec.memory !== undefined) hostConfig.Memory = spec.memory;
  if (spec.cpuShares !== undefined) hostConfig.CpuShares = spec.cpuShares;
  if (spec.privileged === true) hostConfig.Privileged = true;

  const opts: Dockerode.ContainerCreateOptions = {
    name,
    Image: imageRef(spec),
    Labels: {
      [LABEL_APP]: av.spec.app,
      [LABEL_VERSION]: av.spec.version,
      [LABEL_APPVERSION]: av.metadata.name,
      [LABEL_SPEC_HASH]: av.specHash,
      [LABEL_INDEX]: String(index),
      [LABEL_MANAGED_BY]: controllerId,
      [LABEL_PORT]: String(spec.containerPort),
    },
    ExposedPorts: exposed,
    Env: Object.entries(spec.env).map(([k, v]) => `${k}=${v}`),
    HostConfig: hostConfig,
  };
  if (spec.workingDir !== undefined) opts.WorkingDir = spec.workingDir;
  if (spec.entrypoint !== undefined) opts.Entrypoint = [...spec.entrypoint];
  if (spec.cmd !== undefined) opts.Cmd = [...spec.cmd];
  if (spec.hostname !== undefined) opts.Hostname = spec.hostname;
  if (spec.user !== undefined) opts.User = spec.user;
  if (spec.volumes.length) opts.Volumes = Object.fromEntries(spec.volumes.map((v) => [v, {}]));
  return opts;
}

interface DockerApiError {
  statusCode?: number;
  code?: string;
  reason?: string;
  json?: { message?: string } | null;
  message?: string;
}

function apiMessage(err: unknown): string {
  const e = err as DockerApiError;
  const m = e.json?.message ?? e.message ?? String(err);
  return m.trim();
}

/** Longer than any stop grace period molt asks for. */
const DOCKER_TIMEOUT_MS = 60_000;

export class DockerDriver implements RuntimeDriver {
  readonly kind = 'docker' as const;
  readonly #docker: Dockerode;
  readonly #controllerId: string;
  readonly #log: Logger | undefined;

  constructor(opts: DockerDriverOptions) {
    // DOCKER_HOST is honoured (docker-modem's defaults). A request timeout keeps a hung or
    // half-started daemon from stalling the reconcile loop forever (DOCKER_CLIENT_TIMEOUT overrides).
    this.#docker = opts.docker ?? new Dockerode(process.env.DOCKER_CLIENT_TIMEOUT ? undefined : { timeout: DOCKER_TIMEOUT_MS });
    this.#controllerId = opts.controllerId;
    this.#log = opts.log;
  }

  /** Where the daemon is, for messages. */
  get daemonAddress(): string {
    const m = this.#docker.modem as { socketPath?: string; host?: string; port?: number | string };
    return m.socketPath ? `unix://${m.socketPath}` : `tcp://${m.host ?? '?'}:${m.port ?? '?'}`;
  }

  /** Translate a dockerode error into MOLT_ERR_DOCKER with a message a user can act on. */
  #error(err: unknown, action: string, image?: string): MoltError {
    const e = err as DockerApiError;
    const msg = apiMessage(err);
    let text: string;
    if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED' || e.code === 'EACCES' || e.code === 'ECONNRESET') {
      text = `cannot reach the Docker daemon at ${this.daemonAddress} (${e.code}) while trying to ${action}; is dockerd running and DOCKER_HOST right?`;
    } else if (image && e.statusCode === 404 && /no such image|not found|pull access denied/i.test(msg)) {
      text = `image ${image} not found locally and cannot be pulled (molt does not pull images): build or load it first, e.g. docker build -t ${image} .`;
    } else if (e.statusCode === 409) {
      text = `cannot ${action}: ${msg} (a container with that name exists; remove it or drop spec.runtime.docker.name)`;
    } else {
      text = `cannot ${action}: ${msg}`;
    }
    return new MoltError('MOLT_ERR_DOCKER', text, {}, { cause: err });
  }

  async ping(): Promise<void> {
    try {
      await this.#docker.ping();
    } catch (err) {
      throw this.#error(err, 'ping the daemon');
    }
  }

  /** Local image id (sha256:…) of a reference such as "shop:2", or null when absent. */
  async imageId(ref: string): Promise<string | null> {
    try {
      const info = await this.#docker.getImage(ref).inspect();
      return info.Id;
    } catch (err) {
      if ((err as DockerApiError).statusCode === 404) return null;
      throw this.#error(err, `inspect image ${ref}`);
    }
  }

  async list(): Promise<Instance[]> {
    let containers: Dockerode.ContainerInfo[];
    try {
      containers = await this.#docker.listContainers({
        all: true,
        filters: { label: [`${LABEL_MANAGED_BY}=${this.#controllerId}`] },
      });
    } catch (err) {
      throw this.#error(err, 'list containers');
    }
    const out: Instance[] = [];
    for (const c of containers) {
      const labels = c.Labels ?? {};
      const running = c.State === 'running';
      const port = Number(labels[LABEL_PORT]);
      const published = c.Ports?.find((p) => p.PrivatePort === port && p.Type === 'tcp' && p.IP === LOOPBACK && p.PublicPort);
      const inst: Instance = {
        id: c.Id,
        runtime: 'docker',
        app: labels[LABEL_APP] ?? '',
        versionName: labels[LABEL_APPVERSION] ?? '',
        specHash: labels[LABEL_SPEC_HASH] ?? '',
        index: Number(labels[LABEL_INDEX] ?? 0),
        endpoint: running && published ? { host: LOOPBACK, port: published.PublicPort } : null,
        running,
        startedAt: c.Created * 1000,
        detail: c.Status,
      };
      if (!running) {
        // Exit code and reason live only in inspect; stopped containers are few, so ask for each.
        try {
          const info = await this.#docker.getContainer(c.Id).inspect();
          if (c.State === 'exited' || c.State === 'dead') inst.exitCode = info.State.ExitCode;
          const extra = [info.State.OOMKilled ? 'OOMKilled' : '', info.State.Error].filter(Boolean).join(', ');
          if (extra) inst.detail = `${c.Status}, ${extra}`;
        } catch (err) {
          if ((err as DockerApiError).statusCode !== 404) throw this.#error(err, `inspect container ${c.Id.slice(0, 12)}`);
          continue; // removed between list and inspect
        }
      }
      out.push(inst);
    }
    return out;
  }

  async create(av: AppVersion, index: number): Promise<Instance> {
    const spec = dockerSpec(av);
    const image = imageRef(spec);
    const name = containerName(av, index);
    const opts = buildContainerOptions(av, index, this.#controllerId, name);

    let container: Dockerode.Container;
    try {
      container = await this.#docker.createContainer(opts);
    } catch (err) {
      throw this.#error(err, `create container ${name} from ${image}`, image);
    }
    try {
      await container.start();
    } catch (err) {
      const moltErr = this.#error(err, `start container ${name} (${image})`, image);
      await container.remove({ force: true, v: true }).catch((e: unknown) => {
        this.#log?.warn({ err: e, container: name }, 'could not remove container that failed to start');
      });
      throw moltErr;
    }

    let info: Dockerode.ContainerInspectInfo;
    try {
      info = await container.inspect();
    } catch (err) {
      throw this.#error(err, `inspect container ${name}`);
    }
    const endpoint = publishedEndpoint(info, spec.containerPort);
    const running = info.State.Running;
    const inst: Instance = {
      id: info.Id,
      runtime: 'docker',
      app: av.spec.app,
      versionName: av.metadata.name,
      specHash: av.specHash,
      index,
      endpoint: running ? endpoint : null,
      running,
      startedAt: Date.parse(info.Created) || Date.now(),
      detail: running ? `started ${name}` : `${name} ${info.State.Status}`,
    };
    if (!running && info.State.Status === 'exited') inst.exitCode = info.State.ExitCode;
    this.#log?.info({ container: name, id: info.Id.slice(0, 12), image, endpoint: inst.endpoint }, 'container started');
    return inst;
  }

  async remove(instance: Instance, opts: { graceMs?: number } = {}): Promise<void> {
    const graceMs = opts.graceMs ?? DEFAULT_GRACE_MS;
    const container = this.#docker.getContainer(instance.id);
    try {
      await container.stop({ t: Math.max(0, Math.ceil(graceMs / 1000)) });
    } catch (err) {
      const status = (err as DockerApiError).statusCode;
      if (status === 404) return; // already gone
      if (status !== 304) throw this.#error(err, `stop container ${instance.id.slice(0, 12)}`);
    }
    try {
      await container.remove({ force: true, v: true });
    } catch (err) {
      const status = (err as DockerApiError).statusCode;
      // 404: gone; 409: "removal already in progress" (another remove raced us).
      if (status === 404 || (status === 409 && /already in progress/i.test(apiMessage(err)))) return;
      throw this.#error(err, `remove container ${instance.id.slice(0, 12)}`);
    }
    this.#log?.info({ id: instance.id.slice(0, 12), version: instance.versionName }, 'container removed');
  }
}

function publishedEndpoint(info: Dockerode.ContainerInspectInfo, containerPort: number): Endpoint | null {
  const ports = info.NetworkSettings?.Ports?.[`${containerPort}/tcp`] ?? [];
  const b = ports.find((p) => p.HostIp === LOOPBACK && p.HostPort) ?? null;
  return b ? { host: LOOPBACK, port: Number(b.HostPort) } : null;
}

// ---------------------------------------------------------------------------------------------------
// checkForNewImages
//
// Design: "a new image ID behind image:tag is a new version". The first image ID seen for an AppVersion
// with spec.docker.checkForNewImages is its base and its containers are pinned to it (created from the
// ID, not the tag, so a restarted replica never silently runs a newer build). Each later ID becomes a
// derived AppVersion, a normal version in every other respect (same app, transition mode, failure policy,
// health check; its own record, phases, rollback):
//   name     <name>-<first 12 hex of the image ID>            (containers: <spec.name>-<12 hex> if named)
//   version  <version without +build>.<n>+<12 hex>           e.g. 1.0.0 → 1.0.0.1+4c6055c99740
// The appended numeric part n (1, 2, …) makes generation n newer than the original and than n-1 under
// common/version-order.ts (which ignores +build), yet older than the next release (1.0.1). So a rebuild
// rolls out with the usual transition, and the previous generation stays ready as the rollback target.
// The last KEEP_DERIVED generations are kept; older ones leave the desired set and are drained/removed
// like a deleted file. An ID already seen (base or kept generation) is not a new version: retagging back
// to an old build does nothing (promote that version instead). Changing image/tag, turning the flag off
// or deleting the resource forgets the history. State lives in STATE/images.json, so a restarted
// controller rebuilds the same derived versions and adopts their containers.
// Limit: fixed host portBindings or a fixed container name cannot run two generations side by side
// (the name gets the suffix; host ports would clash and the new generation fails to start).

const KEEP_DERIVED = 2;

interface TrackedImage {
  ref: string;
  base: string;
  derived: Array<{ id: string; n: number }>;
}

/** Anything that can resolve an image reference to its local image ID (DockerDriver.imageId). */
export interface ImageResolver {
  imageId(ref: string): Promise<string | null>;
}

export function shortImageId(id: string): string {
  return id.replace(/^sha256:/, '').slice(0, 12);
}

/** 1.0.0 + generation 2 of image 4c6055c99740… → 1.0.0.2+4c6055c99740 (newer than 1.0.0, older than 1.0.1). */
export function derivedVersion(version: string, n: number, imageId: string): string {
  const plus = version.indexOf('+');
  return `${plus === -1 ? version : version.slice(0, plus)}.${n}+${shortImageId(imageId)}`;
}

function withImage(av: AppVersion, image: string, over: { name?: string; version?: string; specHash?: string } = {}): AppVersion {
  const docker = dockerSpec(av);
  const pinned: DockerRuntime = { ...docker, image };
  if (over.name && docker.name) pinned.name = `${docker.name}-${over.name.slice(over.name.lastIndexOf('-') + 1)}`;
  return {
    ...av,
    metadata: over.name ? { ...av.metadata, name: over.name } : av.metadata,
    spec: { ...av.spec, version: over.version ?? av.spec.version, runtime: { kind: 'docker', docker: pinned } },
    specHash: over.specHash ?? av.specHash,
  };
}

export class ImageTracker {
  readonly file: string;
  readonly #log: Logger | undefined;
  #entries: Record<string, TrackedImage> = {};
  #lastPoll = new Map<string, number>();
  #written = '';

  constructor(stateDir: string, log?: Logger) {
    this.file = path.join(stateDir, 'images.json');
    this.#log = log;
    try {
      this.#entries = (JSON.parse(fs.readFileSync(this.file, 'utf8')) as { images?: Record<string, TrackedImage> }).images ?? {};
      this.#written = this.#serialize();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.#log?.warn({ err, file: this.file }, 'cannot read image tracking state; starting fresh');
    }
  }

  get empty(): boolean {
    return Object.keys(this.#entries).length === 0;
  }

  /** Poll the image IDs that are due, then rewrite `desired` in place: originals pinned to their base
   *  image, derived versions added. Safe to repeat; a failed lookup keeps what is known. */
  async apply(desired: Map<string, AppVersion>, resolver: ImageResolver, now: number): Promise<void> {
    const watched = [...desired.values()].filter((av) => av.spec.runtime.kind === 'docker' && av.spec.runtime.docker.checkForNewImages);
    const names = new Set(watched.map((av) => av.metadata.name));
    for (const name of Object.keys(this.#entries)) {
      if (!names.has(name)) {
        delete this.#entries[name];
        this.#lastPoll.delete(name);
      }
    }
    for (const av of watched) {
      const name = av.metadata.name;
      const spec = dockerSpec(av);
      const ref = imageRef(spec);
      let e: TrackedImage | undefined = this.#entries[name];
      if (e && e.ref !== ref) {
        delete this.#entries[name];
        e = undefined;
      }
      if (!e || now - (this.#lastPoll.get(name) ?? 0) >= spec.imagePollIntervalMs) {
        this.#lastPoll.set(name, now);
        let id: string | null = null;
        try {
          id = await resolver.imageId(ref);
        } catch (err) {
          this.#log?.warn({ err, name, image: ref }, 'checkForNewImages: cannot inspect the image; will retry');
        }
        if (id && !e) {
          e = this.#entries[name] = { ref, base: id, derived: [] };
        } else if (id && e && id !== e.base && !e.derived.some((d) => d.id === id)) {
          const n = (e.derived.at(-1)?.n ?? 0) + 1;
          e.derived.push({ id, n });
          e.derived.splice(0, Math.max(0, e.derived.length - KEEP_DERIVED));
          this.#log?.info({ name, image: ref, imageId: shortImageId(id), version: derivedVersion(av.spec.version, n, id) }, 'checkForNewImages: new image behind the tag; rolling it out as a new version');
        }
      }
      if (!e) continue; // not built/loaded yet: creating the containers reports it
      desired.set(name, withImage(av, e.base));
      for (const d of e.derived) {
        const dname = `${name}-${shortImageId(d.id)}`;
        if (desired.has(dname)) {
          // desired is read fresh each reconcile: this is a user's resource with that name.
          this.#log?.warn({ name: dname }, 'checkForNewImages: an AppVersion already has the derived name; not deriving');
          continue;
        }
        const specHash = createHash('sha256').update(`${av.specHash}\0${d.id}`).digest('hex').slice(0, 16);
        desired.set(dname, withImage(av, d.id, { name: dname, version: derivedVersion(av.spec.version, d.n, d.id), specHash }));
      }
    }
    this.#persist();
  }

  #serialize(): string {
    const images: Record<string, TrackedImage> = {};
    for (const k of Object.keys(this.#entries).sort()) images[k] = this.#entries[k]!;
    return JSON.stringify({ images }, null, 2) + '\n';
  }

  #persist(): void {
    const text = this.#serialize();
    if (text === this.#written) return;
    const tmp = `${this.file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, text);
    fs.renameSync(tmp, this.file);
    this.#written = text;
  }
}
