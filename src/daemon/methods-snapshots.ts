// The snapshot methods (vm.snapshot, vm.fork, snapshot.*): each checks its params and calls
// one operation (snapshots.ts, restore.ts, fork.ts).
import type { Handlers } from "../api/index.ts";
import { optionalBool, optionalInt, optionalStringArray, requireString } from "../rpc/index.ts";
import type { DaemonContext } from "./context.ts";
import { forkVm, MAX_FORK_COUNT } from "./fork.ts";
import { getSnapshot, listSnapshots, removeSnapshot, snapshotDependents, snapshotVm, usedBytes } from "./snapshots.ts";
import { snapshotView, vmView } from "./views.ts";
import type { SnapshotRecord } from "../store/index.ts";

type SnapshotMethod = "vm.snapshot" | "vm.fork" | "snapshot.list" | "snapshot.show" | "snapshot.rm";

export function snapshotMethods(ctx: DaemonContext): Handlers<SnapshotMethod> {
  const view = async (r: SnapshotRecord) => snapshotView(r, await usedBytes(ctx, r.name), snapshotDependents(ctx, r.name));
  return {
    "vm.snapshot": async (p, call) => {
      const taken = await snapshotVm(ctx, requireString(p, "name"), requireString(p, "snapshot"), call);
      return { snapshot: await view(taken.record), pauseMs: taken.pauseMs, totalMs: taken.totalMs };
    },
    "vm.fork": async (p, call) => {
      const parent = requireString(p, "name");
      const forked = await forkVm(ctx, parent, { count: optionalInt(p, "count", 1, MAX_FORK_COUNT), names: optionalStringArray(p, "names", MAX_FORK_COUNT) }, call);
      return { parent, snapshot: forked.snapshot, children: forked.children.map(vmView), pauseMs: forked.pauseMs, totalMs: forked.totalMs };
    },
    "snapshot.list": async (p) => Promise.all((await listSnapshots(ctx, optionalBool(p, "all") ?? false)).map(view)),
    "snapshot.show": async (p) => view(getSnapshot(ctx, requireString(p, "name"))),
    "snapshot.rm": (p) => removeSnapshot(ctx, requireString(p, "name"), { force: optionalBool(p, "force") }),
  };
}
