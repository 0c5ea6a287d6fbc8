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
// The handle access lives in common/node-internals.ts (`writeDirect`), enabled only after its
// startup self-test passed; otherwise (or MOLT_NODE_INTERNALS=off / MOLT_SOCKET_WRITER=stream, or
// a socket without a handle yet) every write falls back to socket.write().

import type net from 'node:net';
import { WRITE_ASYNC, WRITE_FALLBACK, WRITE_SYNC, writeDirect, type WriteOwner } from '../common/node-internals.js';

export class SocketWriter implements WriteOwner {
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
    if (s.writableLength !== 0 || s.connecting || s.destroyed || s.writableEnded) {
      return s.write(buf) && this.inFlight === 0;
    }
    const r = writeDirect(s, buf, this);
    if (r === WRITE_SYNC) return this.inFlight === 0;
    if (r === WRITE_ASYNC) {
      this.inFlight += buf.length;
      return false;
    }
    if (r === WRITE_FALLBACK) return s.write(buf) && this.inFlight === 0;
    // Like a failed socket.write: the socket is finished; 'close' tells the owner.
    s.destroy();
    return false;
  }

  /** @internal called when an asynchronous direct write finished. */
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
