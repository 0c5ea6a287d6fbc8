// Incremental, strict HTTP/1.1 framing scanner for the sidecar data path.
//
// HeadScanner scans a request or response head; BodyScanner delimits a body (Content-Length or
// chunked). Both are state machines reset in place per message. They never copy: results are
// offsets into the buffer the caller passed, and the caller hands out subarray views.
//
// Resumption contract for HeadScanner.execute(buf, start, end): a head may arrive in pieces. If
// execute returns NEED_MORE, the caller calls it again later with a buffer whose bytes from
// `start` repeat the bytes seen so far plus new ones (the caller concatenates only when a head
// straddles reads, which is rare). Bytes already scanned are not examined again, and every limit
// is checked while scanning. All recorded offsets are relative to `start` (the head start).
//
// Strictness (smuggling defence): see README "Data path" and docs/limits.md "Hostile input". Errors
// carry a stable code; callers match on the code, never on the reason text.
//
// The one byte the scanner ever writes: an HTTP/1.2 … HTTP/1.9 message is handled as HTTP/1.1 (RFC
// 9110 §2.5), and when its head completes the minor version digit in the caller's buffer is
// rewritten to '1', so whoever copies the start line on (the proxy copies it verbatim) forwards
// HTTP/1.1, a version every HTTP/1.1 parser accepts.

export type FramingErrorCode =
  | 'MOLT_ERR_HTTP_HEAD_TOO_LARGE'
  | 'MOLT_ERR_HTTP_TOO_MANY_HEADERS'
  | 'MOLT_ERR_HTTP_BAD_METHOD'
  | 'MOLT_ERR_HTTP_BAD_TARGET'
  | 'MOLT_ERR_HTTP_BAD_VERSION'
  | 'MOLT_ERR_HTTP_BAD_STATUS'
  | 'MOLT_ERR_HTTP_BAD_LINE_ENDING'
  | 'MOLT_ERR_HTTP_BAD_HEADER_NAME'
  | 'MOLT_ERR_HTTP_LOOKALIKE_HEADER'
  | 'MOLT_ERR_HTTP_BAD_HEADER_VALUE'
  | 'MOLT_ERR_HTTP_OBS_FOLD'
  | 'MOLT_ERR_HTTP_SPACE_BEFORE_COLON'
  | 'MOLT_ERR_HTTP_BAD_CONTENT_LENGTH'
  | 'MOLT_ERR_HTTP_DUPLICATE_CONTENT_LENGTH'
  | 'MOLT_ERR_HTTP_BAD_TRANSFER_ENCODING'
  | 'MOLT_ERR_HTTP_CL_AND_TE'
  | 'MOLT_ERR_HTTP_MISSING_HOST'
  | 'MOLT_ERR_HTTP_DUPLICATE_HOST'
  | 'MOLT_ERR_HTTP_BAD_CHUNK'
  | 'MOLT_ERR_HTTP_CHUNK_EXT_TOO_LONG'
  | 'MOLT_ERR_HTTP_TRAILERS_TOO_LARGE';

/** Return values of execute(): > 0 is the head length in bytes. */
export const NEED_MORE = 0;
export const ERROR = -1;

/** Body framing kinds. */
export const BODY_NONE = 0;
export const BODY_LENGTH = 1;
export const BODY_CHUNKED = 2;
/** Responses only: the body runs until the upstream closes the connection. */
export const BODY_UNTIL_CLOSE = 3;
export type BodyKind = 0 | 1 | 2 | 3;

/** Header kinds recorded per line so the proxy can rewrite a head without comparing names again. */
export const H_OTHER = 0;
export const H_HOST = 1;
export const H_COOKIE = 2;
export const H_CONTENT_LENGTH = 3;
export const H_TRANSFER_ENCODING = 4;
export const H_CONNECTION = 5;
/** Keep-Alive, Proxy-Connection, TE, Proxy-Authenticate, Proxy-Authorization: always dropped by a proxy. */
export const H_HOP = 6;
export const H_UPGRADE = 7;
export const H_EXPECT = 8;
export const H_X_FORWARDED_FOR = 9;
export const H_X_FORWARDED_PROTO = 10;
export const H_X_FORWARDED_HOST = 11;
/** x-molt-shadow: marks requests molt originates for a preflight; never accepted from a client. */
export const H_X_MOLT_SHADOW = 12;

export const DEFAULT_MAX_HEADER_BYTES = 64 * 1024;
export const DEFAULT_MAX_HEADERS = 100;
/** Maximum Connection tokens remembered (beyond close/keep-alive/upgrade); more is an error. */
const MAX_CONN_TOKENS = 16;
const MAX_CL_DIGITS = 15; // < 2^53
const MAX_CHUNK_SIZE_DIGITS = 13; // < 2^52
export const MAX_CHUNK_EXT_BYTES = 1024;

// ---- character tables ----

const CR = 13, LF = 10, SP = 32, HT = 9, COLON = 58, COMMA = 44;

/** tchar (RFC 9110 §5.6.2) */
const TOKEN = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~") TOKEN[c.charCodeAt(0)] = 1;
for (let c = 0x30; c <= 0x39; c++) TOKEN[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) TOKEN[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) TOKEN[c] = 1;
/** field-vchar / SP / HTAB / obs-text: no CTLs (NUL, bare CR/LF, DEL). Reason phrase, chunk extensions. */
const VALUE = new Uint8Array(256);
VALUE[0x09] = 1;
for (let c = 0x20; c <= 0x7e; c++) VALUE[c] = 1;
for (let c = 0x80; c <= 0xff; c++) VALUE[c] = 1;
/** Header and trailer field values: VALUE plus the CTLs RFC 9110 §5.5 does not ask a recipient to
 *  refuse (everything but NUL, CR, LF). Fields molt interprets stay strict (see #onHeader). */
const FIELD = new Uint8Array(256);
for (let c = 0x01; c <= 0xff; c++) FIELD[c] = 1;
FIELD[CR] = 0;
FIELD[LF] = 0;
/** Field-name bytes: 1 letter/digit, 2 "-", 3 any other tchar, 0 not a tchar. Lets the name loop
 *  notice, at no cost for ordinary names, the ones that need the look-alike check. */
