// The dashboard's HTTP server: login, the built page, the JSON API, server-sent events
// and the terminal WebSocket, every request checked by Auth first.
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { networkInterfaces } from "node:os";
import type { Duplex } from "node:stream";
import { WebSocketServer } from "ws";
import type { TerminalMethod } from "../api/index.ts";
import { BangerError, ErrorCode, errorLine, httpStatusOf, invalidArgument } from "../util/errors.ts";
import { boundedHttpServer } from "../util/http-server.ts";
import { isLoopbackHost } from "../util/loopback.ts";
import { buildRoutes, type Route, type RouteResult } from "./api.ts";
import { loadAssets, type Asset } from "./assets.ts";
import { Auth, type Verdict } from "./auth.ts";
import { type DaemonTable, errorBody } from "./invoke.ts";
import { LiveVms } from "./live.ts";
import { Tasks } from "./tasks.ts";
import { bridgeTerminal, LOGIN_SHELL, terminalSize } from "./terminal.ts";
import openapi from "./openapi.json" with { type: "json" };

export interface WebLogger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

/** Request bodies are small JSON objects. */
const MAX_BODY_BYTES = 64 * 1024;
/** Terminal keystroke frames; pastes larger than this arrive in several. */
const MAX_WS_FRAME_BYTES = 256 * 1024;
/** SSE comment lines keep idle streams (and proxies) from timing out. */
const SSE_KEEPALIVE_MS = 15_000;

const SECURITY_HEADERS: Record<string, string> = {
  "Content-Security-Policy": "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  "X-Content-Type-Options": "nosniff",
  "X-Frame-Options": "DENY",
  "Referrer-Policy": "no-referrer",
  "Cache-Control": "no-store",
};

/** The `host:port` values a browser may put in Host/Origin for this server. */
function allowedHosts(host: string, port: number): Set<string> {
  const names = new Set<string>();
  const add = (h: string) => names.add(`${h.includes(":") ? `[${h}]` : h}:${port}`.toLowerCase());
  if (isLoopbackHost(host)) ["127.0.0.1", "localhost", "::1"].forEach(add);
  else if (host === "0.0.0.0" || host === "::") {
    ["127.0.0.1", "localhost", "::1"].forEach(add);
    for (const addrs of Object.values(networkInterfaces())) for (const a of addrs ?? []) add(a.address);
  } else add(host);
  return names;
}

