// Small helpers of a pull: progress throttling.
import type { Progress, ProgressEvent } from "../util/progress.ts";

/** Passes events on at most every `ms` (a phase change or `force` always passes), so the RPC link isn't flooded. */
export function throttled(progress: Progress, ms = 200): (event: ProgressEvent, force?: boolean) => void {
  let last = 0;
  let lastPhase = "";
  return (event, force = false) => {
    const now = Date.now();
    if (!force && event.phase === lastPhase && now - last < ms) return;
    last = now;
    lastPhase = event.phase;
    progress(event);
  };
}
