// Reading a `docker export`-style tar into a staging directory plus its Tree metadata.
//
// The tar is untrusted. Paths are normalised and may not escape; an entry whose parent is
// anything but a directory we created is rejected (so a symlink can never redirect a write);
// files are created with O_EXCL|O_NOFOLLOW and private modes (never setuid on the host).
// Devices and fifos exist only as metadata: nothing is written for them on disk and the
// ext4 builder creates them with debugfs `mknod`. The root entry ("./") is skipped: the
// image root is always root:root 0755.
import { closeSync, constants, mkdirSync, openSync, writeSync } from "node:fs";
import { link, rm, symlink } from "node:fs/promises";
import { join } from "node:path";
import { pipeline, type Readable } from "node:stream";
import tar from "tar-stream";
import { BangerError, ErrorCode, cancelled, invalidArgument, resourceError } from "../util/errors.ts";
import { humanBytes } from "../util/human.ts";
import { MetadataBudget, keptXattrs, linkTarget, memberPath, orThrow, shown } from "../util/paths.ts";
import { noProgress, type Progress } from "../util/progress.ts";
import { PaxXattrSniffer } from "./paxsniff.ts";
import type { Tree, TreeEntry, TreeEntryType } from "./tree.ts";

export interface ExtractOptions {
  signal?: AbortSignal;
  progress?: Progress;
  /** Most entries accepted (default 500,000). */
  maxEntries?: number;
  /** Most bytes of file content accepted in total (default 32 GiB). */
  maxBytes?: number;
  /** Most bytes of names, link targets and xattrs held (default MAX_TREE_METADATA_BYTES). */
  maxMetadataBytes?: number;
}

const MAX_ID = 0xfffffffe;

/** What tar-stream's decoder really returns: its typings omit these two fields. */
type TarHeader = tar.Header & { byteOffset?: number; pax?: Record<string, string> | null };

/**
 * Extracts `tarStream` into `stagingDir` (created if missing, must be empty) and returns the
 * Tree describing it. On any failure the staging directory is removed.
 */
export async function extractRootfsTar(tarStream: Readable, stagingDir: string, opts: ExtractOptions = {}): Promise<Tree> {
  // No await before the pipeline listens: a source that fails at once (tar of a missing
  // directory) must not emit an error nobody handles.
  mkdirSync(stagingDir, { recursive: true, mode: 0o700 });
  const tree: Tree = { dir: stagingDir, entries: new Map() };
  const budget = new MetadataBudget(opts.maxMetadataBytes);
  const sniffer = new PaxXattrSniffer(budget, invalidArgument);
  const extract = tar.extract();
  const onAbort = () => extract.destroy(cancelled());
  opts.signal?.addEventListener("abort", onAbort, { once: true });
  let streamError: Error | undefined;
  pipeline(tarStream, sniffer, extract as unknown as NodeJS.WritableStream, (err) => {
    if (err) streamError = err;
  });
  const writer = new TreeWriter(tree, opts, budget);
  try {
    if (opts.signal?.aborted) throw cancelled();
    for await (const entry of extract) {
      if (opts.signal?.aborted) throw cancelled();
      const header = entry.header as TarHeader;
      const offset = header.byteOffset ?? -1;
      const xattrs = sniffer.xattrsByOffset.get(offset);
      sniffer.xattrsByOffset.delete(offset);
      await writer.add(header, entry as AsyncIterable<Buffer>, xattrs);
      entry.resume();
    }
    if (opts.signal?.aborted) throw cancelled();
    if (streamError) throw streamError;
    return tree;
  } catch (err) {
    extract.destroy();
    tarStream.destroy();
    await rm(stagingDir, { recursive: true, force: true });
    throw asTarError(err, stagingDir, opts.signal);
  } finally {
    opts.signal?.removeEventListener("abort", onAbort);
  }
}

