// Snapshots: taking one of a running VM (vm.snapshot, and vm.fork's internal base), listing,
// showing and removing them, checking their files before a restore, and freeing them when
// nothing uses them any more. Restoring is restore.ts, forking fork.ts.
//
// A snapshot is built in a staging directory beside <root>/snapshots/<name> and renamed into
// place only when complete, then recorded: a daemon killed half-way leaves a staging
// directory (util/scratch.ts: swept at start) or an unrecorded directory (reconcileSnapshots
// removes it), never a row without its files. The guest is paused only while its device
// state, memory and disk are written; hashing happens after it runs again.
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, open, readdir, rename, rm, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import { performance } from "node:perf_hooks";
import { snapshotDir, vmMemoryFile } from "../config/index.ts";
import { type SnapshotRecord, type VmRecord, machineOf } from "../store/index.ts";
import { BangerError, ErrorCode, alreadyExists, errorLine, notFound } from "../util/errors.ts";
import { makeStagingDir } from "../util/fsx.ts";
import { sha256File } from "../util/hash.ts";
import { humanBytes } from "../util/human.ts";
import { validateName } from "../util/names.ts";
import { diskUsage } from "../util/scratch.ts";
import { SNAPSHOT_MEMORY as MEMORY_FILE, SNAPSHOT_STATE as STATE_FILE } from "../vmm/index.ts";
import { chooseCloneStrategy, cloneFromSnapshot, diskStandIn, snapshotDisk, type DiskFormat, type SnapshotDisk } from "../disk/index.ts";
import type { CallEnv, DaemonContext } from "./context.ts";
import { recordOperation } from "./operations.ts";
import { workspaceSlotOf } from "./workspace-disk.ts";
import { restoreWorkspace, slotCopyCheck, snapshotWorkspace } from "./workspace-snapshot.ts";
import { pauseBriefly } from "./vm-health.ts";
import { getVm, type VmDiskConfig } from "./vms.ts";

export function getSnapshot(ctx: DaemonContext, name: string): SnapshotRecord {
  validateName("snapshot", name);
  const snap = ctx.store.snapshots.get(name);
  if (!snap) throw notFound(`snapshot ${name}`, "see `banger snapshot ls`");
  return snap;
}

/**
 * What depends on a snapshot: the VMs restored from it (their disks are overlays on its disk
 * copy). Warm pools add theirs here (helper "pool"): `snapshot rm` refuses while any exists.
 */
export function snapshotDependents(ctx: DaemonContext, name: string): string[] {
  return ctx.store.snapshots.vmsUsing(name);
}

export async function usedBytes(ctx: DaemonContext, name: string): Promise<number | null> {
  const dir = snapshotDir(ctx.paths, name);
  return existsSync(dir) ? diskUsage(dir) : null;
}

export interface TakenSnapshot {
  record: SnapshotRecord;
  pauseMs: number;
  totalMs: number;
}

/** `vm snapshot`: under the VM's lock. */
export function snapshotVm(ctx: DaemonContext, vmName: string, snapName: string, call: CallEnv): Promise<TakenSnapshot> {
  validateName("vm", vmName);
  validateName("snapshot", snapName);
  return ctx.locks.run(`vm:${vmName}`, () =>
    recordOperation(ctx, "vm.snapshot", vmName, async () => {
      const taken = await takeSnapshot(ctx, vmName, snapName, { internal: false }, call);
      ctx.standbys.warm(ctx, snapName); // its first restore starts no VMM
      return taken;
    }),
  );
}

/**
 * Writes the VM's device state, memory and disk copy into a new snapshot; the caller holds the
 * VM's lock. The VM keeps running: it is paused only while the VMM and the disk copy write.
 */
