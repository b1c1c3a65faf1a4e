// The feeder's two threads (feeder.ts starts them): one module, two roles. Only node: built-ins
// and type imports, so its build (dist/workers/feeder.js) is small and starts in milliseconds.
// "fifo" writes each batch into zstd's FIFO with plain blocking writes (a blocked writer is the
// backpressure) and passes it on; "hash" hashes it, appends it to the partial cache file and
// hands it back to the main thread for reuse.
import { createHash } from "node:crypto";
import { closeSync, constants, openSync, writeSync } from "node:fs";
import { type MessagePort, parentPort, workerData } from "node:worker_threads";

/** What feeder.ts passes as workerData: the first link gets the FIFO, the second the tee file. */
export type FeederWorkerData = { role: "fifo"; fifo: string; next: MessagePort } | { role: "hash"; teeFd: number; from: MessagePort };

/** What the workers send the main thread. */
export type FeederWorkerMessage = { t: "ack"; buf: Uint8Array } | { t: "ended" } | { t: "digest"; hex: string } | { t: "error"; message: string; code?: string };

/** A batch, or "end" after the last one. */
type Batch = Uint8Array | "end";

const parent = parentPort!;
const data = workerData as FeederWorkerData;
let failed = false;

function post(m: FeederWorkerMessage, transfer: ArrayBuffer[] = []): void {
  parent.postMessage(m, transfer);
}

function writeAll(fd: number, b: Uint8Array): void {
  for (let off = 0; off < b.length; ) off += writeSync(fd, b, off, b.length - off);
}

function fail(err: unknown): void {
  failed = true;
  const e = err as NodeJS.ErrnoException;
  post({ t: "error", message: e.message, code: e.code });
}

if (data.role === "fifo") {
  // First link: into zstd's FIFO, then on to the hasher.
  const { fifo, next } = data;
  let out = -1;
  parent.on("message", (m: Batch) => {
    if (failed) return;
    try {
      if (out < 0) out = openSync(fifo, constants.O_WRONLY);
      if (m === "end") {
        closeSync(out);
        post({ t: "ended" });
        return next.postMessage("end");
      }
      writeAll(out, m);
      next.postMessage(m, [m.buffer as ArrayBuffer]);
    } catch (err) {
      if (out >= 0) {
        try {
          closeSync(out);
        } catch {
          /* already failing */
        }
      }
      fail(err);
    }
  });
} else {
  // Second link: hash, copy to the cache file, and the batch goes back for reuse.
  const { teeFd, from } = data;
  const hash = createHash("sha256");
  from.on("message", (m: Batch) => {
    if (failed) return;
    try {
      if (m === "end") return post({ t: "digest", hex: hash.digest("hex") });
      hash.update(m);
      if (teeFd >= 0) writeAll(teeFd, m);
      post({ t: "ack", buf: m }, [m.buffer as ArrayBuffer]);
    } catch (err) {
      fail(err);
    }
  });
}
