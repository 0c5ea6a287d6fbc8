// A small, strict flag parser: unknown flags are usage errors, not silently ignored.

import { MoltError } from './errors.js';

export interface FlagSpec {
  /** Flags that take a value, with their defaults (undefined = no default). */
  values: Record<string, string | undefined>;
  /** Boolean flags. */
  bools?: string[];
  /** Short aliases, e.g. { f: 'file' }. */
  aliases?: Record<string, string>;
  /** Value flags that may be given more than once. */
  repeatable?: string[];
}

export interface ParsedArgs {
  flags: Record<string, string | undefined>;
  multi: Record<string, string[]>;
  bools: Record<string, boolean>;
  positional: string[];
  help: boolean;
}

export function parseArgs(argv: string[], spec: FlagSpec, command: string): ParsedArgs {
  const flags: Record<string, string | undefined> = { ...spec.values };
  const multi: Record<string, string[]> = {};
  const bools: Record<string, boolean> = {};
  for (const b of spec.bools ?? []) bools[b] = false;
  const positional: string[] = [];
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') {
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (arg === '-h' || arg === '--help') {
      help = true;
      continue;
    }
    if (!arg.startsWith('-') || arg === '-') {
      positional.push(arg);
      continue;
    }
    let name = arg.replace(/^--?/, '');
    let value: string | undefined;
    const eq = name.indexOf('=');
    if (eq !== -1) {
      value = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    name = spec.aliases?.[name] ?? name;
    if (spec.bools?.includes(name)) {
      bools[name] = value === undefined ? true : value !== 'false';
      continue;
    }
    if (!(name in spec.values)) {
      throw new MoltError('MOLT_ERR_USAGE', `unknown flag --${name} for "molt ${command}" (see molt ${command} --help)`);
    }
    if (value === undefined) {
      value = argv[++i];
      if (value === undefined) throw new MoltError('MOLT_ERR_USAGE', `flag --${name} needs a value`);
    }
    if (spec.repeatable?.includes(name)) (multi[name] ??= []).push(value);
    flags[name] = value;
  }
  return { flags, multi, bools, positional, help };
}

/** "HOST:PORT", "[::1]:PORT" or ":PORT" → host and port, with a clear error. */
export function parseHostPort(value: string, flag: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new MoltError('MOLT_ERR_USAGE', `--${flag} must be HOST:PORT (e.g. 127.0.0.1:8080), got "${value}"`);
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port };
}
