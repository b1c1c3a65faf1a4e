// Tree -> ext4 image. `mkfs.ext4 -d` copies the staging directory's contents; one
// `debugfs -w -f` pass (debugfs.ts, which says why image names in it are inert) then
// re-applies every TreeEntry (owner, mode with setuid/setgid/sticky, mtime, devices and
// fifos, xattrs) that the staging files could not carry themselves. Neither step needs root,
// so images come out right whoever runs the daemon. The image is built under a temporary
// name beside `outPath` and renamed into place; a failure leaves nothing.
import { randomBytes } from "node:crypto";
import { chmodSync, lchownSync, lstatSync, lutimesSync } from "node:fs";
import { mkdtemp, open, rename, rm, stat, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { BangerError, ErrorCode, freeBytesUnder, invalidArgument, resourceErrno, resourceError, throwIfAborted } from "../util/errors.ts";
import { runChecked } from "../util/exec.ts";
import { humanBytes } from "../util/human.ts";
import { noProgress, type Progress } from "../util/progress.ts";
import { hostMode, runDebugfs, type StagingStamp, writeDebugfsScript } from "./debugfs.ts";
import type { Tree, TreeEntry } from "./tree.ts";

export interface BuildExt4Options {
  /** Exact image size; an error when the content does not fit. Default: content + headroom. */
  sizeBytes?: number;
  /**
   * Smallest size when sizing automatically. The file is sparse, so a roomy image costs
   * nothing until written; VMs cloned from it get the space (and inodes) for a workspace.
   */
  minSizeBytes?: number;
  /** Free space to leave when sizing automatically (default: max(64 MiB, 25% of content)). */
  headroom?: number;
  /** Most bytes of the debugfs script (default MAX_SCRIPT_BYTES, see debugfs.ts). */
  maxScriptBytes?: number;
  /** Most distinct xattr values (default MAX_XATTR_VALUES, see debugfs.ts). */
  maxXattrValues?: number;
  /** Filesystem label (at most 16 bytes). Default "rootfs". */
  label?: string;
  signal?: AbortSignal;
  progress?: Progress;
}

const BLOCK = 4096;
const INODE_SIZE = 256;
const MIB = 1024 * 1024;

/** Builds `outPath` from the tree; returns its path and size. */
export async function buildExt4(tree: Tree, outPath: string, opts: BuildExt4Options = {}): Promise<{ path: string; sizeBytes: number }> {
  const progress = opts.progress ?? noProgress;
  const label = opts.label ?? "rootfs";
  if (Buffer.byteLength(label) > 16 || /[\0\n"]/.test(label)) throw invalidArgument(`filesystem label ${JSON.stringify(label)} is longer than 16 bytes`);
  refuseReservedNames(tree);
  throwIfAborted(opts.signal);
  const need = await estimateImage(tree, opts.signal);
  const sizeBytes = chooseSize(need, opts);
  const tmpImage = join(dirname(outPath), `.${basename(outPath)}.tmp-${randomBytes(4).toString("hex")}`);
  const work = await mkdtemp(join(dirname(outPath), `.${basename(outPath)}.work-`));
  try {
    await createSizedFile(tmpImage, sizeBytes);
    const host = await stampStaging(tree, opts.signal);
    progress({ phase: "mkfs", message: `${humanBytes(sizeBytes)} ext4` });
    // Inodes for the content, or one per 64 KiB when the image has room to fill.
    await runMkfs(tree, tmpImage, label, Math.max(need.inodes, Math.floor(sizeBytes / (64 * 1024))), sizeBytes, need.minBytes, opts.signal);
    progress({ phase: "ownership", total: tree.entries.size });
    const script = await writeDebugfsScript(tree, work, host, { maxBytes: opts.maxScriptBytes, maxXattrValues: opts.maxXattrValues });
    await runDebugfs(tmpImage, script, opts.signal);
    await rename(tmpImage, outPath);
    return { path: outPath, sizeBytes };
  } catch (err) {
    await rm(tmpImage, { force: true });
    // The image file is sparse: what the host must hold is about the content.
    throw hostOutOfSpace(err, dirname(outPath), need.minBytes) ?? err;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

export interface FillExt4Options {
  /** Owner of everything in the image, its root directory included (the guest user). */
  owner: { uid: number; gid: number };
  /** Filesystem label (at most 16 bytes, [A-Za-z0-9_-]). */
  label: string;
  /** An empty directory of the caller's for the debugfs script (the caller removes it). */
  workDir: string;
  signal?: AbortSignal;
  progress?: Progress;
}

/**
 * Writes an ext4 of `tree` INTO the existing file `image`, keeping its size: a disk a running
 * VM already has attached (the workspace slot), so it cannot be replaced by a rename. Every
 * entry is owned by `owner` (set on the staging files, which mkfs copies: so root only; no
 * name of the tree ever reaches debugfs, whose one fixed command removes mkfs's empty
 * /lost+found). Permission bits only (no setuid/setgid/sticky). Inode tables and the journal
 * are left uninitialised (the file stays sparse: the guest mounts with noinit_itable); mkfs
 * first discards the file (punches holes), so an earlier filling leaves nothing behind.
 * Change times are the host's at staging, in whole seconds (mkfs drops the nanoseconds).
 */
export async function fillExt4(tree: Tree, image: string, opts: FillExt4Options): Promise<void> {
  if (process.getuid?.() !== 0) throw new BangerError(ErrorCode.Failed, "filling a workspace disk needs root (the staging files carry the owner)", "the daemon copies through the agent instead");
  if (!/^[A-Za-z0-9_-]{1,16}$/.test(opts.label)) throw invalidArgument(`filesystem label ${JSON.stringify(opts.label)} is not 1-16 of [A-Za-z0-9_-]`);
  const { uid, gid } = opts.owner;
  for (const id of [uid, gid]) if (!Number.isInteger(id) || id < 0 || id > 0xfffffffe) throw invalidArgument(`bad owner id ${id}`);
  refuseReservedNames(tree);
  throwIfAborted(opts.signal);
  const need = await estimateImage(tree, opts.signal);
  const sizeBytes = Math.floor((await stat(image)).size / BLOCK) * BLOCK;
  if (need.minBytes * 1.1 + 64 * MIB > sizeBytes)
    throw invalidArgument(`the content (about ${humanBytes(need.minBytes)}) does not fit in the ${humanBytes(sizeBytes)} disk`, "copy less (--workspace DIR), or none (--no-workspace)");
  for (const e of tree.entries.values()) {
    e.uid = uid;
    e.gid = gid;
    e.mode &= 0o777;
  }
  try {
    await stampStaging(tree, opts.signal);
    opts.progress?.({ phase: "mkfs", message: `${humanBytes(need.minBytes)} into a ${humanBytes(sizeBytes)} ext4` });
    // Inodes for the content and one per 64 KiB of the rest: a workspace gains files.
    const inodes = Math.min(need.inodes + Math.floor((sizeBytes - need.minBytes) / (64 * 1024)), 2 ** 31);
    await runMkfs(tree, image, opts.label, inodes, sizeBytes, need.minBytes, opts.signal, `root_owner=${uid}:${gid},lazy_itable_init=1,lazy_journal_init=1`);
    if (!tree.entries.has("lost+found")) {
      const script = join(opts.workDir, "lost-found.debugfs");
      await writeFile(script, "rmdir /lost+found\n", { flag: "wx", mode: 0o600 });
      await runDebugfs(image, script, opts.signal);
    }
  } catch (err) {
    throw hostOutOfSpace(err, dirname(image), need.minBytes) ?? err;
  }
}

/**
 * The host's filesystem ran out (not the image: a full image says "Could not allocate" or
 * "No space" too, but the host then still has room for the content).
 */
function hostOutOfSpace(err: unknown, dir: string, neededBytes: number): BangerError | undefined {
  const errno = resourceErrno(err);
  if (!errno) return undefined;
  const free = freeBytesUnder(dir);
  if (errno === "ENOSPC" && free !== undefined && free > neededBytes) return undefined;
  return resourceError(err, { path: dir, neededBytes });
}

/**
 * mkfs.ext4 makes /lost+found itself: a file or symlink there fails mkfs, and a hardlink,
 * fifo or device there (linked in without a name check) gives the root two entries of that name.
 */
function refuseReservedNames(tree: Tree): void {
  const e = tree.entries.get("lost+found");
  if (e && e.type !== "dir") throw invalidArgument(`the image has a ${e.type} at /lost+found, where mkfs.ext4 makes its own directory`, "remove it from the image, or make it a directory");
}

interface ImageNeeds {
  /** Bytes the content itself takes in 4 KiB blocks, with inode tables. */
  minBytes: number;
  inodes: number;
}

/** A conservative estimate of what the content needs in an ext4 with 4 KiB blocks. */
export async function estimateImage(tree: Tree, signal?: AbortSignal): Promise<ImageNeeds> {
  let blocks = 0;
  let inodes = 16; // reserved inodes, lost+found
  await forEachInSlices(tree.entries.values(), signal, (e) => {
    if (e.type === "hardlink") return;
    inodes++;
    if (e.type === "dir") blocks += 1;
    else if (e.type === "symlink" && Buffer.byteLength(e.linkTarget ?? "") >= 60) blocks += 1;
    else if (e.type === "file") {
      const st = lstatSync(join(tree.dir, e.path));
      // One extra block per 1 MiB for extent tree leaves on fragmented layouts.
      blocks += Math.ceil(st.size / BLOCK) + Math.ceil(st.size / MIB);
    }
    if (e.xattrs) blocks += 1;
  });
  const inodeCount = Math.max(4096, Math.ceil(inodes * 1.25) + 1024);
  const content = blocks * BLOCK;
  return { minBytes: content + inodeCount * INODE_SIZE, inodes: inodeCount };
}

function chooseSize(need: ImageNeeds, opts: BuildExt4Options): number {
  // Journal, group descriptors, bitmaps and lost+found: a fixed part and a proportional one.
  const overhead = (n: number) => 8 * MIB + Math.ceil(n * 0.04) + Math.min(64 * MIB, Math.max(4 * MIB, Math.ceil(n / 64)));
  const minimum = roundUp(need.minBytes + overhead(need.minBytes), MIB);
  if (opts.sizeBytes !== undefined) {
    if (!Number.isSafeInteger(opts.sizeBytes) || opts.sizeBytes <= 0) throw invalidArgument("image size must be a positive number of bytes");
    if (opts.sizeBytes < minimum) {
      throw invalidArgument(`image size ${humanBytes(opts.sizeBytes)} is too small for the content (needs at least ${humanBytes(minimum)})`, "pass a larger --size or leave it out");
    }
    return roundUp(opts.sizeBytes, BLOCK);
  }
  const headroom = opts.headroom ?? Math.max(64 * MIB, Math.ceil(need.minBytes * 0.25));
  return Math.max(roundUp(minimum + headroom, MIB), roundUp(opts.minSizeBytes ?? 0, MIB));
}

const roundUp = (n: number, to: number) => Math.ceil(n / to) * to;

async function createSizedFile(path: string, size: number): Promise<void> {
  const fh = await open(path, "wx", 0o644);
  try {
    await fh.truncate(size);
  } finally {
    await fh.close();
  }
}

async function runMkfs(tree: Tree, image: string, label: string, inodes: number, sizeBytes: number, contentBytes: number, signal?: AbortSignal, extended = "root_owner=0:0"): Promise<void> {
  const argv = ["mkfs.ext4", "-F", "-q", "-b", String(BLOCK), "-I", String(INODE_SIZE), "-N", String(inodes), "-m", "0", "-L", label];
  argv.push("-E", extended, "-d", tree.dir, image, `${sizeBytes / 1024}k`);
  try {
    await runChecked(argv, { signal });
  } catch (err) {
    if (hostOutOfSpace(err, dirname(image), contentBytes)) throw err; // buildExt4 names it
    if (err instanceof BangerError && /No space|Could not allocate|too many/i.test(err.message)) {
      throw new BangerError(ErrorCode.InvalidArgument, `the content does not fit in a ${humanBytes(sizeBytes)} image`, "pass a larger --size", { cause: err });
    }
    throw err;
  }
}

/**
 * Puts as much metadata as the host allows on the staging files, because mkfs -d copies it
 * and every debugfs command saved matters on big trees: mtimes always, owners and permission
 * bits when root. Never setuid/setgid/sticky on the host; without root the owner keeps rwx
 * on directories and rw on files so mkfs can read them. debugfs fixes the rest.
 */
export async function stampStaging(tree: Tree, signal?: AbortSignal): Promise<StagingStamp> {
  const owners = process.getuid?.() === 0;
  await forEachInSlices(tree.entries.values(), signal, (e) => {
    if (e.type !== "file" && e.type !== "dir" && e.type !== "symlink") return;
    const abs = join(tree.dir, e.path);
    if (owners) lchownSync(abs, e.uid, e.gid);
    if (e.type !== "symlink") chmodSync(abs, hostMode(e, owners));
    lutimesSync(abs, e.mtime, e.mtime);
  });
  return { owners, uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
}

/** Entries handled between two turns of the event loop (about a millisecond of syscalls). */
const SLICE = 256;

/**
 * Runs a synchronous per-entry step (a few metadata syscalls each) over every entry, giving the
 * event loop a turn after each SLICE. A big image has tens of thousands of entries: one
 * thread-pool round trip per syscall, awaited in turn, cost ~0.5 s for 15k files here, while
 * the same syscalls made directly take ~70 ms, and slicing keeps the daemon responsive.
 */
async function forEachInSlices(entries: Iterable<TreeEntry>, signal: AbortSignal | undefined, step: (e: TreeEntry) => void): Promise<void> {
  let n = 0;
  for (const e of entries) {
    step(e);
    if (++n % SLICE === 0) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      throwIfAborted(signal);
    }
  }
}
