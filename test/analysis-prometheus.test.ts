// The Prometheus provider against a REAL Prometheus (Debian's package, run by test/helpers/
// prometheus.ts) scraping a tiny HTTP server on 127.0.0.1 whose metric values the test sets.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import {
  checkTemplate, parseCondition, queryEndpoint, queryPrometheus, renderQuery, runPrometheusChecks, runPrometheusQuery,
  testCondition, type PrometheusQueryConfig, type QueryVars,
} from '../controller/analysis/prometheus.js';
import { waitFor } from './helpers/molt.js';
import { prometheusForTests, startPrometheus, type PrometheusHandle } from './helpers/prometheus.js';

const VARS: QueryVars = { app: 'shop', version: '2.0.0', baseline: '1.0.0' };
const validation = (e: any) => e.code === 'MOLT_ERR_VALIDATION';

// ---- pure parts ----

test('placeholders: {{app}}, {{version}}, {{baseline}} (spaces allowed); anything else is refused by name', () => {
  assert.equal(
    renderQuery('sum(rate(x{app="{{app}}",version="{{ version }}"}[1m])) / on() sum(rate(x{version="{{baseline}}"}[1m]))', VARS),
    'sum(rate(x{app="shop",version="2.0.0"}[1m])) / on() sum(rate(x{version="1.0.0"}[1m]))',
  );
  assert.throws(() => checkTemplate('x{version="{{canary}}"}'), (e: any) => validation(e) && /unknown placeholder \{\{canary\}\}.*\{\{app\}\}, \{\{version\}\}, \{\{baseline\}\}/.test(e.message));
  assert.throws(() => checkTemplate('x{version="{{version}"}'), (e: any) => validation(e) && /unbalanced "\{\{"/.test(e.message));
  assert.throws(() => checkTemplate('  '), validation);
  assert.doesNotThrow(() => checkTemplate('up{job="a"}'));
});

test('successCondition: OP NUMBER with the six operators; clear errors with hints', () => {
  const cases: [string, number, boolean][] = [
    ['>= 0.99', 0.99, true], ['>= 0.99', 0.98, false], ['> 1', 1, false], ['<=5e-3', 0.005, true],
    ['< -1', -2, true], ['== 0', 0, true], ['!= 0', 0, false], ['  >=.5 ', 0.5, true],
  ];
  for (const [text, value, ok] of cases) assert.equal(testCondition(parseCondition(text), value), ok, `${text} with ${value}`);
  assert.deepEqual(parseCondition(' >= 0.99 '), { op: '>=', threshold: 0.99, text: '>= 0.99' });
  const bad: [unknown, RegExp][] = [
    ['0.99', /no operator; write e\.g\. ">= 0\.99"/],
    ['=> 0.99', /did you mean ">="/],
    ['= 1', /did you mean "=="/],
    ['>= high', /expected a number after ">=", got "high"/],
    ['>= NaN', /expected a number/],
    ['', /empty/],
    [0.99, /must be a string/],
    ['~ 3', /OP NUMBER/],
  ];
  for (const [input, re] of bad) assert.throws(() => parseCondition(input), (e: any) => validation(e) && re.test(e.message), String(input));
});

test('address: any http(s) URL, path prefix kept; other schemes and query strings refused', () => {
  assert.equal(queryEndpoint('http://127.0.0.1:9091').href, 'http://127.0.0.1:9091/api/v1/query');
  assert.equal(queryEndpoint('https://prom.example.com/prometheus/').href, 'https://prom.example.com/prometheus/api/v1/query');
  for (const a of ['127.0.0.1:9090', 'ftp://x', 'http://x/?a=b', 'not a url']) assert.throws(() => queryEndpoint(a), validation, a);
});

// ---- a Prometheus that never answers / is not Prometheus (no binary needed) ----

test('a server that accepts and never answers: Inconclusive after the timeout, not a hang', async (t) => {
  const sockets: net.Socket[] = [];
  const server = net.createServer((s) => sockets.push(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    sockets.forEach((s) => s.destroy());
    server.close();
  });
  const address = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  const q: PrometheusQueryConfig = { name: 'ok-ratio', query: 'up', condition: parseCondition('>= 1') };
  const r = await runPrometheusQuery(address, q, VARS, { timeoutMs: 300 });
  assert.equal(r.verdict, 'Inconclusive');
  assert.match(r.reason!, /did not answer within 300 ms/);
});

