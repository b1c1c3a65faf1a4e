// The debugfs script that re-applies what the staging files could not carry (owners, modes
// with setuid/setgid/sticky, devices and fifos, xattrs), and running it.
//
// Image paths and xattr names come from untrusted images, so this script is written to be
// inert by construction. How debugfs reads it (e2fsprogs 1.47, checked in the sources):
// - debugfs.c source_file: fgets into a BUFSIZ (8 KiB) buffer, the line cut at its first \n
//   or \r; a line starting with '#' is a comment; ss_execute_line runs a line starting with
//   '!' through system(3). So a newline or carriage return inside a name would start a new
//   command (`!cmd` runs on the host, `dump`/`write` read and write host files), and a line
//   longer than 8 KiB would be split and its tail run as a command.
// - lib/ss/parse.c: inside "..." every byte but '"' and NUL is literal, '""' is one '"'.
// - ea_set parses options with glibc getopt, which permutes: an argument starting with '-'
//   anywhere on the line is an option (`-f /etc/shadow` would read a host file).
// - string_to_inode reads "<N>" as inode number N.
// The rules that follow, each enforced here by throwing (util/paths.ts already refused such
// names at ingest; this is the second wall): every argument is quoted with '"' doubled and
// holds no control byte (no NUL, 0x01-0x1f, 0x7f), so it can neither end its line nor its
// quotes; every untrusted argument starts with '/' (an image path) or an allowed xattr
// namespace ("user.", "security."), so it is never an option nor "<N>", and ea_set also gets
// `--` before them; no line reaches MAX_LINE_BYTES. The script goes to disk as it is made and
// stops at MAX_SCRIPT_BYTES (lines repeat their paths: it may be many times the tree's
// metadata). The one bare name is mknod's (it links its literal argument into the current
// directory): do_mknod reads argv[1] as the name and parses no options, so it is still only a name. (Linking a fixed-name node into place with
// `ln` would avoid it, but debugfs's `ln` never grows a full directory: make_link calls
// ext2fs_link without EXT2FS_LINK_EXPAND, and /dev holds many nodes.)
import { createHash } from "node:crypto";
import { type FileHandle, open, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { BangerError, ErrorCode, invalidArgument } from "../util/errors.ts";
import { runChecked } from "../util/exec.ts";
import { KEPT_XATTR_NAMESPACES, parentOf, shown } from "../util/paths.ts";
import type { Tree, TreeEntry } from "./tree.ts";

/** What `mkfs.ext4 -d` will copy from the staging directory's own metadata. */
export interface StagingStamp {
  /** True when staging owners were set to the entries' (we run as root). */
  owners: boolean;
  uid: number;
  gid: number;
}

const TYPE_BITS: Record<TreeEntry["type"], number> = {
  file: 0o100000,
  hardlink: 0o100000,
  dir: 0o040000,
  symlink: 0o120000,
  chardev: 0o020000,
  blockdev: 0o060000,
  fifo: 0o010000,
};

/** Well under fgets' BUFSIZ (8192, counting the newline and NUL). */
export const MAX_LINE_BYTES = 8000;
/** The whole script: a large real image (500k entries, a daemon not running as root) needs a few hundred MiB. */
export const MAX_SCRIPT_BYTES = 2 * 1024 ** 3;
const FLUSH_BYTES = 1024 * 1024;
/**
 * Distinct xattr values (one work file each, which ea_set -f reads). Values repeat (an
 * SELinux image labels every file with a handful), so each distinct one is written once.
 */
export const MAX_XATTR_VALUES = 100_000;

export interface ScriptLimits {
  maxBytes?: number;
  maxXattrValues?: number;
}
const CONTROL = /[\x00-\x1f\x7f]/;

/** The permission bits a staging file gets on the host (never setuid; the owner can always read). */
export function hostMode(e: TreeEntry, owners: boolean): number {
  const perm = e.mode & 0o777;
  return owners ? perm : perm | (e.type === "dir" ? 0o700 : 0o600);
}

function notInert(what: string, value: string, why: string): BangerError {
  return new BangerError(ErrorCode.Failed, `refusing to put ${what} ${shown(value)} in a debugfs script: ${why}`, "this is a bug in banger's image builder; please report it");
}

/** One quoted argument; throws unless it holds no control byte and starts as `must` says. */
function arg(what: string, value: string, startsOk: boolean): string {
  if (CONTROL.test(value)) throw notInert(what, value, "it contains a control byte");
  if (!startsOk) throw notInert(what, value, "it could be read as an option or an inode number");
  return `"${value.replace(/"/g, '""')}"`;
}

/** An absolute path: an image path ("/" + a tree path) or one of our own work files. */
export function pathArg(path: string): string {
  return arg("path", path, path.startsWith("/"));
}

export function xattrArg(name: string): string {
  return arg(
    "xattr name",
    name,
    KEPT_XATTR_NAMESPACES.some((ns) => name.startsWith(ns) && name.length > ns.length),
  );
}

/** mknod's bare name (see the header): one path component, never "." or "..". */
export function nodeNameArg(name: string): string {
  return arg("node name", name, name !== "" && name !== "." && name !== ".." && !name.includes("/"));
}

/**
 * Writes script lines to `fh` as they are made, refusing any line that fgets would split and
 * a script past `maxBytes`: every ea_set line repeats its path, so a tree's script may be many
 * times its metadata, and it must cost neither that much memory nor unbounded disk.
 */
class Script {
  private pending: string[] = ["sif / uid 0", "sif / gid 0", "sif / mode 040755"];
  private pendingBytes = 0;
  private bytes = 0;

  constructor(
    private readonly fh: FileHandle,
    private readonly maxBytes: number,
  ) {}

  async push(path: string, ...lines: string[]): Promise<void> {
    for (const line of lines) {
      const size = Buffer.byteLength(line);
      if (size >= MAX_LINE_BYTES) throw invalidArgument(`image path ${shown(`/${path}`)} is too long for the image builder (its debugfs line would pass ${MAX_LINE_BYTES} bytes)`);
      this.bytes += size + 1;
      if (this.bytes > this.maxBytes) throw invalidArgument(`the image's debugfs script would pass ${this.maxBytes} bytes (too many long paths or xattrs)`);
      this.pending.push(line);
      this.pendingBytes += size + 1;
      if (this.pendingBytes >= FLUSH_BYTES) await this.flush();
    }
  }

  async flush(): Promise<void> {
    if (this.pending.length > 0) await this.fh.write(`${this.pending.join("\n")}\n`);
    this.pending = [];
    this.pendingBytes = 0;
  }
}

/** One work file per distinct xattr value, at most `max` of them. */
class XattrValues {
  private readonly files = new Map<string, string>();

  constructor(
    private readonly work: string,
    private readonly max: number,
  ) {}

  async fileFor(value: Buffer): Promise<string> {
    const key = createHash("sha256").update(value).digest("hex");
    const known = this.files.get(key);
    if (known) return known;
    if (this.files.size >= this.max) throw invalidArgument(`the image has more than ${this.max} distinct xattr values`);
    const file = join(this.work, `xattr-${this.files.size}`);
    await writeFile(file, value, { flag: "wx" });
    this.files.set(key, file);
    return file;
  }
}

/** Writes the debugfs script (and xattr value files) into `work`; returns the script path. */
export async function writeDebugfsScript(tree: Tree, work: string, host: StagingStamp, limits: ScriptLimits = {}): Promise<string> {
  const path = join(work, "ownership.debugfs");
  const fh = await open(path, "wx", 0o600);
  try {
    const values = new XattrValues(work, limits.maxXattrValues ?? MAX_XATTR_VALUES);
    await writeScript(tree, host, new Script(fh, limits.maxBytes ?? MAX_SCRIPT_BYTES), values);
  } finally {
    await fh.close();
  }
  return path;
}

async function writeScript(tree: Tree, host: StagingStamp, script: Script, values: XattrValues): Promise<void> {
  const sorted = [...tree.entries.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  for (const e of sorted) {
    if (e.type === "hardlink") continue; // shares its target's inode
    const p = pathArg(`/${e.path}`);
    const special = e.type === "chardev" || e.type === "blockdev" || e.type === "fifo";
    if (special) {
      const spec = e.type === "fifo" ? "p" : `${e.type === "chardev" ? "c" : "b"} ${e.devMajor ?? 0} ${e.devMinor ?? 0}`;
      const base = e.path.slice(e.path.lastIndexOf("/") + 1);
      await script.push(e.path, `cd ${pathArg(`/${parentOf(e.path)}`)}`, `mknod ${nodeNameArg(base)} ${spec}`, "cd /");
    }
    const copied = !special && host.owners;
    if (!copied && (special || e.uid !== host.uid)) await script.push(e.path, `sif ${p} uid ${e.uid}`);
    if (!copied && (special || e.gid !== host.gid)) await script.push(e.path, `sif ${p} gid ${e.gid}`);
    const symlinkMode = e.type === "symlink" && (e.mode & 0o7777) !== 0o777;
    if (special || (e.mode & 0o7000) !== 0 || symlinkMode || (e.type !== "symlink" && hostMode(e, host.owners) !== (e.mode & 0o777))) {
      await script.push(e.path, `sif ${p} mode 0${(TYPE_BITS[e.type] | (e.mode & 0o7777)).toString(8)}`);
    }
    if (special) await script.push(e.path, `sif ${p} mtime @${e.mtime}`);
    for (const [name, value] of Object.entries(e.xattrs ?? {})) {
      await script.push(e.path, `ea_set -f ${pathArg(await values.fileFor(value))} -- ${p} ${xattrArg(name)}`);
    }
  }
  await script.flush();
}

/**
 * debugfs exits 0 even when a command fails; any stderr line besides its banner is a failure,
 * and so is a usage message (which it prints on stdout).
 */
export async function runDebugfs(image: string, script: string, signal?: AbortSignal): Promise<void> {
  const res = await runChecked(["debugfs", "-w", "-f", script, image], { signal, maxOutput: 1024 * 1024 });
  const errors = res.stderr.split("\n").filter((l) => l.trim() !== "" && !/^debugfs \d/.test(l));
  const usage = res.stdout.split("\n").find((l) => l.startsWith("Usage:"));
  if (usage) errors.push(usage);
  if (errors.length > 0) throw new BangerError(ErrorCode.Failed, `debugfs could not apply ownership: ${shown(errors[0]!)}`, "this is a bug in banger's image builder; please report it");
}
