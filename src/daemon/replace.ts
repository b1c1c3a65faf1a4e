// Installing a kernel or image, new or replacing one (`--force`, a newer digest), so that a
// failure or a daemon kill at any point leaves either the old one or the new one complete on
// disk, and the store agreeing with the disk.
//
// The new one is built aside (a staging dir beside the destination, or a work dir under
// <root>/tmp: same filesystem), then:
//   1. write <dir>/.swap-<name>.json: the new store row and where the new files are (intent)
//   2. rename <dir>/<name> to <dir>/.replaced-<name> (when there is an old one)
//   3. rename the new files to <dir>/<name>
//   4. record the new row in the store
//   5. remove .replaced-<name>, then the intent
// recoverSwaps() runs at daemon start, before the leftover sweep: an intent whose new files
// are still where they were built (killed before 3) is undone (the old one is renamed back);
// one whose new files are gone (3 happened) is finished (row recorded, old one removed).
//
// A kernel or image that VMs use is never replaced: a VM's qcow2 disk is an overlay whose
// backing file is the image's rootfs.ext4 by path, and a VM boots its kernel's files by path.
import { readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { ImageRecord, KernelRecord } from "../store/index.ts";
import { BangerError, ErrorCode, alreadyExists } from "../util/errors.ts";
import { makeStagingDir, syncTree } from "../util/fsx.ts";
import { isValidName } from "../util/names.ts";
import { pidTempName, replacedName, swapIntentName } from "../util/scratch.ts";
import type { DaemonContext } from "./context.ts";

export type ArtifactKind = "kernel" | "image";
export type KernelRow = Omit<KernelRecord, "createdAt">;
export type ImageRow = Omit<ImageRecord, "createdAt">;

interface SwapIntent {
  kind: ArtifactKind;
  name: string;
  /** Where the new files were built; gone once step 3 happened. */
  fresh: string;
  row: KernelRow | ImageRow;
}

function storeDir(ctx: DaemonContext, kind: ArtifactKind): string {
  return kind === "kernel" ? ctx.paths.kernelsDir : ctx.paths.imagesDir;
}

function usersOf(ctx: DaemonContext, kind: ArtifactKind, name: string): string[] {
  return kind === "kernel" ? ctx.store.vmsUsingKernel(name) : ctx.store.vmsUsingImage(name);
}

function putRow(ctx: DaemonContext, kind: ArtifactKind, row: KernelRow | ImageRow): void {
  if (kind === "kernel") ctx.store.putKernel(row as KernelRow);
  else ctx.store.putImage(row as ImageRow);
}

function hasRow(ctx: DaemonContext, kind: ArtifactKind, name: string): boolean {
  return (kind === "kernel" ? ctx.store.getKernel(name) : ctx.store.getImage(name)) !== undefined;
}

/** Refuses while VMs use it: their disks or boots name its files by path. */
export function refuseIfUsed(ctx: DaemonContext, kind: ArtifactKind, name: string, doing: "remove" | "replace"): void {
  refuseIfSnapshotted(ctx, kind, name, doing);
  const all = usersOf(ctx, kind, name);
  if (all.length === 0) return;
  const why = kind === "image" ? "their disks are overlays of its rootfs.ext4" : "they boot its files";
  // A warm pool's VMs are named by their pool (their own names are internal), with how to empty it.
  const pools = [...new Set(all.map((vm) => ctx.store.getVm(vm)?.pool).filter((p): p is string => typeof p === "string"))];
  const users = all.filter((vm) => !ctx.store.getVm(vm)?.pool);
  const used = [...(users.length > 0 ? [`vm ${users.join(", ")}`] : []), ...pools.map((p) => `the warm pool of ${p}`)].join(" and ");
  const emptyPools = pools.map((p) => `banger pool set ${p} --size 0`).join("; ");
  throw new BangerError(
    ErrorCode.InUse,
    `cannot ${doing} ${kind} ${name}: it is used by ${used} (${why})`,
    `${users.length > 0 ? "remove those VMs first" : `empty the pool first: ${emptyPools}`}${users.length > 0 && pools.length > 0 ? `, and ${emptyPools}` : ""}${doing === "replace" ? ", or use another --name" : ""}`,
  );
}

/**
 * Snapshots name the image's rootfs.ext4 as their disk's backing file and restore into the
 * kernel's files: removing or replacing either would break every VM restored from them later.
 */
function refuseIfSnapshotted(ctx: DaemonContext, kind: ArtifactKind, name: string, doing: "remove" | "replace"): void {
  const snaps = ctx.store.snapshots.list().filter((s) => (kind === "image" ? s.image : s.kernel) === name);
  if (snaps.length === 0) return;
  const named = snaps.map((s) => (s.internal ? `${s.name} (the base of ${s.sourceVm}'s forks)` : s.name)).join(", ");
  const why = kind === "image" ? "their disks are overlays of its rootfs.ext4" : "they restore into its files";
  throw new BangerError(
    ErrorCode.InUse,
    `cannot ${doing} ${kind} ${name}: snapshot ${named} use${snaps.length === 1 ? "s" : ""} it (${why})`,
    "remove those snapshots first (`banger snapshot rm NAME`; a fork base goes with its last child)",
  );
}

/**
 * Before building: refuses to replace an existing kernel/image unless forced (and never one
 * in use). Nothing is removed here: the old one stays until the new one is complete.
 */
export async function checkReplaceable(ctx: DaemonContext, kind: ArtifactKind, name: string, force: boolean, hint: string): Promise<void> {
  if (!hasRow(ctx, kind, name)) {
    // Files without a record (left by a banger that removed records first) are not the user's data.
    await rm(join(storeDir(ctx, kind), name), { recursive: true, force: true });
    return;
  }
  if (!force) throw alreadyExists(`${kind} ${name} already exists`, hint);
  refuseIfUsed(ctx, kind, name, "replace");
}

/**
 * Runs `build(stagingDir)`, which must make `<stagingDir>/<name>`, in a staging dir beside the
 * store's directory, then installs it. On any failure the staging dir goes and the old one stays.
 */
export async function buildAside<T>(ctx: DaemonContext, kind: ArtifactKind, name: string, build: (stagingDir: string) => Promise<{ result: T; row: KernelRow | ImageRow }>): Promise<T> {
  const staging = await makeStagingDir(join(storeDir(ctx, kind), name));
  try {
    const { result, row } = await build(staging);
    await install(ctx, kind, name, join(staging, name), row);
    return result;
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

/** Steps 1-5 above: `fresh` (complete, on the store's filesystem) becomes `<dir>/<name>`, recorded as `row`. */
export async function install(ctx: DaemonContext, kind: ArtifactKind, name: string, fresh: string, row: KernelRow | ImageRow): Promise<void> {
  const dir = storeDir(ctx, kind);
  const dest = join(dir, name);
  const aside = join(dir, replacedName(name));
  const intent = join(dir, swapIntentName(name));
  // A VM may have been made from the old one while the new one was built.
  if (hasRow(ctx, kind, name)) refuseIfUsed(ctx, kind, name, "replace");
  await syncTree(fresh);
  const planned: SwapIntent = { kind, name, fresh, row };
  await writeIntent(intent, planned);
  try {
    await rm(aside, { recursive: true, force: true });
    if (await exists(dest)) await rename(dest, aside);
    await rename(fresh, dest);
    putRow(ctx, kind, row);
    await rm(aside, { recursive: true, force: true });
  } catch (err) {
    // Undone or finished now, as a restart would; if even that fails, the intent stays for the next start.
    await settle(ctx, kind, name, planned).then(
      () => rm(intent, { force: true }),
      () => undefined,
    );
    throw err;
  }
  await rm(intent, { force: true });
}

async function writeIntent(path: string, intent: SwapIntent): Promise<void> {
  const tmp = pidTempName(path);
  await writeFile(tmp, JSON.stringify(intent), { mode: 0o600 });
  await rename(tmp, path);
}

async function exists(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined)) !== undefined;
}

/** What recoverSwaps did, for the daemon log. */
export interface Recovered {
  undone: string[];
  finished: string[];
}

/** At daemon start (holding the root's lock), before the sweep: undoes or finishes every half-done install. */
export async function recoverSwaps(ctx: DaemonContext): Promise<Recovered> {
  const done: Recovered = { undone: [], finished: [] };
  for (const kind of ["kernel", "image"] as const) {
    const dir = storeDir(ctx, kind);
    for (const file of await readdir(dir).catch(() => [] as string[])) {
      const m = /^\.swap-(.+)\.json$/.exec(file);
      if (!m || !isValidName(m[1]!)) continue;
      const name = m[1]!;
      const intent = await readIntent(ctx, join(dir, file), kind, name);
      const outcome = await settle(ctx, kind, name, intent);
      await rm(join(dir, file), { force: true });
      done[outcome].push(`${kind} ${name}`);
    }
  }
  return done;
}

async function settle(ctx: DaemonContext, kind: ArtifactKind, name: string, intent: SwapIntent | undefined): Promise<keyof Recovered> {
  const dir = storeDir(ctx, kind);
  const dest = join(dir, name);
  const aside = join(dir, replacedName(name));
  const moved = intent !== undefined && !(await exists(intent.fresh)) && (await exists(dest));
  if (moved) {
    putRow(ctx, kind, intent.row);
    await rm(aside, { recursive: true, force: true });
    return "finished";
  }
  // Killed before the new files moved in: put the old one back; the sweep removes the new.
  if (!(await exists(dest)) && (await exists(aside))) await rename(aside, dest);
  if (intent) await rm(intent.fresh, { recursive: true, force: true });
  return "undone";
}

/** The intent as written, or undefined when unreadable (then the install is undone). */
async function readIntent(ctx: DaemonContext, path: string, kind: ArtifactKind, name: string): Promise<SwapIntent | undefined> {
  try {
    const raw = JSON.parse(await readFile(path, "utf8")) as SwapIntent;
    const inRoot = [ctx.paths.kernelsDir, ctx.paths.imagesDir, ctx.paths.tmpDir].some((d) => raw.fresh.startsWith(`${d}/`));
    if (raw.kind !== kind || raw.name !== name || raw.row?.name !== name || !inRoot || raw.fresh.includes("/../")) return undefined;
    return raw;
  } catch {
    return undefined;
  }
}
