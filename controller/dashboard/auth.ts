// Dashboard sessions: a login with the dashboard token (the --admin-token when given, otherwise one generated
// at first start and stored 0600 in the state dir) yields a random session id kept in an HttpOnly,
// SameSite=Strict cookie with an expiry. Tokens are compared as fixed-length digests (constant time);
// failed logins are rate-limited per client address.

import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';
import type http from 'node:http';
import path from 'node:path';

export const SESSION_COOKIE = 'molt_session';
export const TOKEN_FILE = 'dashboard-token';
export const DEFAULT_SESSION_TTL_MS = 12 * 60 * 60 * 1000;
/** Failed logins allowed per client address within LOGIN_WINDOW_MS. */
export const LOGIN_MAX_FAILURES = 5;
export const LOGIN_WINDOW_MS = 60_000;
const MAX_SESSIONS = 1000;

/** The dashboard token stored in STATE_DIR/dashboard-token (0600); created with a random value when missing.
 *  `created` tells the caller to show it (once) on the terminal. */
export function loadOrCreateDashboardToken(stateDir: string): { token: string; created: boolean; file: string } {
  const file = path.join(stateDir, TOKEN_FILE);
  try {
    const st = fs.statSync(file);
    // Someone loosened the permissions: tighten them again rather than serve a readable secret.
    if ((st.mode & 0o077) !== 0) fs.chmodSync(file, 0o600);
    const token = fs.readFileSync(file, 'utf8').trim();
    if (token.length >= 16) return { token, created: false, file };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const token = randomBytes(24).toString('base64url');
  fs.mkdirSync(stateDir, { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, token + '\n', { mode: 0o600 });
  fs.chmodSync(tmp, 0o600);
  fs.renameSync(tmp, file);
  return { token, created: true, file };
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

export interface Session {
  /** Short, non-secret fingerprint for logs and the timeline. */
  tag: string;
  expires: number;
  remote: string;
}

export type LoginResult =
  | { ok: true; id: string; session: Session }
  | { ok: false; reason: 'wrong-token' | 'rate-limited' | 'no-token'; retryAfterS?: number };

export class DashboardSessions {
  readonly #tokenDigest: Buffer | undefined;
  readonly ttlMs: number;
  readonly #now: () => number;
  /** sha256(session id) hex -> session: the table never holds the cookie value itself. */
  readonly #sessions = new Map<string, Session>();
  readonly #failures = new Map<string, number[]>();

  constructor(opts: { token?: string; ttlMs?: number; now?: () => number }) {
    this.#tokenDigest = opts.token ? sha256(opts.token) : undefined;
    this.ttlMs = opts.ttlMs ?? DEFAULT_SESSION_TTL_MS;
    this.#now = opts.now ?? Date.now;
  }

  get enabled(): boolean {
    return this.#tokenDigest !== undefined;
  }

  login(token: string, remote: string): LoginResult {
    const now = this.#now();
    const recent = (this.#failures.get(remote) ?? []).filter((t) => now - t < LOGIN_WINDOW_MS);
    if (recent.length >= LOGIN_MAX_FAILURES) {
      this.#failures.set(remote, recent);
      return { ok: false, reason: 'rate-limited', retryAfterS: Math.max(1, Math.ceil((recent[0]! + LOGIN_WINDOW_MS - now) / 1000)) };
    }
    if (!this.#tokenDigest) return { ok: false, reason: 'no-token' };
    if (!timingSafeEqual(sha256(token), this.#tokenDigest)) {
      recent.push(now);
      this.#failures.set(remote, recent);
      if (this.#failures.size > 10_000) this.#failures.delete(this.#failures.keys().next().value!);
      return { ok: false, reason: 'wrong-token' };
    }
    this.#failures.delete(remote);
    this.#sweep(now);
    const id = randomBytes(32).toString('base64url');
    const key = sha256(id).toString('hex');
    const session: Session = { tag: key.slice(0, 8), expires: now + this.ttlMs, remote };
    this.#sessions.set(key, session);
    return { ok: true, id, session };
  }

  /** The live session named by the request's cookie, if any. */
  fromRequest(req: http.IncomingMessage): Session | undefined {
    const id = sessionCookie(req);
    if (!id) return undefined;
    const key = sha256(id).toString('hex');
    const s = this.#sessions.get(key);
    if (!s) return undefined;
    if (s.expires <= this.#now()) {
      this.#sessions.delete(key);
      return undefined;
    }
    return s;
  }

  logout(req: http.IncomingMessage): Session | undefined {
    const id = sessionCookie(req);
    if (!id) return undefined;
    const key = sha256(id).toString('hex');
    const s = this.#sessions.get(key);
    this.#sessions.delete(key);
    return s;
  }

  cookieFor(id: string): string {
    return `${SESSION_COOKIE}=${id}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${Math.floor(this.ttlMs / 1000)}`;
  }

  clearCookie(): string {
    return `${SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0`;
  }

  #sweep(now: number): void {
    for (const [k, s] of this.#sessions) if (s.expires <= now) this.#sessions.delete(k);
    // Bound memory: drop the oldest sessions beyond the cap.
    while (this.#sessions.size >= MAX_SESSIONS) this.#sessions.delete(this.#sessions.keys().next().value!);
  }
}

/** The dashboard cookie's value, or undefined. */
export function sessionCookie(req: http.IncomingMessage): string | undefined {
  const header = req.headers.cookie;
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const i = part.indexOf('=');
    if (i < 0) continue;
    if (part.slice(0, i).trim() === SESSION_COOKIE) return part.slice(i + 1).trim();
  }
  return undefined;
}

/** True when the request came from a browser: it carries Origin, Sec-Fetch-Site or our cookie. */
export function isBrowserRequest(req: http.IncomingMessage): boolean {
  return req.headers.origin !== undefined || req.headers['sec-fetch-site'] !== undefined || sessionCookie(req) !== undefined;
}
