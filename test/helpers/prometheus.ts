// A real Prometheus for tests: Debian's `prometheus` package (2.42) run directly as a binary with
// its own generated config, its own port on 127.0.0.1 and its own TSDB in a temp dir. Nothing of
// the packaged service is used (not its config, not :9090, not /var/lib/prometheus), so a service
// the package may have started does not disturb the tests.
//
// Binary: $MOLT_PROMETHEUS_BIN, else `prometheus` on PATH, else /usr/bin/prometheus.
// Under CI=true a missing binary is an error (CI installs it: see docs/analysis.md), elsewhere the
// tests that need it are skipped with the reason.

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { freePort, tempDir, waitFor } from './molt.js';

export function findPrometheus(): string | undefined {
  const fromEnv = process.env.MOLT_PROMETHEUS_BIN;
  if (fromEnv) return fs.existsSync(fromEnv) ? fromEnv : undefined;
  for (const dir of [...(process.env.PATH ?? '').split(path.delimiter), '/usr/bin', '/usr/local/bin']) {
    if (!dir) continue;
    const p = path.join(dir, 'prometheus');
    try {
      fs.accessSync(p, fs.constants.X_OK);
      if (fs.statSync(p).isFile()) return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** The binary, or why the tests are skipped. Under CI=true `skip` is never returned: `missing` is. */
export function prometheusForTests(): { bin: string } | { skip: string } | { missing: string } {
  const bin = findPrometheus();
  if (bin) return { bin };
  const why = 'no prometheus binary (apt-get install -y --no-install-recommends prometheus, or set MOLT_PROMETHEUS_BIN)';
  return process.env.CI === 'true' ? { missing: `CI=true but ${why}` } : { skip: why };
}

export interface ScrapeJob {
  job: string;
  /** "127.0.0.1:PORT" */
  targets: string[];
  metricsPath?: string;
}

export interface PrometheusHandle {
  /** http://127.0.0.1:PORT */
  url: string;
  port: number;
  dir: string;
  child: ChildProcess;
  /** Its stdout and stderr so far (last 64 KiB). */
  log(): string;
  /** Stops the process (SIGTERM, then SIGKILL after 10 s). Idempotent. Keeps the dir. */
  stop(): Promise<void>;
  /** stop() and remove the temp dir. */
  close(): Promise<void>;
}

function config(jobs: ScrapeJob[], intervalSeconds: number): string {
  const lines = [
    'global:',
    `  scrape_interval: ${intervalSeconds}s`,
    `  scrape_timeout: ${intervalSeconds}s`,
    `  evaluation_interval: ${intervalSeconds}s`,
    'scrape_configs:',
  ];
  for (const j of jobs) {
    for (const t of j.targets) {
      if (!/^(127\.\d+\.\d+\.\d+|\[::1\]|localhost):\d+$/.test(t)) throw new Error(`scrape target ${t}: tests scrape only loopback addresses`);
    }
    lines.push(`  - job_name: ${JSON.stringify(j.job)}`);
    if (j.metricsPath) lines.push(`    metrics_path: ${JSON.stringify(j.metricsPath)}`);
    lines.push('    static_configs:', `      - targets: [${j.targets.map((t) => JSON.stringify(t)).join(', ')}]`);
  }
  return lines.join('\n') + '\n';
}

/**
 * Starts Prometheus scraping `jobs` every `scrapeIntervalSeconds` (default 1) and waits until
 * /-/ready answers 200. Retries on another port if the chosen one was taken meanwhile.
 */
export async function startPrometheus(bin: string, jobs: ScrapeJob[], opts: { scrapeIntervalSeconds?: number } = {}): Promise<PrometheusHandle> {
  const dir = tempDir('molt-prometheus-');
  fs.writeFileSync(path.join(dir, 'prometheus.yml'), config(jobs, opts.scrapeIntervalSeconds ?? 1));
  let lastError: Error | undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    let handle: PrometheusHandle | undefined;
    try {
      const h = (handle = launch(bin, dir, port));
      // waitFor retries on exceptions, so an early exit is returned, not thrown.
      const state = await waitFor('prometheus /-/ready', async () => {
        if (h.child.exitCode !== null || h.child.signalCode !== null || h.log().includes('spawn error:')) return 'exited';
        const res = await fetch(`${h.url}/-/ready`, { signal: AbortSignal.timeout(1000) });
        await res.arrayBuffer();
        return res.status === 200 && 'ready';
      }, 30_000);
      if (state === 'exited') throw new ExitedEarly(h.log());
      return h;
    } catch (err) {
      await handle?.stop();
      lastError = err as Error;
      if (!handle || !/address already in use/.test(handle.log())) break;
    }
  }
  fs.rmSync(dir, { recursive: true, force: true });
  throw new Error(`prometheus did not become ready: ${lastError?.message}`);
}

class ExitedEarly extends Error {
  constructor(log: string) {
    super(`prometheus exited early; last output:\n${log.slice(-2000)}`);
  }
}

function launch(bin: string, dir: string, port: number): PrometheusHandle {
  const data = path.join(dir, `data-${port}`);
  const child = spawn(bin, [
    `--config.file=${path.join(dir, 'prometheus.yml')}`,
    `--storage.tsdb.path=${data}`,
    `--web.listen-address=127.0.0.1:${port}`,
    '--storage.tsdb.retention.time=1h',
    '--log.level=warn',
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const keep = (c: Buffer) => {
    out += c.toString('utf8');
    if (out.length > 65536) out = out.slice(-65536);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  child.on('error', (err) => keep(Buffer.from(`spawn error: ${err.message}\n`)));
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null) resolve();
    child.once('exit', () => resolve());
    child.once('error', () => resolve());
  });
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
    })();
    return stopping;
  };
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    dir,
    child,
    log: () => out,
    stop,
    close: async () => {
      await stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
