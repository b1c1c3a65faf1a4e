// The warm pools' rules, as pure functions over the store's rows: which pooled VM a request
// may take (matchingMember), whether a pool size fits the memory cap (checkPoolCap), and
// what the refill loop does next (nextPoolStep). pools.ts carries them out.
import { type MachineSpec, type PoolRecord, type PoolSpec, type VmRecord, sameMachine } from "../store/index.ts";
import { BangerError, ErrorCode } from "../util/errors.ts";
import { humanBytes } from "../util/human.ts";

const MIB = 1024 ** 2;

/** A create request, resolved (image and kernel chosen, defaults applied), as a member must match it. */
export interface PoolRequest extends MachineSpec {
  /** An explicit disk size is a disk no pooled VM has. */
  diskBytes?: number;
  /** A VM created stopped has nothing to gain from a booted one. */
  noStart?: boolean;
  /** The workspace disk slot (`vm run` with a workspace): only a member with an empty one serves it. */
  workspaceSlot?: boolean;
}

/** Whether a member has an empty workspace slot (members are booted with one: a workspace can go in). */
const hasEmptySlot = (m: VmRecord) => {
  const slot = m.config.workspaceSlot as { mountedAt?: string } | undefined;
  return slot !== undefined && slot.mountedAt === undefined;
};

/** States of a pooled VM: `creating` is warming, `running` is ready; the rest are dead or going. */
const DEAD: ReadonlySet<string> = new Set(["stopped", "crashed", "error", "paused", "stopping", "starting"]);

/**
 * The ready member a request may take: same image, kernel, VMM, CPUs, memory and network, no
 * explicit disk size, an empty workspace slot when it asks for one, booted (oldest first).
 * Anything else is a cold create. (A member's unused slot is an empty sparse file: harmless
 * to a request that did not ask for it.)
 */
export function matchingMember(members: readonly VmRecord[], want: PoolRequest): VmRecord | undefined {
  if (want.diskBytes !== undefined || want.noStart) return undefined;
  return members.find((m) => m.pool === want.image && m.state === "running" && sameMachine(m, want) && (!want.workspaceSlot || hasEmptySlot(m)));
}

/** Whether a member was booted with its pool's current spec (a re-specced pool replaces the others). */
export function memberFitsSpec(m: VmRecord, spec: PoolSpec): boolean {
  return (spec.kernel === null || m.kernel === spec.kernel) && m.cpus === spec.cpus && m.memoryBytes === spec.memoryBytes && m.net === spec.net && m.netPeer === spec.netPeer;
}

/**
 * Refuses a pool size whose VMs, with every other pool's at full size, would hold more guest
 * memory than the cap: one line with the numbers, and the setting that raises it.
 */
export function checkPoolCap(pools: readonly PoolRecord[], image: string, size: number, spec: PoolSpec, cap: number): void {
  const others = pools.filter((p) => p.image !== image).reduce((sum, p) => sum + p.size * p.spec.memoryBytes, 0);
  const total = others + size * spec.memoryBytes;
  if (total <= cap) return;
  const withOthers = others > 0 ? ` (with the other pools' ${humanBytes(others)})` : "";
  throw new BangerError(
    ErrorCode.InvalidArgument,
    `pool ${image} of ${size} x ${humanBytes(spec.memoryBytes)} would hold ${humanBytes(total)}${withOthers}, over pool.max_memory (${humanBytes(cap)})`,
    `raise the cap: banger config set pool.max_memory ${Math.ceil(total / MIB)}M (or ask for a smaller --size)`,
  );
}

/** What the refill loop does next: remove one VM, boot one, or nothing (all pools at rest). */
export type PoolStep = { kind: "remove"; vm: string; why: string } | { kind: "boot"; pool: PoolRecord } | { kind: "idle"; heldBack: Map<string, string> };

/** Members still counted: not being removed. */
export const liveMembers = (members: readonly VmRecord[]) => members.filter((m) => m.state !== "removing");

/**
 * One step towards every pool at its size: dead members, members of pools that no longer
 * exist or were re-specced, and members beyond a size or the cap go first; then the first
 * pool short of its size boots one, unless that would pass the cap or it is backing off
 * after a failure (`heldBack` says why a pool short of its size waits).
 */
export function nextPoolStep(pools: readonly PoolRecord[], allMembers: readonly VmRecord[], cap: number, backingOff: (image: string) => string | undefined): PoolStep {
  const members = liveMembers(allMembers);
  const byImage = new Map(pools.map((p) => [p.image, p]));
  for (const m of members) {
    const pool = m.pool === null ? undefined : byImage.get(m.pool);
    if (DEAD.has(m.state)) return { kind: "remove", vm: m.name, why: `it is ${m.state}` };
    if (!pool) return { kind: "remove", vm: m.name, why: "its pool is gone" };
    if (m.state === "running" && !memberFitsSpec(m, pool.spec)) return { kind: "remove", vm: m.name, why: "its pool's spec changed" };
  }
  for (const p of pools) {
    const mine = members.filter((m) => m.pool === p.image);
    const ready = mine.filter((m) => m.state === "running");
    if (mine.length > p.size && ready.length > 0) return { kind: "remove", vm: ready[ready.length - 1]!.name, why: `pool ${p.image} is over its size ${p.size}` };
  }
  const held = members.reduce((sum, m) => sum + m.memoryBytes, 0);
  if (held > cap) {
    const ready = members.filter((m) => m.state === "running");
    if (ready.length > 0) return { kind: "remove", vm: ready[ready.length - 1]!.name, why: `pools hold ${humanBytes(held)}, over pool.max_memory (${humanBytes(cap)})` };
  }
  const heldBack = new Map<string, string>();
  for (const p of pools) {
    const count = members.filter((m) => m.pool === p.image).length;
    if (count >= p.size) continue;
    const waiting = backingOff(p.image);
    if (waiting) heldBack.set(p.image, waiting);
    else if (held + p.spec.memoryBytes > cap) heldBack.set(p.image, `held back: pools hold ${humanBytes(held)} of pool.max_memory (${humanBytes(cap)})`);
    else return { kind: "boot", pool: p };
  }
  return { kind: "idle", heldBack };
}
