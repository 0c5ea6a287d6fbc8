// Off the hot path: turn the raw bytes a Capture kept (sidecar/recorder.ts) into structured
// messages. The bytes were already validated by the proxy's framing scanner when they passed, so
// this parser is lenient: it only needs to find the parts, and it never throws on truncation.

import type { HeaderPairs, RecordedRequest, RecordedResponse } from '../common/har.js';

/** A captured request as parsed here: the recorded shape, without a full body size (unknown here). */
export type ParsedRequest = Omit<RecordedRequest, 'bodySize'>;
/** A captured response; statusText is always present (possibly ""). */
export type ParsedResponse = Omit<RecordedResponse, 'bodySize' | 'statusText'> & { statusText: string };

function headEnd(buf: Buffer): number {
  const i = buf.indexOf('\r\n\r\n', 0, 'latin1');
  return i === -1 ? -1 : i + 4;
}

function parseHeaderLines(lines: string[]): HeaderPairs {
  const out: HeaderPairs = [];
  for (const line of lines) {
    if (line === '') continue;
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    out.push([line.slice(0, colon), line.slice(colon + 1).trim()]);
  }
  return out;
}

export function headerValue(headers: HeaderPairs, name: string): string | undefined {
  const lower = name.toLowerCase();
  for (const [n, v] of headers) if (n.toLowerCase() === lower) return v;
  return undefined;
}

/** Decode a chunked body; `complete` is false when the bytes end before the last chunk. */
export function decodeChunked(buf: Buffer): { body: Buffer; complete: boolean } {
  const parts: Buffer[] = [];
  let pos = 0;
  for (;;) {
    const eol = buf.indexOf('\r\n', pos, 'latin1');
    if (eol === -1) return { body: Buffer.concat(parts), complete: false };
    const sizeText = buf.toString('latin1', pos, eol);
    const semi = sizeText.indexOf(';');
    const size = parseInt(semi === -1 ? sizeText : sizeText.slice(0, semi), 16);
    if (!Number.isFinite(size) || size < 0) return { body: Buffer.concat(parts), complete: false };
    pos = eol + 2;
    if (size === 0) return { body: Buffer.concat(parts), complete: true };
    if (pos + size > buf.length) {
      parts.push(buf.subarray(pos));
      return { body: Buffer.concat(parts), complete: false };
    }
    parts.push(buf.subarray(pos, pos + size));
    pos += size + 2;
  }
}

function extractBody(buf: Buffer, start: number, headers: HeaderPairs, truncated: boolean, untilClose: boolean): { body: Buffer; bodyTruncated: boolean } {
  const rest = buf.subarray(start);
  const te = headerValue(headers, 'transfer-encoding');
  if (te !== undefined && /(^|,)\s*chunked\s*$/i.test(te)) {
    const { body, complete } = decodeChunked(rest);
    return { body, bodyTruncated: !complete || (truncated && !complete) };
  }
  const cl = headerValue(headers, 'content-length');
  if (cl !== undefined) {
    const n = Number(cl);
    if (Number.isSafeInteger(n) && n >= 0) {
      if (rest.length >= n) return { body: Buffer.from(rest.subarray(0, n)), bodyTruncated: false };
      return { body: Buffer.from(rest), bodyTruncated: true };
    }
  }
  if (untilClose) return { body: Buffer.from(rest), bodyTruncated: truncated };
  return { body: Buffer.alloc(0), bodyTruncated: false };
}

/** Parse a captured request (head as forwarded, then body bytes). Null when the head is incomplete. */
export function parseCapturedRequest(buf: Buffer, truncated = false): ParsedRequest | null {
  const end = headEnd(buf);
  if (end === -1) return null;
  const lines = buf.toString('latin1', 0, end - 4).split('\r\n');
  const first = lines.shift() ?? '';
  const m = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+) (\S+) HTTP\/(\d\.\d)$/.exec(first);
  if (m === null) return null;
  const headers = parseHeaderLines(lines);
  const { body, bodyTruncated } = extractBody(buf, end, headers, truncated, false);
  return { method: m[1]!, target: m[2]!, httpVersion: `HTTP/${m[3]}`, headers, body, bodyTruncated };
}

/** Parse a captured response. `requestMethod` HEAD and 1xx/204/304 have no body. */
export function parseCapturedResponse(buf: Buffer, truncated = false, requestMethod = 'GET'): ParsedResponse | null {
  let start = 0;
  // Skip interim 1xx responses (100-continue) that preceded the final one.
  for (;;) {
    const end = headEnd(buf.subarray(start));
    if (end === -1) return null;
    const lines = buf.toString('latin1', start, start + end - 4).split('\r\n');
    const first = lines.shift() ?? '';
    const m = /^HTTP\/(\d\.\d) (\d{3})(?: (.*))?$/.exec(first);
    if (m === null) return null;
    const status = Number(m[2]);
    if (status >= 100 && status < 200 && status !== 101) { start += end; continue; }
    const headers = parseHeaderLines(lines);
    const noBody = requestMethod === 'HEAD' || status === 204 || status === 304 || status === 101;
    const { body, bodyTruncated } = noBody
      ? { body: Buffer.alloc(0), bodyTruncated: false }
      : extractBody(buf, start + end, headers, truncated, true);
    return { status, statusText: m[3] ?? '', httpVersion: `HTTP/${m[1]}`, headers, body, bodyTruncated };
  }
}
