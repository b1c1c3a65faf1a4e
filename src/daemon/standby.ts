// Standby restores: a VMM already started for the next restore of the snapshots used last
// (and of each one just taken), or for the next fork of a VM just forked, waiting for the
// device state (vmm prestartRestore: QEMU `-incoming defer` with the snapshot's memory
// mapped), with its own disk overlay made and a VM id reserved. The next `vm create
// --from-snapshot` (or E2B create from it) or `vm fork` takes it, names it and only loads the
// state: QEMU's own start (~100 ms here: linking ~50 libraries and registering its types) is
// no longer on its path. Nothing of the guest runs before it is taken, so a standby is a
// restore begun early, not a VM kept warm. A fork standby waits on the stand-ins of its VM's
// next fork base (snapshots.ts standInSnapshot), which that fork then writes in place.
//
// Each costs a QEMU process (~15-20 MiB, no guest RAM of its own: the snapshot's pages stay
// in the page cache); at most `snapshot.standbys` (default 2, 0: none) in all, those used
// last. Not for a fork's internal base (its children are all restored at once), a snapshot or
// VM with a network card (its tap and address belong to a VM row) or a VMM without
// prestartRestore (Firecracker). `snapshot rm`, freeing a fork's base, the VM forked
// stopping or going, and a daemon stop end them; a daemon killed leaves them running, and
// the next start ends them (reapStandbys: their runtime dirs carry a marker; a fork
// standby's unrecorded base goes with reconcileSnapshots).
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readdir, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { snapshotDir, snapshotStandbys, vmDir, vmRuntimeDir } from "../config/index.ts";
import { type VmRecord, machineOf } from "../store/index.ts";
import { errorLine } from "../util/errors.ts";
import { isAlive } from "../util/pids.ts";
import { getDriver, killUnrecordedVmms, type PendingRestore } from "../vmm/index.ts";
import { bootSpec } from "./boot.ts";
import type { DaemonContext } from "./context.ts";
import { rebasePaths } from "./pools.ts";
import { type PlannedSnapshot, forkBaseName, getSnapshot, restoredDisk, standInSnapshot, verifySnapshot } from "./snapshots.ts";

/** In a standby's runtime dir: what reapStandbys looks for. */
const MARKER = "standby";

/** A restore begun ahead: its id, its files (to move under the VM's name) and its waiting VMM. */
export interface Standby {
  /** The snapshot it restores (a fork standby: its base, still stand-ins). */
  snapshot: string;
  id: string;
  /** Its disk directory, moved to the VM's once taken. */
  dir: string;
  runtimeDir: string;
  /** The VM's config (disk, workspace slot), paths under `dir`. */
  config: Record<string, unknown>;
  diskBytes: number;
  vmm: PendingRestore;
  /** A fork standby's base (its stand-ins are removed with it until a fork takes it) and the parent VMM it was made for. */
  fork?: { plan: PlannedSnapshot; parentPid: number; baseDir: string };
}

/** A fork standby taken by `vm fork`: the base it is waiting on now belongs to the fork. */
export interface ForkStandby {
  standby: Standby;
  plan: PlannedSnapshot;
}

export class StandbyRestores {
  /** By snapshot name, or forkKey(vm) for a VM's next fork. */
  private readonly ready = new Map<string, Standby>();
  private readonly making = new Map<string, Promise<void>>();
  private closed = false;

  /** Makes one for `snapshot`'s next restore in the background unless it has one; the least recently used beyond `snapshot.standbys` is ended. */
  warm(ctx: DaemonContext, snapshot: string): void {
    this.warmKey(ctx, snapshot, () => makeRestoreStandby(ctx, snapshot));
  }

  /** Makes one for running `vm`'s next fork in the background (after a fork of it: it is likely forked again). */
  warmFork(ctx: DaemonContext, vm: string): void {
    this.warmKey(ctx, forkKey(vm), () => makeForkStandby(ctx, vm));
  }

  /** The ready standby for `snapshot`, now the caller's (undefined when none). The caller warms the next once its restore is done: made meanwhile, it would slow that restore's guest. */
  take(snapshot: string): Standby | undefined {
    const standby = this.ready.get(snapshot);
    this.ready.delete(snapshot);
    if (!standby || isAlive(standby.vmm.pid)) return standby;
    void endStandby(standby); // its VMM died waiting (killed, out of memory): the restore starts its own
    return undefined;
  }

