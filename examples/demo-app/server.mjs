// A tiny demo web app for molt's quickstart: answers with its version on PORT.
// GET /healthz is the health check. GET /fail makes this instance answer 500 from now on,
// which molt's sidecar treats as a failure of the version (try it on v2 and watch the rollback).
import http from 'node:http';

const version = process.env.APP_VERSION ?? 'unknown';
const color = process.env.APP_COLOR ?? 'gray';
let broken = false;

const server = http.createServer((req, res) => {
  if (req.url === '/healthz') {
    res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    return;
  }
  if (req.url === '/fail') broken = true;
  if (broken) {
    res.writeHead(500, { 'content-type': 'text/plain' }).end(`demo app ${version}: broken on purpose\n`);
    return;
  }
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.end(`hello from demo app version ${version} (${color})\n`);
});
server.listen(Number(process.env.PORT ?? 3000), '127.0.0.1');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
