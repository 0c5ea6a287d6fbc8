import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { REDACTED, fromHar, redactExchange, toHar, type Har, type RecordedExchange } from '../common/har.js';
import { MoltValidationErrors } from '../common/errors.js';

function exchange(over: Partial<RecordedExchange> = {}): RecordedExchange {
  return {
    startedAt: Date.UTC(2026, 11, 1, 12, 0, 0, 250),
    request: {
      method: 'GET',
      target: '/items?page=2&token=s3cret&q=a%20b',
      httpVersion: '1.1',
      headers: [['Host', 'shop.example'], ['Accept', 'application/json'], ['Authorization', 'Bearer abc'], ['Cookie', 'sid=1; theme=dark'], ['Connection', 'keep-alive, x-hop'], ['X-Hop', '1'], ['X-Api-Key', 'k']],
      body: Buffer.alloc(0),
      bodyTruncated: false,
    },
    response: {
      status: 200,
      statusText: 'OK',
      httpVersion: '1.1',
      headers: [['Content-Type', 'application/json'], ['Set-Cookie', 'sid=2; Path=/; HttpOnly'], ['Transfer-Encoding', 'chunked'], ['ETag', '"7"']],
      body: Buffer.from('{"items":[1,2]}'),
      bodyTruncated: false,
    },
    timings: { sendMs: 0.5, waitMs: 12.25, receiveMs: 1 },
    ...over,
  };
}

type Obj = Record<string, unknown>;

/** Every field HAR 1.2 requires, with its type, as "path: problem" (http://www.softwareishard.com/blog/har-12-spec/). */
function harProblems(har: unknown): string[] {
  const out: string[] = [];
  const need = (o: Obj, at: string, fields: Record<string, 'string' | 'number' | 'array' | 'object' | 'boolean'>): void => {
    if (typeof o !== 'object' || o === null) {
      out.push(`${at}: expected object`);
      return;
    }
    for (const [k, t] of Object.entries(fields)) {
      const v = o[k];
      const ok = t === 'array' ? Array.isArray(v) : t === 'object' ? typeof v === 'object' && v !== null && !Array.isArray(v) : typeof v === t;
      if (!ok) out.push(`${at}.${k}: expected ${t}`);
    }
  };
  const nameValues = (list: unknown, at: string): void => {
    if (Array.isArray(list)) list.forEach((x, i) => need(x as Obj, `${at}[${i}]`, { name: 'string', value: 'string' }));
  };
  const root = har as Obj;
  need(root, '', { log: 'object' });
  const log = root.log as Obj;
  need(log, 'log', { version: 'string', creator: 'object', entries: 'array' });
  if (log.version !== '1.2') out.push('log.version: expected "1.2"');
  need((log.creator ?? {}) as Obj, 'log.creator', { name: 'string', version: 'string' });
  (log.entries as Obj[]).forEach((e, i) => {
    const at = `log.entries[${i}]`;
    need(e, at, { startedDateTime: 'string', time: 'number', request: 'object', response: 'object', cache: 'object', timings: 'object' });
    if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/.test(e.startedDateTime as string)) out.push(`${at}.startedDateTime: not ISO 8601`);
    const rq = (e.request ?? {}) as Obj;
    need(rq, `${at}.request`, { method: 'string', url: 'string', httpVersion: 'string', cookies: 'array', headers: 'array', queryString: 'array', headersSize: 'number', bodySize: 'number' });
    nameValues(rq.headers, `${at}.request.headers`);
    nameValues(rq.queryString, `${at}.request.queryString`);
    nameValues(rq.cookies, `${at}.request.cookies`);
    if (!/^https?:\/\/[^/]+/.test(String(rq.url))) out.push(`${at}.request.url: not absolute`);
    if (rq.postData !== undefined) need(rq.postData as Obj, `${at}.request.postData`, { mimeType: 'string', params: 'array', text: 'string' });
    const rs = (e.response ?? {}) as Obj;
    need(rs, `${at}.response`, { status: 'number', statusText: 'string', httpVersion: 'string', cookies: 'array', headers: 'array', content: 'object', redirectURL: 'string', headersSize: 'number', bodySize: 'number' });
    nameValues(rs.headers, `${at}.response.headers`);
    nameValues(rs.cookies, `${at}.response.cookies`);
    need((rs.content ?? {}) as Obj, `${at}.response.content`, { size: 'number', mimeType: 'string' });
    const t = (e.timings ?? {}) as Obj;
    need(t, `${at}.timings`, { send: 'number', wait: 'number', receive: 'number' });
    for (const k of ['send', 'wait', 'receive']) if ((t[k] as number) < 0) out.push(`${at}.timings.${k}: must be >= 0`);
    for (const k of ['blocked', 'dns', 'connect', 'ssl']) if (t[k] !== undefined && (t[k] as number) < -1) out.push(`${at}.timings.${k}: must be >= -1`);
    const sum = ['blocked', 'dns', 'connect', 'send', 'wait', 'receive'].reduce((s, k) => s + Math.max(0, (t[k] as number | undefined) ?? 0), 0);
    if (Math.abs(sum - (e.time as number)) > 1e-6) out.push(`${at}.time: expected the sum of timings`);
    for (const k of Object.keys(e)) if (!['startedDateTime', 'time', 'request', 'response', 'cache', 'timings', 'pageref', 'serverIPAddress', 'connection', 'comment'].includes(k) && !k.startsWith('_')) out.push(`${at}.${k}: not a HAR field (custom fields start with "_")`);
  });
  return out;
}

