// The kernel.* and image.* methods: each checks its params and calls one operation
// (kernels.ts, images.ts, images-build.ts).
import type { Handlers, InstalledKernel } from "../api/index.ts";
import { type CallContext, optionalBool, optionalInt, optionalString, requireObject, requireString } from "../rpc/index.ts";
import { invalidArgument } from "../util/errors.ts";
import type { DaemonContext } from "./context.ts";
import { getImage } from "./image-install.ts";
import { imageCatalog, showImage, pullImage, removeImage } from "./images.ts";
import { buildPresetImage } from "./images-build.ts";
import { type ImportParams, type InstalledKernelRecord, getKernel, importKernel, kernelCatalog, pullKernel, removeKernel } from "./kernels.ts";
import { inputStream } from "./streams.ts";
import { kernelView } from "./views.ts";

type KernelMethod = "kernel.list" | "kernel.catalog" | "kernel.show" | "kernel.pull" | "kernel.rm" | "kernel.import";
type ImageMethod = "image.list" | "image.catalog" | "image.show" | "image.pull" | "image.rm" | "image.build";

export function kernelMethods(ctx: DaemonContext): Handlers<KernelMethod> {
  return {
    "kernel.list": () => ctx.store.listKernels().map(kernelView),
    "kernel.catalog": (_p, call) => kernelCatalog(ctx, call.signal),
    "kernel.show": (p) => kernelView(getKernel(ctx, requireString(p, "name"))),
    "kernel.pull": async (p, call) => installedView(await pullKernel(ctx, requireString(p, "name"), optionalBool(p, "force") ?? false, call)),
    "kernel.rm": (p) => removeKernel(ctx, requireString(p, "name"), optionalBool(p, "force") ?? false),
    "kernel.import": async (p, call) => installedView(await importKernel(ctx, importParams(p, call), call)),
  };
}

export function imageMethods(ctx: DaemonContext): Handlers<ImageMethod> {
  return {
    "image.list": () => Promise.all(ctx.store.listImages().map((i) => showImage(ctx, i))),
    "image.catalog": (_p, call) => imageCatalog(ctx, call.signal),
    "image.show": (p) => showImage(ctx, getImage(ctx, requireString(p, "name"))),
    "image.pull": async (p, call) => {
      const r = await pullImage(
        ctx,
        {
          ref: requireString(p, "ref"),
          name: optionalString(p, "name"),
          kernelRef: optionalString(p, "kernelRef"),
          kernel: optionalString(p, "kernel"),
          platform: optionalString(p, "platform"),
          sizeBytes: optionalInt(p, "sizeBytes", 1),
          force: optionalBool(p, "force"),
        },
        call,
      );
      return { ...r, image: await showImage(ctx, r.image) };
    },
    "image.rm": (p) => removeImage(ctx, requireString(p, "name"), optionalBool(p, "force") ?? false),
    "image.build": async (p, call) =>
      showImage(
        ctx,
        await buildPresetImage(
          ctx,
          {
            preset: requireString(p, "preset"),
            name: optionalString(p, "name"),
            kernelRef: optionalString(p, "kernelRef"),
            sizeBytes: optionalInt(p, "sizeBytes", 1),
            force: optionalBool(p, "force"),
          },
          call,
        ),
      ),
  };
}

/** A kernel just installed as the wire shows it: the row's view, then becameDefault when set. */
function installedView(k: InstalledKernelRecord): InstalledKernel {
  const { becameDefault, ...row } = k;
  return becameDefault ? { ...kernelView(row), becameDefault } : kernelView(row);
}

/** A path shown back to users (kernel list): one line, no terminal control characters. */
const LABEL = /^[^\x00-\x1f\x7f-\x9f]{1,4096}$/;

/**
 * kernel.import's params. The daemon runs as root and opens no path a caller names: the caller
 * reads its directory or .deb itself and sends the bytes as this call's input (kernel/upload.ts).
 */
function importParams(p: unknown, call: CallContext): ImportParams {
  for (const key of ["source", "deb"]) {
    if (requireObject(p)[key] !== undefined) throw invalidArgument(`kernel.import reads no host path ("${key}"): send the files as the call's input`, "the banger CLI does; update it");
  }
  const flavor = optionalString(p, "flavor");
  if (flavor !== undefined && flavor !== "cloud" && flavor !== "generic") throw invalidArgument("--flavor takes cloud or generic");
  const kind = optionalString(p, "upload");
  if (kind !== undefined && kind !== "deb" && kind !== "dir") throw invalidArgument("upload takes deb or dir");
  const label = optionalString(p, "label") ?? "";
  if (kind !== undefined && !LABEL.test(label)) throw invalidArgument("an upload needs a label: the path it was read from, one line of printable text");
  return {
    upload: kind === undefined ? undefined : { kind, label, input: inputStream(call) },
    debian: optionalBool(p, "debian"),
    flavor,
    name: optionalString(p, "name"),
    force: optionalBool(p, "force"),
  };
}
