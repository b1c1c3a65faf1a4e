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
// Like the feeder, the worker is plain JavaScript with only node: built-ins, started from a
// string: no build step and no TypeScript loader, so it starts in a few milliseconds.
import { MessageChannel, Worker } from "node:worker_threads";
import { releaseFifoOpener } from "./feeder.ts";

/** What the main thread tells the worker after a header (or after metadata it collected). */
export type UnpackerOrder =
  | { op: "write"; path: string; mode: number; size: number }
  | { op: "skip"; size: number }
  | { op: "collect"; size: number }
  | { op: "abort" };

/** What the worker asks or reports. `header` and `meta` wait for an order; the rest do not. */
export type UnpackerReport =
  | { t: "header"; block: Uint8Array }
  | { t: "meta"; data: Uint8Array }
  | { t: "progress"; bytes: number }
  | { t: "end"; bytes: number }
  | { t: "error"; message: string; code?: string; bomb?: boolean; path?: string };

const WORKER_SOURCE = `
const { parentPort, workerData, receiveMessageOnPort } = require("node:worker_threads");
const fs = require("node:fs");
const { fifo, port, wake, maxBytes } = workerData;
const BLOCK = 512, SPARSE = 4096, CHUNK = 1 << 20, PROGRESS_EVERY = 8 << 20;
const ZERO = Buffer.alloc(SPARSE);
const buf = Buffer.allocUnsafe(CHUNK);
let fd = -1, start = 0, end = 0, total = 0, reported = 0;

class Bomb extends Error {}
const truncated = () => new Error("unexpected end of archive");

// Posts a question and sleeps until the main thread's order arrives on the port.
function ask(msg) {
  Atomics.store(wake, 0, 0);
  parentPort.postMessage(msg);
  for (;;) {
    const got = receiveMessageOnPort(port);
    if (got) return got.message;
    Atomics.wait(wake, 0, 0, 1000);
  }
}

// Reads more of the stream behind what is buffered; false at EOF.
function more() {
  if (start > 0) { buf.copy(buf, 0, start, end); end -= start; start = 0; }
  const n = fs.readSync(fd, buf, end, CHUNK - end, null);
  if (n === 0) return false;
  end += n;
  total += n;
  if (total > maxBytes) throw new Bomb();
  if (total - reported >= PROGRESS_EVERY) { reported = total; parentPort.postMessage({ t: "progress", bytes: total }); }
  return true;
}

// Consumes n bytes, handing each buffered piece and its offset to use().
function take(n, use) {
  for (let done = 0; done < n; ) {
    if (start === end && !more()) throw truncated();
    const k = Math.min(n - done, end - start);
    if (use) use(buf.subarray(start, start + k), done);
    start += k;
    done += k;
  }
}

const padded = (n) => n + ((BLOCK - (n % BLOCK)) % BLOCK);

function isZero(b, from, to) { return b.compare(ZERO, 0, to - from, from, to) === 0; }

// Writes the member's data, leaving all-zero 4 KiB blocks (by file offset) as holes.
function writeMember(order) {
  const out = fs.openSync(order.path, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, order.mode);
  try {
    take(order.size, (piece, at) => {
      let run = -1;
      for (let off = 0; off < piece.length; ) {
        const next = Math.min(piece.length, off + SPARSE - ((at + off) % SPARSE));
        if (!isZero(piece, off, next)) { if (run < 0) run = off; }
        else if (run >= 0) { writeAll(out, piece, run, off, at + run); run = -1; }
        off = next;
      }
      if (run >= 0) writeAll(out, piece, run, piece.length, at + run);
    });
    fs.ftruncateSync(out, order.size);
  } finally {
    fs.closeSync(out);
  }
  take(padded(order.size) - order.size);
}

function writeAll(out, b, from, to, pos) {
  while (from < to) { const n = fs.writeSync(out, b, from, to - from, pos); from += n; pos += n; }
}

function run() {
  fd = fs.openSync(fifo, "r");
  let zeros = 0;
  for (;;) {
    while (end - start < BLOCK) if (!more()) { if (start === end) return; throw truncated(); }
    const block = buf.subarray(start, start + BLOCK);
    start += BLOCK;
    if (isZero(block, 0, BLOCK)) {
      if (++zeros === 2) break; // end of archive
      continue;
    }
    zeros = 0;
    let order = ask({ t: "header", block: Buffer.from(block) });
    if (order.op === "collect") {
      const data = Buffer.allocUnsafe(order.size);
      take(order.size, (piece, at) => piece.copy(data, at));
      take(padded(order.size) - order.size);
      order = ask({ t: "meta", data });
    }
    if (order.op === "abort") return;
    if (order.op === "write") writeMember(order);
    else take(padded(order.size));
  }
  while (more()) start = end; // trailing blocks: read to EOF so zstd finishes, still counted
}

try {
  run();
  parentPort.postMessage({ t: "end", bytes: total });
} catch (err) {
  if (err instanceof Bomb) parentPort.postMessage({ t: "error", bomb: true, message: "decompression bomb" });
  else parentPort.postMessage({ t: "error", message: err.message, code: err.code, path: err.path });
} finally {
  if (fd >= 0) fs.closeSync(fd);
}
`;

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
  const worker = new Worker(WORKER_SOURCE, {
    eval: true,
    workerData: { fifo: opts.fifo, port: port2, wake, maxBytes: opts.maxBytes },
    transferList: [port2],
    execArgv: [], // a TypeScript loader of the parent is not started again in the worker
  });
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
