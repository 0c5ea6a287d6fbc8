// JSON Schema of the raw AppVersion resource (molt.dev/v1alpha1), written so that it is also a
// *structural* Kubernetes openAPIV3Schema: every node has a `type` (or x-kubernetes-int-or-string),
// no $ref, no additionalProperties beside properties, oneOf only over `required`.
//
// Kubernetes prunes unknown fields; locally we reject them. `localSchema()` derives the stricter
// schema the loader compiles with Ajv (additionalProperties: false everywhere, int-or-string as
// a type union, liberal scalars where users expect them). Semantic checks that JSON Schema can't
// say well (durations, quantities, one runtime, step order) live in controller/load.ts.

import { DURATION_PATTERN, QUANTITY_PATTERN } from '../common/duration.js';
import { PHASES } from './phase.js';
import { analysisSchema, stepAnalysisSchema, ANALYSIS_TRANSITION_VALIDATIONS } from './analysis/schema-fragment.js';

export type SchemaNode = { [key: string]: unknown };

export const NAME_PATTERN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$';
export const VERSION_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._+-]*$';
export const HOST_PATTERN = '^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$';
/** Server address: a host name (underscores allowed, as in container names), IPv4 or IPv6. */
export const SERVER_HOST_PATTERN = '^([A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?(\\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*|\\[?[0-9A-Fa-f:.]+\\]?)$';
export const COOKIE_NAME_PATTERN = "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$";
export const TRANSITION_MODES = ['INSTANT', 'SESSION', 'GRADUAL', 'CONCURRENT'] as const;
/** An HTTP header name (RFC 9110 token). */
export const HEADER_NAME_PATTERN = "^[-!#$%&'*+.^_`|~0-9A-Za-z]+$";
/** A preflight hook: an absolute http(s) URL (checked further by controller/load.ts). */
export const HOOK_URL_PATTERN = '^[Hh][Tt][Tt][Pp][Ss]?://[^/?#\\s]+([/?#][^\\s]*)?$';
export const ON_NO_TRAFFIC = ['reject', 'pass', 'wait'] as const;
export const COMPARE_BODY_MODES = ['auto', 'bytes', 'none'] as const;
export const NOISE_MODES = ['auto', 'off'] as const;

const str = (description: string, extra: SchemaNode = {}): SchemaNode => ({ type: 'string', description, ...extra });
const bool = (description: string): SchemaNode => ({ type: 'boolean', description });
const int = (description: string, minimum?: number, maximum?: number): SchemaNode => ({
  type: 'integer',
  description,
  ...(minimum === undefined ? {} : { minimum }),
  ...(maximum === undefined ? {} : { maximum }),
});
const port = (description: string): SchemaNode => int(description, 1, 65535);
const strings = (description: string, items: SchemaNode = {}): SchemaNode => ({
  type: 'array',
  description,
  items: { type: 'string', ...items },
});
const duration = (description: string): SchemaNode => ({
  'x-kubernetes-int-or-string': true,
  description: `${description} A duration: "500ms", "60s", "5m", "1h30m", or a whole number of seconds.`,
  pattern: DURATION_PATTERN,
});
const quantity = (description: string): SchemaNode => ({
  'x-kubernetes-int-or-string': true,
  description: `${description} Bytes, or a quantity such as "512Ki", "256Mi", "1Gi".`,
  pattern: QUANTITY_PATTERN,
});
const envMap = (description: string): SchemaNode => ({
  type: 'object',
  description,
  additionalProperties: { type: 'string' },
});
const object = (description: string, properties: Record<string, SchemaNode>, required?: string[]): SchemaNode => ({
  type: 'object',
  description,
  ...(required ? { required } : {}),
  properties,
});

