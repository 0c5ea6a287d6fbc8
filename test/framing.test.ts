import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  BODY_CHUNKED, BODY_LENGTH, BODY_NONE, BODY_UNTIL_CLOSE, BodyScanner, ERROR, HeadScanner, NEED_MORE,
  H_CONNECTION, H_HOP, H_HOST, H_OTHER, isLookalikeName, type FramingErrorCode,
} from '../sidecar/framing.js';

// Deterministic PRNG (mulberry32) for split points.
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Deliveries of one message: whole, byte by byte, and at random split points (fixed seeds). */
function deliveries(bytes: Buffer): Buffer[][] {
  const out: Buffer[][] = [[bytes]];
  const bb: Buffer[] = [];
  for (let i = 0; i < bytes.length; i++) bb.push(bytes.subarray(i, i + 1));
  out.push(bb);
  for (let seed = 1; seed <= 8; seed++) {
    const r = rng(seed * 7919 + bytes.length);
    const parts: Buffer[] = [];
    let p = 0;
    while (p < bytes.length) {
      const n = 1 + Math.floor(r() * Math.max(1, bytes.length / 3));
      parts.push(bytes.subarray(p, p + n));
      p += n;
    }
    out.push(parts);
  }
  return out;
}

interface HeadResult { r: number; s: HeadScanner; buf: Buffer }

/** Feed parts the way the proxy does: accumulate, rescan resumes where it stopped. */
function scanParts(parts: Buffer[], isRequest: boolean, maxBytes?: number, maxHeaders?: number): HeadResult {
  const s = new HeadScanner(isRequest, maxBytes, maxHeaders);
  let pending = Buffer.alloc(0);
  let r = NEED_MORE;
  for (const p of parts) {
    pending = Buffer.concat([pending, p]);
    r = s.execute(pending, 0, pending.length);
    if (r !== NEED_MORE) break;
  }
  return { r, s, buf: pending };
}

function allWays(raw: string, isRequest: boolean, check: (res: HeadResult, how: string) => void, maxBytes?: number, maxHeaders?: number): void {
  const bytes = Buffer.from(raw, 'latin1');
  deliveries(bytes).forEach((parts, i) => check(scanParts(parts, isRequest, maxBytes, maxHeaders), `delivery ${i} (${parts.length} parts)`));
}

function expectValid(raw: string, isRequest: boolean, check: (s: HeadScanner, buf: Buffer) => void): void {
  allWays(raw, isRequest, ({ r, s, buf }, how) => {
    assert.ok(r > 0, `${how}: expected a complete head, got ${r} ${s.errorCode} ${s.errorReason}`);
    check(s, buf);
  });
}

function expectError(raw: string, isRequest: boolean, code: FramingErrorCode, maxBytes?: number, maxHeaders?: number): void {
  allWays(raw, isRequest, ({ r, s }, how) => {
    assert.equal(r, ERROR, `${how}: expected ${code} for ${JSON.stringify(raw)}`);
    assert.equal(s.errorCode, code, `${how}: ${JSON.stringify(raw)}: ${s.errorReason}`);
    assert.ok(s.errorReason.length > 0);
  }, maxBytes, maxHeaders);
}

// ---- valid requests ----

test('simple GET: method, target, version, host, keep-alive, no body', () => {
  const raw = 'GET /a/b?c=d HTTP/1.1\r\nHost: example.com:8080\r\nCookie: a=1\r\nX-Thing:  v  \r\n\r\n';
  expectValid(raw, true, (s, buf) => {
    assert.equal(s.headLength, raw.length);
    assert.equal(s.method, 'GET');
    assert.equal(s.target, '/a/b?c=d');
    assert.equal(s.versionMinor, 1);
    assert.equal(s.host, 'example.com:8080');
    assert.equal(s.cookie, 'a=1');
    assert.equal(s.keepAlive, true);
    assert.equal(s.requestBodyKind, BODY_NONE);
    assert.equal(s.headerCount, 3);
    assert.equal(s.headerName(2), 'X-Thing');
    assert.equal(s.headerValue(2), 'v');
    assert.equal(s.kinds[0], H_HOST);
    // line boundaries cover each header line exactly, CRLF included
    assert.equal(buf.toString('latin1', s.lineStart(0), s.lineEnd(0)), 'Host: example.com:8080\r\n');
    assert.equal(buf.toString('latin1', s.lineStart(2), s.lineEnd(2)), 'X-Thing:  v  \r\n');
    assert.equal(s.startLineEnd, 'GET /a/b?c=d HTTP/1.1\r\n'.length);
    assert.equal(s.headerEnd, raw.length - 2);
  });
});

