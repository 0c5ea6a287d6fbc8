import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { normalizeAppVersion } from '../controller/load.js';
import { MoltError } from '../common/errors.js';
import { appVersionToThesisCluster, loadThesisConfigFile, thesisClusterToRaw } from '../controller/thesis.js';

const UUID = '1dcbb083-257f-11e4-bcbc-600308a8245e';

// Appendix I, PUT example.
const PUT_EXAMPLE = {
  cluster: {
    servers: [
      { hostname: '127.0.0.1', port: 1036 },
      { hostname: '127.0.0.1', port: 1038 },
    ],
    version: '1.1',
    upgradeTransition: { mode: 'SESSION', sessionTimeout: 60 },
  },
};

function badRequest(fn: () => unknown, path: string): MoltError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof MoltError, `expected a MoltError, got ${String(caught)}`);
  assert.equal(caught.code, 'MOLT_ERR_BAD_REQUEST');
  assert.equal(caught.location.path, path, caught.toString());
  return caught;
}

describe('thesisClusterToRaw', () => {
  it('maps the Appendix I example (wrapped or not) to a valid AppVersion', () => {
    for (const body of [PUT_EXAMPLE, PUT_EXAMPLE.cluster]) {
      const raw = thesisClusterToRaw(body, UUID);
      assert.deepEqual(raw, {
        apiVersion: 'molt.dev/v1alpha1',
        kind: 'AppVersion',
        metadata: { name: 'cluster-1dcbb083' },
        spec: {
          app: 'default',
          default: true,
          version: '1.1',
          transition: { mode: 'SESSION', sessionTimeout: 60 },
          servers: [{ host: '127.0.0.1', port: 1036 }, { host: '127.0.0.1', port: 1038 }],
        },
      });
      const av = normalizeAppVersion(raw, 'thesis');
      assert.equal(av.spec.transition.sessionTimeoutSeconds, 60);
    }
  });

  it('defaults: version 0.0, INSTANT; a named app is not the default app', () => {
    const raw = thesisClusterToRaw({ servers: [{ hostname: 'localhost', port: 1034 }] }, UUID, 'shop') as { spec: Record<string, unknown> };
    assert.equal(raw.spec.app, 'shop');
    assert.equal(raw.spec.default, undefined);
    assert.equal(raw.spec.version, '0.0');
    const av = normalizeAppVersion(raw, 'thesis');
    assert.equal(av.spec.transition.mode, 'INSTANT');
  });

  it('GRADUAL maps percentageTransitionPerRequest', () => {
    const raw = thesisClusterToRaw({ servers: [{ hostname: 'a', port: 1 }], upgradeTransition: { mode: 'GRADUAL', percentageTransitionPerRequest: 0.5 } }, UUID);
    assert.equal(normalizeAppVersion(raw, 'thesis').spec.transition.percentagePerRequest, 0.5);
  });

  it('bad input is MOLT_ERR_BAD_REQUEST with a field path', () => {
    badRequest(() => thesisClusterToRaw({ cluster: { servers: [{ hostname: 'a', port: 1 }, { hostname: 'b', port: 70000 }] } }, UUID), 'cluster.servers[1].port');
    badRequest(() => thesisClusterToRaw({ servers: [] }, UUID), 'cluster.servers');
    badRequest(() => thesisClusterToRaw({ version: '1' }, UUID), 'cluster');
    badRequest(() => thesisClusterToRaw('nope', UUID), 'cluster');
    badRequest(() => thesisClusterToRaw({ servers: [{ hostname: 'a', port: 1 }], upgradeTransition: { mode: 'FAST' } }, UUID), 'cluster.upgradeTransition.mode');
    badRequest(() => thesisClusterToRaw({ servers: [{ hostname: 'a', port: 1 }], upgradeTransition: { mode: 'GRADUAL' } }, UUID), 'cluster.upgradeTransition.percentageTransitionPerRequest');
    badRequest(() => thesisClusterToRaw({ servers: [{ hostname: 'a', port: 1 }], upgradeTransition: { mode: 'INSTANT', sessionTimeout: 5 } }, UUID), 'cluster.upgradeTransition.sessionTimeout');
    const e = badRequest(() => thesisClusterToRaw({ servers: [{ hostname: 'a', port: 1 }], upgradeTransiton: {} }, UUID), 'cluster.upgradeTransiton');
    assert.match(e.message, /did you mean upgradeTransition/);
    badRequest(() => thesisClusterToRaw({ servers: [{ hostname: 'a b', port: 1 }], version: '1' }, UUID), 'cluster.servers[0].hostname');
  });

  it('maps thesis containers to the docker runtime', () => {
    const raw = thesisClusterToRaw({
      containers: [{
        image: 'wordpress',
        tag: '3.9.2',
        alwaysPull: true,
        portToProxy: 8080,
        name: 'some-wordpress',
        links: ['some-mysql:mysql'],
        env: ['WORDPRESS_DB_PASSWORD=a=b'],
        volumes: ['/data', '/var/lib/x:/x'],
        portBindings: { '80/tcp': [{ HostIp: '0.0.0.0', HostPort: '8080' }], '9100/tcp': [{ HostIp: '0.0.0.0', HostPort: '19100' }] },
        memory: 268435456,
        cpuShares: 512,
        privileged: false,
        exposedPorts: { '80/tcp': {} },
      }],
      version: '3.9.2',
    }, UUID) as { spec: Record<string, unknown> };
    assert.deepEqual(raw.spec.docker, {
      image: 'wordpress',
      tag: '3.9.2',
      containerPort: 80,
      portBindings: [{ containerPort: 9100, hostPort: 19100, protocol: 'tcp' }],
      name: 'some-wordpress',
      links: ['some-mysql:mysql'],
      env: { WORDPRESS_DB_PASSWORD: 'a=b' },
      volumes: ['/data'],
      binds: ['/var/lib/x:/x'],
      memory: 268435456,
      cpuShares: 512,
      privileged: false,
      checkForNewImages: true,
    });
    const av = normalizeAppVersion(raw, 'thesis');
    assert.equal(av.spec.runtime.kind, 'docker');
  });

  it('rejects container lists molt cannot run', () => {
    badRequest(() => thesisClusterToRaw({ containers: [{ image: 'mysql' }] }, UUID), 'cluster.containers');
    badRequest(() => thesisClusterToRaw({ containers: [{ image: 'mysql' }, { image: 'wp', portToProxy: 80 }] }, UUID), 'cluster.containers[0]');
    badRequest(() => thesisClusterToRaw({ containers: [{ image: 'wp', portToProxy: 80, env: ['NOEQUALS'] }] }, UUID), 'cluster.containers[0].env[0]');
  });
});

