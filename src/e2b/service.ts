// The E2B API's life inside the daemon, as the dashboard's (webui/control.ts): started with it
// when `api.enabled` (or BANGER_API=1, `bangerd --api`), and started, stopped or moved by
// `api.reload` (which `banger config set api.*` calls), so turning it on needs no restart. A port
// in use is reported (one line, in the log and api.info), never fatal to the daemon.
import type { ApiState, Handlers } from "../api/index.ts";
import { type Config, type Paths, checkWebPort, effectiveValue } from "../config/index.ts";
import { errorLine } from "../util/errors.ts";
import { ApiKeys } from "./keys.ts";
import { type E2bLogger, E2bServer } from "./server.ts";

/** Always loopback: the API hands out VMs to whoever holds the key. */
export const API_HOST = "127.0.0.1";

export interface ApiSettings {
  enabled: boolean;
  port: number;
}

/** api.enabled (BANGER_API=1 wins) and api.port (BANGER_API_PORT wins; 0: any free port). */
export function apiSettings(config: Config, env: NodeJS.ProcessEnv = process.env): ApiSettings {
  const port = effectiveValue(config, "api.port", env);
  return { enabled: effectiveValue(config, "api.enabled", env).value === true, port: checkWebPort(port.value, { ephemeralOk: true, key: "api.port" }) };
}

export class ApiService {
  readonly keys: ApiKeys;
  private server: E2bServer | undefined;
  private applied: string | undefined;
  private error: string | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly opts: { methods: Partial<Handlers>; paths: Paths; config: () => Config; log: E2bLogger; env?: NodeJS.ProcessEnv }) {
    this.keys = new ApiKeys(opts.paths.apiKeyFile);
  }

  /** Makes the API match the config now. */
  apply(): Promise<ApiState> {
    return this.enqueue(() => this.applyNow());
  }

  close(): Promise<void> {
    return this.enqueue(async () => {
      await this.server?.close();
      this.server = undefined;
    });
  }

  state(): ApiState {
    return { enabled: this.server !== undefined || this.error !== undefined, ...(this.server ? { url: this.server.url } : {}), ...(this.error ? { error: this.error } : {}) };
  }

  methods(): Handlers<"api.info" | "api.reload" | "api.key.rotate"> {
    return {
      "api.info": () => ({ ...this.state(), key: this.keys.current() }),
      "api.reload": () => this.apply(),
      "api.key.rotate": () => {
        const key = this.keys.rotate();
        this.opts.log.info("e2b: API key rotated");
        return { key };
      },
    };
  }

  private enqueue<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async applyNow(): Promise<ApiState> {
    let want: ApiSettings;
    try {
      want = apiSettings(this.opts.config(), this.opts.env);
    } catch (err) {
      this.error = errorLine(err);
      return this.state();
    }
    const key = JSON.stringify(want);
    if (key === this.applied && (this.server !== undefined) === want.enabled) return this.state();
    const wasOn = this.server !== undefined;
    await this.server?.close();
    this.server = undefined;
    this.error = undefined;
    this.applied = key;
    if (want.enabled) {
      const server = new E2bServer({ methods: this.opts.methods, keys: this.keys, log: this.opts.log });
      try {
        this.keys.current(); // made now, so `banger api env` and the first request agree
        await server.listen(API_HOST, want.port);
        this.server = server;
        this.opts.log.info("e2b: API listening", { url: server.url });
      } catch (err) {
        this.error = errorLine(err);
        this.opts.log.warn("e2b: API not started", { error: this.error });
      }
    } else if (wasOn) {
      this.opts.log.info("e2b: API off");
    }
    return this.state();
  }
}
