// Flattening OCI layers: apply each layer tar in order into a staging directory and return
// the Tree (see tree.ts) the ext4 builder re-applies. Layer content is untrusted, so: paths,
// link targets and xattr names pass the shared rule (util/paths.ts: no control bytes, not
// absolute, no "..", bounded); nothing is written through a symlink (parents are checked
// against what we created, the last component is opened with O_NOFOLLOW|O_EXCL); whiteouts
// and opaque markers only remove lower-layer entries; device nodes and fifos are metadata
// only (no file in the staging dir); sizes and entry counts are bounded; and on any failure
// the staging directory is removed.
import { closeSync, constants, openSync, writeSync } from "node:fs";
import { link, mkdir, readdir, rm, symlink } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import tar from "tar-stream";
import { BangerError, ErrorCode, cancelled, integrity, invalidArgument, resourceError } from "../util/errors.ts";
import { MetadataBudget, keptXattrs, linkTarget, memberPath, orThrow, parentOf, shown } from "../util/paths.ts";
import { PaxXattrSniffer } from "./paxsniff.ts";
import type { Tree, TreeEntry, TreeEntryType } from "./tree.ts";

/** A layer's uncompressed tar stream, or a function opening it when its turn comes. */
export type LayerSource = Readable | (() => Readable | Promise<Readable>);

export interface FlattenOptions {
  signal?: AbortSignal;
  /** Cap on tar entries over all layers. Default 2,000,000. */
  maxEntries?: number;
  /** Cap on file bytes written over all layers. Default 64 GiB. */
  maxBytes?: number;
  /** Cap on names, link targets and xattrs held over all layers. Default MAX_TREE_METADATA_BYTES. */
  maxMetadataBytes?: number;
}

const WHITEOUT = ".wh.";
const OPAQUE = ".wh..wh..opq";
const TAR_TYPES: Record<string, TreeEntryType> = {
  file: "file",
  "contiguous-file": "file",
  directory: "dir",
  symlink: "symlink",
  link: "hardlink",
  "character-device": "chardev",
  "block-device": "blockdev",
  fifo: "fifo",
};
const SPECIAL = new Set<TreeEntryType>(["chardev", "blockdev", "fifo"]);

/**
 * Applies `layers` (uncompressed tars, bottom first) into `stagingDir`, which must be absent
 * or empty, and returns the resulting Tree. On failure `stagingDir` is removed.
 */
export async function flattenLayers(layers: readonly LayerSource[], stagingDir: string, opts: FlattenOptions = {}): Promise<Tree> {
  await mkdir(stagingDir, { recursive: true, mode: 0o700 });
  if ((await readdir(stagingDir)).length > 0) throw invalidArgument(`staging directory ${stagingDir} is not empty`);
  const state = new Flattener(stagingDir, opts);
  try {
    for (let i = 0; i < layers.length; i++) {
      if (opts.signal?.aborted) throw cancelled();
      const source = layers[i]!;
      const stream = typeof source === "function" ? await source() : source;
      await state.applyLayer(stream, i);
    }
  } catch (err) {
    await rm(stagingDir, { recursive: true, force: true });
    throw err;
  }
  return { dir: stagingDir, entries: state.entries };
}

/** A tar-stream entry: its header plus the data stream. */
type Entry = AsyncIterable<unknown> & { header: tar.Header };

interface Meta {
  uid: number;
  gid: number;
  mode: number;
  mtime: number;
  xattrs?: Record<string, Buffer>;
}

class Flattener {
  readonly entries = new Map<string, TreeEntry>();
  /** Directory path ("" is the root) -> paths of its direct children. */
  private readonly children = new Map<string, Set<string>>([["", new Set()]]);
  /** Primary path -> hardlink paths pointing at it. */
  private readonly links = new Map<string, Set<string>>();
  /** Paths written by the layer being applied: whiteouts never remove those. */
  private layerPaths = new Set<string>();
  private layer = 0;
  private count = 0;
  private bytes = 0;
  private readonly budget: MetadataBudget;

