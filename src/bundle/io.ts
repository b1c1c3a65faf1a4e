// Small helpers of a pull: progress throttling and hashing a file.
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
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

/** sha256 (hex) and size of a file, read in 1 MiB chunks. */
export async function sha256File(path: string): Promise<{ sha256: string; sizeBytes: number }> {
  const hash = createHash("sha256");
  let sizeBytes = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 }) as AsyncIterable<Buffer>) {
    hash.update(chunk);
    sizeBytes += chunk.length;
  }
  return { sha256: hash.digest("hex"), sizeBytes };
}
