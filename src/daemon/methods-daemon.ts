// The daemon.* methods and ops.list: the daemon's own state, stopping it, recent operations.
import type { Handlers } from "../api/index.ts";
import { optionalBool, optionalInt } from "../rpc/index.ts";
import { buildInfo } from "../util/buildinfo.ts";
import type { DaemonContext } from "./context.ts";
import { operationView } from "./views.ts";
import { listVms } from "./vms.ts";

export function daemonMethods(ctx: DaemonContext): Handlers<"daemon.status" | "daemon.stop" | "ops.list"> {
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
      vms: { total: listVms(ctx).length, running: listVms(ctx).filter((v) => v.state === "running").length },
      activeCalls: ctx.activeCalls(),
    }),
    "daemon.stop": async (p) => {
      const cleanupNetwork = optionalBool(p, "cleanupNetwork");
      // Pooled VMs go with the daemon anyway: gone first, their taps do not hold up the teardown.
      if (cleanupNetwork) await ctx.pools.close(ctx);
      const network = cleanupNetwork ? await ctx.network.teardown() : undefined;
      ctx.requestShutdown();
      return { stopping: true as const, pid: process.pid, ...(network ? { network } : {}) };
    },
    "ops.list": (p) => ctx.store.listOperations(optionalInt(p, "limit", 1, 1000) ?? 50).map(operationView),
  };
}
