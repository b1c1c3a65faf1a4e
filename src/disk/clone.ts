// Making one VM's root disk from an image's rootfs.ext4 without copying it (when possible),
// optionally grown to a requested size. The clone is staged beside `dest` and renamed into
// place, so a failure or cancel leaves nothing behind.
import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { copyFile, lstat, rename, rm, stat, truncate } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { BangerError, ErrorCode, alreadyExists, invalidArgument, notFound, throwIfAborted } from "../util/errors.ts";
import { run, runChecked } from "../util/exec.ts";
import { humanBytes } from "../util/human.ts";
import type { CloneStrategy } from "./strategies.ts";

export type DiskFormat = "raw" | "qcow2";

export interface CloneOptions {
  /** Grow the disk to this many bytes (never shrinks). Default: the base image's size. */
  sizeBytes?: number;
  signal?: AbortSignal;
}

export interface DiskClone {
  path: string;
  format: DiskFormat;
  strategy: CloneStrategy;
  /** Size the guest sees, in bytes. */
  sizeBytes: number;
  /**
   * True when the disk grew but the ext4 filesystem inside did not (qcow2: the overlay
   * cannot be resized offline), so the guest must run `resize2fs /dev/vda` once booted.
   */
  filesystemNeedsGrow: boolean;
}

/** Clones `base` (a raw ext4 image) to `dest` with `strategy`. */
export async function cloneDisk(base: string, dest: string, strategy: CloneStrategy, opts: CloneOptions = {}): Promise<DiskClone> {
  const baseSize = await regularFileSize(base);
  const sizeBytes = opts.sizeBytes ?? baseSize;
  validateSize(sizeBytes, baseSize);
  if (
    await lstat(dest).then(
      () => true,
      () => false,
    )
  )
    throw alreadyExists(`disk ${dest} already exists`, "remove it first");
  const staging = join(dirname(dest), `.${basename(dest)}.partial-${randomBytes(4).toString("hex")}`);
  try {
    const clone = await cloneInto(resolve(base), staging, strategy, sizeBytes, baseSize, opts.signal);
    throwIfAborted(opts.signal);
    await rename(staging, dest);
    return { ...clone, path: dest };
  } catch (err) {
    await rm(staging, { force: true });
    throw err;
  }
}

/** Bytes a file really occupies on disk (what `du` reports), as opposed to its length. */
export async function allocatedBytes(path: string): Promise<number> {
  return (await stat(path)).blocks * 512;
}

async function cloneInto(base: string, staging: string, strategy: CloneStrategy, sizeBytes: number, baseSize: number, signal: AbortSignal | undefined): Promise<DiskClone> {
  const grow = sizeBytes > baseSize;
  switch (strategy) {
    case "qcow2":
      // The overlay records the backing file's absolute path, so renaming the overlay is safe.
      await runChecked(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", base, staging, String(sizeBytes)], { signal });
      return { path: staging, format: "qcow2", strategy, sizeBytes, filesystemNeedsGrow: grow };
    case "reflink":
      await reflink(base, staging);
      break;
    case "sparse-copy":
      // cp finds the data extents (SEEK_DATA/SEEK_HOLE) and writes only those.
      await runChecked(["cp", "--sparse=always", "--reflink=never", base, staging], { signal });
      break;
    case "dm-snapshot":
      throw new BangerError(ErrorCode.Unavailable, "dm-snapshot clones are not implemented yet", "use the qcow2, reflink or sparse-copy strategy");
  }
  if (grow) await growRawExt4(staging, sizeBytes, signal);
  return { path: staging, format: "raw", strategy, sizeBytes, filesystemNeedsGrow: false };
}

async function reflink(src: string, dst: string): Promise<void> {
  try {
    await copyFile(src, dst, constants.COPYFILE_FICLONE_FORCE);
  } catch (err) {
    throw new BangerError(ErrorCode.Unavailable, `cannot reflink ${src}: ${(err as Error).message}`, "this filesystem has no FICLONE; use another clone strategy");
  }
}

/** Extends a raw ext4 image and its filesystem, offline. */
async function growRawExt4(path: string, sizeBytes: number, signal: AbortSignal | undefined): Promise<void> {
  await truncate(path, sizeBytes);
  // resize2fs insists on a freshly checked filesystem. e2fsck -p exits 1 when it fixed something.
  const check = await run(["e2fsck", "-f", "-p", path], { signal });
  if (check.code > 1) throw new BangerError(ErrorCode.Failed, `e2fsck found errors in ${path} it could not fix`, "the image's rootfs.ext4 is damaged: pull or rebuild the image");
  await runChecked(["resize2fs", path], { signal });
}

async function regularFileSize(path: string): Promise<number> {
  const st = await stat(path).catch(() => undefined);
  if (!st) throw notFound(`base image ${path}`);
  if (!st.isFile()) throw invalidArgument(`base image ${path} is not a regular file`);
  return st.size;
}

/** The smallest size at or above `bytes` as a user would type it: 4G, else 4097M. */
function typedSize(bytes: number): string {
  return bytes % 1024 ** 3 === 0 ? `${bytes / 1024 ** 3}G` : `${Math.ceil(bytes / 1024 ** 2)}M`;
}

function validateSize(sizeBytes: number, baseSize: number): void {
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0) throw invalidArgument(`disk size must be a positive number of bytes, got ${sizeBytes}`);
  if (sizeBytes < baseSize)
    throw invalidArgument(
      `disk size ${humanBytes(sizeBytes)} is smaller than the image (${humanBytes(baseSize)})`,
      `pass --disk-size ${typedSize(baseSize)} or more, or leave it out (disks can grow, not shrink)`,
    );
  if (sizeBytes % 512 !== 0) throw invalidArgument(`disk size ${humanBytes(sizeBytes)} (${sizeBytes} bytes) is not a multiple of 512 bytes`, "pass --disk-size in whole KiB, MiB or GiB, e.g. 8G");
}