test('uncommon method is sliced; common ones interned', () => {
  expectValid('PROPFIND / HTTP/1.1\r\nHost: h\r\n\r\n', true, (s) => assert.equal(s.method, 'PROPFIND'));
  expectValid('DELETE /x HTTP/1.1\r\nHost: h\r\n\r\n', true, (s) => assert.equal(s.method, 'DELETE'));
});

test('HTTP/1.0: no Host needed, close by default, keep-alive on request', () => {
  expectValid('GET / HTTP/1.0\r\n\r\n', true, (s) => {
    assert.equal(s.versionMinor, 0);
    assert.equal(s.keepAlive, false);
    assert.equal(s.host, undefined);
  });
  expectValid('GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n', true, (s) => assert.equal(s.keepAlive, true));
});

test('Connection tokens: close, upgrade, named hop-by-hop headers', () => {
  const raw = 'GET / HTTP/1.1\r\nHost: h\r\nConnection: close, X-Secret ,upgrade\r\nx-secret: 1\r\nUpgrade: websocket\r\n\r\n';
  expectValid(raw, true, (s) => {
    assert.equal(s.connClose, true);
    assert.equal(s.connUpgrade, true);
    assert.equal(s.keepAlive, false);
    assert.equal(s.isUpgrade, true);
    assert.equal(s.upgrade, 'websocket');
    assert.deepEqual(s.connectionTokens, ['x-secret']);
    assert.equal(s.kinds[1], H_CONNECTION);
    assert.equal(s.namedByConnection(2), true);
    assert.equal(s.namedByConnection(0), false);
  });
});

test('Content-Length, chunked, Expect, multiple cookies, leading empty line', () => {
  expectValid('POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\nExpect: 100-Continue\r\n\r\n', true, (s) => {
    assert.equal(s.requestBodyKind, BODY_LENGTH);
    assert.equal(s.contentLength, 12);
    assert.equal(s.expectContinue, true);
  });
  expectValid('POST /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n', true, (s) => {
    assert.equal(s.requestBodyKind, BODY_CHUNKED);
  });
  expectValid('POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n', true, (s) => assert.equal(s.requestBodyKind, BODY_NONE));
  expectValid('GET / HTTP/1.1\r\nHost: h\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n', true, (s) => assert.equal(s.cookie, 'a=1; b=2'));
  expectValid('\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n', true, (s) => {
    assert.equal(s.leading, 2);
    assert.equal(s.method, 'GET');
  });
  expectValid('GET / HTTP/1.1\r\nHost: h\r\nEmpty:\r\nTE-Ok:\tx\t\r\n\r\n', true, (s) => {
    assert.equal(s.headerValue(1), '');
    assert.equal(s.headerValue(2), 'x');
  });
  expectValid('GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\tchunked \r\n\r\n', true, (s) => assert.equal(s.chunked, true));
});

// ---- invalid requests ----