  /**
   * `vm`'s fork standby, now the caller's with its base, when it was made for this very VMM
   * (`parentPid`) and workspace record and `vm` is running; otherwise it is ended.
   */
  takeFork(vm: VmRecord, parentPid: number): ForkStandby | undefined {
    const standby = this.take(forkKey(vm.name));
    if (!standby?.fork) return undefined;
    const { plan, parentPid: madeFor } = standby.fork;
    // A paused parent forks as it did before standbys: its snapshot is not written in place.
    if (vm.state !== "running" || madeFor !== parentPid || JSON.stringify(plan.workspace?.record ?? null) !== JSON.stringify(vm.config.workspace ?? null)) {
      void endStandby(standby);
      return undefined;
    }
    return { standby: { ...standby, fork: undefined }, plan };
  }

  /** Ends `snapshot`'s standby, and one being made (`snapshot rm`). */
  async drop(snapshot: string): Promise<void> {
    const standby = this.ready.get(snapshot);
    this.ready.delete(snapshot);
    const making = this.making.get(snapshot);
    this.making.delete(snapshot);
    await making;
    if (standby) await endStandby(standby);
  }

  /** Ends `vm`'s fork standby (it stopped, ended or was removed). */
  dropFork(vm: string): Promise<void> {
    return this.drop(forkKey(vm));
  }

  /** Daemon stop: every standby ended. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.making.values()]);
    const all = [...this.ready.values()];
    this.ready.clear();
    await Promise.all(all.map(endStandby));
  }

  private warmKey(ctx: DaemonContext, key: string, make: () => Promise<Standby | undefined>): void {
    const max = standbysWanted(ctx);
    this.evict(max);
    if (this.closed || max <= 0 || this.ready.has(key) || this.making.has(key)) return;
    const making: Promise<void> = make()
      .then(async (standby) => {
        if (!standby) return;
        // Dropped (or the daemon stopping) while it was made: drop() and close() wait for this.
        if (this.closed || this.making.get(key) !== making) return await endStandby(standby);
        this.ready.set(key, standby);
        this.evict(standbysWanted(ctx));
      })
      .catch((err: unknown) => ctx.log.warn("standby not made", { for: key, error: errorLine(err) }))
      .finally(() => {
        if (this.making.get(key) === making) this.making.delete(key);
      });
    this.making.set(key, making);
  }

  /** Ends the oldest standbys past `max` (a Map keeps insertion order: take() and warm() re-insert). */
  private evict(max: number): void {
    for (const [key, standby] of this.ready) {
      if (this.ready.size <= max) break;
      this.ready.delete(key);
      void endStandby(standby);
    }
  }
}

/** A fork standby's key: VM and snapshot names have no colon. */
const forkKey = (vm: string) => `fork:${vm}`;

async function makeRestoreStandby(ctx: DaemonContext, name: string): Promise<Standby | undefined> {
  const snap = getSnapshot(ctx, name);
  if (snap.internal || snap.hasNic || !getDriver(snap.vmm).prestartRestore) return undefined;
  await verifySnapshot(ctx, snap);
  const standby = await prepareStandby(ctx, snap, name);
  ctx.log.info("standby restore ready", { snapshot: name, pid: standby.vmm.pid });
  return standby;
}

/**
 * For running `vmName`'s next fork: the stand-ins of its next base (snapshots.ts
 * standInSnapshot, unrecorded until a fork takes it: reconcileSnapshots removes them after a
 * daemon kill) and a child's VMM waiting on them. Not for a VM with a network card (each
 * child's tap and address belong to its row) or one whose snapshot cannot be written in place.
 */