export class WebServer {
  private readonly server: Server;
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: MAX_WS_FRAME_BYTES });
  private readonly live: LiveVms;
  private readonly tasks: Tasks;
  private readonly routes: Route[];
  private readonly assets: Map<string, Asset>;
  private auth: Auth | undefined;
  private origin = "";

  constructor(
    private readonly methods: DaemonTable,
    private readonly log: WebLogger,
  ) {
    this.live = new LiveVms(methods, (err) => log.warn("web: live vm list failed", { error: errorLine(err) }));
    this.tasks = new Tasks(methods);
    this.routes = buildRoutes(methods, this.live, this.tasks, openapi);
    this.assets = loadAssets();
    this.server = boundedHttpServer((req, res) => void this.handle(req, res));
    this.server.on("upgrade", (req, socket, head) => this.upgrade(req, socket, head));
  }

  get url(): string {
    return this.origin;
  }

  get token(): string {
    return this.requireAuth().token;
  }

  /** A login link that works once, for a few minutes. */
  loginUrl(): string {
    return `${this.origin}/login?code=${this.requireAuth().mintLoginCode()}`;
  }

  async listen(host: string, port: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, host, () => {
        this.server.off("error", reject);
        resolve();
      });
    });
    const bound = (this.server.address() as { port: number }).port;
    const urlHost = host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host.includes(":") ? `[${host}]` : host;
    this.origin = `http://${urlHost}:${bound}`;
    // The cookie keeps its old name (a browser login, auth.ts): renaming it would sign every browser out.
    this.auth = new Auth(`banger_session_${bound}`, allowedHosts(host, bound));
  }

  async close(): Promise<void> {
    this.live.close();
    this.tasks.abortAll();
    for (const ws of this.wss.clients) ws.terminate();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private requireAuth(): Auth {
    if (!this.auth) throw new BangerError(ErrorCode.Unavailable, "the dashboard is not listening yet");
    return this.auth;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
    const url = new URL(req.url ?? "/", "http://dashboard.invalid");
    const auth = this.requireAuth();
    if (url.pathname === "/login" && req.method === "GET") return this.login(auth, url, req, res);
    const verdict = auth.check(req);
    if (!verdict.ok) return this.refuse(res, verdict, url.pathname.startsWith("/api/"));
    // The browser login's CSRF token; the path keeps its published name (openapi.json, app/api.ts).
    if (url.pathname === "/api/session") {
      const csrf = verdict.principal.kind === "login" ? verdict.principal.login.csrf : null;
      return sendJson(res, 200, { csrf, url: this.origin });
    }
    if (!url.pathname.startsWith("/api/")) return this.serveAsset(req, res, url.pathname);
    await this.serveApi(req, res, url);
  }

  private login(auth: Auth, url: URL, req: IncomingMessage, res: ServerResponse): void {
    if (!auth.hostAllowed(req)) return sendHtml(res, 403, "Request refused.");
    const login = auth.redeemLoginCode(url.searchParams.get("code") ?? "");
    if (!login) return sendHtml(res, 401, "This login link is used or expired. Run <code>banger web</code> for a new one.");
    res.setHeader("Set-Cookie", auth.loginCookie(login));
    res.writeHead(303, { Location: "/" }).end();
  }

  private refuse(res: ServerResponse, verdict: Extract<Verdict, { ok: false }>, api: boolean): void {
    if (api) return sendJson(res, verdict.status, errorBody(new BangerError(ErrorCode.InvalidRequest, verdict.message)));
    sendHtml(res, verdict.status, verdict.status === 401 ? "Not signed in. Run <code>banger web</code> and open the link it prints." : "Request refused.");
  }

  private serveAsset(req: IncomingMessage, res: ServerResponse, pathname: string): void {
    if (req.method !== "GET" && req.method !== "HEAD") return sendJson(res, 405, errorBody(new BangerError(ErrorCode.InvalidRequest, "method not allowed")));
    const asset = this.assets.get(pathname === "/" ? "/index.html" : pathname);
    if (!asset) {
      if (this.assets.size === 0) return sendHtml(res, 503, "The dashboard's page was not built: run <code>npm run build</code>.");
      return sendHtml(res, 404, "Not found.");
    }
    res.writeHead(200, { "Content-Type": asset.type, "Content-Length": asset.body.length });
    res.end(req.method === "HEAD" ? undefined : asset.body);
  }

  private async serveApi(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const abort = new AbortController();
    res.on("close", () => abort.abort());
    try {
      const found = this.match(req.method ?? "GET", url.pathname);
      if (!found) return sendJson(res, 404, errorBody(new BangerError(ErrorCode.NotFound, `no API route ${req.method} ${url.pathname}`)));
      const body = req.method === "GET" ? {} : await readJsonBody(req);
      const result = await found.route.run({ params: found.params, query: url.searchParams, body, signal: abort.signal });
      this.answer(res, result);
    } catch (err) {
      if (httpStatusOf(err) === 500) this.log.error("web: request failed", { path: url.pathname, error: String((err as Error)?.stack ?? err) });
      if (!res.headersSent) sendJson(res, httpStatusOf(err), errorBody(err));
      else res.end();
    }
  }

  private match(method: string, pathname: string): { route: Route; params: Record<string, string> } | undefined {
    for (const route of this.routes) {
      const m = route.method === method ? route.pattern.exec(pathname) : null;
      if (m) return { route, params: decodeParams(m.groups ?? {}) };
    }
    return undefined;
  }

  private answer(res: ServerResponse, result: RouteResult): void {
    if ("json" in result) return sendJson(res, result.status ?? 200, result.json);
    res.writeHead(200, { "Content-Type": "text/event-stream", "X-Accel-Buffering": "no" });
    res.write(": banger\n\n");
    const keepalive = setInterval(() => res.write(": keepalive\n\n"), SSE_KEEPALIVE_MS);
    const stop = result.sse(
      (event, data) => void res.write(`event: ${event}\ndata: ${data.replace(/\n/g, "\ndata: ")}\n\n`),
      () => res.end(),
    );
    res.on("close", () => {
      clearInterval(keepalive);
      stop();
    });
  }

  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const fail = (status: number, text: string) => {
      socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    };
    const auth = this.auth;
    if (!auth) return fail(503, "Service Unavailable");
    // Browsers cannot add headers to a WebSocket: a browser login must show its own Origin instead.
    const verdict = auth.check(req, { mutating: false });
    if (!verdict.ok) return fail(verdict.status, verdict.status === 401 ? "Unauthorized" : "Forbidden");
    if (verdict.principal.kind === "login" && req.headers.origin === undefined) return fail(403, "Forbidden");
    const url = new URL(req.url ?? "/", "http://dashboard.invalid");
    const target = terminalTarget(url);
    if (!target) return fail(404, "Not Found");
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      this.log.info("web: terminal opened", { method: target.method, vm: target.params.name ?? target.params.vm });
      bridgeTerminal(ws, this.methods, target.method, target.params, (err) => this.log.warn("web: terminal failed", { error: errorLine(err) }));
    });
  }
}

