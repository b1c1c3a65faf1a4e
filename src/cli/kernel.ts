// `banger kernel ...`: kernels from the catalog or imported locally.
import { resolve } from "node:path";
import type { Command } from "commander";
import type { KernelRecord } from "../store/index.ts";
import { invalidArgument } from "../util/errors.ts";
import { humanBytes } from "../util/fsx.ts";
import { validateName } from "../util/names.ts";
import { callDaemon } from "./daemon-client.ts";
import { age, printFields, printJson, printTable } from "./output.ts";

const kernelName = (v: string) => validateName("kernel", v);

interface AvailableKernel {
  name: string;
  distro?: string;
  arch?: string;
  kernelVersion?: string;
  sizeBytes?: number;
  description?: string;
  state: "pulled" | "available";
}

function printKernel(k: KernelRecord): void {
  printFields([
    ["name", k.name],
    ["version", k.kernelVersion],
    ["distro", k.distro],
    ["arch", k.arch],
    ["source", k.source],
    ["vmlinux sha256", k.vmlinuxSha256],
    ["initrd", k.hasInitrd ? "yes" : "no"],
    ["modules", k.modules.length ? k.modules.join(" ") : null],
    ["size", humanBytes(k.sizeBytes)],
    ["created", k.createdAt],
  ]);
}

export function registerKernel(program: Command): void {
  const kernel = program.command("kernel").description("kernels VMs boot: pulled from the catalog or imported");

  kernel
    .command("list")
    .alias("ls")
    .description("list local kernels, or with --available the catalog")
    .option("--available", "list the catalog's kernels with a pulled/available state")
    .option("--json", "print JSON")
    .action(async (opts: { available?: boolean; json?: boolean }) => {
      if (opts.available) {
        const entries = await callDaemon<AvailableKernel[]>("kernel.catalog");
        if (opts.json) return printJson(entries);
        if (entries.length === 0) return void process.stdout.write("the kernel catalog is empty (import one: banger kernel import --debian)\n");
        printTable(
          ["NAME", "STATE", "VERSION", "DISTRO", "ARCH", "SIZE", "DESCRIPTION"],
          entries.map((e) => [e.name, e.state, e.kernelVersion, e.distro, e.arch, e.sizeBytes ? humanBytes(e.sizeBytes) : null, e.description]),
        );
        return;
      }
      const kernels = await callDaemon<KernelRecord[]>("kernel.list");
      if (opts.json) return printJson(kernels);
      if (kernels.length === 0) return void process.stdout.write("no kernels (see `banger kernel list --available`, or `banger kernel import`)\n");
      printTable(
        ["NAME", "VERSION", "DISTRO", "ARCH", "INITRD", "SIZE", "SOURCE", "AGE"],
        kernels.map((k) => [k.name, k.kernelVersion, k.distro, k.arch, k.hasInitrd ? "yes" : "no", humanBytes(k.sizeBytes), k.source, age(k.createdAt)]),
      );
    });

  kernel
    .command("pull")
    .description("download a kernel bundle from the catalog (sha256-verified)")
    .argument("<name>", "catalog entry name", kernelName)
    .option("--force", "replace a kernel of the same name")
    .option("--json", "print the result as JSON instead of progress")
    .action(async (name: string, opts: { force?: boolean; json?: boolean }) => {
      const k = await callDaemon<KernelRecord>("kernel.pull", { name, force: opts.force }, { showProgress: !opts.json });
      if (opts.json) return printJson(k);
      process.stdout.write(`kernel ${k.name} pulled (${k.kernelVersion || "version unknown"}, vmlinux sha256 ${k.vmlinuxSha256.slice(0, 12)})\n`);
    });

  kernel
    .command("import")
    .description("import a kernel: a directory (vmlinux, optional initrd.img, modules/), a linux-image-*.deb, or Debian's package via apt")
    .argument("[source]", "kernel directory or .deb file")
    .option("--name <name>", "kernel name (default with --debian: debian-<version>-<flavor>)", kernelName)
    .option("--debian", "fetch Debian's kernel package through apt")
    .option("--flavor <flavor>", "with --debian: cloud (small, for VMs) or generic", "cloud")
    .option("--deb <file>", "with --debian: use this .deb instead of fetching one")
    .option("--force", "replace a kernel of the same name")
    .option("--json", "print the result as JSON instead of progress")
    .action(async (source: string | undefined, opts: { name?: string; debian?: boolean; flavor: string; deb?: string; force?: boolean; json?: boolean }) => {
      if (source !== undefined && opts.debian) throw invalidArgument("pass either a source or --debian, not both");
      const path = source ?? opts.deb;
      // Read here, as the user, and sent to the daemon: it opens no path a caller names (kernel/upload.ts).
      const upload = path === undefined ? undefined : await (await import("../kernel/index.ts")).openKernelSource(resolve(path));
      const k = await callDaemon<KernelRecord>(
        "kernel.import",
        { upload: upload?.kind, label: upload?.label, debian: opts.debian, flavor: opts.debian ? opts.flavor : undefined, name: opts.name, force: opts.force },
        { showProgress: !opts.json, input: upload?.stream },
      );
      if (opts.json) return printJson(k);
      process.stdout.write(`kernel ${k.name} imported (${k.kernelVersion}, ${k.modules.length} modules, initrd ${k.hasInitrd ? "yes" : "no"})\n`);
    });

  kernel
    .command("show")
    .description("show one kernel")
    .argument("<name>", "kernel name", kernelName)
    .option("--json", "print JSON")
    .action(async (name: string, opts: { json?: boolean }) => {
      const k = await callDaemon<KernelRecord>("kernel.show", { name });
      if (opts.json) return printJson(k);
      printKernel(k);
    });

  kernel
    .command("rm")
    .description("remove a kernel (refused while a VM uses it)")
    .argument("<name>", "kernel name", kernelName)
    .option("--json", "print JSON")
    .action(async (name: string, opts: { json?: boolean }) => {
      const r = await callDaemon<{ removed: string }>("kernel.rm", { name });
      if (opts.json) return printJson(r);
      process.stdout.write(`kernel ${r.removed} removed\n`);
    });
}
