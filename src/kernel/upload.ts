// `kernel import DIR|FILE.deb` across the socket. The daemon runs as root and anyone in the
// socket's group may call it, so it must never open a path a caller names: it would read
// /etc/shadow or /root/... for them. Instead the CLI reads what the user named, as the user,
// and sends the bytes as the call's input; the daemon stages them in a directory it owns and
// imports from there. Streaming beats asking the daemon to check the caller's rights: Node has
// no SO_PEERCRED, and a check-then-open as root races with the caller's own renames.
//
// What goes over the wire (the call's `$/input` bytes):
//   deb: the package's bytes as they are;
//   dir: an uncompressed tar of the directory's vmlinux, initrd.img (when there is one) and its
//        module files (modules/**/*.ko[.xz|.zst|.gz] and modules.builtin): regular files only,
//        read through symlinks on the CLI side, as the user.
// The daemon unpacks a dir upload with the hardened rootfs tar reader and takes regular files
// and directories only, so nothing it stages points outside its own directory.
import { constants, createWriteStream } from "node:fs";
import { access, mkdir, open, readdir, stat } from "node:fs/promises";
import { join, relative } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import tar from "tar-stream";
import { queueEntry } from "../util/tarpack.ts";
import { extractRootfsTar } from "../rootfs/index.ts";
import { BangerError, ErrorCode, invalidArgument } from "../util/errors.ts";
import { shown } from "../util/paths.ts";
import type { Progress } from "../util/progress.ts";
import { MAX_TREE_FILES } from "./modules.ts";

export type KernelUploadKind = "deb" | "dir";

/** A kernel source opened by the CLI: what it is, the path it was read from, and its bytes. */
export interface KernelSource {
  kind: KernelUploadKind;
  label: string;
  stream: Readable;
}

/** Largest .deb the daemon takes (Debian's generic kernel package is about 100 MiB). */
export const MAX_DEB_UPLOAD = 1024 ** 3;
/** Largest kernel directory upload: a vmlinux, an initrd and a module tree. */
export const MAX_DIR_UPLOAD = 4 * 1024 ** 3;
/** Files in the module tree plus vmlinux, initrd.img and the directories holding them. */
const MAX_DIR_ENTRIES = 2 * MAX_TREE_FILES + 16;
const MODULE_FILE = /(\.ko(\.(xz|zst|gz))?|^modules\.builtin)$/;
const DIR_HINT = "a kernel directory holds vmlinux, optionally initrd.img and modules/";

/** The one line for a path the user named that this process cannot read. */
export function cannotRead(path: string, err: unknown): BangerError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === "ENOENT") return invalidArgument(`${path} does not exist`, "pass a kernel directory or a linux-image-*.deb");
  const why = code === "EACCES" || code === "EPERM" ? "permission denied" : (err as Error).message;
  return new BangerError(ErrorCode.Failed, `cannot read ${path}: ${why}`);
}

/** CLI side: opens `path` (absolute) as the calling user; every read error is one line naming the file. */
export async function openKernelSource(path: string): Promise<KernelSource> {
  const st = await stat(path).catch((err: unknown) => Promise.reject(cannotRead(path, err)));
  if (st.isDirectory()) return { kind: "dir", label: path, stream: packKernelDir(await listKernelDir(path)) };
  if (!st.isFile()) throw invalidArgument(`${path} is neither a directory nor a file`, "pass a kernel directory or a linux-image-*.deb");
  const fh = await open(path, "r").catch((err: unknown) => Promise.reject(cannotRead(path, err)));
  return { kind: "deb", label: path, stream: fh.createReadStream() };
}

interface DirListing {
  dirs: string[];
  files: { rel: string; abs: string }[];
}

