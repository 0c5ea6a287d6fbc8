// A work queue in the controller-runtime mould: keys only (level-triggered), duplicates merged, a key is
// never processed twice at once (a key added while it is being processed runs again afterwards), failures
// retried with per-key exponential backoff, and a handler that throws never stops the loop.
// Like controller-runtime's reconcile.Result, a handler may ask to run again after a delay
// ({ requeueAfterMs }): for work that is due at a known time (a startup deadline, a schedule) and would
// otherwise wait for an unrelated event. An error wins over a requested requeue (backoff applies).
// Periodic resync (every key re-added every N ms, so a missed event heals) is the controller's business:
// it knows the keys; see KubeController's resyncMs.

import type { Logger } from 'pino';
import { backoffDelay, type BackoffOptions } from './informers.js';

export interface WorkQueueOptions {
  concurrency?: number;
  backoff?: BackoffOptions;
  log?: Logger;
  /** Called after every run: for metrics. */
  onResult?: (key: string, result: 'success' | 'error', seconds: number) => void;
}

/** What a handler may return: nothing (done until the next event), or a time to run again. */
export interface ReconcileResult {
  requeueAfterMs?: number;
}

export type ReconcileHandler = (key: string) => Promise<void | ReconcileResult>;

export class WorkQueue {
  #handler: ReconcileHandler;
  #queue: string[] = [];
  #dirty = new Set<string>();
  #processing = new Set<string>();
  #failures = new Map<string, number>();
  #timers = new Map<string, { timer: NodeJS.Timeout; at: number }>();
  #concurrency: number;
  #backoff: BackoffOptions;
  #log: Logger | undefined;
  #onResult: WorkQueueOptions['onResult'];
  #running = false;
  #idleWaiters: Array<() => void> = [];
  /** Counters: runs and failed runs since start. */
  runs = 0;
  failures = 0;

  constructor(handler: ReconcileHandler, opts: WorkQueueOptions = {}) {
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
    for (const t of this.#timers.values()) clearTimeout(t.timer);
    this.#timers.clear();
  }

  add(key: string): void {
    if (this.#dirty.has(key)) return;
    this.#dirty.add(key);
    if (!this.#processing.has(key)) this.#queue.push(key);
    this.#pump();
  }

  /** Add the key after ms. A key already waiting keeps the earlier of the two times. */
  addAfter(key: string, ms: number): void {
    if (!this.#running) return;
    const at = Date.now() + Math.max(0, ms);
    const existing = this.#timers.get(key);
    if (existing) {
      if (existing.at <= at) return;
      clearTimeout(existing.timer);
    }
    const timer = setTimeout(() => {
      this.#timers.delete(key);
      this.add(key);
    }, Math.max(0, ms));
    timer.unref();
    this.#timers.set(key, { timer, at });
  }

  /** Keys waiting for a delayed add (retries and requested requeues). */
  get delayed(): number {
    return this.#timers.size;
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
    let requeueAfterMs: number | undefined;
    try {
      const result = await this.#handler(key);
      if (result && typeof result.requeueAfterMs === 'number' && Number.isFinite(result.requeueAfterMs)) requeueAfterMs = result.requeueAfterMs;
    } catch (err) {
      ok = false;
      this.failures++;
      const n = (this.#failures.get(key) ?? 0) + 1;
      this.#failures.set(key, n);
      const delay = backoffDelay(n, this.#backoff);
      this.#log?.warn({ key, err, attempt: n, retryInMs: delay }, 'reconcile failed; retrying with backoff');
      if (this.#running) this.addAfter(key, delay);
    }
    if (ok) {
      this.#failures.delete(key);
      if (requeueAfterMs !== undefined && this.#running) this.addAfter(key, requeueAfterMs);
    }
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
