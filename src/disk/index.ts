// Package disk owns copy-on-write root disks: cloning an image's rootfs.ext4 into one VM's
// disk (qcow2 overlay, reflink, sparse copy; dm-snapshot is detected but not used yet),
// growing it to a requested size, and saying which method this host gets and why; a
// snapshot's copy of a paused VM's disk and new disks made from it (snapshot.ts).
//
// It does not own where disks live (the caller passes paths under the VM's directory), the
// images themselves (rootfs/imagecat), or attaching disks to a VM (vmm).
export { chooseCloneStrategy, detectCloneStrategies } from "./strategies.ts";
export type { CloneStrategy, StrategyChoice, StrategyReport } from "./strategies.ts";
export { allocatedBytes, cloneDisk } from "./clone.ts";
export type { CloneOptions, DiskClone, DiskFormat } from "./clone.ts";
export { cloneFromSnapshot, diskStandIn, snapshotDisk, snapshotFlatRaw } from "./snapshot.ts";
export type { SnapshotDisk } from "./snapshot.ts";
