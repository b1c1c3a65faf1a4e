// New VMs from snapshots: `vm create --from-snapshot`, and each child of `vm fork` (fork.ts:
// an internal snapshot of a running VM, then children restored from it). A restored VM is
// a new machine continuing the snapshot's processes: its own name, id, runtime directory,
// disk overlay on the snapshot's disk copy and, when the snapshot's VM had a NIC, its own
// tap, MAC and address. Its memory is the snapshot's file mapped copy-on-write by the VMM,
// never copied. Before anything else runs in it, the agent makes it a different machine
// (reidentify: hostname, RNG seed, clock, network). A restore that fails leaves nothing
// (vms.ts destroyVm), as a create does. A snapshot's next restore may already have its VMM
// waiting (standby.ts); a fork's children may start theirs before the snapshot is complete,
// its first child may take one already waiting on the snapshot's stand-ins.
import { randomBytes } from "node:crypto";
import { mkdir } from "node:fs/promises";
import { performance } from "node:perf_hooks";
import { snapshotDir } from "../config/index.ts";
import { type VmRecord, machineOf } from "../store/index.ts";
import { BangerError, ErrorCode, alreadyExists, errorLine, invalidArgument } from "../util/errors.ts";
import { humanBytes } from "../util/human.ts";
import { generateName } from "../util/namegen.ts";
import { validateName } from "../util/names.ts";
import { getDriver, type PendingRestore, type VmHandle, type VmSpec } from "../vmm/index.ts";
import { bootSpec } from "./boot.ts";
import type { CallEnv, DaemonContext } from "./context.ts";
import { recordOperation } from "./operations.ts";
import { type PlannedSnapshot, getSnapshot, restoredDisk, verifySnapshot } from "./snapshots.ts";
import { ensureFreeSpace } from "./vm-health.ts";
import { vmPaths } from "./vm-runtime.ts";
import { AGENT_READY_TIMEOUT_MS, consoleTail, destroyVm, getVm } from "./vms.ts";
import type { VmNic } from "./network.ts";
import { type Standby, adoptStandby, endStandby } from "./standby.ts";

/** The machine params a restore takes from its snapshot: refused beside `fromSnapshot`. */
const MACHINE_PARAMS = ["image", "kernel", "cpus", "memoryBytes", "diskBytes", "noStart", "net", "netPeer"] as const;

/** vm.create's params with `fromSnapshot`: the snapshot's name, when no machine param is given too. */
export function restoreOnly(p: Record<string, unknown>, snapshot: string): string {
  const given = MACHINE_PARAMS.filter((k) => p[k] !== undefined);
  if (given.length > 0) throw invalidArgument(`${given.join(", ")} cannot be set with fromSnapshot: a restored VM is the snapshot's machine`, `create it from ${snapshot} without them`);
  return validateName("snapshot", snapshot);
}

/** `vm create --from-snapshot`: a new VM (named, or a generated name) restored from `snapshot`. */
export function createFromSnapshot(ctx: DaemonContext, p: { name?: string; fromSnapshot: string }, call: CallEnv): Promise<VmRecord> {
  const snap = getSnapshot(ctx, p.fromSnapshot);
  const name = p.name === undefined ? generateName((n) => ctx.store.getVm(n) !== undefined) : validateName("vm", p.name);
  return ctx.locks.run(`vm:${name}`, () => recordOperation(ctx, "vm.create", name, () => restoreVm(ctx, snap.name, name, call)));
}

/**
 * Restores `snapName` as a new VM `name`; the caller holds the VM's lock. The snapshot's lock
 * is held throughout, so it cannot be removed under the restore.
 */
