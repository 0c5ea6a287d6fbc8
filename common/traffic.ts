// Recorded traffic answers (common/protocol.ts TrafficMessage) merged: over a sidecar's workers, and
// over several sidecars connected to one controller.

import type { TrafficMessage } from './protocol.js';

export type TrafficPart = Pick<TrafficMessage, 'exchanges' | 'cursor' | 'recorded' | 'skipped'>;

/** Several recorders' answers as one, exchanges in time order. */
export function mergeTraffic(parts: readonly TrafficPart[]): TrafficPart {
  const out: TrafficPart = { exchanges: [], cursor: {}, recorded: 0, skipped: 0 };
  for (const p of parts) {
    out.exchanges.push(...p.exchanges);
    Object.assign(out.cursor, p.cursor);
    out.recorded += p.recorded;
    out.skipped += p.skipped;
  }
  out.exchanges.sort((a, b) => a.startedAt - b.startedAt || a.seq - b.seq);
  return out;
}