const NAMECH = new Uint8Array(256);
for (let c = 0; c < 256; c++) if (TOKEN[c] === 1) NAMECH[c] = 3;
for (let c = 0x30; c <= 0x39; c++) NAMECH[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) { NAMECH[c] = 1; NAMECH[c + 0x20] = 1; }
NAMECH[0x2d] = 2;
/** request-target: visible ASCII only. */
const TARGET = new Uint8Array(256);
for (let c = 0x21; c <= 0x7e; c++) TARGET[c] = 1;
const HEX = new Int8Array(256).fill(-1);
for (let c = 0; c < 10; c++) HEX[0x30 + c] = c;
for (let c = 0; c < 6; c++) { HEX[0x41 + c] = 10 + c; HEX[0x61 + c] = 10 + c; }

// Interned method strings: no allocation for common methods.
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'TRACE', 'PATCH', 'CONNECT', 'PRI'];

function internMethod(buf: Buffer, s: number, e: number): string {
  const len = e - s;
  for (let i = 0; i < METHODS.length; i++) {
    const m = METHODS[i]!;
    if (m.length !== len) continue;
    let j = 0;
    while (j < len && buf[s + j] === m.charCodeAt(j)) j++;
    if (j === len) return m;
  }
  return buf.toString('latin1', s, e);
}

/** Case-insensitive compare of buf[s..e) with a lower-case ASCII literal. */
function eqLower(buf: Buffer, s: number, e: number, lit: string): boolean {
  if (e - s !== lit.length) return false;
  for (let i = 0; i < lit.length; i++) {
    if ((buf[s + i]! | 0x20) !== lit.charCodeAt(i)) return false;
  }
  return true;
}

function classifyName(buf: Buffer, s: number, e: number): number {
  switch (e - s) {
    case 2: return eqLower(buf, s, e, 'te') ? H_HOP : H_OTHER;
    case 4: return eqLower(buf, s, e, 'host') ? H_HOST : H_OTHER;
    case 6:
      if (eqLower(buf, s, e, 'cookie')) return H_COOKIE;
      return eqLower(buf, s, e, 'expect') ? H_EXPECT : H_OTHER;
    case 7: return eqLower(buf, s, e, 'upgrade') ? H_UPGRADE : H_OTHER;
    case 10:
      if (eqLower(buf, s, e, 'connection')) return H_CONNECTION;
      return eqLower(buf, s, e, 'keep-alive') ? H_HOP : H_OTHER;
    case 13: return eqLower(buf, s, e, 'x-molt-shadow') ? H_X_MOLT_SHADOW : H_OTHER;
    case 14: return eqLower(buf, s, e, 'content-length') ? H_CONTENT_LENGTH : H_OTHER;
    case 15: return eqLower(buf, s, e, 'x-forwarded-for') ? H_X_FORWARDED_FOR : H_OTHER;
    case 16:
      if (eqLower(buf, s, e, 'proxy-connection')) return H_HOP;
      return eqLower(buf, s, e, 'x-forwarded-host') ? H_X_FORWARDED_HOST : H_OTHER;
    case 17:
      if (eqLower(buf, s, e, 'transfer-encoding')) return H_TRANSFER_ENCODING;
      return eqLower(buf, s, e, 'x-forwarded-proto') ? H_X_FORWARDED_PROTO : H_OTHER;
    case 18: return eqLower(buf, s, e, 'proxy-authenticate') ? H_HOP : H_OTHER;
    case 19: return eqLower(buf, s, e, 'proxy-authorization') ? H_HOP : H_OTHER;
    default: return H_OTHER;
  }
}

// ---- look-alikes of protected header names ----
//
// A request header whose name is not a protected name but folds to one is refused (400); in a
// response it is dropped (classified H_HOP). Folding, the union of what CGI-style environments and
// frameworks do to names (RFC 3875 §4.1.18 maps "-" to "_"; others map every non-alphanumeric
// byte): ASCII letters lower-cased, digits kept, every other byte a delimiter; a run of delimiters
// counts as one "-", leading and trailing ones are ignored. "Content_Length", "content.length",
// "Transfer__Encoding", "Host_" and "_TE" are look-alikes; "Content-Length" in any case is the
// field itself; "T_E" (folds to "t-e") and "ContentLength" are ordinary names.

/** Protected names, lower-case: framing, hop-by-hop (RFC 9110 §7.6.1, plus the ones molt drops), the
 *  routing Host, and the X-Forwarded-* fields molt replaces with its own. */
const PROTECTED_NAMES = [
  'transfer-encoding', 'content-length', 'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer',
  'upgrade', 'host', 'proxy-authenticate', 'proxy-authorization', 'x-forwarded-for', 'x-forwarded-proto',
  'x-forwarded-host', 'x-molt-shadow',
];
const FOLD_MAX = 19; // 'proxy-authorization'
const PROTECTED_BY_LENGTH: Uint8Array[][] = [];
for (let n = 0; n <= FOLD_MAX; n++) PROTECTED_BY_LENGTH.push([]);
for (const name of PROTECTED_NAMES) PROTECTED_BY_LENGTH[name.length]!.push(Uint8Array.from(name, (ch) => ch.charCodeAt(0)));
/** FOLD[c]: the lower-case letter or digit for an alphanumeric byte, 0 for any other byte. */
const FOLD = new Uint8Array(256);
for (let c = 0x30; c <= 0x39; c++) FOLD[c] = c;
for (let c = 0x61; c <= 0x7a; c++) { FOLD[c] = c; FOLD[c - 0x20] = c; }
const HYPHEN = 0x2d;
/** Scratch for one folded name (scanning is synchronous, so one is enough). */
const folded = new Uint8Array(FOLD_MAX);

/**
 * buf[s..e) is a field name that classifyName did not recognise: does it fold to a protected name?
 * A name spelled canonically (letters, digits, single inner "-") folds to itself, so only names
 * with another delimiter, a run of them, or one at either end can be look-alikes.
 */
