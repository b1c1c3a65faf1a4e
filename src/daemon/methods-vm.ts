// The vm.* methods: each checks its params and calls one operation (vms.ts, vm-health.ts,
// vm-io.ts, exec.ts, landing.ts, restore.ts); vm.snapshot and vm.fork are methods-snapshots.ts.
import type { Handlers } from "../api/index.ts";
import { parseEgressPolicy } from "../net/index.ts";
import { optionalBool, optionalInt, optionalString, requireObject, requireString } from "../rpc/index.ts";
import { invalidArgument } from "../util/errors.ts";
import type { DaemonContext } from "./context.ts";
import { bridgeExec, parseExecParams } from "./exec.ts";
import { withLanding } from "./landing.ts";
import { createFromSnapshot, restoreOnly } from "./restore.ts";
import { pauseVm, resumeVm } from "./vm-health.ts";
import { CONSOLE_DEFAULT_TAIL, CONSOLE_MAX_TAIL, getFiles, putFiles, streamConsole } from "./vm-io.ts";
import { createVm, getVm, killVm, listVms, removeVm, runningAgent, setVm, startVm, stopVm, vmStats } from "./vms.ts";
import { vmView } from "./views.ts";

const MAX_CPUS = 64;
const MIB = 1024 ** 2;
const MIN_MEMORY_BYTES = 64 * MIB;
const MAX_MEMORY_BYTES = 256 * 1024 * MIB;

/** `memoryBytes`: 64 MiB to 256 GiB in whole MiB (what QEMU and Firecracker take). */
function memoryParam(p: unknown): number | undefined {
  // An older caller's MiB would otherwise be ignored without a word, and the VM get the default.
  if (requireObject(p).memoryMib !== undefined) throw invalidArgument(`"memoryMib" is now "memoryBytes" (in bytes)`, "use a banger CLI of the daemon's version");
  const bytes = optionalInt(p, "memoryBytes", MIN_MEMORY_BYTES, MAX_MEMORY_BYTES);
  if (bytes !== undefined && bytes % MIB !== 0) throw invalidArgument(`memoryBytes must be a whole number of MiB, not ${bytes}`);
  return bytes;
}

type VmMethod =
  | "vm.list"
  | "vm.show"
  | "vm.create"
  | "vm.start"
  | "vm.stop"
  | "vm.kill"
  | "vm.pause"
  | "vm.resume"
  | "vm.rm"
  | "vm.set"
  | "vm.stats"
  | "vm.logs"
  | "vm.files.put"
  | "vm.files.get"
  | "vm.exec";

export function vmMethods(ctx: DaemonContext): Handlers<VmMethod> {
  return {
    "vm.list": () => listVms(ctx).map(vmView),
    "vm.show": (p) => vmView(getVm(ctx, requireString(p, "name"))),
    "vm.create": async (p, call) => {
      const fromSnapshot = optionalString(p, "fromSnapshot");
      if (fromSnapshot !== undefined) return vmView(await createFromSnapshot(ctx, { name: optionalString(p, "name"), fromSnapshot: restoreOnly(requireObject(p), fromSnapshot) }, call));
      const vm = await createVm(
        ctx,
        {
          name: optionalString(p, "name"),
          image: optionalString(p, "image"),
          kernel: optionalString(p, "kernel"),
          cpus: optionalInt(p, "cpus", 1, MAX_CPUS),
          memoryBytes: memoryParam(p),
          diskBytes: optionalInt(p, "diskBytes", 1),
          noStart: optionalBool(p, "noStart"),
          net: optionalString(p, "net") === undefined ? undefined : parseEgressPolicy(optionalString(p, "net")!),
          netPeer: optionalBool(p, "netPeer"),
          workspaceSlot: optionalBool(p, "workspaceSlot"),
        },
        call,
      );
      return vm.fromPool ? { ...vmView(vm), fromPool: true } : vmView(vm);
    },
    "vm.start": async (p, call) => vmView(await startVm(ctx, requireString(p, "name"), call)),
    "vm.stop": async (p) => {
      const { outcome, ...vm } = await stopVm(ctx, requireString(p, "name"), { timeoutMs: optionalInt(p, "timeoutMs", 0, 600_000) });
      return { ...vmView(vm), outcome };
    },
    "vm.kill": async (p) => vmView(await killVm(ctx, requireString(p, "name"))),
    "vm.pause": async (p) => vmView(await pauseVm(ctx, requireString(p, "name"))),
    "vm.resume": async (p) => vmView(await resumeVm(ctx, requireString(p, "name"))),
    "vm.rm": (p) => removeVm(ctx, requireString(p, "name"), { force: optionalBool(p, "force"), kill: optionalBool(p, "kill") }),
    "vm.set": async (p) => vmView(await setVm(ctx, requireString(p, "name"), { cpus: optionalInt(p, "cpus", 1, MAX_CPUS), memoryBytes: memoryParam(p) })),
    "vm.stats": (p) => vmStats(ctx, requireString(p, "name")),
    "vm.logs": (p, call) =>
      streamConsole(ctx, requireString(p, "name"), { follow: optionalBool(p, "follow") ?? false, tailBytes: optionalInt(p, "bytes", 1, CONSOLE_MAX_TAIL) ?? CONSOLE_DEFAULT_TAIL }, call),
    "vm.files.put": async (p, call) => {
      const agent = await runningAgent(ctx, requireString(p, "name"), call.signal);
      const dest = requireString(p, "dest");
      return putFiles(agent, dest, { uid: optionalInt(p, "uid", 0, 0xfffffffe), gid: optionalInt(p, "gid", 0, 0xfffffffe) }, call);
    },
    "vm.files.get": async (p, call) => {
      const agent = await runningAgent(ctx, requireString(p, "name"), call.signal);
      return getFiles(agent, requireString(p, "path"), call);
    },
    "vm.exec": async (p, call) => {
      const asked = parseExecParams(requireObject(p));
      const name = requireString(p, "name");
      const agent = await runningAgent(ctx, name, call.signal);
      // Unless the caller says, commands land where `vm run` puts them (landing.ts).
      const params = await withLanding(ctx, name, agent, asked);
      return bridgeExec(await agent.exec({ ...params, stdin: true }), params, call);
    },
  };
}
