// A snapshot's disk: a copy of a paused VM's disk taken while its VMM holds it (QEMU flushes
// and drains its disks when the guest stops, so the file is consistent), and new VMs' disks
// made from that copy without copying it again.
import { randomBytes } from "node:crypto";
import { open, readFile, rename, rm, writeFile } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { integrity, invalidArgument } from "../util/errors.ts";
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
  // At most one qemu-img run per disk size, not two per restore (each run is ~50 ms, and a
  // fork's base is a new snapshot disk every time): the size comes from the qcow2 header, `-u`
  // with the size given spares qemu-img opening the backing chain, and an empty overlay names
  // only its backing file and size, so an overlay of any backing of that size is qemu-img's
  // bytes for the first one with the backing name swapped (withBacking).
  const size = await qcow2VirtualSize(snap.path);
  const backing = resolve(snap.path);
  const template = overlayTemplates.get(size);
  await staged(dest, async (staging) => {
    if (template) return writeFile(staging, withBacking(template, backing), { mode: 0o600, flag: "wx" });
    await runChecked(["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-F", "qcow2", "-b", backing, staging, String(size)], { signal: opts.signal });
    const made = await readFile(staging);
    if (made.length <= MAX_TEMPLATE_BYTES && backingName(made)?.equals(Buffer.from(backing))) {
      if (overlayTemplates.size >= MAX_TEMPLATES) overlayTemplates.delete(overlayTemplates.keys().next().value as number);
      overlayTemplates.set(size, made);
    }
  });
  return { path: dest, format: "qcow2", strategy: "qcow2", sizeBytes: size, filesystemNeedsGrow: false };
}

/** Empty overlays qemu-img made, by virtual size (a few hundred KiB each). */
const overlayTemplates = new Map<number, Buffer>();
const MAX_TEMPLATES = 16;
const MAX_TEMPLATE_BYTES = 1 << 20;
/** qcow2 header: backing_file_offset (u64 at 8) and backing_file_size (u32 at 16); the name lies in the first cluster. */
const QCOW2_BACKING_OFFSET = 8;
const QCOW2_BACKING_SIZE = 16;
const QCOW2_CLUSTER_BITS = 20;
const QCOW2_L1_OFFSET = 40;
const QCOW2_REFCOUNT_OFFSET = 48;
/** QEMU refuses longer backing file names. */
const MAX_BACKING_NAME = 1023;

/** The backing file name an overlay's header gives, or undefined when its layout is not the one withBacking edits. */
function backingName(overlay: Buffer): Buffer | undefined {
  if (overlay.length < 32 || overlay.readUInt32BE(0) !== QCOW2_MAGIC) return undefined;
  const at = Number(overlay.readBigUInt64BE(QCOW2_BACKING_OFFSET));
  const len = overlay.readUInt32BE(QCOW2_BACKING_SIZE);
  const cluster = 1 << overlay.readUInt32BE(QCOW2_CLUSTER_BITS);
  // withBacking writes a name of up to MAX_BACKING_NAME bytes at `at`: it must stay in the header cluster.
  if (at < 32 || at + MAX_BACKING_NAME > cluster || cluster > overlay.length) return undefined;
  // Nothing else in that cluster after the name: the L1 and refcount tables start beyond it.
  if (Number(overlay.readBigUInt64BE(QCOW2_L1_OFFSET)) < cluster || Number(overlay.readBigUInt64BE(QCOW2_REFCOUNT_OFFSET)) < cluster) return undefined;
  if (overlay.subarray(at + len, cluster).some((b) => b !== 0)) return undefined;
  return overlay.subarray(at, at + len);
}

/** A copy of an empty overlay naming `backing` instead (the name is the header's last field; zeros follow it up to the first table). */
export function withBacking(template: Buffer, backing: string): Buffer {
  const name = Buffer.from(backing);
  if (name.length > MAX_BACKING_NAME) throw invalidArgument(`backing file path too long for qcow2 (${name.length} bytes)`, `keep BANGER_HOME's path under ${MAX_BACKING_NAME - 64} bytes`);
  const out = Buffer.from(template);
  const at = Number(out.readBigUInt64BE(QCOW2_BACKING_OFFSET));
  out.fill(0, at, at + out.readUInt32BE(QCOW2_BACKING_SIZE));
  name.copy(out, at);
  out.writeUInt32BE(name.length, QCOW2_BACKING_SIZE);
  return out;
}

const QCOW2_MAGIC = 0x514649fb; // "QFI\xfb"

/** A qcow2 file's virtual size, from its header (big-endian: magic, version, ..., size at byte 24). */
export async function qcow2VirtualSize(path: string): Promise<number> {
  const fh = await open(path, "r");
  try {
    const head = Buffer.alloc(32);
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    const version = bytesRead === head.length ? head.readUInt32BE(4) : 0;
    if (bytesRead < head.length || head.readUInt32BE(0) !== QCOW2_MAGIC || (version !== 2 && version !== 3)) {
      throw integrity(`${path} is not a qcow2 disk (bad header)`, "the snapshot is damaged: remove it (banger snapshot rm) and take it again");
    }
    const size = Number(head.readBigUInt64BE(24));
    if (!Number.isSafeInteger(size) || size <= 0) throw integrity(`${path}: qcow2 header gives a disk size of ${size}`, "the snapshot is damaged: remove it and take it again");
    return size;
  } finally {
    await fh.close();
  }
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
