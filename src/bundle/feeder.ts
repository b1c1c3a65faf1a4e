// The byte-moving half of a pull, on its own thread. A pull's main thread also has zstd's
// output, the tar parser and the extracted files to serve; with the SHA-256, the cache copy
// and the writes into zstd on top, it was the bottleneck (the `curl | zstd | tar` baseline
// spreads that work over three processes). So the main thread only receives the download and
// gathers it into 1 MiB batches, which are transferred (not copied) to a small worker thread
// that hashes them, appends them to the partial cache file and writes them into a FIFO that
// zstd reads, with plain blocking writes (a blocked worker is the backpressure). Batches come
// back with the acknowledgement and are reused.
//
// The worker is plain JavaScript with only node: built-ins, started from a string: it needs no
// build step and no TypeScript loader, so it starts in a few milliseconds everywhere.
import { closeSync, constants, openSync } from "node:fs";
import { Worker } from "node:worker_threads";
import { BangerError, ErrorCode, cancelled } from "../util/errors.ts";
import { runChecked } from "../util/exec.ts";

const BATCH_BYTES = 1024 * 1024;
/** Batches in flight to the worker before push() makes the caller wait (about as many MiB). */
const MAX_INFLIGHT = 4;

const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const { createHash } = require("node:crypto");
const { closeSync, constants, openSync, writeSync } = require("node:fs");
const hash = createHash("sha256");
const { fifo, teeFd } = workerData;
let out = -1;
let failed = false;
const writeAll = (fd, b) => { for (let off = 0; off < b.length; ) off += writeSync(fd, b, off, b.length - off); };
parentPort.on("message", (m) => {
  if (failed) return;
  let step = "fifo";
  try {
    if (out < 0) out = openSync(fifo, constants.O_WRONLY);
    if (m === "end") {
      closeSync(out);
      return parentPort.postMessage({ t: "digest", hex: hash.digest("hex") });
    }
    hash.update(m);
    step = "tee";
    if (teeFd >= 0) writeAll(teeFd, m);
    step = "fifo";
    writeAll(out, m);
    parentPort.postMessage({ t: "ack", buf: m }, [m.buffer]);
  } catch (err) {
    failed = true;
    if (out >= 0) try { closeSync(out); } catch {}
    parentPort.postMessage({ t: "error", step, message: err.message, code: err.code });
  }
});
`;

type WorkerMessage = { t: "ack"; buf: Uint8Array } | { t: "digest"; hex: string } | { t: "error"; step: "fifo" | "tee"; message: string; code?: string };

/** Creates a FIFO at `path` (Node has no mkfifo; coreutils' mkfifo is everywhere zstd is). */
export async function makeFifo(path: string, signal?: AbortSignal): Promise<void> {
  await runChecked(["mkfifo", "-m", "600", "--", path], { signal, timeoutMs: 10_000 });
}

/**
 * Feeds a FIFO (zstd's input) from the main thread's chunks through a worker that also hashes
 * them and, with `teeFd`, appends them to that file. Call `finish()` after the last push: it
 * ends the FIFO's stream and resolves with the sha256 (hex). Always call `close()` afterwards,
 * also on failure (after stopping the FIFO's reader, so a blocked write ends with EPIPE): once
 * it resolved, nothing more is written to `teeFd`. The caller aborts `signal` when the reader
 * fails, so nothing waits on a worker that can no longer make progress.
 */
export class Feeder {
  private readonly worker: Worker;
  private batch: Buffer = Buffer.allocUnsafeSlow(BATCH_BYTES);
  private fill = 0;
  /** Batches the worker handed back, reused so a pull allocates only MAX_INFLIGHT + 1 of them. */
  private readonly spare: Buffer[] = [];
  private inflight = 0;
  private failure: Error | undefined;
  private waiter: (() => void) | undefined;
  private digestWaiter: { resolve: (hex: string) => void; reject: (err: Error) => void } | undefined;

  /** `signal` aborting fails the feeder at once: a push waiting on a worker stuck at the FIFO returns. */
  constructor(
    private readonly fifo: string,
    teeFd: number | undefined,
    signal: AbortSignal,
  ) {
    // execArgv: [] so a TypeScript loader of the parent is not started again in the worker.
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { fifo, teeFd: teeFd ?? -1 }, execArgv: [] });
    this.worker.on("message", (m: WorkerMessage) => this.onMessage(m));
    this.worker.on("error", (err) => this.fail(err));
    this.worker.on("exit", () => this.fail(new Error("feeder thread stopped")));
    if (signal.aborted) this.fail(cancelled());
    else signal.addEventListener("abort", () => this.fail(cancelled()), { once: true });
  }

  /** Takes a copy of `chunk`; returns a promise only when the worker is too far behind. */
  push(chunk: Buffer): Promise<void> | undefined {
    if (this.failure) return Promise.reject(this.failure);
    for (let off = 0; off < chunk.length; ) {
      const n = chunk.copy(this.batch, this.fill, off);
      this.fill += n;
      off += n;
      if (this.fill === this.batch.length) this.send();
    }
    return this.inflight >= MAX_INFLIGHT ? this.drained() : undefined;
  }

  /** Sends what is left, ends the FIFO's stream and resolves with the sha256 (hex) of all bytes. */
  finish(): Promise<string> {
    if (this.failure) return Promise.reject(this.failure);
    this.send();
    return new Promise((resolve, reject) => {
      this.digestWaiter = { resolve, reject };
      this.worker.postMessage("end");
    });
  }

  async close(): Promise<void> {
    this.failure ??= new Error("closed");
    // A worker still waiting to open the FIFO (its reader never came) is let through; its
    // first write then fails with EPIPE because this reader is gone again.
    try {
      closeSync(openSync(this.fifo, constants.O_RDONLY | constants.O_NONBLOCK));
    } catch {
      /* already removed */
    }
    await this.worker.terminate();
  }

  private async drained(): Promise<void> {
    while (this.inflight >= MAX_INFLIGHT && !this.failure) await new Promise<void>((resolve) => (this.waiter = resolve));
    if (this.failure) throw this.failure;
  }

  private send(): void {
    if (this.fill === 0) return;
    const out = this.batch.subarray(0, this.fill);
    this.batch = this.spare.pop() ?? Buffer.allocUnsafeSlow(BATCH_BYTES);
    this.fill = 0;
    this.inflight++;
    this.worker.postMessage(out, [out.buffer as ArrayBuffer]);
  }

  private onMessage(m: WorkerMessage): void {
    if (m.t === "ack") {
      this.inflight--;
      this.spare.push(Buffer.from(m.buf.buffer, 0, m.buf.buffer.byteLength));
      this.wake();
    } else if (m.t === "digest") {
      this.digestWaiter?.resolve(m.hex);
    } else if (m.step === "tee") {
      this.fail(Object.assign(new BangerError(ErrorCode.Failed, `cannot write the download to the cache: ${m.message}`, "check free space under the banger root"), { code: m.code }));
    } else {
      this.fail(Object.assign(new Error(`zstd input: ${m.message}`), { code: m.code })); // zstd stopped: the decoder says why
    }
  }

  private fail(err: Error): void {
    this.failure ??= err;
    this.wake();
    this.digestWaiter?.reject(this.failure);
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }
}