function asTarError(err: unknown, stagingDir: string, signal: AbortSignal | undefined): unknown {
  if (signal?.aborted) return cancelled();
  if (err instanceof BangerError) return err;
  // A full disk while extracting is the host's problem, not the tar's.
  const resource = resourceError(err, { path: stagingDir });
  if (resource) return resource;
  const msg = err instanceof Error ? err.message : String(err);
  // Host errors name host paths built from member names: shown, like every name.
  return new BangerError(ErrorCode.InvalidArgument, `not a valid rootfs tar: ${shown(msg)}`, "pass an uncompressed tar such as `docker export` writes");
}

/** Applies tar entries to the staging directory and the entry map, one at a time. */
class TreeWriter {
  private bytes = 0;
  private readonly maxEntries: number;
  private readonly maxBytes: number;
  private readonly progress: Progress;

  constructor(
    private readonly tree: Tree,
    opts: ExtractOptions,
    private readonly budget: MetadataBudget,
  ) {
    this.maxEntries = opts.maxEntries ?? 500_000;
    this.maxBytes = opts.maxBytes ?? 32 * 1024 ** 3;
    this.progress = opts.progress ?? noProgress;
  }

  async add(header: TarHeader, body: AsyncIterable<Buffer>, rawXattrs: Map<string, Buffer> | undefined): Promise<void> {
    orThrow(this.budget.spend([header.name, header.linkname]), invalidArgument);
    const path = orThrow(memberPath(header.name, "tar member"), invalidArgument);
    const type = entryType(header);
    if (path === "") {
      if (type !== "dir") throw invalidArgument("the tar's root entry is not a directory");
      return;
    }
    if (this.tree.entries.size >= this.maxEntries) throw invalidArgument(`the tar has more than ${this.maxEntries} entries`);
    await this.ensureParents(path);
    const entry = this.baseEntry(path, type, header, rawXattrs);
    const existing = this.tree.entries.get(path);
    if (existing) {
      if (existing.type === "dir" && type === "dir") return void this.tree.entries.set(path, entry);
      throw invalidArgument(`tar member ${shown(path)} appears twice`);
    }
    const abs = join(this.tree.dir, path);
    switch (type) {
      case "dir":
        mkdirSync(abs, { mode: 0o700 });
        break;
      case "file":
        await this.writeFile(abs, header.size ?? 0, body);
        break;
      case "symlink":
        entry.linkTarget = symlinkTarget(path, header.linkname);
        await symlink(entry.linkTarget, abs);
        break;
      case "hardlink":
        entry.linkTarget = this.hardlinkTarget(path, header.linkname);
        await link(join(this.tree.dir, entry.linkTarget), abs);
        break;
      case "chardev":
      case "blockdev":
        entry.devMajor = header.devmajor ?? 0;
        entry.devMinor = header.devminor ?? 0;
        break;
      case "fifo":
        break;
    }
    this.tree.entries.set(path, entry);
  }

  private baseEntry(path: string, type: TreeEntryType, header: TarHeader, rawXattrs: Map<string, Buffer> | undefined): TreeEntry {
    const entry: TreeEntry = {
      path,
      type,
      uid: idFrom(header.pax?.uid, header.uid, path),
      gid: idFrom(header.pax?.gid, header.gid, path),
      mode: (header.mode ?? 0o644) & 0o7777,
      mtime: mtimeSeconds(header.mtime),
    };
    const xattrs = orThrow(keptXattrs(rawXattrs), (reason) => invalidArgument(`tar member ${shown(path)}: ${reason}`));
    if (xattrs) entry.xattrs = xattrs;
    return entry;
  }