export async function restoreVm(ctx: DaemonContext, snapName: string, name: string, call: CallEnv, opts: { snapshotHeld?: boolean; pending?: PendingSnapshot } = {}): Promise<VmRecord> {
  // This child arrives once, however it ends.
  let arrived = false;
  const pending = opts.pending && {
    ...opts.pending,
    arrived: () => {
      if (!arrived) opts.pending?.arrived();
      arrived = true;
    },
  };
  const restore = async (): Promise<VmRecord> => {
    const started = performance.now();
    const phases: Record<string, number> = {};
    const mark = (phase: string) => (phases[phase] = Math.round(performance.now() - started));
    if (ctx.store.getVm(name)) throw alreadyExists(`vm ${name} already exists`, "pick another --name, or `banger vm rm` it");
    const snap = pending?.plan ?? getSnapshot(ctx, snapName);
    if (!pending) {
      // Refused with one line before any VMM starts: a damaged file would be a guest that crashes later.
      call.progress({ phase: "verify", message: `checking snapshot ${snap.name}` });
      await verifySnapshot(ctx, getSnapshot(ctx, snapName));
    }
    mark("verified");
    // The device set must match the snapshot's: its VM had a NIC, so the restored one needs a tap.
    if (snap.hasNic && !ctx.network.wantsNic(snap.net)) {
      throw new BangerError(
        ErrorCode.Unavailable,
        `snapshot ${snap.name} was taken of a VM with a network card, and networking is off here`,
        "turn networking on (banger config set network.enabled true)",
      );
    }
    ensureFreeSpace(ctx, "create", name);
    if (snap.hasNic) await ctx.network.prepare(snap.net);
    // A restore begun ahead (standby.ts) brings its id, disk and waiting VMM.
    const standby = pending ? pending.takeStandby?.() : ctx.standbys.take(snap.name);
    const id = standby?.id ?? randomBytes(6).toString("hex");
    const paths = vmPaths(ctx.paths, name, id);
    insertOrEnd(standby, () =>
      ctx.store.insertVm({
        name,
        id,
        state: "creating",
        ...machineOf(snap),
        diskBytes: 0,
        pid: null,
        // A snapshot taken without a NIC restores without one: the guest has no device to configure.
        ip: snap.hasNic ? ctx.network.allocate(snap.net) : null,
        error: null,
        config: {},
        net: snap.hasNic ? snap.net : "none",
        snapshot: snap.name,
      }),
    );
    let handle: VmHandle | undefined;
    let nic: VmNic | undefined;
    try {
      if (standby) {
        call.progress({ phase: "restore", message: `taking the ${snap.vmm} started ahead for ${snap.name}` });
        ctx.store.updateVm(name, { diskBytes: standby.diskBytes, config: await adoptStandby(standby, paths.dir) });
        mark("disk");
        pending?.arrived(); // its VMM opened the stand-ins long ago
        handle = pending ? await finishWhenComplete(ctx, standby.vmm, snap.name, pending.ready) : await standby.vmm.finish();
      } else {
        ({ handle, nic } = await restoreFresh(ctx, name, snap, paths, call, pending, mark));
      }
      mark("vmm");
      ctx.runtime.setHandle(name, handle);
      ctx.store.updateVm(name, { pid: handle.pid });
      call.progress({ phase: "agent", message: "making the guest a new machine" });
      const agent = await ctx.runtime.agent(name, { timeoutMs: AGENT_READY_TIMEOUT_MS, signal: call.signal });
      mark("agent");
      await agent.reidentify({
        hostname: name,
        seed: randomBytes(64),
        timeUnixMs: Date.now(),
        ...(nic ? { net: { mac: nic.mac, ...nic.guest } } : {}),
      });
      ctx.store.updateVm(name, { state: "running", startedAt: new Date().toISOString() });
      mark("reidentified");
      ctx.log.info("vm restored", { vm: name, snapshot: snap.name, pid: handle.pid, standby: standby !== undefined, ...phases });
      if (!pending) ctx.standbys.warm(ctx, snap.name); // the next restore of it starts no VMM
      return getVm(ctx, name);
    } catch (err) {
      if (standby && !handle) await endStandby(standby);
      const tail = handle ? await consoleTail(handle.consoleLogPath) : "";
      await destroyVm(ctx, name, paths.dir, paths.runtimeDir);
      if (tail && !(err instanceof BangerError && err.code === ErrorCode.Cancelled)) {
        throw new BangerError(ErrorCode.Failed, `vm ${name} did not restore: ${errorLine(err)}`, `last console lines:\n${tail}`);
      }
      throw err;
    }
  };
  // A fork holds its base's lock once for all its children, restored side by side.
  const restoring = opts.snapshotHeld ? restore() : ctx.locks.run(`snapshot:${snapName}`, restore);
  // Whatever happened before its VMM started, a fork must not wait on this child to copy its disk.
  return pending ? restoring.finally(pending.arrived) : restoring;
}