describe('redactExchange', () => {
  it('redacts Authorization, Cookie, Set-Cookie by default, drops hop-by-hop headers, keeps the rest', () => {
    const r = redactExchange(exchange());
    assert.deepEqual(r.request.headers, [['Host', 'shop.example'], ['Accept', 'application/json'], ['Authorization', REDACTED], ['Cookie', REDACTED], ['X-Api-Key', 'k']]);
    assert.deepEqual(r.response!.headers, [['Content-Type', 'application/json'], ['Set-Cookie', REDACTED], ['ETag', '"7"']]);
    assert.equal(r.request.target, '/items?page=2&token=s3cret&q=a%20b', 'no query parameter is redacted unless configured');
  });

  it('configured headers and query parameters too; keep overrides the defaults', () => {
    const original = exchange();
    const r = redactExchange(original, { headers: ['x-api-key'], queryParams: ['token', 'q b'], keep: ['Cookie'] });
    assert.deepEqual(r.request.headers.map(([k, v]) => `${k}: ${v}`), ['Host: shop.example', 'Accept: application/json', `Authorization: ${REDACTED}`, 'Cookie: sid=1; theme=dark', `X-Api-Key: ${REDACTED}`]);
    assert.equal(r.request.target, `/items?page=2&token=${REDACTED}&q=a%20b`);
    assert.equal(redactExchange(exchange({ request: { ...original.request, target: '/a?q+b=1&x=2#f' } }), { queryParams: ['q b'] }).request.target, `/a?q+b=${REDACTED}&x=2#f`);
    assert.deepEqual(original.request.headers[2], ['Authorization', 'Bearer abc'], 'the input is not modified');
  });
});

