// Informers: client-node's ListWatch (list, then watch from the list's resourceVersion; a 410 Gone makes it
// re-list) plus what it leaves to the caller: it stops on any other error, so we restart it with
// exponential backoff, and we report when the first list has landed in the cache (synced).
// Watches ask for BOOKMARK events (allowWatchBookmarks=true, as client-go's reflector does): the server then
// tells a quiet watch how far the resourceVersion has moved, so a reconnect resumes from a recent version
// instead of one the server may have compacted away (which would cost a full re-list after a 410).

import { EventEmitter } from 'node:events';
import { ListWatch, Watch, type Informer, type KubeConfig, type KubernetesListObject, type KubernetesObject, type ObjectCache } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { describeError } from './client.js';

export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 250, maxMs: 30_000 };

/** Exponential backoff: initial * 2^(attempt-1), capped. attempt counts from 1. */
export function backoffDelay(attempt: number, opts: BackoffOptions = DEFAULT_BACKOFF): number {
  return Math.min(opts.maxMs, opts.initialMs * 2 ** Math.max(0, Math.min(attempt - 1, 30)));
}

export interface WatchedEvents<T> {
  /** An object was added, changed or deleted (deleted objects carry their last state). */
  change: [T, 'add' | 'update' | 'delete'];
  /** The first list has been applied to the cache. */
  synced: [];
  /** A list or watch failed; a restart is scheduled after delayMs. */
  failed: [unknown, number];
}

export interface WatchedOptions<T extends KubernetesObject> {
  kubeConfig: KubeConfig;
  /** Collection path, e.g. /apis/apps/v1/namespaces/NS/deployments */
  path: string;
  list: () => Promise<KubernetesListObject<T>>;
  labelSelector?: string;
  name: string;
  log?: Logger;
  backoff?: BackoffOptions;
}

export class Watched<T extends KubernetesObject> extends EventEmitter<WatchedEvents<T>> {
  readonly name: string;
  #informer: Informer<T> & ObjectCache<T>;
  #log: Logger | undefined;
  #backoff: BackoffOptions;
  #stopped = true;
  #failures = 0;
  #timer: NodeJS.Timeout | null = null;
  #synced = false;
  /** Counters for tests and metrics. */
  lists = 0;
  restarts = 0;
  errors = 0;

  constructor(opts: WatchedOptions<T>) {
    super();
    this.name = opts.name;
    this.#log = opts.log;
    this.#backoff = opts.backoff ?? DEFAULT_BACKOFF;
    const list = async () => {
      const result = await opts.list();
      this.lists++;
      this.#failures = 0;
      // ListWatch applies the items right after this promise resolves; report sync after that.
      if (!this.#synced) setImmediate(() => {
        if (this.#synced || this.#stopped) return;
        this.#synced = true;
        this.emit('synced');
      });
      return result;
    };
    this.#informer = new ListWatch<T>(opts.path, bookmarkingWatch(opts.kubeConfig), list, false, opts.labelSelector);
    this.#informer.on('add', (o) => this.#changed(o, 'add'));
    this.#informer.on('update', (o) => this.#changed(o, 'update'));
    this.#informer.on('delete', (o) => this.#changed(o, 'delete'));
    this.#informer.on('error', (err) => this.#onError(err));
  }

  /** The resourceVersion a watch would resume from ('' = will re-list). */
  get resourceVersion(): string {
    return (this.#informer as unknown as { latestResourceVersion(): string }).latestResourceVersion();
  }

  get synced(): boolean {
    return this.#synced;
  }

  /** Objects in the cache (namespace-scoped informers: all of one namespace). */
  list(): readonly T[] {
    return this.#informer.list();
  }

  get(name: string, namespace: string): T | undefined {
    return this.#informer.get(name, namespace);
  }

  async start(): Promise<void> {
    if (!this.#stopped) return;
    this.#stopped = false;
    await this.#informer.start();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    await this.#informer.stop();
  }

  #changed(obj: T, how: 'add' | 'update' | 'delete'): void {
    try {
      this.emit('change', obj, how);
    } catch (err) {
      this.#log?.error({ err, informer: this.name }, 'informer handler threw');
    }
  }

  #onError(err: unknown): void {
    // ListWatch also reports the abort of its own request when stop() is called: not an error then.
    if (this.#stopped) return;
    this.errors++;
    this.#failures++;
    const delay = backoffDelay(this.#failures, this.#backoff);
    this.#log?.warn({ informer: this.name, err: describeError(err), retryInMs: delay }, 'list/watch failed; restarting with backoff');
    this.emit('failed', err, delay);
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      if (this.#stopped) return;
      this.restarts++;
      this.#informer.start().catch((e) => this.#onError(e));
    }, delay);
    this.#timer.unref();
  }
}

/** client-node's Watch, asking the server for BOOKMARK events on every watch request. */
function bookmarkingWatch(kc: KubeConfig): Watch {
  const w = new Watch(kc);
  const watch = w.watch.bind(w);
  w.watch = (path, queryParams, callback, done) => watch(path, { ...queryParams, allowWatchBookmarks: true }, callback, done);
  return w;
}
