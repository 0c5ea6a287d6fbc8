// Durations ("500ms", "60s", "5m", "1h30m", or a number of seconds) and byte quantities
// (a number of bytes, or "512Ki", "256Mi", "1Gi", "1M" …). Both throw MoltError
// MOLT_ERR_VALIDATION without a location: the caller knows the field and adds it.

import { MoltError } from './errors.js';

const DURATION_UNITS_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const DURATION_PART = /(\d+(?:\.\d+)?)(ms|s|m|h)/y;
/** Also used by the CRD schema (as a `pattern`), so the API server rejects what we would. */
export const DURATION_PATTERN = '^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$';

const QUANTITY_UNITS: Record<string, number> = {
  '': 1,
  Ki: 1024,
  Mi: 1024 ** 2,
  Gi: 1024 ** 3,
  Ti: 1024 ** 4,
  k: 1000,
  M: 1000 ** 2,
  G: 1000 ** 3,
  T: 1000 ** 4,
};
const QUANTITY = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/;
export const QUANTITY_PATTERN = '^[0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$';

const DURATION_EXAMPLES = 'e.g. "500ms", "60s", "5m", "1h30m", or a number of seconds';

function invalid(message: string): MoltError {
  return new MoltError('MOLT_ERR_VALIDATION', message);
}

/** Milliseconds (rounded to a whole millisecond). A bare number is seconds. */
export function parseDuration(input: unknown): number {
  if (typeof input === 'number') {
    if (!Number.isFinite(input) || input < 0) throw invalid(`expected a non-negative duration, got ${input}`);
    return Math.round(input * 1000);
  }
  if (typeof input !== 'string') throw invalid(`expected a duration (${DURATION_EXAMPLES}), got ${describe(input)}`);
  const text = input.trim();
  if (text === '') throw invalid(`expected a duration (${DURATION_EXAMPLES}), got an empty string`);
  if (/^\d+(\.\d+)?$/.test(text)) {
    throw invalid(`duration "${input}" has no unit; write "${text}s" (or an unquoted number of seconds)`);
  }
  if (text.startsWith('-')) throw invalid(`duration "${input}" must not be negative`);
  let ms = 0;
  DURATION_PART.lastIndex = 0;
  while (DURATION_PART.lastIndex < text.length) {
    const at = DURATION_PART.lastIndex;
    const m = DURATION_PART.exec(text);
    if (!m) {
      const rest = text.slice(at);
      const hint = /^\d+(\.\d+)?\s*(sec|second|seconds|min|mins|minute|minutes|hr|hour|hours|d|day|days)$/i.test(rest)
        ? '; units are ms, s, m and h'
        : '';
      throw invalid(`invalid duration "${input}": expected ${DURATION_EXAMPLES}${hint}`);
    }
    ms += Number(m[1]) * DURATION_UNITS_MS[m[2]!]!;
  }
  return Math.round(ms);
}

/** Whole bytes. A bare number is bytes; Ki/Mi/Gi/Ti are binary, k/M/G/T decimal. */
export function parseQuantity(input: unknown): number {
  if (typeof input === 'number') {
    if (!Number.isSafeInteger(input) || input < 0) throw invalid(`expected a whole, non-negative number of bytes, got ${input}`);
    return input;
  }
  if (typeof input !== 'string') throw invalid(`expected a byte quantity (e.g. 1048576, "512Ki", "256Mi", "1Gi"), got ${describe(input)}`);
  const text = input.trim();
  const m = QUANTITY.exec(text);
  if (!m) {
    const lower = /^(\d+(?:\.\d+)?)\s*([kmgt])i?b?$/i.exec(text);
    const hint = lower ? `; did you mean "${lower[1]}${lower[2]!.toUpperCase()}i"?` : '';
    throw invalid(`invalid byte quantity "${input}": expected bytes or a quantity like "512Ki", "256Mi", "1Gi"${hint}`);
  }
  const bytes = Number(m[1]) * QUANTITY_UNITS[m[2] ?? '']!;
  if (!Number.isSafeInteger(bytes)) throw invalid(`byte quantity "${input}" is not a whole number of bytes`);
  return bytes;
}

/** "1h30m", "500ms", "0s": the shortest form parseDuration reads back to the same value. */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  let rest = Math.round(ms);
  let out = '';
  for (const [unit, size] of [['h', 3_600_000], ['m', 60_000], ['s', 1000], ['ms', 1]] as const) {
    const n = Math.floor(rest / size);
    if (n > 0) {
      out += `${n}${unit}`;
      rest -= n * size;
    }
  }
  return out;
}

export function describe(value: unknown): string {
  if (value === null || value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return `the string ${JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value)}`;
  return `the ${typeof value} ${String(value)}`;
}
