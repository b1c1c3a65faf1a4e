// VM operations: listing and showing for now; lifecycle lands with the VMM drivers.
import { notFound } from "../util/errors.ts";
import { validateName } from "../util/names.ts";
import type { VmRecord } from "../store/index.ts";
import type { DaemonContext } from "./context.ts";

export function listVms(ctx: DaemonContext): VmRecord[] {
  return ctx.store.listVms();
}

export function getVm(ctx: DaemonContext, name: string): VmRecord {
  validateName("vm", name);
  const vm = ctx.store.getVm(name);
  if (!vm) throw notFound(`vm ${name}`, "see `banger vm ls`");
  return vm;
}
