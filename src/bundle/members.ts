// The hardened part of extraction: deciding, from tar headers alone, whether a member may be
// written. Pure functions over paths and types, so every rule is testable without a tarball.
//
// Which names and link targets are acceptable at all is the shared rule (util/paths.ts). On
// top of it, a bundle's members may only be regular files, directories and symlinks, never
// beneath a symlink or a file, never twice; symlinks must stay inside the target, lexically
// and following other symlinks in the bundle.
// On top of that each caller (image or kernel catalog) says which paths and types it accepts.
import { shown } from "../util/paths.ts";

export type MemberType = "file" | "directory" | "symlink";

export interface Member {
  /** Normalised relative path ("" is the bundle root itself). */
  path: string;
  type: MemberType;
  /** Symlinks only: the target as written in the tar. */
  linkTarget?: string;
}

/** What a catalog accepts in its bundles, on top of the generic hardening. */
export interface BundleRules {
  /** Used in messages: "image bundle", "kernel bundle". */
  kind: string;
  /** Returns why a (generically safe) member is not allowed here, or undefined when it is. */
  check(member: Member): string | undefined;
  /** Regular files that must be present. */
  required: readonly string[];
  /** Most bytes a bundle of this kind may decode to (its decompression-bomb cap): a kernel is not 6 GiB. */
  maxDecodedBytes: number;
  /** Most members a bundle of this kind may hold (an inode bomb otherwise). */
  maxMembers: number;
}

const MAX_SYMLINK_HOPS = 40;

/** Tar type names (as tar-stream reports them) mapped to what we write, or why we refuse. */
export function memberType(tarType: string | null | undefined): MemberType | { refused: string } {
  switch (tarType ?? "file") {
    case "file":
    case "contiguous-file":
      return "file";
    case "directory":
      return "directory";
    case "symlink":
      return "symlink";
    case "link":
      return { refused: "hardlinks are not allowed" };
    case "character-device":
    case "block-device":
      return { refused: "device nodes are not allowed" };
    case "fifo":
      return { refused: "fifos are not allowed" };
    default:
      return { refused: `member type ${tarType} is not allowed` };
  }
}

/**
 * Whether following `linkPath` ever leaves the bundle root, expanding other symlinks of the
 * bundle on the way (a lexical check alone misses `a -> .` plus `a/b -> ..`). Loops and
 * overly long chains count as escaping: they can't be meant.
 */
export function symlinkEscapes(members: ReadonlyMap<string, Member>, linkPath: string): boolean {
  const link = members.get(linkPath);
  if (!link?.linkTarget) return true;
  const at = linkPath.split("/").slice(0, -1);
  let pending = link.linkTarget.split("/");
  let hops = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (at.length === 0) return true;
      at.pop();
      continue;
    }
    at.push(part);
    const hit = members.get(at.join("/"));
    if (hit?.type !== "symlink") continue;
    if (++hops > MAX_SYMLINK_HOPS || !hit.linkTarget || hit.linkTarget.startsWith("/")) return true;
    at.pop();
    pending = [...hit.linkTarget.split("/"), ...pending];
  }
  return false;
}

/** Why `path` may not be created given the members seen so far (duplicates, writing through links/files). */
export function placementProblem(members: ReadonlyMap<string, Member>, path: string): string | undefined {
  if (members.has(path)) return "duplicated member";
  const parts = path.split("/");
  for (let i = 1; i < parts.length; i++) {
    const parent = members.get(parts.slice(0, i).join("/"));
    if (parent && parent.type !== "directory") return `member is beneath ${parent.type} ${shown(parent.path)}`;
  }
  return undefined;
}
