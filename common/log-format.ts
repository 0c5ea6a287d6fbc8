// Human-readable log lines for a terminal: pino's JSON lines turned into
//   12:03:04.567 INFO  version rolled back  app=shop version=2.0.0 reason=FailurePolicy
// with the level coloured. Used when stderr is a TTY (unless --log-format json or
// MOLT_LOG_FORMAT=json); JSON stays the default everywhere else, for log shippers.

export type LogFormat = 'json' | 'pretty';
export const LOG_FORMATS: readonly LogFormat[] = ['json', 'pretty'];

const LEVELS: Record<number, [string, string]> = {
  10: ['TRACE', '\x1b[90m'],
  20: ['DEBUG', '\x1b[36m'],
  30: ['INFO ', '\x1b[32m'],
  40: ['WARN ', '\x1b[33m'],
  50: ['ERROR', '\x1b[31m'],
  60: ['FATAL', '\x1b[41m\x1b[97m'],
};
const RESET = '\x1b[0m';
const DIM = '\x1b[2m';
/** Fields every line has, or that say nothing to a person reading a terminal. */
const HIDDEN = new Set(['level', 'time', 'msg', 'pid', 'hostname', 'name', 'v']);

function value(v: unknown): string {
  if (typeof v === 'string') return /[\s"=]/.test(v) || v === '' ? JSON.stringify(v) : v;
  if (v !== null && typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

/** One pino JSON line as one human line (newline included). Lines that are not JSON pass unchanged. */
export function prettyLine(line: string, color: boolean): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line.endsWith('\n') ? line : line + '\n';
  }
  if (o === null || typeof o !== 'object') return line.endsWith('\n') ? line : line + '\n';
  const t = typeof o.time === 'number' ? new Date(o.time) : new Date();
  const time = `${String(t.getHours()).padStart(2, '0')}:${String(t.getMinutes()).padStart(2, '0')}:${String(t.getSeconds()).padStart(2, '0')}.${String(t.getMilliseconds()).padStart(3, '0')}`;
  const [label, code] = LEVELS[o.level as number] ?? [String(o.level).toUpperCase().padEnd(5), ''];
  const fields: string[] = [];
  let err = '';
  for (const [k, v] of Object.entries(o)) {
    if (HIDDEN.has(k) || v === undefined) continue;
    if (k === 'err' && v && typeof v === 'object') {
      const e = v as { message?: string; stack?: string };
      err = `\n    ${(e.stack ?? e.message ?? JSON.stringify(v)).split('\n').join('\n    ')}`;
      continue;
    }
    fields.push(`${k}=${value(v)}`);
  }
  const msg = typeof o.msg === 'string' ? o.msg : '';
  const lvl = color && code ? `${code}${label}${RESET}` : label;
  const rest = fields.length ? `  ${color ? DIM : ''}${fields.join(' ')}${color ? RESET : ''}` : '';
  return `${color ? DIM : ''}${time}${color ? RESET : ''} ${lvl} ${msg}${rest}${err}\n`;
}

/** Which format: an explicit choice, else MOLT_LOG_FORMAT, else pretty on a terminal. */
export function resolveLogFormat(explicit?: string): LogFormat {
  const f = explicit ?? process.env.MOLT_LOG_FORMAT;
  if (f === 'json' || f === 'pretty') return f;
  return process.stderr.isTTY ? 'pretty' : 'json';
}

/** A pino destination that writes pretty lines to stderr. */
export function prettyStderr(color = process.stderr.isTTY === true && !process.env.NO_COLOR): { write(line: string): void } {
  return { write: (line: string) => void process.stderr.write(prettyLine(line, color)) };
}
