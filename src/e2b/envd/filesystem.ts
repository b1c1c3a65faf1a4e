// envd's Filesystem service (filesystem.proto) over the daemon's vm.fs.* methods: Stat,
// MakeDir, Move, ListDir, Remove here; WatchDir and the polling watcher calls in
// filesystem-watch.ts. Each request acts in the sandbox its headers name, as the user of its
// `Authorization: Basic` header (the SDK's `user` option), else where commands land.
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { MethodName, ParamsOf, ResultOf } from "../../api/index.ts";
import type { Filesystem } from "../gen/filesystem_pb.ts";
import type { EnvdDeps } from "./context.ts";
import { callDaemon, entryInfo, sandboxOf, toConnectError, userFromHeaders } from "./filesystem-shared.ts";
import { watchService } from "./filesystem-watch.ts";

/** ListDir's depth at most (the daemon's limit): deeper trees are listed in steps. */
const MAX_DEPTH = 64;

export function filesystemService(deps: EnvdDeps): ServiceImpl<typeof Filesystem> {
  /** Runs a vm.fs.* method for this request's sandbox and user; errors become Connect codes. */
  const run = async <M extends MethodName>(ctx: HandlerContext, method: M, params: (vm: string, user: string | undefined) => ParamsOf<M>): Promise<ResultOf<M>> => {
    try {
      const user = userFromHeaders(ctx.requestHeader);
      const sandbox = await sandboxOf(deps, ctx.requestHeader);
      return await callDaemon(deps, method, params(sandbox.vm, user), { signal: ctx.signal });
    } catch (err) {
      throw toConnectError(err);
    }
  };
  return {
    async stat(req, ctx) {
      return { entry: entryInfo(await run(ctx, "vm.fs.stat", (name, user) => ({ name, user, path: req.path }))) };
    },
    async makeDir(req, ctx) {
      return { entry: entryInfo(await run(ctx, "vm.fs.mkdir", (name, user) => ({ name, user, path: req.path }))) };
    },
    async move(req, ctx) {
      return { entry: entryInfo(await run(ctx, "vm.fs.move", (name, user) => ({ name, user, path: req.source, dest: req.destination }))) };
    },
    async listDir(req, ctx) {
      const depth = Math.min(Math.max(req.depth, 1), MAX_DEPTH); // 0: envd's default, one level
      const entries = await run(ctx, "vm.fs.list", (name, user) => ({ name, user, path: req.path, depth }));
      return { entries: entries.map(entryInfo) };
    },
    async remove(req, ctx) {
      await run(ctx, "vm.fs.remove", (name, user) => ({ name, user, path: req.path }));
      return {};
    },
    ...watchService(deps),
  };
}
