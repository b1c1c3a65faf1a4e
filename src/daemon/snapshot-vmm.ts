// The vmm and disk calls snapshots are made of (VmHandle.saveSnapshot, VmmDriver.restore,
// disk's snapshotDisk and cloneFromSnapshot), in one place: a driver without them (one that
// cannot snapshot) gets one clear error here instead of a crash deep in an operation.
import * as disk from "../disk/index.ts";
import { BangerError, ErrorCode } from "../util/errors.ts";
import { getDriver, type StartOptions, type VmHandle, type VmmName, type VmSpec } from "../vmm/index.ts";

/** The files a VMM writes into a snapshot's directory (vmm's saveSnapshot). */
export const STATE_FILE = "vmstate";
export const MEMORY_FILE = "memory";

interface SnapshotHandle {
  saveSnapshot?(dir: string, opts?: { signal?: AbortSignal }): Promise<{ stateBytes: number; memoryBytes: number }>;
}
interface RestoreDriver {
  restore?(spec: VmSpec, snapshotDir: string, opts?: StartOptions): Promise<VmHandle>;
}
interface SnapshotDisk {
  snapshotDisk?(src: { path: string; format: "raw" | "qcow2" }, destDir: string): Promise<{ path: string; format: "raw" | "qcow2"; bytes: number }>;
  cloneFromSnapshot?(snapDisk: { path: string; format: "raw" | "qcow2" }, dest: string): Promise<{ path: string; format: "raw" | "qcow2"; sizeBytes: number }>;
}

function unsupported(what: string, vmm: string): BangerError {
  return new BangerError(ErrorCode.Unavailable, `${vmm} VMs cannot ${what} with this banger`, "use a VM created with --vmm qemu");
}

export function saveVmState(handle: VmHandle, dir: string, signal?: AbortSignal) {
  const save = (handle as unknown as SnapshotHandle).saveSnapshot;
  if (!save) throw unsupported("be snapshotted", handle.driver);
  return save.call(handle, dir, { signal });
}

export function restoreVmm(vmm: VmmName, spec: VmSpec, snapshotDir: string, opts: StartOptions): Promise<VmHandle> {
  const driver = getDriver(vmm) as unknown as RestoreDriver;
  if (!driver.restore) throw unsupported("be restored from a snapshot", vmm);
  return driver.restore.call(driver, spec, snapshotDir, opts);
}

export function copyDisk(src: { path: string; format: "raw" | "qcow2" }, destDir: string) {
  const fn = (disk as unknown as SnapshotDisk).snapshotDisk;
  if (!fn) throw unsupported("have their disk snapshotted", "these");
  return fn(src, destDir);
}

export function overlayDisk(snapDisk: { path: string; format: "raw" | "qcow2" }, dest: string) {
  const fn = (disk as unknown as SnapshotDisk).cloneFromSnapshot;
  if (!fn) throw unsupported("get a disk from a snapshot", "these");
  return fn(snapDisk, dest);
}
