// Bun's floor, the counterpart of bench/raw-pipe-server.ts on Bun.listen/Bun.connect:
//   bun dist/bench/runtime-spike/raw-pipe-bun.js PORT UPSTREAM_PORT
// Each client connection gets its own upstream connection and every chunk read on one side is
// written to the other; bytes the kernel did not take are queued and written on 'drain' (the
// Node pipe relies on net.Socket's own queue for that). No parsing, no routing, no pooling.

interface Sock { data: Pipe; write(b: Uint8Array): number; end(): void; setNoDelay?(on: boolean): void }
declare const Bun: {
  listen(o: { hostname: string; port: number; socket: object }): unknown;
  connect(o: { hostname: string; port: number; data: Pipe; socket: object }): Promise<Sock>;
};

class Side {
  sock: Sock | null = null;
  q: Uint8Array[] = [];
  write(b: Uint8Array): void {
    const s = this.sock;
    if (s === null || this.q.length > 0) { this.q.push(new Uint8Array(b)); return; }
    const n = s.write(b);
    if (n < b.length) this.q.push(b.slice(Math.max(0, n)));
  }
  flush(): void {
    const s = this.sock;
    if (s === null) return;
    while (this.q.length > 0) {
      const b = this.q[0]!;
      const n = s.write(b);
      if (n < b.length) { this.q[0] = b.subarray(Math.max(0, n)); return; }
      this.q.shift();
    }
  }
}

class Pipe { client = new Side(); upstream = new Side(); closed = false }

const port = Number(process.argv[2]);
const upstreamPort = Number(process.argv[3]);
if (!Number.isInteger(port) || !Number.isInteger(upstreamPort)) {
  process.stderr.write('usage: bun dist/bench/runtime-spike/raw-pipe-bun.js PORT UPSTREAM_PORT\n');
  process.exit(2);
}

const close = (p: Pipe): void => { if (p.closed) return; p.closed = true; p.client.sock?.end(); p.upstream.sock?.end(); };
const upHandlers = {
  open(s: Sock) { s.setNoDelay?.(true); s.data.upstream.sock = s; s.data.upstream.flush(); },
  data(s: Sock, b: Uint8Array) { s.data.client.write(b); },
  drain(s: Sock) { s.data.upstream.flush(); },
  close(s: Sock) { close(s.data); },
  error() { /* close follows */ },
  connectError(s: Sock) { close(s.data); },
};
Bun.listen({
  hostname: '127.0.0.1',
  port,
  socket: {
    open(s: Sock) {
      s.setNoDelay?.(true);
      const p = new Pipe();
      p.client.sock = s;
      s.data = p;
      Bun.connect({ hostname: '127.0.0.1', port: upstreamPort, data: p, socket: upHandlers }).catch(() => close(p));
    },
    data(s: Sock, b: Uint8Array) { s.data.upstream.write(b); },
    drain(s: Sock) { s.data.client.flush(); },
    close(s: Sock) { close(s.data); },
    error() { /* close follows */ },
  },
});
process.on('SIGTERM', () => process.exit(0));