describe('toHar', () => {
  it('is valid HAR 1.2 with every required field', () => {
    const noResponse = exchange();
    delete noResponse.response;
    const post = exchange({
      request: { method: 'POST', target: '/cart', httpVersion: '1.1', headers: [['content-type', 'application/json']], body: Buffer.from('{"sku":1}'), bodyTruncated: false },
    });
    const har = toHar([redactExchange(exchange()), post, noResponse], { host: 'fallback.example', creatorVersion: '0.1.0' });
    assert.deepEqual(harProblems(JSON.parse(JSON.stringify(har))), []);
    assert.ok(harProblems({ log: { version: '1.1', creator: {}, entries: [{ time: 'x', startedDateTime: '' }] } }).length > 5, 'the checker finds problems');
  });

  it('maps the exchange: URL from Host, query string, cookies, timings, content', () => {
    const har = toHar([exchange()], { host: 'fallback.example' });
    assert.equal(har.log.version, '1.2');
    assert.deepEqual(har.log.creator, { name: 'molt', version: '0' });
    const e = har.log.entries[0]!;
    assert.equal(e.startedDateTime, '2026-12-01T12:00:00.250Z');
    assert.equal(e.time, 13.75);
    assert.deepEqual(e.timings, { blocked: -1, dns: -1, connect: -1, send: 0.5, wait: 12.25, receive: 1, ssl: -1 });
    assert.equal(e.request.url, 'http://shop.example/items?page=2&token=s3cret&q=a%20b');
    assert.equal(e.request.httpVersion, 'HTTP/1.1');
    assert.deepEqual(e.request.queryString, [{ name: 'page', value: '2' }, { name: 'token', value: 's3cret' }, { name: 'q', value: 'a b' }]);
    assert.deepEqual(e.request.cookies, [{ name: 'sid', value: '1' }, { name: 'theme', value: 'dark' }]);
    assert.equal(e.request.postData, undefined);
    assert.equal(e.request.bodySize, 0);
    assert.equal(e.request.headersSize, -1);
    assert.deepEqual(e.response.cookies, [{ name: 'sid', value: '2', path: '/', httpOnly: true }]);
    assert.deepEqual(e.response.content, { size: 15, mimeType: 'application/json', text: '{"items":[1,2]}' });
    assert.equal(e.response.status, 200);
    assert.equal(e.response.statusText, 'OK');
    assert.deepEqual(e.cache, {});
  });

  it('without a Host header the given host is used; absolute-form targets are kept', () => {
    const ex = exchange();
    ex.request.headers = [];
    assert.equal(toHar([ex], { host: 'fallback.example:8080', scheme: 'https' }).log.entries[0]!.request.url, 'https://fallback.example:8080/items?page=2&token=s3cret&q=a%20b');
    ex.request.target = 'http://other.example/x';
    assert.equal(toHar([ex], { host: 'h' }).log.entries[0]!.request.url, 'http://other.example/x');
  });

  it('binary bodies are base64; truncated bodies are marked with their full size', () => {
    const bin = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 1, 2]);
    const ex = exchange({
      request: { method: 'PUT', target: '/img', httpVersion: '1.1', headers: [['Host', 'h'], ['content-type', 'image/png']], body: bin, bodyTruncated: true, bodySize: 5000 },
      response: { status: 201, httpVersion: '1.0', headers: [['content-type', 'image/png']], body: bin, bodyTruncated: true, bodySize: 9000 },
    });
    const e = toHar([ex], { host: 'h' }).log.entries[0]!;
    assert.deepEqual(e.request.postData, { mimeType: 'image/png', params: [], text: bin.toString('base64'), _encoding: 'base64', _truncated: true });
    assert.equal(e.request.bodySize, 5000);
    assert.deepEqual(e.response.content, { size: 9000, mimeType: 'image/png', text: bin.toString('base64'), encoding: 'base64', _truncated: true });
    assert.equal(e.response.httpVersion, 'HTTP/1.0');
    assert.equal(e.response.statusText, '');
  });

  it('round-trips through fromHar (hop-by-hop and Content-Length are not replayed)', () => {
    const ex = exchange({
      request: { method: 'POST', target: '/p?x=1', httpVersion: '1.1', headers: [['Host', 'shop.example'], ['Content-Length', '3'], ['content-type', 'application/octet-stream']], body: Buffer.from([0, 255, 7]), bodyTruncated: false },
    });
    const [back] = fromHar(JSON.parse(JSON.stringify(toHar([ex], { host: 'h' }))));
    assert.equal(back!.startedAt, ex.startedAt);
    assert.deepEqual(back!.request, { method: 'POST', target: '/p?x=1', httpVersion: '1.1', headers: [['Host', 'shop.example'], ['content-type', 'application/octet-stream']], body: Buffer.from([0, 255, 7]), bodyTruncated: false, bodySize: 3 });
    assert.deepEqual(back!.response, { ...ex.response!, bodySize: 15 });
    assert.deepEqual(back!.timings, { sendMs: 0.5, waitMs: 12.25, receiveMs: 1 });
  });
});

