// `banger snapshot ...` (ls, show, rm) and the VM side of snapshots: `vm snapshot`, `vm fork`,
// `vm pause`, and the checks of `vm create --from-snapshot`'s flags.
import type { Command } from "commander";
import type { ParamsOf, SnapshotView, VmView } from "../api/index.ts";
import { invalidArgument } from "../util/errors.ts";
import { humanBytes } from "../util/human.ts";
import { validateName } from "../util/names.ts";
import { parseCount } from "./args.ts";
import { callDaemon } from "./daemon-client.ts";
import { age, printFields, printJson, printTable } from "./output.ts";

/** The most children one `vm fork` makes (the daemon's limit too). */
export const MAX_FORK_COUNT = 64;

const snapName = (v: string) => validateName("snapshot", v);
const vmName = (v: string) => validateName("vm", v);

/** vm.fork's params from `--count` and repeated `--name`: names fix the count, and must agree with one given. */
export function forkParams(parent: string, opts: { count?: number; name?: string[] }): ParamsOf<"vm.fork"> {
  const names = opts.name ?? [];
  names.forEach(vmName);
  if (names.length > MAX_FORK_COUNT) throw invalidArgument(`at most ${MAX_FORK_COUNT} children per fork, not ${names.length}`);
  if (opts.count !== undefined && names.length > 0 && opts.count !== names.length) {
    throw invalidArgument(`--count ${opts.count} but ${names.length} --name given`, "give one --name per child, or only --count");
  }
  return { name: parent, ...(names.length > 0 ? { names } : { count: opts.count ?? 1 }) };
}

/** The flags `vm create` refuses beside --from-snapshot: a restored VM is the snapshot's machine. */
export function fromSnapshotConflicts(opts: Record<string, unknown>): string[] {
  const flags: [string, string][] = [
    ["image", "--image"],
    ["kernel", "--kernel"],
    ["cpus", "--cpus"],
    ["memory", "--memory"],
    ["diskSize", "--disk-size"],
    ["net", "--net"],
    ["netPeer", "--net-peer"],
  ];
  const given = flags.filter(([k]) => opts[k] !== undefined).map(([, f]) => f);
  if (opts.start === false) given.push("--no-start");
  return given;
}

/** Sizes of a snapshot's files: what they hold on disk, and guest memory as its VM had it. */
function sizeText(s: SnapshotView): string {
  return s.usedBytes === null ? "?" : humanBytes(s.usedBytes);
}

function printSnapshot(s: SnapshotView): void {
  printFields([
    ["name", s.name],
    ["taken of", s.sourceVm],
    ["image", s.image],
    ["kernel", s.kernel],
    ["vmm", s.vmm],
    ["cpus", s.cpus],
    ["memory", humanBytes(s.memoryBytes)],
    ["net", s.hasNic ? `${s.net}${s.netPeer ? " (peer)" : ""}` : "none"],
    ["on disk", sizeText(s)],
    [
      "files",
      `device state ${humanBytes(s.stateBytes)}, memory ${humanBytes(s.memoryFileBytes)} (sparse), disk ${humanBytes(s.diskBytes)}${s.workspaceDiskBytes === null ? "" : `, workspace disk ${humanBytes(s.workspaceDiskBytes)} (sparse)`}`,
    ],
    ["paused", `${s.pauseMs} ms while taken`],
    ["fork base", s.internal ? "yes (removed with its last child)" : null],
    ["vms", s.vms.length > 0 ? s.vms.join(", ") : null],
    ["created", s.createdAt],
  ]);
}

