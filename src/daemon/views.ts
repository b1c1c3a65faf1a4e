// Store rows as the wire shows them (api/'s views): the store's rows are the daemon's own
// and may gain columns; what callers see changes only here. Keys and their order are the
// JSON `--json` prints, so a row's view is the same JSON the row was.
import type { ImageView, KernelView, MachineView, OperationView, SessionView, SnapshotView, VmView } from "../api/index.ts";
import type { ImageRecord, KernelRecord, MachineSpec, OperationRecord, SessionRecord, SnapshotRecord, VmRecord } from "../store/index.ts";

export function vmView(r: VmRecord): VmView {
  return {
    name: r.name,
    id: r.id,
    state: r.state,
    image: r.image,
    kernel: r.kernel,
    vmm: r.vmm,
    cpus: r.cpus,
    memoryBytes: r.memoryBytes,
    diskBytes: r.diskBytes,
    pid: r.pid,
    ip: r.ip,
    error: r.error,
    config: r.config,
    createdAt: r.createdAt,
    startedAt: r.startedAt,
    net: r.net,
    netPeer: r.netPeer,
    tap: r.tap,
    stateReason: r.stateReason,
    snapshot: r.snapshot,
  };
}

/** A snapshot's machine (a VM's keeps its keys in its own order: vmView). */
function machineView(r: MachineSpec): MachineView {
  return { image: r.image, kernel: r.kernel, vmm: r.vmm, cpus: r.cpus, memoryBytes: r.memoryBytes, net: r.net, netPeer: r.netPeer };
}

export function kernelView(r: KernelRecord): KernelView {
  return {
    name: r.name,
    source: r.source,
    kernelVersion: r.kernelVersion,
    distro: r.distro,
    arch: r.arch,
    vmlinuxSha256: r.vmlinuxSha256,
    hasInitrd: r.hasInitrd,
    modules: r.modules,
    sizeBytes: r.sizeBytes,
    createdAt: r.createdAt,
  };
}

export function operationView(r: OperationRecord): OperationView {
  return { id: r.id, kind: r.kind, target: r.target, state: r.state, error: r.error, startedAt: r.startedAt, finishedAt: r.finishedAt };
}

/**
 * An image: its row, then `becameDefault` (image.build only: the first image, now the
 * default), then usedBytes (what the sparse rootfs really takes; null when unreadable).
 */
export function imageView(r: ImageRecord, usedBytes: number | null, becameDefault?: true): ImageView & { becameDefault?: true } {
  return {
    name: r.name,
    source: r.source,
    digest: r.digest,
    kernelRef: r.kernelRef,
    distro: r.distro,
    arch: r.arch,
    sizeBytes: r.sizeBytes,
    config: r.config,
    createdAt: r.createdAt,
    ...(becameDefault ? { becameDefault } : {}),
    usedBytes,
  };
}

/** A session: its row, what the agent reports now (when it answered), and whether it did. */
export function sessionView(r: SessionRecord, live: boolean, now?: { pid: number; exit?: SessionView["exit"]; bytes: number }): SessionView {
  return {
    vm: r.vm,
    name: r.name,
    command: r.command,
    state: r.state,
    exitCode: r.exitCode,
    createdAt: r.createdAt,
    ...(now ? { pid: now.pid, exit: now.exit, bytes: now.bytes } : {}),
    live,
  };
}

/** A snapshot: its row (less its file names and hashes), what it takes on disk, and the VMs restored from it. */
export function snapshotView(r: SnapshotRecord, usedBytes: number | null, vms: string[]): SnapshotView {
  return {
    name: r.name,
    sourceVm: r.sourceVm,
    ...machineView(r),
    hasNic: r.hasNic,
    stateBytes: r.stateBytes,
    memoryFileBytes: r.memoryFileBytes,
    diskBytes: r.diskBytes,
    workspaceDiskBytes: r.workspace?.slot?.bytes ?? null,
    usedBytes,
    internal: r.internal,
    pauseMs: r.pauseMs,
    createdAt: r.createdAt,
    vms,
  };
}
