// Generates grafana-dashboard.json (run: node manifests/monitoring/build-dashboard.mjs).
// Written as code so every panel's PromQL sits in one readable list; test/monitoring.test.ts runs
// each expression against a real Prometheus scraping a running molt.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const SEL = 'app=~"$app",version=~"$version"';
const ds = { type: 'prometheus', uid: '${DS_PROMETHEUS}' };

/** [title, unit, targets [[expr, legend]], kind, gridPos w] */
const PANELS = [
  ['Traffic share of new requests', 'percentunit', [[`molt_traffic_share{${SEL}}`, '{{app}} {{version}}']], 'timeseries'],
  ['Phase', 'none', [[`max by (app, version, phase) (molt_version_phase{${SEL}}) == 1`, '{{app}} {{version}}: {{phase}}']], 'table'],
  ['Request rate', 'reqps', [[`sum by (app, version) (rate(molt_requests_total{${SEL}}[1m]))`, '{{app}} {{version}}']], 'timeseries'],
  ['Error ratio', 'percentunit', [[`sum by (app, version) (rate(molt_request_errors_total{${SEL}}[1m])) / sum by (app, version) (rate(molt_requests_total{${SEL}}[1m]))`, '{{app}} {{version}}']], 'timeseries'],
  ['Latency p50', 's', [[`histogram_quantile(0.5, sum by (app, version, le) (rate(molt_request_duration_seconds_bucket{${SEL}}[1m])))`, '{{app}} {{version}}']], 'timeseries'],
  ['Latency p95', 's', [[`histogram_quantile(0.95, sum by (app, version, le) (rate(molt_request_duration_seconds_bucket{${SEL}}[1m])))`, '{{app}} {{version}}']], 'timeseries'],
  ['Rollbacks', 'none', [[`sum by (app, reason) (increase(molt_rollbacks_total{app=~"$app"}[$__range]))`, '{{app}} {{reason}}']], 'timeseries'],
  ['CONCURRENT mismatches', 'none', [[`sum by (app, version) (increase(molt_concurrent_mismatches_total{${SEL}}[5m]))`, '{{app}} {{version}}']], 'timeseries'],
  ['Sidecar connected', 'none', [['min(molt_sidecar_connected)', 'connected']], 'stat'],
  ['Reconcile errors', 'none', [['sum(increase(molt_reconcile_total{result="error"}[5m]))', 'errors']], 'stat'],
];

export function buildDashboard() {
  const panels = PANELS.map(([title, unit, targets, type], i) => ({
    id: i + 1,
    type,
    title,
    datasource: ds,
    gridPos: { h: 8, w: type === 'stat' ? 6 : 12, x: (i % 2) * 12, y: Math.floor(i / 2) * 8 },
    fieldConfig: { defaults: { unit }, overrides: [] },
    options: type === 'table' ? { showHeader: true } : {},
    targets: targets.map(([expr, legendFormat], k) => ({
      refId: String.fromCharCode(65 + k),
      datasource: ds,
      expr,
      legendFormat,
      ...(type === 'table' ? { instant: true, format: 'table' } : {}),
    })),
  }));
  const variable = (name, query) => ({
    name,
    label: name,
    type: 'query',
    datasource: ds,
    query: { query, refId: name },
    definition: query,
    refresh: 2,
    includeAll: true,
    multi: true,
    allValue: '.*',
    current: { selected: true, text: ['All'], value: ['$__all'] },
    sort: 1,
  });
  return {
    __inputs: [{ name: 'DS_PROMETHEUS', label: 'Prometheus', type: 'datasource', pluginId: 'prometheus', pluginName: 'Prometheus' }],
    title: 'molt rollouts',
    uid: 'molt-rollouts',
    description: 'Per app and version: traffic share, phase, rate, errors, latency, rollbacks (molt).',
    tags: ['molt'],
    timezone: 'browser',
    schemaVersion: 39,
    version: 1,
    refresh: '10s',
    time: { from: 'now-30m', to: 'now' },
    templating: {
      list: [
        variable('app', 'label_values(molt_requests_total, app)'),
        variable('version', 'label_values(molt_requests_total{app=~"$app"}, version)'),
      ],
    },
    annotations: {
      list: [{
        name: 'Rollbacks', datasource: ds, enable: true, iconColor: 'red',
        expr: 'changes(molt_rollbacks_total{app=~"$app"}[1m]) > 0', titleFormat: 'rollback {{app}}', textFormat: '{{reason}}',
      }],
    },
    panels,
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const out = path.join(path.dirname(fileURLToPath(import.meta.url)), 'grafana-dashboard.json');
  fs.writeFileSync(out, JSON.stringify(buildDashboard(), null, 2) + '\n');
  console.log(`wrote ${out}`);
}
