// Reading recorded traffic out of the sidecar (off the hot path): the answer to a controller's
// `traffic-request`, from one recorder (single process) or merged over the workers' recorders.

import type { TrafficRequestMessage, WireExchange } from '../common/protocol.js';
import { parseCapturedRequest, parseCapturedResponse } from './captured-http.js';
import type { TrafficRecorder } from './recorder.js';

import type { TrafficPart } from '../common/traffic.js';

/** Parsed, newest `limit` exchanges of `app` after the caller's cursor for this recorder. */
export function readTraffic(recorder: TrafficRecorder, name: string, req: Pick<TrafficRequestMessage, 'app' | 'after' | 'limit'>): TrafficPart {
  const after = req.after?.[name] ?? 0;
  const exchanges: WireExchange[] = [];
  let last = after;
  for (const raw of recorder.recent(req.app, Math.max(0, req.limit), after)) {
    if (raw.seq > last) last = raw.seq;
    const request = parseCapturedRequest(raw.request, raw.requestTruncated);
    const response = request ? parseCapturedResponse(raw.response, raw.responseTruncated, request.method) : null;
    if (request === null || response === null) continue;
    exchanges.push({
      recorder: name,
      seq: raw.seq,
      startedAt: raw.startedAt,
      durationMicros: raw.durationMicros,
      request: { ...request, body: request.body.toString('base64') },
      response: { ...response, body: response.body.toString('base64') },
    });
  }
  const c = recorder.counters;
  // The cursor moves to the newest exchange even when `limit` left older ones out: a reader of live
  // traffic (shadow) wants what comes after now, not a backlog.
  if (recorder.lastSeq > last) last = recorder.lastSeq;
  return { exchanges, cursor: { [name]: last }, recorded: c.recorded, skipped: c.skippedBusy + c.skippedOther };
}
