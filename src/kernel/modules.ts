// Choosing the kernel modules a guest needs. Dependencies come from each module's own
// `.modinfo` ELF section (`depends=`), which every .ko carries; Debian packages ship no
// modules.dep (depmod runs at install time), so this works for packages and directories
// alike. Modules built into the kernel (modules.builtin) need no file.
import { readFile, readdir, stat } from "node:fs/promises";
import { join, relative } from "node:path";
import { invalidArgument } from "../util/errors.ts";
import { shown } from "../util/paths.ts";
import { compressionOfName, decodeToFile } from "./decode.ts";

/**
 * What the guest needs: virtio transports and devices, vsock for the agent channel, ext4 for
 * the root disk. crc32c_generic is named explicitly because ext4 asks for the "crc32c"
 * algorithm through the crypto API at mount time, which modinfo's `depends` does not show.
 */
export const GUEST_MODULES = [
  "virtio_mmio",
  "virtio_pci",
  "virtio_blk",
  "virtio_net",
  "virtio_console",
  "vsock",
  "vmw_vsock_virtio_transport_common",
  "vmw_vsock_virtio_transport",
  "crc32c_generic",
  "ext4",
] as const;

const MAX_MODULE_BYTES = 64 * 1024 * 1024;
/**
 * All the modules one guest needs, decoded (a real set is a few MiB): they are written to the
 * kernel directory and read whole into the initramfs, so a dependency chain of big modules
 * would otherwise fill the disk and the daemon's memory.
 */
const MAX_MODULES_TOTAL = 256 * 1024 * 1024;
export const MAX_TREE_FILES = 20_000;
/** A real modules.builtin is a few KiB; it is read whole, so no more than this. */
const MAX_BUILTIN_BYTES = 1024 * 1024;
/** A module name (after '-' -> '_'); Linux's own are shorter than 64 bytes (MODULE_NAME_LEN). */
const MODULE_NAME = /^[A-Za-z0-9_]{1,64}$/;

/** One module file found in a tree. */
export interface ModuleFile {
  name: string;
  /** Absolute path of the (possibly compressed) file. */
  path: string;
}

/** Module name from a file name: "vmw_vsock_virtio_transport.ko.xz" -> same without suffix, '-' -> '_'. */
export function moduleNameOf(fileName: string): string {
  return fileName.replace(/\.ko(\.(xz|zst|gz))?$/, "").replace(/-/g, "_");
}

/** Finds every .ko[.xz|.zst|.gz] under `dir` (no symlinks followed). */
export async function scanModuleTree(dir: string): Promise<Map<string, ModuleFile>> {
  const found = new Map<string, ModuleFile>();
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  if (entries.length > MAX_TREE_FILES) throw invalidArgument(`${dir} holds more than ${MAX_TREE_FILES} files`);
  for (const e of entries) {
    if (!e.isFile() || !/\.ko(\.(xz|zst|gz))?$/.test(e.name)) continue;
    const name = moduleNameOf(e.name);
    if (!found.has(name)) found.set(name, { name, path: join(e.parentPath ?? e.path, e.name) });
  }
  return found;
}

/** Module names listed in modules.builtin ("kernel/fs/ext4/ext4.ko" -> "ext4"). */
export async function readBuiltin(treeDir: string): Promise<Set<string>> {
  const path = join(treeDir, "modules.builtin");
  const size = await stat(path).then(
    (st) => st.size,
    () => 0,
  );
  if (size > MAX_BUILTIN_BYTES) throw invalidArgument(`modules.builtin is larger than ${MAX_BUILTIN_BYTES} bytes`);
  const text = await readFile(path, "utf8").catch(() => "");
  return new Set(
    text
      .split("\n")
      .filter(Boolean)
      .map((l) => moduleNameOf(l.slice(l.lastIndexOf("/") + 1))),
  );
}