/** Runs the VM row's insert; a standby taken for it is ended if that fails (nothing else owns it yet). */
function insertOrEnd(standby: Standby | undefined, insert: () => void): void {
  try {
    insert();
  } catch (err) {
    if (standby) void endStandby(standby);
    throw err;
  }
}

/** A restore's own disk, workspace slot and VMM, made now (no standby was ready). */
async function restoreFresh(
  ctx: DaemonContext,
  name: string,
  snap: PlannedSnapshot,
  paths: { dir: string; runtimeDir: string },
  call: CallEnv,
  pending: PendingSnapshot | undefined,
  mark: (phase: string) => void,
): Promise<{ handle: VmHandle; nic: VmNic | undefined }> {
  call.progress({ phase: "disk", message: `overlay on snapshot ${snap.name}'s disk` });
  await mkdir(paths.dir, { recursive: true, mode: 0o700 });
  const disk = await restoredDisk(snap, snapshotDir(ctx.paths, snap.name), paths.dir, call.signal);
  mark("disk");
  ctx.store.updateVm(name, { diskBytes: disk.sizeBytes, config: disk.config });
  const vm = getVm(ctx, name);
  call.progress({ phase: "restore", message: `${vm.vmm}, ${vm.cpus} cpu, ${humanBytes(vm.memoryBytes)} mapped from ${snap.name}` });
  const nic = await ctx.network.attach(vm);
  const spec = await bootSpec(ctx, vm, { path: disk.path, format: disk.format }, paths.runtimeDir, nic);
  return { handle: await restoreVmm(ctx, vm.vmm, spec, snap.name, call.signal, pending), nic };
}

/** A snapshot still being taken (a fork's base): the record it will have, and its taking. */
export interface PendingSnapshot {
  plan: PlannedSnapshot;
  ready: Promise<unknown>;
  /** Told once per child: its VMM holds the stand-ins open, or it failed before. */
  arrived: () => void;
  /** A VMM already waiting on the stand-ins (a fork standby): the first child to ask takes it. */
  takeStandby?: () => Standby | undefined;
}

/**
 * The VMM continuing snapshot `snapName`. While it is still being taken (`ready`: a fork's
 * base, its files stand-ins written in place), a driver that can wait for the state starts
 * its VMM at once, so QEMU's own start (~100 ms) overlaps the parent's pause; the state loads
 * once the snapshot is complete and checked.
 */
async function restoreVmm(
  ctx: DaemonContext,
  driverName: string,
  spec: VmSpec,
  snapName: string,
  signal: AbortSignal | undefined,
  pending?: { ready: Promise<unknown>; arrived: () => void },
): Promise<VmHandle> {
  const driver = getDriver(driverName);
  const dir = snapshotDir(ctx.paths, snapName);
  if (!pending || !driver.prestartRestore) {
    await snapshotComplete(ctx, snapName, pending?.ready);
    return driver.restore(spec, dir, { signal });
  }
  const waiting = await driver.prestartRestore(spec, dir, { signal }).finally(() => pending.arrived());
  return finishWhenComplete(ctx, waiting, snapName, pending.ready);
}

/** The snapshot, once `ready` (its taking, for a fork's base), checked against its record. */
async function snapshotComplete(ctx: DaemonContext, snapName: string, ready: Promise<unknown> | undefined): Promise<void> {
  await ready;
  await verifySnapshot(ctx, getSnapshot(ctx, snapName));
}

/** The waiting VMM continuing the snapshot once it is complete; ended if it never is. */
async function finishWhenComplete(ctx: DaemonContext, waiting: PendingRestore, snapName: string, ready: Promise<unknown> | undefined): Promise<VmHandle> {
  try {
    await snapshotComplete(ctx, snapName, ready);
  } catch (err) {
    await waiting.cancel();
    throw err;
  }
  return waiting.finish();
}
