// Recording at the ingress: the ring's bounds and the parsing of what it kept (issue 11, item 1).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TrafficRecorder } from '../sidecar/recorder.js';
import { decodeChunked, parseCapturedRequest, parseCapturedResponse } from '../sidecar/captured-http.js';

function record(r: TrafficRecorder, app: string, path: string, status = 200, body = `hello ${path}`): boolean {
  const c = r.begin(Date.now());
  if (c === null) return false;
  c.requestHead(Buffer.from(`GET ${path} HTTP/1.1\r\nHost: a\r\n\r\n`), r.limits.maxHeadBytes);
  const res = Buffer.from(`HTTP/1.1 ${status} OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
  c.appendResponse(res, 0, res.length);
  c.status = status;
  r.commit(app, c);
  return true;
}

test('the ring keeps the newest entriesPerApp exchanges per app, oldest first', () => {
  const r = new TrafficRecorder({ entriesPerApp: 3 });
  for (let i = 0; i < 5; i++) record(r, 'shop', `/p${i}`);
  record(r, 'blog', '/b');
  const shop = r.recent('shop').map((e) => parseCapturedRequest(e.request)!.target);
  assert.deepEqual(shop, ['/p2', '/p3', '/p4']);
  assert.deepEqual(r.recent('shop', 2).map((e) => parseCapturedRequest(e.request)!.target), ['/p3', '/p4']);
  assert.equal(r.size('blog'), 1);
  const res = parseCapturedResponse(r.recent('shop')[2]!.response)!;
  assert.equal(res.status, 200);
  assert.equal(res.body.toString(), 'hello /p4');
  assert.equal(r.counters.recorded, 6);
  // A reader that saw up to /p3 gets only what came after.
  const p3 = r.recent('shop').find((e) => parseCapturedRequest(e.request)!.target === '/p3')!.seq;
  assert.deepEqual(r.recent('shop', Infinity, p3).map((e) => parseCapturedRequest(e.request)!.target), ['/p4']);
  assert.deepEqual(r.recent('shop', Infinity, r.lastSeq), []);
});

test('at most maxInFlight exchanges are captured at once; the rest are counted, not queued', () => {
  const r = new TrafficRecorder({ maxInFlight: 2 });
  const a = r.begin(0);
  const b = r.begin(0);
  assert.ok(a && b);
  assert.equal(r.begin(0), null);
  assert.equal(r.counters.skippedBusy, 1);
  r.abort(a);
  assert.ok(r.begin(0), 'a slot is free again after abort');
});

test('bodies beyond maxBodyBytes are kept truncated and flagged; heads beyond maxHeadBytes are skipped', () => {
  const r = new TrafficRecorder({ maxBodyBytes: 10, maxHeadBytes: 64 });
  const c = r.begin(0)!;
  const head = Buffer.from('POST /u HTTP/1.1\r\nContent-Length: 100\r\n\r\n');
  c.requestHead(head, 64);
  const body = Buffer.alloc(100, 'x');
  c.appendRequest(body, 0, 100);
  c.appendResponse(Buffer.from('HTTP/1.1 204 No Content\r\n\r\n'), 0, 27);
  r.commit('a', c);
  const [e] = r.recent('a');
  assert.equal(e!.requestTruncated, true);
  const req = parseCapturedRequest(e!.request, e!.requestTruncated)!;
  assert.equal(req.method, 'POST');
  assert.equal(req.bodyTruncated, true);
  assert.ok(req.body.length < 100);

  const big = r.begin(0)!;
  big.requestHead(Buffer.alloc(65, 'a'), 64);
  big.appendResponse(Buffer.from('HTTP/1.1 200 OK\r\n\r\n'), 0, 19);
  r.commit('a', big);
  assert.equal(r.size('a'), 1, 'the exchange with an oversized head was not kept');
  assert.equal(r.counters.skippedOther, 1);
});

test('a capture is reused after eviction: memory stays bounded under many exchanges', () => {
  const r = new TrafficRecorder({ entriesPerApp: 4, maxInFlight: 2 });
  for (let i = 0; i < 1000; i++) record(r, 'x', `/${i}`);
  assert.equal(r.size('x'), 4);
  r.retainApps(new Set());
  assert.equal(r.size('x'), 0);
  assert.deepEqual(r.apps(), []);
});

test('captured messages: chunked bodies are decoded, 100-continue skipped, HEAD has no body', () => {
  const req = parseCapturedRequest(Buffer.from('PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n'))!;
  assert.equal(req.body.toString(), 'abcde');
  assert.equal(req.bodyTruncated, false);
  const res = parseCapturedResponse(Buffer.from('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}'))!;
  assert.equal(res.status, 201);
  assert.equal(res.body.toString(), '{}');
  const head = parseCapturedResponse(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n'), false, 'HEAD')!;
  assert.equal(head.body.length, 0);
  assert.equal(head.bodyTruncated, false);
  assert.deepEqual(decodeChunked(Buffer.from('5\r\nab')), { body: Buffer.from('ab'), complete: false });
  assert.equal(parseCapturedRequest(Buffer.from('GET / HTTP/1.1\r\nHost: a\r\n')), null, 'incomplete head');
});
