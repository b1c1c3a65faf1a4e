// The data plane of bundle extraction, on its own thread. zstd writes the decoded tar into a
// FIFO; a small worker reads it with plain blocking reads into one reused 1 MiB buffer, walks
// the tar's block structure and writes member data with positioned writes, skipping all-zero
// 4 KiB blocks (they stay holes: ext4 images are mostly empty). Through the main thread's
// event loop and streams, the same 512 MiB cost about twice as much CPU (a callback, a buffer
// and a promise per 64 KiB), and a pull runs on two cores next to zstd and the download.
//
// The worker decides nothing. For every header it asks the main thread (a synchronous round
// trip: it blocks on an Atomics.wait until the answer is posted) and does what it is told:
// write N bytes to this path with this mode, skip N bytes, or hand over N bytes of metadata
// (PAX records, GNU long names). All rules about what may be written live in members.ts, on
// the main thread; the paths it sends are already checked and their parent directories made.
//
// The worker's code is unpacker-worker.ts, started through workers.ts.
import { MessageChannel } from "node:worker_threads";
import { releaseFifoOpener } from "./feeder.ts";
import type { UnpackerWorkerData } from "./unpacker-worker.ts";
import { startWorker } from "./workers.ts";

/** What the main thread tells the worker after a header (or after metadata it collected). */
export type UnpackerOrder = { op: "write"; path: string; mode: number; size: number } | { op: "skip"; size: number } | { op: "collect"; size: number } | { op: "abort" };

/** What the worker asks or reports. `header` and `meta` wait for an order; the rest do not. */
export type UnpackerReport =
  | { t: "header"; block: Uint8Array }
  | { t: "meta"; data: Uint8Array }
  | { t: "progress"; bytes: number }
  | { t: "end"; bytes: number }
  | { t: "error"; message: string; code?: string; bomb?: boolean; path?: string };

export interface UnpackerOptions {
  /** The FIFO zstd writes the decoded tar into. */
  fifo: string;
  /** Cap on the decoded bytes (decompression bomb). */
  maxBytes: number;
  /** Answers a header or collected metadata; may be async (it makes directories). */
  decide(report: Extract<UnpackerReport, { t: "header" | "meta" }>): Promise<UnpackerOrder> | UnpackerOrder;
  onProgress?(bytes: number): void;
}

/** The worker's own failure: a system error while writing (code, path), a damaged archive, or the cap. */
export class UnpackerFailure extends Error {
  constructor(
    message: string,
    readonly code?: string,
    readonly path?: string,
    readonly bomb = false,
  ) {
    super(message);
  }
}

/**
 * A running unpacker worker. `done` resolves with the decoded byte count once the archive
 * ended cleanly, or rejects with what `decide` threw or an UnpackerFailure. `stop()` releases
 * the worker wherever it waits and ends it.
 */
export interface Unpacker {
  done: Promise<number>;
  stop(): Promise<void>;
}

export function startUnpacker(opts: UnpackerOptions): Unpacker {
  const { port1, port2 } = new MessageChannel();
  const wake = new Int32Array(new SharedArrayBuffer(4));
  const workerData: UnpackerWorkerData = { fifo: opts.fifo, port: port2, wake, maxBytes: opts.maxBytes };
  const worker = startWorker("unpacker", { workerData, transferList: [port2] });
  const answer = (order: UnpackerOrder) => {
    port1.postMessage(order);
    Atomics.store(wake, 0, 1);
    Atomics.notify(wake, 0);
  };
  let resolve: (bytes: number) => void = () => undefined;
  let reject: (err: unknown) => void = () => undefined;
  const done = new Promise<number>((res, rej) => ((resolve = res), (reject = rej)));
  worker.on("message", (m: UnpackerReport) => {
    if (m.t === "header" || m.t === "meta") {
      Promise.resolve()
        .then(() => opts.decide(m))
        .then(answer, (err: unknown) => {
          answer({ op: "abort" });
          reject(err); // the first verdict stands: the worker's "end" after an abort changes nothing
        });
    } else if (m.t === "progress") opts.onProgress?.(m.bytes);
    else if (m.t === "end") resolve(m.bytes);
    else reject(new UnpackerFailure(m.message, m.code, m.path, m.bomb));
  });
  worker.on("error", (err) => reject(new UnpackerFailure(err.message)));
  worker.on("exit", () => reject(new UnpackerFailure("unpacker thread stopped")));
  return {
    done,
    stop: async () => {
      answer({ op: "abort" }); // a worker waiting for an order
      releaseFifoOpener(opts.fifo, "reader"); // a worker still waiting for zstd to open it
      await worker.terminate();
      port1.close();
    },
  };
}
