// A tiny demo web app for molt's quickstart: answers with its version on PORT.
// GET /healthz is the health check. GET /fail makes an instance started with CAN_FAIL=1 (the quickstart's
// v2) answer 500 from now on, which molt's sidecar treats as a failure of the version: watch the
// rollback. Other instances ignore /fail, so the retry on v1 succeeds.
import http from 'node:http';

const version = process.env.APP_VERSION ?? 'unknown';
const color = process.env.APP_COLOR ?? 'gray';
let broken = false;

const server = http.createServer((req, res) => {
  if (req.url === '/healthz') {
    res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    return;
  }
  if (req.url === '/fail' && process.env.CAN_FAIL === '1') broken = true;
  if (broken) {
    res.writeHead(500, { 'content-type': 'text/plain' }).end(`demo app ${version}: broken on purpose\n`);
    return;
  }
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.end(`hello from demo app version ${version} (${color})\n`);
});
server.listen(Number(process.env.PORT ?? 3000), '127.0.0.1');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
