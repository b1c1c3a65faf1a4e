// The one path and name rule for every tar reader (bundles, docker-export rootfs tars, OCI
// layers, a guest's workspace export): what a member path, a link target or an xattr name
// may hold before anything is written or handed to a tool. Callers keep their own placement
// rules (what may sit where); this file only says which strings are acceptable at all.
//
// Per byte class:
// - NUL, every C0 control byte (0x01-0x1f, so \t \n \r too) and DEL (0x7f): refused in
//   paths, link targets and xattr names. They are never needed in a filesystem image, a
//   newline or carriage return ends a debugfs script line (the line after it is a new
//   command, `!cmd` a shell), and they would reach terminals raw.
// - '"', '\', ' ', '!', '-', '<', shell metacharacters and bytes >= 0x80: kept literally.
//   They are legal in names, and the only interpreter they meet (debugfs, see rootfs/ext4.ts)
//   gets them inside a quoted argument that starts with '/' or an xattr namespace.
// - '/' separates components; "" and "." components are dropped; ".." is refused outright
//   (never resolved: "a/../b" through a symlink "a" is not "b").
// Paths are at most MAX_PATH_BYTES bytes with components of at most MAX_NAME_BYTES (Linux's
// PATH_MAX and NAME_MAX), and a MetadataBudget bounds all a reader holds for one tree (names,
// link targets, xattrs). Messages show strings through `shown` (the terminal rule of util/text.ts, quoted and
// bounded), so a refusal is one line a terminal cannot be steered by.

import { inertJson } from "./text.ts";

/** Why a string was refused: one line, the string shown escaped. */
export interface Refused {
  refused: string;
}

export type Checked<T> = T | Refused;

export const MAX_PATH_BYTES = 4095;
export const MAX_NAME_BYTES = 255;
/**
 * Most bytes of member names, link targets and xattrs (names and values, kept or dropped) one
 * tar reader holds for a tree: they stay in memory until its image is built, and a small
 * compressed layer of long names or big xattr records decodes to gigabytes of them. A large
 * real image holds a few tens of MiB.
 */
export const MAX_TREE_METADATA_BYTES = 256 * 1024 * 1024;
/** Namespaces applied from images; trusted.* and system.* (ACLs) never come from untrusted input. */
export const KEPT_XATTR_NAMESPACES = ["user.", "security."] as const;
export const MAX_XATTRS = 32;
/** Names plus values per entry: ext4 keeps them in the inode and one block. */
export const MAX_XATTR_BYTES = 64 * 1024;

const CONTROL = /[\x00-\x1f\x7f]/;

export function isRefused<T>(v: Checked<T>): v is Refused {
  return typeof v === "object" && v !== null && "refused" in v && typeof (v as Refused).refused === "string";
}

/** A name made safe to print, quoted: the terminal rule's JSON form (util/text.ts), at most ~200 characters. */
export function shown(s: string): string {
  return inertJson(s.length > 200 ? `${s.slice(0, 200)}...` : s);
}

/**
 * A system error (ENOSPC, ENAMETOOLONG, ...) with its code, syscall and path kept and its
 * message shown: the message names a host path made from an untrusted member name.
 */
export function systemErrorShown(err: Error): Error {
  const { code, syscall, path } = err as NodeJS.ErrnoException;
  return Object.assign(new Error(shown(err.message)), { code, syscall, path });
}

/** The first control byte of `s` as "0x0a", or undefined. */
function controlByte(s: string): string | undefined {
  const m = CONTROL.exec(s);
  return m ? `0x${m[0].charCodeAt(0).toString(16).padStart(2, "0")}` : undefined;
}

/** The common checks for any name-like string: no control bytes, bounded. */
function textProblem(s: string, what: string, maxBytes: number): string | undefined {
  const ctl = controlByte(s);
  if (ctl) return `${what} ${shown(s)} contains the control byte ${ctl}`;
  if (Buffer.byteLength(s) > maxBytes) return `${what} ${shown(s)} is longer than ${maxBytes} bytes`;
  return undefined;
}

/**
 * A tar member name (or hardlink target) as a relative, normalised path ("usr/bin/env"; ""
 * is the root itself), or why it is refused: control bytes, too long, absolute, "..".
 */
