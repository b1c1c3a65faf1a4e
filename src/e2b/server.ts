// The E2B API's HTTP server: one loopback port for both planes. A request carrying
// E2b-Sandbox-Id (the SDK with E2B_SANDBOX_URL set), or a Connect path, is the sandbox plane
// (envd: Connect process/filesystem services, /files, /envs, /health), checked against that
// sandbox's access token; the rest is the control plane (REST), checked against the API key.
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { ConnectRouter } from "@connectrpc/connect";
import { Code, ConnectError } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Handlers } from "../api/index.ts";
import { BangerError, ErrorCode, errorLine } from "../util/errors.ts";
import { boundedHttpServer } from "../util/http-server.ts";
import { caller, handleControl } from "./control.ts";
import type { EnvdDeps, EnvdSandbox } from "./envd/context.ts";
import { envdGate, mountEnvd } from "./envd/mount.ts";
import { HttpError, sendEmpty, sendError, sendJson } from "./http.ts";
import { type ApiKeys, sameSecret } from "./keys.ts";

export interface E2bLogger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
}

export interface E2bServerOptions {
  methods: Partial<Handlers>;
  keys: ApiKeys;
  log: E2bLogger;
}

/**
 * The largest Connect message a client may send (Connect's default is 4 GiB, held whole): a
 * Start's command line and environment (1 MiB, up to 6 times that as JSON escapes) or one
 * input message (4 MiB, base64 in JSON) fit.
 */
const MAX_RPC_MESSAGE_BYTES = 16 * 1024 ** 2;

/** Connect's paths: /<package>.<Service>/<Method>. */
const CONNECT_PATH = /^\/[a-z]+\.[A-Z][A-Za-z]+\/[A-Z][A-Za-z]+$/;

export class E2bServer {
  private readonly server: Server;
  private readonly connect: (req: IncomingMessage, res: ServerResponse) => void;
  readonly deps: EnvdDeps;
  private origin = "";
  /** The Host values requests may carry (`127.0.0.1:PORT`, `localhost:PORT`): another name is a DNS-rebinding page. */
  private hosts = new Set<string>();

  constructor(private readonly opts: E2bServerOptions) {
    this.deps = { methods: opts.methods, sandboxFor: (headers) => this.sandboxFor(headers) };
    this.connect = connectNodeAdapter({
      routes: (router: ConnectRouter) => mountEnvd(router, this.deps),
      requestGate: (ctx) => envdGate(this.deps, ctx),
      readMaxBytes: MAX_RPC_MESSAGE_BYTES,
    });
    this.server = boundedHttpServer((req, res) => void this.handle(req, res));
  }

  get url(): string {
    return this.origin;
  }

  /** Listens; a port in use is one clear error line. */
  async listen(host: string, port: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) =>
        reject(err.code === "EADDRINUSE" ? new BangerError(ErrorCode.InUse, `the E2B API cannot listen on ${host}:${port}: the port is in use`, "choose another: banger config set api.port N") : err);
      this.server.once("error", onError);
      this.server.listen(port, host, () => {
        this.server.off("error", onError);
        resolve();
      });
    });
    const bound = (this.server.address() as { port: number }).port;
    this.origin = `http://${host.includes(":") ? `[${host}]` : host}:${bound}`;
    this.hosts = new Set([`${host}:${bound}`, `localhost:${bound}`]);
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** The sandbox a sandbox-plane request is for: its id header, and its token when it has one. */
  async sandboxFor(headers: Headers): Promise<EnvdSandbox> {
    const id = headers.get("e2b-sandbox-id");
    if (!id) throw new ConnectError("the request names no sandbox (E2b-Sandbox-Id)", Code.NotFound);
    let s: Awaited<ReturnType<NonNullable<Handlers["sandbox.show"]>>>;
    try {
      s = await caller(this.opts.methods, AbortSignal.timeout(30_000))("sandbox.show", { id });
    } catch (err) {
      if (err instanceof BangerError && (err.code === ErrorCode.NotFound || err.code === ErrorCode.InvalidArgument)) throw new ConnectError(`sandbox ${id} not found`, Code.NotFound);
      throw new ConnectError(errorLine(err), Code.Internal);
    }
    if (s.accessToken !== null && !sameSecret(headers.get("x-access-token"), s.accessToken)) throw new ConnectError("missing or wrong access token (X-Access-Token)", Code.Unauthenticated);
    return { id: s.id, vm: s.vm, envVars: s.envVars };
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let url: URL;
    try {
      url = new URL(req.url ?? "/", "http://localhost");
    } catch {
      sendJson(res, 400, { code: 400, message: "bad request URL" });
      return;
    }
    try {
      if (!this.hosts.has((req.headers.host ?? "").toLowerCase())) throw new HttpError(403, "foreign Host header: the E2B API answers 127.0.0.1 and localhost only");
      if (req.headers["e2b-sandbox-id"] !== undefined || CONNECT_PATH.test(url.pathname) || url.pathname === "/files") {
        await this.sandboxPlane(req, res, url);
        return;
      }
      if (url.pathname === "/health" && req.method === "GET") {
        sendJson(res, 200, { status: "ok" });
        return;
      }
      if (!this.opts.keys.check(header(req, "x-api-key"))) throw new HttpError(401, "missing or wrong API key (X-API-KEY): see `banger api env`");
      const abort = new AbortController();
      res.on("close", () => abort.abort());
      if (!(await handleControl(caller(this.opts.methods, abort.signal), req, res, url))) throw new HttpError(404, `no route ${req.method} ${url.pathname}`);
    } catch (err) {
      if (!(err instanceof HttpError) && !(err instanceof BangerError)) this.opts.log.warn("e2b: request failed", { path: url.pathname, error: errorLine(err) });
      sendError(res, err);
    }
  }

  private async sandboxPlane(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    if (CONNECT_PATH.test(url.pathname)) {
      this.connect(req, res);
      return;
    }
    if (url.pathname === "/files" && mountEnvd.files) {
      await mountEnvd.files(this.deps, req, res);
      return;
    }
    const sandbox = await this.sandboxFor(requestHeaders(req)).catch((err: unknown) => {
      throw err instanceof ConnectError ? new HttpError(err.code === Code.Unauthenticated ? 401 : err.code === Code.NotFound ? 404 : 500, err.rawMessage) : err;
    });
    if (url.pathname === "/health" && req.method === "GET") {
      // The SDK's isRunning(): 502 is "not running".
      const s = await caller(this.opts.methods, AbortSignal.timeout(30_000))("sandbox.show", { id: sandbox.id });
      sendEmpty(res, s.vmState === "running" ? 204 : 502);
      return;
    }
    if (url.pathname === "/envs" && req.method === "GET") {
      sendJson(res, 200, sandbox.envVars);
      return;
    }
    throw new HttpError(404, `no route ${req.method} ${url.pathname} in the sandbox plane`);
  }
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** A Node request's headers as fetch Headers (what EnvdDeps.sandboxFor takes). */
export function requestHeaders(req: IncomingMessage): Headers {
  const h = new Headers();
  for (const [k, v] of Object.entries(req.headers)) {
    if (v === undefined) continue;
    for (const one of Array.isArray(v) ? v : [v]) h.append(k, one);
  }
  return h;
}
