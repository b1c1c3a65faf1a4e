// Long operations (pulls, builds, VM creation) are recorded in the store so `banger ops`
// and the dashboard can show what ran, how it ended, and why it failed.
import { ErrorCode, BangerError, errorLine, resourceError } from "../util/errors.ts";
import type { DaemonContext } from "./context.ts";

export async function recordOperation<T>(ctx: DaemonContext, kind: string, target: string, fn: () => Promise<T>): Promise<T> {
  const id = ctx.store.startOperation(kind, target);
  try {
    const result = await fn();
    ctx.store.finishOperation(id, "succeeded");
    return result;
  } catch (caught) {
    // Whatever step ran out of disk, memory or descriptors, the user sees that, not a bad input.
    const err = resourceError(caught, { path: ctx.paths.root }) ?? caught;
    const wasCancelled = err instanceof BangerError && err.code === ErrorCode.Cancelled;
    ctx.store.finishOperation(id, wasCancelled ? "cancelled" : "failed", errorLine(err));
    throw err;
  }
}
