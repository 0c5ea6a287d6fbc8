// Durable per-AppVersion status under the state dir. The one thing that must survive a restart
// is a rollback: a restarted controller must never route to a rolled-back version again.
// Writes are atomic (tmp + rename) and skipped when nothing changed.

import fs from 'node:fs';
import path from 'node:path';
import type { Phase, PreflightRejectReason } from './phase.js';
import type { PreflightEvidence } from './preflight.js';
import type { GateState } from './analysis/gate.js';

/** One rollout of one AppVersion (a new or changed spec starts a new record). Not the sidecar's per-version
 *  routing state (sidecar/routing.ts), which is a different thing. */
export interface RolloutRecord {
  name: string;
  app: string;
  version: string;
  /** The spec this record describes; a changed spec starts a fresh rollout (new record). */
  specHash: string;
  phase: Phase;
  reason: string;
  message: string;
  /** The admission epoch (a counter, not a time): bumped when the spec changes or a rolled-back version is
   *  re-admitted by `molt promote APP VERSION`, so the sidecar forgets failures of an earlier admission.
   *  Kubernetes mode uses metadata.generation for it. */
  epoch: number;
  promoted: boolean;
  /** Unix time (ms) it first got traffic (0 = never). */
  servingSince: number;
  /** ISO timestamps keyed by event: created, ready, testing, serving, promoted, rolledBack, failed, rejected, draining. */
  timestamps: Record<string, string>;
  /** ISO time the current phase was entered (absent: since `created`). */
  phaseSince?: string;
  /** spec.preflight's verdict for this rollout (issue 11): durable like a rollback, cleared by a new spec. */
  preflight?: {
    verdict: 'pass' | 'fail' | 'overridden';
    reason?: PreflightRejectReason;
    message: string;
    evidence?: PreflightEvidence;
  };
  /** Canary analysis (issue 12) of this rollout: current step, its start, the open window with its start
   *  snapshots, the last runs. Durable so a restarted controller resumes the same step and window. */
  analysis?: GateState;
}

interface StateFile {
  versions: Record<string, RolloutRecord>;
}

export class StateStore {
  readonly file: string;
  #versions = new Map<string, RolloutRecord>();
  #lastWritten = '';

  constructor(stateDir: string) {
    fs.mkdirSync(stateDir, { recursive: true });
    this.file = path.join(stateDir, 'status.json');
    try {
      const parsed = JSON.parse(fs.readFileSync(this.file, 'utf8')) as StateFile;
      for (const [name, rec] of Object.entries(parsed.versions ?? {})) this.#versions.set(name, rec);
      this.#lastWritten = this.#serialize();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        // A corrupt state file must not stop molt from serving; keep it aside for inspection.
        fs.renameSync(this.file, `${this.file}.corrupt-${Date.now()}`);
      }
    }
  }

  get(name: string): RolloutRecord | undefined {
    return this.#versions.get(name);
  }

  all(): RolloutRecord[] {
    return [...this.#versions.values()];
  }

  set(rec: RolloutRecord): void {
    this.#versions.set(rec.name, rec);
  }

  delete(name: string): void {
    this.#versions.delete(name);
  }

  /** Persist if anything changed since the last write. Returns true when written. */
  flush(): boolean {
    const text = this.#serialize();
    if (text === this.#lastWritten) return false;
    const tmp = `${this.file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, text);
    fs.renameSync(tmp, this.file);
    this.#lastWritten = text;
    return true;
  }

  #serialize(): string {
    const versions: Record<string, RolloutRecord> = {};
    for (const name of [...this.#versions.keys()].sort()) versions[name] = this.#versions.get(name)!;
    return JSON.stringify({ versions }, null, 2) + '\n';
  }
}
