// `banger vm run`: the front door. A fresh VM, the current repository copied in, then one of
// three modes — an interactive shell, a command (its exit status becomes banger's), or a
// detached session — and the VM removed afterwards unless --keep (or detached).
// Packing the workspace runs here, as the user, since it reads the user's repository.
import type { Readable } from "node:stream";
import { Option, type Command } from "commander";
import { resolvePaths } from "../config/index.ts";
import { connectOrStart } from "../daemon/launch.ts";
import type { Call, RpcClient } from "../rpc/index.ts";
import type { ImageRecord, VmRecord } from "../store/index.ts";
import { errorLine, invalidArgument } from "../util/errors.ts";
import { inert } from "../util/text.ts";
import { validateName } from "../util/names.ts";
import { parseSize } from "../util/size.ts";
import { attachWith } from "./attach.ts";
import { ProgressView } from "./output.ts";
import { addNetOptions, netParams, parseForwardSpec, startForward } from "./net.ts";
import { Uploader, streamEvents } from "./streams.ts";
import { parseCount, parseEnv, parseMemoryMib } from "./args.ts";

export const GUEST_WORKSPACE = "/workspace";

interface RunOptions {
  image?: string;
  kernel?: string;
  name?: string;
  cpus?: number;
  memory?: number;
  diskSize?: number;
  env: string[];
  keep?: boolean;
  detach?: boolean;
  workspace?: string | false;
  timings?: boolean;
  yes?: boolean;
  net?: string;
  netPeer?: boolean;
  publish: string[];
}


/** Streams a local tar into the guest directory through the daemon. */
async function uploadTar(client: RpcClient, name: string, dest: string, tar: Readable, owner: { uid: number; gid: number }): Promise<{ files: number; bytes: number }> {
  let uploader: Uploader | undefined;
  const call: Call<{ files: number; bytes: number }> = client.start("vm.files.put", { name, dest, ...owner }, { onEvent: (e) => streamEvents({ 1: process.stdout, 2: process.stderr }, uploader)(e) });
  uploader = new Uploader(call, tar);
  uploader.start();
  return call.result;
}

/** The argv to run when none was given: the image's Entrypoint + Cmd (OCI images). */
function imageCommand(image: ImageRecord): string[] {
  const cfg = image.config as { entrypoint?: string[] | null; cmd?: string[] | null };
  return [...(cfg.entrypoint ?? []), ...(cfg.cmd ?? [])];
}

export function registerRun(vm: Command): void {
  const run = vm.command("run")
    .description("a fresh VM with this repository copied in, then a shell, a command, or a detached session (-d)")
    .argument("[command...]", "command to run in /workspace (after --); none: an interactive shell")
    .option("--image <image>", "image (default: config default_image)")
    .option("--kernel <kernel>", "kernel (default: the image's)")
    .option("--name <name>", "VM name (default: generated)", (v: string) => validateName("vm", v))
    .option("--cpus <n>", "virtual CPUs", parseCount("--cpus", 1, 64))
    .option("--memory <size>", "memory, e.g. 1G", parseMemoryMib)
    .option("--disk-size <size>", "root disk size, e.g. 4G", (v: string) => parseSize(v, "--disk-size"))
    .addOption(new Option("-e, --env <KEY=VALUE...>", "environment variables for the command").default([]))
    .option("--keep", "keep the VM afterwards")
    .option("-d, --detach", "start the command as a session that outlives this CLI; the VM stays")
    .option("--workspace <dir>", "copy this directory instead of the current repository")
    .option("--no-workspace", "copy nothing in")
    .option("--timings", "print how long each phase took")
    .option("-y, --yes", "on a fresh host, build the default kernel and image without asking")
    .addOption(new Option("-p, --publish <[HOST:]PORT[:GUESTPORT]...>", "forward a loopback port into the guest for the life of the run").default([]));
  addNetOptions(run).action(async (argv: string[], opts: RunOptions) => {
    process.exitCode = await vmRun(argv, opts);
  });
}

