// Rewriting forwarded heads: the one place that decides which received header lines go on and
// what the proxy adds, for requests (client → upstream) and responses (upstream → client).
//
// A head is copied from the bytes it was read in (framing.ts HeadScanner gives each header line's
// range and a kind for the headers the proxy cares about): the start line, then every header
// line not dropped — adjacent kept lines are copied as one run — then our own lines, then
// optionally the first body bytes, into one buffer (one write, one syscall).
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
 * `add` (latin1; complete lines ending with the blank line), then `tail[0, tailLen)`.
 */
function writeHead(h: HeadScanner, buf: Buffer, startFrom: number, startEnd: number, side: HeadSide, upgrade: boolean,
  add: string, tail: Buffer | null, tailLen: number): Buffer {
  const n = h.headerCount;
  const tokens = h.connTokenCount > 0;
  // Measure the kept lines, then copy them in runs.
  let size = startEnd - startFrom;
  for (let i = 0; i < n; i++) {
    if (!dropHeader(h, i, side, upgrade, tokens)) size += h.lineEnd(i) - h.lineStart(i);
  }
  const out = Buffer.allocUnsafe(size + add.length + tailLen);
  let pos = buf.copy(out, 0, startFrom, startEnd);
  let runStart = -1;
  let runEnd = -1;
  for (let i = 0; i < n; i++) {
    if (dropHeader(h, i, side, upgrade, tokens)) continue;
    const s = h.lineStart(i);
    if (s === runEnd) { runEnd = h.lineEnd(i); continue; }
    if (runStart >= 0) pos += buf.copy(out, pos, runStart, runEnd);
    runStart = s;
    runEnd = h.lineEnd(i);
  }
  if (runStart >= 0) pos += buf.copy(out, pos, runStart, runEnd);
  pos += out.write(add, pos, 'latin1');
  if (tail !== null && tailLen > 0) tail.copy(out, pos, 0, tailLen);
  return out;
}

/**
 * The request head to send upstream: the client's head (scanned by `h`, starting at `hs` in
 * `buf`) rewritten, with our Connection (upgrade, or keep-alive for HTTP/1.0) and X-Forwarded-For
 * (the client's list + `clientIp`), -Proto and -Host, then `tail` (first body bytes) if any.
 */
export function requestHead(h: HeadScanner, buf: Buffer, hs: number, host: string | undefined, clientIp: string,
  upgrade: boolean, v10: boolean, tail: Buffer | null): Buffer {
  let xff = '';
  if (h.xffCount > 0) {
    const n = h.headerCount;
    const kinds = h.kinds;
    for (let i = 0; i < n; i++) {
      if (kinds[i] === H_X_FORWARDED_FOR) xff += h.headerValue(i) + ', ';
    }
  }
  const add = (upgrade ? CONN_UPGRADE : v10 ? CONN_KEEP_ALIVE : '') +
    'X-Forwarded-For: ' + xff + clientIp + '\r\n' + XFP +
    (host !== undefined ? 'X-Forwarded-Host: ' + host + '\r\n\r\n' : '\r\n');
  return writeHead(h, buf, hs + h.leading, hs + h.startLineEnd, 'request', upgrade, add, tail, tail !== null ? tail.length : 0);
}

/**
 * The response head to send the client: the upstream's head (scanned by `h` from the start of
 * `buf`) rewritten, with `connection` (one of the CONN_* lines or '') and `extra` (complete lines,
 * e.g. Set-Cookie) appended, then `tail[0, tailLen)` (body bytes) if any.
 */
export function responseHead(h: HeadScanner, buf: Buffer, upgrade: boolean, connection: string, extra: string,
  tail: Buffer | null, tailLen: number): Buffer {
  return writeHead(h, buf, 0, h.startLineEnd, 'response', upgrade, connection + extra + '\r\n', tail, tailLen);
}
