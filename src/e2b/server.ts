// The E2B-compatible API's HTTP server: one loopback port for both planes. Sandbox-plane
// requests (the SDK in E2B_SANDBOX_URL mode: Connect process/filesystem calls, /files, /envs)
// carry E2b-Sandbox-Id; the rest is the control plane (REST, X-API-KEY).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Handlers } from "../api/index.ts";
import { BangerError, ErrorCode } from "../util/errors.ts";

export interface E2bLogger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
}

export interface E2bServerOptions {
  methods: Partial<Handlers>;
  log: E2bLogger;
}

export class E2bServer {
  private readonly server: Server;
  private origin = "";

  constructor(readonly opts: E2bServerOptions) {
    this.server = createServer((req, res) => void this.handle(req, res));
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
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    if (path === "/health") {
      res.writeHead(204).end();
      return;
    }
    res.writeHead(404, { "Content-Type": "application/json" }).end(JSON.stringify({ code: 404, message: `no route ${req.method} ${path}` }));
  }
}
