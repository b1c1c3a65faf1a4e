// What every daemon operation gets: paths, config, store, logger, and the per-name locks
// that serialize operations on one VM (or image, or kernel) while others run in parallel.
import type { Config, Paths } from "../config/index.ts";
import type { Store } from "../store/index.ts";
import type { Progress } from "../util/progress.ts";
import type { Logger } from "./logger.ts";
import type { NetworkManager } from "./network.ts";
import type { WarmPools } from "./pools.ts";
import type { SandboxClock } from "./sandboxes.ts";
import type { StandbyRestores } from "./standby.ts";
import type { VmRuntime } from "./vm-runtime.ts";

/** What a long operation gets from its RPC call: cancellation and a progress sink. */
export interface CallEnv {
  signal: AbortSignal;
  progress: Progress;
}

export interface DaemonContext {
  paths: Paths;
  /** The config file as it is now: read per operation, so `banger config set` needs no restart. */
  config(): Config;
  store: Store;
  log: Logger;
  locks: KeyedLock;
  /** VMM handles and agent connections of running VMs. */
  runtime: VmRuntime;
  /** Bridge, taps, NAT rules, `.vm` DNS and guest addresses (network.ts). */
  network: NetworkManager;
  /** Warm pools: ready VMs a matching create takes, refilled in the background (pools.ts). */
  pools: WarmPools;
  /** Restores begun ahead for the snapshots used last: a VMM waiting for the state (standby.ts). */
  standbys: StandbyRestores;
  /** The E2B API's sandboxes' expiry (sandboxes.ts): told of every change to a sandbox. */
  sandboxes: SandboxClock;
  startedAt: number;
  /** Asks the daemon to shut down after the current answer is sent. */
  requestShutdown(): void;
  /** Calls in flight on the RPC server (the asking call included). */
  activeCalls(): number;
}

/** A mutex per key: run() waits for earlier holders of the same key only. */
export class KeyedLock {
  private readonly tails = new Map<string, Promise<void>>();

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const tail = previous.then(() => mine);
    this.tails.set(key, tail);
    await previous;
    try {
      return await fn();
    } finally {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}
