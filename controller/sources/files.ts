// Desired state in local mode: AppVersion YAML/JSON files in a folder (plus the resources applied
// through the admin API, stored as files under the state dir). chokidar only tells us *that*
// something changed; every reconcile re-reads the folder fresh (level-triggered).
//
// A file that fails to parse keeps contributing the resources of its last good version, so a
// half-written or broken file never disturbs what is serving. Its error is reported instead.

import fs from 'node:fs';
import path from 'node:path';
import chokidar, { type FSWatcher } from 'chokidar';
import type { Logger } from 'pino';
import type { AppVersion } from '../appversion.js';
import type { ResourceError } from '../controller-api.js';
import { MoltError } from '../../common/errors.js';
import { loadAppVersionFile } from '../load.js';

const RESOURCE_FILE = /\.(ya?ml|json)$/i;
const SETTLE_MS = 200;
const DELETE_GRACE_MS = 500;
const MAX_DEPTH = 4;

export interface DesiredState {
  resources: Map<string, AppVersion>;
  errors: ResourceError[];
}

interface FileEntry {
  mtimeMs: number;
  size: number;
  ino: number;
  resources: AppVersion[];
  error: MoltError[];
  /** Resources from the last version of this file that parsed cleanly. */
  lastGood: AppVersion[];
  /** Unix time (ms) since when the file is missing (0 = present). */
  missingSince?: number;
}

export class FileSource {
  readonly dirs: string[];
  #log: Logger | undefined;
  #watcher: FSWatcher | null = null;
  #cache = new Map<string, FileEntry>();
  #debounceMs: number;
  #timer: NodeJS.Timeout | null = null;

  /** Folders only written atomically (write + rename) by molt itself: no settle delay needed. */
  #atomicDirs: string[];

  constructor(opts: { dirs: string[]; atomicDirs?: string[]; log?: Logger; debounceMs?: number }) {
    this.dirs = opts.dirs.map((d) => path.resolve(d));
    this.#atomicDirs = (opts.atomicDirs ?? []).map((d) => path.resolve(d));
    this.#log = opts.log;
    this.#debounceMs = opts.debounceMs ?? 150;
  }

