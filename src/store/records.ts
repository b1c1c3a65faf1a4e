// The store's records (what the daemon answers: camelCase, sizes in bytes) and their mapping
// from SQLite rows (columns keep their names and units).
import { normalizeArch } from "../util/arch.ts";

/**
 * `crashed`: the VMM died on its own (a signal, a failed exit, a guest panic); `paused`: the
 * VMM paused the guest (a host disk full); `removing`: an rm in progress (finished at start
 * when a daemon dies half-way). `stateReason` says why.
 */
export type VmState = "creating" | "stopped" | "starting" | "running" | "stopping" | "error" | "crashed" | "paused" | "removing";
export type SessionState = "running" | "exited" | "lost";
export type OperationState = "running" | "succeeded" | "failed" | "cancelled";
/** A VM's egress policy (net/nat.ts says what each one allows). */
export type VmNetPolicy = "full" | "none" | "public";

export interface KernelRecord {
  name: string;
  source: string;
  kernelVersion: string;
  distro: string;
  arch: string;
  vmlinuxSha256: string;
  hasInitrd: boolean;
  modules: string[];
  sizeBytes: number;
  createdAt: string;
}

export interface ImageRecord {
  name: string;
  source: string;
  digest: string;
  kernelRef: string | null;
  distro: string;
  arch: string;
  sizeBytes: number;
  /** The OCI image config (Entrypoint, Cmd, Env, ...) or {} for bundles. */
  config: Record<string, unknown>;
  createdAt: string;
}

/**
 * The machine a VM is, a snapshot restores and a pool request asks for: one shape, so a
 * snapshot's machine is its VM's (machineOf) and a pooled VM serves a request for the same
 * machine (sameMachine).
 */
export interface MachineSpec {
  image: string;
  kernel: string;
  vmm: string;
  cpus: number;
  /** Guest memory in bytes (a whole number of MiB: the VMMs' unit). */
  memoryBytes: number;
  /** Egress policy, chosen at create (`--net`). */
  net: VmNetPolicy;
  /** May reach (and be reached by) other VMs that also have it (`--net-peer`). */
  netPeer: boolean;
}

const MACHINE_KEYS = ["image", "kernel", "vmm", "cpus", "memoryBytes", "net", "netPeer"] as const satisfies readonly (keyof MachineSpec)[];

/** Just the machine of a VM, snapshot or request (no other key copied along). */
export function machineOf(r: MachineSpec): MachineSpec {
  return { image: r.image, kernel: r.kernel, vmm: r.vmm, cpus: r.cpus, memoryBytes: r.memoryBytes, net: r.net, netPeer: r.netPeer };
}

export function sameMachine(a: MachineSpec, b: MachineSpec): boolean {
  return MACHINE_KEYS.every((k) => a[k] === b[k]);
}

export interface VmRecord extends MachineSpec {
  name: string;
  id: string;
  state: VmState;
  diskBytes: number;
  pid: number | null;
  ip: string | null;
  error: string | null;
  config: Record<string, unknown>;
  createdAt: string;
  startedAt: string | null;
  /** The tap the VM is attached to while it runs; null when stopped or without networking. */
  tap: string | null;
  /** Why the VM is in its state when it got there on its own (exit status, panic line, io-error); null otherwise. */
  stateReason: string | null;
  /** The snapshot the VM was restored from (its disk is an overlay on the snapshot's); null otherwise. */
  snapshot: string | null;
  /** The image whose warm pool holds this VM (hidden from `vm ls` until taken); null for every other VM. */
  pool: string | null;
}

export interface SessionRecord {
  vm: string;
  name: string;
  command: string;
  state: SessionState;
  exitCode: number | null;
  createdAt: string;
}

export interface OperationRecord {
  id: number;
  kind: string;
  target: string;
  state: OperationState;
  error: string | null;
  startedAt: string;
  finishedAt: string | null;
}

export type Row = Record<string, unknown>;
/** A VM row as inserted: the columns set later (start, tap, state reason) are left out. */
export type NewVm = Omit<VmRecord, "createdAt" | "startedAt" | "net" | "netPeer" | "tap" | "stateReason" | "snapshot" | "pool"> &
  Partial<Pick<VmRecord, "net" | "netPeer" | "snapshot" | "pool">> & { createdAt?: string };

// Records are what the daemon answers (JSON: camelCase, sizes in bytes, arch amd64/arm64); the
// columns keep their names and units (memory_mib, arch as first stored): mapped here, both ways.
const MIB = 1024 ** 2;
export const mibFromBytes = (bytes: number) => Math.ceil(bytes / MIB);

export const now = () => new Date().toISOString();

export function kernelFromRow(r: Row): KernelRecord {
  return {
    name: r.name as string,
    source: r.source as string,
    kernelVersion: r.kernel_version as string,
    distro: r.distro as string,
    arch: normalizeArch(r.arch as string),
    vmlinuxSha256: r.vmlinux_sha256 as string,
    hasInitrd: r.has_initrd === 1,
    modules: JSON.parse(r.modules as string) as string[],
    sizeBytes: r.size_bytes as number,
    createdAt: r.created_at as string,
  };
}

export function imageFromRow(r: Row): ImageRecord {
  return {
    name: r.name as string,
    source: r.source as string,
    digest: r.digest as string,
    kernelRef: (r.kernel_ref as string | null) ?? null,
    distro: r.distro as string,
    arch: normalizeArch(r.arch as string),
    sizeBytes: r.size_bytes as number,
    config: JSON.parse(r.config as string) as Record<string, unknown>,
    createdAt: r.created_at as string,
  };
}

/** The machine columns, named alike in vms and snapshots (memory: vms keep MiB, snapshots bytes). */
export function machineFromRow(r: Row, memoryBytes: number): MachineSpec {
  return {
    image: r.image as string,
    kernel: r.kernel as string,
    vmm: r.vmm as string,
    cpus: r.cpus as number,
    memoryBytes,
    net: ((r.net as string | undefined) ?? "full") as VmNetPolicy,
    netPeer: r.net_peer === 1,
  };
}

export function vmFromRow(r: Row): VmRecord {
  return {
    name: r.name as string,
    id: r.id as string,
    state: r.state as VmState,
    ...machineFromRow(r, (r.memory_mib as number) * MIB),
    diskBytes: r.disk_bytes as number,
    pid: (r.pid as number | null) ?? null,
    ip: (r.ip as string | null) ?? null,
    error: (r.error as string | null) ?? null,
    config: JSON.parse(r.config as string) as Record<string, unknown>,
    createdAt: r.created_at as string,
    startedAt: (r.started_at as string | null) ?? null,
    tap: (r.tap as string | null | undefined) ?? null,
    stateReason: (r.state_reason as string | null | undefined) ?? null,
    snapshot: (r.snapshot as string | null | undefined) ?? null,
    pool: (r.pool as string | null | undefined) ?? null,
  };
}

export function sessionFromRow(r: Row): SessionRecord {
  return {
    vm: r.vm as string,
    name: r.name as string,
    command: r.command as string,
    state: r.state as SessionState,
    exitCode: (r.exit_code as number | null) ?? null,
    createdAt: r.created_at as string,
  };
}

export function operationFromRow(r: Row): OperationRecord {
  return {
    id: r.id as number,
    kind: r.kind as string,
    target: r.target as string,
    state: r.state as OperationState,
    error: (r.error as string | null) ?? null,
    startedAt: r.started_at as string,
    finishedAt: (r.finished_at as string | null) ?? null,
  };
}
