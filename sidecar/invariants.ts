// Invariant checks for the data path, undici style: `if (DEBUG_ASSERTS) assert(...)`.
//
// On under `node --test` (the runner sets NODE_TEST_CONTEXT in every test process, and sidecars
// the tests spawn inherit it), with MOLT_DEBUG_ASSERTS=1, or with NODE_ENV=development|test; off
// otherwise (production, benchmarks): DEBUG_ASSERTS is a module-level constant, so the branch
// costs nothing on the hot path once V8 has compiled it. MOLT_DEBUG_ASSERTS=0 turns them off
// under the test runner too.

import assert from 'node:assert/strict';

const env = process.env;
export const DEBUG_ASSERTS: boolean = env.MOLT_DEBUG_ASSERTS === '1' ||
  (env.MOLT_DEBUG_ASSERTS !== '0' && (env.NODE_TEST_CONTEXT !== undefined || env.NODE_ENV === 'development' || env.NODE_ENV === 'test'));

export { assert };

/** The end of an exhaustive `switch` over a literal union: a compile error if a case is missing. */
export function unreachable(x: never): never {
  throw new Error('unreachable: ' + String(x));
}