async function vmRun(argv: string[], opts: RunOptions): Promise<number> {
  if (opts.detach && argv.length === 0) throw invalidArgument("-d needs a command to run", "e.g. banger vm run -d -- my-agent");
  const env = parseEnv(opts.env);
  const timings: [string, number][] = [];
  const timed = async <T>(phase: string, fn: () => Promise<T>): Promise<T> => {
    const started = Date.now();
    try {
      return await fn();
    } finally {
      timings.push([phase, Date.now() - started]);
    }
  };
  const client = await connectOrStart(resolvePaths());
  let vmName: string | undefined;
  let hostRepo: string | undefined;
  let keepVm = opts.keep === true || opts.detach === true;
  const forwards: { close(): Promise<void> }[] = [];
  try {
    if (!opts.image) await timed("defaults", () => ensureDefaults(client, opts.yes === true));
    const created = await timed("create", () =>
      new ProgressView().track((onProgress) => client.call<VmRecord>("vm.create", { name: opts.name, image: opts.image, kernel: opts.kernel, cpus: opts.cpus, memoryMib: opts.memory, diskBytes: opts.diskSize, ...netParams(opts) }, { onProgress })),
    );
    vmName = created.name;
    const name = created.name;
    const image = await client.call<ImageRecord>("image.show", { name: created.image });
    const imageConfig = image.config as { env?: string[]; user?: string; workingDir?: string };
    // Whom commands run as (and the workspace belongs to): the daemon's rule for every command (daemon/landing.ts).
    const user = await client.call<{ user: string; uid: number; gid: number }>("vm.landing", { name });
    let cwd: string | undefined;
    if (opts.workspace !== false) {
      const ws = await timed("workspace", () => copyWorkspace(client, name, opts.workspace || process.cwd(), user));
      cwd = GUEST_WORKSPACE;
      if (ws.isRepo) hostRepo = ws.root;
    }
    if (!cwd && imageConfig.workingDir) cwd = imageConfig.workingDir;
    for (const spec of opts.publish.map(parseForwardSpec)) {
      const fw = await startForward(client, name, spec);
      forwards.push(fw);
      process.stderr.write(`forwarding ${fw.host}:${fw.port} -> ${name}:${fw.guestPort}\n`);
    }
    const imageEnv = Object.fromEntries((imageConfig.env ?? []).filter((kv) => kv.includes("=")).map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]));
    const common = { name, env: { ...imageEnv, ...env }, cwd, user: user.user };

    if (opts.detach) {
      const session = await client.call<{ name: string }>("session.start", { vm: name, argv, env: common.env, cwd, user: user.user });
      process.stdout.write(`vm ${name}, session ${session.name}\nattach: banger session attach ${name} ${session.name}\nlogs:   banger session logs ${name} ${session.name}\n`);
      return 0;
    }
    const interactive = argv.length === 0 && process.stdin.isTTY === true;
    const command = argv.length > 0 ? argv : interactive ? [] : imageCommand(image);
    let code: number;
    if (interactive) {
      code = await timed("shell", () => attachWith(client, "vm.exec", { ...common, argv: ["/bin/sh", "-c", "if command -v bash >/dev/null; then exec bash -l; else exec sh -l; fi"], env: { TERM: process.env.TERM ?? "xterm-256color", ...common.env } }, { tty: true, stdin: true }));
      if (!keepVm && cwd && (await hasGuestChanges(client, name))) {
        keepVm = true;
        process.stderr.write(`the workspace in ${name} has changes; the VM is kept so you can get them:\n  banger vm workspace export ${name} --apply   (or --out FILE)\n  banger vm rm -f ${name}                      when done\n`);
      }
    } else {
      if (command.length === 0) throw invalidArgument("no command given, stdin is not a terminal, and the image has no Entrypoint/Cmd", "pass one after --");
      code = await timed("command", () => attachWith(client, "vm.exec", { ...common, argv: command }, { tty: false, stdin: !process.stdin.isTTY }));
    }
    return code;
  } finally {
    await Promise.all(forwards.map((f) => f.close().catch(() => undefined)));
    if (vmName && !keepVm) {
      await timed("teardown", async () => {
        await client.call("vm.rm", { name: vmName, force: true });
        if (hostRepo) await (await import("../workspace/index.ts")).releaseWorkspace(hostRepo, vmName!);
      }).catch((err: unknown) => process.stderr.write(`banger: could not remove vm ${vmName}: ${inert(errorLine(err))}\n`));
    } else if (vmName && opts.keep) {
      process.stderr.write(`vm ${vmName} kept (banger vm rm -f ${vmName} when done)\n`);
    }
    client.close();
    if (opts.timings) process.stderr.write(`timings: ${timings.map(([p, ms]) => `${p} ${(ms / 1000).toFixed(2)}s`).join(", ")}\n`);
  }
}

/**
 * On a host without a default kernel or image, says what will be built, asks (on a terminal,
 * unless --yes), and builds it with progress.
 */
async function ensureDefaults(client: RpcClient, yes: boolean): Promise<void> {
  const plan = await client.call<{ steps: { what: string; name: string; how: string }[] }>("defaults.plan");
  if (plan.steps.length === 0) return;
  process.stderr.write(`banger has no default ${plan.steps.map((s) => s.what).join(" or ")} yet and will build:\n${plan.steps.map((s) => `  ${s.what} ${s.name}: ${s.how}\n`).join("")}`);
  if (!yes && process.stdin.isTTY) {
    const { createInterface } = await import("node:readline/promises");
    const rl = createInterface({ input: process.stdin, output: process.stderr });
    const answer = (await rl.question("continue? [Y/n] ")).trim().toLowerCase();
    rl.close();
    if (answer !== "" && answer !== "y" && answer !== "yes") throw invalidArgument("nothing built", "build them yourself: banger kernel import --debian; banger image build --preset busybox");
  }
  const made = await new ProgressView().track((onProgress) => client.call<{ kernel: string; image: string }>("defaults.ensure", {}, { onProgress }));
  process.stderr.write(`defaults ready: kernel ${made.kernel}, image ${made.image}\n`);
}

/** Packs the repository (or directory) and copies it to /workspace; undefined when skipped. */
async function copyWorkspace(client: RpcClient, name: string, dir: string, owner: { uid: number; gid: number }) {
  const { packWorkspace } = await import("../workspace/index.ts");
  const packed = await packWorkspace(dir, { vmName: name });
  const copied = await uploadTar(client, name, GUEST_WORKSPACE, packed.stream, owner);
  await client.call("vm.workspace.record", { name, hostRepo: packed.root, guestPath: GUEST_WORKSPACE, baseCommit: packed.baseCommit ?? undefined, copiedCommit: packed.copiedCommit ?? undefined, uid: owner.uid, gid: owner.gid });
  return { ...packed, copied };
}

/** True when the guest's workspace differs from what was copied in (as export would report). */
async function hasGuestChanges(client: RpcClient, name: string): Promise<boolean> {
  const { exportWorkspace } = await import("./workspace.ts");
  const exported = await exportWorkspace(client, name).catch(() => undefined);
  return exported !== undefined && exported.patch.length > 0;
}
