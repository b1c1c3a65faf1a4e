// The configured default image and kernel, read and set through the daemon: the dashboard's
// "Set default" buttons. Setting goes through the config module's own setConfigValue (the
// rule `banger config set default_image NAME` applies) and refuses a name that is not here.
import { loadConfig, saveConfig, setConfigValue } from "../config/index.ts";
import type { ConfiguredDefaults, Handlers } from "../api/index.ts";
import { optionalString } from "../rpc/index.ts";
import { invalidArgument, notFound } from "../util/errors.ts";
import { validateName } from "../util/names.ts";
import type { DaemonContext } from "./context.ts";

function configuredDefaults(ctx: DaemonContext): ConfiguredDefaults {
  const config = ctx.config();
  return { image: config.default_image ?? null, kernel: config.default_kernel ?? null };
}

/** Makes an installed image and/or kernel the default; returns the defaults after. */
function setDefaults(ctx: DaemonContext, p: { image?: string; kernel?: string }): ConfiguredDefaults {
  if (p.image === undefined && p.kernel === undefined) throw invalidArgument("nothing to set", "name an image or a kernel");
  if (p.image !== undefined && !ctx.store.getImage(validateName("image", p.image))) {
    throw notFound(`image ${p.image}`, "see `banger image list`, or `banger image pull`");
  }
  if (p.kernel !== undefined && !ctx.store.getKernel(validateName("kernel", p.kernel))) {
    throw notFound(`kernel ${p.kernel}`, "see `banger kernel list`, or `banger kernel pull`");
  }
  let config = loadConfig(ctx.paths);
  if (p.image !== undefined) config = setConfigValue(config, "default_image", p.image);
  if (p.kernel !== undefined) config = setConfigValue(config, "default_kernel", p.kernel);
  saveConfig(ctx.paths, config);
  return configuredDefaults(ctx);
}

export function configDefaultsMethods(ctx: DaemonContext): Handlers<"defaults.get" | "defaults.set"> {
  return {
    "defaults.get": () => configuredDefaults(ctx),
    "defaults.set": (p) => setDefaults(ctx, { image: optionalString(p, "image"), kernel: optionalString(p, "kernel") }),
  };
}
