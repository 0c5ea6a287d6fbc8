import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { buildCrd, renderCrdYaml } from '../controller/crd.js';
import { loadAppVersionFile } from '../controller/load.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

type Node = { [k: string]: unknown };
interface Crd {
  spec: {
    group: string;
    scope: string;
    names: Node;
    versions: Array<{ name: string; served: boolean; storage: boolean; subresources: Node; additionalPrinterColumns: Node[]; schema: { openAPIV3Schema: Node } }>;
  };
}

const VALUE_VALIDATION_ONLY = new Set(['required']);

/** Every violation of the Kubernetes structural-schema rules we rely on, as "path: problem". */
function structuralProblems(node: Node, at: string, out: string[]): string[] {
  if ('$ref' in node) out.push(`${at}: $ref`);
  if (!('type' in node) && node['x-kubernetes-int-or-string'] !== true && node['x-kubernetes-preserve-unknown-fields'] !== true) {
    out.push(`${at}: no type`);
  }
  if ('properties' in node && 'additionalProperties' in node) out.push(`${at}: properties and additionalProperties`);
  if ('exclusiveMinimum' in node && typeof node.exclusiveMinimum !== 'boolean') out.push(`${at}: exclusiveMinimum must be a boolean in OpenAPI v3.0`);
  for (const k of ['oneOf', 'anyOf', 'allOf']) {
    for (const [i, branch] of ((node[k] as Node[] | undefined) ?? []).entries()) {
      for (const key of Object.keys(branch)) if (!VALUE_VALIDATION_ONLY.has(key)) out.push(`${at}.${k}[${i}]: ${key} in a value validation`);
    }
  }
  if ('not' in node) out.push(`${at}: not`);
  for (const [name, child] of Object.entries((node.properties as Record<string, Node> | undefined) ?? {})) {
    structuralProblems(child, `${at}.${name}`, out);
  }
  if (node.items) structuralProblems(node.items as Node, `${at}[]`, out);
  if (typeof node.additionalProperties === 'object') structuralProblems(node.additionalProperties as Node, `${at}{}`, out);
  return out;
}

describe('CRD', () => {
  const crd = buildCrd() as Crd;
  const version = crd.spec.versions[0]!;
  const schema = version.schema.openAPIV3Schema;

  it('crds/appversion.yaml is the generated output (regenerate: node dist/controller/crd.js > crds/appversion.yaml)', () => {
    const text = fs.readFileSync(path.join(ROOT, 'crds/appversion.yaml'), 'utf8');
    assert.equal(text, renderCrdYaml());
    assert.deepEqual(parse(text), buildCrd());
    assert.match(text, /^# GENERATED/);
    assert.match(text, /node dist\/controller\/crd\.js > crds\/appversion\.yaml/);
  });

  it('names, scope, version, subresources and printer columns', () => {
    assert.equal((crd as unknown as { metadata: { name: string } }).metadata.name, 'appversions.molt.dev');
    assert.equal(crd.spec.group, 'molt.dev');
    assert.equal(crd.spec.scope, 'Namespaced');
    assert.deepEqual(
      { kind: crd.spec.names.kind, plural: crd.spec.names.plural, singular: crd.spec.names.singular, shortNames: crd.spec.names.shortNames },
      { kind: 'AppVersion', plural: 'appversions', singular: 'appversion', shortNames: ['av'] },
    );
    assert.equal(crd.spec.versions.length, 1);
    assert.deepEqual([version.name, version.served, version.storage], ['v1alpha1', true, true]);
    assert.deepEqual(version.subresources, { status: {} });
    assert.deepEqual(
      version.additionalPrinterColumns.map((c) => [c.name, c.jsonPath]),
      [
        ['App', '.spec.app'],
        ['Version', '.spec.version'],
        ['Mode', '.spec.transition.mode'],
        ['Phase', '.status.phase'],
        ['Traffic', '.status.traffic'],
        ['Age', '.metadata.creationTimestamp'],
      ],
    );
  });

  it('the schema is structural', () => {
    assert.deepEqual(structuralProblems(schema, 'openAPIV3Schema', []), []);
    // metadata may carry no more than a type at the root
    assert.deepEqual((schema.properties as Record<string, Node>).metadata, { type: 'object' });
    assert.ok((schema.properties as Record<string, Node>).status, 'status schema present for the subresource');
  });

  it('the structural check catches violations', () => {
    const bad = { type: 'object', properties: { a: { description: 'x' }, b: { $ref: '#/x', type: 'string' } }, additionalProperties: { type: 'string' }, oneOf: [{ type: 'string' }] };
    assert.equal(structuralProblems(bad, 'r', []).length, 4);
  });

  it('every example in examples/ validates', async () => {
    const files: string[] = [];
    const walk = (dir: string): void => {
      for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, e.name);
        if (e.isDirectory()) walk(p);
        else if (/\.ya?ml$/.test(e.name)) files.push(p);
      }
    };
    walk(path.join(ROOT, 'examples'));
    assert.ok(files.some((f) => f.includes(`${path.sep}shop${path.sep}`)), 'examples/shop has files');
    for (const f of files) {
      const r = await loadAppVersionFile(f);
      assert.deepEqual(r.errors.map(String), [], f);
      assert.ok(r.resources.length > 0, f);
    }
  });
});
