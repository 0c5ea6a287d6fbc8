// What every runtime driver (docker, process, servers) reports and offers. Drivers read actual state
// fresh on every list() call, so the controller can be level-triggered and adopt instances it started
// before a restart of its own.

import type { AppVersion } from '../appversion.js';
import type { Endpoint } from '../../common/protocol.js';

export type RuntimeKind = 'docker' | 'process' | 'servers';

export interface Instance {
  /** Docker container id, process registry id, or "servers-<appversion>-<index>". */
  id: string;
  runtime: RuntimeKind;
  app: string;
  /** AppVersion metadata.name. */
  versionName: string;
  specHash: string;
  /** Replica index, 0-based. */
  index: number;
  /** Always a loopback address for docker/process; null when not (or no longer) reachable. */
  endpoint: Endpoint | null;
  running: boolean;
  /** Set when the instance stopped and its exit status is known. */
  exitCode?: number;
  /** Unix time (ms). */
  startedAt: number;
  /** Human-readable state, e.g. "Up 3 seconds", "Exited (3) 2 seconds ago", "pid 1234". */
  detail?: string;
}

export interface RuntimeDriver {
  readonly kind: RuntimeKind;
  /** Actual state, read fresh each call; includes stopped instances until they are removed. */
  list(): Promise<Instance[]>;
  create(av: AppVersion, index: number): Promise<Instance>;
  /** Stop (SIGTERM / docker stop, SIGKILL after graceMs) and forget. Idempotent: an already gone
   *  instance is not an error. */
  remove(instance: Instance, opts?: { graceMs?: number }): Promise<void>;
}

/** Labels recorded on every instance (container labels, process registry entries). */
export const LABEL_APP = 'molt.dev/app';
export const LABEL_VERSION = 'molt.dev/version';
export const LABEL_APPVERSION = 'molt.dev/appversion';
export const LABEL_SPEC_HASH = 'molt.dev/spec-hash';
export const LABEL_INDEX = 'molt.dev/index';
export const LABEL_MANAGED_BY = 'molt.dev/managed-by';
/** The container port the instance's endpoint is published for (docker only). */
export const LABEL_PORT = 'molt.dev/port';
