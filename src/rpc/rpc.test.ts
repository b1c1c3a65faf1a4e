import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { connect } from "node:net";
import { join } from "node:path";
import { RpcClient, RpcServer, requireString, type MethodTable } from "./index.ts";
import { BangerError, ErrorCode, notFound } from "../util/errors.ts";
import { makeTempHome } from "../../test/helpers.ts";

/** Resolves when `signal` aborts. */
const aborted = (signal: AbortSignal) => new Promise<void>((r) => signal.addEventListener("abort", () => r(), { once: true }));

describe("rpc", () => {
  const { home, cleanup } = makeTempHome();
  const socket = join(home, "t.sock");
  const cleanups: string[] = [];
  let server: RpcServer;

  const methods: MethodTable = {
    echo: (p) => p,
    hello: (p) => `hello ${requireString(p, "name")}`,
    missing: () => {
      throw notFound("widget w1", "make one first");
    },
    crash: () => {
      throw new Error("boom");
    },
    delayed: async (p) => {
      const { ms, tag } = p as { ms: number; tag: string };
      await new Promise((r) => setTimeout(r, ms));
      return tag;
    },
    progress: async (_p, ctx) => {
      for (let i = 1; i <= 3; i++) ctx.progress({ phase: "work", done: i, total: 3 });
      await ctx.emit({ line: "some output" });
      return "done";
    },
    slow: async (p, ctx) => {
      const tag = (p as { tag: string }).tag;
      try {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([aborted(ctx.signal), new Promise((r) => (timer = setTimeout(r, 30_000)))]);
        clearTimeout(timer);
        return "finished";
      } finally {
        cleanups.push(tag);
      }
    },
    cleanupsSeen: () => cleanups,
    /** Emits `size` bytes (newlines included) as one event with a data Buffer, then a plain event. */
    bytesOut: async (p, ctx) => {
      const size = (p as { size: number }).size;
      const data = Buffer.alloc(size, "x\n");
      await ctx.emit({ t: "out", fd: 1, data });
      await ctx.emit({ t: "done" });
      return size;
    },
    inputEcho: (_p, ctx) =>
      new Promise((resolve) => {
        ctx.onInput((input) => resolve({ got: input }));
      }),
    /** Collects raw input payloads until an input says `done`; answers with their tags and bytes. */
    payloads: (_p, ctx) =>
      new Promise((resolve) => {
        const parts: Buffer[] = [];
        const tags: string[] = [];
        ctx.onInput((input) => {
          const { tag, data, done } = input as { tag?: string; data?: Buffer; done?: boolean };
          if (data) parts.push(data);
          if (tag) tags.push(tag);
          if (done) resolve({ tags, bytes: Buffer.concat(parts).toString("base64") });
        });
      }),
  };

  before(async () => {
    server = new RpcServer(methods);
    await server.listen(socket);
  });
  after(async () => {
    await server.close();
    cleanup();
  });

  it("round-trips a request and its result", async () => {
    const c = await RpcClient.connect(socket);
    assert.deepEqual(await c.call("echo", { a: [1, "x"] }), { a: [1, "x"] });
    assert.equal(await c.call("hello", { name: "vm1" }), "hello vm1");
    c.close();
  });

  it("carries error codes and hints back as BangerErrors", async () => {
    const c = await RpcClient.connect(socket);
    await assert.rejects(c.call("missing"), (err: unknown) => {
      assert.ok(err instanceof BangerError);
      assert.equal(err.code, ErrorCode.NotFound);
      assert.equal(err.message, "widget w1 not found");
      assert.equal(err.hint, "make one first");
      return true;
    });
    await assert.rejects(c.call("nope"), (err: BangerError) => err.code === ErrorCode.MethodNotFound && /unknown method nope/.test(err.message));
    await assert.rejects(c.call("hello", {}), (err: BangerError) => err.code === ErrorCode.InvalidParams && /"name" is required/.test(err.message));
    await assert.rejects(c.call("crash"), (err: BangerError) => err.code === ErrorCode.Internal && err.message === "boom");
    c.close();
  });

  it("answers malformed input with JSON-RPC errors instead of dropping the connection", async () => {
    const raw = connect(socket);
    const lines: unknown[] = [];
    raw.on("data", (b) =>
      lines.push(
        ...b
          .toString()
          .trim()
          .split("\n")
          .map((l) => JSON.parse(l)),
      ),
    );
    raw.write("this is not json\n");
    raw.write(`${JSON.stringify({ jsonrpc: "1.0", id: 1, method: "echo" })}\n`);
    raw.write(`${JSON.stringify({ jsonrpc: "2.0", id: 2, method: "echo", params: "ok" })}\n`);
    await new Promise((r) => setTimeout(r, 200));
    raw.destroy();
    assert.deepEqual(lines, [
      { jsonrpc: "2.0", id: null, error: { code: ErrorCode.ParseError, message: "parse error: not JSON" } },
      { jsonrpc: "2.0", id: null, error: { code: ErrorCode.InvalidRequest, message: "invalid request: not JSON-RPC 2.0" } },
      { jsonrpc: "2.0", id: 2, result: "ok" },
    ]);
  });

  it("delivers progress and events before the result", async () => {
    const c = await RpcClient.connect(socket);
    const seen: string[] = [];
    const result = await c.call("progress", undefined, {
      onProgress: (p) => seen.push(`${p.phase} ${p.done}/${p.total}`),
      onEvent: (e) => seen.push(`event ${(e as { line: string }).line}`),
    });
    assert.equal(result, "done");
    assert.deepEqual(seen, ["work 1/3", "work 2/3", "work 3/3", "event some output"]);
    c.close();
  });

  it("passes $/input to the handler of that call", async () => {
    const c = await RpcClient.connect(socket);
    const call = c.start("inputEcho");
    call.input({ keys: "ls\n" });
    assert.deepEqual(await call.result, { got: { keys: "ls\n" } });
    c.close();
  });

  it("carries raw bytes after $/input (no base64), split however the socket splits them", async () => {
    const c = await RpcClient.connect(socket);
    const call = c.start("payloads");
    const big = Buffer.alloc(9 * 1024 * 1024 + 7, 0x0a); // newlines: raw bytes must not be read as lines
    big.write("start", 0);
    const small = Buffer.from([0, 1, 2, 255]);
    call.input({ tag: "a" }, small);
    call.input({ tag: "b" }, big); // over MAX_PAYLOAD_BYTES: the client splits it into several messages
    call.input({ done: true });
    const got = (await call.result) as { tags: string[]; bytes: string };
    assert.deepEqual(got.tags, ["a", "b", "b", "b"]);
    assert.ok(Buffer.from(got.bytes, "base64").equals(Buffer.concat([small, big])));
    c.close();

    // The same by hand, one byte per write: the payload's boundary falls anywhere.
    const raw = connect(socket);
    const answers: string[] = [];
    raw.on("data", (b) => answers.push(b.toString()));
    const wire = Buffer.concat([
      Buffer.from(`${JSON.stringify({ jsonrpc: "2.0", id: 1, method: "payloads" })}\n`),
      Buffer.from(`${JSON.stringify({ jsonrpc: "2.0", method: "$/input", params: { id: 1, input: { tag: "x" }, bytes: 3 } })}\n`),
      Buffer.from("a\nb"),
      Buffer.from(`${JSON.stringify({ jsonrpc: "2.0", method: "$/input", params: { id: 1, input: { done: true } } })}\n`),
    ]);
    for (const byte of wire) raw.write(Buffer.from([byte]));
    await waitFor(async () => answers.join("").includes("result"));
    assert.deepEqual(JSON.parse(answers.join("")).result, { tags: ["x"], bytes: Buffer.from("a\nb").toString("base64") });
    raw.destroy();
  });

  it("carries an event's data Buffer as raw bytes, split above the payload cap", async () => {
    const c = await RpcClient.connect(socket);
    const got: Buffer[] = [];
    const kinds: string[] = [];
    const size = 9 * 1024 * 1024 + 3;
    const result = await c.call(
      "bytesOut",
      { size },
      {
        onEvent: (e) => {
          const ev = e as { t: string; data?: unknown };
          kinds.push(ev.t);
          if (Buffer.isBuffer(ev.data)) got.push(ev.data);
        },
      },
    );
    assert.equal(result, size);
    assert.deepEqual(kinds, ["out", "out", "out", "done"], "three payload pieces, then the plain event");
    assert.ok(Buffer.concat(got).equals(Buffer.alloc(size, "x\n")));
    c.close();
  });

  it("closes a connection that announces a bad payload size (it cannot be followed)", async () => {
    const raw = connect(socket);
    let answer = "";
    raw.on("data", (b) => (answer += b.toString()));
    const closed = new Promise((r) => raw.on("close", r));
    raw.write(`${JSON.stringify({ jsonrpc: "2.0", method: "$/input", params: { id: 99, input: {}, bytes: 64 * 1024 * 1024 } })}\n`);
    await closed;
    assert.match(JSON.parse(answer).error.message, /bad payload size 67108864/);
  });

  it("aborts a slow handler cancelled by the client, and its cleanup runs", async () => {
    const c = await RpcClient.connect(socket);
    const controller = new AbortController();
    const pending = c.call("slow", { tag: "cancelled-call" }, { signal: controller.signal });
    await new Promise((r) => setTimeout(r, 100));
    controller.abort();
    await assert.rejects(pending, (err: BangerError) => err.code === ErrorCode.Cancelled);
    const c2 = await RpcClient.connect(socket);
    await waitFor(async () => ((await c2.call("cleanupsSeen")) as string[]).includes("cancelled-call"));
    // The connection still works for other calls after a cancellation.
    assert.equal(await c.call("echo", 7), 7);
    c.close();
    c2.close();
  });

  it("aborts a client's calls when it disconnects", async () => {
    const c = await RpcClient.connect(socket);
    const pending = c.call("slow", { tag: "disconnected-call" }).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 100));
    c.close();
    const err = await pending;
    assert.ok(err instanceof BangerError && err.code === ErrorCode.Unavailable);
    const c2 = await RpcClient.connect(socket);
    await waitFor(async () => ((await c2.call("cleanupsSeen")) as string[]).includes("disconnected-call"));
    c2.close();
  });

  it("serves 50 concurrent clients, each getting its own answer", async () => {
    const clients = await Promise.all(Array.from({ length: 50 }, () => RpcClient.connect(socket)));
    const started = Date.now();
    // Later clients answer sooner: answers must still reach the right caller.
    const results = await Promise.all(clients.map((c, i) => c.call("delayed", { ms: 200 - i * 3, tag: `client-${i}` })));
    assert.deepEqual(
      results,
      clients.map((_, i) => `client-${i}`),
    );
    assert.ok(Date.now() - started < 2000, "calls ran concurrently, not one after another");
    for (const c of clients) c.close();
  });

  it("closes a connection that sends a line over the size limit", async () => {
    const raw = connect(socket);
    let closed = false;
    raw.on("close", () => (closed = true));
    raw.on("error", () => undefined);
    const chunk = Buffer.alloc(1024 * 1024, 0x61);
    for (let i = 0; i < 17 && !raw.destroyed; i++) raw.write(chunk);
    await waitFor(async () => closed);
  });
});

async function waitFor(cond: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}
