// The dashboard's life inside the daemon: started with it when enabled, and started, stopped
// or moved to a new address by `web.reload` (which `banger config set web.*` calls after
// writing config.json), so turning it on needs no daemon restart. web.reload reads only the
// config file root wrote: a socket user can ask the daemon to apply it, never to change it.
import { effectiveValue, type Config, type Paths } from "../config/index.ts";
import type { Handlers } from "../api/index.ts";
import { errorLine } from "../util/errors.ts";
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

export interface DashboardState {
  enabled: boolean;
  /** Where it listens, when it does. */
  url?: string;
  /** Why it is not listening although enabled (a port in use). */
  error?: string;
}

export class Dashboard {
  private handle: WebHandle | undefined;
  private applied: string | undefined;
  private error: string | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly opts: { methods: DaemonTable; paths: Paths; config: () => Config; log: WebLogger; env?: NodeJS.ProcessEnv }) {}

  /** Makes the dashboard match the config now; a failure to listen is reported, never thrown. */
  apply(): Promise<DashboardState> {
    const next = this.queue.then(() => this.applyNow());
    this.queue = next.catch(() => undefined);
    return next;
  }

  close(): Promise<void> {
    const next = this.queue.then(async () => {
      await this.handle?.close();
      this.handle = undefined;
    });
    this.queue = next.catch(() => undefined);
    return next;
  }

  state(): DashboardState {
    return { enabled: this.handle !== undefined || this.error !== undefined, ...(this.handle ? { url: this.handle.url } : {}), ...(this.error ? { error: this.error } : {}) };
  }

  /** web.info (where it is, with a login link) and web.reload (apply the config file). */
  methods(): Handlers<"web.info" | "web.reload"> {
    return {
      "web.info": (p, call) => webMethods(this.handle)["web.info"](p, call),
      "web.reload": () => this.apply(),
    };
  }

  private async applyNow(): Promise<DashboardState> {
    const config = this.opts.config();
    const want = dashboardSettings(config, this.opts.env);
    const key = JSON.stringify(want);
    // Unchanged and in the wanted state: leave it (a restart would end the browsers' logins).
    if (key === this.applied && (this.handle !== undefined) === want.enabled) return this.state();
    const wasOn = this.handle !== undefined;
    await this.handle?.close();
    this.handle = undefined;
    this.error = undefined;
    this.applied = key;
    if (want.enabled) {
      try {
        this.handle = await startWebServer({ methods: this.opts.methods, paths: this.opts.paths, config, log: this.opts.log, host: want.host, port: want.port });
      } catch (err) {
        this.error = errorLine(err);
        this.opts.log.warn("web: dashboard not started", { error: this.error });
      }
    } else if (wasOn) {
      this.opts.log.info("web: dashboard off");
    }
    return this.state();
  }
}
