// VM operations: create, start, stop, kill, rm, set, list, show, logs, stats. Each one
// that changes a VM runs under that VM's lock, so operations on one VM are serialized
// while different VMs proceed in parallel. A VM that fails half-way through `create`
// (or `rm`), even with the daemon killed, leaves nothing behind: no row, no disk, no
// runtime directory, no VMM process. What VMs do on their own is vm-health.ts. A create
// that matches a warm pool takes a ready VM from it (pools.ts) instead of booting one.
import { randomBytes } from "node:crypto";
import { mkdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import type { VmCreateParams } from "../api/index.ts";
import { effectiveValue, imageRootfs } from "../config/index.ts";
import { chooseCloneStrategy, cloneDisk, type DiskFormat } from "../disk/index.ts";
import type { VmNetPolicy, VmRecord, VmState } from "../store/index.ts";
import { BangerError, ErrorCode, alreadyExists, errorLine, invalidArgument, notFound } from "../util/errors.ts";
import { humanBytes } from "../util/human.ts";
import { generateName } from "../util/namegen.ts";
import { validateName } from "../util/names.ts";
import { adoptVm, chooseVmm, cleanupDeadVm, consoleLogPath, findPanicLine, getDriver, killUnrecordedVmms, readConsoleTail, type VmmName, type VmHandle } from "../vmm/index.ts";
import { bootSpec } from "./boot.ts";
import { chooseDefault, noDefaultReason } from "./default-choice.ts";
import type { CallEnv, DaemonContext } from "./context.ts";
import { authorizedKeys, installSshKeys } from "./ssh-keys.ts";
import { recordOperation } from "./operations.ts";
import { releaseSnapshot } from "./snapshots.ts";
import { ensureFreeSpace } from "./vm-health.ts";
import { setVmmPriority, vmPaths } from "./vm-runtime.ts";
import { makeWorkspaceSlot, remountWorkspace } from "./workspace-disk.ts";

export const DEFAULT_CPUS = 1;
export const DEFAULT_MEMORY_BYTES = 512 * 1024 ** 2;
/** A warm pool's VMs boot and wait at this nice value (vm-runtime.ts setVmmPriority). */
export const POOL_NICE = 10;
/** TCG boots take seconds; a slow host or a big image more. */
export const AGENT_READY_TIMEOUT_MS = Number(process.env.BANGER_AGENT_TIMEOUT_MS ?? 120_000);

/** vm.create's params (api/) with the egress policy parsed (`none` gives the VM no NIC at all). */
export type CreateParams = Omit<VmCreateParams, "net"> & { net?: VmNetPolicy };

/** The disk facts kept in the VM record's config. */
export interface VmDiskConfig {
  path: string;
  format: DiskFormat;
  strategy: string;
  filesystemNeedsGrow: boolean;
}

/** The VMs users see: pooled ones are counted by `pool ls` until taken. */
export function listVms(ctx: DaemonContext): VmRecord[] {
  return ctx.store.listVms().filter((vm) => vm.pool === null);
}

export function getVm(ctx: DaemonContext, name: string): VmRecord {
  validateName("vm", name);
  const vm = ctx.store.getVm(name);
  if (!vm) throw notFound(`vm ${name}`, "see `banger vm ls`");
  return vm;
}

function requireState(vm: VmRecord, allowed: VmState[], action: string, hint: string): void {
  if (!allowed.includes(vm.state)) {
    throw new BangerError(ErrorCode.InUse, `cannot ${action} vm ${vm.name}: it is ${vm.state}`, hint);
  }
}

/** The VMM for a new VM (vmm/select.ts says how); an explicit setting this host cannot run is refused. */
async function pickVmm(ctx: DaemonContext, name: string): Promise<VmmName> {
  const choice = await chooseVmm(effectiveValue(ctx.config(), "vmm"));
  if (choice.problem) throw choice.problem;
  ctx.log.info("vmm chosen", { vm: name, vmm: choice.vmm, reason: choice.reason });
  return choice.vmm;
}

/** Resolves image and kernel names: flags > the image's kernel_ref > configured defaults > the only one there is. */
function resolveImageAndKernel(ctx: DaemonContext, p: CreateParams): { image: string; kernel: string } {
  const config = ctx.config();
  const imageName = p.image ?? chooseDefault(ctx, "image", config)?.name;
  if (!imageName)
    throw invalidArgument(`no image given: ${noDefaultReason(ctx, "image")}`, "pass --image NAME, or `banger config set default_image NAME` (no image yet: `banger image build --preset busybox`)");
  validateName("image", imageName);
  const image = ctx.store.getImage(imageName);
  if (!image) throw notFound(`image ${imageName}`, "see `banger image list`, or `banger image pull`");
  const kernelName = p.kernel ?? image.kernelRef ?? chooseDefault(ctx, "kernel", config)?.name;
  if (!kernelName) throw invalidArgument(`image ${imageName} names no kernel and ${noDefaultReason(ctx, "kernel")}`, "pass --kernel NAME, or `banger kernel import --debian`");
  validateName("kernel", kernelName);
  if (!ctx.store.getKernel(kernelName)) throw notFound(`kernel ${kernelName}`, "see `banger kernel list`, or `banger kernel pull`/`kernel import`");
  return { image: imageName, kernel: kernelName };
}

/**
 * Creates a VM: taken ready from its image's warm pool when one matches (`fromPool`), else
 * cloned and booted. With `opts.pool` it is a new member of that pool (pools.ts refills so).
 */
export async function createVm(ctx: DaemonContext, p: CreateParams, call: CallEnv, opts: { pool?: string } = {}): Promise<VmRecord & { fromPool?: true }> {
  const taken = (n: string) => ctx.store.getVm(n) !== undefined;
  const name = opts.pool ? `pool-${randomBytes(4).toString("hex")}` : p.name === undefined ? generateName(taken) : validateName("vm", p.name);
  const { image, kernel } = resolveImageAndKernel(ctx, p);
  return ctx.locks.run(`vm:${name}`, () =>
    recordOperation(ctx, opts.pool ? "pool.fill" : "vm.create", name, async () => {
      if (taken(name)) throw alreadyExists(`vm ${name} already exists`, "pick another --name, or `banger vm rm` it");
      ensureFreeSpace(ctx, "create", name);
      const id = randomBytes(6).toString("hex");
      const vmm = await pickVmm(ctx, name);
      const [cpus, memoryBytes, net, netPeer] = [p.cpus ?? DEFAULT_CPUS, p.memoryBytes ?? DEFAULT_MEMORY_BYTES, p.net ?? "full", p.netPeer ?? false] as const;
      if (!opts.pool) {
        const ready = await ctx.pools.take(ctx, name, { image, kernel, vmm, cpus, memoryBytes, net, netPeer, diskBytes: p.diskBytes, noStart: p.noStart, workspaceSlot: p.workspaceSlot }, call);
        if (ready) return { ...ready, fromPool: true as const };
      }
      const paths = vmPaths(ctx.paths, name, id);
      await ctx.network.prepare(net);
      // allocate() and insertVm() in one tick: no other create can take the same address.
      ctx.store.insertVm({
        name,
        id,
        state: "creating",
        image,
        kernel,
        vmm,
        cpus,
        memoryBytes,
        diskBytes: 0,
        pid: null,
        ip: ctx.network.allocate(net),
        error: null,
        config: {},
        net,
        netPeer,
        pool: opts.pool ?? null,
      });
      try {
        const disk = await makeRootDisk(ctx, name, image, vmm, paths.dir, p.diskBytes, call);
        // Firecracker takes no extra disks here yet: its VMs get the workspace through the agent.
        const workspaceSlot = p.workspaceSlot && vmm === "qemu" ? await makeWorkspaceSlot(paths.dir) : undefined;
        ctx.store.updateVm(name, {
          diskBytes: disk.sizeBytes,
          config: { disk: { path: disk.path, format: disk.format, strategy: disk.strategy, filesystemNeedsGrow: disk.filesystemNeedsGrow }, ...(workspaceSlot ? { workspaceSlot } : {}) },
        });
        if (p.noStart) {
          ctx.store.updateVm(name, { state: "stopped" });
        } else {
          await bootVm(ctx, name, call);
        }
        return getVm(ctx, name);
      } catch (err) {
        await destroyVm(ctx, name, paths.dir, paths.runtimeDir);
        throw err;
      }
    }),
  );
}

async function makeRootDisk(ctx: DaemonContext, name: string, image: string, vmm: VmmName, dir: string, sizeBytes: number | undefined, call: CallEnv) {
  call.progress({ phase: "disk", message: `cloning image ${image}` });
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const choice = await chooseCloneStrategy(vmm, dir);
  const base = imageRootfs(ctx.paths, image);
  const dest = join(dir, choice.strategy === "qcow2" ? "root.qcow2" : "root.ext4");
  ctx.log.info("cloning root disk", { vm: name, strategy: choice.strategy, reason: choice.reason });
  return cloneDisk(base, dest, choice.strategy, { sizeBytes, signal: call.signal });
}

/** Starts the VMM and waits for the agent; the VM ends up running, or stopped with its error. */
async function bootVm(ctx: DaemonContext, name: string, call: CallEnv): Promise<void> {
  const vm = getVm(ctx, name);
  const paths = vmPaths(ctx.paths, name, vm.id);
  const disk = vm.config.disk as VmDiskConfig;
  // A create's boot stays `creating`: a daemon killed meanwhile removes it all at start.
  if (vm.state !== "creating") ctx.store.updateVm(name, { state: "starting", error: null, stateReason: null });
  let handle: VmHandle | undefined;
  try {
    call.progress({ phase: "boot", message: `${vm.vmm}, ${vm.cpus} cpu, ${humanBytes(vm.memoryBytes)}` });
    const nic = await ctx.network.attach(vm);
    const spec = await bootSpec(ctx, vm, { path: disk.path, format: disk.format }, paths.runtimeDir, nic);
    handle = await getDriver(vm.vmm).start(spec, { signal: call.signal });
    if (vm.pool !== null) setVmmPriority(handle.pid, POOL_NICE);
    ctx.runtime.setHandle(name, handle);
    ctx.store.updateVm(name, { pid: handle.pid });
    call.progress({ phase: "agent", message: "waiting for the guest agent" });
    const agent = await ctx.runtime.agent(name, { timeoutMs: AGENT_READY_TIMEOUT_MS, signal: call.signal });
    await installSshKeys(agent, authorizedKeys(ctx.store)).catch((err: unknown) => ctx.log.warn("ssh keys not installed", { vm: name, error: errorLine(err) }));
    // The guest may have broken its own workspace filesystem: the VM still boots, without it.
    await remountWorkspace(vm.config, agent).catch((err: unknown) => ctx.log.warn("workspace disk not mounted", { vm: name, error: errorLine(err) }));
    ctx.store.updateVm(name, { state: "running", startedAt: new Date().toISOString() });
    ctx.log.info("vm running", { vm: name, pid: handle.pid, agent: agent.info.version });
  } catch (err) {
    ctx.runtime.forget(name);
    if (handle) await handle.kill().catch(() => undefined);
    await ctx.network.detach(name);
    const tail = handle ? await consoleTail(handle.consoleLogPath) : "";
    ctx.store.updateVm(name, { state: "stopped", pid: null, error: errorLine(err), stateReason: null });
    if (tail && !(err instanceof BangerError && err.code === ErrorCode.Cancelled)) {
      throw new BangerError(ErrorCode.Failed, `vm ${name} did not boot: ${errorLine(err)}`, `last console lines:\n${tail}`);
    }
    throw err;
  }
}

export async function consoleTail(path: string, lines = 8): Promise<string> {
  const { data } = await readConsoleTail(path, 16 * 1024).catch(() => ({ data: Buffer.alloc(0) }));
  return data.toString("utf8").trimEnd().split("\n").slice(-lines).join("\n");
}

/** Removes everything a VM has: VMM, runtime dir, disk dir, row. Never throws. */
export async function destroyVm(ctx: DaemonContext, name: string, dir: string, runtimeDir: string): Promise<void> {
  const handle = ctx.runtime.handle(name);
  ctx.runtime.forget(name);
  if (handle) await handle.kill().catch(() => undefined);
  await killUnrecordedVmms(runtimeDir).catch(() => undefined);
  await ctx.standbys.dropFork(name); // after the kill: it waits for one being made
  await ctx.network.forget(name).catch((err: unknown) => ctx.log.warn("network cleanup failed", { vm: name, error: errorLine(err) }));
  await rm(runtimeDir, { recursive: true, force: true }).catch(() => undefined);
  await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  ctx.store.deleteVm(name);
}

export function startVm(ctx: DaemonContext, name: string, call: CallEnv): Promise<VmRecord> {
  validateName("vm", name);
  return ctx.locks.run(`vm:${name}`, () =>
    recordOperation(ctx, "vm.start", name, async () => {
      const vm = getVm(ctx, name);
      if (vm.state === "running") return vm;
      requireState(vm, DEAD_STATES, "start", vm.state === "paused" ? `resume it: banger vm resume ${name}` : "wait for the operation in progress to finish");
      ensureFreeSpace(ctx, "start", name);
      await bootVm(ctx, name, call);
      return getVm(ctx, name);
    }),
  );
}

/** States with no VMM: start boots them, rm needs no -f. */
const DEAD_STATES: VmState[] = ["stopped", "crashed"];

/**
 * Asks the guest to power off through the agent, then falls back to the VMM's stop. A paused
 * guest can do neither (QEMU would wait on its stuck disk too): its VMM is killed at once.
 */
async function stopRunning(ctx: DaemonContext, vm: VmRecord, timeoutMs: number): Promise<string> {
  const handle = ctx.runtime.handle(vm.name);
  if (!handle) return "not-running";
  if (vm.state === "paused") {
    await handle.kill();
    return "killed";
  }
  let outcome: string | undefined;
  try {
    const agent = await ctx.runtime.agent(vm.name, { timeoutMs: 2000 });
    await agent.shutdown();
    const exited = await Promise.race([handle.waitExit().then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), timeoutMs).unref())]);
    if (exited) outcome = "agent-poweroff";
  } catch (err) {
    ctx.log.warn("agent shutdown failed; asking the VMM", { vm: vm.name, error: errorLine(err) });
  }
  outcome ??= await handle.stop(timeoutMs);
  // The VMM is gone either way: make sure its sockets and pid file are too.
  await handle.kill().catch(() => undefined);
  return outcome;
}

