// Command-line flags (common/args.ts on util.parseArgs): typed values, and every mistake a MOLT_ERR_USAGE
// naming the flag and what it expects. Plus the commands that use it, and one real `molt up --drain abc`.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseCommandLine, type FlagDef } from '../common/args.js';
import { MoltError } from '../common/errors.js';
import { LOG_LEVELS } from '../common/logger.js';
import { runUp } from '../controller/up.js';
import { startKubeController } from '../controller/kube/main.js';
import { parseSidecarArgs } from '../sidecar/main.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = path.join(ROOT, 'bin', 'molt.js');

const FLAGS = {
  drain: { type: 'duration', default: '5s', unitless: 'ms' },
  lease: { type: 'duration', minMs: 1000 },
  workers: { type: 'integer', default: 1, min: 1, max: 64 },
  'log-level': { type: 'logLevel', default: 'info' },
  dir: { type: 'string', default: './versions' },
  token: { type: 'string' },
  file: { type: 'strings', short: 'f' },
  json: { type: 'boolean' },
} as const satisfies Record<string, FlagDef>;

const parse = (argv: string[]) => parseCommandLine(argv, FLAGS, 'up');

/** Asserts a MOLT_ERR_USAGE for `flag` whose one-line form matches `message`. */
function usageError(argv: string[], flag: string, message: RegExp): void {
  assert.throws(() => parse(argv), (e: unknown) => {
    assert.ok(e instanceof MoltError, `${argv.join(' ')}: ${String(e)}`);
    assert.equal(e.code, 'MOLT_ERR_USAGE');
    assert.equal(e.location.path, flag);
    assert.match(e.toString(), message);
    return true;
  }, argv.join(' '));
}

test('defaults, typed values, repeated and short flags, -- and --help', () => {
  const d = parse([]);
  assert.deepEqual(d.values, { drain: 5000, lease: undefined, workers: 1, 'log-level': 'info', dir: './versions', token: undefined, file: [], json: false });
  assert.equal(d.help, false);
  const v = parse(['--drain', '5s', '--lease=1m30s', '--workers', '8', '--log-level', 'debug', '-f', 'a.yaml', '--file=b.yaml', '--json', 'pos', '--', '--not-a-flag']);
  assert.deepEqual(v.values, { drain: 5000, lease: 90_000, workers: 8, 'log-level': 'debug', dir: './versions', token: undefined, file: ['a.yaml', 'b.yaml'], json: true });
  assert.deepEqual(v.positionals, ['pos', '--not-a-flag']);
  assert.equal(parse(['-h']).help, true);
  assert.equal(parse(['--help']).help, true);
});

test('--drain takes a duration like the YAML ("5s", "500ms", "1m30s"); a bare number stays milliseconds', () => {
  assert.equal(parse(['--drain', '5s']).values.drain, 5000);
  assert.equal(parse(['--drain', '500ms']).values.drain, 500);
  assert.equal(parse(['--drain', '1m30s']).values.drain, 90_000);
  assert.equal(parse(['--drain', '300']).values.drain, 300, 'what --drain always meant');
  assert.equal(parse(['--drain', '0s']).values.drain, 0);
});

test('bad durations name the flag and say what is expected', () => {
  usageError(['--drain', 'abc'], '--drain', /^--drain: expected a duration such as "5s" or "500ms" \(units ms, s, m, h; a bare number is milliseconds\), got "abc"$/);
  usageError(['--drain', '5 sec'], '--drain', /got "5 sec"/);
  usageError(['--drain', '1.5'], '--drain', /got "1\.5"/);
  usageError(['--drain=-5s'], '--drain', /got "-5s"/);
  usageError(['--lease', '10'], '--lease', /^--lease: expected a duration such as "5s" or "500ms" \(units ms, s, m, h\), got "10"$/);
  usageError(['--lease', '10ms'], '--lease', /^--lease: must be at least 1s, got "10ms"$/);
});

test('bad numbers name the flag and the range', () => {
  for (const bad of ['abc', '0', '65', '1.5', '2e1', '', ' ', '0x10']) {
    usageError(['--workers', bad], '--workers', new RegExp(`^--workers: expected a whole number from 1 to 64, got "${bad}"$`));
  }
  assert.equal(parse(['--workers', '64']).values.workers, 64);
});

test('log levels: the one list in common/logger.ts', () => {
  for (const level of LOG_LEVELS) assert.equal(parse(['--log-level', level]).values['log-level'], level);
  usageError(['--log-level', 'loud'], '--log-level', new RegExp(`^--log-level: expected one of ${LOG_LEVELS.join(', ')}, got "loud"$`));
});