const transition = object('How new traffic moves to this version. Default: INSTANT.', {
  mode: str('INSTANT: all new requests at once. SESSION: new sessions only. GRADUAL: a growing share. CONCURRENT: both versions answer, the first good answer wins.', {
    enum: [...TRANSITION_MODES],
  }),
  sessionTimeout: duration('Idle time after which a client\u2019s version cookie expires. Default 1h.'),
  percentagePerRequest: {
    type: 'number',
    description: 'GRADUAL (thesis semantics): the new version\u2019s share rises by this many percentage points per routed request.',
    minimum: 0,
    exclusiveMinimum: true,
    maximum: 100,
  },
  steps: {
    type: 'array',
    description: 'GRADUAL (time-based): weights strictly increasing up to 100, each held for `pause` (absent on the last step: hold until promoted).',
    minItems: 1,
    items: object('One step of the schedule.', {
      weight: { type: 'number', description: 'Percentage of new traffic, 0-100.', minimum: 0, maximum: 100 },
      pause: duration('How long to hold this weight.'),
      analysis: stepAnalysisSchema,
    }, ['weight']),
  },
  duplicateUnsafeMethods: bool('CONCURRENT: also duplicate POST/PUT/PATCH/DELETE. Default false.'),
  maxDuplicateBodySize: quantity('CONCURRENT: request bodies up to this size are duplicated. Default 1Mi.'),
  callsPerInteraction: int('Requests one client interaction makes (c in the mixed-version risk s(1 - s^c) while both versions serve). Default 1.', 1, 1000),
  analysis: analysisSchema,
});
// Kubernetes >= 1.25 evaluates this CEL rule; locally normalizeTransitionAnalysis says the same.
transition['x-kubernetes-validations'] = ANALYSIS_TRANSITION_VALIDATIONS;

const rate = (description: string): SchemaNode => ({ type: 'number', description, minimum: 0, maximum: 1 });
const headerNames = (description: string): SchemaNode => strings(description, { pattern: HEADER_NAME_PATTERN });

const preflight = object('Test the new version on live traffic before any client reaches it: it enters phase Testing, gets no client request, and is exercised with replayed and copied requests whose answers are compared with the serving version\u2019s. A pass starts the transition; a fail ends in phase Rejected.', {
  maxDuration: duration('The whole preflight; after it, onNoTraffic decides if fewer than shadow.minRequests were compared. Default 2m.'),
  onNoTraffic: str('What happens after maxDuration with too few compared requests: reject (phase Rejected, reason NoTraffic), pass (judge what was compared) or wait (keep testing). Default reject.', {
    enum: [...ON_NO_TRAFFIC],
  }),
  replay: object('Recently recorded requests (per app, at the ingress) replayed to both versions.', {
    requests: int('How many of the most recent recorded requests to replay; 0: none. Default 200.', 0, 100000),
    headers: object('Header changes for every request molt originates for the preflight.', {
      set: { type: 'object', description: 'Header name -> value, replacing the recorded value (e.g. authorization: "Bearer test-token").', additionalProperties: { type: 'string' } },
    }),
  }),
  shadow: object('Copy live requests to the new version (after the client was answered by the serving version) and compare.', {
    percent: { type: 'number', description: 'Share of live requests copied, 0-100. Default 100 when shadow is given; without shadow nothing is copied.', minimum: 0, maximum: 100 },
    minRequests: int('Compared requests (replayed and copied together) needed before a verdict. Default 100 (without shadow: at most replay.requests).', 0, 1000000),
  }),
  compare: object('What must be equal between the serving and the new version\u2019s answers.', {
    status: bool('Compare status codes. Default true.'),
    headers: headerNames('Response headers to compare. Default [content-type].'),
    body: str('auto: JSON compared structurally when both sides are JSON, else bytes; bytes; none. Default auto.', { enum: [...COMPARE_BODY_MODES] }),
    ignore: strings('Differences to ignore: JSON paths ($.generatedAt, $.items[*].updatedAt, $[\'a b\'][0]) cover the node and everything below; header:NAME a header.', { minLength: 1 }),
    noise: str('auto: learn fields that differ between two answers of the serving version and ignore them (Diffy\u2019s primary/secondary); off. Default auto.', { enum: [...NOISE_MODES] }),
  }),
  pass: object('Limits over compared requests.', {
    maxMismatchRate: rate('Share of compared requests whose answers may differ, 0-1. Default 0.'),
    maxErrorRate: rate('Share of requests the new version may fail (5xx, reset, timeout) where the serving version answered, 0-1. Default 0.'),
    maxLatencyRatio: { type: 'number', description: 'Highest allowed new p95 / serving p95. Default 2.', minimum: 0, exclusiveMinimum: true },
  }),
  unsafeMethods: bool('Also send POST/PUT/PATCH/DELETE (only to the new version, compared with the recorded answer). Default false: only GET, HEAD and OPTIONS.'),
  hooks: {
    type: 'array',
    description: 'The user\u2019s own gates, called (POST, JSON evidence) after the traffic tests pass; a non-2xx answer or a timeout rejects with HookFailed.',
    maxItems: 16,
    items: object('A hook.', {
      url: str('An absolute http(s) URL.', { pattern: HOOK_URL_PATTERN, maxLength: 2048 }),
      timeout: duration('How long to wait for the hook\u2019s answer. Default 30s.'),
    }, ['url']),
  },
  keepFailed: bool('Keep a Rejected version running for inspection. Default: spec.keepFailed.'),
  redact: object('Recorded and exported requests: Authorization, Cookie and Set-Cookie are always redacted unless kept.', {
    headers: headerNames('More headers to redact.'),
    queryParams: strings('Query parameters to redact.', { minLength: 1 }),
    keep: strings('Headers or query parameters to keep even though redacted by default.', { minLength: 1 }),
  }),
});