describe('fromHar', () => {
  const valid = (): Har => JSON.parse(JSON.stringify(toHar([exchange(), exchange()], { host: 'h' }))) as Har;

  function errorsOf(json: unknown): string[] {
    try {
      fromHar(json);
    } catch (e) {
      assert.ok(e instanceof MoltValidationErrors);
      assert.equal(e.code, 'MOLT_ERR_VALIDATION');
      return e.errors.map(String);
    }
    assert.fail('expected MoltValidationErrors');
  }

  it('names the field and what was expected', () => {
    const har = valid();
    (har.log.entries[1]!.request as { url: string }).url = '/relative';
    assert.deepEqual(errorsOf(har), ['log.entries[1].request.url: expected an absolute http(s) URL, got "/relative"']);
    const h2 = valid();
    h2.log.entries[0]!.request.url = 'ftp://x/y';
    (h2.log.entries[1]!.request as { method: unknown }).method = 'G E T';
    (h2.log.entries[1]!.response as { status: unknown }).status = 'ok';
    (h2.log.entries[1]!.request.headers as unknown[]).push({ name: 'x' });
    assert.deepEqual(errorsOf(h2), [
      'log.entries[0].request.url: expected an absolute http(s) URL, got "ftp://x/y"',
      'log.entries[1].request.method: expected an HTTP method such as "GET", got "G E T"',
      'log.entries[1].request.headers[7]: expected {name, value} with string name and value, got an object',
      'log.entries[1].response.status: expected a status code 100-999 (or 0: no response), got "ok"',
    ]);
    assert.deepEqual(errorsOf({}), ['log: expected a HAR document: an object with a "log" object']);
    assert.deepEqual(errorsOf({ log: { version: '1.2', entries: {} } }), ['log.entries: expected a list of entries, got an object']);
    assert.deepEqual(errorsOf({ log: { version: '2', entries: [] } }), ['log.version: expected "1.2", got "2"']);
    const header = valid();
    header.log.entries[0]!.request.headers[0]!.value = 'a\r\nInjected: 1';
    assert.deepEqual(errorsOf(header), ['log.entries[0].request.headers[0].value: a header value must not contain CR, LF or NUL']);
  });

  it('reports at most 20 problems and counts the rest', () => {
    const har = valid();
    har.log.entries = Array.from({ length: 30 }, () => ({ ...har.log.entries[0]!, request: { ...har.log.entries[0]!.request, url: 'x' } }));
    const errs = errorsOf(har);
    assert.equal(errs.length, 21);
    assert.equal(errs[20], 'log.entries: 10 more problem(s) not shown');
  });

  it('reads browser captures: HTTP/2 pseudo-headers, status 0, omitted content, params-only postData', () => {
    const har = {
      log: {
        version: '1.2',
        creator: { name: 'Playwright', version: '1.50' },
        entries: [
          {
            startedDateTime: '2026-12-01T10:00:00.000+01:00',
            time: 5,
            request: {
              method: 'POST',
              url: 'https://shop.example:8443/login?next=%2F',
              httpVersion: 'h2',
              cookies: [],
              headers: [{ name: ':authority', value: 'shop.example:8443' }, { name: ':method', value: 'POST' }, { name: 'content-type', value: 'application/x-www-form-urlencoded' }],
              queryString: [],
              postData: { mimeType: 'application/x-www-form-urlencoded', params: [{ name: 'user', value: 'a b' }, { name: 'x', value: '&' }] },
              headersSize: -1,
              bodySize: -1,
            },
            response: { status: 302, statusText: '', httpVersion: 'h2', cookies: [], headers: [{ name: 'location', value: '/' }], content: { size: 120, mimeType: 'text/html' }, redirectURL: '/', headersSize: -1, bodySize: -1 },
            cache: {},
            timings: { send: 0, wait: 4, receive: 1 },
          },
          {
            startedDateTime: '2026-12-01T10:00:01Z',
            time: 0,
            request: { method: 'GET', url: 'http://a.example/x', httpVersion: 'HTTP/1.1', cookies: [], headers: [], queryString: [], headersSize: -1, bodySize: 0 },
            response: { status: 0, statusText: '', httpVersion: '', cookies: [], headers: [], content: { size: 0, mimeType: '' }, redirectURL: '', headersSize: -1, bodySize: -1 },
            cache: {},
            timings: { send: -1, wait: -1, receive: -1 },
          },
        ],
      },
    };
    const [login, aborted] = fromHar(har);
    assert.equal(login!.startedAt, Date.UTC(2026, 11, 1, 9, 0, 0));
    assert.deepEqual(login!.request.headers, [['Host', 'shop.example:8443'], ['content-type', 'application/x-www-form-urlencoded']]);
    assert.equal(login!.request.target, '/login?next=%2F');
    assert.equal(login!.request.httpVersion, '1.1');
    assert.equal(login!.request.body.toString(), 'user=a%20b&x=%26');
    assert.equal(login!.response!.bodyTruncated, true, 'content not saved: never compared');
    assert.equal(aborted!.response, undefined, 'status 0: no response');
    assert.deepEqual(aborted!.timings, { sendMs: -1, waitMs: -1, receiveMs: -1 });
  });
});
