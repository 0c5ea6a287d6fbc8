// The sidecar's listening socket, bound by the supervisor and held open across sidecar restarts.
//
// The supervisor binds HOST:PORT but never listens or accepts; each sidecar it starts inherits the
// socket as fd 3 and calls listen(2) on it (`molt sidecar --listen-fd 3`). listen(2) belongs to the
// socket, not the process, so when the sidecar dies the kernel keeps completing handshakes into
// the backlog while the supervisor still holds the socket, and the next sidecar accepts them:
// during a restart new connections wait instead of being refused. The same trick as systemd
// socket activation, with the supervisor as the holder.
//
// Node has no public API for a bound-but-not-listening TCP socket, so this uses the tcp_wrap
// binding (the same one net.Server uses), through common/node-internals.ts, which checks once that
// it binds and listens. Without it (or MOLT_NODE_INTERNALS=off), or for a host that is not an IP
// address, the caller falls back to letting the sidecar bind by itself.

import net from 'node:net';
import util from 'node:util';
import { tcpWrap } from '../common/node-internals.js';

export interface HeldListenSocket {
  /** The bound socket's file descriptor in this process (pass it to the child's stdio). */
  readonly fd: number;
  close(): void;
}

/** Bind host:port without listening. Returns null (and why) when it can't: the sidecar binds itself then. */
export function bindListenSocket(host: string, port: number): { socket: HeldListenSocket } | { socket: null; reason: string } {
  const family = net.isIP(host);
  if (family === 0) return { socket: null, reason: `"${host}" is not an IP address` };
  if (port === 0) return { socket: null, reason: 'port 0 (the sidecar picks the port)' };
  const { binding: b, reason } = tcpWrap();
  if (b === null) return { socket: null, reason: `Node's tcp_wrap binding is not usable (${reason})` };
  const h = new b.TCP(b.constants.SERVER);
  const err = family === 6 ? h.bind6(host, port, 0) : h.bind(host, port);
  // libuv defers EADDRINUSE from bind to the first listen/connect, leaving the socket unbound: a
  // child listening on it would get a random port on every interface. So check what we got.
  const name: { port?: number } = {};
  const nameErr = err === 0 ? h.getsockname(name) : 0;
  if (err !== 0 || nameErr !== 0 || name.port !== port || !(h.fd >= 0)) {
    h.close();
    const why = err !== 0 ? errName(err) : nameErr !== 0 ? errName(nameErr) : name.port !== port ? 'address in use' : 'no file descriptor';
    return { socket: null, reason: `bind ${host}:${port} failed (${why})` };
  }
  let closed = false;
  return {
    socket: {
      fd: h.fd,
      close() {
        if (closed) return;
        closed = true;
        h.close();
      },
    },
  };
}

function errName(code: number): string {
  try {
    return util.getSystemErrorName(code);
  } catch {
    return String(code);
  }
}
