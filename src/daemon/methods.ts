// The method table: RPC method names → daemon operations. Only parameter checking and
// dispatch live here; the work is in the operation files (vms.ts, kernels.ts, ...).
import { buildInfo } from "../util/buildinfo.ts";
import { invalidArgument } from "../util/errors.ts";
import type { CallContext, MethodTable } from "../rpc/index.ts";
import { optionalBool, optionalInt, optionalString, requireObject, requireString } from "../rpc/index.ts";
import type { DaemonContext } from "./context.ts";
import { bridgeExec, parseExecParams } from "./exec.ts";
import { networkMethods } from "./network.ts";
import { parseEgressPolicy } from "../net/index.ts";
import { CONSOLE_LOG_CAP, readConsoleFrom, readConsoleTail } from "../vmm/index.ts";
import type { StreamEvent } from "../api/index.ts";
import { emitStream, inputStream } from "./streams.ts";
import { workspaceMethods } from "./workspace.ts";
import { resumeVm } from "./vm-health.ts";
import { defaultsMethods } from "./defaults.ts";
import { configDefaultsMethods } from "./config-defaults.ts";
import { sessionMethods } from "./sessions.ts";
import { landingMethods, withLanding } from "./landing.ts";
import { getImage, imageCatalog, imageView, pullImage, removeImage } from "./images.ts";
import { buildPresetImage } from "./images-build.ts";
import { type ImportParams, getKernel, importKernel, kernelCatalog, pullKernel, removeKernel } from "./kernels.ts";
import {
  consoleLog, createVm, getVm, killVm, listVms, removeVm, runningAgent, setVm, startVm, stopVm, vmStats,
} from "./vms.ts";

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
      activeCalls: ctx.activeCalls(),
    }),
    "daemon.stop": async (p) => {
      const network = optionalBool(p, "cleanupNetwork") ? await ctx.network.teardown() : undefined;
      ctx.requestShutdown();
      return { stopping: true, pid: process.pid, ...(network ? { network } : {}) };
    },
    "ops.list": (p) => ctx.store.listOperations(optionalInt(p, "limit", 1, 1000) ?? 50),

    "kernel.list": () => ctx.store.listKernels(),
    "kernel.catalog": (_p, call) => kernelCatalog(ctx, call.signal),
    "kernel.show": (p) => getKernel(ctx, requireString(p, "name")),
    "kernel.pull": (p, call) => pullKernel(ctx, requireString(p, "name"), optionalBool(p, "force") ?? false, call),
    "kernel.rm": (p) => removeKernel(ctx, requireString(p, "name"), optionalBool(p, "force") ?? false),
    "kernel.import": (p, call) => importKernel(ctx, importParams(p, call), call),

    "image.list": () => Promise.all(ctx.store.listImages().map((i) => imageView(ctx, i))),
    "image.catalog": (_p, call) => imageCatalog(ctx, call.signal),
    "image.show": (p) => imageView(ctx, getImage(ctx, requireString(p, "name"))),
    "image.pull": async (p, call) => {
      const r = await pullImage(
        ctx,
        {
          ref: requireString(p, "ref"),
          name: optionalString(p, "name"),
          kernelRef: optionalString(p, "kernelRef"),
          kernel: optionalString(p, "kernel"),
          platform: optionalString(p, "platform"),
          sizeBytes: optionalInt(p, "sizeBytes", 1),
          force: optionalBool(p, "force"),
        },
        call,
      );
      return { ...r, image: await imageView(ctx, r.image) };
    },
    "image.rm": (p) => removeImage(ctx, requireString(p, "name"), optionalBool(p, "force") ?? false),
    "image.build": async (p, call) =>
      imageView(ctx, await buildPresetImage(
        ctx,
        { preset: requireString(p, "preset"), name: optionalString(p, "name"), kernelRef: optionalString(p, "kernelRef"), sizeBytes: optionalInt(p, "sizeBytes", 1), force: optionalBool(p, "force") },
        call,
      )),

    ...workspaceMethods(ctx),
    ...defaultsMethods(ctx),
    ...configDefaultsMethods(ctx),
    ...sessionMethods(ctx),
    ...landingMethods(ctx),
    ...networkMethods(ctx, runningAgent),
    "vm.list": () => listVms(ctx),
    "vm.show": (p) => getVm(ctx, requireString(p, "name")),
    "vm.create": (p, call) =>
      createVm(
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
        },
        call,
      ),
    "vm.start": (p, call) => startVm(ctx, requireString(p, "name"), call),
    "vm.stop": (p) => stopVm(ctx, requireString(p, "name"), { timeoutMs: optionalInt(p, "timeoutMs", 0, 600_000) }),
    "vm.kill": (p) => killVm(ctx, requireString(p, "name")),
    "vm.resume": (p) => resumeVm(ctx, requireString(p, "name")),
    "vm.rm": (p) => removeVm(ctx, requireString(p, "name"), { force: optionalBool(p, "force") }),
    "vm.set": (p) => setVm(ctx, requireString(p, "name"), { cpus: optionalInt(p, "cpus", 1, MAX_CPUS), memoryBytes: memoryParam(p) }),
    "vm.stats": (p) => vmStats(ctx, requireString(p, "name")),
    "vm.logs": (p, call) =>
      streamConsole(ctx, requireString(p, "name"), { follow: optionalBool(p, "follow") ?? false, tailBytes: optionalInt(p, "bytes", 1, CONSOLE_MAX_TAIL) ?? CONSOLE_DEFAULT_TAIL }, call),
    "vm.files.put": async (p, call) => {
      const agent = await runningAgent(ctx, requireString(p, "name"), call.signal);
      const dest = requireString(p, "dest");
      const owner = { uid: optionalInt(p, "uid", 0, 0xfffffffe), gid: optionalInt(p, "gid", 0, 0xfffffffe) };
      return agent.putFiles(dest, inputStream(call), { ...owner, signal: call.signal });
    },
    "vm.files.get": async (p, call) => {
      const agent = await runningAgent(ctx, requireString(p, "name"), call.signal);
      await emitStream(await agent.getFiles(requireString(p, "path")), call);
      return { done: true };
    },
    "vm.exec": async (p, call) => {
      const asked = parseExecParams(requireObject(p));
      const name = requireString(p, "name");
      const agent = await runningAgent(ctx, name, call.signal);
      // Unless the caller says, commands land where `vm run` puts them (landing.ts).
      const params = await withLanding(ctx, name, agent, asked);
      const handle = await agent.exec({ ...params, stdin: true });
      return bridgeExec(handle, params, call);
    },
  };
}

