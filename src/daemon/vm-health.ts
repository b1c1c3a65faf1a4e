// What a VM does on its own, and the floor under the root that keeps it from filling the
// disk. A watched VMM (vm-runtime.ts) that ends makes its VM `stopped` or `crashed` with the
// reason, its leftovers (sockets, tap) removed, at once; one QEMU paused on a host I/O error
// (a full disk) makes it `paused` with the fix, and `vm resume` continues it once space
// exists. `vm pause` pauses one on the user's word (`vm resume` continues it too); a
// snapshot pauses one briefly (pauseBriefly), which is no event. `vm create` and `vm start`
// refuse to begin below the free-space floor.
import { statfsSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { minFreeBytes } from "../config/index.ts";
import type { VmRecord } from "../store/index.ts";
import { BangerError, ErrorCode, errorLine } from "../util/errors.ts";
import { humanBytes } from "../util/human.ts";
import { validateName } from "../util/names.ts";
import type { VmHandle, VmmEvent } from "../vmm/index.ts";
import type { DaemonContext } from "./context.ts";
import { recordOperation } from "./operations.ts";

/** States in which a VM's VMM runs on its own: only these change when the VMM reports. */
const WATCHED_STATES = new Set(["running", "paused"]);

/** Routes the runtime's VMM events to the store; called once the context exists. */
export function watchVms(ctx: DaemonContext): void {
  ctx.runtime.onVmmEvent = (name, handle, event) =>
    void onVmmEvent(ctx, name, handle, event).catch((err: unknown) => ctx.log.warn("vm event not recorded", { vm: name, event: event.kind, error: errorLine(err) }));
}

/**
 * Records what the VMM reported, unless an operation owns the VM now (stop, kill, rm, a
 * boot: they set its state themselves, and forget the handle before they end it).
 */
async function onVmmEvent(ctx: DaemonContext, name: string, handle: VmHandle, event: VmmEvent): Promise<void> {
  const vm = ctx.store.getVm(name);
  if (!vm || ctx.runtime.handle(name) !== handle || !WATCHED_STATES.has(vm.state)) return;
  if (event.kind === "ended") {
    ctx.runtime.forget(name);
    void ctx.standbys.dropFork(name);
    ctx.store.updateVm(name, { state: event.state, pid: null, stateReason: event.reason });
    ctx.log.warn("vm ended on its own", { vm: name, state: event.state, reason: event.reason });
    // The VMM is gone: what it leaves (sockets, pid file, its tap) goes now, not at rm.
    await handle.stop().catch(() => undefined); // gone: stop() only removes its files
    await ctx.network.detach(name);
  } else if (ctx.runtime.briefPauses.has(name)) {
    // The daemon's own pause for a snapshot: its resume ends it.
    if (event.kind === "resumed") ctx.runtime.briefPauses.delete(name);
  } else if (event.kind === "paused") {
    // Already paused on the user's word: QEMU's STOP for it is no news (a disk full is).
    if (vm.state === "paused" && !event.nospace) return;
    const reason = `${event.reason}: free space under ${ctx.paths.root}, then \`banger vm resume ${name}\``;
    ctx.store.updateVm(name, { state: "paused", stateReason: reason });
    ctx.log.warn("vm paused by its VMM", { vm: name, reason: event.reason });
  } else if (vm.state === "paused") {
    ctx.store.updateVm(name, { state: "running", stateReason: null });
    ctx.log.info("vm resumed", { vm: name });
  }
}

export const USER_PAUSE_REASON = "paused by the user";

/** `vm pause`: stops the guest's CPUs, memory kept; `vm resume` continues it. */
export function pauseVm(ctx: DaemonContext, name: string): Promise<VmRecord> {
  validateName("vm", name);
  return ctx.locks.run(`vm:${name}`, () =>
    recordOperation(ctx, "vm.pause", name, async () => {
      const vm = ctx.store.getVm(name);
      if (!vm) throw new BangerError(ErrorCode.NotFound, `vm ${name} not found`, "see `banger vm ls`");
      if (vm.state === "paused") return vm;
      const handle = ctx.runtime.handle(name);
      if (vm.state !== "running" || !handle) {
        throw new BangerError(ErrorCode.InUse, `cannot pause vm ${name}: it is ${vm.state}`, `start it: banger vm start ${name}`);
      }
      // Recorded first: QEMU's STOP event then finds the VM paused already and changes nothing.
      ctx.store.updateVm(name, { state: "paused", stateReason: USER_PAUSE_REASON });
      try {
        await handle.pause();
      } catch (err) {
        ctx.store.updateVm(name, { state: "running", stateReason: null });
        throw err;
      }
      return ctx.store.getVm(name)!;
    }),
  );
}

/**
 * Runs `fn` with the guest paused (a snapshot: memory and disk must not move), then resumes
 * it, unless it was paused already. Returns how long it was paused.
 */
export async function pauseBriefly<T>(ctx: DaemonContext, name: string, handle: VmHandle, alreadyPaused: boolean, fn: () => Promise<T>): Promise<{ result: T; pauseMs: number }> {
  if (alreadyPaused) return { result: await fn(), pauseMs: 0 };
  const started = performance.now();
  ctx.runtime.briefPauses.add(name);
  try {
    await handle.pause();
  } catch (err) {
    ctx.runtime.briefPauses.delete(name);
    throw err;
  }
  let result: T;
  try {
    result = await fn();
  } finally {
    await handle.resume().catch((err: unknown) => {
      ctx.runtime.briefPauses.delete(name);
      ctx.log.warn("resume after a snapshot failed", { vm: name, error: errorLine(err) });
    });
  }
  return { result, pauseMs: Math.round(performance.now() - started) };
}

/** `vm resume`: continues a VM paused by the user, or by its VMM once the root has space again. */
export function resumeVm(ctx: DaemonContext, name: string): Promise<VmRecord> {
  validateName("vm", name);
  return ctx.locks.run(`vm:${name}`, () =>
    recordOperation(ctx, "vm.resume", name, async () => {
      const vm = ctx.store.getVm(name);
      if (!vm) throw new BangerError(ErrorCode.NotFound, `vm ${name} not found`, "see `banger vm ls`");
      if (vm.state === "running") return vm;
      const handle = ctx.runtime.handle(name);
      if (vm.state !== "paused" || !handle) {
        throw new BangerError(ErrorCode.InUse, `cannot resume vm ${name}: it is ${vm.state}`, `start it: banger vm start ${name}`);
      }
      // A disk-full pause resumed without space would pause again at the guest's next write.
      if (vm.stateReason !== USER_PAUSE_REASON) ensureFreeSpace(ctx, "resume", name);
      await handle.resume();
      ctx.store.updateVm(name, { state: "running", stateReason: null });
      return ctx.store.getVm(name)!;
    }),
  );
}

/** Bytes free to unprivileged writers on the filesystem holding `path`. */
export function freeBytes(path: string): number {
  const st = statfsSync(path);
  return st.bavail * st.bsize;
}

/**
 * Refuses to `action` a VM when the filesystem holding VM disks has less free than the
 * floor: a guest writing to its disk would fill the host and be paused.
 */
export function ensureFreeSpace(ctx: DaemonContext, action: string, name: string): void {
  const floor = minFreeBytes(ctx.config());
  const free = freeBytes(ctx.paths.vmsDir);
  if (free >= floor) return;
  throw new BangerError(
    ErrorCode.Unavailable,
    `cannot ${action} vm ${name}: only ${humanBytes(free)} free under ${ctx.paths.root}, banger keeps ${humanBytes(floor)} free (min_free_bytes)`,
    `free space under ${ctx.paths.root}, or lower the floor: banger config set min_free_bytes 512M`,
  );
}
