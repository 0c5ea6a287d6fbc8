// What kube-apiserver does with a custom resource against its CRD's structural openAPIV3Schema, for the
// fake apiserver: pruning of unknown fields, defaulting, and validation with the real server's error shapes.
//
// Order, as in apiextensions-apiserver: decode -> prune unknown fields (everything not specified by
// `properties`, except under `additionalProperties` and `x-kubernetes-preserve-unknown-fields: true`; the
// root apiVersion/kind/metadata are always kept) -> drop nulls of non-nullable fields -> apply `default:`
// values (objects, array items and map values included; defaults are themselves pruned) -> validate.
// Validation covers: type (string, integer, number, boolean, object, array), x-kubernetes-int-or-string,
// required, enum, pattern, minLength/maxLength, minimum/maximum with OpenAPI v3.0 boolean
// exclusiveMinimum/exclusiveMaximum, minItems/maxItems, format date-time, and oneOf/anyOf/allOf/not
// (value validations only, as structural schemas allow). Error messages and the 422 Status body follow
// k8s.io/apimachinery's field.Error strings ("spec.app: Invalid value: ...").

export type Schema = {
  type?: string;
  properties?: Record<string, Schema>;
  additionalProperties?: Schema | boolean;
  items?: Schema;
  required?: string[];
  enum?: unknown[];
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: boolean;
  exclusiveMaximum?: boolean;
  minItems?: number;
  maxItems?: number;
  format?: string;
  nullable?: boolean;
  default?: unknown;
  oneOf?: Schema[];
  anyOf?: Schema[];
  allOf?: Schema[];
  not?: Schema;
  'x-kubernetes-int-or-string'?: boolean;
  'x-kubernetes-preserve-unknown-fields'?: boolean;
  [k: string]: unknown;
};

type Obj = Record<string, any>;

/** One field error, as k8s.io/apimachinery/pkg/util/validation/field.Error. */
export interface FieldError {
  /** FieldValueRequired, FieldValueInvalid, FieldValueNotSupported, FieldValueTypeInvalid, FieldValueTooLong, ... */
  reason: string;
  field: string;
  /** The message without the field prefix (as in Status.details.causes[].message). */
  detail: string;
}

export function fieldErrorString(e: FieldError): string {
  return `${e.field}: ${e.detail}`;
}

const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);

// ---- pruning ----

/** Remove fields the schema does not specify (in place). The root keeps apiVersion, kind and metadata. */
export function prune(obj: Obj, schema: Schema): void {
  pruneNode(obj, schema, true);
}

function pruneNode(v: unknown, s: Schema | undefined, root = false): void {
  if (!s || s['x-kubernetes-preserve-unknown-fields'] === true) {
    // Preserved: still prune inside specified properties.
    if (s && isObj(v) && s.properties) for (const [k, sub] of Object.entries(s.properties)) if (k in v) pruneNode(v[k], sub);
    return;
  }
  if (Array.isArray(v)) {
    for (const item of v) pruneNode(item, s.items);
    return;
  }
  if (!isObj(v)) return;
  for (const k of Object.keys(v)) {
    if (root && (k === 'apiVersion' || k === 'kind' || k === 'metadata')) continue;
    const sub = s.properties?.[k];
    if (sub) pruneNode(v[k], sub);
    else if (isObj(s.additionalProperties)) pruneNode(v[k], s.additionalProperties);
    else if (s.additionalProperties === true) continue;
    else delete v[k];
  }
}

// ---- defaulting ----

/** Drop nulls of non-nullable fields, then apply defaults (in place). */
export function applyDefaults(obj: Obj, schema: Schema): void {
  defaultNode(obj, schema);
}

function defaultNode(v: unknown, s: Schema | undefined): void {
  if (!s) return;
  if (Array.isArray(v)) {
    if (s.items) for (const item of v) defaultNode(item, s.items);
    return;
  }
  if (!isObj(v)) return;
  if (s.properties) {
    for (const [k, sub] of Object.entries(s.properties)) {
      if (v[k] === null && !sub.nullable) delete v[k];
      if (v[k] === undefined && sub.default !== undefined) {
        const d = structuredClone(sub.default);
        if (isObj(d) || Array.isArray(d)) pruneNode(d, sub);
        v[k] = d;
      }
      if (v[k] !== undefined) defaultNode(v[k], sub);
    }
  }
  if (isObj(s.additionalProperties)) {
    for (const k of Object.keys(v)) if (!s.properties?.[k]) defaultNode(v[k], s.additionalProperties);
  }
}

// ---- validation ----

function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (v === null) return 'null';
  if (Array.isArray(v)) return '"array"';
  if (typeof v === 'object') return '"object"';
  return String(v);
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

function typeOk(v: unknown, s: Schema): boolean {
  if (s['x-kubernetes-int-or-string']) return typeof v === 'string' || (typeof v === 'number' && Number.isInteger(v));
  switch (s.type) {
    case undefined:
      return true;
    case 'string':
      return typeof v === 'string';
    case 'integer':
      return typeof v === 'number' && Number.isInteger(v);
    case 'number':
      return typeof v === 'number' && Number.isFinite(v);
    case 'boolean':
      return typeof v === 'boolean';
    case 'object':
      return isObj(v);
    case 'array':
      return Array.isArray(v);
    default:
      return false;
  }
}

/** Validate a value against a schema; returns field errors (empty when valid). */
export function validate(v: unknown, s: Schema, path = ''): FieldError[] {
  const out: FieldError[] = [];
  validateNode(v, s, path, out);
  return out;
}

