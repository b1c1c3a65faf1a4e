// Small byte-moving helpers shared by the download pump and the extractor.
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import type { Progress, ProgressEvent } from "../util/progress.ts";

const BATCH_BYTES = 1024 * 1024;
const MAX_QUEUED = 4 * BATCH_BYTES;
const BLOCK = 4096;
const ZERO_BLOCK = Buffer.alloc(BLOCK);

/**
 * Writes a stream of chunks to a file in ~1 MiB writev calls, queued one after another on the
 * thread pool while the caller goes on: one round trip per 64 KiB chunk costs more than the
 * data itself, and so does a promise per chunk, so write() returns a promise only when more
 * than MAX_QUEUED bytes wait for the disk. With `sparse`, all-zero 4 KiB blocks are skipped and
 * stay holes (the file must be new; the caller sets the final size with truncate).
 */
export class BatchedFileWriter {
  private batch: Buffer[] = [];
  private batchBytes = 0;
  private batchPos = 0;
  private pos = 0;
  /** Bytes handed to writev calls that have not finished yet. */
  private queued = 0;
  private chain: Promise<void> = Promise.resolve();
  private error: unknown;

  constructor(
    private readonly fh: FileHandle,
    private readonly sparse = false,
  ) {}

  /** Takes `chunk` (kept, not copied); when a promise comes back, wait for it before the next write. */
  write(chunk: Buffer): Promise<void> | undefined {
    if (this.error !== undefined) return Promise.reject(this.error);
    if (this.sparse) for (const [start, end] of nonZeroRuns(chunk)) this.append(chunk.subarray(start, end), this.pos + start);
    else this.append(chunk, this.pos);
    this.pos += chunk.length;
    return this.queued > MAX_QUEUED ? this.chain : undefined;
  }

  /** Writes what is pending and waits for it; call before closing. */
  async finish(): Promise<void> {
    this.flush();
    await this.chain;
  }

  private append(buf: Buffer, at: number): void {
    if (this.batchBytes > 0 && at !== this.batchPos + this.batchBytes) this.flush();
    if (this.batchBytes === 0) this.batchPos = at;
    this.batch.push(buf);
    this.batchBytes += buf.length;
    if (this.batchBytes >= BATCH_BYTES) this.flush();
  }

  private flush(): void {
    if (this.batchBytes === 0) return;
    const bufs = this.batch;
    const at = this.batchPos;
    const bytes = this.batchBytes;
    this.batch = [];
    this.batchBytes = 0;
    this.queued += bytes;
    this.chain = this.chain.then(async () => {
      await writevFully(this.fh, bufs, at);
      this.queued -= bytes;
    });
    this.chain.catch((err: unknown) => (this.error ??= err)); // seen by the next write or finish
  }
}

/** [start, end) ranges of `chunk` that are not whole zero blocks. */
function nonZeroRuns(chunk: Buffer): Array<[number, number]> {
  const runs: Array<[number, number]> = [];
  let runStart = -1;
  for (let off = 0; off < chunk.length; off += BLOCK) {
    const end = Math.min(off + BLOCK, chunk.length);
    const zero = chunk.compare(ZERO_BLOCK, 0, end - off, off, end) === 0;
    if (!zero && runStart < 0) runStart = off;
    if (zero && runStart >= 0) {
      runs.push([runStart, off]);
      runStart = -1;
    }
  }
  if (runStart >= 0) runs.push([runStart, chunk.length]);
  return runs;
}

async function writevFully(fh: FileHandle, bufs: Buffer[], pos: number): Promise<void> {
  let rest = bufs;
  let at = pos;
  while (rest.length > 0) {
    let { bytesWritten } = await fh.writev(rest, at);
    at += bytesWritten;
    while (rest.length > 0 && bytesWritten >= rest[0]!.length) bytesWritten -= rest.shift()!.length;
    if (rest.length > 0 && bytesWritten > 0) rest = [rest[0]!.subarray(bytesWritten), ...rest.slice(1)];
  }
}

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
