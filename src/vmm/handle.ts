// What every VMM handle shares: a detached process identified by pid and runtime dir,
// waiting for it, killing it, cleaning its sockets once it is gone, and capping its console log.
import type { Duplex } from "node:stream";
import { consoleLogPath, watchConsoleLog } from "./console.ts";
import { isAlive, killAndWait, removeRuntimeLeftovers, waitForExit, type VmmState } from "./process.ts";
import type { AgentStreamOptions, StopOutcome, VmHandle, VmRunState, VmmName } from "./types.ts";

export abstract class BaseHandle implements VmHandle {
  readonly driver: VmmName;
  readonly pid: number;
  readonly consoleLogPath: string;

  constructor(
    readonly runtimeDir: string,
    protected readonly state: VmmState,
  ) {
    this.driver = state.driver;
    this.pid = state.pid;
    this.consoleLogPath = consoleLogPath(runtimeDir);
    // Started or re-adopted: the console log is capped for as long as this VMM lives.
    watchConsoleLog(this.consoleLogPath, this.pid);
  }

  isRunning(): boolean {
    return isAlive(this.pid);
  }

  waitExit(signal?: AbortSignal): Promise<void> {
    return waitForExit(this.pid, undefined, signal).then(() => undefined);
  }

  async kill(): Promise<void> {
    await killAndWait(this.pid);
    await this.cleanup();
  }

  async stop(timeoutMs = 10_000): Promise<StopOutcome> {
    if (!this.isRunning()) {
      await this.cleanup();
      return "not-running";
    }
    const outcome = await this.stopGracefully(timeoutMs);
    if (outcome === "killed") await killAndWait(this.pid);
    await this.cleanup();
    return outcome;
  }

  /** Removes sockets, pid and state files; call only once the VMM has exited. */
  protected cleanup(): Promise<void> {
    return removeRuntimeLeftovers(this.runtimeDir, this.state.sockets);
  }

  /** Waits up to timeoutMs for the process to exit. */
  protected exitsWithin(timeoutMs: number): Promise<boolean> {
    return waitForExit(this.pid, timeoutMs);
  }

  /** Driver-specific clean shutdown; returns "killed" when the caller must SIGKILL. */
  protected abstract stopGracefully(timeoutMs: number): Promise<StopOutcome>;
  abstract status(): Promise<VmRunState>;
  abstract pause(): Promise<void>;
  abstract resume(): Promise<void>;
  abstract agentStream(opts?: AgentStreamOptions): Promise<Duplex>;
  abstract readonly agentOverSerial: boolean;
}
