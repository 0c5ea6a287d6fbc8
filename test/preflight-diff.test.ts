import assert from 'node:assert/strict';
import zlib from 'node:zlib';
import { describe, it } from 'node:test';
import {
  ABSENT,
  NoiseModel,
  compareResponses,
  compileIgnore,
  formatJsonPath,
  parseIgnorePattern,
  routeKey,
  type CapturedResponse,
  type CompareOptions,
} from '../common/preflight-diff.js';
import { MoltError } from '../common/errors.js';

function res(body: unknown, over: Partial<CapturedResponse> & { type?: string } = {}): CapturedResponse {
  const text = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
  return {
    status: over.status ?? 200,
    headers: over.headers ?? [['Content-Type', over.type ?? (typeof body === 'string' || Buffer.isBuffer(body) ? 'text/plain' : 'application/json')]],
    body: Buffer.isBuffer(text) ? text : Buffer.from(text),
    bodyTruncated: over.bodyTruncated ?? false,
  };
}

function opts(over: Partial<Omit<CompareOptions, 'ignore'>> & { ignore?: string[] } = {}): CompareOptions {
  return { status: true, headers: ['content-type'], body: 'auto', ...over, ignore: compileIgnore(over.ignore ?? []) };
}

const paths = (a: CapturedResponse, b: CapturedResponse, o = opts()) => compareResponses(a, b, o).differences.map((d) => d.path);

