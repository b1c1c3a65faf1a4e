// The OCI path of `image pull`: registry → verified blobs → flattened tree → guest agent →
// ext4 with exact ownership → published image. Staging lives under <root>/tmp and is removed
// on any failure, so an interrupted pull leaves only verified blobs in the cache.
//
// Downloading and flattening overlap: layer N is applied as soon as its blob is verified in
// the cache, while later layers still download. A layer is never applied before its digest
// checked out (it is read back from the cache, where only verified blobs land), so a layer
// that lies about its digest fails the pull before any of its bytes reach the tree.
import { parseRef, startPull, openLayer, resolveImage, type ImageRef, type StartedPull } from "../oci/index.ts";
import { flattenLayers, type Tree } from "../rootfs/index.ts";
import { invalidArgument } from "../util/errors.ts";
import { isValidName, validateName } from "../util/names.ts";
import type { CallEnv, DaemonContext } from "./context.ts";
import { adoptedMark, checkImageReplaceable, getImage, resolveImageKernel, type PullParams, type PullResult } from "./image-install.ts";
import { buildAndPublishImage } from "./image-publish.ts";
import { recordOperation } from "./operations.ts";

/** A local name for a ref: `alpine:3.20` → `alpine-3.20`, `ghcr.io/o/r@sha256:ab…` → `r-ab12…`. */
export function defaultImageName(ref: ImageRef): string {
  const base = ref.repository.split("/").pop() ?? "image";
  const suffix = ref.tag ?? (ref.digest ? ref.digest.replace(/^sha256:/, "").slice(0, 12) : "latest");
  const name = `${base}-${suffix}`
    .replace(/[^a-zA-Z0-9._-]/g, "-")
    .replace(/^[^a-zA-Z0-9]+/, "")
    .slice(0, 64);
  if (!isValidName(name)) throw invalidArgument(`cannot derive an image name from ${JSON.stringify(ref)}`, "pass --name NAME");
  return name;
}

export async function pullOciImage(ctx: DaemonContext, p: PullParams, call: CallEnv): Promise<PullResult> {
  const ref = parseRef(p.ref);
  const name = p.name ?? defaultImageName(ref);
  validateName("image", name);
  const started = Date.now();
  return ctx.locks.run(`image:${name}`, () =>
    recordOperation(ctx, "image.pull", name, async () => {
      const kernel = resolveImageKernel(ctx, [p.kernelRef, p.kernel], name);
      const config = ctx.config();
      const ociOpts = { insecureRegistries: config.insecure_registries, platform: p.platform, signal: call.signal, cacheDir: ctx.paths.cacheDir };
      call.progress({ phase: "resolve", message: p.ref });
      const resolved = await resolveImage(ref, ociOpts);
      const existing = ctx.store.getImage(name);
      if (existing && existing.digest === resolved.manifestDigest && !p.force) {
        return { image: existing, via: "oci" as const, unchanged: true, seconds: (Date.now() - started) / 1000, details: { digest: resolved.manifestDigest, platform: resolved.platform } };
      }
      // A newer digest under the same tag replaces the image when no VM depends on it.
      await checkImageReplaceable(ctx, name, p.force === true || (existing !== undefined && existing.digest !== resolved.manifestDigest));
      const pullCtl = linkedController(call.signal);
      const pulled = await startPull(ref, { ...ociOpts, signal: pullCtl.signal, progress: call.progress });
      let fetched: Awaited<StartedPull["done"]> | undefined;
      const building = buildAndPublishImage(
        ctx,
        {
          name,
          source: `oci:${p.ref}`,
          digest: pulled.manifestDigest,
          kernelRef: kernel,
          distro: "",
          arch: pulled.platform.architecture,
          config: pulled.config as unknown as Record<string, unknown>,
          sizeBytes: p.sizeBytes,
        },
        async (treeDir) => {
          const tree = await flattenWhilePulling(pulled, pullCtl, treeDir, call);
          fetched = await pulled.done;
          return tree;
        },
        call,
      );
      await building.catch(async (err: unknown) => {
        pullCtl.abort(); // nothing may keep downloading once the pull failed
        await pulled.done.catch(() => undefined);
        throw err;
      });
      return {
        image: getImage(ctx, name),
        ...adoptedMark(ctx, name),
        via: "oci" as const,
        unchanged: false,
        seconds: (Date.now() - started) / 1000,
        details: {
          digest: pulled.manifestDigest,
          platform: `${pulled.platform.os}/${pulled.platform.architecture}${pulled.platform.variant ? `/${pulled.platform.variant}` : ""}`,
          layers: pulled.layers.map((l) => ({ digest: l.digest, size: l.size })),
          compressedBytes: pulled.bytes,
          downloadedBytes: fetched?.downloadedBytes ?? 0,
          cached: fetched?.cached ?? true,
        },
      };
    }),
  );
}

/**
 * Flattens the layers in order, each as soon as its blob is verified, while `pull` still
 * downloads the rest. Whichever fails first is reported: a failed download stops the flatten
 * at once, a failed flatten stops the downloads; either way both have stopped on return.
 */
async function flattenWhilePulling(pull: StartedPull, pullCtl: AbortController, treeDir: string, call: CallEnv): Promise<Tree> {
  const flattenCtl = linkedController(call.signal);
  let pullFailure: unknown;
  pull.done.then(
    // The download bars are done: what is left is the flatten (one CLI phase at a time).
    () => call.progress({ phase: "flatten", message: `${pull.layers.length} layers` }),
    (err: unknown) => {
      pullFailure = err;
      flattenCtl.abort();
    },
  );
  const sources = pull.layers.map((layer, i) => async () => {
    await pull.layerReady(i);
    return openLayer(layer, { signal: flattenCtl.signal });
  });
  try {
    return await flattenLayers(sources, treeDir, { signal: flattenCtl.signal });
  } catch (err) {
    if (pullFailure !== undefined) throw pullFailure;
    pullCtl.abort();
    await pull.done.catch(() => undefined);
    throw err;
  }
}

/** A controller that also aborts when `parent` does. */
function linkedController(parent: AbortSignal): AbortController {
  const ctl = new AbortController();
  if (parent.aborted) ctl.abort();
  else parent.addEventListener("abort", () => ctl.abort(), { once: true });
  return ctl;
}
