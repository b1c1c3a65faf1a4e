// Kernel operations: list (local, and the catalog with what is pulled), pull from the
// catalog, import from a directory or a Debian kernel package, show, rm. The files are made
// by kernelcat (pull) and kernel (import); this file records them in the store.
import { mkdir, mkdtemp, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import type { AvailableKernel, Removed } from "../api/index.ts";
import { catalogEntryView } from "../bundle/index.ts";
import { catalogOverride, kernelDir } from "../config/index.ts";
import * as kernelcat from "../kernelcat/index.ts";
import { fetchDebianKernelDeb, importKernel as importKernelFiles, receiveKernelUpload, removeBootInitramfs, type DebianFlavor, type KernelUploadKind } from "../kernel/index.ts";
import type { KernelRecord } from "../store/index.ts";
import { hostArch } from "../util/arch.ts";
import { BangerError, ErrorCode, invalidArgument, notFound } from "../util/errors.ts";
import { KERNEL_UPLOAD_PREFIX } from "../util/scratch.ts";
import { validateName } from "../util/names.ts";
import type { CallEnv, DaemonContext } from "./context.ts";
import { recordOperation } from "./operations.ts";
import { buildAside, checkReplaceable, refuseIfUsed } from "./replace.ts";
import { adoptFirstDefault, dropDefault } from "./default-choice.ts";

export function getKernel(ctx: DaemonContext, name: string): KernelRecord {
  validateName("kernel", name);
  const k = ctx.store.getKernel(name);
  if (!k) throw notFound(`kernel ${name}`, "see `banger kernel list --available`");
  return k;
}

export async function kernelCatalog(ctx: DaemonContext, signal: AbortSignal): Promise<AvailableKernel[]> {
  const catalog = await kernelcat.loadCatalog(catalogOverride("kernel", ctx.config()), signal);
  return catalog.entries.map((e) => ({ ...catalogEntryView(e), kernelVersion: e.kernel_version, state: ctx.store.getKernel(e.name) ? "pulled" : "available" }));
}

/**
 * A kernel just pulled or imported, as the daemon keeps it: the store row (api's
 * InstalledKernel is its view, made in methods-images.ts); `becameDefault` when it is the
 * first and now the configured default.
 */
export type InstalledKernelRecord = KernelRecord & { becameDefault?: true };

function installedKernel(ctx: DaemonContext, name: string): InstalledKernelRecord {
  const k = getKernel(ctx, name);
  return adoptFirstDefault(ctx, "kernel", name) ? { ...k, becameDefault: true } : k;
}

const KERNEL_EXISTS_HINT = "use --force to replace it";

export function pullKernel(ctx: DaemonContext, name: string, force: boolean, call: CallEnv): Promise<InstalledKernelRecord> {
  validateName("kernel", name);
  return ctx.locks.run(`kernel:${name}`, () =>
    recordOperation(ctx, "kernel.pull", name, async () => {
      const catalog = await kernelcat.loadCatalog(catalogOverride("kernel", ctx.config()), call.signal);
      const entry = kernelcat.lookup(catalog, name);
      if (!entry) throw notFound(`kernel ${name} in the catalog`, "see `banger kernel list --available`, or `banger kernel import`");
      await checkReplaceable(ctx, "kernel", name, force, KERNEL_EXISTS_HINT);
      await buildAside(ctx, "kernel", name, async (staging) => {
        const m = await kernelcat.pullKernelBundle(entry, { kernelsDir: staging, cacheDir: ctx.paths.cacheDir, tmpDir: ctx.paths.tmpDir, signal: call.signal, progress: call.progress });
        const row = {
          name,
          source: m.source,
          kernelVersion: m.kernel_version,
          distro: m.distro ?? "",
          arch: m.arch ?? "amd64",
          vmlinuxSha256: m.vmlinux_sha256,
          hasInitrd: m.has_initrd,
          modules: [],
          sizeBytes: await vmlinuxSize(staging, name),
        };
        return { result: undefined, row };
      });
      return installedKernel(ctx, name);
    }),
  );
}

/** Images that boot `name` and the config key naming it: what a removal breaks. VMs are refuseIfUsed's. */
function kernelDependents(ctx: DaemonContext, name: string): string[] {
  const images = ctx.store
    .listImages()
    .filter((i) => i.kernelRef === name)
    .map((i) => `image ${i.name}`);
  return ctx.config().default_kernel === name ? [...images, "default_kernel"] : images;
}

export function removeKernel(ctx: DaemonContext, name: string, force = false): Promise<Removed> {
  validateName("kernel", name);
  return ctx.locks.run(`kernel:${name}`, async () => {
    getKernel(ctx, name);
    refuseIfUsed(ctx, "kernel", name, "remove");
    const broken = kernelDependents(ctx, name);
    if (broken.length > 0 && !force) {
      throw new BangerError(ErrorCode.InUse, `cannot remove kernel ${name}: used by ${broken.join(", ")}`, `\`banger kernel rm --force ${name}\` removes it anyway`);
    }
    // Record first, files second: a crash in between leaves files without a record,
    // which the next pull or import of that name clears.
    ctx.store.deleteKernel(name);
    dropDefault(ctx, "kernel", name);
    await rm(kernelDir(ctx.paths, name), { recursive: true, force: true });
    await removeBootInitramfs(ctx.paths.initrdCacheDir, name);
    return { removed: name, broken };
  });
}

/** The files of a `kernel import DIR|FILE.deb`, sent by the caller as the call's input (kernel/upload.ts). */
export interface KernelUpload {
  kind: KernelUploadKind;
  /** The path the caller read them from: for messages, the manifest and --debian's name. */
  label: string;
  input: Readable;
}

export interface ImportParams {
  /** A kernel directory or .deb the caller read and sends; never a host path the daemon opens. */
  upload?: KernelUpload;
  /** Debian's kernel package: fetched through apt, or the uploaded .deb named like one. */
  debian?: boolean;
  flavor?: DebianFlavor;
  name?: string;
  force?: boolean;
}

/** `debian-6.1-cloud` from `linux-image-6.1.0-27-cloud-amd64_6.1.115-1_amd64.deb`. */
export function debianKernelName(debPath: string, flavor: DebianFlavor): string {
  const m = /linux-image-(\d+\.\d+)/.exec(debPath.split("/").pop() ?? "");
  return `debian-${m?.[1] ?? "kernel"}-${flavor}`;
}

export async function importKernel(ctx: DaemonContext, p: ImportParams, call: CallEnv): Promise<InstalledKernelRecord> {
  if (p.name !== undefined) validateName("kernel", p.name);
  if (!p.debian && !p.upload) throw invalidArgument("nothing to import", "pass a kernel directory or .deb, or --debian");
  if (p.debian && p.upload && p.upload.kind !== "deb") throw invalidArgument("pass either a kernel directory or --debian, not both");
  const flavor = p.flavor ?? "cloud";
  const fetched = p.debian && !p.upload ? await fetchDebianDeb(ctx, flavor, call) : undefined;
  const name = p.name ?? (p.debian ? debianKernelName(p.upload?.label ?? fetched!, flavor) : undefined);
  if (!name) throw invalidArgument("--name is required when importing a directory or .deb");
  return ctx.locks.run(`kernel:${name}`, () =>
    recordOperation(ctx, "kernel.import", name, async () => {
      await checkReplaceable(ctx, "kernel", name, p.force ?? false, KERNEL_EXISTS_HINT);
      await mkdir(ctx.paths.tmpDir, { recursive: true });
      const work = await mkdtemp(join(ctx.paths.tmpDir, KERNEL_UPLOAD_PREFIX));
      try {
        const source = p.upload ? await receiveKernelUpload(p.upload.kind, p.upload.input, work, call) : fetched!;
        await buildAside(ctx, "kernel", name, async (staging) => {
          const opts = { name, kernelsDir: staging, label: p.upload?.label, signal: call.signal, progress: call.progress };
          const { manifest: m } = await importKernelFiles(source, opts);
          const row = {
            name,
            source: m.source,
            kernelVersion: m.kernel_version,
            distro: p.debian ? "debian" : "",
            arch: hostArch(), // its initramfs holds this host's agent
            vmlinuxSha256: m.vmlinux_sha256,
            hasInitrd: m.has_initrd,
            modules: m.modules,
            sizeBytes: await vmlinuxSize(staging, name),
          };
          return { result: undefined, row };
        });
        return installedKernel(ctx, name);
      } finally {
        await rm(work, { recursive: true, force: true });
      }
    }),
  );
}

function vmlinuxSize(dir: string, name: string): Promise<number> {
  return stat(join(dir, name, "vmlinux")).then(
    (s) => s.size,
    () => 0,
  );
}

/** Debian's kernel package for the flavour, through apt, into the daemon's own cache (a path it chose). */
function fetchDebianDeb(ctx: DaemonContext, flavor: DebianFlavor, call: CallEnv): Promise<string> {
  call.progress({ phase: "apt", message: `Debian ${flavor} kernel package` });
  return fetchDebianKernelDeb({ flavor, cacheDir: ctx.paths.debsCacheDir, signal: call.signal, progress: call.progress });
}
