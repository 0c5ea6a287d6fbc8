// The monitoring pack (manifests/monitoring/) against the real tools: promtool checks and unit-tests
// the alert rules, and a real Prometheus scraping a running molt evaluates every PromQL expression
// of the Grafana dashboard (issue 13).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { runUp, type UpHandle } from '../controller/up.js';
import { appVersionYaml, freePort, processRuntimeYaml, request, tempDir, waitFor } from './helpers/molt.js';
import { prometheusForTests, startPrometheus, type PrometheusHandle } from './helpers/prometheus.js';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const MON = path.join(ROOT, 'manifests', 'monitoring');
const env = prometheusForTests();
if ('missing' in env) test('prometheus and promtool are installed (CI runs these tests)', () => assert.fail(env.missing));
const skip = 'bin' in env ? false : 'skip' in env ? env.skip : env.missing;
const promtool = 'bin' in env ? path.join(path.dirname(env.bin), 'promtool') : 'promtool';

test('the PrometheusRule carries exactly the groups of molt-rules.yaml', () => {
  const rules = YAML.parse(fs.readFileSync(path.join(MON, 'molt-rules.yaml'), 'utf8'));
  const pr = YAML.parse(fs.readFileSync(path.join(MON, 'prometheus-rule.yaml'), 'utf8'));
  assert.equal(pr.kind, 'PrometheusRule');
  assert.deepEqual(pr.spec.groups, rules.groups);
});

test('grafana-dashboard.json is what build-dashboard.mjs generates', async () => {
  const { buildDashboard } = await import(path.join(MON, 'build-dashboard.mjs'));
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(MON, 'grafana-dashboard.json'), 'utf8')), buildDashboard());
});

describe('alert rules with promtool', { skip }, () => {
  test('promtool check rules passes', () => {
    const out = execFileSync(promtool, ['check', 'rules', path.join(MON, 'molt-rules.yaml')], { encoding: 'utf8' });
    assert.match(out, /SUCCESS: 3 rules found/);
  });

  test('promtool test rules: each alert fires when it should and not otherwise', () => {
    const dir = tempDir('molt-promtool-');
    const tests = {
      rule_files: [path.join(MON, 'molt-rules.yaml')],
      evaluation_interval: '1m',
      tests: [
        {
          interval: '1m',
          input_series: [
            { series: 'molt_rollbacks_total{app="shop",reason="policy"}', values: '0 0 0 1 1 1 1 1 1 1 1' },
            { series: 'molt_rollbacks_total{app="blog",reason="policy"}', values: '0x10' },
            { series: 'molt_sidecar_connected{instance="a"}', values: '1 1 0 0 0 0 0' },
            { series: 'molt_sidecar_connected{instance="b"}', values: '1x6' },
            // Starting since t=0: stuck after 10 minutes. Serving since t=0: never "stuck" (a GRADUAL step may hold).
            { series: 'molt_version_phase_entered_timestamp_seconds{app="shop",version="2.0.0",phase="Starting"}', values: '0x20' },
            { series: 'molt_version_phase_entered_timestamp_seconds{app="shop",version="1.0.0",phase="Serving"}', values: '0x20' },
            // Testing since t=600 s: not stuck at 15 minutes.
            { series: 'molt_version_phase_entered_timestamp_seconds{app="blog",version="3.0.0",phase="Testing"}', values: '600x20' },
          ],
          alert_rule_test: [
            { eval_time: '2m', alertname: 'MoltRollback', exp_alerts: [] },
            {
              eval_time: '4m', alertname: 'MoltRollback',
              exp_alerts: [{ exp_labels: { severity: 'warning', app: 'shop', reason: 'policy' }, exp_annotations: {
                summary: 'molt rolled back app shop (policy)',
                description: 'A new version of shop was rolled back in the last 5 minutes (reason: policy). `molt status shop` shows the evidence.',
              } }],
            },
            { eval_time: '10m', alertname: 'MoltRollback', exp_alerts: [] },
            { eval_time: '2m', alertname: 'MoltSidecarDisconnected', exp_alerts: [] },
            {
              eval_time: '4m', alertname: 'MoltSidecarDisconnected',
              exp_alerts: [{ exp_labels: { severity: 'critical', instance: 'a' }, exp_annotations: {
                summary: 'molt sidecar disconnected from its controller (a)',
                description: 'The sidecar has not been connected to the controller for a minute: routing changes and failure reports are not flowing.',
              } }],
            },
            { eval_time: '9m', alertname: 'MoltVersionStuck', exp_alerts: [] },
            {
              eval_time: '15m', alertname: 'MoltVersionStuck',
              exp_alerts: [{ exp_labels: { severity: 'warning', app: 'shop', version: '2.0.0', phase: 'Starting' }, exp_annotations: {
                summary: 'molt version shop 2.0.0 stuck in Starting',
                description: 'shop 2.0.0 has been Starting for 15m 0s.',
              } }],
            },
          ],
        },
      ],
    };
    const file = path.join(dir, 'tests.yaml');
    fs.writeFileSync(file, YAML.stringify(tests));
    const out = execFileSync(promtool, ['test', 'rules', file], { encoding: 'utf8' });
    assert.match(out, /SUCCESS/);
  });
});

