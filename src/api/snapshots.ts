// Snapshots on the wire: a snapshot as snapshot.* and vm.snapshot return it, and what
// vm.snapshot and vm.fork report. JSON as the daemon sends it: camelCase, sizes in bytes.
import type { MachineView, VmView } from "./vm.ts";

/** A snapshot (snapshot.list, snapshot.show): the machine it restores and its files. */
export interface SnapshotView extends MachineView {
  name: string;
  /** The VM it was taken of (it may be gone since). */
  sourceVm: string;
  /** Restored VMs get a NIC (a new tap, MAC and address). */
  hasNic: boolean;
  /** Sizes of its files: device state, guest memory (sparse: usedBytes says what it holds), disk copy. */
  stateBytes: number;
  memoryFileBytes: number;
  diskBytes: number;
  /** Its copy of the VM's workspace disk (sparse: its length), null when the VM had none. */
  workspaceDiskBytes: number | null;
  /** What its directory really takes on disk; null when unreadable. */
  usedBytes: number | null;
  /** A fork's base (vm.fork): removed with its last child. */
  internal: boolean;
  /** How long the source VM was paused while it was taken. */
  pauseMs: number;
  createdAt: string;
  /** The VMs restored from it (snapshot rm refuses while there are any, unless forced). */
  vms: string[];
}

/** vm.snapshot: the new snapshot, how long the VM was paused and the whole snapshot took. */
export interface SnapshotTaken {
  snapshot: SnapshotView;
  pauseMs: number;
  totalMs: number;
}

/** vm.fork: the parent's children, restored from an internal snapshot of its state. */
export interface ForkResult {
  parent: string;
  /** The internal snapshot the children were restored from. */
  snapshot: string;
  children: VmView[];
  pauseMs: number;
  totalMs: number;
}

/**
 * snapshot.rm: what went. Forced while VMs were restored from it, its disk copy stays (their
 * disks are overlays on it) until the last of them is removed: `diskKeptFor` names them.
 */
export interface SnapshotRemoved {
  removed: string;
  diskKeptFor: string[];
  freedBytes: number;
}
