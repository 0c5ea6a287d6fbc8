import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compareVersions, sortNewestFirst } from '../common/version-order.js';

const newer = (a: string, b: string) => {
  assert.ok(compareVersions(a, b) > 0, `${a} should be newer than ${b}`);
  assert.ok(compareVersions(b, a) < 0, `${b} should be older than ${a}`);
};

test('numeric parts compare numerically, not as strings', () => {
  newer('1.10', '1.9');
  newer('1.10.0', '1.9.9');
  newer('2.0.0', '1.99.99');
  newer('10.0', '9.0');
  newer('1.0.10', '1.0.9');
  newer('1.0.100000000000000000001', '1.0.100000000000000000000');
});

test('pre-releases are older than the release; identifiers compare like semver', () => {
  newer('1.9', '1.9.0-rc.1');
  newer('1.9.0', '1.9.0-rc.1');
  newer('1.9.0-rc.2', '1.9.0-rc.1');
  newer('1.9.0-rc.10', '1.9.0-rc.9');
  newer('1.9.0-rc.1', '1.9.0-rc');
  newer('1.9.0-beta', '1.9.0-alpha');
  newer('1.9.0-alpha', '1.9.0-1');
  newer('1.9.0-rc.1', '1.8.99');
});

test('leading v, missing parts, build metadata, equality', () => {
  assert.equal(compareVersions('v1.2.3', '1.2.3'), 0);
  assert.equal(compareVersions('V1.2', '1.2.0'), 0);
  assert.equal(compareVersions('1.2.3+build.7', '1.2.3'), 0);
  assert.equal(compareVersions('1.9', '1.9'), 0);
  newer('v1.10', 'v1.9');
  newer('1.2.1', '1.2');
});

test('non-numeric parts compare as strings', () => {
  newer('1.b', '1.a');
  newer('2024.beta', '2024.alpha');
});

test('the spec example order: 1.10 > 1.9 > 1.9.0-rc.1', () => {
  const list = ['1.9.0-rc.1', '1.10', 'v1.9', '0.9', '1.10.1-rc.1'];
  sortNewestFirst(list, (s) => s, (s) => s);
  assert.deepEqual(list, ['1.10.1-rc.1', '1.10', 'v1.9', '1.9.0-rc.1', '0.9']);
});

test('antisymmetric and transitive on a sample', () => {
  const vs = ['1', '1.0.1', '1.1', '1.1.0-a', '1.1.0-b', '1.1.0-1', 'v2', '2.0.0-rc.1', '1.10', '1.9', 'x'];
  for (const a of vs) for (const b of vs) assert.equal(Math.sign(compareVersions(a, b)), -Math.sign(compareVersions(b, a)) || 0);
  const sorted = [...vs].sort(compareVersions);
  for (let i = 1; i < sorted.length; i++) assert.ok(compareVersions(sorted[i], sorted[i - 1]) >= 0);
});
