// Docker runtime: one container per replica, labelled so that list() can find (and a restarted
// controller can adopt) everything this controller started. The application port is published on
// 127.0.0.1 only, on a free host port Docker picks; the endpoint is read back from Docker.
//
// molt never pulls images: an image missing locally is a MOLT_ERR_DOCKER naming the image.

import { randomBytes } from 'node:crypto';
import Dockerode from 'dockerode';
import type { Logger } from 'pino';
import type { AppVersion, DockerRuntime } from '../appversion.js';
import { MoltError } from '../errors.js';
import type { Endpoint } from '../../sidecar/protocol.js';
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

export class DockerDriver implements RuntimeDriver {
  readonly kind = 'docker' as const;
  readonly #docker: Dockerode;
  readonly #controllerId: string;
  readonly #log: Logger | undefined;

  constructor(opts: DockerDriverOptions) {
    this.#docker = opts.docker ?? new Dockerode();
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