describe('Grafana dashboard against a real Prometheus scraping a running molt', { skip }, () => {
  test('every panel expression runs, the metrics it names exist, and the app panels return data', async (t) => {
    const root = tempDir('molt-monitoring-');
    const port = await freePort();
    const h = (await runUp(['--dir', path.join(root, 'versions'), '--state', path.join(root, 'state'), '--listen', `127.0.0.1:${port}`, '--admin', '127.0.0.1:0', '--log-level', 'warn'])) as UpHandle;
    t.after(() => h.shutdown());
    fs.mkdirSync(path.join(root, 'versions'), { recursive: true });
    fs.writeFileSync(path.join(root, 'versions', 'shop-v1.yaml'), appVersionYaml({ name: 'shop-v1', version: '1.0.0', runtime: processRuntimeYaml({ BODY: 'v1' }) }));
    await waitFor('v1 serving', async () => (await request(port)).body === 'v1');
    let stop = false;
    const load = (async () => { for (let i = 0; !stop && i < 100_000; i++) { await request(port).catch(() => undefined); await new Promise((r) => setTimeout(r, 20)); } })();
    t.after(async () => { stop = true; await load; });
    const prom: PrometheusHandle = await startPrometheus((env as { bin: string }).bin, [{ job: 'molt', targets: [`127.0.0.1:${h.adminAddress.port}`] }]);
    t.after(() => prom.close());

    const query = async (q: string) => {
      const res = await fetch(`${prom.url}/api/v1/query?query=${encodeURIComponent(q)}`);
      return (await res.json()) as { status: string; error?: string; data?: { result: unknown[] } };
    };
    await waitFor('prometheus has two scrapes of request counts', async () => {
      const r = await query('count_over_time(molt_requests_total{app="shop"}[1m])');
      return r.status === 'success' && (r.data?.result as Array<{ value: [number, string] }>)?.[0]?.value[1] !== undefined &&
        Number((r.data!.result as Array<{ value: [number, string] }>)[0]!.value[1]) >= 3;
    }, 60_000);

    const dash = JSON.parse(fs.readFileSync(path.join(MON, 'grafana-dashboard.json'), 'utf8'));
    const subst = (e: string) => e.replaceAll('$app', '.*').replaceAll('$version', '.*').replaceAll('$__range', '5m');
    const exprs: Array<{ title: string; expr: string }> = [];
    for (const p of dash.panels) for (const tg of p.targets) exprs.push({ title: p.title, expr: subst(tg.expr) });
    for (const v of dash.templating.list) exprs.push({ title: `variable ${v.name}`, expr: subst(v.query.query.replace(/^label_values\(([^,]+),.*\)$/, '$1').replace(/^label_values\((.*)\)$/, '$1')) });
    const empty: string[] = [];
    for (const { title, expr } of exprs) {
      const r = await query(expr);
      assert.equal(r.status, 'success', `${title}: ${expr}: ${r.error}`);
      if ((r.data?.result ?? []).length === 0) empty.push(title);
    }
    // Every metric name the dashboard uses exists in Prometheus.
    const names = new Set(exprs.flatMap(({ expr }) => expr.match(/\bmolt_[a-z_]+/g) ?? []));
    for (const name of names) {
      const res = await fetch(`${prom.url}/api/v1/series?match[]=${encodeURIComponent(name)}`);
      const body = (await res.json()) as { data: unknown[] };
      assert.ok(body.data.length > 0, `no series for ${name}`);
    }
    // With traffic and no failure, the app's traffic, rate, latency and phase panels have data.
    for (const title of ['Traffic share of new requests', 'Request rate', 'Latency p50', 'Phase', 'Sidecar connected']) {
      assert.ok(!empty.includes(title), `panel "${title}" returned no data`);
    }
    t.diagnostic(`panels without data while nothing failed (expected): ${empty.join(', ') || 'none'}`);
  });
});