/** What of a kernel directory is sent, each file checked readable now so errors come before the upload. */
async function listKernelDir(dir: string): Promise<DirListing> {
  const out: DirListing = { dirs: [], files: [] };
  const vmlinux = await statIfPresent(join(dir, "vmlinux"));
  if (!vmlinux?.isFile()) throw invalidArgument(`${dir} has no vmlinux`, DIR_HINT);
  out.files.push({ rel: "vmlinux", abs: join(dir, "vmlinux") });
  if ((await statIfPresent(join(dir, "initrd.img")))?.isFile()) out.files.push({ rel: "initrd.img", abs: join(dir, "initrd.img") });
  const modules = join(dir, "modules");
  if ((await statIfPresent(modules))?.isDirectory()) {
    out.dirs.push("modules");
    const entries = await readdir(modules, { recursive: true, withFileTypes: true }).catch((err: unknown) => Promise.reject(cannotRead((err as NodeJS.ErrnoException).path ?? modules, err)));
    if (entries.length > MAX_TREE_FILES) throw invalidArgument(`${modules} holds more than ${MAX_TREE_FILES} files`);
    for (const e of entries) {
      const abs = join(e.parentPath ?? e.path, e.name);
      if (e.isFile() && MODULE_FILE.test(e.name)) out.files.push({ rel: join("modules", relative(modules, abs)), abs });
    }
  }
  for (const f of out.files) await access(f.abs, constants.R_OK).catch((err: unknown) => Promise.reject(cannotRead(f.abs, err)));
  return out;
}

/** stat through symlinks; undefined when nothing is there, one line when it cannot be read. */
async function statIfPresent(path: string) {
  return stat(path).catch((err: unknown) => ((err as NodeJS.ErrnoException).code === "ENOENT" ? undefined : Promise.reject(cannotRead(path, err))));
}

function packKernelDir(listing: DirListing): Readable {
  const pack = tar.pack();
  const header = { mode: 0o644, mtime: new Date(0), uid: 0, gid: 0 };
  const addFile = async (f: { rel: string; abs: string }) => {
    const fh = await open(f.abs, "r").catch((err: unknown) => Promise.reject(cannotRead(f.abs, err)));
    try {
      const { size } = await fh.stat(); // the size of what this handle reads, whatever the name points to now
      await new Promise<void>((resolve, reject) => {
        const sink = pack.entry({ ...header, name: f.rel, type: "file", size }, (err) => (err ? reject(err) : resolve()));
        pipeline(fh.createReadStream({ autoClose: false }), sink).catch((err: unknown) => reject(cannotRead(f.abs, err)));
      });
    } finally {
      await fh.close();
    }
  };
  void (async () => {
    for (const d of listing.dirs) queueEntry(pack, { ...header, mode: 0o755, name: d, type: "directory" });
    for (const f of listing.files) await addFile(f);
    pack.finalize();
  })().catch((err: unknown) => pack.destroy(err as Error));
  // tar-stream packs are streamx streams; the daemon client sends Node Readables.
  return Readable.from(pack as AsyncIterable<Buffer>);
}

/**
 * Daemon side: stages an upload under `workDir` (which the daemon owns) and returns the path to
 * import from: `<workDir>/package.deb` or `<workDir>/dir/`. Bounded in size and entries.
 */
export async function receiveKernelUpload(kind: KernelUploadKind, input: Readable, workDir: string, opts: { signal?: AbortSignal; progress?: Progress } = {}): Promise<string> {
  if (kind === "dir") {
    const dir = join(workDir, "dir");
    const tree = await extractRootfsTar(input, dir, { signal: opts.signal, progress: opts.progress, maxEntries: MAX_DIR_ENTRIES, maxBytes: MAX_DIR_UPLOAD });
    for (const e of tree.entries.values()) {
      if (e.type !== "file" && e.type !== "dir") throw invalidArgument(`the kernel directory sent holds a ${e.type} (${shown(e.path)})`, "only regular files and directories are taken");
    }
    return dir;
  }
  await mkdir(workDir, { recursive: true, mode: 0o700 });
  const deb = join(workDir, "package.deb");
  let total = 0;
  const bounded = async function* (source: AsyncIterable<Buffer>) {
    for await (const chunk of source) {
      total += chunk.length;
      if (total > MAX_DEB_UPLOAD) throw invalidArgument(`the package sent is larger than ${MAX_DEB_UPLOAD} bytes`);
      opts.progress?.({ phase: "upload", done: total });
      yield chunk;
    }
  };
  await pipeline(input, bounded, createWriteStream(deb, { flags: "wx", mode: 0o600 }), { signal: opts.signal });
  return deb;
}
