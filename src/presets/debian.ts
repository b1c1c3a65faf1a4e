// The debian and debian-dev presets: debootstrap of Debian stable into a work directory under
// the preset cache, then banger's additions (the `dev` user with passwordless sudo,
// /workspace, hostname, hosts, locale), then cleaning (apt lists and caches, SSH host keys,
// the build host's resolv.conf), streamed out as a tar. The work directory is removed when
// the stream ends, fails or is abandoned, and on any error before that.
import { chmod, chown, copyFile, lstat, mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { Readable } from "node:stream";
import { failed, throwIfAborted } from "../util/errors.ts";
import { noProgress, type Progress } from "../util/progress.ts";
import {
  CLEAN_DIR_CONTENTS,
  DEBIAN_SUITE,
  DEFAULT_HOSTNAME,
  DEV_USER,
  KEEP_DIRS,
  REMOVE_FILES,
  SSH_HOST_KEY,
  SUDOERS_MODE,
  WORKSPACE_DIR,
  accountLines,
  appendAccount,
  daysSinceEpoch,
  hostnameFile,
  hostsFile,
  localeFile,
  resolvConfFile,
  sudoersFile,
} from "./debian-files.ts";
import { debootstrapCacheDir, requireDebootstrap, requireRoot, runDebootstrap } from "./debootstrap.ts";
import { detectMirror } from "./mirror.ts";
import { makeWorkDir, releaseWorkDir, serialized, tarDirectory } from "./pack.ts";

export interface DebianBuildOptions {
  /** The preset cache (<root>/cache/presets): holds debootstrap/ (the .debs) and work/. */
  cacheDir: string;
  packages: readonly string[];
  /** Default: the host's apt mirror for the suite, else deb.debian.org. */
  mirror?: string;
  hostname?: string;
  signal?: AbortSignal;
  progress?: Progress;
}

/** Builds the tree and returns it as a tar stream; the work directory goes when the stream does. */
export async function debianRootfsTar(o: DebianBuildOptions): Promise<Readable> {
  requireRoot("the debian presets");
  requireDebootstrap();
  const progress = o.progress ?? noProgress;
  const mirror = o.mirror ?? (await detectMirror(DEBIAN_SUITE));
  const work = await makeWorkDir(join(o.cacheDir, "work"), "debian-");
  try {
    const root = join(work, "root");
    const cache = debootstrapCacheDir(o.cacheDir);
    progress({ phase: "debootstrap", message: `Debian ${DEBIAN_SUITE} from ${mirror}` });
    await serialized(cache, () => runDebootstrap(root, { suite: DEBIAN_SUITE, mirror, packages: o.packages, cacheDir: cache, signal: o.signal, progress }));
    progress({ phase: "configure", message: "dev user, sudo, /workspace, hostname" });
    await configureDebianTree(root, { hostname: o.hostname ?? DEFAULT_HOSTNAME, now: new Date() });
    progress({ phase: "clean", message: "apt lists and caches, ssh host keys" });
    await cleanDebianTree(root);
    throwIfAborted(o.signal);
    progress({ phase: "pack" });
    return tarDirectory(root, { signal: o.signal, onDone: () => releaseWorkDir(work) });
  } catch (err) {
    await releaseWorkDir(work);
    throw err;
  }
}

/** banger's additions to a debootstrapped tree (exported for tests on a fake tree). */
export async function configureDebianTree(root: string, o: { hostname: string; now: Date }): Promise<void> {
  const user = DEV_USER;
  const lines = accountLines(user, daysSinceEpoch(o.now));
  for (const kind of ["passwd", "group", "shadow", "gshadow"] as const) {
    const path = join(root, "etc", kind);
    await rewriteFile(path, appendAccount(await readFile(path, "utf8"), lines[kind], kind));
  }
  await makeOwnedDir(root, user.home, 0o700, user.uid, user.gid);
  await copySkel(root, user.home, user.uid, user.gid);
  await makeOwnedDir(root, WORKSPACE_DIR, 0o755, user.uid, user.gid);
  await createFile(root, `etc/sudoers.d/${user.name}`, sudoersFile(user.name), SUDOERS_MODE);
  await createFile(root, "etc/hostname", hostnameFile(o.hostname), 0o644);
  await createFile(root, "etc/hosts", hostsFile(o.hostname), 0o644);
  await createFile(root, "etc/default/locale", localeFile(), 0o644);
  await createFile(root, "etc/resolv.conf", resolvConfFile(), 0o644);
}

/** Removes what only the build needed and what must differ per VM. */
export async function cleanDebianTree(root: string): Promise<void> {
  for (const dir of CLEAN_DIR_CONTENTS) {
    const abs = join(root, dir);
    for (const name of await readdir(abs).catch(() => [] as string[])) await rm(join(abs, name), { recursive: true, force: true });
  }
  for (const dir of KEEP_DIRS) await mkdir(join(root, dir), { recursive: true, mode: 0o755 });
  for (const file of [...REMOVE_FILES, "usr/sbin/policy-rc.d"]) await rm(join(root, file), { force: true });
  for (const name of await readdir(join(root, "etc/ssh")).catch(() => [] as string[])) {
    if (SSH_HOST_KEY.test(name)) await rm(join(root, "etc/ssh", name), { force: true });
  }
  // An empty machine-id means "generate at boot" to anything that reads it.
  if (await isRegularFile(join(root, "etc/machine-id"))) await writeFile(join(root, "etc/machine-id"), "");
}

/** Replaces a file's content in place (keeping its owner and mode), never through a symlink. */
async function rewriteFile(path: string, content: string): Promise<void> {
  if (!(await isRegularFile(path))) throw failed(`${path} is not a regular file in the debootstrapped tree`);
  await writeFile(path, content);
}

/** Creates (or replaces) a root-owned file; the old entry is removed first so no symlink is followed. */
async function createFile(root: string, rel: string, content: string, mode: number): Promise<void> {
  const path = join(root, rel);
  await requireRealDir(root, dirname(rel));
  await rm(path, { force: true });
  await writeFile(path, content, { mode, flag: "wx" });
  await chown(path, 0, 0);
  await chmodExact(path, mode);
}

async function makeOwnedDir(root: string, rel: string, mode: number, uid: number, gid: number): Promise<void> {
  const path = join(root, rel);
  await requireRealDir(root, dirname(rel));
  await mkdir(path, { mode });
  await chown(path, uid, gid);
  await chmodExact(path, mode);
}

/** /etc/skel's dotfiles into the new home, owned by the user (what adduser does). */
async function copySkel(root: string, home: string, uid: number, gid: number): Promise<void> {
  const skel = join(root, "etc/skel");
  for (const name of await readdir(skel).catch(() => [] as string[])) {
    if (!(await isRegularFile(join(skel, name)))) continue;
    const dest = join(root, home, name);
    await copyFile(join(skel, name), dest);
    await chown(dest, uid, gid);
  }
}

/** Every component of `rel` under root must be a real directory: writes never leave the tree. */
async function requireRealDir(root: string, rel: string): Promise<void> {
  let path = root;
  for (const part of rel.split("/").filter((p) => p !== "" && p !== ".")) {
    path = join(path, part);
    const st = await lstat(path).catch(() => undefined);
    if (!st) await mkdir(path, { mode: 0o755 });
    else if (!st.isDirectory()) throw failed(`${path} is not a directory in the debootstrapped tree`);
  }
}

async function isRegularFile(path: string): Promise<boolean> {
  return (await lstat(path).catch(() => undefined))?.isFile() ?? false;
}

/** mkdir/writeFile modes pass through the umask; the image needs the exact bits. */
async function chmodExact(path: string, mode: number): Promise<void> {
  await chmod(path, mode);
}