export function isLookalikeName(buf: Uint8Array, s: number, e: number): boolean {
  let n = 0;
  let canonical = true;
  let sep = false;
  for (let p = s; p < e; p++) {
    const c = buf[p]!;
    const f = FOLD[c]!;
    if (f === 0) {
      if (c !== HYPHEN || sep || n === 0) canonical = false;
      sep = true;
      continue;
    }
    if (sep && n > 0) {
      if (n === FOLD_MAX) return false;
      folded[n++] = HYPHEN;
    }
    sep = false;
    if (n === FOLD_MAX) return false;
    folded[n++] = f;
  }
  if (sep) canonical = false;
  if (canonical) return false;
  const candidates = PROTECTED_BY_LENGTH[n]!;
  for (let k = 0; k < candidates.length; k++) {
    const lit = candidates[k]!;
    let j = 0;
    while (j < n && folded[j] === lit[j]) j++;
    if (j === n) return true;
  }
  return false;
}

// ---- head scanner states ----
const S_START = 0; // requests: optional leading empty lines
const S_START_LF = 1;
const S_METHOD = 2;
const S_TARGET = 3;
const S_VERSION = 4; // "HTTP/1.x" (request: after target; response: at start)
const S_RL_LF = 5;
const S_STATUS = 6;
const S_REASON = 7;
const S_LINE_START = 8;
const S_NAME = 9;
const S_OWS = 10;
const S_VALUE = 11;
const S_VALUE_LF = 12;
const S_END_LF = 13;
const S_DONE = 14;
const S_ERROR = 15;

const HTTP_1_ = 'HTTP/1.';

/**
 * Scans one request or response head. Fields are valid after execute() returned a length, until
 * reset(). Header i occupies lines[4i..4i+3] = lineStart, nameEnd, valueStart, valueEnd (value
 * trimmed of OWS); the line ends at lines[4(i+1)] (or at headerEnd for the last one). Offsets
 * are relative to the head start.
 */
export class HeadScanner {
  readonly isRequest: boolean;
  readonly maxHeaderBytes: number;
  readonly maxHeaders: number;
  readonly lines: Int32Array;
  readonly kinds: Uint8Array;

  // scan state
  #state = S_START;
  #scanned = 0;
  #mark = 0;
  #aux = 0;
  #lastNonWs = 0;
  #buf: Buffer = EMPTY;
  #base = 0;