/** A path shown back to users (kernel list): one line, no terminal control characters. */
const LABEL = /^[^\x00-\x1f\x7f-\x9f]{1,4096}$/;

/**
 * kernel.import's params. The daemon runs as root and opens no path a caller names: the caller
 * reads its directory or .deb itself and sends the bytes as this call's input (kernel/upload.ts).
 */
function importParams(p: unknown, call: CallContext): ImportParams {
  for (const key of ["source", "deb"]) {
    if (requireObject(p)[key] !== undefined) throw invalidArgument(`kernel.import reads no host path ("${key}"): send the files as the call's input`, "the banger CLI does; update it");
  }
  const flavor = optionalString(p, "flavor");
  if (flavor !== undefined && flavor !== "cloud" && flavor !== "generic") throw invalidArgument("--flavor takes cloud or generic");
  const kind = optionalString(p, "upload");
  if (kind !== undefined && kind !== "deb" && kind !== "dir") throw invalidArgument("upload takes deb or dir");
  const label = optionalString(p, "label") ?? "";
  if (kind !== undefined && !LABEL.test(label)) throw invalidArgument("an upload needs a label: the path it was read from, one line of printable text");
  return {
    upload: kind === undefined ? undefined : { kind, label, input: inputStream(call) },
    debian: optionalBool(p, "debian"), flavor, name: optionalString(p, "name"), force: optionalBool(p, "force"),
  };
}

/** What `vm logs` sends without `bytes`: the most the console keeps (two caps). */
const CONSOLE_DEFAULT_TAIL = 2 * CONSOLE_LOG_CAP;
const CONSOLE_MAX_TAIL = 16 * 1024 * 1024;
const CONSOLE_CHUNK = 64 * 1024;

/**
 * Sends the console log's last `tailBytes` as events (never the whole file: see vmm/console.ts);
 * with follow, keeps sending what is appended until cancelled or the VM is removed.
 */
async function streamConsole(ctx: DaemonContext, name: string, opts: { follow: boolean; tailBytes: number }, call: CallContext): Promise<{ bytes: number }> {
  const path = consoleLog(ctx, name);
  let sent = 0;
  const send = async (data: Buffer) => {
    for (let at = 0; at < data.length; at += CONSOLE_CHUNK) {
      await call.emit({ t: "out", fd: 1, data: data.subarray(at, at + CONSOLE_CHUNK) } satisfies StreamEvent);
    }
    sent += data.length;
  };
  const tail = await readConsoleTail(path, opts.tailBytes);
  await send(tail.data);
  let offset = tail.offset;
  while (opts.follow && !call.signal.aborted) {
    await new Promise((r) => setTimeout(r, 250));
    if (!ctx.store.getVm(name)) break;
    for (;;) {
      const next = await readConsoleFrom(path, offset, CONSOLE_CHUNK);
      offset = next.offset;
      if (next.data.length === 0 || call.signal.aborted) break;
      await send(next.data);
    }
  }
  return { bytes: sent };
}
