// What every VMM handle shares: a detached process identified by pid and runtime dir,
// waiting for it, killing it, cleaning its sockets once it is gone, capping its console log,
// and watching it end. Node has no pidfd: a VMM this process spawned is watched through its
// 'exit' event (which gives its status), an adopted one by polling kill(pid, 0) and its
// /proc start time (so a recycled pid is not taken for it).
import { join } from "node:path";
import type { Duplex } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { consoleLogPath, watchConsoleLog } from "./console.ts";
import { describeEnd, findPanicLine, lastLogLine } from "./ending.ts";
import { VMM_LOG, childExit, forgetChildExit, isAlive, killAndWait, ownedFiles, processStartTime, removeRuntimeLeftovers, waitForExit, type ExitStatus, type VmmState } from "./process.ts";
import type { AgentStreamOptions, SaveSnapshotOptions, StopOutcome, VmHandle, VmRunState, VmmEvent, VmmName } from "./types.ts";

/** How often an adopted VMM's pid is checked: an end is reported within this. */
const POLL_MS = 200;
/** How long an end waits for the VMM's last events, which say why it ended. */
const EVENTS_DRAIN_MS = 250;

export abstract class BaseHandle implements VmHandle {
  readonly driver: VmmName;
  readonly pid: number;
  readonly consoleLogPath: string;
  /** Identifies this process for good, with the pid (undefined: it was already gone). */
  private readonly startTime: string | undefined;
  /** QEMU's SHUTDOWN reason, when its events said one (set by the driver). */
  protected shutdownReason: string | undefined;

  constructor(
    readonly runtimeDir: string,
    protected readonly state: VmmState,
  ) {
    this.driver = state.driver;
    this.pid = state.pid;
    this.consoleLogPath = consoleLogPath(runtimeDir);
    this.startTime = processStartTime(this.pid);
    // Started or re-adopted: the console log is capped for as long as this VMM lives.
    watchConsoleLog(this.consoleLogPath, this.pid);
  }

  isRunning(): boolean {
    return isAlive(this.pid) && processStartTime(this.pid) === this.startTime;
  }

  watch(listener: (event: VmmEvent) => void): () => void {
    const stop = new AbortController();
    const guestDone = this.followGuest(listener, stop.signal);
    void this.awaitEnd(stop.signal).then(async (status) => {
      if (stop.signal.aborted) return;
      // The exit can be seen before the monitor's last events (SHUTDOWN's reason) are read.
      await Promise.race([guestDone, sleep(EVENTS_DRAIN_MS)]);
      const event = describeEnd({
        pid: this.pid,
        ...(status ? { status } : {}),
        shutdown: this.shutdownReason,
        panicLine: await findPanicLine(this.consoleLogPath),
        logLine: await lastLogLine(join(this.runtimeDir, VMM_LOG)),
      });
      stop.abort();
      listener(event);
    });
    return () => stop.abort();
  }

  /** Resolves when the VMM is gone: with its status when it is our child, else undefined. */
  private async awaitEnd(signal: AbortSignal): Promise<ExitStatus | undefined> {
    const exit = childExit(this.pid);
    if (exit) {
      const aborted = new Promise<undefined>((resolve) => signal.addEventListener("abort", () => resolve(undefined), { once: true }));
      const status = await Promise.race([exit, aborted]);
      if (status) forgetChildExit(this.pid);
      return status;
    }
    while (!signal.aborted && this.isRunning()) await sleep(POLL_MS);
    return undefined;
  }

  /** Driver hook: report the guest's pauses and resumes (QEMU's QMP events) until aborted; resolves when they end. */
  protected followGuest(_listener: (event: VmmEvent) => void, _signal: AbortSignal): Promise<void> {
    return Promise.resolve();
  }

  waitExit(signal?: AbortSignal): Promise<void> {
    return waitForExit(this.pid, undefined, signal).then(() => undefined);
  }

  async kill(): Promise<void> {
    // Never signal a pid that is no longer this VMM's (it may be another process's now).
    if (this.isRunning()) await killAndWait(this.pid);
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

  /** Removes sockets, the RAM file, pid and state files; call only once the VMM has exited. */
  protected cleanup(): Promise<void> {
    return removeRuntimeLeftovers(this.runtimeDir, ownedFiles(this.state));
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
  abstract saveSnapshot(dir: string, opts?: SaveSnapshotOptions): Promise<{ stateBytes: number; memoryBytes: number }>;
  abstract agentStream(opts?: AgentStreamOptions): Promise<Duplex>;
  abstract readonly agentOverSerial: boolean;
}
