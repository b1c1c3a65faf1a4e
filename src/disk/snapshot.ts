// A snapshot's disk: a copy of a paused VM's disk taken while its VMM holds it (QEMU flushes
// and drains its disks when the guest stops, so the file is consistent), and new VMs' disks
// made from that copy without copying it again.
import { randomBytes } from "node:crypto";
import { constants, copyFile, open, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { cancelled, integrity, invalidArgument } from "../util/errors.ts";
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
 * `inPlace`: into the stand-in diskStandIn left there (same inode: a VMM may have it open),
 * not through a new file renamed over it.
 */
export async function snapshotDisk(src: { path: string; format: DiskFormat }, destDir: string, opts: { signal?: AbortSignal; inPlace?: boolean } = {}): Promise<SnapshotDisk> {
  const dest = join(destDir, `disk.${src.format}`);
  const copy = (to: string) => copySparse(src.path, to, opts.signal);
  if (opts.inPlace) await copy(dest);
  else await staged(dest, copy);
  return { path: dest, format: src.format, bytes: await allocatedBytes(dest) };
}

/** A small file with holes under 1 MiB in all: copied by the kernel (copy_file_range), with no process to start or zeros to scan for. */
const KERNEL_COPY_MAX = 256 * 1024 * 1024;
const KERNEL_COPY_HOLES = 1024 * 1024;

/**
 * `src` into `to` (truncated first), keeping its holes. A VM's qcow2 overlay is usually small
 * and dense (clusters are allocated in order), and spawning `cp` from the daemon costs more
 * than copying it (the fork blocks its event loop ~10 ms, and it competes with the memory copy).
 */
async function copySparse(src: string, to: string, signal?: AbortSignal): Promise<void> {
  const st = await stat(src);
  if (st.size <= KERNEL_COPY_MAX && st.blocks * 512 >= st.size - KERNEL_COPY_HOLES) {
    if (signal?.aborted) throw cancelled();
    await copyFile(src, to, constants.COPYFILE_FICLONE); // a reflink where the filesystem can
    return;
  }
  await runChecked(["cp", "--sparse=always", "--reflink=auto", src, to], { signal });
}

/**
 * Where snapshotDisk(src, destDir, { inPlace }) will write, made now as an empty qcow2 overlay
 * of src's size on src's own backing file: a valid disk chain a restore's VMM can open before
 * the copy exists (its metadata is read again once the copy is in). Undefined when src is not
 * a qcow2 overlay naming its backing file and format.
 */
export async function diskStandIn(src: { path: string; format: DiskFormat }, destDir: string, opts: { signal?: AbortSignal } = {}): Promise<string | undefined> {
  if (src.format !== "qcow2") return undefined;
  const head = await qcow2Header(src.path);
  if (!head.backing || !head.backingFormat || !/^[a-z0-9]+$/.test(head.backingFormat)) return undefined;
  const dest = join(destDir, "disk.qcow2");
  await emptyOverlay(dest, { backing: resolve(dirname(src.path), head.backing), format: head.backingFormat, size: head.size }, opts.signal);
  return dest;
}

/**
 * Copies a paused VM's extra disk to `dest` as one self-contained sparse raw file (a raw one
 * by copySparse; a qcow2 overlay, e.g. a restored VM's, flattened with its backing by qemu-img,
 * -U: the paused VMM still holds its lock), so the copy outlives whatever it was backed by.
 */
export async function snapshotFlatRaw(src: { path: string; format: DiskFormat }, dest: string, opts: { signal?: AbortSignal } = {}): Promise<SnapshotDisk> {
  const flatten = (staging: string) =>
    src.format === "raw" ? copySparse(src.path, staging, opts.signal) : runChecked(["qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", src.path, staging], { signal: opts.signal });
  await staged(dest, flatten);
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
  const size = await qcow2VirtualSize(snap.path);
  await emptyOverlay(dest, { backing: resolve(snap.path), format: "qcow2", size }, opts.signal);
  return { path: dest, format: "qcow2", strategy: "qcow2", sizeBytes: size, filesystemNeedsGrow: false };
}

/**
 * A new empty qcow2 overlay at `dest` on `backing`. At most one qemu-img run per size and
 * backing format, not one per restore (each run is ~50 ms, and a fork's base is a new
 * snapshot disk every time): `-u` with the size given spares qemu-img opening the backing
 * chain, and an empty overlay names only its backing file and size, so an overlay of any
 * backing of that size and format is qemu-img's bytes for the first one with the backing name
 * swapped (withBacking).
 */
async function emptyOverlay(dest: string, on: { backing: string; format: string; size: number }, signal?: AbortSignal): Promise<void> {
  const key = `${on.size}:${on.format}`;
  const template = overlayTemplates.get(key);
  await staged(dest, async (staging) => {
    if (template) return writeFile(staging, withBacking(template, on.backing), { mode: 0o600, flag: "wx" });
    await runChecked(["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-F", on.format, "-b", on.backing, staging, String(on.size)], { signal });
    const made = await readFile(staging);
    if (made.length <= MAX_TEMPLATE_BYTES && backingName(made)?.equals(Buffer.from(on.backing))) {
      if (overlayTemplates.size >= MAX_TEMPLATES) overlayTemplates.delete(overlayTemplates.keys().next().value as string);
      overlayTemplates.set(key, made);
    }
  });
}

/** Empty overlays qemu-img made, by virtual size and backing format (a few hundred KiB each). */
const overlayTemplates = new Map<string, Buffer>();
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

/** A qcow2 file's virtual size, from its header. */
export async function qcow2VirtualSize(path: string): Promise<number> {
  return (await qcow2Header(path)).size;
}

/** Header extension naming the backing file's format. */
const QCOW2_EXT_BACKING_FORMAT = 0xe2792aca;
/** Bytes of a header read: its fields, extensions and backing name lie in the first cluster, and these suffice for QEMU's. */
const HEADER_READ = 64 * 1024;

/**
 * A qcow2 file's virtual size, backing file name and backing format, from its header
 * (big-endian: magic, version, backing offset and length, cluster bits, size at byte 24; v3's
 * header length at 100, extensions after the header until type 0).
 */
export async function qcow2Header(path: string): Promise<{ size: number; backing?: string; backingFormat?: string }> {
  const fh = await open(path, "r");
  let head: Buffer;
  try {
    head = Buffer.alloc(HEADER_READ);
    head = head.subarray(0, (await fh.read(head, 0, head.length, 0)).bytesRead);
  } finally {
    await fh.close();
  }
  const version = head.length >= 32 ? head.readUInt32BE(4) : 0;
  if (head.length < 32 || head.readUInt32BE(0) !== QCOW2_MAGIC || (version !== 2 && version !== 3)) {
    throw integrity(`${path} is not a qcow2 disk (bad header)`, "the snapshot is damaged: remove it (banger snapshot rm) and take it again");
  }
  const size = Number(head.readBigUInt64BE(24));
  if (!Number.isSafeInteger(size) || size <= 0) throw integrity(`${path}: qcow2 header gives a disk size of ${size}`, "the snapshot is damaged: remove it and take it again");
  const at = Number(head.readBigUInt64BE(QCOW2_BACKING_OFFSET));
  const len = head.readUInt32BE(QCOW2_BACKING_SIZE);
  const backing = at > 0 && len > 0 && len <= MAX_BACKING_NAME && at + len <= head.length ? head.toString("utf8", at, at + len) : undefined;
  let backingFormat: string | undefined;
  // Extensions: (type u32, length u32, data padded to 8 bytes), until type 0 or the buffer's end.
  for (let off = version === 3 && head.length >= 104 ? head.readUInt32BE(100) : 72; off + 8 <= head.length; ) {
    const type = head.readUInt32BE(off);
    const extLen = head.readUInt32BE(off + 4);
    if (type === 0 || off + 8 + extLen > head.length) break;
    if (type === QCOW2_EXT_BACKING_FORMAT) backingFormat = head.toString("latin1", off + 8, off + 8 + extLen);
    off += 8 + Math.ceil(extLen / 8) * 8;
  }
  return { size, ...(backing !== undefined ? { backing } : {}), ...(backingFormat !== undefined ? { backingFormat } : {}) };
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