const failurePolicy = object('When the sidecar rolls this version back.', {
  consecutiveFailures: int('Roll back after this many consecutive failed requests. Default 1.', 1),
  errorRate: { type: 'number', description: 'Roll back when the error ratio over `window` reaches this (0-1). Default 0.5.', minimum: 0, exclusiveMinimum: true, maximum: 1 },
  window: duration('Window for errorRate. Default 10s.'),
  minRequests: int('Requests needed in the window before errorRate applies. Default 20.', 1),
  failureStatusCodes: {
    type: 'array',
    description: 'Upstream status codes that count as failures. Default 500-599 except 501.',
    items: { type: 'integer', minimum: 100, maximum: 599 },
  },
  connectTimeout: duration('Connecting to the version longer than this is a failure. Default 2s.'),
  responseTimeout: duration('A response head slower than this is a failure. Default 30s.'),
});

const healthCheck = object('Readiness check run before the version gets traffic.', {
  path: str('HTTP path to GET (2xx/3xx = healthy). Absent: a TCP connect check.', { pattern: '^/' }),
  interval: duration('Time between checks. Default 1s.'),
  timeout: duration('Per-check timeout. Default 1s.'),
  startupTimeout: duration('Not ready after this long: the version is Failed. Default 60s.'),
});

const servers = {
  type: 'array',
  description: 'Runtime: already-running servers molt routes to.',
  minItems: 1,
  items: object('A server.', { host: str('Host name or IP address.', { pattern: SERVER_HOST_PATTERN }), port: port('TCP port.') }, ['host', 'port']),
};

const processRuntime = object('Runtime: molt starts this command (with PORT set) and restarts it if it dies.', {
  command: str('Executable.', { minLength: 1 }),
  args: strings('Arguments.'),
  env: envMap('Environment variables.'),
  workingDir: str('Working directory, relative to the resource file.'),
  replicas: int('Processes to run. Default 1.', 1, 64),
}, ['command']);

