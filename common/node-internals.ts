// Every use of Node internals in molt, behind one module, each with a tested fallback.
//
// Four fast paths rely on things Node does not document:
// - direct writes: `process.binding('stream_wrap')` (WriteWrap, streamBaseState) to hand a buffer
//   straight to a socket's libuv handle, skipping the Writable machinery (sidecar/socket-writer.ts);
//   fallback: socket.write().
// - own read buffer: the private `kBuffer`/`kBufferGen`/`kBufferCb` socket symbols plus
//   handle.useUserBuffer(), i.e. `net.connect({ onread })` for sockets a server accepted (the
//   sidecar's client connections); fallback: 'data' events.
// - tcp_wrap: `process.binding('tcp_wrap')` to bind a TCP socket without listening, so the
//   supervisor can hold the sidecar's socket across restarts (controller/listen-socket.ts);
//   fallback: the sidecar binds by itself.
// - native copy: `process.binding('buffer').copy` to copy a byte range between buffers. Node 20's
//   Buffer#copy builds a Uint8Array view of the source for every partial copy (garbage for the
//   scavenger on every forwarded head); the binding does a memmove and allocates nothing;
//   fallback: Buffer#copy.
//
// Names existing is not enough: a newer Node may keep a name and change what it does. So each
// path is enabled only after a self-test shows it behaving on real sockets over 127.0.0.1:
// bytes written directly (synchronously and, for a large write, asynchronously) arrive intact
// and in order with later socket.write()s; bytes read into our own buffer arrive intact in that
// buffer and EOF still comes; a tcp_wrap socket binds, listens and accepts. Until selfTest() has
// resolved, every fast path is off (the proxy awaits it before listening). tcp_wrap is also
// checked synchronously (bind, getsockname, listen) where it is used, since the supervisor binds
// synchronously.
//
// MOLT_NODE_INTERNALS=off forces every fallback (the test suite re-runs the proxy tests so);
// MOLT_SOCKET_WRITER=stream forces only the direct-write fallback.

import net from 'node:net';
import { once } from 'node:events';
import { randomFillSync } from 'node:crypto';

const FORCED_OFF = process.env.MOLT_NODE_INTERNALS === 'off';
const WRITER_OFF = process.env.MOLT_SOCKET_WRITER === 'stream';
const SELF_TEST_TIMEOUT_MS = 3000;

