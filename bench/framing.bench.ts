// Micro-benchmark: request heads scanned per second (one scanner, reset in place per message).
// Run: npx tsc -p tsconfig.json && node dist/bench/framing.bench.js [iterations]

import { BodyScanner, BODY_CHUNKED, HeadScanner } from '../sidecar/framing.js';

const HEADS: Record<string, Buffer> = {
  'wrk GET': Buffer.from('GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n'),
  'browser GET': Buffer.from(
    'GET /products/42?ref=home HTTP/1.1\r\nHost: shop.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\r\n' +
    'Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\nAccept-Language: en-US,en;q=0.9\r\nAccept-Encoding: gzip, deflate, br\r\n' +
    'Cookie: molt-version-shop=shop-v2; molt-bucket-shop=17; session=abcdef0123456789\r\nConnection: keep-alive\r\nUpgrade-Insecure-Requests: 1\r\n\r\n'),
  'POST chunked': Buffer.from('POST /api/items HTTP/1.1\r\nHost: api.example.com\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nX-Request-Id: 7f3c\r\n\r\n'),
};

const N = Number(process.argv[2] ?? 1_000_000);
const s = new HeadScanner(true);
let sink = 0;
for (const [name, buf] of Object.entries(HEADS)) {
  for (let i = 0; i < 10000; i++) { s.reset(); sink += s.execute(buf, 0, buf.length); } // warm up
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) {
    s.reset();
    sink += s.execute(buf, 0, buf.length);
    sink += s.headerCount;
  }
  const ns = Number(process.hrtime.bigint() - t0);
  const ops = N / (ns / 1e9);
  console.log(`${name.padEnd(14)} ${buf.length.toString().padStart(4)} B  ${Math.round(ops).toLocaleString('en-US').padStart(12)} heads/s  ${(ops * buf.length / 1e6).toFixed(0)} MB/s`);
}

const chunked = Buffer.from('400\r\n' + 'x'.repeat(1024) + '\r\n'.repeat(1) + '0\r\n\r\n');
const b = new BodyScanner();
const t0 = process.hrtime.bigint();
for (let i = 0; i < N; i++) { b.reset(BODY_CHUNKED); sink += b.execute(chunked, 0, chunked.length); }
const ns = Number(process.hrtime.bigint() - t0);
console.log(`${'chunked body'.padEnd(14)} ${chunked.length.toString().padStart(4)} B  ${Math.round(N / (ns / 1e9)).toLocaleString('en-US').padStart(12)} bodies/s`);
if (sink === 42) console.log('');