export function stopVm(ctx: DaemonContext, name: string, opts: { timeoutMs?: number }): Promise<VmRecord & { outcome: string }> {
  validateName("vm", name);
  return ctx.locks.run(`vm:${name}`, () =>
    recordOperation(ctx, "vm.stop", name, async () => {
      const vm = getVm(ctx, name);
      if (DEAD_STATES.includes(vm.state)) return { ...vm, outcome: "already-stopped" };
      ctx.store.updateVm(name, { state: "stopping" });
      const outcome = await stopRunning(ctx, vm, opts.timeoutMs ?? 15_000);
      ctx.runtime.forget(name);
      await ctx.standbys.dropFork(name);
      await ctx.network.detach(name);
      ctx.store.updateVm(name, { state: "stopped", pid: null, stateReason: null });
      return { ...getVm(ctx, name), outcome };
    }),
  );
}

export function killVm(ctx: DaemonContext, name: string): Promise<VmRecord> {
  validateName("vm", name);
  return ctx.locks.run(`vm:${name}`, () =>
    recordOperation(ctx, "vm.kill", name, async () => {
      const vm = getVm(ctx, name);
      const handle = ctx.runtime.handle(name);
      ctx.runtime.forget(name);
      if (handle) await handle.kill();
      await ctx.standbys.dropFork(name);
      await ctx.network.detach(name);
      if (DEAD_STATES.includes(vm.state)) return vm;
      ctx.store.updateVm(vm.name, { state: "stopped", pid: null, stateReason: null });
      return getVm(ctx, name);
    }),
  );
}

