// New VMs from snapshots: `vm create --from-snapshot` and `vm fork` (an internal snapshot of
// a running VM, then children restored from it; the parent keeps running). A restored VM is
// a new machine continuing the snapshot's processes: its own name, id, runtime directory,
// disk overlay on the snapshot's disk copy and, when the snapshot's VM had a NIC, its own
// tap, MAC and address. Its memory is the snapshot's file mapped copy-on-write by the VMM,
// never copied. Before anything else runs in it, the agent makes it a different machine
// (reidentify: hostname, RNG seed, clock, network). A restore that fails leaves nothing
// (vms.ts destroyVm), as a create does.
import { randomBytes } from "node:crypto";
import { availableParallelism } from "node:os";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { snapshotDir } from "../config/index.ts";
import { type VmRecord, machineOf } from "../store/index.ts";
import { BangerError, ErrorCode, alreadyExists, errorLine, invalidArgument } from "../util/errors.ts";
import { humanBytes } from "../util/human.ts";
import type { ProgressEvent } from "../util/progress.ts";
import { generateName } from "../util/namegen.ts";
import { validateName } from "../util/names.ts";
import { chooseCloneStrategy, cloneFromSnapshot } from "../disk/index.ts";
import { getDriver, type VmHandle, type VmSpec } from "../vmm/index.ts";
import { bootSpec } from "./boot.ts";
import type { CallEnv, DaemonContext } from "./context.ts";
import { recordOperation } from "./operations.ts";
import { type PlannedSnapshot, type TakenSnapshot, getSnapshot, releaseSnapshot, standInSnapshot, takeSnapshot, verifySnapshot } from "./snapshots.ts";
import { ensureFreeSpace } from "./vm-health.ts";
import { vmPaths } from "./vm-runtime.ts";
import { AGENT_READY_TIMEOUT_MS, consoleTail, destroyVm, getVm } from "./vms.ts";
import type { VmNic } from "./network.ts";
import { adoptStandby, endStandby } from "./standby.ts";
import { restoreWorkspace } from "./workspace-snapshot.ts";

