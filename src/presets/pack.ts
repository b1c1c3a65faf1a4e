// Streaming a built root directory out as a `docker export`-style tar, and the lifetime of
// the work directories it is built in.
//
// The tar is written by GNU tar, not by walking the tree in JavaScript: Node has no xattr
// calls (security.capability on e.g. ping would be lost), and tar already gets hardlinks,
// device nodes, sparse files and long names right. `--format=posix` carries uids, gids and
// xattrs as PAX records (SCHILY.xattr.*), which src/rootfs reads.
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { PassThrough, type Readable } from "node:stream";
import { BangerError, ErrorCode, cancelled, failed } from "../util/errors.ts";

export function tarArgv(dir: string): string[] {
  return [
    "tar",
    "--create",
    "--file=-",
    "--format=posix",
    "--numeric-owner",
    "--sort=name",
    "--xattrs",
    "--xattrs-include=security.*",
    "--xattrs-include=user.*",
    // atime/ctime records would add a PAX header to every entry and say nothing useful.
    "--pax-option=delete=atime,delete=ctime",
    "--one-file-system",
    "--directory",
    dir,
    ".",
  ];
}

/**
 * Streams `dir` as an uncompressed tar. A tar failure becomes a stream error; when the stream
 * ends, fails, is destroyed by its reader, or `signal` aborts, tar is stopped and `onDone` runs
 * (once, after tar has exited), which is where the caller removes its work directory.
 */
export function tarDirectory(dir: string, opts: { signal?: AbortSignal; onDone?: () => Promise<void> } = {}): Readable {
  const out = new PassThrough({ highWaterMark: 1024 * 1024 });
  const argv = tarArgv(dir);
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (s: string) => (stderr = (stderr + s).slice(-4096)));
  child.stdout!.pipe(out, { end: false });
  const stop = () => child.kill("SIGKILL");
  const onAbort = () => {
    stop();
    out.destroy(cancelled());
  };
  if (opts.signal?.aborted) queueMicrotask(onAbort);
  else opts.signal?.addEventListener("abort", onAbort, { once: true });
  out.on("close", () => {
    if (child.exitCode === null && child.signalCode === null) stop(); // reader gave up early
  });
  child.on("error", (e: NodeJS.ErrnoException) => {
    out.destroy(e.code === "ENOENT" ? new BangerError(ErrorCode.MissingDependency, "tar not found", "install it: apt-get install -y tar") : e);
  });
  child.on("close", (code, sig) => {
    opts.signal?.removeEventListener("abort", onAbort);
    if (code === 0) out.end();
    else if (!out.destroyed) {
      const last = stderr.trim().split("\n").pop() ?? "";
      out.destroy(failed(`tar of the built root filesystem failed (${code ?? sig})${last ? `: ${last}` : ""}`));
    }
    void (opts.onDone?.() ?? Promise.resolve()).catch(() => undefined);
  });
  return out;
}

/** Mount points at or under `dir`, from /proc/self/mountinfo (octal escapes decoded). */
export async function mountsUnder(dir: string, mountinfo = "/proc/self/mountinfo"): Promise<string[]> {
  const text = await readFile(mountinfo, "utf8").catch(() => "");
  const prefix = dir.replace(/\/+$/, "");
  return text
    .split("\n")
    .map((l) => l.split(" ")[4])
    .filter((m): m is string => m !== undefined)
    .map((m) => m.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8))))
    .filter((m) => m === prefix || m.startsWith(`${prefix}/`));
}

/**
 * Removes a work directory, but never one with something mounted inside: `rm -r` through a
 * bind mount of /dev or a /proc would reach the host. Debootstrap's mounts live in a private
 * namespace, so this only trips if that guarantee were ever broken.
 */
export async function removeWorkDir(dir: string): Promise<void> {
  const mounts = await mountsUnder(dir);
  if (mounts.length > 0) {
    throw failed(`not removing ${dir}: ${mounts[0]} is mounted inside it`, `unmount it (umount -R ${mounts[0]}) and remove ${dir} by hand`);
  }
  await rm(dir, { recursive: true, force: true });
}

/** Work directories this process is building in right now (never swept). */
const activeWorkDirs = new Set<string>();

/** A fresh work directory under `parent`; leftovers of an earlier crashed build are swept first. */
export async function makeWorkDir(parent: string, prefix: string): Promise<string> {
  await mkdir(parent, { recursive: true, mode: 0o700 });
  for (const name of await readdir(parent)) {
    const path = join(parent, name);
    if (!activeWorkDirs.has(path)) await removeWorkDir(path).catch(() => undefined);
  }
  const dir = await mkdtemp(join(parent, prefix));
  activeWorkDirs.add(dir);
  return dir;
}

export async function releaseWorkDir(dir: string): Promise<void> {
  try {
    await removeWorkDir(dir);
  } finally {
    activeWorkDirs.delete(dir);
  }
}

/** Runs builds that share one cache one at a time (debootstrap writes its .debs there). */
const cacheQueues = new Map<string, Promise<unknown>>();
export function serialized<T>(key: string, job: () => Promise<T>): Promise<T> {
  const prev = cacheQueues.get(key) ?? Promise.resolve();
  const next = prev.catch(() => undefined).then(job);
  cacheQueues.set(key, next);
  void next
    .catch(() => undefined)
    .finally(() => {
      if (cacheQueues.get(key) === next) cacheQueues.delete(key);
    });
  return next;
}
