// Warm pools on the wire: what `pool ls` / `pool set` answer. JSON as the daemon sends it:
// camelCase, sizes in bytes.
import type { MachineView } from "./vm.ts";

/** What a pool's VMs boot with (and what a `vm create`/`vm run` must ask for to take one). */
export type PoolSpecView = Pick<MachineView, "cpus" | "memoryBytes" | "net" | "netPeer"> & {
  /** null: the image's kernel (or the default), resolved when a member boots. */
  kernel: string | null;
};

/** One image's pool (pool.list, pool.set). */
export interface PoolView {
  image: string;
  /** How many ready VMs it keeps. */
  size: number;
  /** Booted, agent ready, waiting to be taken. */
  ready: number;
  /** Booting now or queued to boot (refills run one at a time). */
  warming: number;
  spec: PoolSpecView;
  /** Guest memory its VMs hold now. */
  memoryBytes: number;
  /** Why the last refill failed (the pool retries later); null when it did not. */
  lastError: string | null;
}

/** pool.list: every pool, and the cap all of them share (config pool.max_memory). */
export interface PoolList {
  pools: PoolView[];
  /** Guest memory all pools' VMs hold now. */
  memoryBytes: number;
  maxMemoryBytes: number;
}

/** pool.set's params: the image, its size, and the spec (defaults: 1 cpu, 512 MiB, net full). */
export interface PoolSetParams {
  image: string;
  size: number;
  kernel?: string;
  cpus?: number;
  memoryBytes?: number;
  /** Egress policy: full, none or public. */
  net?: string;
  netPeer?: boolean;
}