export function takeSnapshot(ctx: DaemonContext, vmName: string, snapName: string, opts: { internal: boolean; inPlace?: { diskGate: Promise<unknown> } }, call: CallEnv): Promise<TakenSnapshot> {
  return ctx.locks.run(`snapshot:${snapName}`, async () => {
    const started = performance.now();
    const vm = getVm(ctx, vmName);
    const handle = ctx.runtime.handle(vmName);
    if ((vm.state !== "running" && vm.state !== "paused") || !handle) {
      throw new BangerError(ErrorCode.InUse, `cannot snapshot vm ${vmName}: it is ${vm.state}`, `start it first: banger vm start ${vmName}`);
    }
    const dest = snapshotDir(ctx.paths, snapName);
    if (ctx.store.snapshots.get(snapName) || (!opts.inPlace && existsSync(dest)))
      throw alreadyExists(`snapshot ${snapName} already exists`, `pick another name, or \`banger snapshot rm ${snapName}\``);
    const disk = vm.config.disk as VmDiskConfig;
    // In place: into the stand-ins standInSnapshot made, which VMMs already hold open.
    const staging = opts.inPlace ? dest : await makeStagingDir(dest);
    try {
      call.progress({ phase: "snapshot", message: `pausing ${vmName}, writing memory, device state and disk` });
      const { result, pauseMs } = await pauseBriefly(ctx, vmName, handle, vm.state === "paused", async () => {
        let files: { copy: SnapshotDisk; workspace: Awaited<ReturnType<typeof snapshotWorkspace>>; sums: Promise<[Hashed, Hashed]> } | undefined;
        // The disks are copied once the VMM has let go of them, while it may still copy RAM;
        // then the device state and disk copy are hashed meanwhile (awaited after the resume).
        const afterState = async () => {
          // In place, the disk stand-in is rewritten (truncated first): only once the VMMs waiting on it have opened it.
          await opts.inPlace?.diskGate;
          const copy = await snapshotDisk({ path: disk.path, format: disk.format }, staging, { signal: call.signal, inPlace: opts.inPlace !== undefined });
          const workspace = await snapshotWorkspace(vm.config, staging, call.signal);
          const sums: Promise<[Hashed, Hashed]> = Promise.all([sha256File(join(staging, STATE_FILE)), sha256File(copy.path)]);
          sums.catch(() => undefined); // awaited below, unless the pause failed first
          files = { copy, workspace, sums };
        };
        await handle.saveSnapshot(staging, { signal: call.signal, afterState, inPlace: opts.inPlace !== undefined });
        return files!;
      });
      const diskCopy = result.copy;
      call.progress({ phase: "verify", message: `${vmName} resumed after ${pauseMs} ms; recording sizes and checksums` });
      const [[state, diskSum], memory] = await Promise.all([result.sums, stat(join(staging, MEMORY_FILE))]);
      if (staging !== dest) await rename(staging, dest);
      // Its checksums were just computed from these very files: the first restore (a fork's
      // child, at once) need not hash them again.
      verified.set(dest, await filesSignature(dest, [STATE_FILE, MEMORY_FILE, diskCopy.path.slice(staging.length + 1)]));
      const record = snapshotRecord(vm, snapName, {
        diskFile: diskCopy.path.slice(staging.length + 1),
        diskFormat: diskCopy.format,
        stateBytes: state.sizeBytes,
        memoryFileBytes: memory.size,
        diskBytes: diskSum.sizeBytes,
        stateSha256: state.sha256,
        diskSha256: diskSum.sha256,
        internal: opts.internal,
        pauseMs,
        workspace: result.workspace,
      });
      ctx.store.snapshots.insert(record);
      const totalMs = Math.round(performance.now() - started);
      ctx.log.info("snapshot taken", { vm: vmName, snapshot: snapName, pauseMs, totalMs, internal: opts.internal });
      return { record: ctx.store.snapshots.get(snapName)!, pauseMs, totalMs };
    } catch (err) {
      await rm(staging, { recursive: true, force: true }).catch(() => undefined);
      throw err;
    }
  });
}

/** A new name for a fork's base (an internal snapshot): the parent's, made unique. */
export const forkBaseName = (parent: string) => `${parent.slice(0, 40)}.fork-${randomBytes(4).toString("hex")}`;

/** A snapshot's record before it is taken: what its machine will be (its files' sizes and sums still unknown). */
export type PlannedSnapshot = Omit<SnapshotRecord, "createdAt">;

/**
 * For a fork: makes the directory of snapshot `snapName` of the running `vm` now, holding
 * stand-ins for its memory and disk (files of their final sizes, which takeSnapshot(…,
 * { inPlace: true }) then writes into), so its children's VMMs can start while it is taken
 * (vmm prestartRestore); returns the record it will have. Undefined, with nothing made, when
 * the snapshot cannot be written in place: not a running QEMU VM, guest RAM not in a shared
 * file (a restored VM maps its snapshot's privately, and its snapshot links that), a disk that
 * is not a qcow2 overlay, or a workspace slot (copied through a new file). The caller holds
 * the VM's lock. A daemon killed before the snapshot is recorded leaves an unrecorded
 * directory, which reconcileSnapshots removes.
 */
