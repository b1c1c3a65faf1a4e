// The busybox preset: a tiny root filesystem from Debian's busybox-static (one static
// binary and a symlink per applet), enough for a shell, coreutils-like tools, networking
// tools and a small httpd, plus the host's dropbear (dropbear-bin) with the libraries it
// links, so `ssh NAME.vm` works (the daemon starts it on demand). Boots in seconds; used
// for quick checks and tests.
import { readFile, stat } from "node:fs/promises";
import { dirname } from "node:path";
import type { Readable } from "node:stream";
import { pack } from "tar-stream";
import { queueEntry } from "../util/tarpack.ts";
import { BangerError, ErrorCode } from "../util/errors.ts";
import { runChecked } from "../util/exec.ts";
import type { Progress } from "../util/progress.ts";

export const BUSYBOX_PATH = "/bin/busybox";
export const DROPBEAR_PATH = "/usr/sbin/dropbear";

const DIRS: [string, number][] = [
  ["bin", 0o755],
  ["sbin", 0o755],
  ["usr", 0o755],
  ["usr/bin", 0o755],
  ["usr/sbin", 0o755],
  ["etc", 0o755],
  ["root", 0o700],
  ["home", 0o755],
  ["home/dev", 0o755],
  ["tmp", 0o1777],
  ["proc", 0o555],
  ["sys", 0o555],
  ["dev", 0o755],
  ["run", 0o755],
  ["var", 0o755],
  ["var/log", 0o755],
  ["var/tmp", 0o1777],
  ["workspace", 0o755],
  ["mnt", 0o755],
];

const FILES: [string, string, number][] = [
  ["etc/passwd", "root:x:0:0:root:/root:/bin/sh\ndev:x:1000:1000:dev:/home/dev:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n", 0o644],
  ["etc/group", "root:x:0:\nwheel:x:10:dev\ndev:x:1000:\nnogroup:x:65534:\n", 0o644],
  ["etc/shadow", "root:*:19000:0:99999:7:::\ndev:*:19000:0:99999:7:::\n", 0o640],
  ["etc/hostname", "busybox\n", 0o644],
  ["etc/hosts", "127.0.0.1 localhost\n::1 localhost\n", 0o644],
  ["etc/profile", 'export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nexport PS1="\\u@\\h:\\w\\$ "\n', 0o644],
  ["etc/os-release", 'NAME="banger busybox"\nID=busybox\nPRETTY_NAME="banger busybox"\n', 0o644],
];

export interface BusyboxOptions {
  busybox?: string;
  /** The host's dropbear to copy in; null leaves the image without an ssh server. */
  dropbear?: string | null;
  progress?: Progress;
}

/** Streams a `docker export`-style tar of the busybox root filesystem. */
export async function busyboxRootfsTar(o: BusyboxOptions = {}): Promise<Readable> {
  const busybox = o.busybox ?? BUSYBOX_PATH;
  const st = await stat(busybox).catch(() => undefined);
  if (!st?.isFile()) throw new BangerError(ErrorCode.MissingDependency, `${busybox} not found`, "install it: apt-get install -y busybox-static");
  const applets = (await runChecked([busybox, "--list-full"])).stdout.split("\n").filter((l) => /^[a-z][a-z0-9/_.[\]-]*$/.test(l) && !l.includes(".."));
  const binary = await readFile(busybox);
  const ssh = o.dropbear === null ? [] : await dropbearFiles(o.dropbear ?? DROPBEAR_PATH);
  if (o.dropbear !== null && ssh.length === 0) o.progress?.({ phase: "ssh", message: `no ${o.dropbear ?? DROPBEAR_PATH} on this host: the image gets no ssh server (apt-get install dropbear-bin)` });
  const tar = pack();
  const mtime = new Date(0);
  const dirs = [...DIRS, ...extraDirs(ssh.map((f) => f.name))];
  for (const [name, mode] of dirs) queueEntry(tar, { name: `${name}/`, type: "directory", mode, uid: name === "home/dev" ? 1000 : 0, gid: name === "home/dev" ? 1000 : 0, mtime });
  queueEntry(tar, { name: "bin/busybox", mode: 0o755, uid: 0, gid: 0, mtime }, binary);
  for (const [name, text, mode] of FILES) queueEntry(tar, { name, mode, uid: 0, gid: name === "etc/shadow" ? 42 : 0, mtime }, text);
  for (const f of ssh) queueEntry(tar, { name: f.name, mode: 0o755, uid: 0, gid: 0, mtime }, f.data);
  for (const applet of applets) {
    if (applet === "bin/busybox") continue;
    const depth = applet.split("/").length - 1;
    queueEntry(tar, { name: applet, type: "symlink", linkname: `${"../".repeat(depth)}bin/busybox`, mode: 0o777, uid: 0, gid: 0, mtime });
  }
  tar.finalize();
  // tar-stream's Pack is a streamx Readable, which Node's stream consumers accept.
  return tar as unknown as Readable;
}

/**
 * The host's dropbear and every library `ldd` says it loads (symlinks resolved), at the same
 * paths: the preset runs on the host's architecture, as busybox-static does. [] when the
 * host has no dropbear or a library is missing.
 */
async function dropbearFiles(path: string): Promise<{ name: string; data: Buffer }[]> {
  if (!(await stat(path).catch(() => undefined))?.isFile()) return [];
  const ldd = await runChecked(["ldd", path]).catch(() => undefined);
  if (!ldd || /not found/.test(ldd.stdout)) return [];
  const libs = ldd.stdout
    .split("\n")
    .map((l) => /(\/[A-Za-z0-9/._+-]+) \(0x/.exec(l)?.[1])
    .filter((p): p is string => p !== undefined && !p.includes(".."));
  return Promise.all([...new Set([path, ...libs])].map(async (p) => ({ name: p.slice(1), data: await readFile(p) })));
}

/** Parent directories of `files` that DIRS does not already make, parents first, plus dropbear's key directory. */
function extraDirs(files: string[]): [string, number][] {
  if (files.length === 0) return [];
  const known = new Set(DIRS.map(([d]) => d));
  const out = new Set<string>();
  for (const f of files) {
    const parts = dirname(f).split("/");
    for (let i = 1; i <= parts.length; i++) {
      const d = parts.slice(0, i).join("/");
      if (!known.has(d)) out.add(d);
    }
  }
  return [...[...out].sort(), "etc/dropbear"].map((d) => [d, 0o755]);
}