const dockerRuntime = object('Runtime: molt runs this Docker image.', {
  image: str('Image name, e.g. "shop" or "registry.example.com/team/shop".', { minLength: 1 }),
  tag: str('Image tag. Default "latest".', { pattern: '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$' }),
  containerPort: port('Port the service listens on inside the container.'),
  replicas: int('Containers to run. Default 1.', 1, 64),
  name: str('Container name (default: generated).', { pattern: '^[a-zA-Z0-9][a-zA-Z0-9_.-]*$' }),
  workingDir: str('Working directory inside the container.'),
  entrypoint: strings('Overrides the image ENTRYPOINT.'),
  cmd: strings('Overrides the image CMD.'),
  env: envMap('Environment variables.'),
  hostname: str('Container host name.'),
  volumes: strings('Anonymous volumes (container paths).'),
  binds: strings('Bind mounts "host:container[:ro|rw]".', { pattern: '^[^:]+:[^:]+(:(ro|rw))?$' }),
  volumesFrom: strings('Mount all volumes of other containers: "container[:ro|rw]".', { pattern: '^[^:]+(:(ro|rw))?$' }),
  portBindings: {
    type: 'array',
    description: 'Extra published ports, always bound to 127.0.0.1.',
    items: object('A published port.', {
      containerPort: port('Port inside the container.'),
      hostPort: port('Port on the host.'),
      protocol: str('tcp (default) or udp.', { enum: ['tcp', 'udp'] }),
    }, ['containerPort', 'hostPort']),
  },
  links: strings('Links to other containers: "container[:alias]".', { pattern: '^[^:]+(:[^:]+)?$' }),
  user: str('User (and group) to run as: "uid[:gid]" or a name.'),
  memory: quantity('Memory limit.'),
  cpuShares: int('CPU shares (relative weight).', 2),
  privileged: bool('Give extended privileges to the container.'),
  checkForNewImages: bool('Re-resolve the tag; a new image digest yields a new (derived) version.'),
  imagePollInterval: duration('Time between image checks when checkForNewImages is on. Default 30s.'),
}, ['image', 'containerPort']);

const spec = {
  ...object('The desired version of an app.', {
    app: str('Application name; versions of one app share hosts and take over from each other.', { pattern: NAME_PATTERN, maxLength: 63 }),
    version: str('Version label, e.g. "2.0.0" (quote it in YAML). Ordered semver-aware.', { pattern: VERSION_PATTERN, maxLength: 128 }),
    hosts: strings('Host header values (no port) that select this app.', { pattern: HOST_PATTERN, maxLength: 253 }),
    default: bool('This app takes requests whose Host matches no other app.'),
    transition,
    failurePolicy,
    healthCheck,
    keepFailed: bool('Keep a rolled-back version running for inspection.'),
    preflight,
    cookies: object('Cookie names.', {
      version: str('Default molt-version-<app>.', { pattern: COOKIE_NAME_PATTERN }),
      bucket: str('Default molt-bucket-<app>.', { pattern: COOKIE_NAME_PATTERN }),
    }),
    servers,
    process: processRuntime,
    docker: dockerRuntime,
  }, ['app', 'version']),
  oneOf: [{ required: ['servers'] }, { required: ['process'] }, { required: ['docker'] }],
};

/** Raw resource (without status). */
export const appVersionSchema: SchemaNode = object('AppVersion: one version of an HTTP service, and how to upgrade to it.', {
  apiVersion: str('molt.dev/v1alpha1', { enum: ['molt.dev/v1alpha1'] }),
  kind: str('AppVersion', { enum: ['AppVersion'] }),
  metadata: { type: 'object' },
  spec,
}, ['apiVersion', 'kind', 'metadata', 'spec']);

