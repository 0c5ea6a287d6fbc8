// An in-process IPC link between a sidecar primary and one worker (sidecar/workers.ts Channel):
// messages are structured-cloned and delivered on the next turn, as node:cluster does.
import type { Channel, ToPrimary, ToWorker } from '../../sidecar/workers.js';

export function ipcPair(): { primary: Channel<ToWorker>; worker: Channel<ToPrimary> } {
  const toWorker: Array<(m: unknown) => void> = [];
  const toPrimary: Array<(m: unknown) => void> = [];
  return {
    primary: { send: (m) => setImmediate(() => toWorker.forEach((f) => f(structuredClone(m)))), onMessage: (f) => toPrimary.push(f) },
    worker: { send: (m) => setImmediate(() => toPrimary.forEach((f) => f(structuredClone(m)))), onMessage: (f) => toWorker.push(f) },
  };
}
