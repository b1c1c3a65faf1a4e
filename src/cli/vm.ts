// `banger vm ...`: VM lifecycle commands (snapshot, fork and pause: snapshot.ts).
import { Option, type Command } from "commander";
import { type ParamsOf, type VmView, outBytes } from "../api/index.ts";
import { ErrorCode, invalidArgument } from "../util/errors.ts";
import { humanBytes } from "../util/human.ts";
import { validateName } from "../util/names.ts";
import { parseSize } from "../util/size.ts";
import { attachExec } from "./attach.ts";
import { registerRun } from "./run.ts";
import { fromSnapshotConflicts, registerVmSnapshots } from "./snapshot.ts";
import { registerStats } from "./stats.ts";
import { registerWorkspace } from "./workspace.ts";
import { callDaemon } from "./daemon-client.ts";
import { addNetOptions, netParams, registerVmNet } from "./net.ts";
import { age, printFields, printJson, printTable } from "./output.ts";
import { USER_HELP, WORKDIR_HELP, parseCount, parseDiskSize, parseEnv, parseMemory } from "./args.ts";

/** The most `vm logs` asks for: the daemon refuses more. */
const MAX_LOG_TAIL = 16 * 1024 * 1024;

function parseTailBytes(v: string): number {
  const n = parseSize(v, "--bytes");
  if (n < 1 || n > MAX_LOG_TAIL) throw invalidArgument(`--bytes must be 1..16M, not ${JSON.stringify(v)}`, "or --all for everything the VM kept");
  return n;
}

const vmName = (v: string) => validateName("vm", v);

/** The state, with why when the VM got there on its own (crashed, paused, stopped by its guest). */
function stateText(v: VmView): string {
  return v.stateReason ? `${v.state}: ${v.stateReason}` : v.state;
}

function printVm(v: VmView): void {
  printFields([
    ["name", v.name],
    ["state", stateText(v)],
    ["last error", v.error],
    ["image", v.image],
    ["kernel", v.kernel],
    ["vmm", v.vmm],
    ["cpus", v.cpus],
    ["memory", humanBytes(v.memoryBytes)],
    ["disk", v.diskBytes ? humanBytes(v.diskBytes) : null],
    ["ip", v.ip],
    ["net", v.net ? `${v.net}${v.netPeer ? " (peer)" : ""}` : null],
    ["pid", v.pid],
    ["from snapshot", v.snapshot],
    ["created", v.createdAt],
    ["started", v.startedAt],
  ]);
}

/** The calls that answer with the VM they acted on. */
type VmAction = "vm.create" | "vm.start" | "vm.resume" | "vm.stop" | "vm.kill" | "vm.set";

/** Runs a call that returns a VM and prints it (or its JSON). */
async function vmAction<M extends VmAction>(method: M, params: ParamsOf<M>, json: boolean | undefined, done: (v: VmView) => string): Promise<void> {
  const v: VmView = await callDaemon<VmAction>(method, params, { showProgress: !json });
  if (json) printJson(v);
  else process.stdout.write(`${done(v)}\n`);
}

