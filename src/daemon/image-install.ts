// What every way of installing an image shares (catalog pull in images.ts, OCI pull in
// images-oci.ts, preset build in images-build.ts): the pull's params and result, the image
// looked up by name, the kernel it boots with, the replace check and the first-default mark.
import type { PullResult as WirePullResult } from "../api/index.ts";
import type { ImageRecord } from "../store/index.ts";
import { BangerError, ErrorCode, notFound } from "../util/errors.ts";
import { validateName } from "../util/names.ts";
import type { DaemonContext } from "./context.ts";
import { adoptFirstDefault, chooseDefault, noDefaultReason } from "./default-choice.ts";
import { checkReplaceable } from "./replace.ts";

export interface PullParams {
  ref: string;
  name?: string;
  kernelRef?: string;
  kernel?: string;
  platform?: string;
  sizeBytes?: number;
  force?: boolean;
}

/** A pull's answer as the daemon has it: api's PullResult with the store row, not yet its view (methods-images.ts makes it). */
export type PullResult = Omit<WirePullResult, "image"> & { image: ImageRecord };

export function getImage(ctx: DaemonContext, name: string): ImageRecord {
  validateName("image", name);
  const i = ctx.store.getImage(name);
  if (!i) throw notFound(`image ${name}`, "see `banger image list`");
  return i;
}

/**
 * The kernel an image boots with: --kernel-ref > the catalog entry's kernel_ref > --kernel
 * > the configured default > the only kernel there is. It must already be present locally.
 */
export function resolveImageKernel(ctx: DaemonContext, candidates: (string | undefined)[], forImage: string): string {
  const name = candidates.find((c) => c !== undefined && c !== "") ?? chooseDefault(ctx, "kernel")?.name;
  if (!name) {
    throw new BangerError(
      ErrorCode.NotFound,
      `no kernel for image ${forImage}: ${noDefaultReason(ctx, "kernel")}`,
      "pass --kernel-ref NAME, or `banger config set default_kernel NAME` (no kernel yet: `banger kernel import --debian`)",
    );
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

/** `{ becameDefault: true }` when the image just installed is the first and now the configured default. */
export function adoptedMark(ctx: DaemonContext, name: string): { becameDefault?: true } {
  return adoptFirstDefault(ctx, "image", name) ? { becameDefault: true } : {};
}
