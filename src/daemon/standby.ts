// Standby restores: for the snapshots restored from last (and each one just taken), a VMM
// already started for its next restore, waiting for the device state (vmm prestartRestore:
// QEMU `-incoming defer` with the snapshot's memory mapped), with its own disk overlay made
// and a VM id reserved. The next `vm create --from-snapshot` (or E2B create from it) takes it,
// names it and only loads the state: QEMU's own start (~100 ms here: linking ~50 libraries and
// registering its types) is no longer on its path. Nothing of the guest runs before it is
// taken, so a standby is a restore begun early, not a VM kept warm.
//
// Each costs a QEMU process (~15-20 MiB, no guest RAM of its own: the snapshot's pages stay
// in the page cache); at most `snapshot.standbys` (default 2, 0: none), the snapshots used last. Not for a fork's internal
// base (its children are all restored at once), a snapshot with a network card (its tap and
// address belong to a VM row) or a VMM without prestartRestore (Firecracker). `snapshot rm`,
// freeing a fork's base and a daemon stop cancel them; a daemon killed leaves them
// running, and the next start ends them (reapStandbys: their runtime dirs carry a marker).
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readdir, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { snapshotDir, snapshotStandbys, vmDir, vmRuntimeDir } from "../config/index.ts";
import { chooseCloneStrategy, cloneFromSnapshot } from "../disk/index.ts";
import { machineOf } from "../store/index.ts";
import { errorLine } from "../util/errors.ts";
import { getDriver, killUnrecordedVmms, type PendingRestore } from "../vmm/index.ts";
import { bootSpec } from "./boot.ts";
import type { DaemonContext } from "./context.ts";
import { rebasePaths } from "./pools.ts";
import { getSnapshot, verifySnapshot } from "./snapshots.ts";
import { restoreWorkspace } from "./workspace-snapshot.ts";

/** In a standby's runtime dir: what reapStandbys looks for. */
const MARKER = "standby";

/** A restore begun ahead: its id, its files (to move under the VM's name) and its waiting VMM. */
export interface Standby {
  snapshot: string;
  id: string;
  /** Its disk directory, moved to the VM's once taken. */
  dir: string;
  runtimeDir: string;
  /** The VM's config (disk, workspace slot), paths under `dir`. */
  config: Record<string, unknown>;
  diskBytes: number;
  vmm: PendingRestore;
}

export class StandbyRestores {
  private readonly ready = new Map<string, Standby>();
  private readonly making = new Map<string, Promise<void>>();
  private closed = false;

  /** Makes one for `snapshot` in the background unless it has one; the least recently used beyond MAX_STANDBYS is ended. */
  warm(ctx: DaemonContext, snapshot: string): void {
    const max = standbysWanted(ctx);
    this.evict(max);
    if (this.closed || max <= 0 || this.ready.has(snapshot) || this.making.has(snapshot)) return;
    const making = this.make(ctx, snapshot)
      .then((standby) => {
        if (!standby) return;
        if (this.closed || !this.making.has(snapshot)) return void endStandby(standby);
        this.ready.set(snapshot, standby);
        this.evict(standbysWanted(ctx));
      })
      .catch((err: unknown) => ctx.log.warn("standby restore not made", { snapshot, error: errorLine(err) }))
      .finally(() => this.making.delete(snapshot));
    this.making.set(snapshot, making);
  }

  /** The ready standby for `snapshot`, now the caller's (undefined when none). The caller warms the next once its restore is done: made meanwhile, it would slow that restore's guest. */
  take(snapshot: string): Standby | undefined {
    const standby = this.ready.get(snapshot);
    this.ready.delete(snapshot);
    return standby;
  }

  /** Ends `snapshot`'s standby, and forgets one being made (`snapshot rm`). */
  async drop(snapshot: string): Promise<void> {
    const standby = this.ready.get(snapshot);
    this.ready.delete(snapshot);
    const making = this.making.get(snapshot);
    this.making.delete(snapshot);
    await making;
    if (standby) await endStandby(standby);
  }

  /** Daemon stop: every standby ended. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.making.values()]);
    const all = [...this.ready.values()];
    this.ready.clear();
    await Promise.all(all.map(endStandby));
  }

  /** Ends the oldest standbys past `max` (a Map keeps insertion order: take() and warm() re-insert). */
  private evict(max: number): void {
    for (const [snapshot, standby] of this.ready) {
      if (this.ready.size <= max) break;
      this.ready.delete(snapshot);
      void endStandby(standby);
    }
  }

  private async make(ctx: DaemonContext, name: string): Promise<Standby | undefined> {
    const snap = getSnapshot(ctx, name);
    const driver = getDriver(snap.vmm);
    if (snap.internal || snap.hasNic || !driver.prestartRestore) return undefined;
    await verifySnapshot(ctx, snap);
    const id = randomBytes(6).toString("hex");
    const dir = vmDir(ctx.paths, `.standby-${id}`);
    const runtimeDir = vmRuntimeDir(ctx.paths, id);
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      await mkdir(runtimeDir, { recursive: true, mode: 0o700 });
      await writeFile(join(runtimeDir, MARKER), `${name}\n`);
      const snapDir = snapshotDir(ctx.paths, name);
      const strategy = snap.diskFormat === "qcow2" ? "qcow2" : (await chooseCloneStrategy(snap.vmm === "firecracker" ? "firecracker" : "qemu", dir)).strategy;
      const disk = await cloneFromSnapshot({ path: join(snapDir, snap.diskFile), format: snap.diskFormat }, join(dir, strategy === "qcow2" ? "root.qcow2" : "root.ext4"), strategy);
      const workspace = await restoreWorkspace(snap.workspace, snapDir, dir);
      const config = { disk: { path: disk.path, format: disk.format, strategy: "snapshot-overlay", filesystemNeedsGrow: false }, ...workspace };
      const spec = await bootSpec(ctx, { ...machineOf(snap), name: `standby-${id}`, id, config }, { path: disk.path, format: disk.format }, runtimeDir);
      const vmm = await driver.prestartRestore(spec, snapDir);
      ctx.log.info("standby restore ready", { snapshot: name, pid: vmm.pid });
      return { snapshot: name, id, dir, runtimeDir, config, diskBytes: disk.sizeBytes, vmm };
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      await rm(runtimeDir, { recursive: true, force: true });
      throw err;
    }
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
  await rm(standby.dir, { recursive: true, force: true });
  await rm(standby.runtimeDir, { recursive: true, force: true });
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