function validateNode(v: unknown, s: Schema, path: string, out: FieldError[]): void {
  const at = path || '<root>';
  if (v === null) {
    if (s.nullable) return;
    out.push({ reason: 'FieldValueTypeInvalid', field: at, detail: `Invalid value: "null": ${at} in body must be of type ${s.type ?? 'object'}: "null"` });
    return;
  }
  if (!typeOk(v, s)) {
    const want = s['x-kubernetes-int-or-string'] ? 'integer,string' : s.type;
    out.push({ reason: 'FieldValueTypeInvalid', field: at, detail: `Invalid value: ${show(v)}: ${at} in body must be of type ${want}: ${JSON.stringify(typeName(v))}` });
    return;
  }
  if (s.enum && !s.enum.some((e) => JSON.stringify(e) === JSON.stringify(v))) {
    out.push({ reason: 'FieldValueNotSupported', field: at, detail: `Unsupported value: ${show(v)}: supported values: ${s.enum.map((e) => JSON.stringify(e)).join(', ')}` });
  }
  if (typeof v === 'string') {
    if (s.maxLength !== undefined && [...v].length > s.maxLength) {
      out.push({ reason: 'FieldValueTooLong', field: at, detail: `Too long: may not be longer than ${s.maxLength}` });
    }
    if (s.minLength !== undefined && [...v].length < s.minLength) {
      out.push({ reason: 'FieldValueInvalid', field: at, detail: `Invalid value: ${show(v)}: ${at} in body should be at least ${s.minLength} chars long` });
    }
    if (s.pattern !== undefined && !new RegExp(s.pattern, 'u').test(v)) {
      out.push({ reason: 'FieldValueInvalid', field: at, detail: `Invalid value: ${show(v)}: ${at} in body should match '${s.pattern}'` });
    }
    if (s.format === 'date-time' && !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/.test(v)) {
      out.push({ reason: 'FieldValueInvalid', field: at, detail: `Invalid value: ${show(v)}: ${at} in body must be of type date-time: ${show(v)}` });
    }
  }
  if (typeof v === 'number') {
    if (s.minimum !== undefined && (s.exclusiveMinimum ? v <= s.minimum : v < s.minimum)) {
      out.push({ reason: 'FieldValueInvalid', field: at, detail: `Invalid value: ${v}: ${at} in body should be greater than ${s.exclusiveMinimum ? '' : 'or equal to '}${s.minimum}` });
    }
    if (s.maximum !== undefined && (s.exclusiveMaximum ? v >= s.maximum : v > s.maximum)) {
      out.push({ reason: 'FieldValueInvalid', field: at, detail: `Invalid value: ${v}: ${at} in body should be less than ${s.exclusiveMaximum ? '' : 'or equal to '}${s.maximum}` });
    }
  }
  if (Array.isArray(v)) {
    if (s.minItems !== undefined && v.length < s.minItems) {
      out.push({ reason: 'FieldValueInvalid', field: at, detail: `Invalid value: ${v.length}: ${at} in body should have at least ${s.minItems} items` });
    }
    if (s.maxItems !== undefined && v.length > s.maxItems) {
      out.push({ reason: 'FieldValueTooMany', field: at, detail: `Too many: ${v.length}: must have at most ${s.maxItems} items` });
    }
    if (s.items) v.forEach((item, i) => validateNode(item, s.items!, `${path}[${i}]`, out));
  }
  if (isObj(v)) {
    for (const r of s.required ?? []) {
      if (v[r] === undefined) out.push({ reason: 'FieldValueRequired', field: path ? `${path}.${r}` : r, detail: 'Required value' });
    }
    for (const [k, val] of Object.entries(v)) {
      const sub = s.properties?.[k] ?? (isObj(s.additionalProperties) ? s.additionalProperties : undefined);
      if (sub && val !== undefined) validateNode(val, sub, path ? `${path}.${k}` : k, out);
    }
  }
  // Value validations that combine schemas (no types/properties inside in a structural schema).
  const passes = (sub: Schema) => validate(v, sub, path).length === 0;
  if (s.oneOf) {
    const n = s.oneOf.filter(passes).length;
    if (n !== 1) out.push({ reason: 'FieldValueInvalid', field: at, detail: `Invalid value: ${show(v)}: ${at} in body must validate one and only one schema (oneOf). ${n === 0 ? 'Found none valid' : `Found ${n} valid alternatives`}` });
  }
  if (s.anyOf && !s.anyOf.some(passes)) {
    out.push({ reason: 'FieldValueInvalid', field: at, detail: `Invalid value: ${show(v)}: ${at} in body must validate at least one schema (anyOf)` });
  }
  for (const sub of s.allOf ?? []) validateNode(v, sub, path, out);
  if (s.not && passes(s.not)) {
    out.push({ reason: 'FieldValueInvalid', field: at, detail: `Invalid value: ${show(v)}: ${at} in body should not validate the schema (not)` });
  }
}

/** The 422 Status the real server answers for an invalid object. */
export function invalidStatus(kind: string, group: string, name: string, errors: FieldError[]): Obj {
  const strs = errors.map(fieldErrorString);
  const list = strs.length === 1 ? strs[0] : `[${strs.join(', ')}]`;
  return {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message: `${kind}${group ? `.${group}` : ''} "${name}" is invalid: ${list}`,
    reason: 'Invalid',
    details: { name, group: group || undefined, kind, causes: errors.map((e) => ({ reason: e.reason, message: e.detail, field: e.field })) },
    code: 422,
  };
}
