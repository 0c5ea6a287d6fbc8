// One coarse timer for many connections (header, idle, connect and response timeouts).
//
// Items register once for their lifetime and arm/disarm themselves by writing `deadline`
// (0 = disarmed): no timer objects and no Set operations per request. A single unref'd interval
// ticks every `tickMs` and fires the items whose deadline has passed, so a timeout fires between
// `ms` and `ms + tickMs` after it was armed. The interval only runs while items are registered.

import { performance } from 'node:perf_hooks';

export interface TimerItem {
  /** performance.now() milliseconds at which onTimeout fires; 0 = disarmed. */
  deadline: number;
  onTimeout(now: number): void;
}

export const DEFAULT_TICK_MS = 500;

export function now(): number {
  return performance.now();
}

export class TimerWheel {
  readonly tickMs: number;
  #items = new Set<TimerItem>();
  #timer: NodeJS.Timeout | null = null;
  #onTick = (): void => this.tick(performance.now());

  constructor(tickMs = DEFAULT_TICK_MS) {
    this.tickMs = tickMs;
  }

  get size(): number { return this.#items.size; }

  add(item: TimerItem): void {
    this.#items.add(item);
    if (this.#timer === null) {
      this.#timer = setInterval(this.#onTick, this.tickMs);
      this.#timer.unref();
    }
  }

  remove(item: TimerItem): void {
    this.#items.delete(item);
    if (this.#items.size === 0 && this.#timer !== null) {
      clearInterval(this.#timer);
      this.#timer = null;
    }
  }

  /** Fire every armed item whose deadline is <= now (public for tests). */
  tick(t: number): void {
    for (const item of this.#items) {
      const d = item.deadline;
      if (d !== 0 && d <= t) {
        item.deadline = 0;
        try {
          item.onTimeout(t);
        } catch {
          // A timeout handler must not stop the others; handlers do their own error reporting.
        }
      }
    }
  }

  close(): void {
    this.#items.clear();
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }
}
