// make-bundle: a rootfs tar (or a kernel directory) -> a catalog `.tar.zst` bundle.
// Image bundles hold exactly `rootfs.ext4` and `manifest.json`; kernel bundles hold `vmlinux`,
// optionally `initrd.img`, and optionally a `modules/` tree (issue 3's bundle formats).
import { createReadStream } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { invalidArgument, throwIfAborted } from "../util/errors.ts";
import { sha256File } from "../util/hash.ts";
import { validateName } from "../util/names.ts";
import { noProgress, type Progress } from "../util/progress.ts";
import { agentBinary, type AgentArch } from "../guest/index.ts";
import { injectAgent } from "./agent.ts";
import { buildExt4 } from "./ext4.ts";
import { extractRootfsTar } from "./extract.ts";
import { makeTarZst, type PackedBundle } from "../bundle/index.ts";

export const IMAGE_MANIFEST_VERSION = 1;

/** manifest.json inside an image bundle. */
export interface ImageManifest {
  manifest_version: number;
  name: string;
  /** Omitted when empty (catalog readers reject empty text fields). */
  distro?: string;
  arch: AgentArch;
  kernel_ref: string;
  description?: string;
  rootfs_size_bytes: number;
  rootfs_sha256: string;
}

export interface MakeBundleOptions {
  /** An uncompressed rootfs tar: a path, or an open stream (stdin for `--rootfs-tar -`). */
  rootfsTar: string | Readable;
  name: string;
  distro: string;
  arch: AgentArch;
  kernelRef: string;
  description: string;
  /** Exact rootfs.ext4 size; default content + headroom. */
  sizeBytes?: number;
  outDir: string;
  /** Defaults to the built agent for arch (guest.agentBinary). */
  agentPath?: string;
  signal?: AbortSignal;
  progress?: Progress;
}

export interface MadeBundle extends PackedBundle {
  manifest: ImageManifest;
}

/** Builds `<outDir>/<name>.tar.zst`; nothing is left in outDir on failure. */
export async function makeBundle(opts: MakeBundleOptions): Promise<MadeBundle> {
  validateName("image", opts.name);
  checkArch(opts.arch);
  if (opts.kernelRef !== "") validateName("kernel", opts.kernelRef);
  const progress = opts.progress ?? noProgress;
  await mkdir(opts.outDir, { recursive: true });
  const work = await mkdtemp(join(opts.outDir, `.make-bundle-${opts.name}-`));
  try {
    const input = typeof opts.rootfsTar === "string" ? createReadStream(opts.rootfsTar) : opts.rootfsTar;
    progress({ phase: "extract" });
    const tree = await extractRootfsTar(input, join(work, "tree"), { signal: opts.signal, progress });
    await injectAgent(tree, { agentPath: opts.agentPath ?? agentBinary(opts.arch) });
    const image = join(work, "rootfs.ext4");
    const built = await buildExt4(tree, image, { sizeBytes: opts.sizeBytes, label: opts.name.slice(0, 16), signal: opts.signal, progress });
    await rm(tree.dir, { recursive: true, force: true });
    progress({ phase: "checksum" });
    const manifest: ImageManifest = {
      manifest_version: IMAGE_MANIFEST_VERSION,
      name: opts.name,
      ...(opts.distro ? { distro: opts.distro } : {}),
      arch: opts.arch,
      kernel_ref: opts.kernelRef,
      ...(opts.description ? { description: opts.description } : {}),
      rootfs_size_bytes: built.sizeBytes,
      rootfs_sha256: (await sha256File(image)).sha256,
    };
    await writeFile(join(work, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);
    progress({ phase: "compress" });
    throwIfAborted(opts.signal);
    const bundle = await makeTarZst(work, ["manifest.json", "rootfs.ext4"], join(opts.outDir, `${opts.name}.tar.zst`));
    return { ...bundle, manifest };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

export interface MakeKernelBundleOptions {
  name: string;
  outDir: string;
}

export interface MadeKernelBundle extends PackedBundle {
  /** From the directory's manifest.json when it has one (as `kernel import` writes). */
  kernelVersion?: string;
}

/** Bundles a kernel directory (vmlinux, optional initrd.img and modules/) as `<outDir>/<name>.tar.zst`. */
export async function makeKernelBundle(kernelDir: string, opts: MakeKernelBundleOptions): Promise<MadeKernelBundle> {
  validateName("kernel", opts.name);
  const isFile = async (p: string) => (await stat(join(kernelDir, p)).catch(() => undefined))?.isFile() ?? false;
  if (!(await isFile("vmlinux"))) throw invalidArgument(`${kernelDir} has no vmlinux`, "pass a directory made by `banger kernel import`");
  const members = ["vmlinux"];
  if (await isFile("initrd.img")) members.push("initrd.img");
  if ((await stat(join(kernelDir, "modules")).catch(() => undefined))?.isDirectory()) members.push("modules");
  await mkdir(opts.outDir, { recursive: true });
  const bundle = await makeTarZst(kernelDir, members, join(opts.outDir, `${opts.name}.tar.zst`));
  const kernelVersion = await readKernelVersion(kernelDir);
  return kernelVersion ? { ...bundle, kernelVersion } : bundle;
}

async function readKernelVersion(dir: string): Promise<string | undefined> {
  const text = await readFile(join(dir, "manifest.json"), "utf8").catch(() => undefined);
  if (!text) return undefined;
  try {
    const v = (JSON.parse(text) as { kernel_version?: unknown }).kernel_version;
    return typeof v === "string" ? v : undefined;
  } catch {
    return undefined; // a hand-made directory's manifest is optional metadata
  }
}

function checkArch(arch: string): asserts arch is AgentArch {
  if (arch !== "amd64" && arch !== "arm64") throw invalidArgument(`unsupported arch ${JSON.stringify(arch)}`, "use amd64 or arm64");
}
