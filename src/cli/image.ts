// `banger image ...`: root disk images from the catalog or any OCI registry.
import type { Command } from "commander";
import type { ImageView, PullResult } from "../api/index.ts";
import { humanBytes } from "../util/human.ts";
import { validateName } from "../util/names.ts";
import { callDaemon } from "./daemon-client.ts";
import { inert } from "../util/text.ts";
import { age, printFields, printJson, printTable } from "./output.ts";
import { parseDiskSize } from "./args.ts";
import { noteBecameDefault, reportRemoval } from "./kernel.ts";

const imageName = (v: string) => validateName("image", v);
const kernelName = (v: string) => validateName("kernel", v);

/** "81 MiB used, 1.0 GiB virtual". */
const sizeText = (i: ImageView) => `${i.usedBytes === null ? "?" : humanBytes(i.usedBytes)} used, ${humanBytes(i.sizeBytes)} virtual`;

function printPull(r: PullResult): void {
  const i = r.image;
  if (r.unchanged) {
    process.stdout.write(`image ${i.name} is up to date (${inert(i.digest)}); nothing to do\n`);
    return;
  }
  const fields: [string, unknown][] = [
    ["image", i.name],
    ["via", r.via === "oci" ? `OCI registry (${i.source.replace(/^oci:/, "")})` : "catalog bundle"],
  ];
  if (r.details.digest) fields.push(["digest", r.details.digest]);
  if (r.details.platform) fields.push(["platform", r.details.platform]);
  if (r.details.layers) fields.push(["layers", `${r.details.layers.length} (${humanBytes(r.details.compressedBytes ?? 0)} compressed, ${humanBytes(r.details.downloadedBytes ?? 0)} downloaded)`]);
  fields.push(["kernel", i.kernelRef], ["rootfs", sizeText(i)], ["time", `${r.seconds.toFixed(1)}s`]);
  printFields(fields);
}

export function registerImage(program: Command): void {
  const image = program.command("image").description("root disk images: from the catalog or any OCI registry");

  image
    .command("list")
    .alias("ls")
    .description("list local images, or with --available the catalog")
    .option("--available", "list the catalog's images with a pulled/available state")
    .option("--json", "print JSON")
    .action(async (opts: { available?: boolean; json?: boolean }) => {
      if (opts.available) {
        const entries = await callDaemon("image.catalog");
        if (opts.json) return printJson(entries);
        if (entries.length === 0) return void process.stdout.write("the image catalog is empty (pull any OCI image: banger image pull alpine)\n");
        printTable(
          ["NAME", "STATE", "DISTRO", "ARCH", "KERNEL", "SIZE", "DESCRIPTION"],
          entries.map((e) => [e.name, e.state, e.distro, e.arch, e.kernelRef, e.sizeBytes ? humanBytes(e.sizeBytes) : null, e.description]),
        );
        return;
      }
      const images = await callDaemon("image.list");
      if (opts.json) return printJson(images);
      if (images.length === 0) return void process.stdout.write("no images (pull one: banger image pull <name|oci-ref>)\n");
      printTable(
        ["NAME", "KERNEL", "ARCH", "USED", "VIRTUAL", "SOURCE", "AGE"],
        images.map((i) => [i.name, i.kernelRef, i.arch, i.usedBytes === null ? null : humanBytes(i.usedBytes), humanBytes(i.sizeBytes), i.source, age(i.createdAt)]),
      );
    });

  image
    .command("pull")
    .description("pull an image: a catalog entry by name, else any OCI ref (alpine, ghcr.io/o/r:tag, localhost:5000/x@sha256:...)")
    .argument("<ref>", "catalog name or OCI reference")
    .option("--name <name>", "store it under this name", imageName)
    .option("--kernel-ref <kernel>", "kernel to boot it with (overrides the catalog's)", kernelName)
    .option("--kernel <kernel>", "kernel when the catalog entry names none", kernelName)
    .option("--platform <os/arch[/variant]>", "platform to pick from a multi-arch image (default: this host's)")
    .option("--size <size>", "root disk size for OCI images, e.g. 2G (default: content + headroom)", parseDiskSize("--size"))
    .option("--force", "replace an image of the same name")
    .option("--json", "print the result as JSON instead of progress")
    .action(async (ref: string, opts: { name?: string; kernelRef?: string; kernel?: string; platform?: string; size?: number; force?: boolean; json?: boolean }) => {
      const r = await callDaemon(
        "image.pull",
        { ref, name: opts.name, kernelRef: opts.kernelRef, kernel: opts.kernel, platform: opts.platform, sizeBytes: opts.size, force: opts.force },
        { showProgress: !opts.json },
      );
      noteBecameDefault("image", r.image.name, r);
      if (opts.json) return printJson(r);
      printPull(r);
    });

  image
    .command("build")
    .description("build one of banger's own images from Debian packages: busybox (seconds), debian or debian-dev (debootstrap, a minute or more)")
    .requiredOption("--preset <preset>", "busybox, debian or debian-dev")
    .option("--name <name>", "image name (default: the preset's name)", imageName)
    .option("--kernel-ref <kernel>", "kernel to boot it with (default: config default_kernel, else the only kernel)", kernelName)
    .option("--size <size>", "root disk size, e.g. 1G (default: content + headroom)", parseDiskSize("--size"))
    .option("--force", "replace an image of the same name")
    .option("--json", "print the result as JSON instead of progress")
    .action(async (opts: { preset: string; name?: string; kernelRef?: string; size?: number; force?: boolean; json?: boolean }) => {
      const started = Date.now();
      const i = await callDaemon("image.build", { preset: opts.preset, name: opts.name, kernelRef: opts.kernelRef, sizeBytes: opts.size, force: opts.force }, { showProgress: !opts.json });
      noteBecameDefault("image", i.name, i);
      if (opts.json) return printJson(i);
      process.stdout.write(`image ${i.name} built from preset ${opts.preset} (${sizeText(i)}, kernel ${i.kernelRef}, ${((Date.now() - started) / 1000).toFixed(1)}s)\n`);
    });

  image
    .command("show")
    .description("show one image")
    .argument("<name>", "image name", imageName)
    .option("--json", "print JSON")
    .action(async (name: string, opts: { json?: boolean }) => {
      const i = await callDaemon("image.show", { name });
      if (opts.json) return printJson(i);
      printFields([
        ["name", i.name],
        ["source", i.source],
        ["digest", i.digest],
        ["kernel", i.kernelRef],
        ["distro", i.distro],
        ["arch", i.arch],
        ["size", sizeText(i)],
        ["config", Object.keys(i.config).length ? i.config : null],
        ["created", i.createdAt],
      ]);
    });

  image
    .command("rm")
    .description("remove an image (refused while a VM or default_image uses it)")
    .argument("<name>", "image name", imageName)
    .option("-f, --force", "remove it even while it is default_image, which is then unset (never while a VM uses it)")
    .option("--json", "print JSON")
    .action(async (name: string, opts: { force?: boolean; json?: boolean }) => {
      const r = await callDaemon("image.rm", { name, force: opts.force });
      if (opts.json) return printJson(r);
      reportRemoval("image", r);
    });
}
