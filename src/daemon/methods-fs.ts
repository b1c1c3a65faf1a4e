// The vm.fs.* methods: one path's filesystem operations in a running VM, done by its guest
// agent (guest/fs.ts) as the request's user, by default where commands land (landing.ts).
// read and write stream bytes as exec does (streams.ts); watch streams change events until
// the caller cancels. At most MAX_WATCHES watches run per VM: each holds one of the agent
// connection's channels.
import type { FsEvent, FsStreamEvent, Handlers } from "../api/index.ts";
import type { AgentClient } from "../guest/index.ts";
import { type CallContext, optionalBool, optionalInt, optionalString, requireString } from "../rpc/index.ts";
import { BangerError, ErrorCode } from "../util/errors.ts";
import type { DaemonContext } from "./context.ts";
import { withLanding } from "./landing.ts";
import { emitStream, inputStream } from "./streams.ts";
import { runningAgent } from "./vms.ts";

/** Watches running at once per VM: the agent connection has 64 channels for everything. */
export const MAX_WATCHES = 16;
const MAX_DEPTH = 64;

type FsMethod = "vm.fs.stat" | "vm.fs.list" | "vm.fs.mkdir" | "vm.fs.move" | "vm.fs.remove" | "vm.fs.read" | "vm.fs.write" | "vm.fs.watch";

/** The agent of a running VM and the user to act as (the caller's, else the landing user). */
async function target(ctx: DaemonContext, p: unknown, call: CallContext): Promise<{ agent: AgentClient; user: string | undefined; path: string }> {
  const name = requireString(p, "name");
  const path = requireString(p, "path");
  const agent = await runningAgent(ctx, name, call.signal);
  const { user } = await withLanding(ctx, name, agent, { user: optionalString(p, "user"), cwd: "/" });
  return { agent, user, path };
}

const watching = new WeakMap<DaemonContext, Map<string, number>>();

export function fsMethods(ctx: DaemonContext): Handlers<FsMethod> {
  const emit = (call: CallContext, ev: FsStreamEvent) => call.emit(ev);
  return {
    "vm.fs.stat": async (p, call) => {
      const { agent, user, path } = await target(ctx, p, call);
      return agent.fs.stat(path, user);
    },
    "vm.fs.list": async (p, call) => {
      const depth = optionalInt(p, "depth", 1, MAX_DEPTH);
      const { agent, user, path } = await target(ctx, p, call);
      return agent.fs.list(path, { depth, user });
    },
    "vm.fs.mkdir": async (p, call) => {
      const { agent, user, path } = await target(ctx, p, call);
      return agent.fs.mkdir(path, user);
    },
    "vm.fs.move": async (p, call) => {
      const dest = requireString(p, "dest");
      const { agent, user, path } = await target(ctx, p, call);
      return agent.fs.move(path, dest, user);
    },
    "vm.fs.remove": async (p, call) => {
      const { agent, user, path } = await target(ctx, p, call);
      await agent.fs.remove(path, user);
      return { removed: path };
    },
    "vm.fs.read": async (p, call) => {
      const { agent, user, path } = await target(ctx, p, call);
      const { size, stream } = await agent.fs.read(path, user);
      call.signal.addEventListener("abort", () => stream.destroy(), { once: true });
      await emit(call, { t: "size", bytes: size });
      await emitStream(stream, call);
      return { bytes: size };
    },
    "vm.fs.write": async (p, call) => {
      const { agent, user, path } = await target(ctx, p, call);
      return agent.fs.write(path, inputStream(call), { user, signal: call.signal });
    },
    "vm.fs.watch": async (p, call) => {
      const recursive = optionalBool(p, "recursive") ?? false;
      const { agent, user, path } = await target(ctx, p, call);
      const name = requireString(p, "name");
      let perVm = watching.get(ctx);
      if (!perVm) watching.set(ctx, (perVm = new Map()));
      const running = perVm.get(name) ?? 0;
      if (running >= MAX_WATCHES) {
        throw new BangerError(ErrorCode.ResourceExhausted, `vm ${name} already has ${MAX_WATCHES} directory watches`, "stop one before starting another");
      }
      perVm.set(name, running + 1);
      try {
        // Changes the guest reports at once wait for `started` to go out first.
        let markStarted!: () => void;
        const started = new Promise<void>((resolve) => (markStarted = resolve));
        const onEvent = async (ev: FsEvent) => {
          await started;
          await emit(call, { t: "fs", ...ev });
        };
        const watch = await agent.fs.watch(path, onEvent, { recursive, user });
        const onAbort = () => watch.stop();
        call.signal.addEventListener("abort", onAbort, { once: true });
        if (call.signal.aborted) watch.stop();
        try {
          await emit(call, { t: "started" });
          markStarted();
          await watch.done;
        } finally {
          call.signal.removeEventListener("abort", onAbort);
          watch.stop(); // ended or failed: free the agent's channel either way
          markStarted();
        }
        return { ended: true as const };
      } finally {
        const left = (perVm.get(name) ?? 1) - 1;
        if (left > 0) perVm.set(name, left);
        else perVm.delete(name);
      }
    },
  };
}
