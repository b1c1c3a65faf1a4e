// The byte-moving half of a pull, on two threads of its own. The main thread only receives
// the download and gathers it into 1 MiB batches in shared memory, which two small workers
// read at once: one writes them into the FIFO that zstd reads, with plain blocking writes (a
// blocked writer is the backpressure), the other hashes them and appends them to the partial
// cache file. With one thread doing both, zstd sat idle whenever that thread was hashing (the
// `curl | zstd | tar` baseline keeps every stage busy at once). A batch is reused once both
// workers are done with it.
//
// The workers are plain JavaScript with only node: built-ins, started from a string: they need
// no build step and no TypeScript loader, so they start in a few milliseconds everywhere.
import { closeSync, constants, openSync } from "node:fs";
import { Worker } from "node:worker_threads";
import { BangerError, ErrorCode, cancelled } from "../util/errors.ts";
import { runChecked } from "../util/exec.ts";

const BATCH_BYTES = 1024 * 1024;
/** Batches in flight to the workers before push() makes the caller wait (about as many MiB). */
const MAX_INFLIGHT = 8;

type Role = "fifo" | "hash";

const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const { createHash } = require("node:crypto");
const { closeSync, constants, openSync, writeSync } = require("node:fs");
const { role, fifo, teeFd } = workerData;
const hash = role === "hash" ? createHash("sha256") : undefined;
let out = -1;
let failed = false;
const writeAll = (fd, b) => { for (let off = 0; off < b.length; ) off += writeSync(fd, b, off, b.length - off); };
parentPort.on("message", (m) => {
  if (failed) return;
  try {
    if (role === "fifo") {
      if (out < 0) out = openSync(fifo, constants.O_WRONLY);
      if (m === "end") {
        closeSync(out);
        return parentPort.postMessage({ t: "ended" });
      }
      writeAll(out, m.bytes);
    } else {
      if (m === "end") return parentPort.postMessage({ t: "digest", hex: hash.digest("hex") });
      hash.update(m.bytes);
      if (teeFd >= 0) writeAll(teeFd, m.bytes);
    }
    parentPort.postMessage({ t: "ack", slot: m.slot });
  } catch (err) {
    failed = true;
    if (out >= 0) try { closeSync(out); } catch {}
    parentPort.postMessage({ t: "error", message: err.message, code: err.code });
  }
});
`;

type WorkerMessage = { t: "ack"; slot: number } | { t: "ended" } | { t: "digest"; hex: string } | { t: "error"; message: string; code?: string };

/** Creates a FIFO at `path` (Node has no mkfifo; coreutils' mkfifo is everywhere zstd is). */
export async function makeFifo(path: string, signal?: AbortSignal): Promise<void> {
  await runChecked(["mkfifo", "-m", "600", "--", path], { signal, timeoutMs: 10_000 });
}

/**
 * Feeds a FIFO (zstd's input) from the main thread's chunks through two workers, one of which
 * also hashes them and, with `teeFd`, appends them to that file. Call `finish()` after the last
 * push: it ends the FIFO's stream and resolves with the sha256 (hex). Always call `close()`
 * afterwards, also on failure (after stopping the FIFO's reader, so a blocked write ends with
 * EPIPE): once it resolved, nothing more is written to `teeFd`. The caller aborts `signal` when
 * the reader fails, so nothing waits on a worker that can no longer make progress.
 */
export class Feeder {
  private readonly workers: Record<Role, Worker>;
  /** Batches in shared memory, so both workers read the same bytes without a copy. */
  private readonly slots: Buffer[] = [];
  /** Workers still reading each slot; a slot is free again at 0. */
  private readonly readers: number[] = [];
  private readonly free: number[] = [];
  private slot: number;
  private fill = 0;
  private inflight = 0;
  private failure: Error | undefined;
  private waiter: (() => void) | undefined;
  private readonly ending: { digest?: string; fifoClosed: boolean; resolve?: (hex: string) => void; reject?: (err: Error) => void } = { fifoClosed: false };

  /** `signal` aborting fails the feeder at once: a push waiting on a worker stuck at the FIFO returns. */
  constructor(
    private readonly fifo: string,
    teeFd: number | undefined,
    signal: AbortSignal,
  ) {
    this.workers = { fifo: this.startWorker("fifo", teeFd), hash: this.startWorker("hash", teeFd) };
    this.slot = this.takeSlot();
    if (signal.aborted) this.fail(cancelled());
    else signal.addEventListener("abort", () => this.fail(cancelled()), { once: true });
  }

  /** Takes a copy of `chunk`; returns a promise only when the workers are too far behind. */
  push(chunk: Buffer): Promise<void> | undefined {
    if (this.failure) return Promise.reject(this.failure);
    for (let off = 0; off < chunk.length; ) {
      const n = chunk.copy(this.slots[this.slot]!, this.fill, off);
      this.fill += n;
      off += n;
      if (this.fill === BATCH_BYTES) this.send();
    }
    return this.inflight >= MAX_INFLIGHT ? this.drained() : undefined;
  }

  /** Sends what is left, ends the FIFO's stream and resolves with the sha256 (hex) of all bytes. */
  finish(): Promise<string> {
    if (this.failure) return Promise.reject(this.failure);
    this.send();
    return new Promise((resolve, reject) => {
      Object.assign(this.ending, { resolve, reject });
      this.workers.fifo.postMessage("end");
      this.workers.hash.postMessage("end");
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
    await Promise.all([this.workers.fifo.terminate(), this.workers.hash.terminate()]);
  }

  private startWorker(role: Role, teeFd: number | undefined): Worker {
    // execArgv: [] so a TypeScript loader of the parent is not started again in the worker.
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { role, fifo: this.fifo, teeFd: teeFd ?? -1 }, execArgv: [] });
    worker.on("message", (m: WorkerMessage) => this.onMessage(role, m));
    worker.on("error", (err) => this.fail(err));
    worker.on("exit", () => this.fail(new Error("feeder thread stopped")));
    return worker;
  }

  private takeSlot(): number {
    const free = this.free.pop();
    if (free !== undefined) return free;
    this.slots.push(Buffer.from(new SharedArrayBuffer(BATCH_BYTES)));
    this.readers.push(0);
    return this.slots.length - 1;
  }

  private async drained(): Promise<void> {
    while (this.inflight >= MAX_INFLIGHT && !this.failure) await new Promise<void>((resolve) => (this.waiter = resolve));
    if (this.failure) throw this.failure;
  }

  private send(): void {
    if (this.fill === 0) return;
    const message = { slot: this.slot, bytes: this.slots[this.slot]!.subarray(0, this.fill) };
    this.readers[this.slot] = 2;
    this.inflight++;
    this.workers.fifo.postMessage(message);
    this.workers.hash.postMessage(message);
    this.slot = this.takeSlot();
    this.fill = 0;
  }

  private onMessage(role: Role, m: WorkerMessage): void {
    if (m.t === "ack") {
      if (--this.readers[m.slot]! > 0) return;
      this.free.push(m.slot);
      this.inflight--;
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
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }
}
