// `banger vm run`: the front door. A fresh VM, the current repository copied in, then one of
// three modes — an interactive shell, a command (its exit status becomes banger's), or a
// detached session. Afterwards (run-end.ts) the VM is removed, unless the guest changed the
// workspace (kept, or its changes exported with --export/--apply), --keep, or detached.
// Packing the workspace runs here, as the user, since it reads the user's repository.
import { stat } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import type { Readable } from "node:stream";
import { Option, type Command } from "commander";
import { resolvePaths } from "../config/index.ts";
import { connectOrStart } from "../launch/index.ts";
import { type Client, type ImageView, outBytes } from "../api/index.ts";
import type { Call } from "../rpc/index.ts";
import { invalidArgument } from "../util/errors.ts";
import { inert } from "../util/text.ts";
import { validateName } from "../util/names.ts";
import { attachWith } from "./attach.ts";
import type { InterruptSignal } from "./interrupts.ts";
import { endRun } from "./run-end.ts";
import { PROBE_LIMITS, ProbeOutput, guestMark, guestMarkAfter, unchangedSince, type GuestRun } from "./run-probe.ts";
import { ProgressView } from "./output.ts";
import { addNetOptions, netParams, parseForwardSpec, startForward } from "./net.ts";
import { Uploader, streamEvents } from "./streams.ts";
import { parseCount, parseDiskSize, parseEnv, parseMemory } from "./args.ts";
import type { WorkspacePlan } from "../workspace/index.ts";
import { planRunWorkspace } from "./workspace.ts";

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
  rm?: boolean;
  export?: string;
  apply?: boolean;
  detach?: boolean;
  workspace?: string | false;
  include?: string[];
  timings?: boolean;
  yes?: boolean;
  net?: string;
  netPeer?: boolean;
  publish: string[];
}

/**
 * Runs a command in the guest as root and collects its output, bounded (PROBE_LIMITS), for
 * the workspace probe (run-probe.ts); too much output or too long is a failure.
 */
