import pino, { type Logger } from 'pino';
import { MoltError } from './errors.js';
import { LOG_FORMATS, prettyStderr, resolveLogFormat } from './log-format.js';

/** The one list of log levels (pino's, plus silent): every command's --log-level is checked against it
 *  (common/args.ts, type 'logLevel'), and help texts print it. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Logs to stderr (stdout stays free for command output): JSON with asynchronous writes, or
 *  human-readable lines on a terminal (common/log-format.ts; `format` or MOLT_LOG_FORMAT decide). */
export function createLogger(level: string = 'info', name = 'molt', format?: string): Logger {
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    throw new MoltError('MOLT_ERR_USAGE', `expected one of ${LOG_LEVELS.join(', ')}, got "${level}"`, { path: '--log-level' });
  }
  if (format !== undefined && !(LOG_FORMATS as readonly string[]).includes(format)) {
    throw new MoltError('MOLT_ERR_USAGE', `expected one of ${LOG_FORMATS.join(', ')}, got "${format}"`, { path: '--log-format' });
  }
  const opts = { name, level, base: { pid: process.pid } };
  return resolveLogFormat(format) === 'pretty' ? pino(opts, prettyStderr()) : pino(opts, pino.destination({ fd: 2, sync: false }));
}
