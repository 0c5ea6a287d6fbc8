// Semver-aware version ordering, shared by the sidecar (routing) and the controller (table order).
//
// compareVersions(a, b) > 0 when a is newer. Rules:
//  - an optional leading "v"/"V" is ignored; "+build" metadata is ignored;
//  - the release part is split on "."; numeric parts compare numerically (1.10 > 1.9), a missing
//    part counts as 0 (1.9 == 1.9.0), a non-numeric part compares as a string;
//  - a pre-release ("-rc.1") is older than the same release without one (1.9.0 > 1.9.0-rc.1);
//    pre-release identifiers compare like semver: numeric < alphanumeric, numeric numerically.
// The thesis sorted version strings lexically ("1.10" < "1.9"); that is the bug this replaces.

const DIGITS = /^[0-9]+$/;

function compareNumeric(a: string, b: string): number {
  // Arbitrary length without precision loss: strip leading zeros, then length, then lexical.
  let i = 0;
  while (i < a.length - 1 && a.charCodeAt(i) === 48) i++;
  let j = 0;
  while (j < b.length - 1 && b.charCodeAt(j) === 48) j++;
  const x = a.slice(i);
  const y = b.slice(j);
  if (x.length !== y.length) return x.length - y.length;
  return x < y ? -1 : x > y ? 1 : 0;
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function split(v: string): { release: string[]; pre: string[] | null } {
  let s = v.trim();
  if (s.length > 0 && (s[0] === 'v' || s[0] === 'V')) s = s.slice(1);
  const plus = s.indexOf('+');
  if (plus !== -1) s = s.slice(0, plus);
  const dash = s.indexOf('-');
  const release = (dash === -1 ? s : s.slice(0, dash)).split('.');
  const pre = dash === -1 ? null : s.slice(dash + 1).split('.');
  return { release, pre };
}

function compareReleasePart(a: string, b: string): number {
  const an = DIGITS.test(a);
  const bn = DIGITS.test(b);
  if (an && bn) return compareNumeric(a, b);
  return compareStrings(a, b);
}

function comparePrePart(a: string, b: string): number {
  const an = DIGITS.test(a);
  const bn = DIGITS.test(b);
  if (an && bn) return compareNumeric(a, b);
  if (an) return -1; // numeric identifiers are older than alphanumeric ones (semver 11.4.3)
  if (bn) return 1;
  return compareStrings(a, b);
}

export function compareVersions(a: string, b: string): number {
  if (a === b) return 0;
  const x = split(a);
  const y = split(b);
  const n = Math.max(x.release.length, y.release.length);
  for (let i = 0; i < n; i++) {
    const c = compareReleasePart(x.release[i] ?? '0', y.release[i] ?? '0');
    if (c !== 0) return c > 0 ? 1 : -1;
  }
  if (x.pre === null && y.pre === null) return 0;
  if (x.pre === null) return 1;
  if (y.pre === null) return -1;
  const m = Math.max(x.pre.length, y.pre.length);
  for (let i = 0; i < m; i++) {
    if (i >= x.pre.length) return -1; // fewer identifiers = older (1.0.0-rc < 1.0.0-rc.1)
    if (i >= y.pre.length) return 1;
    const c = comparePrePart(x.pre[i], y.pre[i]);
    if (c !== 0) return c > 0 ? 1 : -1;
  }
  return 0;
}

/** Sort newest first (stable tie-break on `key`), in place. */
export function sortNewestFirst<T>(list: T[], version: (t: T) => string, key: (t: T) => string): T[] {
  return list.sort((p, q) => compareVersions(version(q), version(p)) || compareStrings(key(p), key(q)));
}
