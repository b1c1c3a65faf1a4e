// Image operations: pull (an image catalog entry takes the bundle path; any other ref is
// pulled from an OCI registry and built into an ext4), list, show, rm. The files are made by
// imagecat / oci + rootfs; this file resolves kernels and records images in the store.
import { rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { type CatalogEntryView, catalogEntryView } from "../bundle/index.ts";
import { catalogOverride } from "../config/index.ts";
import * as imagecat from "../imagecat/index.ts";
import type { PullDetails } from "../api/index.ts";
import type { ImageRecord } from "../store/index.ts";
import { BangerError, ErrorCode, notFound } from "../util/errors.ts";
import { validateName } from "../util/names.ts";
import type { CallEnv, DaemonContext } from "./context.ts";
import { recordOperation } from "./operations.ts";
import { pullOciImage } from "./images-oci.ts";
import { buildAside, checkReplaceable, refuseIfUsed, type Removed } from "./replace.ts";
import { adoptFirstDefault, chooseDefault, dropDefault, noDefaultReason } from "./default-choice.ts";


export interface PullParams {
  ref: string;
  name?: string;
  kernelRef?: string;
  kernel?: string;
  platform?: string;
  sizeBytes?: number;
  force?: boolean;
}

export interface PullResult {
  image: ImageRecord;
  /** The first image, now the configured default (the CLI says so once). */
  becameDefault?: true;
  /** "catalog" (bundle) or "oci". */
  via: "catalog" | "oci";
  /** True when nothing had to be done: the same digest was already pulled under this name. */
  unchanged: boolean;
  seconds: number;
  details: PullDetails;
}

export function getImage(ctx: DaemonContext, name: string): ImageRecord {
  validateName("image", name);
  const i = ctx.store.getImage(name);
  if (!i) throw notFound(`image ${name}`, "see `banger image list`");
  return i;
}

/**
 * An image as banger shows it: its record (sizeBytes: the rootfs.ext4's virtual size) and
 * usedBytes, the host space the sparse file really takes (allocated blocks); null when the
 * file cannot be read.
 */
export type ImageView = ImageRecord & { usedBytes: number | null };

export async function imageView<T extends ImageRecord>(ctx: DaemonContext, image: T): Promise<T & { usedBytes: number | null }> {
  const st = await stat(join(ctx.paths.imagesDir, image.name, "rootfs.ext4")).catch(() => undefined);
  return { ...image, usedBytes: st ? st.blocks * 512 : null };
}

export interface AvailableImage extends CatalogEntryView {
  kernelRef?: string;
  state: "pulled" | "available";
}

export async function imageCatalog(ctx: DaemonContext, signal: AbortSignal): Promise<AvailableImage[]> {
  const catalog = await imagecat.loadCatalog(catalogOverride("image", ctx.config()), signal);
  return catalog.entries.map((e) => ({
    ...catalogEntryView(e),
    ...(e.kernel_ref !== undefined ? { kernelRef: e.kernel_ref } : {}),
    state: ctx.store.getImage(e.name) ? "pulled" : "available",
  }));
}

/**
 * The kernel an image boots with: --kernel-ref > the catalog entry's kernel_ref > --kernel
 * > the configured default > the only kernel there is. It must already be present locally.
 */
export function resolveImageKernel(ctx: DaemonContext, candidates: (string | undefined)[], forImage: string): string {
  const name = candidates.find((c) => c !== undefined && c !== "") ?? chooseDefault(ctx, "kernel")?.name;
  if (!name) {
    throw new BangerError(ErrorCode.NotFound, `no kernel for image ${forImage}: ${noDefaultReason(ctx, "kernel")}`, "pass --kernel-ref NAME, or `banger config set default_kernel NAME` (no kernel yet: `banger kernel import --debian`)");
  }
  validateName("kernel", name);
  if (!ctx.store.getKernel(name)) {
    throw new BangerError(ErrorCode.NotFound, `kernel ${name} (needed by image ${forImage}) is not present`, `run \`banger kernel pull ${name}\` (or \`banger kernel import\`) first`);
  }
  return name;
}

/** Refuses to replace an image unless forced, or one VMs use; the old one stays until the new one is complete. */
export function checkImageReplaceable(ctx: DaemonContext, name: string, force: boolean): Promise<void> {
  return checkReplaceable(ctx, "image", name, force, "use --force to replace it, or --name to pull under another name");
}

export async function pullImage(ctx: DaemonContext, p: PullParams, call: CallEnv): Promise<PullResult> {
  if (p.name !== undefined) validateName("image", p.name);
  if (p.kernelRef !== undefined) validateName("kernel", p.kernelRef);
  if (p.kernel !== undefined) validateName("kernel", p.kernel);
  const catalog = await imagecat.loadCatalog(catalogOverride("image", ctx.config()), call.signal);
  const entry = imagecat.lookup(catalog, p.ref);
  const started = Date.now();
  if (!entry) {
    return pullOciImage(ctx, p, call);
  }
  const name = p.name ?? entry.name;
  return ctx.locks.run(`image:${name}`, () =>
    recordOperation(ctx, "image.pull", name, async () => {
      const kernel = resolveImageKernel(ctx, [p.kernelRef, entry.kernel_ref, p.kernel], name);
      await checkImageReplaceable(ctx, name, p.force ?? false);
      const pulled = await buildAside(ctx, "image", name, async (staging) => {
        const got = await imagecat.pullImageBundle(entry, { imagesDir: staging, cacheDir: ctx.paths.cacheDir, tmpDir: ctx.paths.tmpDir, name, signal: call.signal, progress: call.progress });
        const row = {
          name, source: `catalog:${entry.tarball_url}`, digest: `sha256:${entry.tarball_sha256}`, kernelRef: kernel,
          distro: got.manifest.distro ?? entry.distro ?? "", arch: got.manifest.arch ?? entry.arch ?? "amd64", sizeBytes: (await stat(got.rootfs)).size, config: {},
        };
        return { result: got, row };
      });
      return { image: getImage(ctx, name), ...adoptedMark(ctx, name), via: "catalog" as const, unchanged: false, seconds: (Date.now() - started) / 1000, details: { cached: pulled.cached, bundle: entry.tarball_url } };
    }),
  );
}

export function removeImage(ctx: DaemonContext, name: string, force = false): Promise<Removed> {
  validateName("image", name);
  return ctx.locks.run(`image:${name}`, async () => {
    getImage(ctx, name);
    refuseIfUsed(ctx, "image", name, "remove");
    const broken = ctx.config().default_image === name ? ["default_image"] : [];
    if (broken.length > 0 && !force) {
      throw new BangerError(ErrorCode.InUse, `cannot remove image ${name}: used by ${broken.join(", ")}`, `\`banger image rm --force ${name}\` removes it anyway`);
    }
    ctx.store.deleteImage(name);
    dropDefault(ctx, "image", name);
    await rm(join(ctx.paths.imagesDir, name), { recursive: true, force: true });
    return { removed: name, broken };
  });
}

/** `{ becameDefault: true }` when the image just installed is the first and now the configured default. */
export function adoptedMark(ctx: DaemonContext, name: string): { becameDefault?: true } {
  return adoptFirstDefault(ctx, "image", name) ? { becameDefault: true } : {};
}