type Binding = (name: string) => unknown;
function binding(name: string): Record<string, unknown> | null {
  try {
    const b = (process as unknown as { binding: Binding }).binding(name);
    return typeof b === 'object' && b !== null ? (b as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

// ---- direct writes (stream_wrap) ----

/** A pending direct write; libuv calls oncomplete when it finishes asynchronously. */
export interface WriteReq {
  handle: unknown;
  oncomplete: (this: WriteReq, status: number) => void;
  async: boolean;
  bytes: number;
  buffer: Buffer | null;
  owner: WriteOwner | null;
}

/** Told when an asynchronous direct write finished (status < 0: failed). */
export interface WriteOwner {
  _completed(bytes: number, status: number): void;
}

interface StreamHandle {
  writeBuffer(req: WriteReq, buf: Buffer): number;
}

interface StreamWrapBinding {
  WriteWrap: new () => WriteReq;
  streamBaseState: Int32Array;
  kLastWriteWasAsync: number;
}

function findStreamWrap(): StreamWrapBinding | string {
  const b = binding('stream_wrap') as Partial<StreamWrapBinding> | null;
  if (b === null) return "process.binding('stream_wrap') is not available";
  if (typeof b.WriteWrap !== 'function' || !(b.streamBaseState instanceof Int32Array) || typeof b.kLastWriteWasAsync !== 'number') {
    return "process.binding('stream_wrap') lacks WriteWrap/streamBaseState/kLastWriteWasAsync";
  }
  return b as StreamWrapBinding;
}

/** The stream_wrap binding once the self-test passed; null = use socket.write(). Read on every write. */
let streamWrap: StreamWrapBinding | null = null;

/** Direct writes are in use (false: every write goes through socket.write). */
export function directWritesActive(): boolean {
  return streamWrap !== null;
}

/** The request object of the last write that completed synchronously, for the next write. */
let spareReq: WriteReq | null = null;

function onWriteComplete(this: WriteReq, status: number): void {
  const o = this.owner;
  this.buffer = null;
  this.owner = null;
  if (o !== null) o._completed(this.bytes, status);
}

export const WRITE_FALLBACK = 1;
export const WRITE_SYNC = 0;
export const WRITE_ASYNC = 2;

/**
 * Write `buf` straight to the socket's libuv handle, as Node's own writeGeneric does minus the stream
 * layer. Returns WRITE_SYNC (the kernel took it all), WRITE_ASYNC (libuv keeps writing; `owner`
 * hears `_completed(buf.length, status)` later; `buf` must stay unchanged until then), a negative
 * errno (the write failed), or WRITE_FALLBACK (no direct path: use socket.write()). The caller
 * checks that the Writable holds nothing first, so ordering with socket.write() is kept.
 */
export function writeDirect(socket: net.Socket, buf: Buffer, owner: WriteOwner): number {
  const b = streamWrap;
  const h = (socket as unknown as { _handle: StreamHandle | null })._handle;
  if (b === null || h == null) return WRITE_FALLBACK;
  // A write the kernel takes at once never reaches libuv's write queue: Node tries it first and
  // only binds the request object to a native WriteWrap when it has to wait. So the object of a
  // synchronous write is untouched and serves the next write (one fewer allocation and native
  // constructor call per write); one that went asynchronous (or failed) belongs to libuv/Node.
  let req = spareReq;
  spareReq = null;
  if (req === null) {
    req = new b.WriteWrap();
    req.oncomplete = onWriteComplete;
    req.async = false;
    req.bytes = 0;
    req.buffer = null;
    req.owner = null;
  }
  req.handle = h;
  const err = h.writeBuffer(req, buf);
  if (err !== 0) return err < 0 ? err : -err;
  if (b.streamBaseState[b.kLastWriteWasAsync] === 0) {
    spareReq = req;
    return WRITE_SYNC;
  }
  req.async = true;
  req.bytes = buf.length;
  req.buffer = buf; // keep it alive while libuv writes from it
  req.owner = owner;
  return WRITE_ASYNC;
}

// ---- copying byte ranges (buffer binding) ----

type NativeCopy = (source: Uint8Array, target: Uint8Array, targetStart: number, sourceStart: number, sourceEnd: number) => number;

/** The binding's copy once its check passed; null = Buffer#copy. */
let nativeCopy: NativeCopy | null = null;

/**
 * Copy `src[srcStart, srcEnd)` into `dst` at `dstStart`; returns the bytes copied (clamped to the
 * room in `dst`, like Buffer#copy). No allocation when the native copy is active.
 */
export function copyBytes(src: Buffer, dst: Buffer, dstStart: number, srcStart: number, srcEnd: number): number {
  const c = nativeCopy;
  return c !== null ? c(src, dst, dstStart, srcStart, srcEnd) : src.copy(dst, dstStart, srcStart, srcEnd);
}

/** Does the binding's copy behave like Buffer#copy (ranges, views with an offset, clamping)? null = yes. */
function checkNativeCopy(c: NativeCopy): string | null {
  try {
    const pool = pattern(256);
    const src = pool.subarray(17, 17 + 100); // a view with a byteOffset, as pooled buffers are
    const dst = Buffer.alloc(64);
    if (c(src, dst, 5, 10, 30) !== 20) return 'buffer copy returned a wrong count';
    if (!dst.subarray(5, 25).equals(src.subarray(10, 30)) || dst[4] !== 0 || dst[25] !== 0) return 'buffer copy wrote the wrong bytes';
    const small = Buffer.alloc(8);
    if (c(src, small, 4, 0, 100) !== 4 || !small.subarray(4).equals(src.subarray(0, 4)) || small[3] !== 0) return 'buffer copy did not clamp to the target';
    if (c(src, dst, 0, 7, 7) !== 0) return 'buffer copy of an empty range copied bytes';
    return null;
  } catch (e) {
    return 'buffer copy threw: ' + (e as Error).message;
  }
}

function findNativeCopy(): NativeCopy | string {
  const b = binding('buffer') as { copy?: unknown } | null;
  if (b === null) return "process.binding('buffer') is not available";
  if (typeof b.copy !== 'function') return "process.binding('buffer') has no copy";
  const c = b.copy as NativeCopy;
  const why = checkNativeCopy(c);
  return why === null ? c : why;
}

// ---- reads into our own buffer (private net.Socket symbols) ----

interface OnreadSymbols { buf: symbol; gen: symbol; cb: symbol }

function findOnreadSymbols(): OnreadSymbols | string {
  const s = new net.Socket();
  const syms = Object.getOwnPropertySymbols(s);
  s.destroy();
  const find = (d: string): symbol | undefined => syms.find((x) => x.description === d);
  const buf = find('kBuffer');
  const gen = find('kBufferGen');
  const cb = find('kBufferCb');
  return buf && gen && cb ? { buf, gen, cb } : 'net.Socket has no kBuffer/kBufferGen/kBufferCb symbols';
}

/** The symbols once the self-test passed; null = 'data' events. */
let onreadSymbols: OnreadSymbols | null = null;

function applyOwnReadBuffer(k: OnreadSymbols, socket: net.Socket, gen: () => Buffer, cb: (n: number, b: Buffer) => boolean): boolean {
  const sock = socket as unknown as Record<symbol, unknown> & { _handle?: { useUserBuffer?: (b: Buffer) => void } | null };
  const h = sock._handle;
  if (h == null || typeof h.useUserBuffer !== 'function' || sock[k.buf] !== null) return false;
  const b = gen();
  sock[k.buf] = b;
  sock[k.gen] = gen;
  sock[k.cb] = cb;
  h.useUserBuffer(b);
  return true;
}

/**
 * `net.connect({ onread })` for a socket a server accepted (call it in the 'connection' handler):
 * reads go into `gen()`'s buffer and `cb(n, buf)` gets them, no 'data' events. False = not
 * available; attach a 'data' listener instead.
 */
export function readIntoOwnBuffer(socket: net.Socket, gen: () => Buffer, cb: (n: number, b: Buffer) => boolean): boolean {
  const k = onreadSymbols;
  return k !== null && applyOwnReadBuffer(k, socket, gen, cb);
}

// ---- tcp_wrap: a bound socket that is not listening ----

export interface TcpHandle {
  bind(address: string, port: number): number;
  bind6(address: string, port: number, flags: number): number;
  getsockname(out: { port?: number }): number;
  listen(backlog: number): number;
  onconnection: ((status: number, client?: { close(cb?: () => void): void }) => void) | null;
  close(cb?: () => void): void;
  readonly fd: number;
}

interface TcpWrapBinding {
  TCP: new (type: number) => TcpHandle;
  constants: { SERVER: number };
}

let tcpWrapChecked: TcpWrapBinding | string | null = null;

/** Synchronous part of the tcp_wrap self-test: bind 127.0.0.1:0, getsockname, listen. */
function checkTcpWrapSync(): TcpWrapBinding | string {
  if (FORCED_OFF) return 'MOLT_NODE_INTERNALS=off';
  const b = binding('tcp_wrap') as Partial<TcpWrapBinding> | null;
  if (b === null) return "process.binding('tcp_wrap') is not available";
  if (typeof b.TCP !== 'function' || typeof b.constants?.SERVER !== 'number') return "process.binding('tcp_wrap') lacks TCP/constants.SERVER";
  let h: TcpHandle | null = null;
  try {
    h = new b.TCP(b.constants.SERVER);
    if (typeof h.bind !== 'function' || typeof h.bind6 !== 'function' || typeof h.getsockname !== 'function' || typeof h.listen !== 'function') {
      return 'tcp_wrap TCP handle lacks bind/bind6/getsockname/listen';
    }
    const name: { port?: number } = {};
    if (h.bind('127.0.0.1', 0) !== 0) return 'tcp_wrap self-test: bind 127.0.0.1:0 failed';
    if (h.getsockname(name) !== 0 || !(typeof name.port === 'number' && name.port > 0)) return 'tcp_wrap self-test: getsockname gave no port';
    if (!(h.fd >= 0)) return 'tcp_wrap self-test: no file descriptor';
    if (h.listen(1) !== 0) return 'tcp_wrap self-test: listen failed';
    return b as TcpWrapBinding;
  } catch (e) {
    return 'tcp_wrap self-test threw: ' + (e as Error).message;
  } finally {
    try { h?.close(); } catch { /* ignore */ }
  }
}

/** The tcp_wrap binding if it binds and listens here (checked once, synchronously), else why not. */
export function tcpWrap(): { binding: TcpWrapBinding; reason: null } | { binding: null; reason: string } {
  if (tcpWrapChecked === null) tcpWrapChecked = checkTcpWrapSync();
  return typeof tcpWrapChecked === 'string' ? { binding: null, reason: tcpWrapChecked } : { binding: tcpWrapChecked, reason: null };
}

// ---- the self-test ----

/** Which paths are active: 'on', or 'off: why'. */
export interface InternalsReport {
  directWrite: string;
  ownReadBuffer: string;
  tcpWrap: string;
  nativeCopy: string;
}

let selfTestRun: Promise<InternalsReport> | null = null;

/**
 * Test each fast path on real sockets (127.0.0.1), enable the ones that behave, report which are
 * active. Runs once per process; later calls return the same result. Never rejects.
 */
export function selfTest(): Promise<InternalsReport> {
  if (selfTestRun === null) selfTestRun = runSelfTest();
  return selfTestRun;
}

/** The result of selfTest() if it has finished, else null. */
let lastReport: InternalsReport | null = null;
export function internalsReport(): InternalsReport | null {
  return lastReport;
}

async function runSelfTest(): Promise<InternalsReport> {
  const r: InternalsReport = { directWrite: 'off', ownReadBuffer: 'off', tcpWrap: 'off', nativeCopy: 'off' };
  if (FORCED_OFF) {
    r.directWrite = r.ownReadBuffer = r.tcpWrap = r.nativeCopy = 'off: MOLT_NODE_INTERNALS=off';
    lastReport = r;
    return r;
  }
  if (WRITER_OFF) r.directWrite = 'off: MOLT_SOCKET_WRITER=stream';
  else {
    const sw = findStreamWrap();
    if (typeof sw === 'string') r.directWrite = 'off: ' + sw;
    else {
      const why = await withTimeout(testDirectWrite(sw), 'direct write');
      if (why === null) { streamWrap = sw; r.directWrite = 'on'; } else r.directWrite = 'off: ' + why;
    }
  }
  const k = findOnreadSymbols();
  if (typeof k === 'string') r.ownReadBuffer = 'off: ' + k;
  else {
    const why = await withTimeout(testOwnReadBuffer(k), 'own read buffer');
    if (why === null) { onreadSymbols = k; r.ownReadBuffer = 'on'; } else r.ownReadBuffer = 'off: ' + why;
  }
  const nc = findNativeCopy();
  if (typeof nc === 'string') r.nativeCopy = 'off: ' + nc;
  else { nativeCopy = nc; r.nativeCopy = 'on'; }
  const t = tcpWrap();
  if (t.binding === null) r.tcpWrap = 'off: ' + t.reason;
  else {
    const why = await withTimeout(testTcpAccept(t.binding), 'tcp_wrap accept');
    if (why === null) r.tcpWrap = 'on';
    else { tcpWrapChecked = why; r.tcpWrap = 'off: ' + why; }
  }
  lastReport = r;
  return r;
}

/** null = passed, else why it failed. */
async function withTimeout(p: Promise<string | null>, what: string): Promise<string | null> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<string>((res) => { timer = setTimeout(() => res(`${what} self-test timed out`), SELF_TEST_TIMEOUT_MS); });
  try {
    return await Promise.race([p.catch((e: Error) => `${what} self-test threw: ${e.message}`), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function pattern(n: number): Buffer {
  return randomFillSync(Buffer.allocUnsafe(n));
}

/** Same bytes in `a` and `b`, however each is cut into pieces (no concatenation). */
function sameBytes(a: readonly Buffer[], b: readonly Buffer[]): boolean {
  let i = 0, io = 0, j = 0, jo = 0;
  for (;;) {
    while (i < a.length && io === a[i]!.length) { i++; io = 0; }
    while (j < b.length && jo === b[j]!.length) { j++; jo = 0; }
    if (i === a.length || j === b.length) return i === a.length && j === b.length;
    const n = Math.min(a[i]!.length - io, b[j]!.length - jo);
    if (a[i]!.compare(b[j]!, jo, jo + n, io, io + n) !== 0) return false;
    io += n;
    jo += n;
  }
}

/** A connected pair over 127.0.0.1: `client` (ours, connect()ed) and `accepted` (the server side).
 *  `onAccept` runs inside the server's 'connection' handler, as the proxy's own setup does. */
async function socketPair(onAccept: (s: net.Socket) => void = () => {}): Promise<{ client: net.Socket; accepted: net.Socket; close: () => void }> {
  const srv = net.createServer({ allowHalfOpen: true });
  const accepted = new Promise<net.Socket>((res) => srv.once('connection', (s: net.Socket) => { onAccept(s); res(s); }));
  // exclusive: in a cluster worker, a listen would otherwise go through the primary and share one
  // port-0 handle with the other workers (the connection could land in another process).
  srv.listen({ port: 0, host: '127.0.0.1', exclusive: true });
  let client: net.Socket | null = null;
  try {
    await once(srv, 'listening');
    client = net.connect({ port: (srv.address() as net.AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
    client.on('error', () => {});
    const a = await Promise.race([accepted, once(client, 'close').then(() => { throw new Error('self-test connection closed before it was accepted'); })]);
    a.on('error', () => {});
    const c = client;
    return { client: c, accepted: a, close: () => { c.destroy(); a.destroy(); } };
  } catch (e) {
    client?.destroy();
    throw e;
  } finally {
    srv.close();
  }
}

function collect(s: net.Socket): Promise<Buffer[]> {
  const parts: Buffer[] = [];
  s.on('data', (d: Buffer) => parts.push(d));
  return new Promise((res, rej) => { s.once('end', () => res(parts)); s.once('close', () => res(parts)); s.once('error', rej); });
}

/** A small write (taken at once), then up to 4 MiB in 256 KiB writes to a reader that is not
 *  reading, stopping at the first one the kernel could not take at once (libuv finishes it
 *  asynchronously and must call back), then socket.end(tail): the reader must get exactly all of
 *  it, in order. */
async function testDirectWrite(b: StreamWrapBinding): Promise<string | null> {
  const saved = streamWrap;
  const { client, accepted, close } = await socketPair();
  try {
    client.pause();
    const small = pattern(1000);
    const block = pattern(1 << 20);
    const tail = pattern(777);
    const sent: Buffer[] = [small];
    let completed = 0;
    let badStatus = 0;
    const owner: WriteOwner = { _completed(bytes, status) { completed += bytes; if (status !== 0) badStatus = status; } };
    streamWrap = b;
    const r1 = writeDirect(accepted, small, owner);
    if (r1 !== WRITE_SYNC) return `a 1000-byte direct write to an empty socket returned ${r1}`;
    let asyncBytes = 0;
    for (let i = 0; i < 16 && asyncBytes === 0; i++) {
      const piece = block.subarray((i * 4099) % (block.length - 262144)).subarray(0, 262144);
      const r = writeDirect(accepted, piece, owner);
      if (r < 0 || r === WRITE_FALLBACK) return `direct write returned ${r}`;
      sent.push(piece);
      if (r === WRITE_ASYNC) asyncBytes = piece.length;
    }
    streamWrap = saved;
    accepted.end(tail);
    sent.push(tail);
    const got = collect(client);
    client.resume();
    const data = await got;
    if (asyncBytes > 0 && completed !== asyncBytes) return `asynchronous direct write did not complete (${completed} of ${asyncBytes} bytes)`;
    if (badStatus !== 0) return `asynchronous direct write completed with status ${badStatus}`;
    if (!sameBytes(data, sent)) return 'bytes read back differ from the bytes written';
    return null;
  } finally {
    streamWrap = saved;
    close();
  }
}

/** The client sends pieces then EOF; the accepted socket reads them into our buffers: every read
 *  must land in the buffer we handed out, the bytes must match, and 'end' must still come. */
async function testOwnReadBuffer(k: OnreadSymbols): Promise<string | null> {
  const mine = new Set<Buffer>();
  const parts: Buffer[] = [];
  let foreign = false;
  let applied = false;
  const gen = (): Buffer => { const b = Buffer.allocUnsafe(4096); mine.add(b); return b; };
  const { client, accepted, close } = await socketPair((s) => {
    applied = applyOwnReadBuffer(k, s, gen, (n, b) => {
      if (!mine.has(b)) foreign = true;
      parts.push(Buffer.from(b.subarray(0, n)));
      return true;
    });
  });
  try {
    if (!applied) return 'accepted socket has no handle.useUserBuffer or kBuffer already set';
    const sent = pattern(50_000);
    const ended = new Promise<void>((res) => accepted.once('end', () => res()));
    let dataEvents = 0;
    accepted.on('data', () => { dataEvents++; });
    for (let o = 0; o < sent.length; o += 10_000) client.write(sent.subarray(o, o + 10_000));
    client.end();
    await ended;
    const got = Buffer.concat(parts);
    if (foreign) return 'a read landed outside the buffer we handed out';
    if (dataEvents > 0) return "'data' events fired although reads go to our buffer";
    if (!got.equals(sent)) return `bytes read differ (${got.length} of ${sent.length})`;
    return null;
  } finally {
    close();
  }
}

/** Bind 127.0.0.1:0 with tcp_wrap, listen, connect to it: the handle must accept the connection. */
async function testTcpAccept(b: TcpWrapBinding): Promise<string | null> {
  const h = new b.TCP(b.constants.SERVER);
  let client: net.Socket | null = null;
  try {
    const name: { port?: number } = {};
    if (h.bind('127.0.0.1', 0) !== 0 || h.getsockname(name) !== 0 || !name.port) return 'bind 127.0.0.1:0 failed';
    const accepted = new Promise<number>((res) => {
      h.onconnection = (status, c) => { try { c?.close(); } catch { /* ignore */ } res(status); };
    });
    if (h.listen(8) !== 0) return 'listen failed';
    client = net.connect({ port: name.port, host: '127.0.0.1' });
    client.on('error', () => {});
    const status = await accepted;
    return status === 0 ? null : `accept reported status ${status}`;
  } finally {
    client?.destroy();
    h.onconnection = null;
    h.close();
  }
}
