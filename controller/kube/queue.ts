// A work queue in the controller-runtime mould: keys only (level-triggered), duplicates merged, a key is
// never processed twice at once (a key added while it is being processed runs again afterwards), failures
// retried with per-key exponential backoff, and a handler that throws never stops the loop.

import type { Logger } from 'pino';
import { backoffDelay, type BackoffOptions } from './informers.js';

export interface WorkQueueOptions {
  concurrency?: number;
  backoff?: BackoffOptions;
  log?: Logger;
  /** Called after every run: for metrics. */
  onResult?: (key: string, result: 'success' | 'error', seconds: number) => void;
}

export class WorkQueue {
  #handler: (key: string) => Promise<void>;
  #queue: string[] = [];
  #dirty = new Set<string>();
  #processing = new Set<string>();
  #failures = new Map<string, number>();
  #timers = new Map<string, NodeJS.Timeout>();
  #concurrency: number;
  #backoff: BackoffOptions;
  #log: Logger | undefined;
  #onResult: WorkQueueOptions['onResult'];
  #running = false;
  #idleWaiters: Array<() => void> = [];
  /** Counters: runs and failed runs since start. */
  runs = 0;
  failures = 0;

  constructor(handler: (key: string) => Promise<void>, opts: WorkQueueOptions = {}) {
    this.#handler = handler;
    this.#concurrency = opts.concurrency ?? 4;
    this.#backoff = opts.backoff ?? { initialMs: 100, maxMs: 30_000 };
    this.#log = opts.log;
    this.#onResult = opts.onResult;
  }

  get length(): number {
    return this.#queue.length;
  }

  start(): void {
    this.#running = true;
    this.#pump();
  }

  stop(): void {
    this.#running = false;
    for (const t of this.#timers.values()) clearTimeout(t);
    this.#timers.clear();
  }

  add(key: string): void {
    if (this.#dirty.has(key)) return;
    this.#dirty.add(key);
    if (!this.#processing.has(key)) this.#queue.push(key);
    this.#pump();
  }

  addAfter(key: string, ms: number): void {
    if (this.#timers.has(key)) return;
    const t = setTimeout(() => {
      this.#timers.delete(key);
      this.add(key);
    }, ms);
    t.unref();
    this.#timers.set(key, t);
  }

  /** Resolves when nothing is queued or running (delayed retries do not count). */
  idle(): Promise<void> {
    if (this.#isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  #isIdle(): boolean {
    return this.#queue.length === 0 && this.#processing.size === 0;
  }

  #pump(): void {
    while (this.#running && this.#processing.size < this.#concurrency && this.#queue.length > 0) {
      const key = this.#queue.shift()!;
      this.#dirty.delete(key);
      this.#processing.add(key);
      void this.#run(key);
    }
    if (this.#isIdle()) {
      const waiters = this.#idleWaiters;
      this.#idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  async #run(key: string): Promise<void> {
    const started = process.hrtime.bigint();
    let ok = true;
    try {
      await this.#handler(key);
    } catch (err) {
      ok = false;
      this.failures++;
      const n = (this.#failures.get(key) ?? 0) + 1;
      this.#failures.set(key, n);
      const delay = backoffDelay(n, this.#backoff);
      this.#log?.warn({ key, err, attempt: n, retryInMs: delay }, 'reconcile failed; retrying with backoff');
      if (this.#running) this.addAfter(key, delay);
    }
    if (ok) this.#failures.delete(key);
    this.runs++;
    try {
      this.#onResult?.(key, ok ? 'success' : 'error', Number(process.hrtime.bigint() - started) / 1e9);
    } catch {
      /* metrics must not break the loop */
    }
    this.#processing.delete(key);
    if (this.#dirty.has(key)) this.#queue.push(key);
    this.#pump();
  }
}
