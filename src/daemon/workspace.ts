// What the daemon remembers about a VM's workspace: where it came from on the host and
// which commit holds the copied state, so `vm workspace export` can compute the guest's
// changes later. Packing, copying and patching run in the CLI, as the user, because they
// read and write the user's repository; the daemon stores these facts and puts the packed
// tar into the guest (vm.workspace.put: workspace-disk.ts chooses disk slot or agent).
import { isAbsolute } from "node:path";
import type { Handlers, WorkspaceView } from "../api/index.ts";
import { optionalInt, optionalString, requireString } from "../rpc/index.ts";
import { BangerError, ErrorCode, invalidArgument } from "../util/errors.ts";
import type { DaemonContext } from "./context.ts";
import { getVm } from "./vms.ts";
import { putWorkspace } from "./workspace-disk.ts";

const COMMIT = /^[0-9a-f]{40}([0-9a-f]{24})?$/;

function optionalCommit(p: unknown, key: string): string | null {
  const v = optionalString(p, key);
  if (v === undefined) return null;
  if (!COMMIT.test(v)) throw invalidArgument(`${key} must be a full commit id`);
  return v;
}

export function workspaceMethods(ctx: DaemonContext): Handlers<"vm.workspace.record" | "vm.workspace.info" | "vm.workspace.put"> {
  return {
    "vm.workspace.put": (p, call) =>
      putWorkspace(ctx, requireString(p, "name"), requireString(p, "dest"), { uid: optionalInt(p, "uid", 0, 0xfffffffe) ?? 0, gid: optionalInt(p, "gid", 0, 0xfffffffe) ?? 0 }, call),
    "vm.workspace.record": (p) => {
      const name = requireString(p, "name");
      const record: WorkspaceView = {
        hostRepo: requireString(p, "hostRepo"),
        guestPath: requireString(p, "guestPath"),
        baseCommit: optionalCommit(p, "baseCommit"),
        copiedCommit: optionalCommit(p, "copiedCommit"),
        uid: optionalInt(p, "uid", 0, 0xfffffffe) ?? 0,
        gid: optionalInt(p, "gid", 0, 0xfffffffe) ?? 0,
        copiedAt: new Date().toISOString(),
      };
      if (!isAbsolute(record.hostRepo) || !isAbsolute(record.guestPath)) throw invalidArgument("workspace paths must be absolute");
      return ctx.locks.run(`vm:${name}`, async () => {
        const vm = getVm(ctx, name);
        ctx.store.updateVm(name, { config: { ...vm.config, workspace: record } });
        return record;
      });
    },
    "vm.workspace.info": (p) => {
      const name = requireString(p, "name");
      const ws = getVm(ctx, name).config.workspace as WorkspaceView | undefined;
      if (!ws) throw new BangerError(ErrorCode.NotFound, `vm ${name} has no workspace`, "workspaces come from `banger vm run` in a repository");
      return ws;
    },
  };
}
