// `vm fork`: an internal snapshot of a running VM (which keeps running), then its children
// restored from it side by side (restore.ts restoreVm), all or none. Where it can, the
// children's VMMs start on stand-ins of the snapshot while the parent is paused
// (snapshots.ts standInSnapshot, takeSnapshot in place); after a fork, one VMM already waits
// on the stand-ins of the parent's next fork (standby.ts warmFork), and that fork's first
// child takes it.
import { availableParallelism } from "node:os";
import { rm } from "node:fs/promises";
import { performance } from "node:perf_hooks";
import { snapshotDir } from "../config/index.ts";
import type { VmRecord } from "../store/index.ts";
import { BangerError, ErrorCode, alreadyExists, invalidArgument } from "../util/errors.ts";
import type { ProgressEvent } from "../util/progress.ts";
import { validateName } from "../util/names.ts";
import type { CallEnv, DaemonContext } from "./context.ts";
import { recordOperation } from "./operations.ts";
import { type PendingSnapshot, restoreVm } from "./restore.ts";
import { type TakenSnapshot, forkBaseName, releaseSnapshot, standInSnapshot, takeSnapshot } from "./snapshots.ts";
import { endStandby } from "./standby.ts";
import { vmPaths } from "./vm-runtime.ts";
import { destroyVm, getVm } from "./vms.ts";

/** The most children one `vm fork` makes. */
export const MAX_FORK_COUNT = 64;

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
      // A child's VMM started ahead for this fork (standby.ts, after the parent's last fork) waits on its base's stand-ins.
      const parentVm = getVm(ctx, parent);
      const handle = ctx.runtime.handle(parent);
      const ahead = handle ? ctx.standbys.takeFork(parentVm, handle.pid) : undefined;
      let spare = ahead?.standby;
      const base = ahead?.standby.snapshot ?? forkBaseName(parent);
      const plan = ahead?.plan ?? (await standInSnapshot(ctx, parentVm, base, call.signal));
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
        const takeStandby = () => {
          const s = spare;
          spare = undefined;
          return s;
        };
        const children = restoreChildren(ctx, base, names, call, { plan, ready: taking, arrived: opened.arrive, takeStandby });
        const [t, m] = await Promise.allSettled([taking, children]);
        if (spare) await endStandby(spare); // no child got as far as taking it
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
      const totalMs = Math.round(performance.now() - started);
      ctx.log.info("vm forked", { vm: parent, snapshot: base, children: made.children.length, standby: ahead !== undefined, pauseMs: taken.pauseMs, totalMs });
      ctx.standbys.warmFork(ctx, parent); // its next fork starts no VMM
      return { snapshot: base, children: made.children, pauseMs: taken.pauseMs, totalMs };
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
