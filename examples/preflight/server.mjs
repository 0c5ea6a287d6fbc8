// A small catalog service for the preflight example. GET /items answers JSON with a price list,
// plus two fields that differ on every answer (generatedAt, requestId): noise the preflight learns
// to ignore by asking the serving version twice. PRICE_BUG=1 (catalog v3) changes one price: a
// 200 with wrong content, which only a response comparison catches. Every request it receives is
// logged with its x-molt-shadow mark, so you can see that v2/v3 got only preflight copies.
import http from 'node:http';
import { randomUUID } from 'node:crypto';

const version = process.env.APP_VERSION ?? 'unknown';
const priceBug = process.env.PRICE_BUG === '1';
const items = [
  { id: 1, name: 'tea', price: 4.5 },
  { id: 2, name: 'coffee', price: 3.2 },
  { id: 3, name: 'cocoa', price: 3.9 },
  { id: 4, name: 'mate', price: 5.1 },
];

const server = http.createServer((req, res) => {
  console.log(`${version} ${req.method} ${req.url} shadow=${req.headers['x-molt-shadow'] ?? '-'}`);
  if (req.url === '/healthz') {
    res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    return;
  }
  if (req.method === 'GET' && (req.url === '/items' || req.url?.startsWith('/items?'))) {
    const list = items.map((it) => (priceBug && it.id === 4 ? { ...it, price: 51 } : it));
    res.writeHead(200, { 'content-type': 'application/json', 'x-served-by': version });
    res.end(JSON.stringify({ generatedAt: new Date().toISOString(), requestId: randomUUID(), items: list }));
    return;
  }
  res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found"}');
});
server.listen(Number(process.env.PORT ?? 3000), '127.0.0.1');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