test('an HTTP server that is not Prometheus: Inconclusive, says so', async (t) => {
  const server = http.createServer((req, res) => res.writeHead(404, { 'content-type': 'text/html' }).end('<html>Not Found</html>'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  const out = await queryPrometheus(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}`, 'up', { timeoutMs: 2000 });
  assert.equal(out.ok, false);
  assert.match((out as { reason: string }).reason, /HTTP 404 without a Prometheus API response \("<html>Not Found<\/html>"\)/);
});

// ---- the real Prometheus ----

const env = prometheusForTests();
if ('missing' in env) {
  test('a prometheus binary is installed (CI runs these tests)', () => assert.fail(env.missing));
}

describe('Prometheus provider against a real Prometheus', { skip: 'bin' in env ? false : 'skip' in env ? env.skip : env.missing }, () => {
  let prom: PrometheusHandle;
  let app: http.Server;
  /** The values the app exposes, per version. */
  const ratio: Record<string, number> = { '1.0.0': 0.999, '2.0.0': 0.995 };
  const q = (name: string, query: string, condition: string): PrometheusQueryConfig => ({ name, query, condition: parseCondition(condition) });
  const CANARY = 'shop_checkout_ok_ratio{app="{{app}}",version="{{version}}"}';

  /** Waits until Prometheus has scraped `value` for the canary. */
  async function seen(value: number): Promise<void> {
    await waitFor(`prometheus to scrape ${value}`, async () => {
      const out = await queryPrometheus(prom.url, renderQuery(CANARY, VARS), { timeoutMs: 2000 });
      return out.ok && out.value === value;
    }, 30_000);
  }

  before(async () => {
    app = http.createServer((req, res) => {
      if (req.url !== '/metrics') return void res.writeHead(404).end();
      const lines = ['# HELP shop_checkout_ok_ratio Share of checkouts that succeed.', '# TYPE shop_checkout_ok_ratio gauge'];
      for (const [version, v] of Object.entries(ratio)) lines.push(`shop_checkout_ok_ratio{app="shop",version="${version}"} ${v}`);
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(lines.join('\n') + '\n');
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    const port = (app.address() as net.AddressInfo).port;
    prom = await startPrometheus((env as { bin: string }).bin, [{ job: 'shop', targets: [`127.0.0.1:${port}`] }]);
    await seen(0.995);
  });

  after(async () => {
    await prom?.close();
    app?.close();
  });

  test('a passing condition is Pass, with the value in the message', async () => {
    const r = await runPrometheusQuery(prom.url, q('checkout-success', CANARY, '>= 0.99'), VARS, { timeoutMs: 5000 });
    assert.equal(r.verdict, 'Pass', r.message);
    assert.equal(r.value, 0.995);
    assert.equal(r.query, 'shop_checkout_ok_ratio{app="shop",version="2.0.0"}');
    assert.equal(r.message, 'checkout-success: 0.995 >= 0.99');
  });

  test('{{baseline}}: the canary compared with the previous version in one query', async () => {
    const query = `${CANARY} - ignoring(version) shop_checkout_ok_ratio{app="{{app}}",version="{{baseline}}"}`;
    const r = await runPrometheusQuery(prom.url, q('vs-baseline', query, '> -0.01'), VARS, { timeoutMs: 5000 });
    assert.equal(r.verdict, 'Pass', r.message);
    assert.ok(Math.abs(r.value! - (0.995 - 0.999)) < 1e-12);
  });

  test('a failing condition is Fail once Prometheus sees the worse value', async () => {
    ratio['2.0.0'] = 0.95;
    await seen(0.95);
    const r = await runPrometheusQuery(prom.url, q('checkout-success', CANARY, '>= 0.99'), VARS, { timeoutMs: 5000 });
    assert.equal(r.verdict, 'Fail');
    assert.equal(r.message, 'checkout-success: 0.95, expected >= 0.99');
  });

  test('bad PromQL is Inconclusive with Prometheus\'s own error text', async () => {
    const r = await runPrometheusQuery(prom.url, q('broken', 'sum(rate(shop_checkout_ok_ratio[1m])', '>= 0.99'), VARS, { timeoutMs: 5000 });
    assert.equal(r.verdict, 'Inconclusive');
    assert.match(r.reason!, /^query failed \(HTTP 400, bad_data\): .*parse error/);
    assert.match(r.message, /^broken: inconclusive: query failed/);
  });

  test('several series, no series, NaN, +Inf and a range vector are Inconclusive, never Pass', async () => {
    const cases: [string, RegExp][] = [
      ['shop_checkout_ok_ratio', /returned 2 series, expected exactly one.*first: \{__name__="shop_checkout_ok_ratio"/],
      ['shop_checkout_missing_total{app="{{app}}"}', /no series/],
      ['vector(0) / vector(0)', /returned NaN/],
      ['vector(1) / vector(0)', /returned \+Inf/],
      [`${CANARY}[1m]`, /range vector/],
    ];
    // Every condition here would pass on any number: only the shape of the result decides.
    const results = await runPrometheusChecks({
      address: prom.url,
      timeoutMs: 5000,
      queries: cases.map(([query], i) => q(`case-${i}`, query, '!= 12345')),
    }, VARS);
    results.forEach((r, i) => {
      assert.equal(r.verdict, 'Inconclusive', `${cases[i]![0]}: ${r.message}`);
      assert.match(r.reason!, cases[i]![1], cases[i]![0]);
    });
  });

  test('a scalar result counts as one sample', async () => {
    const r = await runPrometheusQuery(prom.url, q('scalar', `scalar(${CANARY})`, '< 1'), VARS, { timeoutMs: 5000 });
    assert.equal(r.verdict, 'Pass', r.message);
  });

  test('Prometheus stopped: Inconclusive (cannot reach), within the timeout', async () => {
    await prom.stop();
    const r = await runPrometheusQuery(prom.url, q('checkout-success', CANARY, '>= 0.99'), VARS, { timeoutMs: 3000 });
    assert.equal(r.verdict, 'Inconclusive');
    assert.match(r.reason!, /cannot reach Prometheus at http:\/\/127\.0\.0\.1:\d+: ECONNREFUSED|did not answer within 3000 ms/);
  });
});
