// The busybox preset: a tiny root filesystem from Debian's busybox-static (one static
// binary and a symlink per applet), enough for a shell, coreutils-like tools, networking
// tools and a small httpd. Boots in seconds; used for quick checks and tests.
import { readFile, stat } from "node:fs/promises";
import type { Readable } from "node:stream";
import { pack } from "tar-stream";
import { BangerError, ErrorCode } from "../util/errors.ts";
import { runChecked } from "../util/exec.ts";

export const BUSYBOX_PATH = "/bin/busybox";

const DIRS: [string, number][] = [
  ["bin", 0o755], ["sbin", 0o755], ["usr", 0o755], ["usr/bin", 0o755], ["usr/sbin", 0o755], ["etc", 0o755],
  ["root", 0o700], ["home", 0o755], ["home/dev", 0o755], ["tmp", 0o1777], ["proc", 0o555], ["sys", 0o555], ["dev", 0o755],
  ["run", 0o755], ["var", 0o755], ["var/log", 0o755], ["var/tmp", 0o1777], ["workspace", 0o755], ["mnt", 0o755],
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

/** Streams a `docker export`-style tar of the busybox root filesystem. */
export async function busyboxRootfsTar(busybox = BUSYBOX_PATH): Promise<Readable> {
  const st = await stat(busybox).catch(() => undefined);
  if (!st?.isFile()) throw new BangerError(ErrorCode.MissingDependency, `${busybox} not found`, "install it: apt-get install -y busybox-static");
  const applets = (await runChecked([busybox, "--list-full"])).stdout.split("\n").filter((l) => /^[a-z][a-z0-9/_.[\]-]*$/.test(l) && !l.includes(".."));
  const binary = await readFile(busybox);
  const tar = pack();
  const mtime = new Date(0);
  for (const [name, mode] of DIRS) tar.entry({ name: `${name}/`, type: "directory", mode, uid: name === "home/dev" ? 1000 : 0, gid: name === "home/dev" ? 1000 : 0, mtime });
  tar.entry({ name: "bin/busybox", mode: 0o755, uid: 0, gid: 0, mtime }, binary);
  for (const [name, text, mode] of FILES) tar.entry({ name, mode, uid: 0, gid: name === "etc/shadow" ? 42 : 0, mtime }, text);
  for (const applet of applets) {
    if (applet === "bin/busybox") continue;
    const depth = applet.split("/").length - 1;
    tar.entry({ name: applet, type: "symlink", linkname: `${"../".repeat(depth)}bin/busybox`, mode: 0o777, uid: 0, gid: 0, mtime });
  }
  tar.finalize();
  // tar-stream's Pack is a streamx Readable, which Node's stream consumers accept.
  return tar as unknown as Readable;
}
