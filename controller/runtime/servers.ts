// "servers" runtime: the instances are servers that already run somewhere; molt neither starts nor
// stops them. list() derives from the resources last given to setResources(): one instance per listed
// server, always running:true. remove() only hides an instance (so a level-triggered controller does not
// remove it again on every reconcile); create() or a changed spec shows it again.

import type { AppVersion } from '../appversion.js';
import { MoltError } from '../../common/errors.js';
import type { Endpoint } from '../../common/protocol.js';
import type { Instance, RuntimeDriver } from './types.js';

function instanceId(versionName: string, index: number): string {
  return `servers-${versionName}-${index}`;
}

export class ServersDriver implements RuntimeDriver {
  readonly kind = 'servers' as const;
  /** AppVersion name → resource, as last given (plus any passed to create()). */
  #resources = new Map<string, AppVersion>();
  /** Instance id → the resource name and specHash it was removed at. */
  #removed = new Map<string, { versionName: string; specHash: string }>();
  /** Instance id → first time it was seen, so startedAt stays stable across setResources calls. */
  #firstSeen = new Map<string, number>();

  /** Replace the set of servers-runtime resources; others are ignored. */
  setResources(avs: readonly AppVersion[]): void {
    this.#resources = new Map(avs.filter((av) => av.spec.runtime.kind === 'servers').map((av) => [av.metadata.name, av]));
    const live = new Set<string>();
    for (const av of this.#resources.values()) {
      for (let i = 0; i < servers(av).length; i++) live.add(instanceId(av.metadata.name, i));
    }
    for (const id of [...this.#firstSeen.keys()]) if (!live.has(id)) this.#firstSeen.delete(id);
    for (const [id, at] of [...this.#removed]) {
      if (!live.has(id) || this.#resources.get(at.versionName)?.specHash !== at.specHash) this.#removed.delete(id);
    }
  }

  #instance(av: AppVersion, index: number, endpoint: Endpoint): Instance {
    const id = instanceId(av.metadata.name, index);
    let seen = this.#firstSeen.get(id);
    if (seen === undefined) {
      seen = Date.now();
      this.#firstSeen.set(id, seen);
    }
    return {
      id,
      runtime: 'servers',
      app: av.spec.app,
      versionName: av.metadata.name,
      specHash: av.specHash,
      index,
      endpoint: { host: endpoint.host, port: endpoint.port },
      running: true,
      startedAt: seen,
      detail: `server ${endpoint.host}:${endpoint.port}`,
    };
  }

  async list(): Promise<Instance[]> {
    const out: Instance[] = [];
    for (const av of this.#resources.values()) {
      servers(av).forEach((ep, i) => {
        if (!this.#removed.has(instanceId(av.metadata.name, i))) out.push(this.#instance(av, i, ep));
      });
    }
    return out;
  }

  async create(av: AppVersion, index: number): Promise<Instance> {
    const list = servers(av);
    const ep = list[index];
    if (!ep) {
      throw new MoltError('MOLT_ERR_VALIDATION', `AppVersion ${av.metadata.name} lists ${list.length} server(s); there is no server #${index}`, {
        file: av.source,
        path: `spec.runtime.servers[${index}]`,
      });
    }
    if (!this.#resources.has(av.metadata.name) || this.#resources.get(av.metadata.name)!.specHash !== av.specHash) {
      this.#resources.set(av.metadata.name, av);
    }
    this.#removed.delete(instanceId(av.metadata.name, index));
    return this.#instance(av, index, ep);
  }

  async remove(instance: Instance): Promise<void> {
    this.#removed.set(instance.id, { versionName: instance.versionName, specHash: instance.specHash });
  }
}

function servers(av: AppVersion): Endpoint[] {
  if (av.spec.runtime.kind !== 'servers') {
    throw new MoltError('MOLT_ERR_VALIDATION', `AppVersion ${av.metadata.name} has runtime "${av.spec.runtime.kind}", not servers`, {
      file: av.source,
      path: 'spec.runtime',
    });
  }
  return av.spec.runtime.servers;
}
