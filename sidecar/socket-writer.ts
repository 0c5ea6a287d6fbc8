// Writes on the hot path, straight to the socket's libuv handle.
//
// `socket.write()` runs the whole Writable machinery for every buffer: state bookkeeping, a
// WriteWrap, and a process.nextTick to call back afterwards — about a fifth of the sidecar's CPU
// per request in profiles. A proxy answering small requests writes twice per request (head up,
// response down) and almost always the kernel takes the whole buffer at once. So when the
// Writable side is empty, SocketWriter hands the buffer to the handle itself, exactly as Node's
// own writeGeneric does, minus the stream layer; when the kernel could not take it all, libuv
// keeps writing in the background and we count the bytes as in flight until it calls back.
//
// Ordering: a direct write is made only while the Writable holds nothing (writableLength 0), and
// libuv runs writes of one handle in order, so a later socket.write()/end() (always allowed) goes
// out after the bytes written here. Everything else (cork blocks, end, error paths) keeps using
// the socket directly.
//
// Needs Node's `stream_wrap` binding (WriteWrap, streamBaseState). If the running Node doesn't
// expose it, or a socket has no handle yet, every write falls back to socket.write().

import type net from 'node:net';

interface WriteReq {
  handle: unknown;
  oncomplete: (this: WriteReq, status: number) => void;
  async: boolean;
  bytes: number;
  buffer: Buffer | null;
  writer: SocketWriter | null;
}

interface StreamHandle {
  writeBuffer(req: WriteReq, buf: Buffer): number;
}

interface StreamWrapBinding {
  WriteWrap: new () => WriteReq;
  streamBaseState: Int32Array;
  kLastWriteWasAsync: number;
}

const binding = ((): StreamWrapBinding | null => {
  if (process.env.MOLT_SOCKET_WRITER === 'stream') return null; // escape hatch: always socket.write()
  try {
    const b = (process as unknown as { binding(name: string): Partial<StreamWrapBinding> }).binding('stream_wrap');
    if (typeof b.WriteWrap === 'function' && b.streamBaseState instanceof Int32Array &&
        typeof b.kLastWriteWasAsync === 'number') return b as StreamWrapBinding;
  } catch { /* not available: fall back */ }
  return null;
})();

/** True when direct handle writes are in use (false: every write goes through socket.write). */
export const directWrites = binding !== null;

function onWriteComplete(this: WriteReq, status: number): void {
  const w = this.writer;
  this.buffer = null;
  this.writer = null;
  if (w !== null) w._completed(this.bytes, status);
}

export class SocketWriter {
  readonly socket: net.Socket;
  /** Bytes handed to libuv that it has not finished writing. */
  inFlight = 0;
  #onDrain: () => void;

  constructor(socket: net.Socket, onDrain: () => void) {
    this.socket = socket;
    this.#onDrain = onDrain;
  }

  /** Nothing of what was written is still held by us, the stream or libuv: written buffers may be reused. */
  get flushed(): boolean {
    return this.inFlight === 0 && this.socket.writableLength === 0;
  }

  /** Stop writing until onDrain (like `!socket.write()`). */
  get needsDrain(): boolean {
    return this.inFlight > 0 || this.socket.writableNeedDrain;
  }

  /**
   * Write `buf`. Returns false when the caller should stop producing until onDrain is called (bytes
   * are in flight or the stream is over its high-water mark). Until `flushed`, `buf` must not change.
   */
  write(buf: Buffer): boolean {
    const s = this.socket;
    const b = binding;
    const h = (s as unknown as { _handle: StreamHandle | null })._handle;
    if (b === null || h === null || s.writableLength !== 0 || s.connecting || s.destroyed || s.writableEnded) {
      return s.write(buf) && this.inFlight === 0;
    }
    const req = new b.WriteWrap();
    req.handle = h;
    req.oncomplete = onWriteComplete;
    req.async = false;
    req.bytes = 0;
    req.buffer = null;
    req.writer = null;
    const err = h.writeBuffer(req, buf);
    if (err !== 0) {
      // Like a failed socket.write: the socket is finished; 'close' tells the owner.
      s.destroy();
      return false;
    }
    const st = b.streamBaseState;
    if (st[b.kLastWriteWasAsync] === 0) return this.inFlight === 0;
    req.async = true;
    req.bytes = buf.length;
    req.buffer = buf; // keep it alive while libuv writes from it
    req.writer = this;
    this.inFlight += buf.length;
    return false;
  }

  /** @internal called from the WriteWrap's oncomplete. */
  _completed(bytes: number, status: number): void {
    this.inFlight -= bytes;
    if (this.inFlight < 0) this.inFlight = 0;
    if (status < 0) {
      this.inFlight = 0;
      this.socket.destroy();
      return;
    }
    if (this.inFlight === 0 && !this.socket.writableNeedDrain) this.#onDrain();
  }
}