  /** Watch the folders; onChange is called (debounced) after any add, change or delete. */
  async watch(onChange: () => void): Promise<void> {
    for (const d of this.dirs) fs.mkdirSync(d, { recursive: true });
    const fire = () => {
      if (this.#timer) clearTimeout(this.#timer);
      this.#timer = setTimeout(() => { this.#timer = null; onChange(); }, this.#debounceMs);
    };
    const watcher = chokidar.watch(this.dirs, {
      ignoreInitial: true,
      depth: MAX_DEPTH,
      // Editors often write in several steps; wait until the size settles before reacting.
      awaitWriteFinish: { stabilityThreshold: 100, pollInterval: 25 },
    });
    watcher.on('all', fire);
    watcher.on('error', (err) => this.#log?.warn({ err }, 'file watcher error'));
    await new Promise<void>((resolve) => watcher.once('ready', () => resolve()));
    this.#watcher = watcher;
  }

  async close(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer);
    await this.#watcher?.close();
    this.#watcher = null;
  }

  /** Read every resource file fresh (unchanged files come from a stat-keyed cache). */
  async read(): Promise<DesiredState> {
    const files: string[] = [];
    for (const d of this.dirs) listFiles(d, 0, files, new Set());
    const seen = new Set(files);
    // A file that just vanished may be mid-replace (delete + re-create, an editor's save): its last
    // good resources stay for DELETE_GRACE_MS before the deletion counts.
    const now = Date.now();
    for (const [f, entry] of this.#cache) {
      if (seen.has(f)) {
        entry.missingSince = 0;
        continue;
      }
      entry.missingSince ||= now;
      if (now - entry.missingSince >= DELETE_GRACE_MS || this.#atomicDirs.some((d) => f.startsWith(d + path.sep))) this.#cache.delete(f);
      else files.push(f);
    }
    files.sort();

    const resources = new Map<string, AppVersion>();
    const errors: ResourceError[] = [];
    for (const file of files) {
      const entry = await this.#load(file);
      if (!entry) continue;
      for (const e of entry.error) errors.push({ source: file, message: e.toString(), code: e.code });
      const use = entry.error.length ? entry.lastGood : entry.resources;
      for (const av of use) {
        const prior = resources.get(av.metadata.name);
        if (prior) {
          const err = new MoltError('MOLT_ERR_DUPLICATE_NAME', `AppVersion "${av.metadata.name}" is already defined in ${prior.source}; this one is ignored`, { file, path: 'metadata.name' });
          errors.push({ source: file, message: err.toString(), code: err.code });
          continue;
        }
        resources.set(av.metadata.name, av);
      }
    }
    return { resources, errors };
  }

  async #load(file: string): Promise<FileEntry | null> {
    let st: fs.Stats;
    const cached = this.#cache.get(file);
    if (cached?.missingSince) return cached; // vanished a moment ago: see read()
    try {
      st = fs.statSync(file);
    } catch (err) {
      // A symlink that exists but cannot be followed (dangling, loop): report it; its last good
      // resources (if it had any) stay in force like for any other unreadable file.
      if (!isSymlink(file)) return null; // deleted between listing and reading
      const error = new MoltError('MOLT_ERR_CONFIG_FILE', `cannot read AppVersion file: ${(err as Error).message}`, { file }, { cause: err });
      const entry: FileEntry = { mtimeMs: -1, size: -1, ino: -1, resources: [], error: [error], lastGood: cached?.lastGood ?? [] };
      this.#cache.set(file, entry);
      return entry;
    }
    if (cached && cached.mtimeMs === st.mtimeMs && cached.size === st.size && cached.ino === st.ino) return cached;
    // Written a moment ago: possibly still being written in place (an editor, `cat >`). Keep what
    // we had and look again at the next pass (the resync, or chokidar once the size settles).
    if (Date.now() - st.mtimeMs < SETTLE_MS && !this.#atomicDirs.some((d) => file.startsWith(d + path.sep))) return cached ?? null;
    const { resources, errors } = await loadAppVersionFile(file);
    if (resources.length === 0 && errors.length === 0 && cached && cached.lastGood.length > 0) {
      // A file that held versions and now parses to nothing is far more often cut short than meant.
      errors.push(new MoltError('MOLT_ERR_VALIDATION', 'the file holds no AppVersion any more (half-written?); its versions keep serving — delete the file to remove them', { file }));
    }
    const entry: FileEntry = {
      mtimeMs: st.mtimeMs,
      size: st.size,
      ino: st.ino,
      resources,
      error: errors,
      lastGood: errors.length ? cached?.lastGood ?? [] : resources,
    };
    if (errors.length) this.#log?.warn({ file, errors: errors.map((e) => e.toString()) }, 'invalid AppVersion file; keeping its last good version');
    this.#cache.set(file, entry);
    return entry;
  }
}

function listFiles(dir: string, depth: number, out: string[], visited: Set<string>): void {
  let real: string;
  try {
    real = fs.realpathSync(dir);
  } catch {
    return;
  }
  if (visited.has(real)) return; // symlink loop
  visited.add(real);
  let names: fs.Dirent[];
  try {
    names = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const d of names) {
    if (d.name.startsWith('.')) continue; // editor swap files, .molt state
    const full = path.join(dir, d.name);
    let st: fs.Stats;
    try {
      st = fs.statSync(full); // follows symlinks
    } catch {
      // Dangling symlink or symlink loop: a resource file by name is listed so #load reports it.
      if (d.isSymbolicLink() && RESOURCE_FILE.test(d.name)) out.push(full);
      continue;
    }
    if (st.isDirectory()) {
      if (depth < MAX_DEPTH) listFiles(full, depth + 1, out, visited);
    } else if (st.isFile() && RESOURCE_FILE.test(d.name)) {
      out.push(full);
    }
  }
}

function isSymlink(file: string): boolean {
  try {
    return fs.lstatSync(file).isSymbolicLink();
  } catch {
    return false;
  }
}
