// The real routing state (sidecar/routing.ts, pure and in-process) with a one-version table, for
// data-path tests that only need requests to reach one backend. Tests that must inject a decision
// the real class does not produce, or read each recorded call, use FakeRouting (fake-routing.ts).

import { createRoutingState, type Routing } from '../../sidecar/routing.js';
import { DEFAULT_FAILURE_POLICY, DEFAULT_TRANSITION, type Endpoint } from '../../common/protocol.js';

/** INSTANT routing of every host to one version `v1` at `endpoints` (default failure policy). */
export function routingTo(...endpoints: Endpoint[]): Routing {
  const r = createRoutingState();
  r.apply({
    revision: 1,
    apps: [{
      name: 'app', hosts: [], default: true, versionCookie: 'molt-version', bucketCookie: 'molt-bucket',
      versions: [{
        id: 'v1', version: '1.0', epoch: 1, state: 'serving', transition: DEFAULT_TRANSITION, failurePolicy: DEFAULT_FAILURE_POLICY,
        endpoints, servingSince: 0, promoted: false,
      }],
    }],
  });
  return r;
}