test('unknown flags, missing values, values on boolean flags', () => {
  usageError(['--bogus'], '--bogus', /^--bogus: unknown flag for "molt up" \(see molt up --help\)$/);
  usageError(['-x'], '-x', /unknown flag/);
  usageError(['--drain'], '--drain', /^--drain: needs a value: a duration such as "5s"/);
  usageError(['--drain', '--json'], '--drain', /^--drain: needs a value: a duration .*write --drain=VALUE\)$/);
  usageError(['--workers'], '--workers', /^--workers: needs a value: a whole number from 1 to 64$/);
  usageError(['--token'], '--token', /^--token: needs a value$/);
  usageError(['-f'], '--file', /^--file: needs a value$/);
  usageError(['--json=false'], '--json', /^--json: takes no value/);
});

test('molt up: a usage error is thrown before anything starts (no state dir)', async () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'molt-args-'));
  try {
    const state = path.join(root, 'state');
    for (const [argv, flag] of [[['--drain', 'abc'], '--drain'], [['--workers', 'many'], '--workers'], [['--log-level', 'loud'], '--log-level'], [['--nope'], '--nope'], [['extra'], undefined]] as const) {
      await assert.rejects(runUp([...argv, '--state', state, '--dir', path.join(root, 'v')]), (e: unknown) => {
        assert.ok(e instanceof MoltError && e.code === 'MOLT_ERR_USAGE', String(e));
        assert.equal(e.location.path, flag);
        return true;
      });
      assert.equal(fs.existsSync(state), false, `${argv.join(' ')}: state dir created`);
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('molt sidecar and molt controller --kubernetes parse with the same rules', async () => {
  assert.throws(() => parseSidecarArgs(['--listen', '127.0.0.1:1', '--control', 's', '--log-level', 'loud']), (e: unknown) => e instanceof MoltError && e.code === 'MOLT_ERR_USAGE' && e.location.path === '--log-level');
  assert.throws(() => parseSidecarArgs(['--listen', '127.0.0.1:1', '--control', 's', '--workers', '257']), (e: unknown) => e instanceof MoltError && e.location.path === '--workers');
  assert.throws(() => parseSidecarArgs(['--listen', '127.0.0.1:1', '--control']), (e: unknown) => e instanceof MoltError && e.location.path === '--control');
  // Rejected before any kubeconfig is read or socket opened.
  for (const [argv, flag] of [[['--lease-duration', 'abc'], '--lease-duration'], [['--lease-duration', '15'], '--lease-duration'], [['--log-level', 'x'], '--log-level'], [['--admin', 'nope'], '--admin']] as const) {
    await assert.rejects(startKubeController([...argv, '--kubeconfig', '/nonexistent/kubeconfig', '--control', '/nonexistent/dir/c.sock']), (e: unknown) => {
      assert.ok(e instanceof MoltError && e.code === 'MOLT_ERR_USAGE', String(e));
      assert.equal(e.location.path, flag);
      return true;
    });
  }
});

function molt(args: string[], cwd: string) {
  return spawnSync(process.execPath, [BIN, ...args], { cwd, encoding: 'utf8', timeout: 20_000, env: { ...process.env, MOLT_ADMIN: '127.0.0.1:1' } });
}

test('end to end: `molt up --drain abc` exits 2 with the message and starts nothing', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'molt-args-e2e-'));
  try {
    const r = molt(['up', '--drain', 'abc', '--dir', 'versions', '--state', 'state', '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0'], root);
    assert.equal(r.status, 2, r.stderr);
    assert.equal(r.stderr.trim(), 'molt up: --drain: expected a duration such as "5s" or "500ms" (units ms, s, m, h; a bare number is milliseconds), got "abc"');
    assert.equal(r.stdout, '', 'no welcome banner');
    assert.deepEqual(fs.readdirSync(root), [], 'no state dir, socket or versions folder');
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('--help keeps working for every command', () => {
  const cwd = os.tmpdir();
  for (const cmd of [['up'], ['status'], ['apply'], ['validate'], ['promote'], ['rollback'], ['controller'], ['controller', '--kubernetes'], ['sidecar']]) {
    const r = molt([...cmd, '--help'], cwd);
    assert.equal(r.status, 0, `${cmd.join(' ')}: ${r.stderr}`);
    assert.match(r.stdout, new RegExp(`^Usage: molt ${cmd.join(' ')}`), cmd.join(' '));
  }
  const up = molt(['up', '-h'], cwd);
  assert.match(up.stdout, /--drain DURATION/);
  assert.match(up.stdout, new RegExp(LOG_LEVELS.join('\\|')));
});
