// Rewriting forwarded heads: the one place that decides which received header lines go on and
// what the proxy adds, for requests (client → upstream) and responses (upstream → client).
//
// A head is copied from the bytes it was read in (framing.ts HeadScanner gives each header line's
// range and a kind for the headers the proxy cares about): the start line, then every header
// line not dropped — adjacent kept lines are copied as one run — then our own lines, then
// optionally the first body bytes, into one buffer (one write, one syscall). This runs twice per
// proxied request, so it allocates only the output buffer.
//
// To drop or strip another header (say a client-sent X-Molt-* header), add its rule to
// dropHeader() below; everything that forwards a head goes through it.

import {
  H_CONNECTION,
  H_HOP,
  H_OTHER,
  H_UPGRADE,
  H_X_FORWARDED_FOR,
  H_X_FORWARDED_HOST,
  H_X_FORWARDED_PROTO,
  H_X_MOLT_SHADOW,
  type HeadScanner,
} from './framing.js';
import { copyBytes } from '../common/node-internals.js';

export type HeadSide = 'request' | 'response';

const XFP = 'X-Forwarded-Proto: http\r\n';
export const CONN_UPGRADE = 'Connection: upgrade\r\n';
export const CONN_KEEP_ALIVE = 'Connection: keep-alive\r\n';
export const CONN_CLOSE = 'Connection: close\r\n';

/**
 * Is received header line `i` left out of the forwarded head? Hop-by-hop headers (RFC 9110 §7.6.1:
 * Connection, Keep-Alive, Proxy-Connection, TE, Trailer, Proxy-Authenticate/-Authorization, any
 * header named in Connection) and Upgrade unless this exchange upgrades, both ways; the client's
 * X-Forwarded-* on requests (ours replace them).
 */
export function dropHeader(h: HeadScanner, i: number, side: HeadSide, upgrade: boolean, hasConnectionTokens: boolean): boolean {
  switch (h.kinds[i]) {
    case H_OTHER: return hasConnectionTokens && h.namedByConnection(i);
    case H_CONNECTION: case H_HOP: return true;
    case H_UPGRADE: return !upgrade;
    case H_X_FORWARDED_FOR: case H_X_FORWARDED_PROTO: case H_X_FORWARDED_HOST: return side === 'request';
    // Only molt marks preflight copies: a client cannot make its request look like one.
    case H_X_MOLT_SHADOW: return side === 'request';
    default: return false;
  }
}

/**
 * The head scanned by `h` from `buf`, start line from `startFrom`, minus dropped headers, then
 * `add` (complete lines ending with the blank line), then `tail[0, tailLen)`.
 */
function writeHead(h: HeadScanner, buf: Buffer, startFrom: number, startEnd: number, side: HeadSide, upgrade: boolean,
  add: Buffer, tail: Buffer | null, tailLen: number): Buffer {
  const n = h.headerCount;
  const tokens = h.connTokenCount > 0;
  // Measure the kept lines, then copy them in runs of adjacent kept bytes: the start line and the
  // header lines up to the first dropped one are one run, so a head with nothing to drop (most
  // requests) is one copy. copyBytes allocates nothing (no view per copy, see node-internals.ts).
  let size = startEnd - startFrom;
  for (let i = 0; i < n; i++) {
    if (!dropHeader(h, i, side, upgrade, tokens)) size += h.lineEnd(i) - h.lineStart(i);
  }
  const out = Buffer.allocUnsafe(size + add.length + tailLen);
  let pos = 0;
  let runStart = startFrom;
  let runEnd = startEnd;
  for (let i = 0; i < n; i++) {
    if (dropHeader(h, i, side, upgrade, tokens)) continue;
    const s = h.lineStart(i);
    if (s === runEnd) { runEnd = h.lineEnd(i); continue; }
    pos += copyBytes(buf, out, pos, runStart, runEnd);
    runStart = s;
    runEnd = h.lineEnd(i);
  }
  pos += copyBytes(buf, out, pos, runStart, runEnd);
  pos += copyBytes(add, out, pos, 0, add.length);
  if (tail !== null && tailLen > 0) copyBytes(tail, out, pos, 0, tailLen);
  return out;
}

/** Our lines on a forwarded request: Connection (upgrade, or keep-alive for HTTP/1.0),
 *  X-Forwarded-For (the client's list + `clientIp`), -Proto and -Host, and the blank line. */
