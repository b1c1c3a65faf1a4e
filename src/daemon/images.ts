// Image operations: pull (an image catalog entry takes the bundle path; any other ref is
// pulled from an OCI registry and built into an ext4), list, show, rm. The files are made by
// imagecat / oci + rootfs; this file resolves kernels and records images in the store.
import { rm, stat } from "node:fs/promises";
import type { AvailableImage, ImageView, Removed } from "../api/index.ts";
import { catalogEntryView } from "../bundle/index.ts";
import { catalogOverride, imageDir, imageRootfs } from "../config/index.ts";
import * as imagecat from "../imagecat/index.ts";
import type { ImageRecord } from "../store/index.ts";
import { BangerError, ErrorCode } from "../util/errors.ts";
import { validateName } from "../util/names.ts";
import type { CallEnv, DaemonContext } from "./context.ts";
import { recordOperation } from "./operations.ts";
import { pullOciImage } from "./images-oci.ts";
import { adoptedMark, checkImageReplaceable, getImage, resolveImageKernel, type PullParams, type PullResult } from "./image-install.ts";
import { buildAside, refuseIfUsed } from "./replace.ts";
import { imageView } from "./views.ts";
import { dropDefault } from "./default-choice.ts";

/** An image as banger shows it (views.ts), with the host space its sparse rootfs really takes. */
export async function showImage(ctx: DaemonContext, image: ImageRecord & { becameDefault?: true }): Promise<ImageView & { becameDefault?: true }> {
  const st = await stat(imageRootfs(ctx.paths, image.name)).catch(() => undefined);
  return imageView(image, st ? st.blocks * 512 : null, image.becameDefault);
}

export async function imageCatalog(ctx: DaemonContext, signal: AbortSignal): Promise<AvailableImage[]> {
  const catalog = await imagecat.loadCatalog(catalogOverride("image", ctx.config()), signal);
  return catalog.entries.map((e) => ({
    ...catalogEntryView(e),
    ...(e.kernel_ref !== undefined ? { kernelRef: e.kernel_ref } : {}),
    state: ctx.store.getImage(e.name) ? "pulled" : "available",
  }));
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
          name,
          source: `catalog:${entry.tarball_url}`,
          digest: `sha256:${entry.tarball_sha256}`,
          kernelRef: kernel,
          distro: got.manifest.distro ?? entry.distro ?? "",
          arch: got.manifest.arch ?? entry.arch ?? "amd64",
          sizeBytes: (await stat(got.rootfs)).size,
          config: {},
        };
        return { result: got, row };
      });
      return {
        image: getImage(ctx, name),
        ...adoptedMark(ctx, name),
        via: "catalog" as const,
        unchanged: false,
        seconds: (Date.now() - started) / 1000,
        details: { cached: pulled.cached, bundle: entry.tarball_url },
      };
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
    await rm(imageDir(ctx.paths, name), { recursive: true, force: true });
    return { removed: name, broken };
  });
}
