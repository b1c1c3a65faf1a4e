// Starting the dashboard's HTTP server, whether config wants it, and the web.info method.
// Apart from index.ts so control.ts (which starts and stops it) needs no import of index.ts.
import { checkWebPort, effectiveValue, type Config, type Paths } from "../config/index.ts";
import type { Handlers } from "../api/index.ts";
import { BangerError, ErrorCode } from "../util/errors.ts";
import { isLoopbackHost } from "../util/loopback.ts";
import type { DaemonTable } from "./invoke.ts";
import { WebServer, type WebLogger } from "./server.ts";

export interface StartWebOptions {
  methods: DaemonTable;
  paths: Paths;
  config: Config;
  log: WebLogger;
  /** Default: config web.address, else 127.0.0.1. */
  host?: string;
  /** Default: config web.port, else 0 (an ephemeral port); the daemon passes dashboardSettings()'s. */
  port?: number;
}

export interface WebHandle {
  /** http://127.0.0.1:PORT */
  url: string;
  /** The API token for scripts (`Authorization: Bearer TOKEN`). */
  token: string;
  close(): Promise<void>;
  /** A fresh one-time login link for a browser. */
  loginUrl(): string;
}

/** True when the dashboard should be served: `web.enabled` in the config, or BANGER_WEB=1 (`bangerd --web`). */
export function webEnabled(config: Config, env: NodeJS.ProcessEnv = process.env): boolean {
  return effectiveValue(config, "web.enabled", env).value === true;
}

export async function startWebServer(opts: StartWebOptions): Promise<WebHandle> {
  const host = opts.host ?? opts.config.web?.address ?? "127.0.0.1";
  const port = opts.port ?? opts.config.web?.port ?? 0;
  checkWebPort(port, { ephemeralOk: true });
  const server = new WebServer(opts.methods, opts.log);
  await server.listen(host, port);
  if (!isLoopbackHost(host)) opts.log.warn("web: dashboard listens beyond loopback; every request still needs the token", { address: host });
  return { url: server.url, token: server.token, close: () => server.close(), loginUrl: () => server.loginUrl() };
}

/** The `web.info` daemon method: where the dashboard is, with a fresh login link. */
export function webMethods(web: WebHandle | undefined): Handlers<"web.info"> {
  return {
    "web.info": () => {
      if (!web) {
        throw new BangerError(ErrorCode.Unavailable, "the dashboard is off", "turn it on: banger config set web.enabled true");
      }
      return { url: web.url, loginUrl: web.loginUrl(), token: web.token };
    },
  };
}