export function memberPath(name: string, what = "path"): Checked<string> {
  const problem = textProblem(name, what, MAX_PATH_BYTES);
  if (problem) return { refused: problem };
  if (name.startsWith("/")) return { refused: `${what} ${shown(name)} is absolute` };
  const parts = name.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) return { refused: `${what} ${shown(name)} has a ".." component` };
  const long = parts.find((p) => Buffer.byteLength(p) > MAX_NAME_BYTES);
  if (long !== undefined) return { refused: `${what} ${shown(name)} has a component longer than ${MAX_NAME_BYTES} bytes` };
  return parts.join("/");
}

/** A symlink target, kept as written (it may be absolute or hold ".."), or why it is refused. */
export function linkTarget(target: string, what = "symlink target"): Checked<string> {
  if (target === "") return { refused: `${what} is empty` };
  const problem = textProblem(target, what, MAX_PATH_BYTES);
  return problem ? { refused: problem } : target;
}

/**
 * Why the symlink at `linkPath` (a memberPath) pointing at `target` leaves the root it lives
 * in, judged lexically: absolute targets and ".." past the root escape. Trees that must stay
 * closed (bundles) use this; images resolve absolute targets inside the guest instead.
 */
export function symlinkEscapeProblem(linkPath: string, target: string): string | undefined {
  if (target.startsWith("/")) return `symlink target ${shown(target)} is absolute`;
  let depth = linkPath.split("/").length - 1;
  for (const part of target.split("/")) {
    if (part === "" || part === ".") continue;
    if (part !== "..") depth++;
    else if (--depth < 0) return `symlink target ${shown(target)} escapes the root`;
  }
  return undefined;
}

/**
 * An xattr name from a tar: refused when it has control bytes, is longer than 255 bytes or
 * has an empty name after its namespace; otherwise the name when its namespace is kept, or
 * undefined when it is dropped (trusted.*, system.*, anything else).
 */
export function xattrName(name: string): Checked<string | undefined> {
  const problem = textProblem(name, "xattr name", MAX_NAME_BYTES);
  if (problem) return { refused: problem };
  const dot = name.indexOf(".");
  if (dot <= 0 || dot === name.length - 1) return { refused: `xattr name ${shown(name)} is not <namespace>.<name>` };
  return KEPT_XATTR_NAMESPACES.some((ns) => name.startsWith(ns)) ? name : undefined;
}

/** The xattrs of one entry that are applied (kept namespaces), each name checked, bounded in number and bytes. */
export function keptXattrs(raw: ReadonlyMap<string, Buffer> | undefined): Checked<Record<string, Buffer> | undefined> {
  if (!raw || raw.size === 0) return undefined;
  if (raw.size > MAX_XATTRS) return { refused: `more than ${MAX_XATTRS} xattrs` };
  const out: Record<string, Buffer> = {};
  let total = 0;
  for (const [key, value] of raw) {
    const name = xattrName(key);
    if (isRefused(name)) return name;
    if (name === undefined) continue;
    total += Buffer.byteLength(name) + value.length;
    if (total > MAX_XATTR_BYTES) return { refused: `xattrs larger than ${MAX_XATTR_BYTES} bytes` };
    out[name] = value;
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

/** Counts a tree's metadata bytes (see MAX_TREE_METADATA_BYTES) over every entry read. */
export class MetadataBudget {
  private used = 0;

  constructor(readonly max = MAX_TREE_METADATA_BYTES) {}

  /** Adds the bytes of `strings` and `buffers`: the total so far, or the refusal once it passes the cap. */
  spend(strings: readonly (string | null | undefined)[], buffers: Iterable<Buffer> = []): Checked<number> {
    for (const s of strings) this.used += s ? Buffer.byteLength(s) : 0;
    for (const b of buffers) this.used += b.length;
    return this.used > this.max ? { refused: `the tree's names, link targets and xattrs take more than ${this.max} bytes` } : this.used;
  }
}

/** The checked value, or the refusal thrown as the caller's error. */
export function orThrow<T>(v: Checked<T>, fail: (reason: string) => Error): T {
  if (isRefused(v)) throw fail(v.refused);
  return v;
}

/** The parent of a memberPath ("" for top-level entries). */
export function parentOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i < 0 ? "" : path.slice(0, i);
}