/** The status subresource, written by the controller. */
export const statusSchema: SchemaNode = object('Observed state, written by the controller.', {
  phase: str(`Phase of this generation's rollout: ${PHASES.slice(0, -1).join(', ')} or ${PHASES[PHASES.length - 1]}.`, { enum: [...PHASES] }),
  traffic: {
    'x-kubernetes-preserve-unknown-fields': true,
    description: 'Share of new traffic this version receives now (a number 0-1 or a string such as "37%").',
  },
  reason: str('CamelCase reason for the phase.'),
  message: str('Human-readable detail.'),
  observedGeneration: int('metadata.generation the status describes.'),
  conditions: {
    type: 'array',
    'x-kubernetes-list-type': 'map',
    'x-kubernetes-list-map-keys': ['type'],
    items: object('A condition.', {
      type: str('Condition type, e.g. Ready.'),
      status: str('True, False or Unknown.', { enum: ['True', 'False', 'Unknown'] }),
      reason: str('CamelCase reason.'),
      message: str('Human-readable detail.'),
      lastTransitionTime: str('When status last changed.', { format: 'date-time' }),
      observedGeneration: int('metadata.generation the condition describes.'),
    }, ['type', 'status']),
  },
  timestamps: {
    type: 'object',
    description: 'ISO times of phase changes: created, ready, testing, serving, promoted, rolledBack, failed, rejected. After a preflight, serving is the atomic switch time (Kubernetes mode: stamped a little in the future; every replica routes the version from that instant).',
    additionalProperties: { type: 'string' },
  },
  preflight: preflightStatus(),
  analysis: analysisStatus(),
  mixedVersionRisk: object('Imago\u2019s P_inc = s(1 - s^c) during a transition (s: the new version\u2019s share, c: transition.callsPerInteraction).', {
    current: { type: 'number', description: 'Now.' },
    mean: { type: 'number', description: 'Time-weighted mean since the transition started (or over the steps schedule).' },
    max: { type: 'number', description: 'Highest so far (or over the steps schedule).' },
  }),
});

function analysisStatus(): SchemaNode {
  return object('Canary analysis of this generation (spec.analysis; Kubernetes mode: written by the leader, every replica routes at `step`).', {
    baseline: str('AppVersion name of the version compared against.'),
    baselineVersion: str('Its spec.version.'),
    step: int('GRADUAL: the step every replica holds (0-based).', 0),
    stepStartedAt: str('When the current step started.', { format: 'date-time' }),
    holdSince: str('When the current step was first Inconclusive.', { format: 'date-time' }),
    judged: int('Windows judged so far.', 0),
    promoted: { type: 'boolean', description: 'The gates passed: the version takes all new traffic.' },
    runs: {
      type: 'array',
      description: 'The newest judged windows (at most 20).',
      maxItems: 20,
      items: object('One judged window.', {
        step: int('The step whose gate ran (CONCURRENT: the window number).', 0),
        startedAt: str('Window start.', { format: 'date-time' }),
        endedAt: str('Window end.', { format: 'date-time' }),
        verdict: str('Pass, Fail or Inconclusive.', { enum: ['Pass', 'Fail', 'Inconclusive'] }),
        message: str('The numbers behind the verdict.'),
        metrics: {
          type: 'array',
          description: 'Verdict per metric.',
          items: object('A metric.', {
            metric: str('latency, errors, or the Prometheus query name.'),
            kind: str('latency, errors or prometheus.'),
            verdict: str('Pass, Fail or Inconclusive.', { enum: ['Pass', 'Fail', 'Inconclusive'] }),
            message: str('Detail.'),
          }),
        },
      }),
    },
  });
}

function preflightStatus(): SchemaNode {
  const count = (d: string): SchemaNode => int(d, 0);
  const ms = (d: string): SchemaNode => ({ type: 'number', description: `${d} Milliseconds; null without samples.`, nullable: true });
  return object('Evidence of the preflight test (spec.preflight).', {
    verdict: str('Pending, Pass, Fail, or Overridden (promoted by the user past the preflight).', { enum: ['Pending', 'Pass', 'Fail', 'Overridden'] }),
    compared: count('Requests answered by both versions and compared.'),
    mismatched: count('Compared requests whose answers differed (after ignore paths and noise).'),
    errors: count('Requests the new version failed (5xx, reset, timeout) where the serving version answered.'),
    dropped: count('Copies not sent because the in-flight limit was reached.'),
    skipped: count('Requests the serving version itself failed: nothing to compare with.'),
    topMismatches: {
      type: 'array',
      description: 'The paths that differed most often.',
      items: object('A path.', {
        path: str('status, header:NAME, body, or a JSON path with [*] for indices.'),
        count: count('Compared requests that differed here.'),
        examples: {
          type: 'array',
          description: 'A few example values (serving version, new version).',
          items: object('An example.', { old: str('The serving version\u2019s value.'), new: str('The new version\u2019s value.') }),
        },
      }),
    },
    latency: object('Latency of compared requests.', {
      oldP50: ms('Serving version, median.'),
      oldP95: ms('Serving version, 95th percentile.'),
      newP50: ms('New version, median.'),
      newP95: ms('New version, 95th percentile.'),
    }),
    note: str('Why the preflight did what it did, e.g. "first version of the app: hooks only".'),
    message: str('Where the preflight stands, or why it passed or failed.'),
    reason: str('Why it failed: PreflightMismatch, PreflightErrors, PreflightLatency, HookFailed or NoTraffic.'),
    hooksOnly: { type: 'boolean', description: 'First version of the app: nothing to compare with, hooks only.' },
  });
}