export async function standInSnapshot(ctx: DaemonContext, vm: VmRecord, snapName: string, signal?: AbortSignal): Promise<PlannedSnapshot | undefined> {
  const disk = vm.config.disk as VmDiskConfig | undefined;
  const running = vm.state === "running" && ctx.runtime.handle(vm.name) !== undefined;
  if (!running || vm.vmm !== "qemu" || disk?.format !== "qcow2" || workspaceSlotOf(vm.config) || !existsSync(vmMemoryFile(ctx.paths, vm.id))) return undefined;
  const dir = snapshotDir(ctx.paths, snapName);
  if (ctx.store.snapshots.get(snapName) || existsSync(dir)) throw alreadyExists(`snapshot ${snapName} already exists`, "pick another name");
  await mkdir(dir, { recursive: true, mode: 0o700 });
  try {
    const diskStand = await diskStandIn({ path: disk.path, format: disk.format }, dir, { signal });
    if (!diskStand) {
      await rm(dir, { recursive: true, force: true });
      return undefined;
    }
    const memory = await open(join(dir, MEMORY_FILE), "wx", 0o600);
    await memory.truncate(vm.memoryBytes).finally(() => memory.close());
    const record = vm.config.workspace as Record<string, unknown> | undefined;
    return snapshotRecord(vm, snapName, {
      diskFile: basename(diskStand),
      diskFormat: "qcow2",
      stateBytes: 0,
      memoryFileBytes: vm.memoryBytes,
      diskBytes: 0,
      stateSha256: "",
      diskSha256: "",
      internal: true,
      pauseMs: 0,
      workspace: record ? { record } : null,
    });
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/**
 * A restored VM's own disk in `dir` (an overlay on the snapshot's disk copy in `snapDir`, or a
 * copy of a raw one where the filesystem cannot overlay it) and its own workspace slot (the
 * snapshot's VM had the device, so the restore needs it); `config` records both.
 */
export async function restoredDisk(
  snap: Pick<SnapshotRecord, "vmm" | "diskFile" | "diskFormat" | "workspace">,
  snapDir: string,
  dir: string,
  signal?: AbortSignal,
): Promise<{ config: Record<string, unknown>; path: string; format: DiskFormat; sizeBytes: number }> {
  // A qcow2 disk copy is always overlaid (QEMU): no need to probe the filesystem per restore.
  const strategy = snap.diskFormat === "qcow2" ? "qcow2" : (await chooseCloneStrategy(snap.vmm === "firecracker" ? "firecracker" : "qemu", dir)).strategy;
  const dest = join(dir, strategy === "qcow2" ? "root.qcow2" : "root.ext4");
  const disk = await cloneFromSnapshot({ path: join(snapDir, snap.diskFile), format: snap.diskFormat }, dest, strategy, { signal });
  const workspace = await restoreWorkspace(snap.workspace, snapDir, dir, signal);
  return { config: { disk: { path: disk.path, format: disk.format, strategy: "snapshot-overlay", filesystemNeedsGrow: false }, ...workspace }, ...disk };
}

type Hashed = Awaited<ReturnType<typeof sha256File>>;

type SnapshotFiles = Pick<SnapshotRecord, "diskFile" | "diskFormat" | "stateBytes" | "memoryFileBytes" | "diskBytes" | "stateSha256" | "diskSha256" | "internal" | "pauseMs" | "workspace">;

function snapshotRecord(vm: VmRecord, name: string, files: SnapshotFiles): PlannedSnapshot {
  return {
    name,
    sourceVm: vm.name,
    ...machineOf(vm),
    hasNic: vm.tap !== null,
    ...files,
  };
}

/**
 * The snapshot's files as recorded: sizes of all three (four with a workspace slot copy), sha256 of the device state and the
 * disk copy (the memory file is only sized: hashing guest RAM would cost a restore more than
 * the restore). A match is remembered per directory while the files' sizes and times stay.
 */
const verified = new Map<string, string>();

export async function verifySnapshot(ctx: DaemonContext, snap: SnapshotRecord): Promise<void> {
  const dir = snapshotDir(ctx.paths, snap.name);
  const files = [
    { file: STATE_FILE, what: "device state", bytes: snap.stateBytes, sha256: snap.stateSha256 },
    { file: MEMORY_FILE, what: "memory", bytes: snap.memoryFileBytes, sha256: undefined },
    { file: snap.diskFile, what: "disk copy", bytes: snap.diskBytes, sha256: snap.diskSha256 },
    ...slotCopyCheck(snap.workspace),
  ];
  const damaged = (detail: string) => new BangerError(ErrorCode.Integrity, `snapshot ${snap.name} is damaged: ${detail}`, `remove it (banger snapshot rm -f ${snap.name}) and take it again`);
  for (const f of files) {
    const st = await stat(join(dir, f.file)).catch(() => undefined);
    if (!st) throw damaged(`its ${f.what} (${f.file}) is missing`);
    if (st.size !== f.bytes) throw damaged(`its ${f.what} (${f.file}) is ${humanBytes(st.size)} (${st.size} bytes), ${f.bytes} when taken`);
  }
  const sig = await filesSignature(
    dir,
    files.map((f) => f.file),
  );
  if (verified.get(dir) === sig) return;
  for (const f of files) {
    if (!f.sha256) continue;
    const { sha256 } = await sha256File(join(dir, f.file));
    if (sha256 !== f.sha256) throw damaged(`its ${f.what} (${f.file}) does not match the checksum recorded when it was taken`);
  }
  verified.set(dir, sig);
}

/** What changes when a file is replaced or written: inode, size, times. */
async function filesSignature(dir: string, files: string[]): Promise<string> {
  const sig: string[] = [];
  for (const f of files) {
    const st = await stat(join(dir, f));
    sig.push(`${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`);
  }
  return sig.join(",");
}

export async function listSnapshots(ctx: DaemonContext, all: boolean) {
  return ctx.store.snapshots.list().filter((s) => all || !s.internal);
}

/**
 * `snapshot rm`: refused while VMs were restored from it, unless forced; then its device
 * state and memory go (running restored VMs keep their private mapping of the memory until
 * they end) and its disk copy stays for their overlays, freed with the last of them (releaseSnapshot).
 */
export function removeSnapshot(ctx: DaemonContext, name: string, opts: { force?: boolean }): Promise<{ removed: string; diskKeptFor: string[]; freedBytes: number }> {
  const snap = getSnapshot(ctx, name);
  return ctx.locks.run(`snapshot:${name}`, () =>
    recordOperation(ctx, "snapshot.rm", name, async () => {
      const users = snapshotDependents(ctx, name);
      if (users.length > 0 && !opts.force) {
        throw new BangerError(
          ErrorCode.InUse,
          `snapshot ${name} is in use by ${users.join(", ")}`,
          `remove ${users.length === 1 ? "that VM" : "those VMs"} first, or \`banger snapshot rm -f ${name}\` (their disks keep its disk copy)`,
        );
      }
      await ctx.standbys.drop(name);
      const dir = snapshotDir(ctx.paths, snap.name);
      const before = (await diskUsage(dir)) ?? 0;
      ctx.store.snapshots.delete(name);
      verified.delete(dir);
      if (users.length === 0) await rm(dir, { recursive: true, force: true });
      else for (const f of [STATE_FILE, MEMORY_FILE]) await rm(join(dir, f), { force: true });
      const after = existsSync(dir) ? await diskUsage(dir) : 0;
      return { removed: name, diskKeptFor: users, freedBytes: Math.max(0, before - after) };
    }),
  );
}

/**
 * After a VM restored from `name` is gone: a fork's base with no child left goes, and so does
 * the disk copy a forced `snapshot rm` kept once its last VM is gone. Never throws.
 */
export async function releaseSnapshot(ctx: DaemonContext, name: string | null): Promise<void> {
  if (!name) return;
  await ctx.locks
    .run(`snapshot:${name}`, async () => {
      if (snapshotDependents(ctx, name).length > 0) return;
      const snap = ctx.store.snapshots.get(name);
      if (snap && !snap.internal) return;
      await ctx.standbys.drop(name);
      if (snap) ctx.store.snapshots.delete(name);
      await rm(snapshotDir(ctx.paths, name), { recursive: true, force: true });
      ctx.log.info("snapshot freed with its last vm", { snapshot: name });
    })
    .catch((err: unknown) => ctx.log.warn("snapshot not freed", { snapshot: name, error: errorLine(err) }));
}

/**
 * At start, after VMs are reconciled: directories under snapshots/ that no row and no VM
 * names (a daemon killed between the rename and the insert, or after a forced rm's last VM)
 * are removed, and fork bases without children freed.
 */
export async function reconcileSnapshots(ctx: DaemonContext): Promise<{ removed: string[] }> {
  const removed: string[] = [];
  const named = new Set([...ctx.store.snapshots.list().map((s) => s.name), ...ctx.store.listVms().map((v) => v.snapshot)]);
  for (const entry of await readdir(ctx.paths.snapshotsDir).catch(() => [] as string[])) {
    if (entry.startsWith(".") || named.has(entry)) continue;
    await rm(snapshotDir(ctx.paths, entry), { recursive: true, force: true });
    removed.push(entry);
  }
  for (const snap of ctx.store.snapshots.list()) {
    if (snap.internal && snapshotDependents(ctx, snap.name).length === 0) {
      await releaseSnapshot(ctx, snap.name);
      removed.push(snap.name);
    }
  }
  if (removed.length > 0) ctx.log.info("removed unused snapshots", { snapshots: removed });
  return { removed };
}
