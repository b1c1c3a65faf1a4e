// `banger kernel ...`: kernels from the catalog or imported locally.
import { resolve } from "node:path";
import type { Command } from "commander";
import type { KernelView } from "../api/index.ts";
import { invalidArgument } from "../util/errors.ts";
import { humanBytes } from "../util/human.ts";
import { validateName } from "../util/names.ts";
import { callDaemon } from "./daemon-client.ts";
import { age, printFields, printJson, printTable } from "./output.ts";

const kernelName = (v: string) => validateName("kernel", v);

function printKernel(k: KernelView): void {
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

/** Says once, on stderr, that the kernel or image just installed became the configured default. */
export function noteBecameDefault(kind: "kernel" | "image", name: string, r: { becameDefault?: boolean }): void {
  if (r.becameDefault) process.stderr.write(`${kind} ${name} is now the default (banger config set default_${kind} NAME to change it)\n`);
}

/** `kernel rm` / `image rm`: what was removed, and on stderr what a forced removal broke. */
export function reportRemoval(kind: "kernel" | "image", r: { removed: string; broken?: string[] }): void {
  process.stdout.write(`${kind} ${r.removed} removed\n`);
  const broken = r.broken ?? [];
  if (broken.length === 0) return;
  const keys = broken.filter((b) => b.startsWith("default_"));
  const images = broken.filter((b) => b.startsWith("image "));
  const lines = [
    ...(images.length ? [`${images.join(", ")} named it: VMs from them need --kernel NAME (or the kernel back under this name)`] : []),
    ...keys.map((k) => `${k} named it and is now unset (banger config set ${k} NAME)`),
  ];
  process.stderr.write(lines.map((l) => `banger: ${l}\n`).join(""));
}

export function registerKernel(program: Command): void {
  const kernel = program
    .command("kernel")
    .description("kernels VMs boot: pulled from the catalog or imported")
    .addHelpText(
      "after",
      `
The first kernel pulled or imported while default_kernel is unset becomes the default; with
exactly one kernel and none configured, that one is used.

Examples:
  banger kernel import --debian              Debian's cloud kernel through apt (debian-<version>-cloud)
  banger kernel import ./linux-image-6.1.0-27-cloud-amd64.deb --name deb61
  banger kernel import ./kdir --name mine    a directory with vmlinux (initrd.img, modules/ optional)
  banger kernel list --available             the catalog, with what is pulled
  banger config set default_kernel mine      the kernel used when an image or VM names none
  banger kernel rm mine                      refused while a VM, an image or default_kernel uses it
  banger kernel rm -f mine                   removes it anyway (not while a VM uses it) and says what broke
`,
    );

  kernel
    .command("list")
    .alias("ls")
    .description("list local kernels, or with --available the catalog")
    .option("--available", "list the catalog's kernels with a pulled/available state")
    .option("--json", "print JSON")
    .action(async (opts: { available?: boolean; json?: boolean }) => {
      if (opts.available) {
        const entries = await callDaemon("kernel.catalog");
        if (opts.json) return printJson(entries);
        if (entries.length === 0) return void process.stdout.write("the kernel catalog is empty (import one: banger kernel import --debian)\n");
        printTable(
          ["NAME", "STATE", "VERSION", "DISTRO", "ARCH", "SIZE", "DESCRIPTION"],
          entries.map((e) => [e.name, e.state, e.kernelVersion, e.distro, e.arch, e.sizeBytes ? humanBytes(e.sizeBytes) : null, e.description]),
        );
        return;
      }
      const kernels = await callDaemon("kernel.list");
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
      const k = await callDaemon("kernel.pull", { name, force: opts.force }, { showProgress: !opts.json });
      noteBecameDefault("kernel", k.name, k);
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
      const k = await callDaemon(
        "kernel.import",
        { upload: upload?.kind, label: upload?.label, debian: opts.debian, flavor: opts.debian ? opts.flavor : undefined, name: opts.name, force: opts.force },
        { showProgress: !opts.json, input: upload?.stream },
      );
      noteBecameDefault("kernel", k.name, k);
      if (opts.json) return printJson(k);
      process.stdout.write(`kernel ${k.name} imported (${k.kernelVersion}, ${k.modules.length} modules, initrd ${k.hasInitrd ? "yes" : "no"})\n`);
    });

  kernel
    .command("show")
    .description("show one kernel")
    .argument("<name>", "kernel name", kernelName)
    .option("--json", "print JSON")
    .action(async (name: string, opts: { json?: boolean }) => {
      const k = await callDaemon("kernel.show", { name });
      if (opts.json) return printJson(k);
      printKernel(k);
    });

  kernel
    .command("rm")
    .description("remove a kernel (refused while a VM, an image or default_kernel uses it)")
    .argument("<name>", "kernel name", kernelName)
    .option("-f, --force", "remove it even while images or default_kernel use it, and say what that breaks (never while a VM does)")
    .option("--json", "print JSON")
    .action(async (name: string, opts: { force?: boolean; json?: boolean }) => {
      const r = await callDaemon("kernel.rm", { name, force: opts.force });
      if (opts.json) return printJson(r);
      reportRemoval("kernel", r);
    });
}
