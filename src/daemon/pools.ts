// Warm pools: per image, N VMs booted ahead with the pool's spec, hidden from `vm ls`, that a
// matching `vm create` (so `vm run` and the dashboard) takes instead of booting one. A taken
// VM is renamed (its row in one statement, its disk directory, its guest's hostname) and the
// pool refills in the background: one boot at a time, never past pool.max_memory, a failure
// logged and retried after a pause. Members are ordinary VM rows (store: `pool` column), so a
// daemon killed with a pool finds them running at start and adopts them like any VM; a clean
// daemon stop removes them (the pools themselves stay, and are rebuilt at the next start).
// The rules (what matches, the cap, the next step) are pool-rules.ts.
//
// Seam for later: a member could be restored from a template snapshot rather than booted;
// `bootMember` is the one place that makes one.
import { randomBytes } from "node:crypto";
import { rename } from "node:fs/promises";
import type { Handlers, PoolList, PoolView } from "../api/index.ts";
import { poolMaxMemory } from "../config/index.ts";
import { parseEgressPolicy } from "../net/index.ts";
import { optionalBool, optionalInt, optionalString, requireObject, requireString } from "../rpc/index.ts";
import type { PoolRecord, PoolSpec, VmRecord } from "../store/index.ts";
import { errorLine, invalidArgument, notFound } from "../util/errors.ts";
import { validateName } from "../util/names.ts";
import type { CallEnv, DaemonContext } from "./context.ts";
import { landingOf } from "./landing.ts";
import { checkPoolCap, liveMembers, matchingMember, nextPoolStep, type PoolRequest } from "./pool-rules.ts";
import { setVmmPriority, vmPaths } from "./vm-runtime.ts";
import { DEFAULT_CPUS, DEFAULT_MEMORY_BYTES, createVm, destroyVm } from "./vms.ts";

/** The loop looks again this often (a member that died, a cap raised, a failure's pause over). */
const TICK_MS = 3000;
/** After a failed boot, a pool waits this long before the next try. */
const RETRY_MS = Number(process.env.BANGER_POOL_RETRY_MS ?? 30_000);
const MAX_POOL_SIZE = 32;

export class WarmPools {
  private ctx: DaemonContext | undefined;
  private loop: Promise<void> | undefined;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** The boot in progress: trimming its pool, or stopping the daemon, aborts it. */
  private booting: { image: string; abort: AbortController } | undefined;
  private readonly failures = new Map<string, { at: number; error: string }>();
  private heldBack = new Map<string, string>();

  /** Starts refilling (after the daemon reconciled its VMs: adopted members count). */
  start(ctx: DaemonContext): void {
    this.ctx = ctx;
    this.timer = setInterval(() => this.kick(), TICK_MS);
    this.timer.unref();
    this.kick();
  }

  /** Runs the refill loop now (or once more after the current pass). */
  kick(): void {
    if (!this.ctx || this.closed) return;
    if (this.loop) {
      this.again = true;
      return;
    }
    this.loop = this.refill(this.ctx).finally(() => {
      this.loop = undefined;
      if (this.again) {
        this.again = false;
        this.kick();
      }
    });
  }

  private async refill(ctx: DaemonContext): Promise<void> {
    while (!this.closed) {
      const step = nextPoolStep(ctx.store.pools.list(), ctx.store.pools.members(), poolMaxMemory(ctx.config()), (image) => this.backingOff(image));
      if (step.kind === "idle") {
        this.heldBack = step.heldBack;
        return;
      }
      if (step.kind === "remove") await this.removeMember(ctx, step.vm, step.why);
      else await this.bootMember(ctx, step.pool);
    }
  }

  private backingOff(image: string): string | undefined {
    const failed = this.failures.get(image);
    return failed && Date.now() - failed.at < RETRY_MS ? failed.error : undefined;
  }

