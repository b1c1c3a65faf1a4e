// Extracting a guest's workspace (an untrusted tar from files.get) on the host, only as far
// as computing a patch needs: the work tree's files, directories and symlinks, and from its
// .git only objects, refs, HEAD and info/exclude. Never a guest's config, hooks or
// alternates (host git would obey them), never nested .git metadata, never a write through
// a symlink or outside the destination; sizes and counts are bounded.
import { closeSync, constants as fsConstants, createReadStream, openSync, writeSync } from "node:fs";
import { lstat, mkdir, open, rm, symlink } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import tar from "tar-stream";
import { BangerError, ErrorCode, cancelled } from "../util/errors.ts";
import { linkTarget, memberPath, orThrow, shown, systemErrorShown } from "../util/paths.ts";

export interface GuestTreeLimits {
  /** Total file content. */
  maxBytes: number;
  /** Total entries. */
  maxEntries: number;
}

export interface GuestTreeDirs {
  /** Where the work tree goes. */
  work: string;
  /** Where the kept parts of the guest's .git go. */
  gitDir: string;
}

/**
 * Copies the guest's archive into `file` as it arrives, writing each chunk synchronously so
 * the agent stream is never left holding unread data: AgentClient.getFiles returns flow
 * control credit only as its buffer is read, and a consumer that pauses while extracting a
 * large file can stall it (see the workspace report). Bounded by `maxBytes` on disk.
 */
export async function spoolArchive(archive: Readable, file: string, maxBytes: number, signal?: AbortSignal): Promise<Readable> {
  const fd = openSync(file, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o600);
  let total = 0;
  try {
    await new Promise<void>((resolve, reject) => {
      const fail = (err: unknown) => {
        archive.destroy();
        reject(err);
      };
      const onAbort = () => fail(cancelled());
      signal?.addEventListener("abort", onAbort, { once: true });
      archive.on("data", (chunk: Buffer) => {
        total += chunk.length;
        if (total > maxBytes) return fail(refused(`more than ${maxBytes} bytes`));
        try {
          writeSync(fd, chunk);
        } catch (err) {
          fail(err);
        }
      });
      archive.on("end", () => resolve());
      archive.on("error", fail);
      archive.on("close", () => {
        signal?.removeEventListener("abort", onAbort);
        if (!archive.readableEnded) fail(refused("the archive ended early"));
      });
    });
  } finally {
    closeSync(fd);
  }
  return createReadStream(file, { highWaterMark: 1024 * 1024 });
}

function refused(reason: string): BangerError {
  return new BangerError(ErrorCode.Integrity, `guest workspace archive refused: ${reason}`, "the guest sent something unexpected; inspect the VM");
}

/**
 * Extracts the archive (rooted at the workspace's base name, as files.get sends it) into
 * `dirs`. The caller owns both directories and removes them whatever happens.
 */
export async function extractGuestTree(archive: Readable, dirs: GuestTreeDirs, limits: GuestTreeLimits, signal?: AbortSignal): Promise<{ entries: number; bytes: number }> {
  const extract = tar.extract();
  const stats = { entries: 0, bytes: 0 };
  const onAbort = () => extract.destroy(cancelled());
  signal?.addEventListener("abort", onAbort, { once: true });
  archive.on("error", (err) => extract.destroy(err));
  archive.pipe(extract as unknown as NodeJS.WritableStream);
  try {
    for await (const entry of extract) {
      if (signal?.aborted) throw cancelled();
      if (++stats.entries > limits.maxEntries) throw refused(`more than ${limits.maxEntries} entries`);
      const h = entry.header;
      const place = placeOf(h.name, dirs);
      const size = h.type === "file" || h.type === "contiguous-file" ? (h.size ?? 0) : 0;
      if (stats.bytes + size > limits.maxBytes) throw refused(`more than ${limits.maxBytes} bytes`);
      if (place) await writeEntry(place, h, entry as unknown as Readable);
      for await (const _ of entry) void _; // drain whatever writeEntry did not consume
      stats.bytes += size;
    }
  } catch (err) {
    archive.destroy();
    if (signal?.aborted) throw cancelled();
    throw err instanceof BangerError || !(err as NodeJS.ErrnoException).syscall ? err : systemErrorShown(err as Error);
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
  return stats;
}

interface Place {
  root: string;
  rel: string;
  inGit: boolean;
}

/** Where an archive member goes, or undefined when it is skipped; refuses unsafe names (util/paths.ts). */
function placeOf(name: string, dirs: GuestTreeDirs): Place | undefined {
  const path = orThrow(memberPath(name, "member"), refused);
  const rest = path === "" ? [] : path.split("/").slice(1); // the first component is the workspace's own name
  if (rest.length === 0) return undefined;
  if (rest[0] === ".git") {
    const rel = rest.slice(1).join("/");
    return keepGitPath(rel) ? { root: dirs.gitDir, rel, inGit: true } : undefined;
  }
  if (rest.includes(".git")) return undefined; // a submodule's or nested repository's metadata
  return { root: dirs.work, rel: rest.join("/"), inGit: false };
}

/** The parts of a .git that describe history, and nothing that configures or runs anything. */
function keepGitPath(rel: string): boolean {
  if (rel === "objects/info/alternates" || rel === "objects/info/http-alternates") return false;
  return rel === "HEAD" || rel === "packed-refs" || rel === "info" || rel === "info/exclude" || /^(objects|refs)(\/|$)/.test(rel);
}

async function writeEntry(place: Place, h: tar.Header, body: Readable): Promise<void> {
  const target = await safeTarget(place.root, place.rel);
  switch (h.type) {
    case "directory": {
      const st = await lstat(target).catch(() => undefined);
      if (st?.isDirectory()) return;
      if (st) await rm(target, { force: true });
      await mkdir(target, { mode: 0o755 });
      return;
    }
    case "file":
    case "contiguous-file":
      return writeFile(target, (h.mode ?? 0o644) & 0o100 ? 0o755 : 0o644, body);
    case "symlink":
      if (place.inGit) return; // git's own files are never symlinks
      await clear(target);
      await symlink(orThrow(linkTarget(h.linkname ?? "", `symlink target of ${shown(place.rel)}:`), refused), target);
      return;
    default:
      return; // hard links, devices, fifos: not part of a patch
  }
}

/** The member's path, with every parent created as a real directory (never through a symlink). */
async function safeTarget(root: string, rel: string): Promise<string> {
  const parts = rel.split("/");
  let dir = root;
  for (const part of parts.slice(0, -1)) {
    dir = join(dir, part);
    const st = await lstat(dir).catch(() => undefined);
    if (!st) await mkdir(dir, { mode: 0o755 });
    else if (!st.isDirectory()) throw refused(`member ${shown(rel)} would be written through ${st.isSymbolicLink() ? "a symlink" : "a file"}`);
  }
  return join(root, rel);
}

/** Removes a non-directory at target so a later member of the same name replaces it. */
async function clear(target: string): Promise<void> {
  const st = await lstat(target).catch(() => undefined);
  if (!st) return;
  if (st.isDirectory()) throw refused(`member ${shown(target)} replaces a directory`);
  await rm(target, { force: true });
}

async function writeFile(target: string, mode: number, body: Readable): Promise<void> {
  await clear(target);
  const fh = await open(target, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW, mode);
  try {
    for await (const chunk of body) await fh.write(chunk as Buffer);
  } finally {
    await fh.close();
  }
}