const BAD_REQUESTS: [string, FramingErrorCode][] = [
  ['POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n', 'MOLT_ERR_HTTP_CL_AND_TE'],
  ['POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n', 'MOLT_ERR_HTTP_CL_AND_TE'],
  ['POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n', 'MOLT_ERR_HTTP_DUPLICATE_CONTENT_LENGTH'],
  ['POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n', 'MOLT_ERR_HTTP_DUPLICATE_CONTENT_LENGTH'],
  ['POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n', 'MOLT_ERR_HTTP_BAD_CONTENT_LENGTH'],
  ['POST / HTTP/1.1\r\nHost: h\r\nContent-Length: abc\r\n\r\n', 'MOLT_ERR_HTTP_BAD_CONTENT_LENGTH'],
  ['POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n', 'MOLT_ERR_HTTP_BAD_CONTENT_LENGTH'],
  ['POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n', 'MOLT_ERR_HTTP_BAD_CONTENT_LENGTH'],
  ['POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x10\r\n\r\n', 'MOLT_ERR_HTTP_BAD_CONTENT_LENGTH'],
  ['POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n', 'MOLT_ERR_HTTP_BAD_CONTENT_LENGTH'],
  ['POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n', 'MOLT_ERR_HTTP_BAD_CONTENT_LENGTH'],
  ['POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n', 'MOLT_ERR_HTTP_BAD_TRANSFER_ENCODING'],
  ['POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n', 'MOLT_ERR_HTTP_BAD_TRANSFER_ENCODING'],
  ['POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n', 'MOLT_ERR_HTTP_BAD_TRANSFER_ENCODING'],
  ['POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n', 'MOLT_ERR_HTTP_BAD_TRANSFER_ENCODING'],
  ['POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n', 'MOLT_ERR_HTTP_BAD_TRANSFER_ENCODING'],
  ['POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \x0bchunked\r\n\r\n', 'MOLT_ERR_HTTP_BAD_TRANSFER_ENCODING'],
  ['POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\x01\r\n\r\n', 'MOLT_ERR_HTTP_BAD_CONTENT_LENGTH'],
  ['GET / HTTP/1.1\r\nHost: h\r\nConnection: close\x7f\r\n\r\n', 'MOLT_ERR_HTTP_BAD_HEADER_VALUE'],
  ['GET / HTTP/1.1\r\nHost: a\x01.test\r\n\r\n', 'MOLT_ERR_HTTP_BAD_HEADER_VALUE'],
  ['GET / HTTP/1.1\r\nHost: a.test\x7f\r\n\r\n', 'MOLT_ERR_HTTP_BAD_HEADER_VALUE'],
  ['GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: web\x1bsocket\r\n\r\n', 'MOLT_ERR_HTTP_BAD_HEADER_VALUE'],
  ['POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\x0c\r\n\r\n', 'MOLT_ERR_HTTP_BAD_HEADER_VALUE'],
  ['GET / HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n', 'MOLT_ERR_HTTP_BAD_HEADER_VALUE'],
  ['POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n', 'MOLT_ERR_HTTP_BAD_TRANSFER_ENCODING'],
  ['POST / HTTP/1.1\r\nHost: h\r\n Transfer-Encoding: chunked\r\n\r\n', 'MOLT_ERR_HTTP_OBS_FOLD'],
  ['GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n\tfolded\r\n\r\n', 'MOLT_ERR_HTTP_OBS_FOLD'],
  ['POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n', 'MOLT_ERR_HTTP_SPACE_BEFORE_COLON'],
  ['GET / HTTP/1.1\r\nHost\t: h\r\n\r\n', 'MOLT_ERR_HTTP_SPACE_BEFORE_COLON'],
  ['GET / HTTP/1.1\nHost: h\r\n\r\n', 'MOLT_ERR_HTTP_BAD_VERSION'],
  ['GET / HTTP/1.1\r\nHost: h\n\r\n', 'MOLT_ERR_HTTP_BAD_HEADER_VALUE'],
  ['GET / HTTP/1.1\r\nHost: h\r\n\n', 'MOLT_ERR_HTTP_BAD_LINE_ENDING'],
  ['GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n', 'MOLT_ERR_HTTP_BAD_LINE_ENDING'],
  ['GET / HTTP/1.1\r\nHost: h\r\n\rx', 'MOLT_ERR_HTTP_BAD_LINE_ENDING'],
  ['GET /\x00 HTTP/1.1\r\nHost: h\r\n\r\n', 'MOLT_ERR_HTTP_BAD_TARGET'],
  ['GET / HTTP/1.1\r\nHost: h\r\nX\x00: a\r\n\r\n', 'MOLT_ERR_HTTP_BAD_HEADER_NAME'],
  ['GET / HTTP/1.1\r\nHost: h\r\nX(y): a\r\n\r\n', 'MOLT_ERR_HTTP_BAD_HEADER_NAME'],
  ['GET / HTTP/1.1\r\nHost: h\r\n: a\r\n\r\n', 'MOLT_ERR_HTTP_BAD_HEADER_NAME'],
  ['GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n', 'MOLT_ERR_HTTP_BAD_HEADER_NAME'],
  ['G(T / HTTP/1.1\r\nHost: h\r\n\r\n', 'MOLT_ERR_HTTP_BAD_METHOD'],
  [' GET / HTTP/1.1\r\nHost: h\r\n\r\n', 'MOLT_ERR_HTTP_BAD_METHOD'],
  ['GET  / HTTP/1.1\r\nHost: h\r\n\r\n', 'MOLT_ERR_HTTP_BAD_TARGET'],
  ['GET / HTTP/1.1 \r\nHost: h\r\n\r\n', 'MOLT_ERR_HTTP_BAD_VERSION'],
  ['GET / HTTP/2.0\r\nHost: h\r\n\r\n', 'MOLT_ERR_HTTP_BAD_VERSION'],
  ['GET / http/1.1\r\nHost: h\r\n\r\n', 'MOLT_ERR_HTTP_BAD_VERSION'],
  ['GET / HTTP/1.10\r\nHost: h\r\n\r\n', 'MOLT_ERR_HTTP_BAD_VERSION'],
  ['GET / HTTP/1.x\r\nHost: h\r\n\r\n', 'MOLT_ERR_HTTP_BAD_VERSION'],
  ['GET / HTTP/1.\r\nHost: h\r\n\r\n', 'MOLT_ERR_HTTP_BAD_VERSION'],
  ['GET / HTTP/0.9\r\nHost: h\r\n\r\n', 'MOLT_ERR_HTTP_BAD_VERSION'],
  ['GET / HTTP/3.1\r\nHost: h\r\n\r\n', 'MOLT_ERR_HTTP_BAD_VERSION'],
  ['PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'MOLT_ERR_HTTP_BAD_METHOD'],
  ['PRI * HTTP/1.1\r\nHost: h\r\n\r\n', 'MOLT_ERR_HTTP_BAD_METHOD'],
  ['PRI / HTTP/1.1\r\nHost: h\r\n\r\n', 'MOLT_ERR_HTTP_BAD_METHOD'],
  ['TRACE * HTTP/1.1\r\nHost: h\r\n\r\n', 'MOLT_ERR_HTTP_BAD_TARGET'],
  ['GET * HTTP/1.1\r\nHost: h\r\n\r\n', 'MOLT_ERR_HTTP_BAD_TARGET'],
  ['POST * HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n', 'MOLT_ERR_HTTP_BAD_TARGET'],
  ['options * HTTP/1.1\r\nHost: h\r\n\r\n', 'MOLT_ERR_HTTP_BAD_TARGET'],
  ['GET http://user:pass@h.test/ HTTP/1.1\r\nHost: h.test\r\n\r\n', 'MOLT_ERR_HTTP_BAD_TARGET'],
  ['GET http://user@h.test HTTP/1.1\r\nHost: h.test\r\n\r\n', 'MOLT_ERR_HTTP_BAD_TARGET'],
  ['GET https://h.test@evil.test/x HTTP/1.1\r\nHost: h.test\r\n\r\n', 'MOLT_ERR_HTTP_BAD_TARGET'],
  ['GET http://user%40x@h.test/ HTTP/1.1\r\nHost: h.test\r\n\r\n', 'MOLT_ERR_HTTP_BAD_TARGET'],
  ['GET http://user%3Apass%40h.test/ HTTP/1.1\r\nHost: h.test\r\n\r\n', 'MOLT_ERR_HTTP_BAD_TARGET'],
  ['GET http://%68.test/ HTTP/1.1\r\nHost: h.test\r\n\r\n', 'MOLT_ERR_HTTP_BAD_TARGET'],
  ['GET /\r\nHost: h\r\n\r\n', 'MOLT_ERR_HTTP_BAD_TARGET'],
  ['GET / HTTP/1.1\r\n\r\n', 'MOLT_ERR_HTTP_MISSING_HOST'],
  ['GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n', 'MOLT_ERR_HTTP_DUPLICATE_HOST'],
  ['GET / HTTP/1.1\r\nHost: h\r\nConnection: clo(se\r\n\r\n', 'MOLT_ERR_HTTP_BAD_HEADER_VALUE'],
];

for (const [raw, code] of BAD_REQUESTS) {
  test(`rejects ${code}: ${JSON.stringify(raw.slice(0, 60))}`, () => expectError(raw, true, code));
}

test('header block over the limit is rejected while scanning', () => {
  const big = 'GET / HTTP/1.1\r\nHost: h\r\nX-Big: ' + 'a'.repeat(2000) + '\r\n\r\n';
  expectError(big, true, 'MOLT_ERR_HTTP_HEAD_TOO_LARGE', 1024);
  // Never-ending head: rejected as soon as the limit is reached, not after the end.
  const s = new HeadScanner(true, 1024);
  const endless = Buffer.from('GET / HTTP/1.1\r\nX: ' + 'b'.repeat(1100), 'latin1');
  assert.equal(s.execute(endless, 0, 1024), ERROR);
  assert.equal(s.errorCode, 'MOLT_ERR_HTTP_HEAD_TOO_LARGE');
  // exactly at the limit is fine
  const exact = 'GET / HTTP/1.1\r\nHost: h\r\n\r\n';
  expectValid(exact, true, () => {});
  allWays(exact, true, ({ r }) => assert.equal(r, exact.length), exact.length);
});

test('too many headers', () => {
  let raw = 'GET / HTTP/1.1\r\nHost: h\r\n';
  for (let i = 0; i < 10; i++) raw += `X-${i}: ${i}\r\n`;
  raw += '\r\n';
  expectError(raw, true, 'MOLT_ERR_HTTP_TOO_MANY_HEADERS', undefined, 10);
  allWays(raw, true, ({ r }) => assert.ok(r > 0), undefined, 11);
});

test('scanner resets in place and the second message reuses it', () => {
  const s = new HeadScanner(true);
  const a = Buffer.from('GET /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n');
  assert.equal(s.execute(a, 0, a.length), a.length);
  assert.equal(s.contentLength, 3);
  s.reset();
  const b = Buffer.from('xxGET /2 HTTP/1.1\r\nHost: b\r\n\r\n');
  assert.equal(s.execute(b, 2, b.length), b.length - 2);
  assert.equal(s.target, '/2');
  assert.equal(s.host, 'b');
  assert.equal(s.contentLength, -1);
});

// ---- look-alikes, tolerated bytes, versions, target forms ----

const LOOKALIKES = [
  'Transfer_Encoding', 'transfer_encoding', 'TRANSFER_ENCODING', 'Transfer.Encoding', 'Transfer~Encoding', 'Transfer__Encoding',
  'Transfer-_Encoding', 'Transfer-Encoding_', '_Transfer-Encoding', '-Transfer-Encoding', 'Transfer-Encoding-',
  'Content_Length', 'Content.Length', "Content'Length", 'Content--Length', 'content_length_', 'Connection_', '.Connection',
  'Keep_Alive', 'Proxy_Connection', 'TE_', '_te', 'te.', 'Trailer_', 'Upgrade_', 'Host_', '_Host', 'HOST.', 'Proxy_Authorization',
  'Proxy_Authenticate', 'X_Forwarded_For', 'x-forwarded_for', 'X_Forwarded_Proto', 'X.Forwarded.Host', '__X__Forwarded__For__',
];
const NOT_LOOKALIKES = [
  'T_E', 'ContentLength', 'TransferEncoding', 'Content-Lengths', 'X-Content_Length', 'Content_Length2', 'Hosts', 'X_Host', 'Trailer',
  'Trailers', 'X_Under', 'X.Dot', 'Accept-Encoding', 'Keep-Alive2', 'Upgrade-Insecure-Requests', 'Forwarded', 'X_Forwarded',
  'Content_Type', 'Proxy_Authorization_Extra', 'a', '_', '__',
];

test('look-alike names: fold to a protected name without being it', () => {
  for (const n of LOOKALIKES) assert.equal(isLookalikeName(Buffer.from(n), 0, n.length), true, n);
  for (const n of NOT_LOOKALIKES) assert.equal(isLookalikeName(Buffer.from(n), 0, n.length), false, n);
  for (const n of ['Transfer-Encoding', 'content-length', 'TE', 'Host', 'Trailer', 'X-Forwarded-For']) assert.equal(isLookalikeName(Buffer.from(n), 0, n.length), false, n);
});

test('look-alike request header → MOLT_ERR_HTTP_LOOKALIKE_HEADER, whole and split, wherever it is', () => {
  for (const n of LOOKALIKES) {
    expectError(`POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n${n}: chunked\r\n\r\n`, true, 'MOLT_ERR_HTTP_LOOKALIKE_HEADER');
    expectError(`GET / HTTP/1.1\r\n${n}: 1\r\nHost: h\r\n\r\n`, true, 'MOLT_ERR_HTTP_LOOKALIKE_HEADER');
    expectError(`GET / HTTP/1.0\r\n${n}:\r\n\r\n`, true, 'MOLT_ERR_HTTP_LOOKALIKE_HEADER');
  }
  for (const n of NOT_LOOKALIKES) {
    expectValid(`GET / HTTP/1.1\r\nHost: h\r\n${n}: v\r\n\r\n`, true, (s) => {
      assert.equal(s.headerName(1), n);
      assert.equal(s.kinds[1], H_OTHER);
    });
  }
});

test('look-alike response header: kept out of framing, classified hop-by-hop (the proxy drops it)', () => {
  expectValid('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer_Encoding: chunked\r\nContent.Length: 99\r\nX: y\r\n\r\n', false, (s) => {
    assert.equal(s.responseBodyKind(false), BODY_LENGTH);
    assert.equal(s.contentLength, 2);
    assert.equal(s.chunked, false);
    assert.deepEqual([...s.kinds.subarray(0, 4)], [3, H_HOP, H_HOP, H_OTHER]);
  });
  expectValid('HTTP/1.1 200 OK\r\nContent_Length: 5\r\n\r\n', false, (s) => assert.equal(s.responseBodyKind(false), BODY_UNTIL_CLOSE));
});

test('control characters other than NUL/CR/LF in field values are kept byte for byte', () => {
  let ctl = '';
  for (let c = 1; c < 0x20; c++) if (c !== 9 && c !== 10 && c !== 13) ctl += String.fromCharCode(c);
  ctl += '\x7f';
  const raw = `GET / HTTP/1.1\r\nHost: h\r\nX-Ctl: a${ctl}b\r\nX-Lead:\x0bv\x0c\r\nCookie: a=\x01\r\n\r\n`;
  expectValid(raw, true, (s, buf) => {
    assert.equal(s.headerValue(1), `a${ctl}b`);
    assert.equal(s.headerValue(2), '\x0bv\x0c'); // VT/FF are not OWS: part of the value
    assert.equal(s.cookie, 'a=\x01');
    assert.equal(buf.toString('latin1'), raw);
  });
  expectValid(`HTTP/1.1 200 OK\r\nX: \x01\x1f\r\nContent-Length: 0\r\n\r\n`, false, (s) => assert.equal(s.headerValue(0), '\x01\x1f'));
  bodyAllWays('0\r\nX-T: a\x01\x7fb\r\n\r\n', BODY_CHUNKED, 0, (r, how) => assert.equal(r.done, true, how));
});

test('HTTP/1.2 … HTTP/1.9 are handled as HTTP/1.1 and rewritten to HTTP/1.1 in the buffer', () => {
  for (let d = 2; d <= 9; d++) {
    const raw = `\r\nPOST /u HTTP/1.${d}\r\nHost: h\r\nContent-Length: 3\r\nX: HTTP/1.${d}\r\n\r\n`;
    expectValid(raw, true, (s, buf) => {
      assert.equal(s.versionMinor, 1);
      assert.equal(s.versionRewritten, true);
      assert.equal(s.keepAlive, true);
      assert.equal(s.contentLength, 3);
      assert.equal(buf.toString('latin1'), raw.replace(`POST /u HTTP/1.${d}`, 'POST /u HTTP/1.1'), 'only the request line changes');
    });
    expectError(`GET / HTTP/1.${d}\r\n\r\n`, true, 'MOLT_ERR_HTTP_MISSING_HOST');
    const resp = `HTTP/1.${d} 200 OK\r\nContent-Length: 0\r\n\r\n`;
    expectValid(resp, false, (s, buf) => {
      assert.equal(s.versionMinor, 1);
      assert.equal(buf.toString('latin1'), resp.replace(`HTTP/1.${d}`, 'HTTP/1.1'));
    });
  }
  expectValid('GET / HTTP/1.1\r\nHost: h\r\n\r\n', true, (s) => assert.equal(s.versionRewritten, false));
  expectValid('GET / HTTP/1.0\r\n\r\n', true, (s) => assert.equal(s.versionRewritten, false));
});

test('target forms: "*" with OPTIONS, absolute-form without userinfo', () => {
  expectValid('OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n', true, (s) => assert.equal(s.target, '*'));
  expectValid('GET http://h.test:8080/a@b?c=@ HTTP/1.1\r\nHost: h.test\r\n\r\n', true, (s) => assert.equal(s.target, 'http://h.test:8080/a@b?c=@'));
  expectValid('GET /a@b HTTP/1.1\r\nHost: h.test\r\n\r\n', true, (s) => assert.equal(s.target, '/a@b'));
  expectValid('GET http://[::1]:80 HTTP/1.1\r\nHost: h.test\r\n\r\n', true, () => {});
});

// ---- responses ----

test('response heads: framing per status and request method', () => {
  expectValid('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\n', false, (s) => {
    assert.equal(s.status, 200);
    assert.equal(s.responseBodyKind(false), BODY_LENGTH);
    assert.equal(s.responseBodyKind(true), BODY_NONE);
    assert.equal(s.keepAlive, true);
  });
  expectValid('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n', false, (s) => assert.equal(s.responseBodyKind(false), BODY_CHUNKED));
  expectValid('HTTP/1.1 200 OK\r\n\r\n', false, (s) => assert.equal(s.responseBodyKind(false), BODY_UNTIL_CLOSE));
  expectValid('HTTP/1.0 200 OK\r\n\r\n', false, (s) => {
    assert.equal(s.keepAlive, false);
    assert.equal(s.responseBodyKind(false), BODY_UNTIL_CLOSE);
  });
  expectValid('HTTP/1.1 204 No Content\r\n\r\n', false, (s) => assert.equal(s.responseBodyKind(false), BODY_NONE));
  expectValid('HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n', false, (s) => assert.equal(s.responseBodyKind(false), BODY_NONE));
  expectValid('HTTP/1.1 100 Continue\r\n\r\n', false, (s) => assert.equal(s.responseBodyKind(false), BODY_NONE));
  expectValid('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n', false, (s) => {
    assert.equal(s.status, 101);
    assert.equal(s.connUpgrade, true);
  });
  expectValid('HTTP/1.1 500\r\nContent-Length: 0\r\n\r\n', false, (s) => assert.equal(s.status, 500));
  expectValid('HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n', false, (s) => {
    assert.equal(s.keepAlive, false);
    assert.equal(s.responseBodyKind(false), BODY_NONE);
  });
});

const BAD_RESPONSES: [string, FramingErrorCode][] = [
  ['HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n', 'MOLT_ERR_HTTP_CL_AND_TE'],
  ['HTTP/1.1 20 OK\r\n\r\n', 'MOLT_ERR_HTTP_BAD_STATUS'],
  ['HTTP/1.1 2000 OK\r\n\r\n', 'MOLT_ERR_HTTP_BAD_STATUS'],
  ['HTTP/1.1 099 OK\r\n\r\n', 'MOLT_ERR_HTTP_BAD_STATUS'],
  ['HTTP/1.1 200 O\x00K\r\n\r\n', 'MOLT_ERR_HTTP_BAD_STATUS'],
  ['HTTP/2 200 OK\r\n\r\n', 'MOLT_ERR_HTTP_BAD_VERSION'],
  ['HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n', 'MOLT_ERR_HTTP_DUPLICATE_CONTENT_LENGTH'],
  ['HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n', 'MOLT_ERR_HTTP_BAD_TRANSFER_ENCODING'],
  ['HTTP/1.1 200 OK\nContent-Length: 1\r\n\r\n', 'MOLT_ERR_HTTP_BAD_STATUS'],
  ['HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n', 'MOLT_ERR_HTTP_OBS_FOLD'],
];

for (const [raw, code] of BAD_RESPONSES) {
  test(`rejects response ${code}: ${JSON.stringify(raw.slice(0, 50))}`, () => expectError(raw, false, code));
}

// ---- bodies ----

function scanBody(parts: Buffer[], kind: 0 | 1 | 2 | 3, length = 0): { consumed: number; done: boolean; err: FramingErrorCode | null } {
  const b = new BodyScanner(1024);
  b.reset(kind, length);
  let consumed = 0;
  for (const p of parts) {
    if (b.done) break;
    const n = b.execute(p, 0, p.length);
    if (n === ERROR) return { consumed, done: false, err: b.errorCode };
    consumed += n;
  }
  return { consumed, done: b.done, err: null };
}

function bodyAllWays(raw: string, kind: 0 | 1 | 2 | 3, length: number, check: (r: ReturnType<typeof scanBody>, how: string) => void): void {
  deliveries(Buffer.from(raw, 'latin1')).forEach((parts, i) => check(scanBody(parts, kind, length), `delivery ${i}`));
}

test('Content-Length body: exact length, rest belongs to the next message', () => {
  bodyAllWays('helloGET / HTTP/1.1\r\n', BODY_LENGTH, 5, (r, how) => {
    assert.equal(r.err, null, how);
    assert.equal(r.done, true, how);
    assert.equal(r.consumed, 5, how);
  });
});

test('chunked body: chunks, extensions and trailers pass through; boundary exact', () => {
  const body = '5\r\nhello\r\n1A;name=val;x="q"\r\n' + 'z'.repeat(26) + '\r\n0\r\nTrailer-X: 1\r\n\r\n';
  bodyAllWays(body + 'GET /next', BODY_CHUNKED, 0, (r, how) => {
    assert.equal(r.err, null, how);
    assert.equal(r.done, true, how);
    assert.equal(r.consumed, body.length, how);
  });
  bodyAllWays('0\r\n\r\n', BODY_CHUNKED, 0, (r) => assert.equal(r.consumed, 5));
  bodyAllWays('000A\r\n0123456789\r\n0\r\n\r\n', BODY_CHUNKED, 0, (r) => assert.equal(r.done, true));
});

test('until-close body consumes everything and never finishes by itself', () => {
  bodyAllWays('anything at all', BODY_UNTIL_CLOSE, 0, (r) => {
    assert.equal(r.consumed, 15);
    assert.equal(r.done, false);
  });
});

const BAD_CHUNKED: [string, FramingErrorCode][] = [
  ['zz\r\nhello\r\n0\r\n\r\n', 'MOLT_ERR_HTTP_BAD_CHUNK'],
  ['\r\n', 'MOLT_ERR_HTTP_BAD_CHUNK'],
  ['-5\r\nhello\r\n0\r\n\r\n', 'MOLT_ERR_HTTP_BAD_CHUNK'],
  ['0x5\r\nhello\r\n0\r\n\r\n', 'MOLT_ERR_HTTP_BAD_CHUNK'],
  [' 5\r\nhello\r\n0\r\n\r\n', 'MOLT_ERR_HTTP_BAD_CHUNK'],
  ['5 \r\nhello\r\n0\r\n\r\n', 'MOLT_ERR_HTTP_BAD_CHUNK'],
  ['10000000000000\r\n', 'MOLT_ERR_HTTP_BAD_CHUNK'],
  ['5\nhello\r\n0\r\n\r\n', 'MOLT_ERR_HTTP_BAD_CHUNK'],
  ['5\r\nhelloX\r\n0\r\n\r\n', 'MOLT_ERR_HTTP_BAD_CHUNK'],
  ['5\r\nhello\n0\r\n\r\n', 'MOLT_ERR_HTTP_BAD_CHUNK'],
  ['5\r\nhello\r\n0\r\n\n', 'MOLT_ERR_HTTP_BAD_CHUNK'],
  ['5;a\x00b\r\nhello\r\n0\r\n\r\n', 'MOLT_ERR_HTTP_BAD_CHUNK'],
  ['5;' + 'e'.repeat(2000) + '\r\nhello\r\n0\r\n\r\n', 'MOLT_ERR_HTTP_CHUNK_EXT_TOO_LONG'],
  ['0\r\nX: ' + 't'.repeat(2000) + '\r\n\r\n', 'MOLT_ERR_HTTP_TRAILERS_TOO_LARGE'],
  ['0\r\n X: folded\r\n\r\n', 'MOLT_ERR_HTTP_BAD_CHUNK'],
];

for (const [raw, code] of BAD_CHUNKED) {
  test(`rejects chunked body ${code}: ${JSON.stringify(raw.slice(0, 40))}`, () => {
    bodyAllWays(raw, BODY_CHUNKED, 0, (r, how) => assert.equal(r.err, code, how));
  });
}

test("Keep-Alive response header: the server's idle timeout in seconds, -1 when not given", () => {
  const cases: Array<[string, number]> = [
    ['Keep-Alive: timeout=5\r\n', 5],
    ['keep-alive: timeout=5, max=100\r\n', 5],
    ['Keep-Alive: max=100, Timeout = 20\r\n', 20],
    ['Keep-Alive: max=5\r\n', -1],
    ['Keep-Alive: timeout=1.5\r\n', -1],
    ['X-Keep-Alive: timeout=5\r\n', -1],
    ['', -1],
  ];
  for (const [line, want] of cases) {
    expectValid(`HTTP/1.1 200 OK\r\nContent-Length: 0\r\n${line}\r\n`, false, (s) => {
      assert.equal(s.keepAliveTimeout(), want, JSON.stringify(line));
    });
  }
});
