// The method table: RPC method names → daemon operations. Only parameter checking and
// dispatch live here; the work is in the operation files (vms.ts, kernels.ts, ...).
import { buildInfo } from "../util/buildinfo.ts";
import type { MethodTable } from "../rpc/index.ts";
import { optionalInt, requireString } from "../rpc/index.ts";
import type { DaemonContext } from "./context.ts";
import { getVm, listVms } from "./vms.ts";

export function buildMethodTable(ctx: DaemonContext): MethodTable {
  return {
    "daemon.status": () => ({
      pid: process.pid,
      version: buildInfo.version,
      commit: buildInfo.commit,
      buildDate: buildInfo.buildDate,
      root: ctx.paths.root,
      socket: ctx.paths.socket,
      uptimeSeconds: Math.round((Date.now() - ctx.startedAt) / 1000),
      schemaVersion: ctx.store.schemaVersion,
      vms: { total: ctx.store.listVms().length, running: ctx.store.listVms().filter((v) => v.state === "running").length },
    }),
    "daemon.stop": () => {
      ctx.requestShutdown();
      return { stopping: true, pid: process.pid };
    },
    "ops.list": (p) => ctx.store.listOperations(optionalInt(p, "limit", 1, 1000) ?? 50),
    "vm.list": () => listVms(ctx),
    "vm.show": (p) => getVm(ctx, requireString(p, "name")),
  };
}
