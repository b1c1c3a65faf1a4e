// Which kernel and image banger uses when none is named: the configured default_kernel /
// default_image, else the only one there is. The first kernel (or image) installed while the
// config names none becomes the configured default, so adding a second one later changes
// nothing; the operation reports it so the CLI can say so once. Removing the default (forced)
// unsets it. Everything else about the config file belongs to config/.
import { loadConfig, saveConfig, type Config } from "../config/index.ts";
import type { DaemonContext } from "./context.ts";

export type DefaultKind = "kernel" | "image";

const KEY = { kernel: "default_kernel", image: "default_image" } as const satisfies Record<DefaultKind, keyof Config>;

export function defaultKey(kind: DefaultKind): "default_kernel" | "default_image" {
  return KEY[kind];
}

export function localNames(ctx: DaemonContext, kind: DefaultKind): string[] {
  return (kind === "kernel" ? ctx.store.listKernels() : ctx.store.listImages()).map((r) => r.name);
}

export interface DefaultChoice {
  name: string;
  /** "config": named by the config; "only": unconfigured, and the only one there is. */
  from: "config" | "only";
}

/** The configured default (present or not), else the only local one, else undefined. */
export function chooseDefault(ctx: DaemonContext, kind: DefaultKind, config: Config = ctx.config()): DefaultChoice | undefined {
  const configured = config[KEY[kind]];
  if (configured) return { name: configured, from: "config" };
  const local = localNames(ctx, kind);
  return local.length === 1 ? { name: local[0]!, from: "only" } : undefined;
}

/** Why there is no default, for an error: "none is configured and there are none yet" / "... 2 (a, b)". */
export function noDefaultReason(ctx: DaemonContext, kind: DefaultKind): string {
  const local = localNames(ctx, kind);
  const which = local.length === 0 ? `there are no ${kind}s yet` : `there are ${local.length} (${local.join(", ")}) to choose from`;
  return `no default ${kind} is configured and ${which}`;
}

/**
 * After `name` was installed: when the config names no default of its kind and `name` is
 * the only one, records it as the default. True when it did (the caller says so once).
 */
export function adoptFirstDefault(ctx: DaemonContext, kind: DefaultKind, name: string): boolean {
  const config = loadConfig(ctx.paths);
  if (config[KEY[kind]]) return false;
  const local = localNames(ctx, kind);
  if (local.length !== 1 || local[0] !== name) return false;
  saveConfig(ctx.paths, { ...config, [KEY[kind]]: name });
  ctx.log.info(`${kind} ${name} is now the default`, { key: KEY[kind] });
  return true;
}

/** When `name` is the configured default, unsets it (it was removed); true when it did. */
export function dropDefault(ctx: DaemonContext, kind: DefaultKind, name: string): boolean {
  const config = loadConfig(ctx.paths);
  if (config[KEY[kind]] !== name) return false;
  const next = { ...config };
  delete next[KEY[kind]];
  saveConfig(ctx.paths, next);
  return true;
}