  /** Every ancestor must be a directory we made; missing ones are created root:root 0755. */
  private async ensureParents(path: string): Promise<void> {
    const parts = path.split("/");
    let sofar = "";
    for (const part of parts.slice(0, -1)) {
      sofar = sofar === "" ? part : `${sofar}/${part}`;
      const e = this.tree.entries.get(sofar);
      if (e) {
        if (e.type !== "dir") throw invalidArgument(`tar member ${shown(path)} lies under ${shown(sofar)}, which is a ${e.type}, not a directory`);
        continue;
      }
      if (this.tree.entries.size >= this.maxEntries) throw invalidArgument(`the tar has more than ${this.maxEntries} entries`);
      mkdirSync(join(this.tree.dir, sofar), { mode: 0o700 });
      this.tree.entries.set(sofar, { path: sofar, type: "dir", uid: 0, gid: 0, mode: 0o755, mtime: 0 });
    }
  }

  private async writeFile(abs: string, size: number, body: AsyncIterable<Buffer>): Promise<void> {
    if (!Number.isSafeInteger(size) || size < 0) throw invalidArgument("tar member has an invalid size");
    if (this.bytes + size > this.maxBytes) throw invalidArgument(`the tar holds more than ${humanBytes(this.maxBytes)} of files`);
    // Synchronous calls: one thread-pool round trip per open/write/close cost ~0.5 ms a file,
    // seconds for a workspace of 10k small files; each call here takes microseconds, and the
    // event loop runs between chunks. Measured (bench/extract-stage.ts, 10k files / 200 MiB):
    // writes queued through the pool without waiting (16-96 in flight) staged 1.2-1.4x slower
    // for the same event-loop delay (p99 ~12 ms, max ~50 ms on this shared host, either way).
    const fd = openSync(abs, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    try {
      for await (const chunk of body) {
        writeSync(fd, chunk);
        this.bytes += chunk.length;
      }
    } finally {
      closeSync(fd);
    }
    this.progress({ phase: "extract", done: this.bytes, message: `${this.tree.entries.size} entries` });
  }

  /** A hardlink must name an earlier regular file; chains resolve to that file. */
  private hardlinkTarget(path: string, linkname: string | null | undefined): string {
    if (!linkname) throw invalidArgument(`hardlink ${shown(path)} has no target`);
    const target = orThrow(memberPath(linkname, `hardlink target of ${shown(path)}:`), invalidArgument);
    const e = this.tree.entries.get(target);
    if (!e) throw invalidArgument(`hardlink ${shown(path)} points to ${shown(target)}, which is not earlier in the tar`);
    if (e.type === "hardlink" && e.linkTarget) return e.linkTarget;
    if (e.type !== "file") throw invalidArgument(`hardlink ${shown(path)} points to a ${e.type}, not a regular file`);
    return target;
  }
}

function entryType(header: TarHeader): TreeEntryType {
  switch (header.type) {
    case "file":
    case "contiguous-file":
      return "file";
    case "directory":
      return "dir";
    case "symlink":
      return "symlink";
    case "link":
      return "hardlink";
    case "character-device":
      return "chardev";
    case "block-device":
      return "blockdev";
    case "fifo":
      return "fifo";
    default:
      throw invalidArgument(`tar member ${shown(header.name)} has unsupported type ${String(header.type)}`);
  }
}

/** Symlink targets are stored as written (absolute ones resolve inside the image at run time). */
function symlinkTarget(path: string, linkname: string | null | undefined): string {
  return orThrow(linkTarget(linkname ?? "", `symlink target of ${shown(path)}:`), invalidArgument);
}

function idFrom(paxValue: string | undefined, headerValue: number | undefined, path: string): number {
  const id = paxValue !== undefined ? Number(paxValue) : (headerValue ?? 0);
  if (!Number.isSafeInteger(id) || id < 0 || id > MAX_ID) throw invalidArgument(`tar member ${shown(path)} has an invalid uid/gid`);
  return id;
}

function mtimeSeconds(mtime: Date | undefined): number {
  const s = mtime ? Math.floor(mtime.getTime() / 1000) : 0;
  return Number.isFinite(s) && s >= 0 && s <= 0xffffffff ? s : 0;
}
