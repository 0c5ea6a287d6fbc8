// The "Node floor" peer: a raw net pipe with no HTTP parsing at all. Each client connection gets
// its own upstream connection and every chunk read on one side is written to the other. No
// routing, no framing, no pooling, no backpressure handling: it is what any Node.js proxy
// costs before it does any work of its own, so molt/pipe says how close the sidecar is to the
// runtime's ceiling, and pipe/nginx what the runtime itself allows. Run by bench/peers.ts:
//   node dist/bench/raw-pipe-server.js PORT UPSTREAM_PORT [BACKLOG]

import net from 'node:net';

const port = Number(process.argv[2]);
const upstreamPort = Number(process.argv[3]);
const backlog = Number(process.argv[4] ?? 511); // Node's default; bench/peers.ts passes PROXY_BACKLOG
if (!Number.isInteger(port) || !Number.isInteger(upstreamPort) || !Number.isInteger(backlog) || backlog < 1) {
  process.stderr.write('usage: node dist/bench/raw-pipe-server.js PORT UPSTREAM_PORT [BACKLOG]\n');
  process.exit(2);
}

const server = net.createServer({ noDelay: true }, (client) => {
  const upstream = net.connect({ port: upstreamPort, host: '127.0.0.1', noDelay: true });
  client.on('data', (chunk) => { upstream.write(chunk); });
  upstream.on('data', (chunk) => { client.write(chunk); });
  const close = () => { client.destroy(); upstream.destroy(); };
  client.on('error', close).on('close', close);
  upstream.on('error', close).on('close', close);
});
server.listen({ port, host: '127.0.0.1', backlog });
const stop = () => { server.close(() => process.exit(0)); };
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
