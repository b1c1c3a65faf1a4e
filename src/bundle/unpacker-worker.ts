// The unpacker's thread (unpacker.ts starts it and says why it exists): reads zstd's output from
// the FIFO with blocking reads into one reused 1 MiB buffer, walks the tar's blocks, asks the main
// thread about every header and does what it is told, writing member data with positioned
// writes and leaving all-zero 4 KiB blocks as holes. Only node: built-ins and type imports, so
// its build (dist/workers/unpacker.js) is small and starts in milliseconds.
import * as fs from "node:fs";
import { type MessagePort, parentPort, receiveMessageOnPort, workerData } from "node:worker_threads";
import type { UnpackerOrder, UnpackerReport } from "./unpacker.ts";

/** What unpacker.ts passes as workerData. */
export interface UnpackerWorkerData {
  /** The FIFO zstd writes the decoded tar into. */
  fifo: string;
  /** Where the main thread's orders arrive. */
  port: MessagePort;
  /** Set to 1 and notified when an order was posted: the worker sleeps on it. */
  wake: Int32Array;
  /** Cap on the decoded bytes (decompression bomb). */
  maxBytes: number;
}

const parent = parentPort!;
const { fifo, port, wake, maxBytes } = workerData as UnpackerWorkerData;
const BLOCK = 512;
const SPARSE = 4096;
const CHUNK = 1 << 20;
const PROGRESS_EVERY = 8 << 20;
const ZERO = Buffer.alloc(SPARSE);
const buf = Buffer.allocUnsafe(CHUNK);
let fd = -1;
let start = 0;
let end = 0;
let total = 0;
let reported = 0;

class Bomb extends Error {}
const truncated = () => new Error("unexpected end of archive");

function post(m: UnpackerReport): void {
  parent.postMessage(m);
}

// Posts a question and sleeps until the main thread's order arrives on the port.
function ask(msg: Extract<UnpackerReport, { t: "header" | "meta" }>): UnpackerOrder {
  Atomics.store(wake, 0, 0);
  post(msg);
  for (;;) {
    const got = receiveMessageOnPort(port);
    if (got) return got.message as UnpackerOrder;
    Atomics.wait(wake, 0, 0, 1000);
  }
}

// Reads more of the stream behind what is buffered; false at EOF.
function more(): boolean {
  if (start > 0) {
    buf.copy(buf, 0, start, end);
    end -= start;
    start = 0;
  }
  const n = fs.readSync(fd, buf, end, CHUNK - end, null);
  if (n === 0) return false;
  end += n;
  total += n;
  if (total > maxBytes) throw new Bomb();
  if (total - reported >= PROGRESS_EVERY) {
    reported = total;
    post({ t: "progress", bytes: total });
  }
  return true;
}

// Consumes n bytes, handing each buffered piece and its offset to use().
function take(n: number, use?: (piece: Buffer, at: number) => void): void {
  for (let done = 0; done < n; ) {
    if (start === end && !more()) throw truncated();
    const k = Math.min(n - done, end - start);
    if (use) use(buf.subarray(start, start + k), done);
    start += k;
    done += k;
  }
}

const padded = (n: number) => n + ((BLOCK - (n % BLOCK)) % BLOCK);

function isZero(b: Buffer, from: number, to: number): boolean {
  return b.compare(ZERO, 0, to - from, from, to) === 0;
}

// Writes the member's data, leaving all-zero 4 KiB blocks (by file offset) as holes.
function writeMember(order: Extract<UnpackerOrder, { op: "write" }>): void {
  const out = fs.openSync(order.path, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, order.mode);
  try {
    take(order.size, (piece, at) => {
      let run = -1;
      for (let off = 0; off < piece.length; ) {
        const next = Math.min(piece.length, off + SPARSE - ((at + off) % SPARSE));
        if (!isZero(piece, off, next)) {
          if (run < 0) run = off;
        } else if (run >= 0) {
          writeAll(out, piece, run, off, at + run);
          run = -1;
        }
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

function writeAll(out: number, b: Buffer, from: number, to: number, pos: number): void {
  while (from < to) {
    const n = fs.writeSync(out, b, from, to - from, pos);
    from += n;
    pos += n;
  }
}

function run(): void {
  fd = fs.openSync(fifo, "r");
  let zeros = 0;
  for (;;) {
    while (end - start < BLOCK) {
      if (!more()) {
        if (start === end) return;
        throw truncated();
      }
    }
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
  post({ t: "end", bytes: total });
} catch (err) {
  if (err instanceof Bomb) post({ t: "error", bomb: true, message: "decompression bomb" });
  else {
    const e = err as NodeJS.ErrnoException;
    post({ t: "error", message: e.message, code: e.code, path: e.path });
  }
} finally {
  if (fd >= 0) fs.closeSync(fd);
}
