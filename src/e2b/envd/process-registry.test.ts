// The bounds of envd's process registry without a VM: a stream's queue holds back the
// process's output past OUTPUT_QUEUE_BYTES until its client reads, a stream that goes away
// lets the output flow again, the per-sandbox cap, and the stdin window.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import { INPUT_WINDOW_BYTES, type StreamInput } from "../../api/index.ts";
import { MAX_PROCESSES_PER_SANDBOX, OUTPUT_QUEUE_BYTES, ProcessEntry, ProcessRegistry } from "./process-registry.ts";

const spec = { config: { cmd: "/bin/bash", args: ["-l", "-c", "yes"], envs: {} }, pty: false, stdin: true };
const settled = async (p: Promise<unknown>) => Promise.race([p.then(() => true), new Promise((r) => setTimeout(() => r(false), 20))]);

describe("envd process registry", () => {
  it("holds back output while a stream's queue is full, until its client reads", async () => {
    const entry = new ProcessEntry("sbx", spec);
    const stream = entry.attach();
    const chunk = new Uint8Array(OUTPUT_QUEUE_BYTES / 4);
    for (let i = 0; i < 3; i++) assert.equal(await settled(entry.broadcast({ t: "data", stream: "stdout", data: chunk })), true);
    const fourth = entry.broadcast({ t: "data", stream: "stdout", data: chunk });
    assert.equal(await settled(fourth), false, "the fourth chunk fills the queue: the exec waits");
    const reader = new AbortController();
    const events = stream.drain(reader.signal, undefined);
    await events.next();
    assert.equal(await settled(fourth), true, "one chunk read makes room");
    reader.abort();
    await events.return(undefined);
    // The client is gone: nothing waits for it any more.
    entry.detach(stream);
    assert.equal(await settled(entry.broadcast({ t: "data", stream: "stdout", data: new Uint8Array(OUTPUT_QUEUE_BYTES * 2) })), true);
  });

  it("delivers the end event after the queued output, then ends the stream", async () => {
    const entry = new ProcessEntry("sbx", spec);
    const stream = entry.attach();
    void entry.broadcast({ t: "data", stream: "stderr", data: Buffer.from("bye") });
    entry.end({ exitCode: 2, exited: true, status: "exit status 2" });
    const seen = [];
    for await (const out of stream.drain(new AbortController().signal, undefined)) seen.push(out.t);
    assert.deepEqual(seen, ["data", "end"]);
    assert.throws(
      () => entry.attach(),
      (e) => e instanceof ConnectError && e.code === Code.NotFound,
    );
  });

  it("sends keepalives on an idle stream", async () => {
    const entry = new ProcessEntry("sbx", spec);
    const stream = entry.attach();
    const reader = new AbortController();
    const events = stream.drain(reader.signal, 10);
    assert.equal((await events.next()).value?.t, "keepalive");
    reader.abort();
    assert.equal((await events.next()).done, true);
  });

  it("caps the processes of one sandbox, counting starts under way", () => {
    const registry = new ProcessRegistry();
    for (let i = 0; i < MAX_PROCESSES_PER_SANDBOX; i++) registry.reserve("a");
    assert.throws(
      () => registry.reserve("a"),
      (e) => e instanceof ConnectError && e.code === Code.ResourceExhausted,
    );
    registry.reserve("b");
    registry.failed("a");
    registry.reserve("a");
  });

  it("keeps at most one input window unacknowledged", async () => {
    const entry = new ProcessEntry("sbx", spec);
    const sent: StreamInput[] = [];
    entry.input.listen((i) => sent.push(i as StreamInput));
    await entry.write(new Uint8Array(INPUT_WINDOW_BYTES));
    const blocked = entry.write(new Uint8Array(1));
    assert.equal(await settled(blocked), false, "a full window waits for the exec's ack");
    entry.onAck(INPUT_WINDOW_BYTES);
    assert.equal(await settled(blocked), true);
    assert.equal(sent.length, 2);
    entry.closeStdin();
    await assert.rejects(entry.write(new Uint8Array(1)), (e) => e instanceof ConnectError && e.code === Code.FailedPrecondition);
  });
});