export function registerVm(program: Command): void {
  const vm = program.command("vm").description("create, run and manage microVMs");
  registerRun(vm);
  registerWorkspace(vm);
  registerVmNet(vm);
  registerVmSnapshots(vm);

  vm.command("ls")
    .alias("list")
    .description("list VMs")
    .option("--json", "print JSON")
    .action(async (opts: { json?: boolean }) => {
      const vms = await callDaemon("vm.list");
      if (opts.json) return printJson(vms);
      if (vms.length === 0) {
        process.stdout.write("no VMs (create one with `banger vm create`)\n");
        return;
      }
      printTable(
        ["NAME", "STATE", "IMAGE", "KERNEL", "VMM", "CPUS", "MEMORY", "IP", "AGE"],
        vms.map((v) => [v.name, stateText(v), v.image, v.kernel, v.vmm, v.cpus, humanBytes(v.memoryBytes), v.ip, age(v.createdAt)]),
      );
    });

  vm.command("show")
    .description("show one VM")
    .argument("<name>", "VM name", vmName)
    .option("--json", "print JSON")
    .action(async (name: string, opts: { json?: boolean }) => {
      const v = await callDaemon("vm.show", { name });
      if (opts.json) return printJson(v);
      printVm(v);
    });

  addNetOptions(vm.command("create"))
    .description("create a VM from an image and boot it (progress: disk, boot, agent), or restore one from a snapshot")
    .option("--image <image>", "image to boot (default: config default_image, else the only image)")
    .option("--kernel <kernel>", "kernel (default: the image's kernel, else config default_kernel, else the only kernel)")
    .option("--name <name>", "VM name (default: a generated adjective-noun)", vmName)
    .option("--cpus <n>", "virtual CPUs (default: 1)", parseCount("--cpus", 1, 64))
    .option("--memory <size>", "memory, e.g. 512M or 2G (default: 512M)", parseMemory)
    .option("--disk-size <size>", "root disk size, e.g. 8G (default: the image's; disks grow, never shrink)", parseDiskSize("--disk-size"))
    .option("--no-start", "create the disk and record, but do not boot")
    .option("--from-snapshot <snapshot>", "restore a snapshot: a new machine running its processes (image, size and network are the snapshot's)", (v: string) => validateName("snapshot", v))
    .option("--json", "print JSON")
    .action(
      async (opts: {
        name?: string;
        image?: string;
        kernel?: string;
        cpus?: number;
        memory?: number;
        diskSize?: number;
        start: boolean;
        json?: boolean;
        net?: string;
        netPeer?: boolean;
        fromSnapshot?: string;
      }) => {
        const started = Date.now();
        if (opts.fromSnapshot !== undefined) {
          const conflicts = fromSnapshotConflicts(opts);
          if (conflicts.length > 0) throw invalidArgument(`${conflicts.join(", ")} cannot be used with --from-snapshot: the restored VM is the snapshot's machine`, "drop them");
          return vmAction("vm.create", { name: opts.name, fromSnapshot: opts.fromSnapshot }, opts.json, (v) => {
            const ms = Date.now() - started;
            return `vm ${v.name} ${v.state}, restored from ${opts.fromSnapshot} (${ms} ms); try: banger vm exec ${v.name} -- uptime`;
          });
        }
        await vmAction(
          "vm.create",
          { name: opts.name, image: opts.image, kernel: opts.kernel, cpus: opts.cpus, memoryBytes: opts.memory, diskBytes: opts.diskSize, noStart: !opts.start, ...netParams(opts) },
          opts.json,
          (v) => {
            const secs = ((Date.now() - started) / 1000).toFixed(1);
            const pooled = "fromPool" in v && v.fromPool ? `, from the ${v.image} pool` : "";
            if (opts.start) return `vm ${v.name} ${v.state} (${secs}s${pooled}); try: banger vm exec ${v.name} -- uname -a`;
            return `vm ${v.name} created, not started (${secs}s); start it: banger vm start ${v.name}`;
          },
        );
      },
    );

  vm.command("start")
    .description("boot a stopped VM")
    .argument("<name>", "VM name", vmName)
    .option("--json", "print JSON")
    .action((name: string, opts: { json?: boolean }) => vmAction("vm.start", { name }, opts.json, (v) => `vm ${v.name} ${v.state}`));

  vm.command("resume")
    .description("continue a paused VM (`vm pause`, or its VMM on a full host disk: free space first)")
    .argument("<name>", "VM name", vmName)
    .option("--json", "print JSON")
    .action((name: string, opts: { json?: boolean }) => vmAction("vm.resume", { name }, opts.json, (v) => `vm ${v.name} ${v.state}`));

  vm.command("stop")
    .description("power a VM off cleanly (the guest is asked first, then the VMM)")
    .argument("<name>", "VM name", vmName)
    .option("--timeout <seconds>", "how long the guest gets to power off", parseCount("--timeout", 0, 600))
    .option("--json", "print JSON")
    .action((name: string, opts: { timeout?: number; json?: boolean }) =>
      vmAction("vm.stop", { name, timeoutMs: opts.timeout === undefined ? undefined : opts.timeout * 1000 }, opts.json, (v) => `vm ${v.name} stopped`),
    );

  vm.command("kill")
    .description("stop a VM at once (like pulling the power cord)")
    .argument("<name>", "VM name", vmName)
    .option("--json", "print JSON")
    .action((name: string, opts: { json?: boolean }) => vmAction("vm.kill", { name }, opts.json, (v) => `vm ${v.name} killed`));

  vm.command("rm")
    .description("remove a stopped or crashed VM and its disk")
    .argument("<name...>", "VM names")
    .option("-f, --force", "stop running or paused VMs first")
    .option("--json", "print JSON")
    .action(async (names: string[], opts: { force?: boolean; json?: boolean }) => {
      names.forEach(vmName);
      const removed: string[] = [];
      for (const name of names) {
        const ws = await callDaemon("vm.workspace.info", { name }).catch(() => undefined);
        await callDaemon("vm.rm", { name, force: opts.force });
        // The copied commit was kept alive for export; nothing needs it now.
        if (ws) await (await import("../workspace/index.ts")).releaseWorkspace(ws.hostRepo, name).catch(() => undefined);
        removed.push(name);
        if (!opts.json) process.stdout.write(`vm ${name} removed\n`);
      }
      if (opts.json) printJson({ removed });
    });

  vm.command("set")
    .description("change CPUs or memory of a stopped VM")
    .argument("<name>", "VM name", vmName)
    .option("--cpus <n>", "virtual CPUs", parseCount("--cpus", 1, 64))
    .option("--memory <size>", "memory, e.g. 512M or 2G", parseMemory)
    .option("--json", "print JSON")
    .action((name: string, opts: { cpus?: number; memory?: number; json?: boolean }) =>
      vmAction("vm.set", { name, cpus: opts.cpus, memoryBytes: opts.memory }, opts.json, (v) => `vm ${v.name}: ${v.cpus} cpu, ${humanBytes(v.memoryBytes)}`),
    );

  vm.command("logs")
    .description("print the end of the VM's serial console (the guest's own bytes, unfiltered; the VM keeps the last 1-2 MiB)")
    .argument("<name>", "VM name", vmName)
    .option("-f, --follow", "keep printing new output (Ctrl-C to stop)")
    .addOption(new Option("--bytes <size>", "how much of the end to print, e.g. 64K, 2M (at most 16M)").argParser(parseTailBytes).default(64 * 1024, "64K"))
    .option("--all", "print everything the VM kept (same as --bytes 16M)")
    .action(async (name: string, opts: { follow?: boolean; bytes: number; all?: boolean }) => {
      await callDaemon(
        "vm.logs",
        { name, follow: opts.follow ?? false, bytes: opts.all ? MAX_LOG_TAIL : opts.bytes },
        {
          onEvent: (e) => {
            const out = outBytes(e);
            if (out) process.stdout.write(out.data);
          },
        },
      ).catch((err: unknown) => {
        // Ctrl-C is how --follow ends.
        if (!(opts.follow && (err as { code?: number }).code === ErrorCode.Cancelled)) throw err;
      });
    });

  registerStats(vm);

  vm.command("exec")
    .description("run a command in a running VM; its exit status becomes banger's")
    .argument("<name>", "VM name", vmName)
    .argument("<command...>", "the command and its arguments (after --)")
    .option("-t, --tty", "run it under a terminal")
    .option("-i, --interactive", "forward stdin even when it is a terminal")
    .addOption(new Option("-e, --env <KEY=VALUE...>", "environment variables").default([]))
    .option("-w, --workdir <dir>", WORKDIR_HELP)
    .option("-u, --user <user>", USER_HELP)
    .action(async (name: string, argv: string[], opts: { tty?: boolean; interactive?: boolean; env: string[]; workdir?: string; user?: string }) => {
      const env = parseEnv(opts.env);
      const forwardStdin = opts.interactive === true || opts.tty === true || !process.stdin.isTTY;
      process.exitCode = await attachExec("vm.exec", { name, argv, env, cwd: opts.workdir, user: opts.user }, { tty: opts.tty === true, stdin: forwardStdin });
    });

  vm.command("shell")
    .description("an interactive login shell in a running VM, as and where `vm run` would start one")
    .argument("<name>", "VM name", vmName)
    .option("-u, --user <user>", USER_HELP)
    .option("-w, --workdir <dir>", WORKDIR_HELP)
    .action(async (name: string, opts: { user?: string; workdir?: string }) => {
      const argv = ["/bin/sh", "-c", "if command -v bash >/dev/null; then exec bash -l; else exec sh -l; fi"];
      process.exitCode = await attachExec("vm.exec", { name, argv, user: opts.user, cwd: opts.workdir, env: { TERM: process.env.TERM ?? "xterm-256color" } }, { tty: true, stdin: true });
    });
}
