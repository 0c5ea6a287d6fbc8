import pino, { type Logger } from 'pino';
import { MoltError } from './errors.js';

/** The one list of log levels (pino's, plus silent): every command's --log-level is checked against it
 *  (common/args.ts, type 'logLevel'), and help texts print it. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** JSON logs to stderr (stdout stays free for command output), asynchronous writes. */
export function createLogger(level: string = 'info', name = 'molt'): Logger {
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    throw new MoltError('MOLT_ERR_USAGE', `expected one of ${LOG_LEVELS.join(', ')}, got "${level}"`, { path: '--log-level' });
  }
  return pino({ name, level, base: { pid: process.pid } }, pino.destination({ fd: 2, sync: false }));
}