export function registerSnapshot(program: Command): void {
  const snap = program.command("snapshot").description("list, show and remove snapshots (take one with `banger vm snapshot`)");

  snap
    .command("ls")
    .alias("list")
    .description("list snapshots")
    .option("-a, --all", "fork bases too (vm fork's internal snapshots)")
    .option("--json", "print JSON")
    .action(async (opts: { all?: boolean; json?: boolean }) => {
      const list = await callDaemon("snapshot.list", { all: opts.all });
      if (opts.json) return printJson(list);
      if (list.length === 0) {
        process.stdout.write("no snapshots (take one with `banger vm snapshot VM --name NAME`)\n");
        return;
      }
      printTable(
        ["NAME", "FROM", "IMAGE", "MEMORY", "ON DISK", "PAUSED", "VMS", "AGE"],
        list.map((s) => [s.name, s.sourceVm, s.image, humanBytes(s.memoryBytes), sizeText(s), `${s.pauseMs}ms`, s.vms.length, age(s.createdAt)]),
      );
    });

  snap
    .command("show")
    .description("show one snapshot")
    .argument("<name>", "snapshot name", snapName)
    .option("--json", "print JSON")
    .action(async (name: string, opts: { json?: boolean }) => {
      const s = await callDaemon("snapshot.show", { name });
      if (opts.json) return printJson(s);
      printSnapshot(s);
    });

  snap
    .command("rm")
    .description("remove a snapshot; refused while VMs were restored from it, unless -f")
    .argument("<name...>", "snapshot names")
    .option("-f, --force", "remove it anyway: its disk copy stays until the VMs restored from it are removed")
    .option("--json", "print JSON")
    .action(async (names: string[], opts: { force?: boolean; json?: boolean }) => {
      names.forEach(snapName);
      const results = [];
      for (const name of names) {
        const r = await callDaemon("snapshot.rm", { name, force: opts.force });
        results.push(r);
        if (!opts.json) {
          const kept = r.diskKeptFor.length > 0 ? `; its disk stays for ${r.diskKeptFor.join(", ")}` : "";
          process.stdout.write(`snapshot ${r.removed} removed (${humanBytes(r.freedBytes)} freed${kept})\n`);
        }
      }
      if (opts.json) printJson(results);
    });
}

/** `vm snapshot`, `vm fork`, `vm pause` (vm.ts registers the rest). */
export function registerVmSnapshots(vm: Command): void {
  vm.command("snapshot")
    .description("save a running VM's memory, device state and disk as a snapshot; the VM keeps running (paused briefly)")
    .argument("<vm>", "VM name", vmName)
    .requiredOption("--name <snapshot>", "the snapshot's name", snapName)
    .option("--json", "print JSON")
    .action(async (name: string, opts: { name: string; json?: boolean }) => {
      const r = await callDaemon("vm.snapshot", { name, snapshot: opts.name }, { showProgress: !opts.json });
      if (opts.json) return printJson(r);
      const s = r.snapshot;
      process.stdout.write(`snapshot ${s.name} of vm ${name}: paused ${r.pauseMs} ms, ${r.totalMs} ms in all, ${sizeText(s)} on disk; restore: banger vm create --from-snapshot ${s.name}\n`);
    });

  vm.command("fork")
    .description("children of a running VM's current state (memory shared copy-on-write), restored side by side, all or none; the parent keeps running")
    .argument("<vm>", "the parent VM", vmName)
    .option("--count <n>", `how many children (default 1, at most ${MAX_FORK_COUNT})`, parseCount("--count", 1, MAX_FORK_COUNT))
    .option("--name <name>", "a child's name (repeat for several; default <vm>-1, <vm>-2, ...)", (v: string, prev: string[] = []) => [...prev, v])
    .option("--json", "print JSON")
    .action(async (parent: string, opts: { count?: number; name?: string[]; json?: boolean }) => {
      const r = await callDaemon("vm.fork", forkParams(parent, opts), { showProgress: !opts.json });
      if (opts.json) return printJson(r);
      for (const c of r.children) process.stdout.write(`vm ${c.name} ${c.state}${c.ip ? ` at ${c.ip}` : ""} (forked from ${parent})\n`);
      process.stdout.write(`${parent} paused ${r.pauseMs} ms; ${r.children.length} ${r.children.length === 1 ? "child" : "children"} in ${r.totalMs} ms\n`);
    });

  vm.command("pause")
    .description("stop a VM's CPUs, memory kept (`banger vm resume` continues it)")
    .argument("<name>", "VM name", vmName)
    .option("--json", "print JSON")
    .action(async (name: string, opts: { json?: boolean }) => {
      const v: VmView = await callDaemon("vm.pause", { name });
      if (opts.json) return printJson(v);
      process.stdout.write(`vm ${v.name} ${v.state}; continue it: banger vm resume ${v.name}\n`);
    });
}