/** `kill`: a running VMM is ended at once rather than its guest asked to power off (its disk goes anyway). */
export function removeVm(ctx: DaemonContext, name: string, opts: { force?: boolean; kill?: boolean }): Promise<{ removed: string }> {
  validateName("vm", name);
  return ctx.locks.run(`vm:${name}`, () =>
    recordOperation(ctx, "vm.rm", name, async () => {
      const vm = getVm(ctx, name);
      if (!DEAD_STATES.includes(vm.state) && vm.state !== "removing" && !opts.force) {
        throw new BangerError(ErrorCode.InUse, `vm ${name} is ${vm.state}`, `stop it first (\`banger vm stop ${name}\`) or use \`banger vm rm -f ${name}\``);
      }
      // From here the VM is going: a daemon killed before the row is deleted finishes it at start.
      ctx.store.updateVm(name, { state: "removing" });
      if (ctx.runtime.handle(name) && !opts.kill) await stopRunning(ctx, vm, 5000);
      const paths = vmPaths(ctx.paths, name, vm.id);
      await destroyVm(ctx, name, paths.dir, paths.runtimeDir);
      // Its overlay is gone with its dir; a fork base with no child left goes too.
      await releaseSnapshot(ctx, vm.snapshot);
      return { removed: name };
    }),
  );
}

