// The method table: every RPC method name → its handler, typed against api/'s method map (a
// handler returning the wrong shape fails the typecheck). This file only composes the
// tables; each lives beside the operations it calls (methods-vm.ts, methods-fs.ts, methods-snapshots.ts, methods-images.ts,
// methods-daemon.ts, sessions.ts, workspace.ts, pools.ts, ...), where handlers only check their params
// and call one operation. web.* are the dashboard's (webui/control.ts), api.* the E2B API's (e2b/control.ts).
import type { Handlers, MethodName } from "../api/index.ts";
import { configDefaultsMethods } from "./config-defaults.ts";
import type { DaemonContext } from "./context.ts";
import { defaultsMethods } from "./defaults.ts";
import { fsMethods } from "./methods-fs.ts";
import { landingMethods } from "./landing.ts";
import { daemonMethods } from "./methods-daemon.ts";
import { imageMethods, kernelMethods } from "./methods-images.ts";
import { vmMethods } from "./methods-vm.ts";
import { networkMethods } from "./network-methods.ts";
import { poolMethods } from "./pools.ts";
import { sandboxMethods } from "./methods-sandboxes.ts";
import { sessionMethods } from "./sessions.ts";
import { snapshotMethods } from "./methods-snapshots.ts";
import { workspaceMethods } from "./workspace.ts";

/** Every method but the dashboard's. */
export type DaemonMethod = Exclude<MethodName, "web.info" | "web.reload" | ApiMethod>;

/** The E2B API server's own methods (e2b/'s ApiControl, started in server.ts). */
export type ApiMethod = "api.info" | "api.reload" | "api.key.rotate";

export function buildMethodTable(ctx: DaemonContext): Handlers<DaemonMethod> {
  return {
    ...daemonMethods(ctx),
    ...kernelMethods(ctx),
    ...imageMethods(ctx),
    ...workspaceMethods(ctx),
    ...defaultsMethods(ctx),
    ...configDefaultsMethods(ctx),
    ...sessionMethods(ctx),
    ...landingMethods(ctx),
    ...networkMethods(ctx),
    ...vmMethods(ctx),
    ...fsMethods(ctx),
    ...snapshotMethods(ctx),
    ...poolMethods(ctx),
    ...sandboxMethods(ctx),
  };
}
