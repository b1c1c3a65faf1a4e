import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { closeSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { makeTempHome } from "../../test/helpers.ts";
import { Feeder, makeFifos } from "./feeder.ts";

let home: { home: string; cleanup: () => void };
let n = 0;
before(() => {
  home = makeTempHome();
});
after(() => home.cleanup());

/** A reader on the FIFO (cat into a file), as zstd would be. */
function reader(fifo: string, out: string) {
  const child = spawn("sh", ["-c", 'exec cat -- "$1" > "$2"', "sh", fifo, out], { stdio: "ignore" });
  return { child, exited: new Promise<number | null>((resolve) => child.on("close", resolve)) };
}

/** Writes `data` into the feeder's batches as a socket read would, `piece` bytes at most per read. */
async function push(feeder: Feeder, data: Buffer, piece = 65536): Promise<void> {
  for (let off = 0; off < data.length; ) {
    const room = feeder.space();
    const n = data.copy(room, 0, off, Math.min(data.length, off + piece, off + room.length));
    off += n;
    await feeder.commit(n);
  }
}

test("the feeder hashes, copies to the tee file and writes everything into the FIFO, in order", async () => {
  const fifo = join(home.home, `f${++n}.fifo`);
  await makeFifos([fifo]);
  const data = randomBytes(5 * 1024 * 1024 + 123);
  const r = reader(fifo, join(home.home, `out${n}`));
  const teePath = join(home.home, `tee${n}`);
  const tee = openSync(teePath, "w");
  const feeder = new Feeder(fifo, tee, new AbortController().signal);
  try {
    await push(feeder, data, 100_003); // reads that straddle batch boundaries
    assert.equal(await feeder.finish(), createHash("sha256").update(data).digest("hex"));
  } finally {
    await feeder.close();
    closeSync(tee);
  }
  assert.equal(await r.exited, 0);
  assert.ok(readFileSync(join(home.home, `out${n}`)).equals(data));
  assert.ok(readFileSync(teePath).equals(data));
});

test("every wait for room ends once the reader catches up, however many were handed out", async () => {
  const fifo = join(home.home, `f${++n}.fifo`);
  await makeFifos([fifo]);
  const feeder = new Feeder(fifo, undefined, new AbortController().signal);
  try {
    // No reader yet: batches pile up, and past the in-flight limit every commit returns a wait
    // (a TLS socket keeps delivering what it decrypted while its reader is told to wait).
    const waits: Promise<void>[] = [];
    for (let i = 0; i < 12; i++) {
      const w = feeder.commit(feeder.space().length);
      if (w) waits.push(w);
    }
    assert.ok(waits.length >= 3, `several waits handed out (${waits.length})`);
    const r = reader(fifo, "/dev/null");
    const timedOut = new Promise((_, reject) => setTimeout(() => reject(new Error("a wait never ended")), 10_000));
    await Promise.race([Promise.all(waits), timedOut]);
    await feeder.finish();
    assert.equal(await r.exited, 0);
  } finally {
    await feeder.close();
  }
});

test("a reader that goes away fails the feeder instead of blocking it, and close() returns, also when the reader never opened", async () => {
  const fifo = join(home.home, `f${++n}.fifo`);
  await makeFifos([fifo]);
  const r = reader(fifo, "/dev/null");
  // As in a pull: the reader's end aborts the feeder (the decoder failing aborts the pull).
  const ctl = new AbortController();
  void r.exited.then(() => ctl.abort());
  const feeder = new Feeder(fifo, undefined, ctl.signal);
  await push(feeder, Buffer.alloc(1024 * 1024));
  r.child.kill("SIGKILL");
  await assert.rejects(async () => {
    for (let i = 0; i < 64; i++) await push(feeder, Buffer.alloc(1024 * 1024));
    await feeder.finish();
  }, /EPIPE|cancelled/);
  await feeder.close();
});

test("close() does not hang when no reader ever opened the FIFO", async () => {
  const fifo = join(home.home, `f${++n}.fifo`);
  await makeFifos([fifo]);
  const feeder = new Feeder(fifo, undefined, new AbortController().signal);
  void push(feeder, Buffer.alloc(2 * 1024 * 1024)); // the worker now waits to open the FIFO
  await new Promise((resolve) => setTimeout(resolve, 50));
  await feeder.close();
});
