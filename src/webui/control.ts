// The dashboard's life inside the daemon: started with it when enabled, and started, stopped
// or moved to a new address by `web.reload` (which `banger config set web.*` calls after
// writing config.json), so turning it on needs no daemon restart. web.reload reads only the
// config file root wrote: a socket user can ask the daemon to apply it, never to change it.
// Unchanged settings leave it running (a restart would end the browsers' logins): util/config-server.ts.
import { effectiveValue, type Config, type Paths } from "../config/index.ts";
import type { Handlers } from "../api/index.ts";
import { ConfigServer, type ConfigServerState } from "../util/config-server.ts";
import type { DaemonTable } from "./invoke.ts";
import { startWebServer, webEnabled, webMethods, type WebHandle } from "./start.ts";
import type { WebLogger } from "./server.ts";

export interface DashboardSettings {
  enabled: boolean;
  host: string;
  port: number;
}

/** Where the dashboard listens: BANGER_WEB_PORT > web.port > the fixed default port. */
export function dashboardSettings(config: Config, env: NodeJS.ProcessEnv = process.env): DashboardSettings {
  return {
    enabled: webEnabled(config, env),
    host: effectiveValue(config, "web.address", env).value as string,
    port: effectiveValue(config, "web.port", env).value as number,
  };
}

export type DashboardState = ConfigServerState;

export class Dashboard {
  private readonly server: ConfigServer<WebHandle, DashboardSettings>;

  constructor(opts: { methods: DaemonTable; paths: Paths; config: () => Config; log: WebLogger; env?: NodeJS.ProcessEnv }) {
    this.server = new ConfigServer({
      what: "web: dashboard",
      settings: () => dashboardSettings(opts.config(), opts.env),
      start: (want) => startWebServer({ methods: opts.methods, paths: opts.paths, config: opts.config(), log: opts.log, host: want.host, port: want.port }),
      log: opts.log,
    });
  }

  /** Makes the dashboard match the config now; a failure to listen is reported, never thrown. */
  apply(): Promise<DashboardState> {
    return this.server.apply();
  }

  close(): Promise<void> {
    return this.server.close();
  }

  state(): DashboardState {
    return this.server.state();
  }

  /** web.info (where it is, with a login link) and web.reload (apply the config file). */
  methods(): Handlers<"web.info" | "web.reload"> {
    return {
      "web.info": (p, call) => webMethods(this.server.current)["web.info"](p, call),
      "web.reload": () => this.apply(),
    };
  }
}
