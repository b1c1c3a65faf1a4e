import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import tar from "tar-stream";
import { packEntry, queueEntry } from "./tarpack.ts";
import { busyboxRootfsTar } from "../presets/index.ts";

/** Fails the test if anything reaches the process's uncaught-exception handler meanwhile. */
async function noUncaught(run: () => Promise<void>): Promise<void> {
  const seen: unknown[] = [];
  const onError = (err: unknown) => seen.push(err);
  process.on("uncaughtException", onError);
  try {
    await run();
    await new Promise((r) => setTimeout(r, 50));
  } finally {
    process.off("uncaughtException", onError);
  }
  assert.deepEqual(seen, [], "an entry's error went unhandled");
}

test("a pack destroyed with entries in flight rejects them, and nothing is uncaught", async () => {
  await noUncaught(async () => {
    const pack = tar.pack();
    const big = Buffer.alloc(4 << 20, 1); // more than the pack buffers before its reader reads
    const written = [packEntry(pack, { name: "a", mode: 0o644 }, big), packEntry(pack, { name: "b", mode: 0o644 }, big)];
    queueEntry(pack, { name: "c", type: "directory", mode: 0o755 });
    pack.once("error", () => undefined);
    pack.resume?.();
    pack.destroy(new Error("the reader failed"));
    const results = await Promise.allSettled(written);
    assert.ok(
      results.some((r) => r.status === "rejected"),
      "an entry in flight is failed, not left pending",
    );
  });
});

test("the busybox preset's tar can be abandoned mid-way (a full disk) without ending the process", { skip: !existsSync("/bin/busybox") && "busybox-static is not installed" }, async () => {
  await noUncaught(async () => {
    const stream = await busyboxRootfsTar();
    stream.once("error", () => undefined);
    await new Promise<void>((resolve) => stream.once("data", () => resolve()));
    stream.destroy(new Error("ENOSPC"));
  });
});
