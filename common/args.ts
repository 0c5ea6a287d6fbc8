// Command-line flags for every molt command: Node's own util.parseArgs (strict: unknown flags and missing
// values are errors) plus typed values. Every numeric, duration and log-level flag is validated here, and
// every mistake is a MoltError MOLT_ERR_USAGE whose location names the flag and whose message says what was
// expected, e.g. `--drain: expected a duration such as "5s" or "500ms" (a bare number is milliseconds), got "abc"`.

import { parseArgs as nodeParseArgs } from 'node:util';
import { formatDuration, parseDuration } from './duration.js';
import { MoltError } from './errors.js';
import { LOG_LEVELS, type LogLevel } from './logger.js';

export type FlagDef =
  /** Free text (a path, a name, a URL). */
  | { type: 'string'; short?: string; default?: string }
  /** Free text, may be given more than once. */
  | { type: 'strings'; short?: string }
  /** Present or absent; takes no value. */
  | { type: 'boolean'; short?: string }
  /** A whole number in [min, max]. */
  | { type: 'integer'; short?: string; default?: number; min: number; max: number }
  /** A duration as in the YAML ("500ms", "5s", "1m30s"), as milliseconds. `unitless: 'ms'` also accepts a bare
   *  whole number as milliseconds (flags that always took milliseconds); otherwise a unit is required. */
  | { type: 'duration'; short?: string; default?: string; minMs?: number; unitless?: 'ms' }
  /** One of LOG_LEVELS (common/logger.ts). */
  | { type: 'logLevel'; short?: string; default: LogLevel };

type Missing<D> = D extends { default: string | number } ? never : undefined;
export type FlagValue<D extends FlagDef> = D extends { type: 'boolean' }
  ? boolean
  : D extends { type: 'strings' }
    ? string[]
    : D extends { type: 'integer' | 'duration' }
      ? number | Missing<D>
      : D extends { type: 'logLevel' }
        ? LogLevel
        : string | Missing<D>;
export type FlagValues<T extends Record<string, FlagDef>> = { [K in keyof T]: FlagValue<T[K]> };

export interface ParsedCommandLine<T extends Record<string, FlagDef>> {
  values: FlagValues<T>;
  positionals: string[];
  /** -h or --help was given (every command has it). */
  help: boolean;
}

/**
 * Parse `argv` (the words after the command name) against `flags`. `command` is how the user typed the
 * command ("up", "controller --kubernetes"): error messages point to `molt <command> --help`.
 */
export function parseCommandLine<const T extends Record<string, FlagDef>>(argv: readonly string[], flags: T, command: string): ParsedCommandLine<T> {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }> = { help: { type: 'boolean', short: 'h' } };
  for (const [name, d] of Object.entries(flags)) {
    options[name] = { type: d.type === 'boolean' ? 'boolean' : 'string', ...(d.short ? { short: d.short } : {}), ...(d.type === 'strings' ? { multiple: true } : {}) };
  }
  let parsed: { values: Record<string, string | boolean | Array<string | boolean> | undefined>; positionals: string[] };
  try {
    parsed = nodeParseArgs({ args: [...argv], options, strict: true, allowPositionals: true });
  } catch (err) {
    throw usageError(err as Error & { code?: string }, flags, command);
  }
  const values: Record<string, unknown> = {};
  for (const [name, d] of Object.entries(flags)) values[name] = convert(name, d, parsed.values[name]);
  return { values: values as FlagValues<T>, positionals: parsed.positionals, help: parsed.values.help === true };
}

/** What a flag expects, for messages. */
export function expected(d: FlagDef): string {
  switch (d.type) {
    case 'string':
    case 'strings':
      return 'a value';
    case 'boolean':
      return 'no value';
    case 'integer':
      return `a whole number from ${d.min} to ${d.max}`;
    case 'duration':
      return `a duration such as "5s" or "500ms" (units ms, s, m, h${d.unitless === 'ms' ? '; a bare number is milliseconds' : ''})`;
    case 'logLevel':
      return `one of ${LOG_LEVELS.join(', ')}`;
  }
}

function usage(flag: string, message: string): MoltError {
  return new MoltError('MOLT_ERR_USAGE', message, { path: flag });
}

function convert(name: string, d: FlagDef, raw: string | boolean | Array<string | boolean> | undefined): unknown {
  const flag = `--${name}`;
  switch (d.type) {
    case 'boolean':
      return raw === true;
    case 'strings':
      return (raw as string[] | undefined) ?? [];
    case 'string':
      return (raw as string | undefined) ?? d.default;
    case 'integer': {
      if (raw === undefined) return d.default;
      const text = String(raw).trim();
      const n = /^-?\d+$/.test(text) ? Number(text) : NaN;
      if (!Number.isSafeInteger(n) || n < d.min || n > d.max) throw usage(flag, `expected ${expected(d)}, got "${raw}"`);
      return n;
    }
    case 'duration': {
      const text = raw === undefined ? d.default : String(raw).trim();
      if (text === undefined) return undefined;
      let ms: number;
      if (d.unitless === 'ms' && /^\d+$/.test(text)) {
        ms = Number(text);
      } else {
        try {
          ms = parseDuration(text);
        } catch {
          throw usage(flag, `expected ${expected(d)}, got "${text}"`);
        }
      }
      if (!Number.isSafeInteger(ms)) throw usage(flag, `expected ${expected(d)}, got "${text}"`);
      if (d.minMs !== undefined && ms < d.minMs) throw usage(flag, `must be at least ${formatDuration(d.minMs)}, got "${text}"`);
      return ms;
    }
    case 'logLevel': {
      const level = (raw as string | undefined) ?? d.default;
      if (!(LOG_LEVELS as readonly string[]).includes(level)) throw usage(flag, `expected ${expected(d)}, got "${level}"`);
      return level;
    }
  }
}

/** util.parseArgs errors → MoltError MOLT_ERR_USAGE naming the flag. */
function usageError(err: Error & { code?: string }, flags: Record<string, FlagDef>, command: string): Error {
  const see = `(see molt ${command} --help)`;
  const long = /'(?:-\w, )?(--[^' <=]+)/.exec(err.message)?.[1];
  const named = /'(-[^' <=]+)/.exec(err.message)?.[1];
  const flag = long ?? named ?? '';
  const def = long ? flags[long.slice(2)] : undefined;
  switch (err.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return usage(flag, `unknown flag for "molt ${command}" ${see}`);
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      if (/does not take an argument/.test(err.message)) return usage(flag, `takes no value ${see}`);
      const what = def && def.type !== 'string' && def.type !== 'strings' ? `: ${expected(def)}` : '';
      if (/ambiguous/.test(err.message)) return usage(flag, `needs a value${what} (to pass one that starts with "-", write ${flag}=VALUE)`);
      return usage(flag, `needs a value${what}`);
    default:
      return new MoltError('MOLT_ERR_USAGE', `${err.message} ${see}`, {}, { cause: err });
  }
}

/** "HOST:PORT", "[::1]:PORT" or ":PORT" → host and port, with a clear error. */
export function parseHostPort(value: string, flag: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new MoltError('MOLT_ERR_USAGE', `expected HOST:PORT (e.g. 127.0.0.1:8080), got "${value}"`, { path: `--${flag}` });
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port };
}