describe('appVersionToThesisCluster', () => {
  it('answers the Appendix I GET shape', () => {
    const av = normalizeAppVersion(thesisClusterToRaw(PUT_EXAMPLE, UUID), 'thesis');
    assert.deepEqual(appVersionToThesisCluster(av, UUID), {
      cluster: {
        servers: [{ hostname: '127.0.0.1', port: 1036 }, { hostname: '127.0.0.1', port: 1038 }],
        upgradeTransition: { mode: 'SESSION', sessionTimeout: 60 },
        uuid: UUID,
        version: '1.1',
      },
    });
  });

  it('sessionTimeout only for SESSION, percentage only for GRADUAL; raw resources accepted', () => {
    const gradual = thesisClusterToRaw({ servers: [{ hostname: 'a', port: 1 }], upgradeTransition: { mode: 'GRADUAL', percentageTransitionPerRequest: 2 } }, UUID);
    assert.deepEqual((appVersionToThesisCluster(gradual as never, UUID) as { cluster: { upgradeTransition: unknown } }).cluster.upgradeTransition, { mode: 'GRADUAL', percentageTransitionPerRequest: 2 });
    const instant = normalizeAppVersion(thesisClusterToRaw({ servers: [{ hostname: 'a', port: 1 }] }, UUID), 'thesis');
    assert.deepEqual((appVersionToThesisCluster(instant, UUID) as { cluster: { upgradeTransition: unknown } }).cluster.upgradeTransition, { mode: 'INSTANT' });
  });
});

describe('loadThesisConfigFile', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'molt-thesis-'));
  const write = (name: string, text: string): string => {
    const f = path.join(dir, name);
    fs.writeFileSync(f, text);
    return f;
  };

  it('reads the section 5.5 example, with stable names', async () => {
    const f = write('config.json', JSON.stringify({
      proxy: { port: 1235 },
      configService: { port: 9090 },
      cluster: { servers: [{ hostname: '127.0.0.1', port: 1034 }, { hostname: '127.0.0.1', port: 1035 }], version: '1.0' },
    }, null, 2));
    const a = await loadThesisConfigFile(f);
    assert.equal(a.proxyPort, 1235);
    assert.equal(a.adminPort, 9090);
    assert.equal(a.raws.length, 1);
    const av = normalizeAppVersion(a.raws[0], f);
    assert.equal(av.spec.version, '1.0');
    assert.match(av.metadata.name, /^cluster-[0-9a-f]{8}$/);
    const b = await loadThesisConfigFile(f);
    assert.deepEqual(b.raws, a.raws);
  });

  it('accepts a list of clusters', async () => {
    const f = write('list.json', JSON.stringify({ cluster: [
      { servers: [{ hostname: 'a', port: 1 }], version: '1' },
      { servers: [{ hostname: 'b', port: 2 }], version: '2', upgradeTransition: { mode: 'SESSION', sessionTimeout: 10 } },
    ] }));
    const r = await loadThesisConfigFile(f);
    assert.equal(r.raws.length, 2);
    const names = r.raws.map((x) => normalizeAppVersion(x, f).metadata.name);
    assert.notEqual(names[0], names[1]);
  });

  it('errors name the file, field path, line and column', async () => {
    const f = write('bad.json', '{\n  "proxy": { "port": 1235 },\n  "cluster": {\n    "servers": [\n      { "hostname": "a", "port": "x" }\n    ]\n  }\n}\n');
    await assert.rejects(loadThesisConfigFile(f), (err: unknown) => {
      assert.ok(err instanceof MoltError);
      assert.equal(err.code, 'MOLT_ERR_CONFIG_FILE');
      assert.deepEqual(err.location, { file: f, line: 5, column: 34, path: 'cluster.servers[0].port' });
      return true;
    });
    const g = write('syntax.json', '{\n  "proxy": { "port": 1235 ,\n}\n');
    await assert.rejects(loadThesisConfigFile(g), (err: unknown) => err instanceof MoltError && err.code === 'MOLT_ERR_CONFIG_FILE' && err.location.line !== undefined);
    const h = write('unknown.json', '{ "proxi": { "port": 1 } }');
    await assert.rejects(loadThesisConfigFile(h), (err: unknown) => err instanceof MoltError && err.location.path === 'proxi' && /did you mean proxy/.test(err.message));
  });
});
