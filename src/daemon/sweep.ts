// At daemon start, holding the root's lock (so no other daemon's operation is running):
// finish or undo the installs a killed daemon left half done, then remove the staging and
// temp files killed builds, imports and pulls left (util/scratch.ts names them all), and
// say in the log what went and how much space it held.
import { errorLine } from "../util/errors.ts";
import { humanBytes } from "../util/human.ts";
import { sweepLeftovers } from "../util/scratch.ts";
import type { DaemonContext } from "./context.ts";
import { recoverSwaps } from "./replace.ts";

export async function tidyRoot(ctx: DaemonContext): Promise<void> {
  try {
    const swaps = await recoverSwaps(ctx);
    if (swaps.undone.length + swaps.finished.length > 0) ctx.log.info("recovered interrupted installs", { ...swaps });
    const swept = await sweepLeftovers(ctx.paths);
    if (swept.removed.length > 0) {
      ctx.log.info("removed leftovers of interrupted operations", { count: swept.removed.length, bytes: swept.bytes, size: humanBytes(swept.bytes), paths: swept.removed.map((l) => l.path) });
    }
  } catch (err) {
    // Leftovers cost space, not correctness: the daemon still serves.
    ctx.log.warn("start-up sweep failed", { error: errorLine(err) });
  }
}