async function execCapture(client: Client, name: string, argv: string[]): Promise<{ code: number; stdout: string }> {
  const out = new ProbeOutput(PROBE_LIMITS.maxBytes);
  const stop = new AbortController();
  const timer = setTimeout(() => stop.abort(), PROBE_LIMITS.timeoutMs);
  try {
    const status = await client.call(
      "vm.exec",
      { name, argv, user: "root", stdin: false },
      {
        signal: stop.signal,
        onEvent: (e) => {
          const data = outBytes(e);
          if (data?.fd !== 1) return;
          out.push(data.data);
          if (out.over) stop.abort();
        },
      },
    );
    return { code: "exitCode" in status ? status.exitCode : 128, stdout: out.text() };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Streams the workspace tar to the daemon, which puts it at `dest` in the guest: written into
 * the VM's workspace disk slot on the host when it has an empty one, else through the agent.
 */
async function uploadTar(
  client: Client,
  name: string,
  dest: string,
  tar: Readable,
  owner: { uid: number; gid: number },
  bytes: number,
): Promise<{ files: number; bytes: number; via: "disk" | "agent" }> {
  let uploader: Uploader | undefined;
  const call: Call<{ files: number; bytes: number; via: "disk" | "agent" }> = client.start(
    "vm.workspace.put",
    { name, dest, ...owner, bytes },
    { onEvent: (e) => streamEvents({ 1: process.stdout, 2: process.stderr }, uploader)(e) },
  );
  uploader = new Uploader(call, tar);
  uploader.start();
  return call.result;
}

/** The argv to run when none was given: the image's Entrypoint + Cmd (OCI images). */
function imageCommand(image: ImageView): string[] {
  const cfg = image.config as { entrypoint?: string[] | null; cmd?: string[] | null };
  return [...(cfg.entrypoint ?? []), ...(cfg.cmd ?? [])];
}

const RUN_EXAMPLES = `
Afterwards the VM is removed, unless the command changed the workspace: then it is kept and
banger prints what changed and how to get it (also when interrupted). Ctrl-C, SIGTERM and
SIGHUP are passed to the command; a second Ctrl-C within a second stops it (exit 130).

Examples:
  banger vm run                                   a shell in a fresh VM with this repository in /workspace
  banger vm run -- make test                      run the tests; exit with their status
  banger vm run --apply -- ./fix.sh               its changes onto a new branch banger/<vm>, VM removed
  banger vm run --export out.patch -- ./fix.sh    its changes as a patch file, VM removed
  banger vm run --rm -- ./build.sh                remove the VM whatever it changed
  banger vm run --keep --name dev                 keep the VM (banger vm rm -f dev when done)
  banger vm run -d -- ./agent.sh                  a detached session; the VM stays
`;

export function registerRun(vm: Command): void {
  const run = vm
    .command("run")
    .description("a fresh VM with this repository copied in, then a shell, a command, or a detached session (-d)")
    .argument("[command...]", "command to run in /workspace (after --); none: an interactive shell")
    .option("--image <image>", "image (default: config default_image)")
    .option("--kernel <kernel>", "kernel (default: the image's)")
    .option("--name <name>", "VM name (default: a generated adjective-noun)", (v: string) => validateName("vm", v))
    .option("--cpus <n>", "virtual CPUs (default: 1)", parseCount("--cpus", 1, 64))
    .option("--memory <size>", "memory, e.g. 512M or 2G (default: 512M)", parseMemory)
    .option("--disk-size <size>", "root disk size, e.g. 8G (default: the image's; disks grow, never shrink)", parseDiskSize("--disk-size"))
    .addOption(new Option("-e, --env <KEY=VALUE...>", "environment variables for the command").default([]))
    .option("--keep", "keep the VM afterwards")
    .option("--rm", "remove the VM afterwards even if the workspace changed (says what is discarded)")
    .option("--export <file>", "write the workspace's changes to this patch file, then remove the VM")
    .option("--apply", "apply the workspace's changes on a new branch banger/<vm> (working tree untouched), then remove the VM")
    .option("-d, --detach", "start the command as a session that outlives this CLI; the VM stays")
    .option("--workspace <dir>", "copy this directory instead of the current repository (needed outside git)")
    .option("--no-workspace", "copy nothing in")
    .option("--include <path>", "copy a secret path the workspace copy skips (.env, .ssh, ...); repeatable", (v: string, prev: string[] = []) => [...prev, v])
    .option("--timings", "print how long each phase took")
    .option("-y, --yes", "on a fresh host, build the default kernel and image without asking")
    .addOption(new Option("-p, --publish <[HOST:]PORT[:GUESTPORT]...>", "forward a loopback port into the guest for the life of the run").default([]))
    .addHelpText("after", RUN_EXAMPLES);
  addNetOptions(run).action(async (argv: string[], opts: RunOptions) => {
    process.exitCode = await vmRun(argv, opts);
  });
}

/** The flags that say how the run ends, checked before anything boots. */
async function checkEndFlags(opts: RunOptions): Promise<void> {
  if (opts.rm && (opts.keep || opts.detach || opts.export || opts.apply))
    throw invalidArgument("--rm goes with none of --keep, -d, --export, --apply", "--rm removes the VM whatever its workspace holds");
  if (opts.keep && (opts.export || opts.apply)) throw invalidArgument("--keep goes with neither --export nor --apply (they remove the VM)", "export later: banger vm workspace export NAME");
  if (opts.detach && (opts.export || opts.apply)) throw invalidArgument("-d goes with neither --export nor --apply: the command outlives this CLI", "export later: banger vm workspace export NAME");
  if (opts.workspace === false && (opts.export || opts.apply)) throw invalidArgument("--no-workspace leaves nothing to export");
  if (opts.export) {
    opts.export = resolve(opts.export);
    const dir = await stat(dirname(opts.export)).catch(() => undefined);
    if (!dir?.isDirectory()) throw invalidArgument(`--export ${inert(opts.export)}: no such directory ${inert(dirname(opts.export))}`);
  }
}

async function vmRun(argv: string[], opts: RunOptions): Promise<number> {
  if (opts.detach && argv.length === 0) throw invalidArgument("-d needs a command to run", "e.g. banger vm run -d -- my-agent");
  await checkEndFlags(opts);
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
  const plan = await timed("plan", () => planRunWorkspace(opts)); // before anything boots
  if (plan && !plan.isRepo && (opts.export || opts.apply))
    throw invalidArgument(`--export and --apply need a git repository; ${inert(plan.root)} is not one`, "--keep keeps the VM to copy files out of it");
  const client = await connectOrStart(resolvePaths());
  let vmName: string | undefined;
  let hostRepo: string | undefined;
  let copied = false;
  /** The guest's clock right after the copy (run-probe.ts: the fast "unchanged" check). */
  let mark: string | undefined;
  let ran = false;
  let interrupted: InterruptSignal | undefined;
  let failure: unknown;
  const onInterrupt = (sig: InterruptSignal) => void (interrupted ??= sig);
  let asRoot: GuestRun = async () => ({ code: 1, stdout: "" });
  const forwards: { close(): Promise<void> }[] = [];
  try {
    if (!opts.image) await timed("defaults", () => ensureDefaults(client, opts.yes === true));
    const created = await timed("create", () =>
      new ProgressView().track((onProgress) =>
        client.call(
          "vm.create",
          // A workspace goes into a disk slot the VM boots with (built on the host: much faster than the guest extracting it).
          { name: opts.name, image: opts.image, kernel: opts.kernel, cpus: opts.cpus, memoryBytes: opts.memory, diskBytes: opts.diskSize, workspaceSlot: plan !== undefined, ...netParams(opts) },
          { onProgress },
        ),
      ),
    );
    vmName = created.name;
    const name = created.name;
    asRoot = (argv) => execCapture(client, name, argv);
    // Whom commands run as (and the workspace belongs to): the daemon's rule for every command (daemon/landing.ts).
    const [image, user] = await Promise.all([client.call("image.show", { name: created.image }), client.call("vm.landing", { name })]);
    const imageConfig = image.config as { env?: string[]; user?: string; workingDir?: string };
    let cwd: string | undefined;
    if (plan) {
      const ws = await timed("workspace", () => copyWorkspace(client, name, plan, user));
      const copiedAt = Date.now();
      cwd = GUEST_WORKSPACE;
      copied = true;
      if (ws.isRepo) hostRepo = ws.root;
      mark = ws.copied.via === "disk" ? await guestMarkAfter(asRoot, copiedAt) : await guestMark(asRoot);
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
      const session = await client.call("session.start", { vm: name, argv, env: common.env, cwd, user: user.user });
      process.stdout.write(`vm ${name}, session ${session.name}\nattach: banger session attach ${name} ${session.name}\nlogs:   banger session logs ${name} ${session.name}\n`);
      return 0;
    }
    const interactive = argv.length === 0 && process.stdin.isTTY === true;
    const command = argv.length > 0 ? argv : interactive ? [] : imageCommand(image);
    if (!interactive && command.length === 0) throw invalidArgument("no command given, stdin is not a terminal, and the image has no Entrypoint/Cmd", "pass one after --");
    ran = true;
    if (interactive) {
      return await timed("shell", () =>
        attachWith(
          client,
          "vm.exec",
          { ...common, argv: ["/bin/sh", "-c", "if command -v bash >/dev/null; then exec bash -l; else exec sh -l; fi"], env: { TERM: process.env.TERM ?? "xterm-256color", ...common.env } },
          { tty: true, stdin: true, onInterrupt },
        ),
      );
    }
    return await timed("command", () => attachWith(client, "vm.exec", { ...common, argv: command }, { tty: false, stdin: !process.stdin.isTTY, onInterrupt }));
  } catch (err) {
    failure = err;
    throw err;
  } finally {
    await Promise.all(forwards.map((f) => f.close().catch(() => undefined)));
    if (vmName && !opts.detach) {
      const mode = opts.keep ? "keep" : opts.rm ? "rm" : "auto";
      await timed("teardown", () =>
        endRun({
          client,
          name: vmName!,
          mode,
          exportTo: opts.export,
          apply: opts.apply === true,
          ran,
          workspace: copied,
          hostRepo,
          interrupted,
          failure,
          unchanged: mark ? () => unchangedSince(asRoot, GUEST_WORKSPACE, mark!) : undefined,
        }),
      );
    }
    client.close();
    if (opts.timings) process.stderr.write(`timings: ${timings.map(([p, ms]) => `${p} ${(ms / 1000).toFixed(2)}s`).join(", ")}\n`);
  }
}

/**
 * On a host without a default kernel or image, says what will be built, asks (on a terminal,
 * unless --yes), and builds it with progress.
 */
async function ensureDefaults(client: Client, yes: boolean): Promise<void> {
  const plan = await client.call("defaults.plan");
  if (plan.steps.length === 0) return;
  process.stderr.write(`banger has no default ${plan.steps.map((s) => s.what).join(" or ")} yet and will build:\n${plan.steps.map((s) => `  ${s.what} ${s.name}: ${s.how}\n`).join("")}`);
  if (!yes && process.stdin.isTTY) {
    const { createInterface } = await import("node:readline/promises");
    const rl = createInterface({ input: process.stdin, output: process.stderr });
    const answer = (await rl.question("continue? [Y/n] ")).trim().toLowerCase();
    rl.close();
    if (answer !== "" && answer !== "y" && answer !== "yes") throw invalidArgument("nothing built", "build them yourself: banger kernel import --debian; banger image build --preset busybox");
  }
  const made = await new ProgressView().track((onProgress) => client.call("defaults.ensure", {}, { onProgress }));
  process.stderr.write(`defaults ready: kernel ${made.kernel}, image ${made.image}\n`);
}

/** Packs the repository (or directory) and copies it to /workspace; undefined when skipped. */
async function copyWorkspace(client: Client, name: string, plan: WorkspacePlan, owner: { uid: number; gid: number }) {
  const { startCopy } = await import("../workspace/index.ts");
  const packed = await startCopy(plan, { vmName: name });
  const copied = await uploadTar(client, name, GUEST_WORKSPACE, packed.stream, owner, packed.bytes);
  await client.call("vm.workspace.record", {
    name,
    hostRepo: packed.root,
    guestPath: GUEST_WORKSPACE,
    baseCommit: packed.baseCommit ?? undefined,
    copiedCommit: packed.copiedCommit ?? undefined,
    uid: owner.uid,
    gid: owner.gid,
  });
  return { ...packed, copied };
}