export function setVm(ctx: DaemonContext, name: string, p: { cpus?: number; memoryBytes?: number }): Promise<VmRecord> {
  validateName("vm", name);
  if (p.cpus === undefined && p.memoryBytes === undefined) throw invalidArgument("nothing to change", "pass --cpus and/or --memory");
  return ctx.locks.run(`vm:${name}`, async () => {
    const vm = getVm(ctx, name);
    requireState(vm, DEAD_STATES, "change", `stop it first: banger vm stop ${name}`);
    ctx.store.updateVm(name, { cpus: p.cpus, memoryBytes: p.memoryBytes });
    return getVm(ctx, name);
  });
}

/** The running VM's agent, or a clear error when it is not running. */
export async function runningAgent(ctx: DaemonContext, name: string, signal?: AbortSignal) {
  const vm = getVm(ctx, name);
  if (vm.state !== "running" || !ctx.runtime.handle(name)) {
    const why = vm.stateReason ? ` (${vm.stateReason})` : "";
    const hint = vm.state === "paused" ? `after freeing space: banger vm resume ${name}` : `start it: banger vm start ${name}`;
    throw new BangerError(ErrorCode.InUse, `vm ${name} is ${vm.state}${why}, not running`, hint);
  }
  return ctx.runtime.agent(name, { timeoutMs: 10_000, signal });
}

