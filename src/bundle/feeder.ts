// The byte-moving half of a pull, on two threads of its own. The main thread only receives
// the download, with the socket reading straight into 1 MiB batches (http.ts), which travel
// (transferred, never copied) along a chain of two small workers: the first writes each batch into the FIFO that zstd
// reads, with plain blocking writes (a blocked writer is the backpressure), and hands it to
// the second, which hashes it and appends it to the partial cache file, then returns it to
// the main thread for reuse. So zstd gets every batch before it is hashed and never waits for
// the hash (with one thread doing both, zstd sat idle whenever that thread was hashing; batches
// in shared memory, read by both workers at once, made the main thread's copies slow).
//
// The workers' code is feeder-worker.ts, started through workers.ts.
import { closeSync, constants, openSync } from "node:fs";
import { MessageChannel, type MessagePort, type Worker } from "node:worker_threads";
import { BangerError, ErrorCode, cancelled } from "../util/errors.ts";
import { runChecked } from "../util/exec.ts";
import type { FeederWorkerData, FeederWorkerMessage } from "./feeder-worker.ts";
import { startWorker } from "./workers.ts";

const BATCH_BYTES = 1024 * 1024;
/** A batch with less room than this goes out, so socket reads stay large. */
const MIN_ROOM = 64 * 1024;
/** Batches in flight to the workers before commit() makes the caller wait (about as many MiB). */
const MAX_INFLIGHT = 8;

type Role = FeederWorkerData["role"];

/**
 * Lets a thread blocked opening `path` through by opening the other end for an instant:
 * `waiting` is the end that thread asked for. Its next read then sees EOF, or its next write
 * EPIPE. Nothing happens when nobody waits or the FIFO is gone.
 */
export function releaseFifoOpener(path: string, waiting: "reader" | "writer"): void {
  try {
    closeSync(openSync(path, (waiting === "reader" ? constants.O_WRONLY : constants.O_RDONLY) | constants.O_NONBLOCK));
  } catch {
    /* no one waiting, or already removed */
  }
}

/** Creates FIFOs at `paths` (Node has no mkfifo; coreutils' mkfifo is everywhere zstd is). */
export async function makeFifos(paths: string[], signal?: AbortSignal): Promise<void> {
  await runChecked(["mkfifo", "-m", "600", "--", ...paths], { signal, timeoutMs: 10_000 });
}

/**
 * Feeds a FIFO (zstd's input) with the bytes read into its batches (`space()`, `commit()`),
 * through two workers, the second of which hashes them and, with `teeFd`, appends them to that file. Call `finish()` after the
 * last commit: it ends the FIFO's stream and resolves with the sha256 (hex). Always call
 * `close()` afterwards, also on failure (after stopping the FIFO's reader, so a blocked write
 * ends with EPIPE): once it resolved, nothing more is written to `teeFd`. The caller aborts
 * `signal` when the reader fails, so nothing waits on a worker that can no longer make progress.
 */
export class Feeder {
  private readonly workers: Record<Role, Worker>;
  private batch: Buffer = Buffer.allocUnsafeSlow(BATCH_BYTES);
  private fill = 0;
  /** Batches the hasher handed back, reused so a pull allocates only MAX_INFLIGHT + 1 of them. */
  private readonly spare: Buffer[] = [];
  private inflight = 0;
  private failure: Error | undefined;
  /** Callers of drained() waiting for room: a reader may ask again before an earlier wait ended. */
  private waiters: Array<() => void> = [];
  private readonly ending: { digest?: string; fifoClosed: boolean; resolve?: (hex: string) => void; reject?: (err: Error) => void } = { fifoClosed: false };

