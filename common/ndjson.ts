// Newline-delimited JSON framing for the control socket (see protocol.ts): split a socket's text
// stream into lines. Used by the controller's end and by test and benchmark doubles.

import type { Socket } from 'node:net';
import { MAX_LINE_BYTES } from './protocol.js';

/**
 * Call onLine for every complete, non-empty line received on `socket`. A line longer than maxBytes
 * is a protocol error: onTooLong runs (default: destroy the socket) and nothing more is read.
 */
export function onLines(socket: Socket, onLine: (line: string) => void, opts: { maxBytes?: number; onTooLong?: () => void } = {}): void {
  const max = opts.maxBytes ?? MAX_LINE_BYTES;
  let buf = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf('\n')) !== -1) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.length) onLine(line);
      if (socket.destroyed) return;
    }
    if (buf.length > max) {
      buf = '';
      socket.pause();
      (opts.onTooLong ?? (() => socket.destroy()))();
    }
  });
}

/** One message as a line. */
export function line(msg: unknown): string {
  return JSON.stringify(msg) + '\n';
}
