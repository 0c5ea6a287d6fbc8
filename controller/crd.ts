// The AppVersion CustomResourceDefinition, built from controller/schema.ts.
// Regenerate the checked-in copy with:  node dist/controller/crd.js > crds/appversion.yaml
// (test/crd.test.ts fails when the two differ).

import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { API_VERSION, KIND } from './appversion.js';
import { appVersionSchema, statusSchema } from './schema.js';

export const CRD_GROUP = 'molt.dev';
export const CRD_VERSION = API_VERSION.split('/')[1]!;
export const CRD_PLURAL = 'appversions';
export const CRD_NAME = `${CRD_PLURAL}.${CRD_GROUP}`;
export const CRD_REGENERATE_COMMAND = 'node dist/controller/crd.js > crds/appversion.yaml';

export function buildCrd(): object {
  const schema = structuredClone(appVersionSchema) as { properties: Record<string, unknown> };
  schema.properties.status = structuredClone(statusSchema);
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: CRD_NAME },
    spec: {
      group: CRD_GROUP,
      scope: 'Namespaced',
      names: { kind: KIND, listKind: `${KIND}List`, plural: CRD_PLURAL, singular: 'appversion', shortNames: ['av'] },
      versions: [
        {
          name: CRD_VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: [
            { name: 'App', type: 'string', jsonPath: '.spec.app' },
            { name: 'Version', type: 'string', jsonPath: '.spec.version' },
            { name: 'Mode', type: 'string', jsonPath: '.spec.transition.mode' },
            { name: 'Phase', type: 'string', jsonPath: '.status.phase' },
            { name: 'Traffic', type: 'string', jsonPath: '.status.traffic' },
            { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
          ],
          schema: { openAPIV3Schema: schema },
        },
      ],
    },
  };
}

/** The text of crds/appversion.yaml. */
export function renderCrdYaml(): string {
  const header = [
    '# GENERATED FILE - do not edit.',
    '# Source: controller/schema.ts and controller/crd.ts.',
    `# Regenerate: npx tsc -p tsconfig.json && ${CRD_REGENERATE_COMMAND}`,
  ].join('\n');
  return `${header}\n${stringify(buildCrd(), { lineWidth: 0 })}`;
}

function isMain(): boolean {
  const entry = process.argv[1];
  if (!entry) return false;
  try {
    return realpathSync(entry) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMain()) process.stdout.write(renderCrdYaml());
