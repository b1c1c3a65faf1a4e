// The archive a workspace copy streams: an ordered list of entries (each directory before
// what it holds) and a lazy tar producer that reads files only as the consumer pulls.
import { lstat, open, readdir, readlink, type FileHandle } from "node:fs/promises";
import { close as fsClose, constants as fsConstants, open as fsOpen, read as fsRead, type Stats } from "node:fs";
import { join, posix } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import tar from "tar-stream";
import { packEntry, type PackHeader } from "../util/tarpack.ts";
import { cancelled } from "../util/errors.ts";

export type Entry =
  | { kind: "dir"; name: string; mode: number; mtime: Date }
  | { kind: "file"; name: string; abs: string; mode: number; mtime: Date; size: number }
  | { kind: "symlink"; name: string; mode: number; mtime: Date; target: string }
  | { kind: "data"; name: string; mode: number; mtime: Date; data: Buffer };

export function joinName(prefix: string, path: string): string {
  return prefix === "." ? path : `${prefix}/${path}`;
}

/** The archive's entries in order, each directory before anything inside it. */
export class EntryList {
  readonly entries: Entry[] = [];
  private readonly names = new Set<string>();

  /** Adds a directory entry (root is "."); its metadata from `abs`, or defaults if absent. */
  async addDir(name: string, abs: string | undefined): Promise<void> {
    if (this.names.has(name)) return;
    const st = abs === undefined ? undefined : await lstat(abs).catch(() => undefined);
    await this.parents(name, abs);
    this.push({ kind: "dir", name, mode: st?.isDirectory() ? st.mode & 0o777 : 0o755, mtime: st?.mtime ?? new Date() });
  }

  /** Adds whatever is at `abs` (file, symlink or directory) as `name`; false when it does not exist. */
  async addPath(name: string, abs: string): Promise<boolean> {
    if (this.names.has(name)) return true;
    const st = await lstat(abs).catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT" || err.code === "ENOTDIR") return undefined;
      throw err;
    });
    if (!st) return false;
    await this.parents(name, abs);
    const entry = await toEntry(name, abs, st);
    if (entry) this.push(entry);
    return true;
  }

  async addData(name: string, data: Buffer, mtime: Date): Promise<void> {
    await this.parents(name, undefined);
    const i = this.entries.findIndex((e) => e.name === name);
    const entry: Entry = { kind: "data", name, mode: 0o644, mtime, data };
    if (i >= 0) this.entries[i] = entry;
    else this.push(entry);
  }

  /**
   * Adds everything under the directory `abs` (already added as `name`) that `keep` accepts;
   * `keep` sees each entry's stat, so it can refuse a directory (and what is under it).
   */
  async walk(name: string, abs: string, keep: (name: string, st: Stats) => boolean, signal?: AbortSignal): Promise<void> {
    for (const child of (await readdir(abs)).sort()) {
      if (signal?.aborted) throw cancelled();
      const childName = joinName(name, child);
      const childAbs = join(abs, child);
      const st = await lstat(childAbs).catch(() => undefined);
      if (!st || !keep(childName, st)) continue;
      await this.addPath(childName, childAbs);
      if (st.isDirectory()) await this.walk(childName, childAbs, keep, signal);
    }
  }

  /** Makes sure every ancestor directory of `name` precedes it (so the guest owns them too). */
  private async parents(name: string, abs: string | undefined): Promise<void> {
    if (name === ".") return;
    const dir = posix.dirname(name);
    if (this.names.has(dir)) return;
    await this.addDir(dir, abs === undefined ? undefined : join(abs, ".."));
  }

  private push(e: Entry): void {
    this.names.add(e.name);
    this.entries.push(e);
  }
}

async function toEntry(name: string, abs: string, st: Stats): Promise<Entry | undefined> {
  const mode = st.mode & 0o777;
  if (st.isDirectory()) return { kind: "dir", name, mode, mtime: st.mtime };
  if (st.isSymbolicLink()) return { kind: "symlink", name, mode, mtime: st.mtime, target: await readlink(abs) };
  if (st.isFile()) return { kind: "file", name, abs, mode, mtime: st.mtime, size: st.size };
  return undefined; // sockets, fifos, devices: nothing to copy
}

/**
 * Produces the tar lazily, with the consumer's backpressure. Small files are read a few
 * ahead (copying many small files is bound by open/read latency, not bandwidth); large
 * ones are streamed in chunks. Memory stays bounded by READ_AHEAD * SMALL_FILE.
 */
