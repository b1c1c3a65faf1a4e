// A snapshot's disk: a copy of a paused VM's disk taken while its VMM holds it (QEMU flushes
// and drains its disks when the guest stops, so the file is consistent), and new VMs' disks
// made from that copy without copying it again.
import { randomBytes } from "node:crypto";
import { rename, rm } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { invalidArgument } from "../util/errors.ts";
import { runChecked } from "../util/exec.ts";
import { allocatedBytes, cloneDisk, type DiskClone, type DiskFormat } from "./clone.ts";
import type { CloneStrategy } from "./strategies.ts";

export interface SnapshotDisk {
  path: string;
  format: DiskFormat;
  /** Bytes it takes on disk. */
  bytes: number;
}

/**
 * Copies a paused VM's disk into `destDir` (disk.qcow2 or disk.raw), sparsely. A qcow2
 * overlay keeps its backing file (the image's rootfs), which must outlive the snapshot.
 */
export async function snapshotDisk(src: { path: string; format: DiskFormat }, destDir: string, opts: { signal?: AbortSignal } = {}): Promise<SnapshotDisk> {
  const dest = join(destDir, `disk.${src.format}`);
  await staged(dest, (staging) => runChecked(["cp", "--sparse=always", "--reflink=auto", src.path, staging], { signal: opts.signal }));
  return { path: dest, format: src.format, bytes: await allocatedBytes(dest) };
}

/**
 * Copies a paused VM's extra disk to `dest` as one self-contained sparse raw file (a raw one
 * with cp; a qcow2 overlay, e.g. a restored VM's, flattened with its backing by qemu-img,
 * -U: the paused VMM still holds its lock), so the copy outlives whatever it was backed by.
 */
export async function snapshotFlatRaw(src: { path: string; format: DiskFormat }, dest: string, opts: { signal?: AbortSignal } = {}): Promise<SnapshotDisk> {
  const argv = (staging: string) =>
    src.format === "raw" ? ["cp", "--sparse=always", "--reflink=auto", src.path, staging] : ["qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", src.path, staging];
  await staged(dest, (staging) => runChecked(argv(staging), { signal: opts.signal }));
  return { path: dest, format: "raw", bytes: await allocatedBytes(dest) };
}

/**
 * A new VM's disk from a snapshot's: a qcow2 overlay backed by it (a qcow2 snapshot disk
 * always; a raw one with strategy "qcow2"), else a reflink or sparse copy of a raw one.
 * The snapshot's disk must then never change (snapshots are read-only).
 */
export async function cloneFromSnapshot(snap: { path: string; format: DiskFormat }, dest: string, strategy: CloneStrategy, opts: { signal?: AbortSignal } = {}): Promise<DiskClone> {
  if (snap.format === "raw") return cloneDisk(snap.path, dest, strategy, opts);
  if (strategy !== "qcow2") throw invalidArgument(`a qcow2 snapshot disk cannot be cloned with ${strategy}`, "restore it under QEMU (qcow2 overlays)");
  const info = JSON.parse((await runChecked(["qemu-img", "info", "--output=json", snap.path], { signal: opts.signal })).stdout) as { "virtual-size"?: number };
  await staged(dest, (staging) => runChecked(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", resolve(snap.path), staging], { signal: opts.signal }));
  return { path: dest, format: "qcow2", strategy: "qcow2", sizeBytes: info["virtual-size"] ?? 0, filesystemNeedsGrow: false };
}

/** Writes `dest` through a staging name beside it, renamed into place (nothing half-made stays). */
async function staged(dest: string, fill: (staging: string) => Promise<unknown>): Promise<void> {
  const staging = join(dirname(dest), `.${basename(dest)}.partial-${randomBytes(4).toString("hex")}`);
  try {
    await fill(staging);
    await rename(staging, dest);
  } catch (err) {
    await rm(staging, { force: true });
    throw err;
  }
}
