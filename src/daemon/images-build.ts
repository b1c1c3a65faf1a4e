// `image build --preset NAME`: banger's own images from distribution packages.
import { presetRootfsTar, PRESETS, validatePreset } from "../presets/index.ts";
import { extractRootfsTar } from "../rootfs/index.ts";
import type { ImageRecord } from "../store/index.ts";
import { hostArch } from "../util/arch.ts";
import { validateName } from "../util/names.ts";
import type { Progress } from "../util/progress.ts";
import type { DaemonContext } from "./context.ts";
import { buildAndPublishImage } from "./image-publish.ts";
import { adoptedMark, checkImageReplaceable, resolveImageKernel } from "./image-install.ts";
import { recordOperation } from "./operations.ts";

export interface BuildParams {
  preset: string;
  name?: string;
  kernelRef?: string;
  sizeBytes?: number;
  force?: boolean;
}

export async function buildPresetImage(ctx: DaemonContext, p: BuildParams, call: { signal: AbortSignal; progress: Progress }): Promise<ImageRecord & { becameDefault?: true }> {
  const preset = validatePreset(p.preset);
  const name = validateName("image", p.name ?? preset);
  if (p.kernelRef !== undefined) validateName("kernel", p.kernelRef);
  return ctx.locks.run(`image:${name}`, () =>
    recordOperation(ctx, "image.build", name, async () => {
      const kernel = resolveImageKernel(ctx, [p.kernelRef], name);
      await checkImageReplaceable(ctx, name, p.force ?? false);
      const image = await buildAndPublishImage(
        ctx,
        { name, source: `preset:${preset}`, digest: "", kernelRef: kernel, distro: PRESETS[preset].distro, arch: hostArch(), config: {}, sizeBytes: p.sizeBytes },
        async (treeDir) => {
          call.progress({ phase: "rootfs", message: `preset ${preset}` });
          const tar = await presetRootfsTar(preset, { cacheDir: ctx.paths.presetsCacheDir, signal: call.signal, progress: call.progress });
          return extractRootfsTar(tar, treeDir, { signal: call.signal });
        },
        call,
      );
      return { ...image, ...adoptedMark(ctx, name) };
    }),
  );
}
