// VMs on the wire: a VM as every vm.* method returns it, its stats and ports, how a command
// lands in it, its workspace facts, and its detached sessions. JSON as the daemon sends it:
// camelCase, sizes in bytes, null for "none".

export type VmState = "creating" | "stopped" | "starting" | "running" | "stopping" | "error" | "crashed" | "paused" | "removing";
/** Egress policy, chosen at create (`--net`). */
export type VmNetPolicy = "full" | "none" | "public";

/** The machine a VM is and a snapshot restores (VmView, SnapshotView; a pool's spec is part of one). */
export interface MachineView {
  image: string;
  kernel: string;
  vmm: string;
  cpus: number;
  /** Guest memory in bytes (a whole number of MiB). */
  memoryBytes: number;
  net: VmNetPolicy;
  /** May reach (and be reached by) other VMs that also have it (`--net-peer`). */
  netPeer: boolean;
}

/** A VM (vm.list, vm.show, vm.create, vm.start, vm.set, ...). */
export interface VmView extends MachineView {
  name: string;
  id: string;
  state: VmState;
  diskBytes: number;
  pid: number | null;
  ip: string | null;
  error: string | null;
  /** What the VM was created with beyond the columns (its workspace, ...). */
  config: Record<string, unknown>;
  createdAt: string;
  startedAt: string | null;
  /** The tap the VM is attached to while it runs; null when stopped or without networking. */
  tap: string | null;
  /** Why the VM is in its state when it got there on its own; null otherwise. */
  stateReason: string | null;
  /** The snapshot the VM was restored from (vm create --from-snapshot, vm fork); null otherwise. */
  snapshot: string | null;
}

/** How a command in the guest ended. */
export type ExitStatus = { exitCode: number } | { signal: string; signalNumber: number };

/** The guest's own counters (the agent's `stats`). */
export interface GuestStats {
  memory: { total: number; free: number; available: number; buffers: number; cached: number; swapTotal: number; swapFree: number };
  /** Cumulative jiffies (1/100 s) since boot; take two samples for rates. */
  cpu: { count: number; user: number; nice: number; system: number; idle: number; iowait: number; irq: number; softirq: number; steal: number };
  disk: { path: string; total: number; free: number; available: number };
  load: number[];
  uptimeSeconds: number;
}

/** vm.stats: the VMM process on the host and the guest's counters. */
export interface VmStats {
  name: string;
  pid: number;
  vmmRssBytes: number | null;
  guest: GuestStats;
}

/** A socket listening in the guest (vm.ports). */
export interface ListeningPort {
  proto: "tcp" | "tcp6";
  address: string;
  port: number;
  pid?: number;
  command?: string;
}

/** Where a command lands when the caller does not say (vm.landing). */
export interface Landing {
  /** The user exec is told: the image's spec as written, "dev", or root. */
  user: string;
  uid: number;
  gid: number;
  /** The directory commands start in. */
  cwd: string;
  /** Where cwd comes from; "home" is the landing user's, so another --user gets its own. */
  cwdFrom: "workspace" | "image" | "home";
}

/** What the daemon remembers about a VM's workspace (vm.workspace.record / .info). */
export interface WorkspaceView {
  hostRepo: string;
  guestPath: string;
  baseCommit: string | null;
  copiedCommit: string | null;
  uid: number;
  gid: number;
  copiedAt: string;
}

export type SessionState = "running" | "exited" | "lost";

/** A detached session as `session ls` shows it: the stored row, refreshed from the agent when it answers. */
export interface SessionView {
  vm: string;
  name: string;
  command: string;
  state: SessionState;
  exitCode: number | null;
  createdAt: string;
  pid?: number;
  exit?: ExitStatus;
  /** Output produced so far (the guest keeps the last 1 MiB). */
  bytes?: number;
  /** False when the VM's agent did not answer: the row is what the store last knew. */
  live: boolean;
}

/** session.attach's answer when the caller detaches or the session ends. */
export interface AttachResult {
  /** True when the caller detached; the session keeps running. */
  detached: boolean;
  state?: "running" | "exited";
  exit?: ExitStatus;
}
