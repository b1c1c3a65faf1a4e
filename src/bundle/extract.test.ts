// The decoder's command: zstd into a FIFO that perl widens to 1 MiB where perl exists (the
// pull's throughput depends on it: bench/bundle-pull.ts), and plain zstd where it does not.
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { open } from "node:fs/promises";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { makeTempHome } from "../../test/helpers.ts";
import { which } from "../util/exec.ts";
import { DECODED_PIPE_BYTES, decoderCommand, requireZstd } from "./extract.ts";
import { makeFifos } from "./feeder.ts";
import { zstdCompress } from "../../test/kits/bundle.ts";

let home: { home: string; cleanup: () => void };
before(() => {
  home = makeTempHome();
});
after(() => home.cleanup());

/** Runs the decoder command into a fresh FIFO; returns the FIFO's capacity (asked with perl) and the decoded bytes. */
async function decodeThroughFifo(name: string, input: string, perl: string | null): Promise<{ capacity: number; out: Buffer }> {
  const fifo = join(home.home, `${name}.fifo`);
  await makeFifos([fifo]);
  const [cmd, ...args] = decoderCommand(requireZstd(), input, fifo, perl);
  const child = spawn(cmd!, args, { stdio: ["ignore", "ignore", "inherit"] });
  const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
  const reader = await open(fifo, "r");
  try {
    const first = Buffer.alloc(1);
    assert.equal((await reader.read(first, 0, 1, null)).bytesRead, 1); // zstd is writing: any widening happened before
    const capacity = Number(execFileSync("perl", ["-e", 'open(my $f, "<", $ARGV[0]) or die "$!"; print fcntl($f, 1032, 0)', fifo], { encoding: "utf8" }));
    const rest = await reader.readFile();
    assert.equal(await exited, 0);
    return { capacity, out: Buffer.concat([first, rest]) };
  } finally {
    await reader.close();
  }
}

test("zstd's output FIFO holds 1 MiB where perl is installed, 64 KiB without, and decodes the same", async (t) => {
  const perl = which("perl");
  if (!perl) return t.skip("perl is not installed here (the fallback is covered below)");
  const data = randomBytes(3 * 1024 * 1024);
  const input = join(home.home, "in.zst");
  writeFileSync(input, await zstdCompress(data));
  const widened = await decodeThroughFifo("widened", input, perl);
  assert.equal(widened.capacity, DECODED_PIPE_BYTES);
  assert.ok(widened.out.equals(data));
  const plain = await decodeThroughFifo("plain", input, null);
  assert.equal(plain.capacity, 64 * 1024);
  assert.ok(plain.out.equals(data));
});