  /** Boots one member of the pool with its spec (cold; a snapshot restore would go here). */
  private async bootMember(ctx: DaemonContext, pool: PoolRecord): Promise<void> {
    const abort = new AbortController();
    this.booting = { image: pool.image, abort };
    const started = Date.now();
    const { kernel, cpus, memoryBytes, net, netPeer } = pool.spec;
    ctx.log.info("pool warming a vm", { pool: pool.image });
    try {
      // With the workspace disk slot: a taken VM can receive `vm run`'s workspace.
      const params = { image: pool.image, kernel: kernel ?? undefined, cpus, memoryBytes, net, netPeer, workspaceSlot: true };
      const vm = await createVm(ctx, params, { signal: abort.signal, progress: () => undefined }, { pool: pool.image });
      this.failures.delete(pool.image);
      // Where commands land is resolved now, while it waits, not when a `vm run` needs it.
      await landingOf(ctx, vm.name, await ctx.runtime.agent(vm.name, { signal: abort.signal })).catch(() => undefined);
      ctx.log.info("pool vm ready", { pool: pool.image, vm: vm.name, ms: Date.now() - started });
    } catch (err) {
      if (!abort.signal.aborted) {
        this.failures.set(pool.image, { at: Date.now(), error: errorLine(err) });
        ctx.log.warn("pool refill failed", { pool: pool.image, error: errorLine(err), retryInMs: RETRY_MS });
      }
    } finally {
      this.booting = undefined;
    }
  }

  /** Removes a member at once (a pooled VM has nothing to keep): VMM killed, tap, dirs and row gone. */
  private async removeMember(ctx: DaemonContext, name: string, why: string): Promise<void> {
    const vm = ctx.store.getVm(name);
    if (!vm || vm.pool === null || vm.state === "removing") return;
    ctx.store.updateVm(name, { state: "removing" }); // same tick as the check: take() no longer sees it
    ctx.log.info("pool removing a vm", { pool: vm.pool, vm: name, why });
    const paths = vmPaths(ctx.paths, name, vm.id);
    await ctx.locks.run(`vm:${name}`, () => destroyVm(ctx, name, paths.dir, paths.runtimeDir));
  }

  /**
   * Takes a ready member matching the request, renamed `name`; undefined when none matches
   * (or the taken one fails to become `name`: it is removed and the caller boots cold).
   */
  async take(ctx: DaemonContext, name: string, want: PoolRequest, call: CallEnv): Promise<VmRecord | undefined> {
    const member = matchingMember(ctx.store.pools.members(want.image), want);
    // The match and the rename happen in one tick: two creates never get the same VM.
    if (!member || !ctx.store.pools.take(member.name, name)) return undefined;
    ctx.runtime.rename(member.name, name);
    if (member.pid !== null) setVmmPriority(member.pid, 0); // a user's VM now: the normal priority
    this.kick();
    call.progress({ phase: "pool", message: `taking a ready VM from pool ${want.image}` });
    const from = vmPaths(ctx.paths, member.name, member.id);
    const to = vmPaths(ctx.paths, name, member.id);
    try {
      // The VMM keeps its open disk; the next boot finds it at the new path.
      await rename(from.dir, to.dir);
      ctx.store.updateVm(name, { config: rebasePaths(member.config, from.dir, to.dir) as Record<string, unknown> });
      const agent = await ctx.runtime.agent(name, { timeoutMs: 10_000, signal: call.signal });
      // It booted as pool-…: the guest takes its new name (hostname), a reseeded RNG and the
      // host's clock. Its MAC and address stay: the row keeps the address, the VMM its NIC.
      await agent.reidentify({ hostname: name, seed: randomBytes(64), timeUnixMs: Date.now() });
      ctx.log.info("vm taken from pool", { pool: want.image, vm: name, was: member.name });
      return ctx.store.getVm(name);
    } catch (err) {
      ctx.log.warn("pool vm could not be taken; booting one", { pool: want.image, vm: name, was: member.name, error: errorLine(err) });
      await destroyVm(ctx, name, to.dir, to.runtimeDir);
      await destroyVm(ctx, name, from.dir, from.runtimeDir); // when the rename itself failed
      return undefined;
    }
  }

  /** `pool set`: stores the pool (refused past the cap), trims what is now too many at once, refills in the background. */
  async set(ctx: DaemonContext, image: string, size: number, spec: PoolSpec): Promise<PoolView> {
    if (!ctx.store.getImage(image)) throw notFound(`image ${image}`, "see `banger image ls`");
    if (spec.kernel !== null && !ctx.store.getKernel(spec.kernel)) throw notFound(`kernel ${spec.kernel}`, "see `banger kernel ls`");
    if (size > 0) checkPoolCap(ctx.store.pools.list(), image, size, spec, poolMaxMemory(ctx.config()));
    if (size === 0) ctx.store.pools.delete(image);
    else ctx.store.pools.put(image, size, spec);
    this.failures.delete(image);
    await this.trim(ctx, image, size);
    this.kick();
    return this.view(ctx, ctx.store.pools.get(image) ?? { image, size: 0, spec, createdAt: "", updatedAt: "" });
  }