  constructor(
    private readonly root: string,
    private readonly opts: FlattenOptions,
  ) {
    this.budget = new MetadataBudget(opts.maxMetadataBytes);
  }

  async applyLayer(stream: Readable, index: number): Promise<void> {
    this.layer = index;
    this.layerPaths = new Set();
    const sniffer = new PaxXattrSniffer(this.budget, (reason) => this.reject(reason));
    const extract = tar.extract();
    const fail = (err: Error) => extract.destroy(err);
    const onAbort = () => fail(cancelled());
    stream.on("error", fail);
    sniffer.on("error", fail);
    this.opts.signal?.addEventListener("abort", onAbort, { once: true });
    stream.pipe(sniffer).pipe(extract);
    try {
      for await (const entry of extract) {
        if (this.opts.signal?.aborted) throw cancelled();
        const offset = (entry.header as { byteOffset?: number }).byteOffset ?? -1;
        const xattrs = sniffer.xattrsByOffset.get(offset);
        sniffer.xattrsByOffset.delete(offset);
        await this.applyEntry(entry, xattrs);
      }
    } catch (err) {
      if (this.opts.signal?.aborted) throw cancelled();
      if (err instanceof BangerError) throw err;
      // A full disk while applying a layer is the host's problem, not the image's.
      const resource = resourceError(err, { path: this.root });
      if (resource) throw resource;
      // Host errors name host paths built from member names: shown, like every name.
      throw integrity(`layer ${index + 1}: not a valid tar: ${shown((err as Error).message)}`, "the image is corrupt; pull it again or report it");
    } finally {
      this.opts.signal?.removeEventListener("abort", onAbort);
      stream.destroy();
      sniffer.destroy();
    }
  }

  reject(message: string): BangerError {
    return new BangerError(ErrorCode.Integrity, `layer ${this.layer + 1}: ${message}`, "the image contains an unsafe or corrupt layer; it cannot be used");
  }

  private async applyEntry(entry: Entry, xattrs: Map<string, Buffer> | undefined): Promise<void> {
    const h = entry.header;
    if (++this.count > (this.opts.maxEntries ?? 2_000_000)) throw this.reject("too many entries");
    orThrow(this.budget.spend([h.name, h.linkname]), (reason) => this.reject(reason));
    const path = this.normalise(h.name, "path");
    const type = TAR_TYPES[h.type];
    const name = path.slice(path.lastIndexOf("/") + 1);
    if (path === "" || type === undefined) return drain(entry); // the root itself, or headers with no tree meaning
    if (name.startsWith(WHITEOUT)) {
      await drain(entry);
      return this.applyWhiteout(path, name);
    }
    const meta = metaOf(h, xattrs, this);
    await this.ensureParents(parentOf(path), meta.mtime);
    if (type === "dir") await this.writeDir(path, meta);
    else if (type === "file") await this.writeFile(path, meta, entry, h.size ?? 0);
    else if (type === "symlink") await this.writeSymlink(path, meta, h.linkname ?? "");
    else if (type === "hardlink") await this.writeHardlink(path, h.linkname ?? "");
    else await this.replace(path, { path, type, ...meta, devMajor: h.devmajor ?? 0, devMinor: h.devminor ?? 0 });
    await drain(entry);
    this.layerPaths.add(path);
  }

  /** Archive path -> "a/b/c" by the shared rule (util/paths.ts); refused, never rewritten. */
  normalise(raw: string, what: string): string {
    return orThrow(memberPath(raw, what), (reason) => this.reject(reason));
  }

  private async applyWhiteout(path: string, name: string): Promise<void> {
    const dir = parentOf(path);
    await this.ensureParents(dir, 0); // a marker's directory must be real (never a symlink)
    if (name === OPAQUE) return this.clearLower(dir);
    const target = join2(dir, name.slice(WHITEOUT.length));
    if (target === dir || name === `${WHITEOUT}.` || name === `${WHITEOUT}..`) throw this.reject(`invalid whiteout ${shown(path)}`);
    if (!this.layerPaths.has(target)) await this.removeAll(target);
  }