// ---- local (strict) schema ----

/** Fields Kubernetes puts in ObjectMeta; a file may carry them (e.g. from `kubectl get -o yaml`). */
const OBJECT_META_FIELDS = [
  'name', 'namespace', 'labels', 'annotations', 'uid', 'generation', 'resourceVersion', 'creationTimestamp',
  'deletionTimestamp', 'deletionGracePeriodSeconds', 'generateName', 'selfLink', 'finalizers', 'ownerReferences',
  'managedFields',
];
const LOOSE: SchemaNode = {};
const localMetadata: SchemaNode = {
  type: 'object',
  required: ['name'],
  additionalProperties: false,
  properties: {
    ...Object.fromEntries(OBJECT_META_FIELDS.map((f) => [f, LOOSE])),
    name: { type: 'string', pattern: NAME_PATTERN, maxLength: 63 },
    namespace: { type: 'string' },
    labels: { type: 'object', additionalProperties: { type: 'string' } },
    annotations: { type: 'object', additionalProperties: { type: 'string' } },
    generation: { type: 'integer' },
    uid: { type: 'string' },
  },
};

/** env values and argument lists accept numbers and booleans locally (stringified on load). */
const SCALAR: SchemaNode = { type: ['string', 'number', 'boolean'] };

function strict(node: SchemaNode): SchemaNode {
  const out: SchemaNode = {};
  for (const [k, v] of Object.entries(node)) {
    if (k.startsWith('x-kubernetes-') || k === 'description' || k === 'oneOf') continue;
    if (k === 'properties') {
      out.properties = Object.fromEntries(
        Object.entries(v as Record<string, SchemaNode>).map(([name, child]) => [name, strict(child)]),
      );
      out.additionalProperties = false;
    } else if (k === 'items' || k === 'additionalProperties') {
      out[k] = typeof v === 'object' ? strict(v as SchemaNode) : v;
    } else {
      out[k] = v;
    }
  }
  if (node['x-kubernetes-int-or-string']) {
    // Checked (with better messages) by parseDuration / parseQuantity.
    out.type = ['integer', 'string'];
    delete out.pattern;
  }
  if (node.exclusiveMinimum === true) {
    // OpenAPI v3.0 (Kubernetes) spells it as a flag beside minimum; JSON Schema as a number.
    out.exclusiveMinimum = node.minimum;
    delete out.minimum;
  }
  return out;
}

/** The schema the loader compiles: unknown fields are errors; `status` is accepted and ignored. */
export function localSchema(): SchemaNode {
  const root = strict(appVersionSchema);
  const props = root.properties as Record<string, SchemaNode>;
  props.metadata = localMetadata;
  props.status = {};
  const specProps = props.spec!.properties as Record<string, SchemaNode>;
  for (const k of ['process', 'docker'] as const) {
    const rt = specProps[k]!.properties as Record<string, SchemaNode>;
    rt.env = { type: 'object', additionalProperties: SCALAR };
    for (const list of ['args', 'entrypoint', 'cmd']) if (rt[list]) rt[list] = { type: 'array', items: SCALAR };
  }
  return root;
}
