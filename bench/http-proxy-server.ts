// The npm `http-proxy` peer: a plain node:http server proxying everything to one upstream with a
// keep-alive agent (its fair configuration). Run by bench/peers.ts as its own process:
//   node dist/bench/http-proxy-server.js PORT http://127.0.0.1:UPSTREAM_PORT

import http from 'node:http';
import httpProxy from 'http-proxy';

const port = Number(process.argv[2]);
const target = process.argv[3];
if (!Number.isInteger(port) || !target) {
  process.stderr.write('usage: node dist/bench/http-proxy-server.js PORT TARGET_URL\n');
  process.exit(2);
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 1024 });
const proxy = httpProxy.createProxyServer({ target, agent });
let errors = 0;
proxy.on('error', (err, _req, res) => {
  errors++;
  if (errors <= 5) process.stderr.write(`http-proxy error: ${(err as Error).message}\n`);
  if (res instanceof http.ServerResponse && !res.headersSent) {
    res.writeHead(502, { 'content-type': 'text/plain' });
    res.end('bad gateway\n');
  } else {
    res.destroy();
  }
});

const server = http.createServer((req, res) => proxy.web(req, res));
server.keepAliveTimeout = 65_000;
server.listen(port, '127.0.0.1');
const stop = () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
