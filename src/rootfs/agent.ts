// Guest agent injection: the agent binary becomes a TreeEntry (root:root 0755) before the
// ext4 is built, so the single debugfs pass sets its ownership along with everything else.
import { constants } from "node:fs";
import { copyFile, lstat, mkdir, rm, stat } from "node:fs/promises";
import { join, posix } from "node:path";
import { BangerError, ErrorCode, invalidArgument } from "../util/errors.ts";
import { memberPath, orThrow, shown } from "../util/paths.ts";
import type { Tree } from "./tree.ts";

/** Where the agent lives inside every image (the kernel command line's `init=`). */
export const AGENT_IMAGE_PATH = "/sbin/banger-agent";
/** Directory inside every image for banger's boot files. */
export const BOOT_FILES_DIR = "/lib/banger";

/** Fails with a build hint when the agent binary has not been built. */
export async function requireAgentBinary(path: string): Promise<void> {
  const st = await stat(path).catch(() => undefined);
  if (!st?.isFile()) throw new BangerError(ErrorCode.MissingDependency, `guest agent binary ${path} not found`, "build it: agent/build.sh");
}

/**
 * Adds the agent at AGENT_IMAGE_PATH and the BOOT_FILES_DIR directory to the tree. Paths are
 * resolved through the image's own symlinks (merged-/usr images have /sbin -> usr/sbin).
 */
export async function injectAgent(tree: Tree, opts: { agentPath: string }): Promise<void> {
  await requireAgentBinary(opts.agentPath);
  const agentDir = await ensureTreeDir(tree, resolveInTree(tree, posix.dirname(AGENT_IMAGE_PATH).slice(1)));
  await ensureTreeDir(tree, resolveInTree(tree, BOOT_FILES_DIR.slice(1)));
  const target = `${agentDir}/${posix.basename(AGENT_IMAGE_PATH)}`;
  const existing = tree.entries.get(target);
  if (existing && existing.type !== "file") throw invalidArgument(`the image already has a ${existing.type} at ${AGENT_IMAGE_PATH}`);
  const abs = join(tree.dir, target);
  if (existing) await rm(abs);
  await copyFile(opts.agentPath, abs, constants.COPYFILE_EXCL);
  const mtime = Math.floor((await lstat(abs)).mtimeMs / 1000);
  tree.entries.set(target, { path: target, type: "file", uid: 0, gid: 0, mode: 0o755, mtime });
}

/**
 * Resolves a directory path through symlinks recorded in the tree, the way the guest will
 * (absolute targets are relative to the image root). Bounded like the kernel's 40 hops.
 */
export function resolveInTree(tree: Tree, path: string): string {
  let parts = path.split("/").filter(Boolean);
  let done: string[] = [];
  for (let hops = 0; parts.length > 0; ) {
    const part = parts.shift()!;
    const candidate = [...done, part].join("/");
    const e = tree.entries.get(candidate);
    if (e?.type === "symlink" && e.linkTarget) {
      if (++hops > 40) throw invalidArgument(`too many symlinks resolving /${path} in the image`);
      const target = e.linkTarget;
      parts = [...target.split("/").filter(Boolean), ...parts];
      if (target.startsWith("/")) done = [];
      continue;
    }
    if (part === "..") done.pop();
    else if (part !== ".") done.push(part);
  }
  return orThrow(memberPath(done.join("/"), "resolved path"), invalidArgument);
}

/** Makes sure every component of `path` is a directory entry (root:root 0755 when new). */
async function ensureTreeDir(tree: Tree, path: string): Promise<string> {
  let sofar = "";
  for (const part of path.split("/").filter(Boolean)) {
    sofar = sofar ? `${sofar}/${part}` : part;
    const e = tree.entries.get(sofar);
    if (e && e.type !== "dir") throw invalidArgument(`the image has a ${e.type} at ${shown(`/${sofar}`)} where banger needs a directory`);
    if (!e) {
      await mkdir(join(tree.dir, sofar), { mode: 0o700 });
      tree.entries.set(sofar, { path: sofar, type: "dir", uid: 0, gid: 0, mode: 0o755, mtime: 0 });
    }
  }
  return sofar;
}
