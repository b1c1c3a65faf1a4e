// The daemon's life: lock the root, open the store, reconcile, serve the socket, and on
// SIGTERM/SIGINT/`daemon.stop` stop serving, let cancelled handlers clean up, and exit.
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { ensureDirs, loadConfig, type Paths } from "../config/index.ts";
import { RpcServer } from "../rpc/index.ts";
import { openStore } from "../store/index.ts";
import { buildInfo } from "../util/buildinfo.ts";
import { errorLine } from "../util/errors.ts";
import { buildId } from "../launch/index.ts";
import { acquireDaemonLock } from "./lock.ts";
import { Logger } from "./logger.ts";
import { KeyedLock, type DaemonContext } from "./context.ts";
import { buildMethodTable } from "./methods.ts";
import { NetworkManager, networkSettings } from "./network.ts";
import { VmRuntime } from "./vm-runtime.ts";
import { reconcileVms } from "./vms.ts";
import { WarmPools } from "./pools.ts";
import { StandbyRestores, reapStandbys } from "./standby.ts";
import { tidyRoot } from "./sweep.ts";
import { reconcileSnapshots } from "./snapshots.ts";
import { watchVms } from "./vm-health.ts";
import { Dashboard } from "../webui/index.ts";
import { ApiService } from "../e2b/index.ts";
import { SandboxClock } from "./sandboxes.ts";
import type { Handlers } from "../api/index.ts";

/**
 * The group whose members may use the socket: `banger`, or $BANGER_GROUP (tests name a
 * throwaway group so they never create a real `banger` group).
 */
function socketGroupName(env: NodeJS.ProcessEnv = process.env): string {
  return env.BANGER_GROUP || "banger";
}

/** The gid of the socket's group when it exists: members may then use the socket. */
function socketGroupId(name: string): number | undefined {
  try {
    for (const line of readFileSync("/etc/group", "utf8").split("\n")) {
      const [group, , gid] = line.split(":");
      if (group === name && gid) return Number.parseInt(gid, 10);
    }
  } catch {
    /* no /etc/group: no group access */
  }
  return undefined;
}

export async function runDaemon(paths: Paths, opts: { logToStderr: boolean }): Promise<void> {
  ensureDirs(paths);
  const lock = acquireDaemonLock(paths.lockFile, paths.pidFile, paths.root);
  const log = new Logger(paths.daemonLog, opts.logToStderr);
  const store = openStore(paths.db);
  const interrupted = store.failInterruptedOperations();
  let shutdownRequested: () => void = () => undefined;
  let server: RpcServer | undefined;
  const network = new NetworkManager({ store, log, paths, settings: networkSettings(loadConfig(paths)) });
  const ctx: DaemonContext = {
    paths,
    config: () => loadConfig(paths),
    store,
    log,
    locks: new KeyedLock(),
    runtime: new VmRuntime((vm, err) => log.warn("guest agent connection ended", { vm, error: errorLine(err) })),
    network,
    pools: new WarmPools(),
    standbys: new StandbyRestores(),
    sandboxes: new SandboxClock(),
    startedAt: Date.now(),
    requestShutdown: () => shutdownRequested(),
    activeCalls: () => server?.activeCalls ?? 0,
  };
  await tidyRoot(ctx);
  const reaped = await reapStandbys(ctx);
  if (reaped > 0) log.info("ended standby restores a killed daemon left", { count: reaped });
  watchVms(ctx); // before adoption: an adopted VMM is watched from then on
  const reconciled = await reconcileVms(ctx);
  if (reconciled.adopted.length + reconciled.stopped.length + reconciled.removed.length > 0) log.info("reconciled vms", reconciled);
  await reconcileSnapshots(ctx).catch((err: unknown) => log.warn("snapshot reconcile failed", { error: errorLine(err) }));
  // A network that cannot come back up must not keep the daemon from serving (or stopping).
  await network.reconcile().catch((err: unknown) => log.warn("network reconcile failed", { error: errorLine(err) }));
  // The dashboard (web.enabled or BANGER_WEB=1) serves the same method table; a port in use must not stop
  // the daemon. web.reload (config set web.*) starts, stops or moves it later.
  ctx.pools.start(ctx); // adopted members count; the rest are booted in the background
  ctx.sandboxes.start(ctx); // expiries that passed while no daemon ran apply now
  const methods = buildMethodTable(ctx);
  const web = new Dashboard({ methods, paths, config: ctx.config, log });
  await web.apply();
  // The E2B-compatible API (api.enabled or BANGER_API=1), likewise: off by default, a busy port is logged.
  const api = new ApiService({ methods, paths, config: ctx.config, log });
  await api.apply();
  // Typed as every method: a method missing from the table fails the typecheck.
  const table: Handlers = { ...methods, ...web.methods(), ...api.methods() };
  const rpc = new RpcServer(table, log);
  server = rpc;
  const gid = socketGroupId(socketGroupName());
  await rpc.listen(paths.socket, gid === undefined ? { mode: 0o600 } : { mode: 0o660, gid });
  writeFileSync(paths.buildFile, `${buildId()}\n`); // CLIs of another build replace this daemon (launch.ts)
  log.info("bangerd ready", { pid: process.pid, version: buildInfo.version, commit: buildInfo.commit, root: paths.root, socket: paths.socket, interruptedOperations: interrupted });

  let stopping = false;
  const stop = async (reason: string) => {
    if (stopping) return;
    stopping = true;
    log.info("bangerd stopping", { reason });
    ctx.sandboxes.close();
    await web.close();
    await api.close();
    await rpc.close();
    // Pooled VMs are disposable: none is left running without a daemon to hand it out.
    await ctx.pools.close(ctx).catch((err: unknown) => log.warn("pool cleanup failed", { error: errorLine(err) }));
    await ctx.standbys.close();
    rmSync(paths.buildFile, { force: true });
    await network.close();
    await rm(paths.socket, { force: true });
    store.close();
    lock.release();
    log.info("bangerd stopped");
    await log.close();
    process.exit(0);
  };
  // Let the answer to `daemon.stop` reach the client before the socket closes.
  shutdownRequested = () => setTimeout(() => void stop("daemon.stop"), 50);
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
}
