// `banger internal ...`: tools for publishing bundles. They run in this process (no daemon)
// and are loaded only when used, so everyday commands stay quick to start.
import { resolve } from "node:path";
import type { Command } from "commander";
import { humanBytes } from "../util/human.ts";
import { type Arch, parseArch } from "../util/arch.ts";
import type { Progress } from "../util/progress.ts";
import { validateName } from "../util/names.ts";
import { parseSize } from "../util/size.ts";
import { printJson, ProgressView } from "./output.ts";

export function registerInternal(program: Command): void {
  const internal = program.command("internal").description("tools for making and publishing bundles");

  internal
    .command("make-bundle")
    .description("make an image bundle (.tar.zst: rootfs.ext4 + manifest.json) from a `docker export`-style tar")
    .requiredOption("--rootfs-tar <file>", "uncompressed rootfs tar, or - for stdin")
    .requiredOption("--name <name>", "image name", (v: string) => validateName("image", v))
    .requiredOption("--kernel-ref <kernel>", "kernel the image boots with", (v: string) => validateName("kernel", v))
    .option("--distro <distro>", "distribution name", "")
    .option("--arch <arch>", "amd64 or arm64 (x86_64, aarch64 accepted)", (v: string) => parseArch(v), "amd64")
    .option("--description <text>", "one line for the catalog", "")
    .option("--size <size>", "rootfs.ext4 size, e.g. 1G (default: content + headroom)", (v: string) => parseSize(v, "--size"))
    .requiredOption("--out <dir>", "directory to write the bundle to")
    .option("--json", "print JSON")
    .action(async (opts: { rootfsTar: string; name: string; kernelRef: string; distro: string; arch: Arch; description: string; size?: number; out: string; json?: boolean }) => {
      const arch = opts.arch;
      const { makeBundle } = await import("../rootfs/index.ts");
      const make = (progress?: Progress) =>
        makeBundle({
          rootfsTar: opts.rootfsTar === "-" ? process.stdin : resolve(opts.rootfsTar),
          name: opts.name,
          distro: opts.distro,
          arch,
          kernelRef: opts.kernelRef,
          description: opts.description,
          sizeBytes: opts.size,
          outDir: resolve(opts.out),
          progress,
        });
      const made = await (opts.json ? make() : new ProgressView().track(make));
      if (opts.json) return printJson({ path: made.path, sha256: made.sha256, sizeBytes: made.sizeBytes });
      process.stdout.write(`bundle: ${made.path}\nsha256: ${made.sha256}\nsize:   ${made.sizeBytes} (${humanBytes(made.sizeBytes)})\n`);
    });

  internal
    .command("make-kernel-bundle")
    .description("make a kernel bundle (.tar.zst: vmlinux, optional initrd.img and modules/) from a kernel directory")
    .argument("<dir>", "kernel directory (e.g. <root>/kernels/<name>)")
    .requiredOption("--name <name>", "kernel name", (v: string) => validateName("kernel", v))
    .requiredOption("--out <dir>", "directory to write the bundle to")
    .option("--json", "print JSON")
    .action(async (dir: string, opts: { name: string; out: string; json?: boolean }) => {
      const { makeKernelBundle } = await import("../rootfs/index.ts");
      const made = await makeKernelBundle(resolve(dir), { name: opts.name, outDir: resolve(opts.out) });
      if (opts.json) return printJson({ path: made.path, sha256: made.sha256, sizeBytes: made.sizeBytes, kernelVersion: made.kernelVersion });
      process.stdout.write(`bundle: ${made.path}\nsha256: ${made.sha256}\nsize:   ${made.sizeBytes} (${humanBytes(made.sizeBytes)})\n`);
    });
}