/** The most children one `vm fork` makes. */
export const MAX_FORK_COUNT = 64;

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
async function restoreVm(ctx: DaemonContext, snapName: string, name: string, call: CallEnv, opts: { snapshotHeld?: boolean; pending?: PendingSnapshot } = {}): Promise<VmRecord> {
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
    // A restore begun ahead (standby.ts) brings its id, disk and waiting VMM.
    const standby = pending ? undefined : ctx.standbys.take(snap.name);
    const id = standby?.id ?? randomBytes(6).toString("hex");
    const paths = vmPaths(ctx.paths, name, id);
    if (snap.hasNic) await ctx.network.prepare(snap.net);
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
    });
    let handle: VmHandle | undefined;
    let nic: VmNic | undefined;
    try {
      if (standby) {
        call.progress({ phase: "restore", message: `taking the ${snap.vmm} started ahead for ${snap.name}` });
        ctx.store.updateVm(name, { diskBytes: standby.diskBytes, config: await adoptStandby(standby, paths.dir) });
        mark("disk");
        handle = await standby.vmm.finish();
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
  const dir = snapshotDir(ctx.paths, snap.name);
  // A qcow2 disk copy is always overlaid (QEMU): no need to probe the filesystem per restore.
  const strategy = snap.diskFormat === "qcow2" ? "qcow2" : (await chooseCloneStrategy(snap.vmm === "firecracker" ? "firecracker" : "qemu", paths.dir)).strategy;
  const dest = join(paths.dir, strategy === "qcow2" ? "root.qcow2" : "root.ext4");
  const disk = await cloneFromSnapshot({ path: join(dir, snap.diskFile), format: snap.diskFormat }, dest, strategy, { signal: call.signal });
  // Its own workspace slot (the snapshot's VM had the device, so the restore needs it) and record.
  const workspace = await restoreWorkspace(snap.workspace, dir, paths.dir, call.signal);
  mark("disk");
  ctx.store.updateVm(name, {
    diskBytes: disk.sizeBytes,
    config: { disk: { path: disk.path, format: disk.format, strategy: "snapshot-overlay", filesystemNeedsGrow: false }, ...workspace },
  });
  const vm = getVm(ctx, name);
  call.progress({ phase: "restore", message: `${vm.vmm}, ${vm.cpus} cpu, ${humanBytes(vm.memoryBytes)} mapped from ${snap.name}` });
  const nic = await ctx.network.attach(vm);
  const spec = await bootSpec(ctx, vm, { path: disk.path, format: disk.format }, paths.runtimeDir, nic);
  return { handle: await restoreVmm(ctx, vm.vmm, spec, snap.name, call.signal, pending), nic };
}

/** A snapshot still being taken (a fork's base): the record it will have, and its taking. */
interface PendingSnapshot {
  plan: PlannedSnapshot;
  ready: Promise<unknown>;
  /** Told once per child: its VMM holds the stand-ins open, or it failed before. */
  arrived: () => void;
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
  const ready = pending?.ready;
  const driver = getDriver(driverName);
  const dir = snapshotDir(ctx.paths, snapName);
  const complete = async () => {
    await ready;
    await verifySnapshot(ctx, getSnapshot(ctx, snapName));
  };
  if (!ready || !driver.prestartRestore) {
    await complete();
    return driver.restore(spec, dir, { signal });
  }
  const waiting = await driver.prestartRestore(spec, dir, { signal }).finally(() => pending?.arrived());
  try {
    await complete();
  } catch (err) {
    await waiting.cancel();
    throw err;
  }
  return waiting.finish();
}

/** Child names: the ones given, else `<parent>-<n>` with the first free numbers. */
function childNames(ctx: DaemonContext, parent: string, count: number | undefined, names: string[] | undefined): string[] {
  if (names && names.length > 0) {
    if (count !== undefined && count !== names.length) throw invalidArgument(`--count ${count} but ${names.length} names given`, "give one --name per child, or only --count");
    const seen = new Set<string>();
    for (const n of names) {
      validateName("vm", n);
      if (seen.has(n)) throw invalidArgument(`vm name ${n} given twice`);
      seen.add(n);
      if (ctx.store.getVm(n)) throw alreadyExists(`vm ${n} already exists`, "pick another --name, or `banger vm rm` it");
    }
    return names;
  }
  const out: string[] = [];
  for (let i = 1; out.length < (count ?? 1); i++) {
    const n = `${parent.slice(0, 56)}-${i}`;
    if (!ctx.store.getVm(n)) out.push(n);
  }
  return out;
}

export interface Forked {
  snapshot: string;
  children: VmRecord[];
  pauseMs: number;
  totalMs: number;
}

/**
 * `vm fork`: an internal snapshot of the running parent (which keeps running), then the
 * children restored from it side by side (at most one per CPU at a time: each restore's VMM
 * start and agent wait are mostly waiting). All or none: when one child fails, the others
 * still restoring are cancelled, the ones made are removed and the base is freed, and the
 * error names the child that failed.
 */
export function forkVm(ctx: DaemonContext, parent: string, opts: { count?: number; names?: string[] }, call: CallEnv): Promise<Forked> {
  validateName("vm", parent);
  const names = childNames(ctx, parent, opts.count, opts.names);
  return ctx.locks.run(`vm:${parent}`, () =>
    recordOperation(ctx, "vm.fork", parent, async () => {
      const started = performance.now();
      const base = `${parent.slice(0, 40)}.fork-${randomBytes(4).toString("hex")}`;
      const plan = await standInSnapshot(ctx, getVm(ctx, parent), base, call.signal);
      const paused = (taken: TakenSnapshot) =>
        call.progress({ phase: "fork", message: `${parent} paused ${taken.pauseMs} ms; restoring ${names.length} ${names.length === 1 ? "child" : "children"}` });
      let taken: TakenSnapshot;
      let made: Awaited<ReturnType<typeof restoreChildren>>;
      if (plan) {
        // The children's VMMs start while the base is taken, into the stand-ins plan made.
        // The disk stand-in is rewritten once the first children's VMMs have opened it (or failed).
        const opened = countdown(Math.min(names.length, childWorkers()), STAND_IN_WAIT_MS);
        const taking = takeSnapshot(ctx, parent, base, { internal: true, inPlace: { diskGate: opened.done } }, call).then((t) => {
          paused(t);
          return t;
        });
        const children = restoreChildren(ctx, base, names, call, { plan, ready: taking, arrived: opened.arrive });
        const [t, m] = await Promise.allSettled([taking, children]);
        if (m.status === "rejected") throw m.reason; // restoreChildren reports failures in its result
        made = m.value;
        if (t.status === "rejected") {
          // Every child failed with it (each removed itself); the snapshot's own error says why.
          await removeChildren(ctx, made.children);
          await rm(snapshotDir(ctx.paths, base), { recursive: true, force: true }); // the stand-ins of a base never recorded
          throw t.reason;
        }
        taken = t.value;
      } else {
        taken = await takeSnapshot(ctx, parent, base, { internal: true }, call);
        paused(taken);
        made = await ctx.locks.run(`snapshot:${base}`, () => restoreChildren(ctx, base, names, call));
      }
      if (made.failed) {
        // Removed under their own locks, then the base with them (it has no child left).
        await removeChildren(ctx, made.children);
        await releaseSnapshot(ctx, base);
        throw forkFailed(parent, made.failed, names.length);
      }
      return { snapshot: base, children: made.children, pauseMs: taken.pauseMs, totalMs: Math.round(performance.now() - started) };
    }),
  );
}

/** Children restored at once: one per CPU (each restore's VMM start and agent wait are mostly waiting), at least 2. */
const childWorkers = () => Math.max(2, availableParallelism());

/**
 * The most a fork's snapshot waits for its first children's VMMs to open the disk stand-in
 * (they do within ~0.1 s); past it the copy goes on, and a child that opens the disk while it
 * is rewritten fails rather than the parent staying paused.
 */
const STAND_IN_WAIT_MS = 10_000;

/** Resolves `done` after `count` arrive() calls (extra calls are ignored), or after `timeoutMs`. */
function countdown(count: number, timeoutMs: number): { arrive: () => void; done: Promise<void> } {
  let left = count;
  let open!: () => void;
  const done = new Promise<void>((resolve) => (open = resolve));
  const timer = setTimeout(open, timeoutMs);
  timer.unref();
  const arrive = () => {
    if (--left <= 0) {
      clearTimeout(timer);
      open();
    }
  };
  if (count <= 0) arrive();
  return { arrive, done };
}

/** A failed fork's children that were made, each removed under its own lock. */
async function removeChildren(ctx: DaemonContext, children: VmRecord[]): Promise<void> {
  for (const child of children) {
    const paths = vmPaths(ctx.paths, child.name, child.id);
    await ctx.locks.run(`vm:${child.name}`, () => destroyVm(ctx, child.name, paths.dir, paths.runtimeDir));
  }
}

/** Restores each of `names` from `base` (whose lock the caller holds), stopping at the first failure. */
async function restoreChildren(
  ctx: DaemonContext,
  base: string,
  names: string[],
  call: CallEnv,
  pending?: PendingSnapshot,
): Promise<{ children: VmRecord[]; failed?: { name: string; err: unknown } }> {
  const stop = new AbortController();
  const signal = AbortSignal.any([call.signal, stop.signal]);
  const children: VmRecord[] = [];
  let failed: { name: string; err: unknown } | undefined;
  let next = 0;
  const worker = async () => {
    while (next < names.length && !failed) {
      const name = names[next++]!;
      const progress = names.length === 1 ? call.progress : (e: ProgressEvent) => call.progress({ ...e, message: `${name}: ${e.message ?? e.phase}` });
      try {
        children.push(
          await ctx.locks.run(`vm:${name}`, () =>
            recordOperation(ctx, "vm.create", name, () => restoreVm(ctx, base, name, { signal, progress }, { snapshotHeld: true, ...(pending ? { pending } : {}) })),
          ),
        );
      } catch (err) {
        // The first failure is the one to report; the siblings it cancels fail with "cancelled".
        failed ??= { name, err };
        stop.abort();
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(names.length, childWorkers()) }, worker));
  // In the order asked for, whatever order they finished in.
  children.sort((a, b) => names.indexOf(a.name) - names.indexOf(b.name));
  return { children, ...(failed ? { failed } : {}) };
}

/** One line: which child failed and why, and that none were kept. */
function forkFailed(parent: string, failed: { name: string; err: unknown }, count: number): BangerError {
  const { name, err } = failed;
  const code = err instanceof BangerError ? err.code : ErrorCode.Failed;
  const kept = count === 1 ? "" : `; none of the ${count} children were kept`;
  const why = err instanceof Error ? err.message : String(err);
  return new BangerError(code, `vm fork of ${parent} failed at child ${name}: ${why}${kept}`, err instanceof BangerError ? err.hint : undefined, { cause: err });
}
