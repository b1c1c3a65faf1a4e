// The first `vm run` on a fresh host: when no default kernel or image exists yet, banger
// makes them from Debian's packages (the catalogs may be empty): the kernel from Debian's
// cloud kernel package through apt, the image from a preset (busybox unless the config names
// another preset). The CLI asks before building; this file plans and builds.
import { loadConfig, saveConfig } from "../config/index.ts";
import { PRESETS } from "../presets/index.ts";
import type { DefaultsPlan, Handlers } from "../api/index.ts";
import { notFound } from "../util/errors.ts";
import type { Progress } from "../util/progress.ts";
import type { DaemonContext } from "./context.ts";
import { chooseDefault } from "./default-choice.ts";
import { buildPresetImage } from "./images-build.ts";
import { importKernel } from "./kernels.ts";

/** The preset the default image is built from when the config names none. */
export const DEFAULT_PRESET = "busybox";

function isPreset(name: string): name is keyof typeof PRESETS {
  return Object.hasOwn(PRESETS, name);
}

/** The configured default kernel, else a kernel already here (a Debian one first). */
function defaultKernelName(ctx: DaemonContext): string | undefined {
  const configured = ctx.config().default_kernel;
  if (configured) return configured;
  const local = ctx.store.listKernels();
  return (local.find((k) => k.distro === "debian") ?? local[0])?.name;
}

/** The configured default image, else the only image here, else the default preset (built when missing). */
function defaultImageName(ctx: DaemonContext): string {
  return chooseDefault(ctx, "image")?.name ?? DEFAULT_PRESET;
}

export function planDefaults(ctx: DaemonContext): DefaultsPlan {
  const steps: DefaultsPlan["steps"] = [];
  const kernel = defaultKernelName(ctx);
  if (!kernel || !ctx.store.getKernel(kernel)) {
    steps.push({ what: "kernel", name: kernel ?? "debian-<version>-cloud", how: "Debian's cloud kernel package, fetched with apt" });
  }
  const image = defaultImageName(ctx);
  if (!ctx.store.getImage(image)) {
    if (!isPreset(image)) throw notFound(`default image ${image}`, `pull or build it (banger image pull ${image}), or \`banger config set default_image ${DEFAULT_PRESET}\``);
    steps.push({ what: "image", name: image, how: `preset ${image}: ${PRESETS[image].description}` });
  }
  return { steps };
}

/** Builds what planDefaults says is missing and records the defaults in the config. */
export async function ensureDefaults(ctx: DaemonContext, call: { signal: AbortSignal; progress: Progress }): Promise<{ kernel: string; image: string }> {
  const plan = planDefaults(ctx);
  let kernel = defaultKernelName(ctx);
  const image = defaultImageName(ctx);
  if (plan.steps.some((s) => s.what === "kernel")) {
    kernel = (await importKernel(ctx, { debian: true, flavor: "cloud", force: false, name: kernel }, call)).name;
    saveConfig(ctx.paths, { ...loadConfig(ctx.paths), default_kernel: kernel });
  }
  if (plan.steps.some((s) => s.what === "image")) {
    await buildPresetImage(ctx, { preset: image, name: image, kernelRef: kernel }, call);
  }
  saveConfig(ctx.paths, { ...loadConfig(ctx.paths), default_kernel: kernel, default_image: image });
  return { kernel: kernel!, image };
}

export function defaultsMethods(ctx: DaemonContext): Handlers<"defaults.plan" | "defaults.ensure"> {
  return {
    "defaults.plan": () => planDefaults(ctx),
    "defaults.ensure": (_p, call) => ensureDefaults(ctx, call),
  };
}