describe('parseIgnorePattern', () => {
  it('reads the JSONPath subset and header:NAME', () => {
    const json = (s: string) => {
      const p = parseIgnorePattern(s);
      assert.equal(p.kind, 'json');
      return p.kind === 'json' ? p.segments : [];
    };
    assert.deepEqual(json('$'), []);
    assert.deepEqual(json('$.generatedAt'), [{ kind: 'key', name: 'generatedAt' }]);
    assert.deepEqual(json('$.items[*].updatedAt'), [{ kind: 'key', name: 'items' }, { kind: 'any' }, { kind: 'key', name: 'updatedAt' }]);
    assert.deepEqual(json("$['a b'][12]"), [{ kind: 'key', name: 'a b' }, { kind: 'index', index: 12 }]);
    assert.deepEqual(json('$["x"]'), [{ kind: 'key', name: 'x' }]);
    assert.deepEqual(json("$['it\\'s']"), [{ kind: 'key', name: "it's" }]);
    assert.deepEqual(json('$._id.$ref.a-b'), [{ kind: 'key', name: '_id' }, { kind: 'key', name: '$ref' }, { kind: 'key', name: 'a-b' }]);
    assert.deepEqual(parseIgnorePattern('header:ETag'), { kind: 'header', source: 'header:ETag', name: 'etag' });
    assert.deepEqual(parseIgnorePattern('Header:x-request-id'), { kind: 'header', source: 'Header:x-request-id', name: 'x-request-id' });
  });

  const bad: Array<[string, RegExp]> = [
    ['', /expected "\$".* at the end/],
    ['items', /expected "\$" .* at character 1 \("i"\)/],
    ['$.', /expected a member name after "\." .* at the end/],
    ['$.1a', /member name .* at character 3 \("1"\)/],
    ['$..a', /member name .* at character 3 \("\."\)/],
    ['$.a[', /an index, "\*" or a quoted name after "\[" at the end/],
    ['$.a[x]', /an index, "\*" or a quoted name after "\[" at character 5 \("x"\)/],
    ['$.a[1', /"\]" at the end/],
    ['$.a[01]', /without leading zeros at character 5/],
    ['$.a[*', /"\]" at the end/],
    ["$['a", /a closing ' at the end/],
    ["$['a\\b']", /' or \\ after \\ at character 6 \("b"\)/],
    ['$a', /"\." or "\[" at character 2 \("a"\)/],
    ['$.a b', /"\." or "\[" at character 4 \(" "\)/],
    ['header:', /header name .* at the end/],
    ['header:e tag', /header name .* at character 9 \(" "\)/],
  ];
  for (const [input, message] of bad) {
    it(`rejects ${JSON.stringify(input)} saying what was expected where`, () => {
      assert.throws(
        () => parseIgnorePattern(input),
        (e: unknown) => e instanceof MoltError && e.code === 'MOLT_ERR_VALIDATION' && message.test(e.message) && e.message.includes(JSON.stringify(input)),
      );
    });
  }

  it('formats paths back, quoting names that are not identifiers', () => {
    assert.equal(formatJsonPath([{ kind: 'key', name: 'items' }, { kind: 'index', index: 3 }, { kind: 'key', name: 'price' }]), '$.items[3].price');
    assert.equal(formatJsonPath([{ kind: 'key', name: "a b'c" }, { kind: 'any' }]), "$['a b\\'c'][*]");
    for (const s of ['$.a[2].b', "$['a b'][*]", '$']) {
      const p = parseIgnorePattern(s);
      assert.equal(p.kind === 'json' && formatJsonPath(p.segments), s);
    }
  });
});

describe('compareResponses', () => {
  it('compressed bodies are compared by content: equal JSON in different gzip bytes matches, a changed field is found', () => {
    const gz = (v: unknown, level: number, coding = 'gzip') => res(coding === 'br' ? zlib.brotliCompressSync(JSON.stringify(v)) : zlib.gzipSync(JSON.stringify(v), { level }), { headers: [['Content-Type', 'application/json'], ['Content-Encoding', coding]] });
    const v1 = { items: [{ id: 1, price: 3.2 }], note: 'x'.repeat(200) };
    const a = gz(v1, 1);
    const b = gz(v1, 9);
    assert.notDeepEqual(a.body, b.body, 'the test needs different compressed bytes');
    assert.deepEqual(compareResponses(a, b, opts()), { differences: [], truncated: false, body: 'json' });
    const changed = gz({ ...v1, items: [{ id: 1, price: 32 }] }, 9, 'br');
    assert.deepEqual(paths(a, changed), ['$.items[0].price']);
    // Not decodable (corrupt): compared as bytes, reported on `body`.
    const corrupt = res(Buffer.from('not gzip'), { headers: [['Content-Type', 'text/plain'], ['Content-Encoding', 'gzip']] });
    assert.deepEqual(paths(corrupt, res(Buffer.from('not gzip!'), { headers: corrupt.headers })), ['body']);
  });

  it('equal JSON with different key order and whitespace: no difference', () => {
    const a = res('{"a":1,"b":{"x":[1,2],"y":null}}', { type: 'application/json' });
    const b = res('{ "b": {"y": null, "x": [1, 2]}, "a": 1 }\n', { type: 'application/json' });
    const r = compareResponses(a, b, opts());
    assert.deepEqual(r, { differences: [], truncated: false, body: 'json' });
  });

  it('a changed field on one path is reported at its JSON path, with both values and the general path', () => {
    const a = res({ items: [{ id: 1, price: 10 }, { id: 2, price: 20 }, { id: 3, price: 30 }, { id: 4, price: 40 }] });
    const b = res({ items: [{ id: 1, price: 10 }, { id: 2, price: 20 }, { id: 3, price: 30 }, { id: 4, price: 41 }] });
    const r = compareResponses(a, b, opts());
    assert.equal(r.body, 'json');
    assert.deepEqual(r.differences, [{ path: '$.items[3].price', generalPath: '$.items[*].price', old: '40', new: '41' }]);
  });

  it('missing keys, extra array elements and type changes', () => {
    const a = res({ a: 1, b: 'x', list: [1, 2], t: { k: 1 }, n: null });
    const b = res({ a: 1, c: true, list: [1, 2, 3], t: [1], n: 0 });
    const r = compareResponses(a, b, opts());
    assert.deepEqual(r.differences.map((d) => [d.path, d.old, d.new]), [
      ['$.b', '"x"', ABSENT],
      ['$.c', ABSENT, 'true'],
      ['$.list[2]', ABSENT, '3'],
      ['$.n', 'null', '0'],
      ['$.t', '{"k":1}', '[1]'],
    ]);
  });

  it('1 and 1.0 are the same JSON number; "1" and 1 are not', () => {
    assert.deepEqual(paths(res('{"v":1}', { type: 'application/json' }), res('{"v":1.0}', { type: 'application/json' })), []);
    assert.deepEqual(paths(res({ v: 1 }), res({ v: '1' })), ['$.v']);
  });

  it('status and chosen headers; header names in any case, absent headers named', () => {
    const a = res({ ok: 1 }, { status: 200, headers: [['Content-Type', 'application/json'], ['X-A', '1']] });
    const b = res({ ok: 1 }, { status: 201, headers: [['content-type', 'application/json; charset=utf-8']] });
    const r = compareResponses(a, b, opts({ headers: ['Content-Type', 'x-a'] }));
    assert.deepEqual(r.differences.map((d) => [d.path, d.old, d.new]), [
      ['status', '200', '201'],
      ['header:content-type', 'application/json', 'application/json; charset=utf-8'],
      ['header:x-a', '1', ABSENT],
    ]);
    assert.equal(r.body, 'status', 'bodies of different statuses are not compared');
    assert.deepEqual(paths(a, b, opts({ status: false, headers: [] })), [], 'status and headers off, bodies equal');
  });

  it('repeated headers compare as one comma-joined value', () => {
    const a = res('x', { headers: [['vary', 'a'], ['Vary', 'b']] });
    const b = res('x', { headers: [['vary', 'a, b']] });
    assert.deepEqual(paths(a, b, opts({ headers: ['vary'] })), []);
  });

  it('ignore: JSON paths (with [*], [n], subtrees) and headers', () => {
    const a = res({ generatedAt: 1, items: [{ u: 1, p: 1 }, { u: 2, p: 2 }], meta: { id: 'a', n: 1 }, keep: 1 }, { headers: [['content-type', 'application/json'], ['etag', '"1"']] });
    const b = res({ generatedAt: 2, items: [{ u: 3, p: 1 }, { u: 4, p: 3 }], meta: { id: 'b', n: 2, extra: true }, keep: 2 }, { headers: [['content-type', 'application/json'], ['etag', '"2"']] });
    const all = paths(a, b, opts({ headers: ['etag'] }));
    assert.deepEqual(all, ['header:etag', '$.generatedAt', '$.items[0].u', '$.items[1].p', '$.items[1].u', '$.keep', '$.meta.extra', '$.meta.id', '$.meta.n']);
    const left = paths(a, b, opts({ headers: ['etag'], ignore: ['$.generatedAt', '$.items[*].u', '$.meta', 'header:ETag'] }));
    assert.deepEqual(left, ['$.items[1].p', '$.keep']);
    assert.deepEqual(paths(a, b, opts({ headers: ['etag'], ignore: ['$.items[1]', '$.keep'] })).filter((p) => p.startsWith('$.items')), ['$.items[0].u']);
    assert.deepEqual(paths(a, b, opts({ headers: [], ignore: ['$'] })), [], '$ ignores the whole body');
  });

  it('body: auto falls back to bytes when either side is not JSON; bytes never parses', () => {
    const a = res('hello world', { type: 'text/plain' });
    const b = res('hello there', { type: 'text/plain' });
    const r = compareResponses(a, b, opts({ headers: [] }));
    assert.equal(r.body, 'bytes');
    assert.deepEqual(r.differences, [{ path: 'body', generalPath: 'body', old: 'hello world', new: 'hello there' }]);
    const j1 = res({ a: 1, b: 2 });
    const j2 = res('{"b":2,"a":1}', { type: 'application/json' });
    assert.deepEqual(paths(j1, j2, opts({ body: 'bytes', headers: [] })), ['body'], 'bytes: key order counts');
    assert.deepEqual(paths(j1, j2, opts({ body: 'none', headers: [] })), []);
    const html = res('<h1>error</h1>', { type: 'text/html' });
    assert.deepEqual(paths(j1, html, opts({ headers: [] })), ['body'], 'JSON vs HTML: a bytes difference');
  });

  it('JSON without a JSON content type is still recognised by body: auto', () => {
    const r = compareResponses(res('{"a":1}', { type: 'text/plain' }), res('{"a":2}', { type: 'text/plain' }), opts({ headers: [] }));
    assert.equal(r.body, 'json');
    assert.deepEqual(r.differences.map((d) => d.path), ['$.a']);
  });

  it('binary bodies are described, not dumped', () => {
    const r = compareResponses(res(Buffer.from([0, 1, 2, 3])), res(Buffer.from([0, 1, 9])), opts({ headers: [] }));
    assert.deepEqual(r.differences.map((d) => [d.old, d.new]), [['(4 bytes, binary, first difference at byte 2)', '(3 bytes, binary, first difference at byte 2)']]);
  });

  it('truncated bodies are not compared, and the result says so', () => {
    const a = res({ a: 1 });
    const b = res({ a: 2 }, { bodyTruncated: true });
    assert.deepEqual(compareResponses(a, b, opts()), { differences: [], truncated: false, body: 'truncated' });
    assert.deepEqual(compareResponses(b, a, opts()).body, 'truncated');
  });

  it('example values are cut to maxValueChars', () => {
    const long = 'x'.repeat(500);
    const [d] = compareResponses(res({ s: long }), res({ s: long + 'y' }), opts()).differences;
    assert.equal(d!.old.length, 80);
    assert.ok(d!.old.endsWith('…'));
    const [e] = compareResponses(res({ s: long }), res({ s: 'y' }), opts({ maxValueChars: 10 })).differences;
    assert.equal(e!.old, '"xxxxxxxx…');
    assert.equal(e!.new, '"y"');
  });

  it('at most maxDifferences differences, then truncated', () => {
    const a = res(Array.from({ length: 500 }, (_, i) => i));
    const b = res(Array.from({ length: 500 }, (_, i) => -i - 1));
    const r = compareResponses(a, b, opts({ maxDifferences: 7 }));
    assert.equal(r.differences.length, 7);
    assert.equal(r.truncated, true);
    assert.equal(compareResponses(a, b, opts()).differences.length, 50, 'default 50');
  });

  it('deeply nested JSON does not overflow the stack', () => {
    const deep = (n: number, leaf: number) => '['.repeat(n) + leaf + ']'.repeat(n);
    const r = compareResponses(res(deep(5000, 1), { type: 'application/json' }), res(deep(5000, 2), { type: 'application/json' }), opts());
    assert.equal(r.differences.length, 1);
    assert.ok(r.differences[0]!.path.startsWith('$[0][0]'));
  });

  it('below the depth limit a subtree is one value: equal ignoring key order, different in length or keys', () => {
    const wrap = (inner: string) => res('{"a":'.repeat(100) + inner + '}'.repeat(100), { type: 'application/json' });
    const depths = (x: string, y: string) => compareResponses(wrap(x), wrap(y), opts()).differences.map((d) => d.path.split('.a').length - 1);
    assert.deepEqual(depths('{"x":1,"y":[1,2]}', '{"y":[1,2],"x":1}'), []);
    assert.deepEqual(depths('[1,2]', '[1,2,3]'), [64]);
    assert.deepEqual(depths('{"x":1}', '{"y":1}'), [64]);
    assert.deepEqual(depths('{"x":1}', '{"x":1,"y":1}'), [64]);
  });
});

describe('routeKey', () => {
  it('method and path, query and fragment dropped, absolute-form reduced', () => {
    assert.equal(routeKey('get', '/items?page=2'), 'GET /items');
    assert.equal(routeKey('GET', '/a#x'), 'GET /a');
    assert.equal(routeKey('POST', 'http://shop.example:8080/cart?x=1'), 'POST /cart');
    assert.equal(routeKey('GET', 'http://shop.example'), 'GET /');
    assert.equal(routeKey('OPTIONS', '*'), 'OPTIONS *');
  });
});

describe('NoiseModel', () => {
  const timestamped = (t: number, id: string, price = 10) => res({ generatedAt: t, requestId: id, items: [{ price, at: t }, { price, at: t }] });

  it('learns what differs between two answers of the serving version, per route, and filters it', () => {
    const noise = new NoiseModel();
    const route = routeKey('GET', '/items?x=1');
    const o = opts();
    noise.learn(route, compareResponses(timestamped(1, 'a'), timestamped(2, 'b'), o).differences);
    const diff = compareResponses(timestamped(1, 'a'), timestamped(3, 'c', 11), o).differences;
    assert.deepEqual(diff.map((d) => d.path), ['$.generatedAt', '$.items[0].at', '$.items[0].price', '$.items[1].at', '$.items[1].price', '$.requestId']);
    assert.deepEqual(noise.filter(route, diff).map((d) => d.path), ['$.items[0].price', '$.items[1].price']);
    assert.equal(noise.isNoise(route, '$.items[7].at'), true, 'indices generalised');
    assert.equal(noise.isNoise('GET /other', '$.generatedAt'), false, 'noise is per route');
    assert.equal(noise.isNoise(route, '$.generatedAtX'), false);
  });

  it('a status difference is never learned as noise', () => {
    const noise = new NoiseModel();
    noise.learn('GET /', [{ path: 'status', generalPath: 'status', old: '200', new: '503' }, { path: 'body', generalPath: 'body', old: 'a', new: 'b' }]);
    assert.equal(noise.isNoise('GET /', 'status'), false);
    assert.equal(noise.isNoise('GET /', 'body'), true, 'a body that differs by bytes on the serving side is noise');
  });

  it('noise at a node covers what is below it', () => {
    const noise = new NoiseModel();
    noise.learn('GET /', [{ path: '$.meta', generalPath: '$.meta', old: '{}', new: '[]' }]);
    assert.equal(noise.isNoise('GET /', '$.meta.x'), true);
    assert.equal(noise.isNoise('GET /', '$.meta[3]'), true);
    assert.equal(noise.isNoise('GET /', '$.metadata'), false);
    assert.equal(noise.isNoise('GET /', 'status'), false);
  });

  it('is bounded: least recently used routes forgotten, paths per route capped', () => {
    const noise = new NoiseModel({ maxRoutes: 3, maxPathsPerRoute: 2 });
    const d = (p: string) => ({ path: p, generalPath: p, old: '1', new: '2' });
    for (const r of ['A', 'B', 'C']) noise.learn(r, [d('$.x')]);
    noise.learn('A', [d('$.y')]); // A is now the most recently used
    noise.learn('D', [d('$.x')]); // evicts B
    assert.equal(noise.isNoise('B', '$.x'), false);
    assert.equal(noise.isNoise('A', '$.x'), true);
    assert.equal(noise.isNoise('C', '$.x'), true);
    noise.learn('A', [d('$.z')]);
    assert.equal(noise.isNoise('A', '$.z'), false, 'third path on a route is not learned');
    assert.deepEqual(noise.size, { routes: 3, paths: 4, overflow: 1 });
    for (let i = 0; i < 10_000; i++) noise.learn(`GET /u/${i}`, [d('$.x'), d('$.y'), d('$.w')]);
    assert.equal(noise.size.routes, 3);
    assert.equal(noise.size.paths, 6);
  });

  it('merges another worker\'s model', () => {
    const a = new NoiseModel();
    const b = new NoiseModel();
    b.learn('GET /', [{ path: '$.t', generalPath: '$.t', old: '1', new: '2' }]);
    a.merge(b);
    a.merge({ 'GET /x': ['$.id'] });
    assert.equal(a.isNoise('GET /', '$.t'), true);
    assert.equal(a.isNoise('GET /x', '$.id'), true);
    assert.deepEqual(a.toJSON(), { 'GET /': ['$.t'], 'GET /x': ['$.id'] });
  });
});
