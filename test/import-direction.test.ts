// The dependency direction is part of the architecture (issue 9): controller → common ← sidecar.
// The sidecar never imports the controller, the controller never reaches into sidecar internals
// (only the sidecar's entry point, sidecar/main.ts, which `molt sidecar` runs), common imports
// neither, and tests never import from bench/ (shared code lives in test/helpers/ or common/).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Every relative import specifier (static, re-export, dynamic) in a TypeScript source. */
export function relativeImports(src: string): string[] {
  const out: string[] = [];
  const re = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)(['"])(\.{1,2}\/[^'"]+)\1/g;
  for (let m; (m = re.exec(src)); ) out.push(m[2]);
  return out;
}

function tsFiles(dir: string): string[] {
  const abs = path.join(ROOT, dir);
  if (!fs.existsSync(abs)) return [];
  const out: string[] = [];
  for (const e of fs.readdirSync(abs, { withFileTypes: true })) {
    const rel = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...tsFiles(rel));
    else if (e.name.endsWith('.ts')) out.push(rel);
  }
  return out;
}

const topOf = (rel: string) => rel.split(path.sep)[0];

/** Returns why `from` may not import `to` (repo-relative paths), or null when it may. */
export function violation(from: string, to: string): string | null {
  const a = topOf(from);
  const b = topOf(to);
  if (a === b) return null;
  if (b === 'common') return null; // everyone may use the contract
  if (a === 'common') return `common/ must not import ${b}/`;
  if (a === 'sidecar') return `sidecar/ must not import ${b}/`;
  if (a === 'controller') {
    if (to === path.join('sidecar', 'main.ts')) return null; // the sidecar's entry point, for `molt sidecar`
    return `controller/ must not import sidecar internals (${to})`;
  }
  if (a === 'test' && b === 'bench') return 'tests must not import from bench/ (move shared code to test/helpers/ or common/)';
  return null;
}

test('violation() itself: the rules it enforces', () => {
  assert.equal(violation('sidecar/proxy.ts', 'controller/errors.ts'), 'sidecar/ must not import controller/');
  assert.match(violation('controller/up.ts', 'sidecar/proxy.ts') ?? '', /sidecar internals/);
  assert.equal(violation('controller/cli.ts', 'sidecar/main.ts'), null);
  assert.equal(violation('common/protocol.ts', 'sidecar/routing.ts'), 'common/ must not import sidecar/');
  assert.match(violation('test/faults.test.ts', 'bench/run.ts') ?? '', /bench/);
  assert.equal(violation('bench/run.ts', 'test/helpers/molt.ts'), null);
  assert.deepEqual(relativeImports(`import a from './a.js';\nexport { b } from "../b.js";\nawait import('./c.js');\nimport './d.js';`),
    ['./a.js', '../b.js', './c.js', './d.js']);
});

test('controller → common ← sidecar, and tests do not import bench/', () => {
  const problems: string[] = [];
  for (const dir of ['common', 'controller', 'sidecar', 'test']) {
    for (const file of tsFiles(dir)) {
      const src = fs.readFileSync(path.join(ROOT, file), 'utf8');
      for (const spec of relativeImports(src)) {
        const to = path.relative(ROOT, path.resolve(path.dirname(path.join(ROOT, file)), spec)).replace(/\.js$/, '.ts');
        const why = violation(file, to);
        if (why) problems.push(`${file} imports ${spec}: ${why}`);
      }
    }
  }
  assert.deepEqual(problems, []);
  assert.ok(tsFiles('common').length >= 5, 'common/ holds the shared contract');
});