  /** Opaque directory: everything below `dir` that this layer did not write goes. */
  private async clearLower(dir: string): Promise<void> {
    for (const child of [...(this.children.get(dir) ?? [])]) {
      if (!this.layerPaths.has(child)) await this.removeAll(child);
      else if (this.entries.get(child)?.type === "dir") await this.clearLower(child);
    }
  }

  /** Every ancestor must be a directory we created; missing ones are created (0755 root). */
  private async ensureParents(dir: string, mtime: number): Promise<void> {
    if (dir === "") return;
    let prefix = "";
    for (const part of dir.split("/")) {
      prefix = join2(prefix, part);
      const e = this.entries.get(prefix);
      if (e?.type === "dir") continue;
      if (e?.type === "symlink") throw this.reject(`${shown(dir)} goes through the symlink ${shown(prefix)}`);
      if (e) throw this.reject(`${shown(dir)} goes through ${shown(prefix)}, which is a ${e.type}, not a directory`);
      await mkdir(join(this.root, prefix), { mode: 0o755 });
      this.add({ path: prefix, type: "dir", uid: 0, gid: 0, mode: 0o755, mtime });
    }
  }

  private async writeDir(path: string, meta: Meta): Promise<void> {
    const existing = this.entries.get(path);
    if (existing?.type === "dir") {
      this.entries.set(path, { path, type: "dir", ...meta }); // later layers override metadata
      return;
    }
    if (existing) await this.removeAll(path);
    await mkdir(join(this.root, path), { mode: (meta.mode & 0o777) | 0o700 });
    this.add({ path, type: "dir", ...meta });
  }

  private async writeFile(path: string, meta: Meta, entry: Entry, size: number): Promise<void> {
    this.bytes += size;
    if (this.bytes > (this.opts.maxBytes ?? 64 * 1024 ** 3)) throw this.reject("the layers hold more file data than allowed");
    if (this.entries.has(path)) await this.removeAll(path);
    const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
    // Synchronous open/write/close: image layers hold thousands of small files, and three
    // thread-pool round trips per file (awaited in turn) cost more than the writes themselves.
    const fd = openSync(join(this.root, path), flags, (meta.mode & 0o777) | 0o600);
    this.add({ path, type: "file", ...meta });
    try {
      for await (const chunk of entry) writeAllSync(fd, chunk as Buffer);
    } finally {
      closeSync(fd);
    }
  }

  private async writeSymlink(path: string, meta: Meta, target: string): Promise<void> {
    orThrow(linkTarget(target, `symlink target of ${shown(path)}:`), (reason) => this.reject(reason));
    if (this.entries.has(path)) await this.removeAll(path);
    await symlink(target, join(this.root, path)); // symlink(2) never follows the new name
    this.add({ path, type: "symlink", ...meta, linkTarget: target });
  }

  private async writeHardlink(path: string, rawTarget: string): Promise<void> {
    const target = this.normalise(rawTarget, "hardlink target");
    if (target === path) throw this.reject(`hardlink ${shown(path)} points at itself`);
    if (this.entries.has(path)) await this.removeAll(path);
    const te = this.entries.get(target);
    if (!te) throw this.reject(`hardlink ${shown(path)} points at ${shown(target)}, which does not exist`);
    if (te.type === "dir") throw this.reject(`hardlink ${shown(path)} points at the directory ${shown(target)}`);
    const primaryPath = te.type === "hardlink" ? te.linkTarget! : target;
    const primary = this.entries.get(primaryPath)!;
    // link(2) does not follow a symlink source; specials have no file to link.
    if (!SPECIAL.has(primary.type)) await link(join(this.root, primaryPath), join(this.root, path));
    this.add({ path, type: "hardlink", uid: primary.uid, gid: primary.gid, mode: primary.mode, mtime: primary.mtime, linkTarget: primaryPath });
    let set = this.links.get(primaryPath);
    if (!set) this.links.set(primaryPath, (set = new Set()));
    set.add(path);
  }

