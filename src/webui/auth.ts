// Who may talk to the dashboard, and from where.
//
// Two ways in: the API token (`Authorization: Bearer <token>`, for scripts) and a browser
// login: a cookie got by trading a one-time login code from `banger web` at /login. The
// cookie is HttpOnly and SameSite=Strict; on top of that every mutating request made with
// the cookie must carry the login's CSRF token in `X-Banger-CSRF`, and any request whose
// Origin is not this server is refused. The Host header must name this server too, so a
// DNS-rebinding page cannot reach it under another name.
//
// "login" here, not "session": banger's sessions are detached guest processes (session.*
// methods), and the agent's connection is a third thing. The wire names a browser already
// holds stay as they were: the cookie `banger_session_<port>` (server.ts) and GET /api/session.
import { randomBytes, timingSafeEqual } from "node:crypto";
import type { IncomingMessage } from "node:http";

export const CSRF_HEADER = "x-banger-csrf";
/** A login code is good once, for this long. */
const LOGIN_CODE_TTL_MS = 5 * 60_000;
/** A browser login ends after this long without a request. */
const LOGIN_IDLE_MS = 12 * 60 * 60_000;
/** Bounds on what unauthenticated callers can make the server remember. */
const MAX_LOGIN_CODES = 32;
const MAX_LOGINS = 64;

export interface BrowserLogin {
  id: string;
  csrf: string;
  lastSeen: number;
}

/** How a request proved who it is: the API token, a browser login (its cookie), or not at all. */
export type Principal = { kind: "token" } | { kind: "login"; login: BrowserLogin } | { kind: "none" };

export type Verdict = { ok: true; principal: Principal } | { ok: false; status: 401 | 403; message: string };

const MUTATING = new Set(["POST", "PUT", "PATCH", "DELETE"]);

export const randomToken = (bytes = 32): string => randomBytes(bytes).toString("base64url");

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export class Auth {
  readonly token = randomToken();
  private readonly loginCodes = new Map<string, number>();
  private readonly logins = new Map<string, BrowserLogin>();

  /**
   * @param cookieName  per port: browsers share cookies across ports of one host.
   * @param hosts       the `host:port` values this server answers to.
   */
  constructor(
    readonly cookieName: string,
    private readonly hosts: ReadonlySet<string>,
  ) {}

  /** A fresh one-time login code (for `banger web`). */
  mintLoginCode(now = Date.now()): string {
    this.prune(now);
    while (this.loginCodes.size >= MAX_LOGIN_CODES) this.loginCodes.delete(this.loginCodes.keys().next().value!);
    const code = randomToken();
    this.loginCodes.set(code, now + LOGIN_CODE_TTL_MS);
    return code;
  }

  /** Trades a login code for a new browser login; undefined when the code is unknown, used or expired. */
  redeemLoginCode(code: string, now = Date.now()): BrowserLogin | undefined {
    const expires = this.loginCodes.get(code);
    this.loginCodes.delete(code);
    if (expires === undefined || expires < now) return undefined;
    this.prune(now);
    while (this.logins.size >= MAX_LOGINS) this.logins.delete(this.logins.keys().next().value!);
    const login = { id: randomToken(), csrf: randomToken(), lastSeen: now };
    this.logins.set(login.id, login);
    return login;
  }

  loginCookie(login: BrowserLogin): string {
    return `${this.cookieName}=${login.id}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${LOGIN_IDLE_MS / 1000}`;
  }

  /** Checks Host, Origin, credentials and (for browser logins) the CSRF header, in that order. */
  check(req: IncomingMessage, opts: { mutating?: boolean } = {}, now = Date.now()): Verdict {
    if (!this.hostAllowed(req)) return { ok: false, status: 403, message: "unexpected Host header" };
    const mutating = opts.mutating ?? MUTATING.has(req.method ?? "GET");
    const origin = req.headers.origin;
    if (origin !== undefined && !this.isOwnOrigin(origin)) return { ok: false, status: 403, message: "cross-origin request refused" };
    if (mutating && origin === undefined && isCrossSiteFetch(req)) return { ok: false, status: 403, message: "cross-site request refused" };
    const principal = this.identify(req, now);
    if (principal.kind === "none") return { ok: false, status: 401, message: "not signed in: run `banger web` for a login link, or send the API token" };
    if (mutating && principal.kind === "login") {
      const sent = req.headers[CSRF_HEADER];
      if (typeof sent !== "string" || !sameSecret(sent, principal.login.csrf)) return { ok: false, status: 403, message: "missing or wrong CSRF token" };
    }
    return { ok: true, principal };
  }

  /** The Host header names this server (not a rebound DNS name). */
  hostAllowed(req: IncomingMessage): boolean {
    return this.hosts.has((req.headers.host ?? "").toLowerCase());
  }

  private identify(req: IncomingMessage, now: number): Principal {
    const bearer = /^Bearer (\S+)$/.exec(req.headers.authorization ?? "")?.[1];
    if (bearer !== undefined) return sameSecret(bearer, this.token) ? { kind: "token" } : { kind: "none" };
    const id = readCookie(req.headers.cookie, this.cookieName);
    const login = id === undefined ? undefined : this.logins.get(id);
    if (!login || now - login.lastSeen > LOGIN_IDLE_MS) return { kind: "none" };
    login.lastSeen = now;
    return { kind: "login", login };
  }

  private isOwnOrigin(origin: string): boolean {
    const m = /^http:\/\/([^/]+)$/.exec(origin.toLowerCase());
    return m !== null && this.hosts.has(m[1]!);
  }

  private prune(now: number): void {
    for (const [code, expires] of this.loginCodes) if (expires < now) this.loginCodes.delete(code);
    for (const [id, l] of this.logins) if (now - l.lastSeen > LOGIN_IDLE_MS) this.logins.delete(id);
  }
}

/** Browsers that send no Origin still say where a request came from in Sec-Fetch-Site. */
function isCrossSiteFetch(req: IncomingMessage): boolean {
  const site = req.headers["sec-fetch-site"];
  return site === "cross-site" || site === "same-site";
}

export function readCookie(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? "").split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}