export async function vmStats(ctx: DaemonContext, name: string) {
  const agent = await runningAgent(ctx, name);
  const handle = ctx.runtime.handle(name)!;
  return { name, pid: handle.pid, vmmRssBytes: await processRss(handle.pid), guest: await agent.stats() };
}

async function processRss(pid: number): Promise<number | null> {
  const status = await readFile(`/proc/${pid}/status`, "utf8").catch(() => "");
  const m = /^VmRSS:\s+(\d+) kB/m.exec(status);
  return m ? Number(m[1]) * 1024 : null;
}

/** Where the VM's console log is (its runtime dir: per boot, capped, see vmm/console.ts). */
export function consoleLog(ctx: DaemonContext, name: string): string {
  const vm = getVm(ctx, name);
  return consoleLogPath(vmPaths(ctx.paths, name, vm.id).runtimeDir);
}

/**
 * At daemon start: VMs whose VMM still runs are adopted again (paused ones stay paused);
 * the rest are marked stopped, or crashed when their console shows a panic, and their
 * leftovers removed. A VM caught in an operation is brought to rest: half-created or
 * half-removed ones are removed entirely, half-started or half-stopped ones stopped.
 */
export async function reconcileVms(ctx: DaemonContext): Promise<{ adopted: string[]; stopped: string[]; removed: string[] }> {
  const result = { adopted: [] as string[], stopped: [] as string[], removed: [] as string[] };
  for (const vm of ctx.store.listVms()) {
    const paths = vmPaths(ctx.paths, vm.name, vm.id);
    if (DEAD_STATES.includes(vm.state)) continue;
    const handle = await adoptVm(paths.runtimeDir).catch(() => undefined);
    if (vm.state === "creating" || vm.state === "removing") {
      if (handle) ctx.runtime.setHandle(vm.name, handle);
      await destroyVm(ctx, vm.name, paths.dir, paths.runtimeDir);
      result.removed.push(vm.name);
    } else if (handle?.isRunning() && (vm.state === "running" || vm.state === "paused")) {
      ctx.runtime.setHandle(vm.name, handle);
      const paused = (await handle.status().catch(() => "running")) === "paused";
      ctx.store.updateVm(vm.name, { state: paused ? "paused" : "running", pid: handle.pid, ...(paused ? {} : { stateReason: null }) });
      result.adopted.push(vm.name);
    } else {
      // Dead, or caught starting or stopping (a boot the daemon no longer waits for): at rest.
      if (handle) await handle.kill().catch(() => undefined);
      await killUnrecordedVmms(paths.runtimeDir).catch(() => undefined);
      await cleanupDeadVm(paths.runtimeDir).catch((err: unknown) => ctx.log.warn("cleanup of a dead vm failed", { vm: vm.name, error: errorLine(err) }));
      ctx.store.updateVm(vm.name, { pid: null, ...(await restingState(vm, paths.runtimeDir)) });
      result.stopped.push(vm.name);
    }
  }
  return result;
}

/** Where a VM whose VMM is gone (or was just ended) comes to rest after a daemon restart, and why. */
async function restingState(vm: VmRecord, runtimeDir: string): Promise<Pick<VmRecord, "state" | "stateReason">> {
  if (vm.state === "starting" || vm.state === "stopping") return { state: "stopped", stateReason: `the daemon stopped while the VM was ${vm.state}` };
  const panic = await findPanicLine(consoleLogPath(runtimeDir));
  if (panic) return { state: "crashed", stateReason: `guest kernel panic: ${panic}` };
  return { state: "stopped", stateReason: "the VMM exited while the daemon was down" };
}