  /** `signal` aborting fails the feeder at once: a reader waiting on a worker stuck at the FIFO returns. */
  constructor(
    private readonly fifo: string,
    teeFd: number | undefined,
    signal: AbortSignal,
  ) {
    const link = new MessageChannel();
    this.workers = {
      fifo: this.startWorker("fifo", { role: "fifo", fifo, next: link.port1 }, [link.port1]),
      hash: this.startWorker("hash", { role: "hash", teeFd: teeFd ?? -1, from: link.port2 }, [link.port2]),
    };
    if (signal.aborted) this.fail(cancelled());
    else signal.addEventListener("abort", () => this.fail(cancelled()), { once: true });
  }

  /** Free room in the current batch (at least MIN_ROOM bytes), for the download to be read straight into. */
  space(): Buffer {
    return this.batch.subarray(this.fill);
  }

  /**
   * Takes the `n` bytes just written at the start of `space()`. Returns a promise only when
   * the workers are too far behind: the reader waits for it before reading more.
   */
  commit(n: number): Promise<void> | undefined {
    if (this.failure) return Promise.reject(this.failure);
    this.fill += n;
    if (this.batch.length - this.fill < MIN_ROOM) this.send();
    return this.inflight >= MAX_INFLIGHT ? this.drained() : undefined;
  }

  /** Sends what is left, ends the FIFO's stream and resolves with the sha256 (hex) of all bytes. */
  finish(): Promise<string> {
    if (this.failure) return Promise.reject(this.failure);
    this.send();
    return new Promise((resolve, reject) => {
      Object.assign(this.ending, { resolve, reject });
      this.workers.fifo.postMessage("end"); // passed down the chain to the hasher
    });
  }

  async close(): Promise<void> {
    this.failure ??= new Error("closed");
    releaseFifoOpener(this.fifo, "writer"); // a worker whose reader never came
    await Promise.all([this.workers.fifo.terminate(), this.workers.hash.terminate()]);
  }

  private startWorker(role: Role, workerData: FeederWorkerData, transferList: MessagePort[]): Worker {
    const worker = startWorker("feeder", { workerData, transferList });
    worker.on("message", (m: FeederWorkerMessage) => this.onMessage(role, m));
    worker.on("error", (err) => this.fail(err));
    worker.on("exit", () => this.fail(new Error("feeder thread stopped")));
    return worker;
  }

  private async drained(): Promise<void> {
    while (this.inflight >= MAX_INFLIGHT && !this.failure) await new Promise<void>((resolve) => this.waiters.push(resolve));
    if (this.failure) throw this.failure;
  }

  private send(): void {
    if (this.fill === 0) return;
    const out = this.batch.subarray(0, this.fill);
    this.batch = this.spare.pop() ?? Buffer.allocUnsafeSlow(BATCH_BYTES);
    this.fill = 0;
    this.inflight++;
    this.workers.fifo.postMessage(out, [out.buffer as ArrayBuffer]);
  }

  private onMessage(role: Role, m: FeederWorkerMessage): void {
    if (m.t === "ack") {
      this.inflight--;
      this.spare.push(Buffer.from(m.buf.buffer, 0, m.buf.buffer.byteLength));
      this.wake();
    } else if (m.t === "ended" || m.t === "digest") {
      if (m.t === "digest") this.ending.digest = m.hex;
      else this.ending.fifoClosed = true;
      if (this.ending.digest !== undefined && this.ending.fifoClosed) this.ending.resolve?.(this.ending.digest);
    } else if (role === "hash") {
      this.fail(Object.assign(new BangerError(ErrorCode.Failed, `cannot write the download to the cache: ${m.message}`, "check free space under the banger root"), { code: m.code }));
    } else {
      this.fail(Object.assign(new Error(`zstd input: ${m.message}`), { code: m.code })); // zstd stopped: the decoder says why
    }
  }

  private fail(err: Error): void {
    this.failure ??= err;
    this.wake();
    this.ending.reject?.(this.failure);
  }

  private wake(): void {
    const waiting = this.waiters;
    this.waiters = [];
    for (const w of waiting) w();
  }
}
