// Every name banger gives a staging, work or temporary file under its root, in one table, so
// that leftovers of a killed process can be found (doctor) and removed (the daemon at start)
// without ever touching a file banger did not make. New code that stages or writes a
// temporary file under the root uses a name maker below, or adds its pattern to SCRATCH.
//
// Files made while publishing (staging directories, work directories) are the daemon's: it
// holds the root's lock (daemon/lock.ts), so at its start none of them is in use. Files other
// processes make (the CLI's config.json, doctor's probes) carry the maker's pid, or are only
// taken once old, so a live process's temporary file is never removed.
import { lstat, readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { isAlive } from "./pids.ts";

/**
 * The directories of a root the table names (config's Paths has them): util/ imports no
 * folder of banger's, so the shape is stated here rather than imported from config/.
 */
export interface RootDirs {
  root: string;
  kernelsDir: string;
  imagesDir: string;
  tmpDir: string;
  cacheDir: string;
  vmsDir: string;
  snapshotsDir: string;
  initrdCacheDir: string;
  debsCacheDir: string;
  presetsCacheDir: string;
  hostCacheDir: string;
  sshDir: string;
  memoryDir: string;
}

/** `<dir>/.staging-<base>-XXXXXX` (mkdtemp suffix): util/fsx.ts makeStagingDir, for every publish by rename. */
export const stagingPrefix = (base: string) => `.staging-${base}-`;
/** `<tmpDir>/image-<name>-XXXXXX`: an image being built (tree + rootfs.ext4, 4 GiB sparse). */
export const imageWorkPrefix = (name: string) => `image-${name}-`;
/** `<tmpDir>/kernel-upload-XXXXXX`: the files of a `kernel import` upload. */
export const KERNEL_UPLOAD_PREFIX = "kernel-upload-";
/** `<vmDir>/.workspace-staging-XXXXXX`: a workspace being written into the VM's slot (daemon/workspace-disk.ts). */
export const WORKSPACE_STAGING_PREFIX = ".workspace-staging-";
/** `/dev/shm/banger-ws-<pid>-XXXXXX`: a small workspace staged in memory for the slot (daemon/workspace-disk.ts). */
export const memoryStagingPrefix = (pid: number) => `banger-ws-${pid}-`;
/** `<dir>/.swap-<name>.json`: a replace in progress (daemon/replace.ts), read back at start. */
export const swapIntentName = (name: string) => `.swap-${name}.json`;
/** `<dir>/.replaced-<name>`: the kernel or image being replaced, kept until the swap is recorded. */
export const replacedName = (name: string) => `.replaced-${name}`;
/** `<file>.tmp-<pid>`: a file written whole, then renamed over `<file>`. */
export const pidTempName = (file: string) => `${file}.tmp-${process.pid}`;

/**
 * Who may be writing a match: only the daemon (stale at its start), any process (check pid/
 * age), or a VMM that maps it (stale once no process maps it: a VM's RAM file outlives the
 * daemon while its QEMU runs).
 */
type Maker = "daemon" | "any" | "mapped";

interface ScratchPattern {
  /** The directory the names appear in; `perEntry` means inside each subdirectory of it. */
  dir: (paths: RootDirs) => string;
  perEntry?: boolean;
  match: RegExp;
  maker: Maker;
  /** What makes such names (for the table's readers). */
  madeBy: string;
}

const MKDTEMP = "[A-Za-z0-9]{6}";
const NAME = "[A-Za-z0-9][A-Za-z0-9._-]*";

/** Every staging/temp name under the root. The pid, when a name has one, is match group 1. */
export const SCRATCH: readonly ScratchPattern[] = [
  { dir: (p) => p.kernelsDir, match: new RegExp(`^\\.staging-${NAME}-${MKDTEMP}$`), maker: "daemon", madeBy: "fsx.publishDir (kernel import, kernel bundle fetch)" },
  { dir: (p) => p.kernelsDir, match: new RegExp(`^\\.${NAME}\\.(?:new|old)-(\\d+)$`), maker: "daemon", madeBy: "kernel/import.ts replace" },
  { dir: (p) => p.kernelsDir, match: new RegExp(`^\\.replaced-${NAME}$`), maker: "daemon", madeBy: "daemon/replace.ts" },
  { dir: (p) => p.kernelsDir, match: new RegExp(`^\\.swap-${NAME}\\.json(?:\\.tmp-(\\d+))?$`), maker: "daemon", madeBy: "daemon/replace.ts (only after recovery read it)" },
  { dir: (p) => p.imagesDir, match: new RegExp(`^\\.staging-${NAME}-${MKDTEMP}$`), maker: "daemon", madeBy: "fsx.publishDir (image bundle fetch)" },
  { dir: (p) => p.imagesDir, match: new RegExp(`^\\.replaced-${NAME}$`), maker: "daemon", madeBy: "daemon/replace.ts" },
  { dir: (p) => p.imagesDir, match: new RegExp(`^\\.swap-${NAME}\\.json(?:\\.tmp-(\\d+))?$`), maker: "daemon", madeBy: "daemon/replace.ts (only after recovery read it)" },
  { dir: (p) => p.tmpDir, match: new RegExp(`^image-${NAME}-${MKDTEMP}$`), maker: "daemon", madeBy: "daemon/image-publish.ts (OCI pull, preset build)" },
  { dir: (p) => p.tmpDir, match: new RegExp(`^kernel-upload-${MKDTEMP}$`), maker: "daemon", madeBy: "daemon/kernels.ts (kernel import)" },
  { dir: (p) => p.tmpDir, match: /^bundle-[0-9a-f]{16}-(\d+)-[0-9a-f]+(?:\.partial|\.in\.fifo|\.out\.fifo)$/, maker: "daemon", madeBy: "bundle/fetch.ts (download, FIFOs)" },
  { dir: (p) => join(p.cacheDir, "bundles"), match: /^[0-9a-f]{64}\.tar\.zst\.partial-(\d+)$/, maker: "daemon", madeBy: "bundle/fetch.ts keepInCache" },
  { dir: (p) => join(p.cacheDir, "blobs", "tmp"), match: /^[0-9a-f]{16}-(\d+)-[0-9a-f]+$/, maker: "daemon", madeBy: "oci/blobs.ts" },
  { dir: (p) => p.initrdCacheDir, match: /^.+\.tmp-(\d+)(?:-\d+)?$/, maker: "daemon", madeBy: "kernel/initramfs.ts (boot initramfs)" },
  { dir: (p) => p.debsCacheDir, match: new RegExp(`^\\.apt-download-${MKDTEMP}$`), maker: "daemon", madeBy: "kernel/apt.ts" },
  { dir: (p) => join(p.presetsCacheDir, "work"), match: new RegExp(`^debian-${MKDTEMP}$`), maker: "daemon", madeBy: "presets/debian.ts" },
  { dir: (p) => p.snapshotsDir, match: new RegExp(`^\\.staging-${NAME}-${MKDTEMP}$`), maker: "daemon", madeBy: "daemon/snapshots.ts (vm snapshot, vm fork)" },
  { dir: (p) => p.vmsDir, perEntry: true, match: /^\.root\.(?:qcow2|ext4)\.partial-[0-9a-f]+$/, maker: "daemon", madeBy: "disk/clone.ts" },
  { dir: (p) => p.vmsDir, perEntry: true, match: new RegExp(`^\\.reflink-probe-${MKDTEMP}$`), maker: "daemon", madeBy: "disk/strategies.ts" },
  { dir: (p) => p.vmsDir, perEntry: true, match: new RegExp(`^\\.workspace-staging-${MKDTEMP}$`), maker: "daemon", madeBy: "daemon/workspace-disk.ts (vm.workspace.put)" },
  { dir: (p) => p.root, match: new RegExp(`^\\.reflink-probe-${MKDTEMP}$`), maker: "any", madeBy: "disk/strategies.ts (doctor's probe)" },
  { dir: (p) => p.root, match: /^config\.json\.tmp-(\d+)$/, maker: "any", madeBy: "config saveConfig (the CLI)" },
  { dir: (p) => p.root, match: /^api-key\.tmp-(\d+)$/, maker: "daemon", madeBy: "e2b/keys.ts (the E2B API's key)" },
  // Outside the root, shared by every root's daemon: the pid says whose (a live one's is never taken).
  { dir: () => "/dev/shm", match: new RegExp(`^banger-ws-(\\d+)-${MKDTEMP}$`), maker: "any", madeBy: "daemon/workspace-disk.ts (vm.workspace.put, in memory)" },
  { dir: (p) => p.sshDir, match: /^.+\.tmp-(\d+)(?:\.pub)?$/, maker: "any", madeBy: "net/ssh.ts" },
  { dir: (p) => p.hostCacheDir, match: /^kvm-probe\.json\.tmp-(\d+)$/, maker: "any", madeBy: "host/kvm.ts" },
  { dir: (p) => p.memoryDir, match: new RegExp(`^${NAME}\\.mem$`), maker: "mapped", madeBy: "QEMU's guest RAM (config vmMemoryFile; vmm removes it with the VM)" },
];

/** Files of makers other than the daemon without a pid in their name are taken once this old. */
const ANY_MAKER_MIN_AGE_MS = 3600_000;

export interface Leftover {
  path: string;
  /** Bytes on disk (allocated blocks, so a 4 GiB sparse image counts what it really holds). */
  bytes: number;
}

/** Whether a process runs (util/pids.ts by default; tests pass their own). */
export type PidAlive = (pid: number) => boolean;

async function listDir(dir: string): Promise<string[]> {
  return readdir(dir).catch(() => [] as string[]);
}

async function dirsOf(pattern: ScratchPattern, paths: RootDirs): Promise<string[]> {
  const dir = pattern.dir(paths);
  if (!pattern.perEntry) return [dir];
  const subs = await readdir(dir, { withFileTypes: true }).catch(() => []);
  return subs.filter((d) => d.isDirectory()).map((d) => join(dir, d.name));
}

/** Bytes a path holds on disk; a directory counts everything under it (symlinks not followed). */
export async function diskUsage(path: string): Promise<number> {
  const st = await lstat(path).catch(() => undefined);
  if (!st) return 0;
  let total = st.blocks * 512;
  if (st.isDirectory()) for (const name of await listDir(path)) total += await diskUsage(join(path, name));
  return total;
}

/** Every file some process maps (/proc/<pid>/maps), under `dir`. */
async function filesMappedUnder(dir: string): Promise<Set<string>> {
  const mapped = new Set<string>();
  for (const name of await listDir("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const maps = await readFile(`/proc/${name}/maps`, "utf8").catch(() => "");
    for (const line of maps.split("\n")) {
      const at = line.indexOf(`${dir}/`);
      if (at >= 0) mapped.add(line.slice(at).replace(/ \(deleted\)$/, ""));
    }
  }
  return mapped;
}

/** Whether a match is stale: never while the pid in its name lives or a process maps it; a daemon's file otherwise; anyone's once old. */
function isStale(pattern: ScratchPattern, m: RegExpExecArray, mtimeMs: number, alive: PidAlive, mapped: Set<string>, path: string): boolean {
  if (pattern.maker === "mapped") return !mapped.has(path);
  const pid = m[1] !== undefined ? Number(m[1]) : undefined;
  if (pid !== undefined) return pid !== process.pid && !alive(pid);
  return pattern.maker === "daemon" || Date.now() - mtimeMs > ANY_MAKER_MIN_AGE_MS;
}

/**
 * Staging and temp files under the root that no live process is writing. The daemon's own
 * scratch counts whatever its age: at the daemon's start (it holds the root's lock) none is in
 * use; seen by doctor while a daemon runs an operation, some may still be in use.
 */
export async function findLeftovers(paths: RootDirs, alive: PidAlive = isAlive): Promise<Leftover[]> {
  const found: Leftover[] = [];
  for (const pattern of SCRATCH) {
    const mapped = pattern.maker === "mapped" ? await filesMappedUnder(pattern.dir(paths)) : new Set<string>();
    for (const dir of await dirsOf(pattern, paths)) {
      for (const name of await listDir(dir)) {
        const m = pattern.match.exec(name);
        if (!m) continue;
        const path = join(dir, name);
        const st = await lstat(path).catch(() => undefined);
        if (!st || !isStale(pattern, m, st.mtimeMs, alive, mapped, path)) continue;
        found.push({ path, bytes: await diskUsage(path) });
      }
    }
  }
  return found;
}

/** Removes what findLeftovers finds; only the daemon calls it, at start, holding the root's lock. */
export async function sweepLeftovers(paths: RootDirs, alive: PidAlive = isAlive): Promise<{ removed: Leftover[]; bytes: number }> {
  const removed: Leftover[] = [];
  for (const left of await findLeftovers(paths, alive)) {
    await rm(left.path, { recursive: true, force: true }).then(
      () => removed.push(left),
      () => undefined,
    );
  }
  return { removed, bytes: removed.reduce((n, l) => n + l.bytes, 0) };
}