  // results
  /** Buffer and offset the last execute() saw: the head is buf[base, base+headLength). */
  get buf(): Buffer { return this.#buf; }
  get base(): number { return this.#base; }
  headLength = 0;
  errorCode: FramingErrorCode | null = null;
  errorReason = '';
  method = '';
  targetStart = 0;
  targetEnd = 0;
  /** 0 for HTTP/1.0, 1 for HTTP/1.1 (and for HTTP/1.2 … HTTP/1.9, handled as HTTP/1.1) */
  versionMinor = 1;
  /** The head said HTTP/1.2 … HTTP/1.9; its minor digit was rewritten to '1' in the buffer. */
  versionRewritten = false;
  status = 0;
  /** End of the start line including CRLF (= start of the first header line). */
  startLineEnd = 0;
  /** Offset of the final empty line (CRLF) that ends the head. */
  headerEnd = 0;
  headerCount = 0;
  contentLength = -1;
  chunked = false;
  hostIndex = -1;
  cookieIndex = -1;
  cookieCount = 0;
  upgradeIndex = -1;
  xffCount = 0;
  expectContinue = false;
  connClose = false;
  connKeepAlive = false;
  connUpgrade = false;
  /** Other Connection tokens (header names the sender marked hop-by-hop): start,end pairs. */
  readonly connTokens = new Int32Array(MAX_CONN_TOKENS * 2);
  connTokenCount = 0;
  /** Leading empty lines skipped before the request line (counted in headLength). */
  leading = 0;

  constructor(isRequest: boolean, maxHeaderBytes = DEFAULT_MAX_HEADER_BYTES, maxHeaders = DEFAULT_MAX_HEADERS) {
    this.isRequest = isRequest;
    this.maxHeaderBytes = maxHeaderBytes;
    this.maxHeaders = maxHeaders;
    this.lines = new Int32Array(maxHeaders * 4 + 4);
    this.kinds = new Uint8Array(maxHeaders + 1);
    this.reset();
  }

  reset(): void {
    this.#state = this.isRequest ? S_START : S_VERSION;
    this.#scanned = 0;
    this.#mark = 0;
    this.#aux = 0;
    this.#lastNonWs = 0;
    this.#buf = EMPTY;
    this.#base = 0;
    this.headLength = 0;
    this.errorCode = null;
    this.errorReason = '';
    this.method = '';
    this.targetStart = 0;
    this.targetEnd = 0;
    this.versionMinor = 1;
    this.versionRewritten = false;
    this.status = 0;
    this.startLineEnd = 0;
    this.headerEnd = 0;
    this.headerCount = 0;
    this.contentLength = -1;
    this.chunked = false;
    this.hostIndex = -1;
    this.cookieIndex = -1;
    this.cookieCount = 0;
    this.upgradeIndex = -1;
    this.xffCount = 0;
    this.expectContinue = false;
    this.connClose = false;
    this.connKeepAlive = false;
    this.connUpgrade = false;
    this.connTokenCount = 0;
    this.leading = 0;
  }

  /** True once execute() returned NEED_MORE after seeing at least one byte of the message. */
  get started(): boolean { return this.#scanned > 0; }

  #fail(code: FramingErrorCode, reason: string): number {
    this.#state = S_ERROR;
    this.errorCode = code;
    this.errorReason = reason;
    return ERROR;
  }

  /**
   * Scan buf[start, end). Returns the head length (> 0) when the head is complete, NEED_MORE, or
   * ERROR (see errorCode / errorReason).
   */
  execute(buf: Buffer, start: number, end: number): number {
    if (this.#state === S_DONE) return this.headLength;
    if (this.#state === S_ERROR) return ERROR;
    this.#buf = buf;
    this.#base = start;
    let p = start + this.#scanned;
    const limit = start + this.maxHeaderBytes;
    const stop = end < limit ? end : limit;
    let state = this.#state;
    let mark = this.#mark;
    let aux = this.#aux;
    let lastNonWs = this.#lastNonWs;
    const lines = this.lines;

    for (; p < stop; p++) {
      const c = buf[p]!;
      switch (state) {
        case S_START:
          if (c === CR) { state = S_START_LF; continue; }
          if (c === LF) return this.#fail('MOLT_ERR_HTTP_BAD_LINE_ENDING', 'bare LF');
          if (TOKEN[c] !== 1) return this.#fail('MOLT_ERR_HTTP_BAD_METHOD', 'invalid method');
          this.leading = p - start;
          mark = p;
          state = S_METHOD;
          continue;
        case S_START_LF:
          if (c !== LF) return this.#fail('MOLT_ERR_HTTP_BAD_LINE_ENDING', 'bare CR');
          if (p - start + 1 > 8) return this.#fail('MOLT_ERR_HTTP_BAD_METHOD', 'too many empty lines');
          state = S_START;
          continue;
        case S_METHOD:
          if (TOKEN[c] === 1) continue;
          if (c !== SP) return this.#fail('MOLT_ERR_HTTP_BAD_METHOD', 'invalid method');
          this.method = internMethod(buf, mark, p);
          // PRI exists only as the start of the HTTP/2 connection preface (RFC 9113 §3.4, §11.6).
          if (this.method === 'PRI') return this.#fail('MOLT_ERR_HTTP_BAD_METHOD', 'PRI (HTTP/2 connection preface) on HTTP/1.1');
          this.targetStart = p + 1 - start;
          state = S_TARGET;
          continue;
        case S_TARGET:
          if (TARGET[c] === 1) continue;
          if (c !== SP || !(this.method === 'CONNECT' ? p - start > this.targetStart : validTarget(buf, start + this.targetStart, p))) return this.#fail('MOLT_ERR_HTTP_BAD_TARGET', 'invalid request-target');
          // asterisk-form is for OPTIONS only (RFC 9112 §3.2.4); this also refuses "PRI * HTTP/1.1".
          if (buf[start + this.targetStart] === 0x2a && this.method !== 'OPTIONS') return this.#fail('MOLT_ERR_HTTP_BAD_TARGET', 'asterisk-form request-target without OPTIONS');
          this.targetEnd = p - start;
          state = S_VERSION;
          aux = 0;
          continue;
        case S_VERSION:
          if (aux < 7) {
            if (c !== HTTP_1_.charCodeAt(aux)) return this.#fail('MOLT_ERR_HTTP_BAD_VERSION', 'unsupported HTTP version');
            aux++;
            continue;
          }
          if (aux === 7) {
            // HTTP-version is one digit "." one digit (RFC 9112 §2.3); a minor version above 1 is
            // handled as 1.1, the highest we implement (RFC 9110 §2.5), and rewritten on completion.
            if (c < 0x30 || c > 0x39) return this.#fail('MOLT_ERR_HTTP_BAD_VERSION', 'unsupported HTTP version');
            this.versionMinor = c === 0x30 ? 0 : 1;
            this.versionRewritten = c > 0x31;
            aux = 8;
            continue;
          }
          if (this.isRequest) {
            if (c !== CR) return this.#fail('MOLT_ERR_HTTP_BAD_VERSION', 'bad request-line');
            state = S_RL_LF;
            continue;
          }
          if (c !== SP) return this.#fail('MOLT_ERR_HTTP_BAD_STATUS', 'bad status-line');
          state = S_STATUS;
          aux = 0;
          continue;
        case S_STATUS:
          if (aux < 3) {
            if (c < 0x30 || c > 0x39) return this.#fail('MOLT_ERR_HTTP_BAD_STATUS', 'bad status code');
            this.status = this.status * 10 + (c - 0x30);
            aux++;
            continue;
          }
          if (this.status < 100 || this.status > 599) return this.#fail('MOLT_ERR_HTTP_BAD_STATUS', 'bad status code');
          if (c === SP) { state = S_REASON; continue; }
          if (c === CR) { state = S_RL_LF; continue; }
          return this.#fail('MOLT_ERR_HTTP_BAD_STATUS', 'bad status-line');
        case S_REASON:
          if (c === CR) { state = S_RL_LF; continue; }
          if (VALUE[c] !== 1) return this.#fail('MOLT_ERR_HTTP_BAD_STATUS', 'bad reason phrase');
          continue;
        case S_RL_LF:
          if (c !== LF) return this.#fail('MOLT_ERR_HTTP_BAD_LINE_ENDING', 'bare CR');
          this.startLineEnd = p + 1 - start;
          state = S_LINE_START;
          continue;
        case S_LINE_START:
          if (c === CR) { this.headerEnd = p - start; state = S_END_LF; continue; }
          if (c === SP || c === HT) return this.#fail('MOLT_ERR_HTTP_OBS_FOLD', 'obsolete line folding');
          if (c === LF) return this.#fail('MOLT_ERR_HTTP_BAD_LINE_ENDING', 'bare LF');
          if (TOKEN[c] !== 1) return this.#fail('MOLT_ERR_HTTP_BAD_HEADER_NAME', 'invalid header name');
          if (this.headerCount >= this.maxHeaders) return this.#fail('MOLT_ERR_HTTP_TOO_MANY_HEADERS', 'too many headers');
          lines[this.headerCount * 4] = p - start;
          aux = NAMECH[c] === 1 ? 0 : 1; // aux = 1: the name is not canonically spelled (see isLookalikeName)
          state = S_NAME;
          continue;
        case S_NAME: {
          const t = NAMECH[c];
          if (t === 1) continue;
          if (t === 2) { if (buf[p - 1] === HYPHEN) aux = 1; continue; }
          if (t === 3) { aux = 1; continue; }
          if (c === COLON) {
            const i = this.headerCount;
            const ns = start + lines[i * 4]!;
            lines[i * 4 + 1] = p - start;
            let kind = classifyName(buf, ns, p);
            if (kind === H_OTHER && (aux === 1 || buf[p - 1] === HYPHEN) && isLookalikeName(buf, ns, p)) {
              if (this.isRequest) return this.#fail('MOLT_ERR_HTTP_LOOKALIKE_HEADER', 'header name folds to a framing, hop-by-hop or proxy header');
              kind = H_HOP; // response: dropped on the way to the client
            }
            this.kinds[i] = kind;
            state = S_OWS;
            continue;
          }
          if (c === SP || c === HT) return this.#fail('MOLT_ERR_HTTP_SPACE_BEFORE_COLON', 'whitespace between field name and colon');
          if (c === CR || c === LF) return this.#fail('MOLT_ERR_HTTP_BAD_HEADER_NAME', 'header line without colon');
          return this.#fail('MOLT_ERR_HTTP_BAD_HEADER_NAME', 'invalid header name');
        }
        case S_OWS:
          if (c === SP || c === HT) continue;
          mark = p;
          lastNonWs = p;
          if (c === CR) { state = S_VALUE_LF; continue; }
          if (FIELD[c] !== 1) return this.#fail('MOLT_ERR_HTTP_BAD_HEADER_VALUE', c === LF ? 'bare LF' : 'invalid character in header value');
          lastNonWs = p + 1;
          state = S_VALUE;
          continue;
        case S_VALUE:
          if (FIELD[c] === 1) {
            if (c !== SP && c !== HT) lastNonWs = p + 1;
            continue;
          }
          if (c === CR) { state = S_VALUE_LF; continue; }
          return this.#fail('MOLT_ERR_HTTP_BAD_HEADER_VALUE', c === LF ? 'bare LF' : 'invalid character in header value');
        case S_VALUE_LF: {
          if (c !== LF) return this.#fail('MOLT_ERR_HTTP_BAD_LINE_ENDING', 'bare CR');
          const i = this.headerCount;
          lines[i * 4 + 2] = mark - start;
          lines[i * 4 + 3] = lastNonWs - start;
          this.headerCount = i + 1;
          if (this.kinds[i] !== H_OTHER && this.#onHeader(buf, i, mark, lastNonWs, p - 1) === ERROR) return ERROR;
          lines[(i + 1) * 4] = p + 1 - start;
          state = S_LINE_START;
          continue;
        }
        case S_END_LF:
          if (c !== LF) return this.#fail('MOLT_ERR_HTTP_BAD_LINE_ENDING', 'bare CR');
          this.#state = S_DONE;
          this.headLength = p + 1 - start;
          lines[this.headerCount * 4] = this.headerEnd;
          // Minor digit: request "METHOD SP target SP HTTP/1.x", response "HTTP/1.x SP …".
          if (this.versionRewritten) buf[start + (this.isRequest ? this.targetEnd + 8 : 7)] = 0x31;
          return this.#finish();
        default:
          return ERROR;
      }
    }
    this.#state = state;
    this.#mark = mark;
    this.#aux = aux;
    this.#lastNonWs = lastNonWs;
    this.#scanned = p - start;
    if (p >= limit) return this.#fail('MOLT_ERR_HTTP_HEAD_TOO_LARGE', 'header block too large');
    return NEED_MORE;
  }

  /** vs..ve: value without OWS; lineEnd: the CR ending the line (trailing OWS lies in ve..lineEnd). */
  #onHeader(buf: Buffer, i: number, vs: number, ve: number, lineEnd: number): number {
    switch (this.kinds[i]) {
      case H_HOST:
        if (this.hostIndex >= 0) return this.#fail('MOLT_ERR_HTTP_DUPLICATE_HOST', 'duplicate Host');
        if (hasCtl(buf, vs, ve)) return this.#fail('MOLT_ERR_HTTP_BAD_HEADER_VALUE', 'control character in Host');
        this.hostIndex = i;
        return 0;
      case H_COOKIE:
        if (this.cookieIndex < 0) this.cookieIndex = i;
        this.cookieCount++;
        return 0;
      case H_CONTENT_LENGTH: {
        // Trailing HTAB is OWS, but llhttp (and so Node backends) refuse it in framing headers: refuse too.
        if (trailingTab(buf, ve, lineEnd)) return this.#fail('MOLT_ERR_HTTP_BAD_CONTENT_LENGTH', 'tab after Content-Length');
        if (this.contentLength >= 0) return this.#fail('MOLT_ERR_HTTP_DUPLICATE_CONTENT_LENGTH', 'duplicate Content-Length');
        const n = ve - vs;
        if (n === 0 || n > MAX_CL_DIGITS) return this.#fail('MOLT_ERR_HTTP_BAD_CONTENT_LENGTH', 'invalid Content-Length');
        let v = 0;
        for (let p = vs; p < ve; p++) {
          const d = buf[p]! - 0x30;
          if (d < 0 || d > 9) return this.#fail('MOLT_ERR_HTTP_BAD_CONTENT_LENGTH', 'invalid Content-Length');
          v = v * 10 + d;
        }
        this.contentLength = v;
        return 0;
      }
      case H_TRANSFER_ENCODING:
        if (this.chunked) return this.#fail('MOLT_ERR_HTTP_BAD_TRANSFER_ENCODING', 'repeated Transfer-Encoding');
        if (trailingTab(buf, ve, lineEnd)) return this.#fail('MOLT_ERR_HTTP_BAD_TRANSFER_ENCODING', 'tab after Transfer-Encoding');
        if (!eqLower(buf, vs, ve, 'chunked')) return this.#fail('MOLT_ERR_HTTP_BAD_TRANSFER_ENCODING', 'unsupported Transfer-Encoding');
        this.chunked = true;
        return 0;
      case H_CONNECTION:
        return this.#connection(buf, vs, ve);
      case H_UPGRADE:
        if (hasCtl(buf, vs, ve)) return this.#fail('MOLT_ERR_HTTP_BAD_HEADER_VALUE', 'control character in Upgrade');
        this.upgradeIndex = i;
        return 0;
      case H_EXPECT:
        if (hasCtl(buf, vs, ve)) return this.#fail('MOLT_ERR_HTTP_BAD_HEADER_VALUE', 'control character in Expect');
        if (eqLower(buf, vs, ve, '100-continue')) this.expectContinue = true;
        return 0;
      case H_X_FORWARDED_FOR:
        this.xffCount++;
        return 0;
      default:
        return 0;
    }
  }

  #connection(buf: Buffer, vs: number, ve: number): number {
    let p = vs;
    while (p < ve) {
      while (p < ve && (buf[p] === SP || buf[p] === HT || buf[p] === COMMA)) p++;
      if (p >= ve) break;
      const s = p;
      while (p < ve && buf[p] !== COMMA) p++;
      let e = p;
      while (e > s && (buf[e - 1] === SP || buf[e - 1] === HT)) e--;
      for (let q = s; q < e; q++) {
        if (TOKEN[buf[q]!] !== 1) return this.#fail('MOLT_ERR_HTTP_BAD_HEADER_VALUE', 'invalid Connection token');
      }
      if (eqLower(buf, s, e, 'close')) this.connClose = true;
      else if (eqLower(buf, s, e, 'keep-alive')) this.connKeepAlive = true;
      else if (eqLower(buf, s, e, 'upgrade')) this.connUpgrade = true;
      else {
        if (this.connTokenCount >= MAX_CONN_TOKENS) return this.#fail('MOLT_ERR_HTTP_BAD_HEADER_VALUE', 'too many Connection tokens');
        this.connTokens[this.connTokenCount * 2] = s - this.#base;
        this.connTokens[this.connTokenCount * 2 + 1] = e - this.#base;
        this.connTokenCount++;
      }
    }
    return 0;
  }

  #finish(): number {
    if (this.chunked && this.contentLength >= 0) return this.#fail('MOLT_ERR_HTTP_CL_AND_TE', 'Content-Length with Transfer-Encoding');
    if (this.isRequest) {
      if (this.chunked && this.versionMinor === 0) return this.#fail('MOLT_ERR_HTTP_BAD_TRANSFER_ENCODING', 'Transfer-Encoding in HTTP/1.0');
      if (this.hostIndex < 0 && this.versionMinor === 1) return this.#fail('MOLT_ERR_HTTP_MISSING_HOST', 'missing Host');
    }
    return this.headLength;
  }

  // ---- accessors (valid after a successful execute) ----

  /** Keep the connection open after this message (HTTP/1.1 default, HTTP/1.0 only with keep-alive). */
  get keepAlive(): boolean {
    if (this.connClose) return false;
    return this.versionMinor === 1 || this.connKeepAlive;
  }

  /** Request: an upgrade was requested (Upgrade header + Connection: upgrade). */
  get isUpgrade(): boolean {
    return this.upgradeIndex >= 0 && this.connUpgrade;
  }

  /** Request body framing. */
  get requestBodyKind(): BodyKind {
    if (this.chunked) return BODY_CHUNKED;
    return this.contentLength > 0 ? BODY_LENGTH : BODY_NONE;
  }

  /** Response body framing, given whether the request was HEAD. */
  responseBodyKind(requestWasHead: boolean): BodyKind {
    const s = this.status;
    if (requestWasHead || s < 200 || s === 204 || s === 304) return BODY_NONE;
    if (this.chunked) return BODY_CHUNKED;
    if (this.contentLength >= 0) return this.contentLength > 0 ? BODY_LENGTH : BODY_NONE;
    return BODY_UNTIL_CLOSE;
  }

  headerName(i: number): string {
    const b = this.#base;
    return this.#buf.toString('latin1', b + this.lines[i * 4]!, b + this.lines[i * 4 + 1]!);
  }

  headerValue(i: number): string {
    const b = this.#base;
    return this.#buf.toString('latin1', b + this.lines[i * 4 + 2]!, b + this.lines[i * 4 + 3]!);
  }

  /** View of the value bytes of header i. */
  headerValueView(i: number): Buffer {
    const b = this.#base;
    return this.#buf.subarray(b + this.lines[i * 4 + 2]!, b + this.lines[i * 4 + 3]!);
  }

  /**
   * The `timeout=N` (seconds) of a Keep-Alive response header, -1 when there is none: how long the
   * server keeps an idle connection open (Node, Apache and Tomcat send it; nginx does not).
   * Allocates: called once per upstream connection, not per message.
   */
  keepAliveTimeout(): number {
    for (let i = 0; i < this.headerCount; i++) {
      if (this.kinds[i] !== H_HOP || this.headerName(i).toLowerCase() !== 'keep-alive') continue;
      const m = /(?:^|[,;\s])timeout\s*=\s*(\d{1,6})(?![\d.])/i.exec(this.headerValue(i));
      if (m !== null) return Number(m[1]);
    }
    return -1;
  }

  /** Offsets (absolute in buf) of the whole line of header i, CRLF included. */
  lineStart(i: number): number { return this.#base + this.lines[i * 4]!; }
  lineEnd(i: number): number { return this.#base + this.lines[i * 4 + 4]!; }

  get target(): string {
    return this.#buf.toString('latin1', this.#base + this.targetStart, this.#base + this.targetEnd);
  }

  get host(): string | undefined {
    return this.hostIndex < 0 ? undefined : this.headerValue(this.hostIndex);
  }

  /** Cookie header value; several Cookie lines are joined with "; " (RFC 9114-style). */
  get cookie(): string | undefined {
    if (this.cookieIndex < 0) return undefined;
    if (this.cookieCount === 1) return this.headerValue(this.cookieIndex);
    let v = '';
    for (let i = this.cookieIndex; i < this.headerCount; i++) {
      if (this.kinds[i] === H_COOKIE) v = v === '' ? this.headerValue(i) : v + '; ' + this.headerValue(i);
    }
    return v;
  }

  get upgrade(): string | undefined {
    return this.upgradeIndex < 0 ? undefined : this.headerValue(this.upgradeIndex);
  }

  /** Is header i named by a Connection token (so hop-by-hop for this message)? */
  namedByConnection(i: number): boolean {
    const n = this.connTokenCount;
    if (n === 0) return false;
    const buf = this.#buf, b = this.#base;
    const s = b + this.lines[i * 4]!, e = b + this.lines[i * 4 + 1]!;
    for (let t = 0; t < n; t++) {
      const ts = b + this.connTokens[t * 2]!, te = b + this.connTokens[t * 2 + 1]!;
      if (te - ts !== e - s) continue;
      let j = 0;
      while (j < e - s && (buf[s + j]! | 0x20) === (buf[ts + j]! | 0x20)) j++;
      if (j === e - s) return true;
    }
    return false;
  }

  /** Connection tokens other than close/keep-alive/upgrade, lower-cased (tests, diagnostics). */
  get connectionTokens(): string[] {
    const out: string[] = [];
    for (let t = 0; t < this.connTokenCount; t++) {
      out.push(this.#buf.toString('latin1', this.#base + this.connTokens[t * 2]!, this.#base + this.connTokens[t * 2 + 1]!).toLowerCase());
    }
    return out;
  }
}

const EMPTY = Buffer.alloc(0);

/** Authority characters accepted in an absolute-form target: unreserved, sub-delims, ":", "[", "]".
 *  No "@": userinfo in an http(s) URI is an error (RFC 9110 §4.2.4), however it is spelled; no "%"
 *  either, so a percent-encoded "@" or host is refused the same way. */
const AUTHORITY = new Uint8Array(256);
for (const c of "-._~!$&'()*+,;=:[]") AUTHORITY[c.charCodeAt(0)] = 1;
for (let c = 0x30; c <= 0x39; c++) AUTHORITY[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) { AUTHORITY[c] = 1; AUTHORITY[c + 0x20] = 1; }

/**
 * Request-target forms (RFC 9112 §3.2), visible ASCII already checked: origin-form ("/..."), "*" (the
 * caller allows it with OPTIONS only), or absolute-form with scheme http/https and a non-empty authority
 * without userinfo. Anything else is rejected, as llhttp does (authority-form is for CONNECT only, which
 * the proxy answers with 405).
 */
function validTarget(buf: Buffer, s: number, e: number): boolean {
  if (e <= s) return false;
  const c = buf[s]!;
  if (c === 0x2f /* / */) return true;
  if (c === 0x2a /* * */) return e - s === 1;
  let p = s;
  if (eqLower(buf, p, p + 7, 'http://')) p += 7;
  else if (eqLower(buf, p, p + 8, 'https://')) p += 8;
  else return false;
  const hostStart = p;
  while (p < e && AUTHORITY[buf[p]!] === 1) p++;
  if (p === hostStart) return false;
  return p === e || buf[p] === 0x2f || buf[p] === 0x3f /* ? */;
}

/** A CTL other than HTAB (those FIELD lets through) in buf[s..e)? */
function hasCtl(buf: Buffer, s: number, e: number): boolean {
  for (let p = s; p < e; p++) {
    const c = buf[p]!;
    if ((c < 0x20 && c !== HT) || c === 0x7f) return true;
  }
  return false;
}

function trailingTab(buf: Buffer, s: number, e: number): boolean {
  for (let p = s; p < e; p++) if (buf[p] === HT) return true;
  return false;
}

// ---- body scanner ----
const B_DONE = 0;
const B_LENGTH = 1;
const B_UNTIL_CLOSE = 2;
const B_SIZE = 3;
const B_EXT = 4;
const B_SIZE_LF = 5;
const B_DATA = 6;
const B_DATA_CR = 7;
const B_DATA_LF = 8;
const B_TRAILER_START = 9;
const B_TRAILER_LINE = 10;
const B_TRAILER_LF = 11;
const B_END_LF = 12;
const B_ERROR = 13;
// chunk-ext = *( ";" ext-name [ "=" ( token / quoted-string ) ] ) (RFC 9112 §7.1.1), without BWS:
// B_EXT is "after ';'", the states below the rest. Stricter than llhttp (which also refuses BWS).
const B_EXT_NAME = 14;
const B_EXT_VAL_START = 15;
const B_EXT_TOKEN = 16;
const B_EXT_QUOTED = 17;
const B_EXT_QPAIR = 18;
const B_EXT_QEND = 19;
const B_TRAILER_NAME = 20;
const BACKSLASH = 0x5c, DQUOTE = 0x22, EQUALS = 0x3d, SEMI = 0x3b;

/**
 * Delimits one message body. execute() returns how many bytes of buf[start, end) belong to the
 * body (those bytes are forwarded as-is: chunk framing passes through untouched), or ERROR. When
 * `done` turns true the rest of the buffer belongs to the next message.
 */
export class BodyScanner {
  readonly maxTrailerBytes: number;
  #state = B_DONE;
  #remaining = 0;
  #digits = 0;
  #ext = 0;
  #trailer = 0;
  errorCode: FramingErrorCode | null = null;
  errorReason = '';

  constructor(maxTrailerBytes = DEFAULT_MAX_HEADER_BYTES) {
    this.maxTrailerBytes = maxTrailerBytes;
  }

  get done(): boolean { return this.#state === B_DONE; }
  get untilClose(): boolean { return this.#state === B_UNTIL_CLOSE; }
  /** Body bytes still to come: exact for a Content-Length body, -1 when unknown (chunked, until close). */
  get expected(): number {
    const s = this.#state;
    return s === B_LENGTH ? this.#remaining : s === B_DONE || s === B_ERROR ? 0 : -1;
  }

  reset(kind: BodyKind, length = 0): void {
    this.errorCode = null;
    this.errorReason = '';
    this.#digits = 0;
    this.#ext = 0;
    this.#trailer = 0;
    this.#remaining = 0;
    switch (kind) {
      case BODY_LENGTH:
        this.#remaining = length;
        this.#state = length > 0 ? B_LENGTH : B_DONE;
        break;
      case BODY_CHUNKED: this.#state = B_SIZE; break;
      case BODY_UNTIL_CLOSE: this.#state = B_UNTIL_CLOSE; break;
      default: this.#state = B_DONE;
    }
  }

  #fail(code: FramingErrorCode, reason: string): number {
    this.#state = B_ERROR;
    this.errorCode = code;
    this.errorReason = reason;
    return ERROR;
  }

  execute(buf: Buffer, start: number, end: number): number {
    const state0 = this.#state;
    if (state0 === B_LENGTH) {
      const avail = end - start;
      if (avail < this.#remaining) { this.#remaining -= avail; return avail; }
      const n = this.#remaining;
      this.#remaining = 0;
      this.#state = B_DONE;
      return n;
    }
    if (state0 === B_UNTIL_CLOSE) return end - start;
    if (state0 === B_DONE) return 0;
    if (state0 === B_ERROR) return ERROR;
    return this.#chunked(buf, start, end);
  }

  #chunked(buf: Buffer, start: number, end: number): number {
    let state = this.#state;
    let p = start;
    while (p < end) {
      const c = buf[p]!;
      switch (state) {
        case B_SIZE: {
          const h = HEX[c]!;
          if (h >= 0) {
            if (++this.#digits > MAX_CHUNK_SIZE_DIGITS) return this.#fail('MOLT_ERR_HTTP_BAD_CHUNK', 'chunk size too long');
            this.#remaining = this.#remaining * 16 + h;
            p++;
            continue;
          }
          if (this.#digits === 0) return this.#fail('MOLT_ERR_HTTP_BAD_CHUNK', 'invalid chunk size');
          if (c === CR) { state = B_SIZE_LF; p++; continue; }
          if (c === SEMI) { state = B_EXT; this.#ext = 0; p++; continue; }
          return this.#fail('MOLT_ERR_HTTP_BAD_CHUNK', 'invalid chunk size');
        }
        case B_EXT: case B_EXT_NAME: case B_EXT_VAL_START: case B_EXT_TOKEN: case B_EXT_QUOTED: case B_EXT_QPAIR: case B_EXT_QEND:
          if (++this.#ext > MAX_CHUNK_EXT_BYTES) return this.#fail('MOLT_ERR_HTTP_CHUNK_EXT_TOO_LONG', 'chunk extension too long');
          state = extNext(state, c);
          if (state === B_ERROR) return this.#fail('MOLT_ERR_HTTP_BAD_CHUNK', 'invalid chunk extension');
          p++;
          continue;
        case B_SIZE_LF:
          if (c !== LF) return this.#fail('MOLT_ERR_HTTP_BAD_CHUNK', 'bare CR in chunk size line');
          p++;
          this.#digits = 0;
          state = this.#remaining === 0 ? B_TRAILER_START : B_DATA;
          continue;
        case B_DATA: {
          const avail = end - p;
          if (avail < this.#remaining) { this.#remaining -= avail; p = end; continue; }
          p += this.#remaining;
          this.#remaining = 0;
          state = B_DATA_CR;
          continue;
        }
        case B_DATA_CR:
          if (c !== CR) return this.#fail('MOLT_ERR_HTTP_BAD_CHUNK', 'missing CRLF after chunk data');
          state = B_DATA_LF; p++;
          continue;
        case B_DATA_LF:
          if (c !== LF) return this.#fail('MOLT_ERR_HTTP_BAD_CHUNK', 'missing CRLF after chunk data');
          state = B_SIZE; p++;
          continue;
        case B_TRAILER_START:
          if (c === CR) { state = B_END_LF; p++; continue; }
          if (TOKEN[c] !== 1) return this.#fail('MOLT_ERR_HTTP_BAD_CHUNK', 'invalid trailer field');
          state = B_TRAILER_NAME;
          if (++this.#trailer > this.maxTrailerBytes) return this.#fail('MOLT_ERR_HTTP_TRAILERS_TOO_LARGE', 'trailers too large');
          p++;
          continue;
        case B_TRAILER_NAME:
          // field-name ":" like a header line (no whitespace before the colon), then the value.
          if (++this.#trailer > this.maxTrailerBytes) return this.#fail('MOLT_ERR_HTTP_TRAILERS_TOO_LARGE', 'trailers too large');
          if (c === COLON) state = B_TRAILER_LINE;
          else if (TOKEN[c] !== 1) return this.#fail('MOLT_ERR_HTTP_BAD_CHUNK', 'invalid trailer field name');
          p++;
          continue;
        case B_TRAILER_LINE:
          if (++this.#trailer > this.maxTrailerBytes) return this.#fail('MOLT_ERR_HTTP_TRAILERS_TOO_LARGE', 'trailers too large');
          if (c === CR) { state = B_TRAILER_LF; p++; continue; }
          if (FIELD[c] !== 1) return this.#fail('MOLT_ERR_HTTP_BAD_CHUNK', 'invalid trailer field');
          p++;
          continue;
        case B_TRAILER_LF:
          if (c !== LF) return this.#fail('MOLT_ERR_HTTP_BAD_CHUNK', 'bare CR in trailer');
          state = B_TRAILER_START; p++;
          continue;
        case B_END_LF:
          if (c !== LF) return this.#fail('MOLT_ERR_HTTP_BAD_CHUNK', 'bare CR after last chunk');
          p++;
          this.#state = B_DONE;
          return p - start;
        default:
          return ERROR;
      }
    }
    this.#state = state;
    return p - start;
  }
}

/** One byte of a chunk extension (state after ';' .. before CR). CR ends it (→ B_SIZE_LF). */
function extNext(state: number, c: number): number {
  switch (state) {
    case B_EXT: return TOKEN[c] === 1 ? B_EXT_NAME : B_ERROR;
    case B_EXT_NAME:
      if (TOKEN[c] === 1) return B_EXT_NAME;
      if (c === EQUALS) return B_EXT_VAL_START;
      return c === SEMI ? B_EXT : c === CR ? B_SIZE_LF : B_ERROR;
    case B_EXT_VAL_START:
      if (TOKEN[c] === 1) return B_EXT_TOKEN;
      return c === DQUOTE ? B_EXT_QUOTED : B_ERROR;
    case B_EXT_TOKEN:
      if (TOKEN[c] === 1) return B_EXT_TOKEN;
      return c === SEMI ? B_EXT : c === CR ? B_SIZE_LF : B_ERROR;
    case B_EXT_QUOTED:
      if (c === DQUOTE) return B_EXT_QEND;
      if (c === BACKSLASH) return B_EXT_QPAIR;
      return VALUE[c] === 1 ? B_EXT_QUOTED : B_ERROR;
    case B_EXT_QPAIR: return VALUE[c] === 1 ? B_EXT_QUOTED : B_ERROR;
    case B_EXT_QEND: return c === SEMI ? B_EXT : c === CR ? B_SIZE_LF : B_ERROR;
    default: return B_ERROR;
  }
}