function requestLines(h: HeadScanner, host: string | undefined, clientIp: string, upgrade: boolean, v10: boolean): string {
  let xff = '';
  if (h.xffCount > 0) {
    const n = h.headerCount;
    const kinds = h.kinds;
    for (let i = 0; i < n; i++) {
      if (kinds[i] === H_X_FORWARDED_FOR) xff += h.headerValue(i) + ', ';
    }
  }
  return (upgrade ? CONN_UPGRADE : v10 ? CONN_KEEP_ALIVE : '') +
    'X-Forwarded-For: ' + xff + clientIp + '\r\n' + XFP +
    (host !== undefined ? 'X-Forwarded-Host: ' + host + '\r\n\r\n' : '\r\n');
}

/**
 * The lines `requestHead` adds, for the requests of one client connection. They depend only on
 * the client's address (fixed), the Host header, the client's own X-Forwarded-For, upgrade and
 * HTTP/1.0, so the bytes of the last request are kept and reused while those stay the same: a
 * keep-alive client asking one host gets them without a string built and encoded per request.
 */
export class RequestLines {
  readonly clientIp: string;
  #host: string | undefined = undefined;
  /** upgrade | v10 << 1 of the kept bytes; -1 = nothing kept yet. */
  #flags = -1;
  #bytes: Buffer | null = null;

  constructor(clientIp: string) {
    this.clientIp = clientIp;
  }

  /** The lines for the request scanned by `h`. */
  for(h: HeadScanner, host: string | undefined, upgrade: boolean, v10: boolean): Buffer {
    // A client-sent X-Forwarded-For is part of the value: not kept (proxies in front send it per request).
    if (h.xffCount > 0) return Buffer.from(requestLines(h, host, this.clientIp, upgrade, v10), 'latin1');
    const flags = (upgrade ? 1 : 0) | (v10 ? 2 : 0);
    const kept = this.#bytes;
    if (kept !== null && flags === this.#flags && host === this.#host) return kept;
    const b = Buffer.from(requestLines(h, host, this.clientIp, upgrade, v10), 'latin1');
    this.#bytes = b;
    this.#flags = flags;
    this.#host = host;
    return b;
  }
}

/**
 * The request head to send upstream: the client's head (scanned by `h`, starting at `hs` in
 * `buf`) rewritten, with our `lines` (RequestLines.for: Connection, X-Forwarded-For, -Proto,
 * -Host), then `tail` (first body bytes) if any.
 */
export function requestHead(h: HeadScanner, buf: Buffer, hs: number, lines: Buffer, upgrade: boolean, tail: Buffer | null): Buffer {
  return writeHead(h, buf, hs + h.leading, hs + h.startLineEnd, 'request', upgrade, lines, tail, tail !== null ? tail.length : 0);
}

const END = Buffer.from('\r\n', 'latin1');
const END_UPGRADE = Buffer.from(CONN_UPGRADE + '\r\n', 'latin1');
const END_KEEP_ALIVE = Buffer.from(CONN_KEEP_ALIVE + '\r\n', 'latin1');
const END_CLOSE = Buffer.from(CONN_CLOSE + '\r\n', 'latin1');

/** `connection` + `extra` + the blank line, as bytes (constants when there is no extra line). */
function responseLines(connection: string, extra: string): Buffer {
  if (extra === '') {
    if (connection === '') return END;
    if (connection === CONN_CLOSE) return END_CLOSE;
    if (connection === CONN_KEEP_ALIVE) return END_KEEP_ALIVE;
    if (connection === CONN_UPGRADE) return END_UPGRADE;
  }
  return Buffer.from(connection + extra + '\r\n', 'latin1');
}

/**
 * The response head to send the client: the upstream's head (scanned by `h` from the start of
 * `buf`) rewritten, with `connection` (one of the CONN_* lines or '') and `extra` (complete lines,
 * e.g. Set-Cookie) appended, then `tail[0, tailLen)` (body bytes) if any.
 */
export function responseHead(h: HeadScanner, buf: Buffer, upgrade: boolean, connection: string, extra: string,
  tail: Buffer | null, tailLen: number): Buffer {
  return writeHead(h, buf, 0, h.startLineEnd, 'response', upgrade, responseLines(connection, extra), tail, tailLen);
}
