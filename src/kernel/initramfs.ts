// The initramfs banger generates for distro kernels: a newc cpio written here (the format is
// small and fixed), holding the agent as /init, the kernel modules the guest needs and their
// load order. The agent, running as the initramfs init, loads INITRAMFS_MODULES_LIST in order
// from INITRAMFS_MODULES_DIR, mounts `banger.root=` and switches root (agent/init.go).
// Deterministic: fixed inode numbers, owner 0:0, mtime 0, sorted as listed.
import { createHash } from "node:crypto";
import { mkdir, open, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { createGzip } from "node:zlib";
import { pipeline } from "node:stream/promises";
import { Readable } from "node:stream";
import { cancelled, invalidArgument } from "../util/errors.ts";

export const INITRAMFS_INIT = "/init";
export const INITRAMFS_MODULES_DIR = "/lib/banger/modules";
/** One module file name per line ("virtio_ring.ko"), in load order. */
export const INITRAMFS_MODULES_LIST = "/lib/banger/modules.list";
export const INITRAMFS_NEWROOT = "/newroot";

export interface InitramfsModule {
  /** Module name; the file is stored as `<name>.ko`. */
  name: string;
  /** An uncompressed .ko on disk. */
  path: string;
}

export interface BuildInitramfsOptions {
  agentPath: string;
  /** In load order. */
  modules: readonly InitramfsModule[];
  outPath: string;
  /** "none" (default: fastest to unpack under TCG) or "gzip". */
  compression?: "none" | "gzip";
  signal?: AbortSignal;
}

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFCHR = 0o020000;

interface CpioMember {
  name: string;
  mode: number;
  data?: Buffer;
  rdev?: [number, number];
}

/** Writes the initramfs to `outPath` (atomically, via a temporary file beside it). */
export async function buildInitramfs(opts: BuildInitramfsOptions): Promise<void> {
  const members: CpioMember[] = [
    { name: "dev", mode: S_IFDIR | 0o755 },
    { name: "dev/console", mode: S_IFCHR | 0o600, rdev: [5, 1] },
    { name: "proc", mode: S_IFDIR | 0o755 },
    { name: "sys", mode: S_IFDIR | 0o755 },
    { name: "newroot", mode: S_IFDIR | 0o755 },
    { name: "lib", mode: S_IFDIR | 0o755 },
    { name: "lib/banger", mode: S_IFDIR | 0o755 },
    { name: "lib/banger/modules", mode: S_IFDIR | 0o755 },
    { name: "init", mode: S_IFREG | 0o755, data: await readRegular(opts.agentPath) },
  ];
  for (const m of opts.modules) {
    if (!/^[A-Za-z0-9_-]+$/.test(m.name)) throw invalidArgument(`bad module name ${JSON.stringify(m.name)}`);
    members.push({ name: `lib/banger/modules/${m.name}.ko`, mode: S_IFREG | 0o644, data: await readRegular(m.path) });
  }
  const list = opts.modules.map((m) => `${m.name}.ko\n`).join("");
  members.push({ name: "lib/banger/modules.list", mode: S_IFREG | 0o644, data: Buffer.from(list) });

  const tmp = join(dirname(opts.outPath), `.${basename(opts.outPath)}.tmp-${process.pid}`);
  const fh = await open(tmp, "wx", 0o644);
  try {
    const body = Readable.from(cpioChunks(members));
    const out = fh.createWriteStream();
    if (opts.compression === "gzip") await pipeline(body, createGzip({ level: 9 }), out, { signal: opts.signal });
    else await pipeline(body, out, { signal: opts.signal });
    await rename(tmp, opts.outPath);
  } catch (err) {
    await rm(tmp, { force: true });
    throw opts.signal?.aborted ? cancelled() : err;
  } finally {
    await fh.close().catch(() => undefined);
  }
}

/**
 * A newc archive holding only /init = `agentPath`. Appended to one of our initramfs images it
 * replaces the agent the kernel was imported with (the kernel unpacks concatenated archives
 * in order; a later file of the same name overwrites the earlier one).
 */
async function agentOverlay(agentPath: string): Promise<Buffer> {
  return Buffer.concat([...cpioChunks([{ name: "init", mode: S_IFREG | 0o755, data: await readRegular(agentPath) }])]);
}

/** Whether `path` starts like an initramfs this module wrote (uncompressed, agent as /init). */
async function isBangerInitramfs(path: string): Promise<boolean> {
  const fh = await open(path, "r");
  try {
    const head = Buffer.alloc(1024);
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    const text = head.subarray(0, bytesRead).toString("latin1");
    return text.startsWith("070701") && text.includes("lib/banger/modules\0");
  } finally {
    await fh.close();
  }
}

export interface BootInitramfsOptions {
  /** The kernel's initrd.img. */
  initrd: string;
  /** The agent the daemon ships (guest/agentbin). */
  agentPath: string;
  /** Where combined images are kept: one per kernel, rebuilt when either part changes. */
  cacheDir: string;
  kernelName: string;
}

/**
 * The initramfs to boot with: ours with the current agent appended (so a kernel imported by
 * an older banger still boots the daemon's agent), or `initrd` itself when it is not one of
 * ours (a distro initramfs keeps its own /init).
 */
export async function bootInitramfs(opts: BootInitramfsOptions): Promise<string> {
  if (!(await isBangerInitramfs(opts.initrd))) return opts.initrd;
  const [a, b] = await Promise.all([stat(opts.initrd), stat(opts.agentPath)]);
  const key = createHash("sha256")
    .update(JSON.stringify([opts.initrd, a.size, a.mtimeMs, a.ino, opts.agentPath, b.size, b.mtimeMs, b.ino]))
    .digest("hex")
    .slice(0, 16);
  const out = join(opts.cacheDir, `${opts.kernelName}-${key}.img`);
  if (
    await stat(out).then(
      () => true,
      () => false,
    )
  )
    return out;
  await mkdir(opts.cacheDir, { recursive: true });
  const tmp = `${out}.tmp-${process.pid}-${Date.now()}`;
  try {
    await writeFile(tmp, Buffer.concat([await readFile(opts.initrd), await agentOverlay(opts.agentPath)]), { mode: 0o644 });
    await rename(tmp, out);
  } finally {
    await rm(tmp, { force: true });
  }
  await removeBootInitramfs(opts.cacheDir, opts.kernelName, out);
  return out;
}

/** Removes the boot images bootInitramfs kept for `kernelName` (but `keep`): after a rebuild, or with the kernel. */
export async function removeBootInitramfs(cacheDir: string, kernelName: string, keep?: string): Promise<void> {
  const ours = (name: string) => name.length === kernelName.length + 21 && name.startsWith(`${kernelName}-`) && /-[0-9a-f]{16}\.img$/.test(name);
  for (const name of await readdir(cacheDir).catch(() => [] as string[])) {
    if (ours(name) && join(cacheDir, name) !== keep) await rm(join(cacheDir, name), { force: true });
  }
}

async function readRegular(path: string): Promise<Buffer> {
  const st = await stat(path);
  if (!st.isFile()) throw invalidArgument(`${path} is not a regular file`);
  return readFile(path);
}

function* cpioChunks(members: CpioMember[]): Generator<Buffer> {
  let ino = 1;
  for (const m of members) yield* cpioEntry(ino++, m);
  yield* cpioEntry(0, { name: "TRAILER!!!", mode: 0 });
}

/** One newc record: "070701", 13 eight-digit hex fields, name + NUL, data, each 4-byte aligned. */
function* cpioEntry(ino: number, m: CpioMember): Generator<Buffer> {
  const data = m.data ?? Buffer.alloc(0);
  const name = Buffer.from(`${m.name}\0`);
  const nlink = (m.mode & 0o170000) === S_IFDIR ? 2 : 1;
  const fields = [ino, m.mode, 0, 0, nlink, 0, data.length, 0, 0, m.rdev?.[0] ?? 0, m.rdev?.[1] ?? 0, name.length, 0];
  const header = Buffer.from(`070701${fields.map((f) => f.toString(16).padStart(8, "0")).join("")}`, "latin1");
  yield Buffer.concat([header, name, pad(header.length + name.length)]);
  if (data.length > 0) yield Buffer.concat([data, pad(data.length)]);
}

const pad = (n: number) => Buffer.alloc((4 - (n % 4)) % 4);
