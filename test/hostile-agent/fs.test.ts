// The agent client's fs operations (src/guest/fs.ts) against a hostile fake agent that
// follows the framing but lies in what it streams: a read longer than it announced, a listing
// that never ends, a line that never ends, watch events outside the watched directory. Each
// fails that one call with a clear error, holds no more than the flow-control window, and
// leaves the connection and its channels free.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { BangerError, ErrorCode } from "../../src/util/errors.ts";
import { INITIAL_WINDOW, FrameType, Stream } from "../../src/guest/frame.ts"; // the wire format itself, as the fake agent speaks it
import { connectAgent } from "../../src/guest/index.ts";
import { dialUnix } from "../../src/vmm/index.ts";
import { useFakes, validResult } from "./fake.ts";

const entry = (name: string) => ({ name, type: "file", path: `/d/${name}`, size: 1, mode: 420, permissions: "-rw-r--r--", owner: "u", group: "u", mtime_sec: 1, mtime_nsec: 0 });
const violation = (re: RegExp) => (e: unknown) => e instanceof BangerError && e.code === ErrorCode.Integrity && re.test(e.message);

describe("fs operations against a hostile agent", () => {
  const { agent } = useFakes();

  test("a read longer than announced, endless listings and lines, events outside the directory: one error each, nothing held", async () => {
    const path = await agent("fs.sock", (c, o) => {
      const name = String(o.params.path);
      if (o.kind === "fs.read") {
        c.json(o.id, FrameType.Opened, { size: 10 });
        c.flood(o.id, Stream.Out); // far more than 10 bytes, as fast as credit allows
      } else if (o.kind === "fs.list" && name === "/endless-list") {
        c.json(o.id, FrameType.Opened, {});
        c.flood(o.id, Stream.Out, Buffer.from(`${JSON.stringify(entry("x"))}\n`.repeat(200)));
      } else if (o.kind === "fs.list") {
        c.json(o.id, FrameType.Opened, {});
        c.flood(o.id, Stream.Out, Buffer.alloc(32 * 1024, "a")); // one line without an end
      } else if (o.kind === "fs.watch") {
        c.json(o.id, FrameType.Opened, {});
        c.frame(o.id, FrameType.Data, Buffer.from(`${JSON.stringify({ name: "ok", type: "create" })}\n${JSON.stringify({ name: "../../etc/shadow", type: "write" })}\n`), Stream.Out);
      } else c.json(o.id, FrameType.Result, validResult(o.kind));
    });
    const client = await connectAgent(await dialUnix(path), { replyTimeoutMs: 2000 });
    const { size, stream } = await client.fs.read("/f");
    assert.equal(size, 10);
    await assert.rejects(
      (async () => {
        for await (const _ of stream) {
        }
      })(),
      violation(/more than the 10 bytes it announced/),
    );
    await assert.rejects(client.fs.list("/endless-list"), violation(/more than 50000 entries/));
    await assert.rejects(client.fs.list("/endless-line"), violation(/a line of more than 16384 bytes/));
    const seen: string[] = [];
    const watch = await client.fs.watch("/d", (ev) => void seen.push(ev.name));
    await assert.rejects(watch.done, violation(/outside the watched directory/));
    assert.deepEqual(seen, ["ok"], "events before the bad one were delivered");
    await new Promise((r) => setTimeout(r, 50));
    const usage = client.usage();
    assert.equal(usage.channels, 0, "every channel was released");
    assert.ok(usage.bufferedBytes <= INITIAL_WINDOW, `${usage.bufferedBytes} bytes held`);
    assert.equal((await client.health()).version, "fake", "the connection still works");
    client.close();
  });
});