/** Which streaming call a terminal URL opens: a login shell, or attaching to a session. */
function terminalTarget(url: URL): { method: TerminalMethod; params: Record<string, unknown> } | undefined {
  const size = terminalSize(url.searchParams.get("rows"), url.searchParams.get("cols"));
  const shell = /^\/api\/vms\/([^/]+)\/terminal$/.exec(url.pathname);
  if (shell) {
    return { method: "vm.exec", params: { name: decodeURIComponent(shell[1]!), argv: LOGIN_SHELL, tty: size, env: { TERM: "xterm-256color" }, stdin: true } };
  }
  const attach = /^\/api\/vms\/([^/]+)\/sessions\/([^/]+)\/attach$/.exec(url.pathname);
  if (attach) return { method: "session.attach", params: { vm: decodeURIComponent(attach[1]!), name: decodeURIComponent(attach[2]!) } };
  return undefined;
}

function decodeParams(groups: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(groups)) {
    try {
      out[k] = decodeURIComponent(v);
    } catch {
      throw invalidArgument(`bad URL segment ${JSON.stringify(v)}`);
    }
  }
  return out;
}

async function readJsonBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw invalidArgument(`request body over ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return {};
  // Only JSON: a cross-site HTML form cannot send it without a CORS preflight we never answer.
  if (!/^application\/json\b/.test(req.headers["content-type"] ?? "")) throw invalidArgument("send the body as application/json");
  let body: unknown;
  try {
    body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch {
    throw invalidArgument("the request body is not valid JSON");
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw invalidArgument("the request body must be a JSON object");
  return body as Record<string, unknown>;
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = Buffer.from(JSON.stringify(value ?? null));
  res.writeHead(status, { "Content-Type": "application/json; charset=utf-8", "Content-Length": body.length }).end(body);
}

function sendHtml(res: ServerResponse, status: number, message: string): void {
  const body = Buffer.from(`<!doctype html><meta charset="utf-8"><title>banger</title><p style="font-family:sans-serif">${message}</p>\n`);
  res.writeHead(status, { "Content-Type": "text/html; charset=utf-8", "Content-Length": body.length }).end(body);
}
