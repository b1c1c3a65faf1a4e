// A server inside the daemon that the config turns on, off or moves (the dashboard, the E2B
// API): apply() makes it match the settings now, one change at a time; unchanged settings
// leave a running server alone (a restart would end its clients' sessions); a failure to start
// (a port in use, a bad setting) is kept as one line for `info` and the log, never thrown, so
// the daemon serves on without it.
import { errorLine } from "./errors.ts";

export interface ConfigServerState {
  enabled: boolean;
  /** Where it listens, when it does. */
  url?: string;
  /** Why it is not listening although enabled. */
  error?: string;
}

interface Running {
  url: string;
  close(): Promise<void>;
}

interface Log {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
}

export class ConfigServer<S extends Running, W extends { enabled: boolean }> {
  private server: S | undefined;
  private applied: string | undefined;
  private error: string | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly opts: {
      /** What the log calls it: "web: dashboard", "e2b: API". */
      what: string;
      /** The settings wanted now (read from the config; may throw on a bad value). */
      settings: () => W;
      start: (want: W) => Promise<S>;
      log: Log;
    },
  ) {}

  /** The server running now, if any. */
  get current(): S | undefined {
    return this.server;
  }

  /** Makes the server match the settings now. */
  apply(): Promise<ConfigServerState> {
    return this.enqueue(() => this.applyNow());
  }

  close(): Promise<void> {
    return this.enqueue(async () => {
      await this.server?.close();
      this.server = undefined;
    });
  }

  state(): ConfigServerState {
    return { enabled: this.server !== undefined || this.error !== undefined, ...(this.server ? { url: this.server.url } : {}), ...(this.error ? { error: this.error } : {}) };
  }

  private enqueue<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async applyNow(): Promise<ConfigServerState> {
    let want: W;
    try {
      want = this.opts.settings();
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
      try {
        this.server = await this.opts.start(want);
        this.opts.log.info(`${this.opts.what} listening`, { url: this.server.url });
      } catch (err) {
        this.error = errorLine(err);
        this.opts.log.warn(`${this.opts.what} not started`, { error: this.error });
      }
    } else if (wasOn) {
      this.opts.log.info(`${this.opts.what} off`);
    }
    return this.state();
  }
}