/** The NUL-separated key=value strings of an ELF64 little-endian module's .modinfo section. */
export function readModinfo(ko: Buffer, what: string): Map<string, string[]> {
  const bad = (why: string) => invalidArgument(`${what} is not a usable kernel module: ${why}`);
  if (ko.length < 64 || ko.readUInt32BE(0) !== 0x7f454c46) throw bad("not an ELF file");
  if (ko[4] !== 2 || ko[5] !== 1) throw bad("only 64-bit little-endian modules are supported");
  const shoff = Number(ko.readBigUInt64LE(0x28));
  const shentsize = ko.readUInt16LE(0x3a);
  const shnum = ko.readUInt16LE(0x3c);
  const shstrndx = ko.readUInt16LE(0x3e);
  if (shentsize < 64 || shstrndx >= shnum || shoff + shnum * shentsize > ko.length) throw bad("corrupt section table");
  const section = (i: number) => {
    const at = shoff + i * shentsize;
    const offset = Number(ko.readBigUInt64LE(at + 0x18));
    const size = Number(ko.readBigUInt64LE(at + 0x20));
    if (offset + size > ko.length) throw bad("a section lies outside the file");
    return { nameOff: ko.readUInt32LE(at), data: ko.subarray(offset, offset + size) };
  };
  const names = section(shstrndx).data;
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    const end = names.indexOf(0, s.nameOff);
    if (names.toString("latin1", s.nameOff, end < 0 ? names.length : end) !== ".modinfo") continue;
    const info = new Map<string, string[]>();
    for (const item of s.data.toString("latin1").split("\0")) {
      const eq = item.indexOf("=");
      if (eq <= 0) continue;
      const key = item.slice(0, eq);
      info.set(key, [...(info.get(key) ?? []), item.slice(eq + 1)]);
    }
    return info;
  }
  throw bad("no .modinfo section");
}

export interface ResolvedModules {
  /** Load order: every module after the modules it depends on. */
  order: string[];
  /** Wanted modules that are neither files nor listed as built in (the kernel may lack them). */
  notFound: string[];
}

/**
 * Copies the wanted modules and their dependencies, decompressed, to `<outDir>/<name>.ko`,
 * and returns them in load order. A dependency that is missing is an error; a wanted module
 * that is missing is reported (it is built in, or this kernel does not have it).
 */
export async function collectModules(available: Map<string, ModuleFile>, builtin: Set<string>, wanted: readonly string[], outDir: string, signal?: AbortSignal): Promise<ResolvedModules> {
  const order: string[] = [];
  const notFound: string[] = [];
  const state = new Map<string, "visiting" | "done">();
  let decoded = 0;
  const visit = async (name: string, neededBy: string | undefined): Promise<void> => {
    if (state.get(name) === "done" || builtin.has(name)) return;
    if (state.get(name) === "visiting") throw invalidArgument(`kernel modules ${name} and ${neededBy} depend on each other`);
    const file = available.get(name);
    if (!file) {
      if (neededBy) throw invalidArgument(`module ${neededBy} needs ${name}, which the kernel's module tree lacks`);
      notFound.push(name);
      return;
    }
    state.set(name, "visiting");
    const out = join(outDir, `${name}.ko`);
    const left = MAX_MODULES_TOTAL - decoded;
    const tooMuch = left < MAX_MODULE_BYTES ? `the guest's modules decode to more than ${MAX_MODULES_TOTAL} bytes` : undefined;
    decoded += await decodeToFile(compressionOfName(file.path), await readBounded(file.path), out, Math.min(MAX_MODULE_BYTES, left), signal, tooMuch);
    const info = readModinfo(await readFile(out), relative(outDir, out));
    const deps = (info.get("depends") ?? [])
      .flatMap((d) => d.split(","))
      .filter(Boolean)
      .map(moduleNameOf);
    const bad = deps.find((d) => !MODULE_NAME.test(d));
    if (bad !== undefined) throw invalidArgument(`module ${name} depends on ${shown(bad)}, which is not a module name`);
    for (const dep of deps) await visit(dep, name);
    state.set(name, "done");
    order.push(name);
  };
  for (const name of wanted) await visit(name, undefined);
  return { order, notFound };
}

async function readBounded(path: string): Promise<Buffer> {
  if ((await stat(path)).size > MAX_MODULE_BYTES) throw invalidArgument(`${shown(path)} is larger than ${MAX_MODULE_BYTES} bytes`);
  return readFile(path);
}