  /** Removes the members beyond `size` now (a boot in progress for it first), so `--size 0` leaves nothing. */
  private async trim(ctx: DaemonContext, image: string, size: number): Promise<void> {
    const pool = ctx.store.pools.get(image);
    const stale = (m: VmRecord) => pool !== undefined && m.state === "running" && JSON.stringify(pool.spec) !== JSON.stringify(specOf(m, pool.spec.kernel));
    if (this.booting?.image === image && liveMembers(ctx.store.pools.members(image)).length > size) {
      this.booting.abort.abort();
      await this.loop;
    }
    for (const m of liveMembers(ctx.store.pools.members(image)).filter(stale)) await this.removeMember(ctx, m.name, "its pool's spec changed");
    let extra = liveMembers(ctx.store.pools.members(image)).length - size;
    for (const m of liveMembers(ctx.store.pools.members(image)).reverse()) {
      if (extra-- <= 0) break;
      await this.removeMember(ctx, m.name, `pool ${image} set to ${size}`);
    }
  }

  list(ctx: DaemonContext): PoolList {
    const pools = ctx.store.pools.list().map((p) => this.view(ctx, p));
    const orphans = liveMembers(ctx.store.pools.members()).filter((m) => !pools.some((p) => p.image === m.pool));
    const memoryBytes = pools.reduce((s, p) => s + p.memoryBytes, 0) + orphans.reduce((s, m) => s + m.memoryBytes, 0);
    return { pools, memoryBytes, maxMemoryBytes: poolMaxMemory(ctx.config()) };
  }

  private view(ctx: DaemonContext, p: PoolRecord): PoolView {
    const members = liveMembers(ctx.store.pools.members(p.image));
    const ready = members.filter((m) => m.state === "running").length;
    const booting = members.filter((m) => m.state === "creating").length;
    return {
      image: p.image,
      size: p.size,
      ready,
      warming: booting + Math.max(0, p.size - members.length),
      spec: { ...p.spec },
      memoryBytes: members.reduce((s, m) => s + m.memoryBytes, 0),
      lastError: this.failures.get(p.image)?.error ?? (members.length < p.size ? (this.heldBack.get(p.image) ?? null) : null),
    };
  }

  /** Daemon stop: the boot in progress aborted, every member removed (the pools stay, rebuilt at start). */
  async close(ctx: DaemonContext): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    this.booting?.abort.abort();
    await this.loop;
    for (const m of ctx.store.pools.members()) await this.removeMember(ctx, m.name, "the daemon is stopping");
  }
}

/** A member's spec as booted (to compare with its pool's). */
function specOf(m: VmRecord, kernel: string | null): PoolSpec {
  return { kernel: kernel === null ? null : m.kernel, cpus: m.cpus, memoryBytes: m.memoryBytes, net: m.net, netPeer: m.netPeer };
}

/** Strings in a VM's config naming files under its old directory, moved under the new one (the disk; any other disk). */
export function rebasePaths(value: unknown, from: string, to: string): unknown {
  if (typeof value === "string") return value === from || value.startsWith(`${from}/`) ? to + value.slice(from.length) : value;
  if (Array.isArray(value)) return value.map((v) => rebasePaths(v, from, to));
  if (value && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, rebasePaths(v, from, to)]));
  return value;
}

const MIB = 1024 ** 2;

export function poolMethods(ctx: DaemonContext): Handlers<"pool.set" | "pool.list"> {
  return {
    "pool.list": () => ctx.pools.list(ctx),
    "pool.set": (p) => {
      const image = validateName("image", requireString(p, "image"));
      const size = optionalInt(p, "size", 0, MAX_POOL_SIZE);
      if (size === undefined) throw invalidArgument("pool set needs a size", `e.g. banger pool set ${image} --size 2 (0 empties it)`);
      const kernel = optionalString(p, "kernel");
      const memoryBytes = optionalInt(requireObject(p), "memoryBytes", 64 * MIB, 256 * 1024 * MIB) ?? DEFAULT_MEMORY_BYTES;
      if (memoryBytes % MIB !== 0) throw invalidArgument(`memoryBytes must be a whole number of MiB, not ${memoryBytes}`);
      const net = optionalString(p, "net");
      const spec: PoolSpec = {
        kernel: kernel === undefined ? null : validateName("kernel", kernel),
        cpus: optionalInt(p, "cpus", 1, 64) ?? DEFAULT_CPUS,
        memoryBytes,
        net: net === undefined ? "full" : parseEgressPolicy(net),
        netPeer: optionalBool(p, "netPeer") ?? false,
      };
      return ctx.pools.set(ctx, image, size, spec);
    },
  };
}