  /** Device nodes and fifos: metadata only. */
  private async replace(path: string, entry: TreeEntry): Promise<void> {
    if (this.entries.has(path)) await this.removeAll(path);
    this.add(entry);
  }

  private add(entry: TreeEntry): void {
    this.entries.set(entry.path, entry);
    this.children.get(parentOf(entry.path))!.add(entry.path);
    if (entry.type === "dir" && !this.children.has(entry.path)) this.children.set(entry.path, new Set());
  }

  /** Removes `path` and everything below it; hardlinks into the removed set are re-anchored. */
  private async removeAll(path: string): Promise<void> {
    if (!this.entries.has(path)) return;
    const removed: string[] = [];
    const collect = (p: string) => {
      removed.push(p);
      for (const c of this.children.get(p) ?? []) collect(c);
    };
    collect(path);
    await rm(join(this.root, path), { recursive: true, force: true }); // rm does not follow symlinks
    const gone = new Set(removed);
    const old = new Map(removed.map((p) => [p, this.entries.get(p)!]));
    for (const p of removed) {
      this.entries.delete(p);
      this.children.delete(p);
      this.layerPaths.delete(p);
      const e = old.get(p)!;
      if (e.type === "hardlink") this.links.get(e.linkTarget!)?.delete(p);
    }
    this.children.get(parentOf(path))?.delete(path);
    for (const p of removed) this.promoteSurvivor(p, old.get(p)!, gone);
  }

  /** The primary of a hardlink group went away: its first surviving link takes its place. */
  private promoteSurvivor(primaryPath: string, primary: TreeEntry, gone: Set<string>): void {
    const linked = this.links.get(primaryPath);
    if (!linked) return;
    this.links.delete(primaryPath);
    const [heir, ...rest] = [...linked].filter((l) => !gone.has(l));
    if (!heir) return;
    this.entries.set(heir, { ...primary, path: heir });
    for (const r of rest) this.entries.get(r)!.linkTarget = heir;
    if (rest.length > 0) this.links.set(heir, new Set(rest));
  }
}

function writeAllSync(fd: number, buf: Buffer): void {
  for (let off = 0; off < buf.length; ) off += writeSync(fd, buf, off, buf.length - off);
}

function join2(dir: string, name: string): string {
  return dir === "" ? name : `${dir}/${name}`;
}

async function drain(entry: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of entry) {
    /* discard */
  }
}

function paxNumber(pax: Record<string, string> | undefined, key: string): number | undefined {
  const v = pax?.[key];
  if (v === undefined) return undefined;
  const n = Number(v);
  return Number.isFinite(n) ? n : undefined;
}

function metaOf(h: tar.Header, xattrs: Map<string, Buffer> | undefined, f: Flattener): Meta {
  const pax = (h as { pax?: Record<string, string> }).pax;
  const uid = paxNumber(pax, "uid") ?? h.uid ?? 0;
  const gid = paxNumber(pax, "gid") ?? h.gid ?? 0;
  for (const id of [uid, gid]) {
    if (!Number.isSafeInteger(id) || id < 0 || id > 0xfffffffe) throw f.reject(`${shown(h.name)}: invalid owner id ${id}`);
  }
  const mtime = Math.floor(paxNumber(pax, "mtime") ?? (h.mtime ? h.mtime.getTime() / 1000 : 0));
  const meta: Meta = { uid, gid, mode: (h.mode ?? 0) & 0o7777, mtime: Number.isFinite(mtime) ? mtime : 0 };
  const kept = xattrsOf(xattrs, h.name, f);
  if (kept) meta.xattrs = kept;
  return meta;
}

function xattrsOf(xattrs: Map<string, Buffer> | undefined, name: string, f: Flattener): Record<string, Buffer> | undefined {
  return orThrow(keptXattrs(xattrs), (reason) => f.reject(`${shown(name)}: ${reason}`));
}