export function streamEntries(entries: readonly Entry[], signal?: AbortSignal): Readable {
  const pack = tar.pack();
  // A failure reaches whoever reads the stream; without this, one before anyone reads would crash the process.
  pack.on("error", () => undefined);
  const onAbort = () => pack.destroy(cancelled());
  signal?.addEventListener("abort", onAbort, { once: true });
  const ahead = new Map<number, Promise<Buffer | undefined>>();
  const readAhead = (i: number) => {
    const e = entries[i];
    if (e?.kind !== "file" || e.size > SMALL_FILE || ahead.has(i)) return;
    const p = readSmallFile(e);
    p.catch(() => undefined); // awaited in order below; a failure after an abort is nobody's
    ahead.set(i, p);
  };
  void (async () => {
    for (let i = 0; i < entries.length; i++) {
      if (signal?.aborted) throw cancelled();
      for (let j = i; j < i + READ_AHEAD; j++) readAhead(j);
      const e = entries[i]!;
      const small = ahead.get(i);
      ahead.delete(i);
      if (small) {
        const data = await small;
        if (data) await packEntry(pack, headerOf(e, data.length), data);
      } else await writeEntry(pack, e);
    }
    pack.finalize();
  })()
    .catch((err: unknown) => pack.destroy(err as Error))
    .finally(() => signal?.removeEventListener("abort", onAbort));
  return pack as unknown as Readable;
}

/** Files up to this size are read whole, ahead of time; larger ones are streamed. */
const SMALL_FILE = 256 * 1024;
const READ_AHEAD = 32;

function headerOf(e: Entry, size?: number): PackHeader {
  const base = { name: e.kind === "dir" ? `${e.name}/` : e.name, mode: e.mode, mtime: e.mtime, uid: 0, gid: 0 };
  if (e.kind === "dir") return { ...base, type: "directory" };
  if (e.kind === "symlink") return { ...base, type: "symlink", linkname: e.target };
  return { ...base, type: "file", size: size ?? (e.kind === "data" ? e.data.length : e.size) };
}

async function writeEntry(pack: tar.Pack, e: Entry): Promise<void> {
  if (e.kind === "data") return packEntry(pack, headerOf(e), e.data);
  if (e.kind !== "file") return packEntry(pack, headerOf(e));
  const fh = await openIfPresent(e.abs);
  if (!fh) return;
  try {
    await new Promise<void>((res, rej) => {
      const sink = pack.entry(headerOf(e), (err) => (err ? rej(err) : res()));
      pipeline(Readable.from(exactBytes(fh, e.size)), sink).catch(rej);
    });
  } finally {
    await fh.close();
  }
}

/**
 * The whole of a small file (exactly its listed size, like exactBytes), or undefined when it
 * vanished since listing. Plain descriptors, not FileHandles: for thousands of small files
 * the FileHandle machinery costs more than the reads (measured: ~5x for 10k files).
 */
async function readSmallFile(e: Extract<Entry, { kind: "file" }>): Promise<Buffer | undefined> {
  const fd = await new Promise<number | undefined>((res, rej) =>
    fsOpen(e.abs, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW, (err, fd) => (err?.code === "ENOENT" ? res(undefined) : err ? rej(err) : res(fd))),
  );
  if (fd === undefined) return undefined;
  try {
    const buf = Buffer.allocUnsafe(e.size);
    let got = 0;
    while (got < e.size) {
      const n = await new Promise<number>((res, rej) => fsRead(fd, buf, got, e.size - got, null, (err, n) => (err ? rej(err) : res(n))));
      if (n === 0) break;
      got += n;
    }
    return buf.fill(0, got); // a file that shrank is zero-padded: the header promised size bytes
  } finally {
    await new Promise<void>((res) => fsClose(fd, () => res()));
  }
}

/** A file that vanished since listing (an edit, a concurrent `git gc`) is left out. */
async function openIfPresent(abs: string): Promise<FileHandle | undefined> {
  return open(abs, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return undefined;
    throw err;
  });
}

/** Exactly `size` bytes of the file (the header already promised them): cut if it grew, zero-padded if it shrank. */
async function* exactBytes(fh: FileHandle, size: number): AsyncGenerator<Buffer> {
  let left = size;
  while (left > 0) {
    const buf = Buffer.allocUnsafe(Math.min(left, 256 * 1024));
    const { bytesRead } = await fh.read(buf, 0, buf.length, null);
    if (bytesRead === 0) {
      yield Buffer.alloc(left);
      return;
    }
    left -= bytesRead;
    yield buf.subarray(0, bytesRead);
  }
}
