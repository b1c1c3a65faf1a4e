// The E2B API's life inside the daemon, as the dashboard's (webui/control.ts): started with it
// when `api.enabled` (or BANGER_API=1, `bangerd --api`), and started, stopped or moved by
// `api.reload` (which `banger config set api.*` calls), so turning it on needs no restart. A port
// in use is reported (one line, in the log and api.info), never fatal to the daemon.
import type { ApiState, Handlers } from "../api/index.ts";
import { type Config, type Paths, checkWebPort, effectiveValue } from "../config/index.ts";
import { ConfigServer } from "../util/config-server.ts";
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
  private readonly server: ConfigServer<E2bServer, ApiSettings>;

  constructor(private readonly opts: { methods: Partial<Handlers>; paths: Paths; config: () => Config; log: E2bLogger; env?: NodeJS.ProcessEnv }) {
    this.keys = new ApiKeys(opts.paths.apiKeyFile);
    this.server = new ConfigServer({
      what: "e2b: API",
      settings: () => apiSettings(opts.config(), opts.env),
      start: async (want) => {
        const server = new E2bServer({ methods: opts.methods, keys: this.keys, log: opts.log });
        this.keys.current(); // made now, so `banger api env` and the first request agree
        await server.listen(API_HOST, want.port);
        return server;
      },
      log: opts.log,
    });
  }

  /** Makes the API match the config now. */
  apply(): Promise<ApiState> {
    return this.server.apply();
  }

  close(): Promise<void> {
    return this.server.close();
  }

  state(): ApiState {
    return this.server.state();
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
}
