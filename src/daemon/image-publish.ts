// The shared tail of every image that banger builds itself (OCI pull, presets): a staged
// tree gets the guest agent, becomes an ext4 with exact ownership, and is published as
// <root>/images/<name>/rootfs.ext4 and recorded (replace.ts: an old one stays until then).
// A failure removes the work directory.
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { agentBinary } from "../guest/index.ts";
import { buildExt4, injectAgent, type Tree } from "../rootfs/index.ts";
import type { ImageRecord } from "../store/index.ts";
import type { Progress } from "../util/progress.ts";
import { imageWorkPrefix } from "../util/scratch.ts";
import type { DaemonContext } from "./context.ts";
import { install } from "./replace.ts";

/**
 * Images banger builds are at least this big (sparse: only written blocks take disk), so a
 * VM cloned from one has room and inodes for a sizeable workspace without --disk-size.
 */
export const ROOMY_IMAGE_BYTES = 4 * 1024 ** 3;

export interface PublishImage {
  name: string;
  source: string;
  digest: string;
  kernelRef: string;
  distro: string;
  arch: string;
  config: Record<string, unknown>;
  sizeBytes?: number;
}

/** Makes a work dir under <root>/tmp, runs `stage(treeDir)` to fill a tree, and publishes it. */
export async function buildAndPublishImage(
  ctx: DaemonContext,
  image: PublishImage,
  stage: (treeDir: string) => Promise<Tree>,
  call: { signal: AbortSignal; progress: Progress },
): Promise<ImageRecord> {
  await mkdir(ctx.paths.tmpDir, { recursive: true });
  const work = await mkdtemp(join(ctx.paths.tmpDir, imageWorkPrefix(image.name)));
  try {
    const tree = await stage(join(work, "tree"));
    await injectAgent(tree, { agentPath: agentBinary() });
    call.progress({ phase: "ext4" });
    const built = await buildExt4(tree, join(work, "rootfs.ext4"), { sizeBytes: image.sizeBytes, minSizeBytes: ROOMY_IMAGE_BYTES, signal: call.signal, progress: call.progress });
    await rm(join(work, "tree"), { recursive: true, force: true });
    await install(ctx, "image", image.name, work, {
      name: image.name,
      source: image.source,
      digest: image.digest,
      kernelRef: image.kernelRef,
      distro: image.distro,
      arch: image.arch,
      sizeBytes: built.sizeBytes,
      config: image.config,
    });
    return ctx.store.getImage(image.name)!;
  } catch (err) {
    await rm(work, { recursive: true, force: true });
    throw err;
  }
}
