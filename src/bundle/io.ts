// Small byte-moving helpers shared by the download pump and the extractor.
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import type { Writable } from "node:stream";
import type { Progress, ProgressEvent } from "../util/progress.ts";

const BATCH_BYTES = 1024 * 1024;
const BLOCK = 4096;
const ZERO_BLOCK = Buffer.alloc(BLOCK);

/**
 * Writes a stream of chunks to a file in ~1 MiB writev calls, one in flight while the next
 * batch fills: one thread-pool round trip per 64 KiB chunk costs more than the data itself.
 * With `sparse`, all-zero 4 KiB blocks are skipped and stay holes (the file must be new; the
 * caller sets the final size with truncate).
 */
export class BatchedFileWriter {
  private batch: Buffer[] = [];
  private batchBytes = 0;
  private batchPos = 0;
  private pos = 0;
  private inflight: Promise<void> = Promise.resolve();

  constructor(
    private readonly fh: FileHandle,
    private readonly sparse = false,
  ) {}

  async write(chunk: Buffer): Promise<void> {
    if (this.sparse) for (const [start, end] of nonZeroRuns(chunk)) await this.append(chunk.subarray(start, end), this.pos + start);
    else await this.append(chunk, this.pos);
    this.pos += chunk.length;
  }

  /** Writes what is pending and waits for it; call before closing. */
  async finish(): Promise<void> {
    await this.flush();
    await this.inflight;
  }

  private async append(buf: Buffer, at: number): Promise<void> {
    if (this.batchBytes > 0 && at !== this.batchPos + this.batchBytes) await this.flush();
    if (this.batchBytes === 0) this.batchPos = at;
    this.batch.push(buf);
    this.batchBytes += buf.length;
    if (this.batchBytes >= BATCH_BYTES) await this.flush();
  }

  private async flush(): Promise<void> {
    if (this.batchBytes === 0) return;
    const bufs = this.batch;
    const at = this.batchPos;
    this.batch = [];
    this.batchBytes = 0;
    await this.inflight;
    this.inflight = writevFully(this.fh, bufs, at);
    this.inflight.catch(() => undefined); // observed at the next flush or finish
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

/**
 * Writes `chunk` to a stream, waiting for it to drain only once more than `maxBuffered` bytes
 * are queued: a child's stdin has a 16 KiB high-water mark, and waiting on every 64 KiB
 * chunk turns the transfer into a ping-pong with the child. Rejects if the stream broke.
 */
export function writeTo(stream: Writable, chunk: Buffer, maxBuffered = 1024 * 1024): Promise<void> {
  return new Promise((resolve, reject) => {
    if (stream.destroyed || stream.writableEnded) return reject(new Error("stream closed"));
    stream.write(chunk);
    if (stream.writableLength <= maxBuffered) return resolve();
    const settle = (err?: Error) => {
      stream.off("drain", onDrain).off("error", onError).off("close", onClose);
      if (err) reject(err);
      else resolve();
    };
    const onDrain = () => settle();
    const onError = (err: Error) => settle(err);
    const onClose = () => settle(new Error("stream closed"));
    stream.on("drain", onDrain).on("error", onError).on("close", onClose);
  });
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