async function makeForkStandby(ctx: DaemonContext, vmName: string): Promise<Standby | undefined> {
  const vm = ctx.store.getVm(vmName);
  const parentPid = ctx.runtime.handle(vmName)?.pid;
  if (!vm || parentPid === undefined || vm.tap !== null || !getDriver(vm.vmm).prestartRestore) return undefined;
  const base = forkBaseName(vmName);
  const plan = await standInSnapshot(ctx, vm, base);
  if (!plan) return undefined;
  try {
    const standby = { ...(await prepareStandby(ctx, plan, `fork:${vmName}`)), fork: { plan, parentPid, baseDir: snapshotDir(ctx.paths, base) } };
    ctx.log.info("standby fork ready", { vm: vmName, snapshot: base, pid: standby.vmm.pid });
    return standby;
  } catch (err) {
    await rm(snapshotDir(ctx.paths, base), { recursive: true, force: true });
    throw err;
  }
}

/** Its id, disk directory and runtime directory (marked: reapStandbys), and its VMM waiting on `snap`'s files. */
async function prepareStandby(ctx: DaemonContext, snap: PlannedSnapshot, marker: string): Promise<Standby> {
  const id = randomBytes(6).toString("hex");
  const dir = vmDir(ctx.paths, `.standby-${id}`);
  const runtimeDir = vmRuntimeDir(ctx.paths, id);
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await mkdir(runtimeDir, { recursive: true, mode: 0o700 });
    await writeFile(join(runtimeDir, MARKER), `${marker}\n`);
    const snapDir = snapshotDir(ctx.paths, snap.name);
    const disk = await restoredDisk(snap, snapDir, dir);
    const spec = await bootSpec(ctx, { ...machineOf(snap), name: `standby-${id}`, id, config: disk.config }, { path: disk.path, format: disk.format }, runtimeDir);
    const vmm = await getDriver(snap.vmm).prestartRestore!(spec, snapDir);
    return { snapshot: snap.name, id, dir, runtimeDir, config: disk.config, diskBytes: disk.sizeBytes, vmm };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    await rm(runtimeDir, { recursive: true, force: true });
    throw err;
  }
}

/** snapshot.standbys now; a bad value in the config file is logged and taken as 0 (no standby). */
function standbysWanted(ctx: DaemonContext): number {
  try {
    return snapshotStandbys(ctx.config());
  } catch (err) {
    ctx.log.warn("no standby restores", { error: errorLine(err) });
    return 0;
  }
}

/** A standby no VM took: its VMM ended, its files gone. */
export async function endStandby(standby: Standby): Promise<void> {
  await standby.vmm.cancel().catch(() => undefined);
  // Never throws (callers end VMs after it): what cannot be removed now goes at the next start (reapStandbys, reconcileSnapshots).
  const gone = (dir: string) => rm(dir, { recursive: true, force: true }).catch(() => undefined);
  await gone(standby.dir);
  await gone(standby.runtimeDir);
  // A fork standby no fork took: its base's stand-ins too (never recorded).
  if (standby.fork) await gone(standby.fork.baseDir);
}

/** A taken standby's files under the VM's own directory; its config with their new paths. */
export async function adoptStandby(standby: Standby, vmDirPath: string): Promise<Record<string, unknown>> {
  await rename(standby.dir, vmDirPath);
  await rm(join(standby.runtimeDir, MARKER), { force: true });
  return rebasePaths(standby.config, standby.dir, vmDirPath) as Record<string, unknown>;
}

/**
 * At start, before any standby is made: those a killed daemon left, their VMMs ended (found by
 * the marker in their runtime dirs) and their disk directories removed (also after a reboot
 * emptied the runtime dirs). Not in util/scratch.ts: `banger doctor` would call a live one a leftover.
 */
export async function reapStandbys(ctx: DaemonContext): Promise<number> {
  let reaped = 0;
  const runs = join(ctx.paths.runDir, "vms");
  for (const id of await readdir(runs).catch(() => [] as string[])) {
    const runtimeDir = join(runs, id);
    if (!existsSync(join(runtimeDir, MARKER))) continue;
    await killUnrecordedVmms(runtimeDir).catch(() => undefined);
    await rm(runtimeDir, { recursive: true, force: true });
    reaped++;
  }
  for (const entry of await readdir(ctx.paths.vmsDir).catch(() => [] as string[])) {
    if (STANDBY_DIR.test(entry)) await rm(join(ctx.paths.vmsDir, entry), { recursive: true, force: true });
  }
  return reaped;
}

const STANDBY_DIR = /^\.standby-[0-9a-f]{12}$/;
