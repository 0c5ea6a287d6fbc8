// Builds the sidecar's routing table from AppVersions plus what the controller observed
// (ready endpoints, rollback state). Shared by local mode and Kubernetes mode, so every
// controller replica computes the identical table from the same inputs.

import type { AppVersion } from './appversion.js';
import { compareVersions } from '../common/version-order.js';
import type { Endpoint, RouteApp, RouteVersion, RoutingTable, VersionState } from '../common/protocol.js';

export interface VersionRouting {
  av: AppVersion;
  /** Ready endpoints only. A version with none is left out of the table. */
  endpoints: Endpoint[];
  state: VersionState;
  epoch: number;
  servingSince: number;
  promoted: boolean;
  /** GRADUAL under canary analysis: the step the controller holds (RouteVersion.currentStep). */
  currentStep?: number;
}

/** Newest first by spec.version (semver-aware), then by name for a stable order. */
export function sortNewestFirst<T extends { av: AppVersion }>(list: T[]): T[] {
  return list.sort((a, b) => compareVersions(b.av.spec.version, a.av.spec.version) || a.av.metadata.name.localeCompare(b.av.metadata.name));
}

export function buildRoutingTable(revision: number, versions: VersionRouting[]): RoutingTable {
  const byApp = new Map<string, VersionRouting[]>();
  for (const v of versions) {
    if (v.endpoints.length === 0) continue;
    let list = byApp.get(v.av.spec.app);
    if (!list) byApp.set(v.av.spec.app, (list = []));
    list.push(v);
  }
  const apps: RouteApp[] = [];
  for (const [name, list] of [...byApp].sort(([a], [b]) => a.localeCompare(b))) {
    sortNewestFirst(list);
    const newest = list[0].av.spec;
    const hosts = new Set<string>();
    for (const v of list) for (const h of v.av.spec.hosts) hosts.add(h.toLowerCase());
    apps.push({
      name,
      hosts: [...hosts].sort(),
      default: list.some((v) => v.av.spec.default),
      versionCookie: newest.versionCookie,
      bucketCookie: newest.bucketCookie,
      versions: list.map((v): RouteVersion => ({
        id: v.av.metadata.name,
        version: v.av.spec.version,
        epoch: v.epoch,
        state: v.state,
        transition: v.av.spec.transition,
        failurePolicy: v.av.spec.failurePolicy,
        endpoints: [...v.endpoints].sort((a, b) => a.host.localeCompare(b.host) || a.port - b.port),
        servingSince: v.servingSince,
        promoted: v.promoted,
        ...(v.currentStep !== undefined ? { currentStep: v.currentStep } : {}),
      })),
    });
  }
  // With a single app and no explicit default, that app takes everything: the common local case.
  if (apps.length === 1 && !apps[0].default && apps[0].hosts.length === 0) apps[0].default = true;
  return { revision, apps };
}

/** Tables are equal apart from the revision: used to skip no-op pushes. */
export function sameRoutes(a: RoutingTable | null, b: RoutingTable): boolean {
  if (!a) return false;
  return JSON.stringify(a.apps) === JSON.stringify(b.apps);
}
