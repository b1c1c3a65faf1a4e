// The E2B-compatible API's filesystem (envd's Filesystem service and /files), driven by the
// unmodified official `e2b` SDK (2.45.0) against a real bangerd and a real VM (QEMU): write
// (text, bytes, several files, a stream), read (text, bytes, stream), list with a depth,
// exists, makeDir, rename, remove, getInfo, watchDir (events for a write and a remove, and
// recursive), the polling watcher calls (over Connect: the SDK does not use them), missing
// paths as the SDK's NotFoundError, bad writes and unknown users as its other errors, all as the image's non-root user (busybox's `dev`,
// where commands land) unless a call names another.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { AuthenticationError, FileType, type FilesystemEvent, InvalidArgumentError, NotFoundError, Sandbox, TimeoutError } from "e2b";
import { Filesystem } from "../../src/e2b/gen/filesystem_pb.ts";
import { type E2bTestBed, startE2bTestBed } from "../kits/e2b.ts";

const HOME = "/home/dev";

describe("E2B filesystem through the official SDK (real VM under QEMU)", () => {
  let bed: E2bTestBed;
  let sbx: Sandbox;

  before(async () => {
    bed = await startE2bTestBed();
    sbx = await Sandbox.create(bed.image, bed.opts);
  });
  after(async () => {
    await sbx?.kill().catch(() => undefined);
    await bed?.cleanup();
  });

  it("writes text to a path relative to the user's home and reads it back; getInfo says who owns it", async () => {
    const info = await sbx.files.write("notes/hello.txt", "hello from the SDK\n");
    assert.deepEqual({ name: info.name, path: info.path, type: info.type }, { name: "hello.txt", path: `${HOME}/notes/hello.txt`, type: "file" });
    assert.equal(await sbx.files.read("notes/hello.txt"), "hello from the SDK\n");
    assert.equal(await sbx.files.read(`${HOME}/notes/hello.txt`), "hello from the SDK\n");
    const entry = await sbx.files.getInfo("~/notes/hello.txt");
    assert.equal(entry.type, FileType.FILE);
    assert.equal(entry.size, 19);
    assert.equal(entry.owner, "dev", "created as the request's user");
    assert.equal(entry.group, "dev");
    assert.equal(entry.permissions, "-rw-r--r--");
    assert.equal(entry.mode, 0o644);
    assert.ok(entry.modifiedTime && Math.abs(entry.modifiedTime.getTime() - Date.now()) < 10 * 60_000, `${entry.modifiedTime?.toISOString()}`);
    const dir = await sbx.files.getInfo(`${HOME}/notes`);
    assert.equal(dir.type, FileType.DIR);
    assert.equal(dir.owner, "dev", "parents made for the file belong to the user too");
  });

  it("writes and reads bytes, several files at once, and streams both ways", async () => {
    const bytes = randomBytes(300_000);
    await sbx.files.write("/tmp/up/bytes.bin", new Uint8Array(bytes).buffer);
    const back = await sbx.files.read("/tmp/up/bytes.bin", { format: "bytes" });
    assert.ok(Buffer.from(back).equals(bytes), "bytes survive the round trip");
    const many = await sbx.files.write([
      { path: "/tmp/many/a.txt", data: "A" },
      { path: "/tmp/many/sub/b.txt", data: "BB" },
      { path: "many/c.txt", data: new Blob(["CCC"]) },
    ]);
    assert.deepEqual(
      many.map((w) => w.path),
      ["/tmp/many/a.txt", "/tmp/many/sub/b.txt", `${HOME}/many/c.txt`],
    );
    assert.equal(await sbx.files.read("/tmp/many/sub/b.txt"), "BB");
    assert.equal(await sbx.files.read("many/c.txt"), "CCC");
    // gzip: the SDK compresses the body (Content-Encoding: gzip, application/octet-stream).
    await sbx.files.write("/tmp/gz/z.txt", "zipped ".repeat(1000), { gzip: true });
    assert.equal(await sbx.files.read("/tmp/gz/z.txt", { gzip: true }), "zipped ".repeat(1000));
    // 24 MiB through a stream (the SDK then sends application/octet-stream), back as a stream.
    const big = randomBytes(24 * 1024 * 1024);
    const t0 = Date.now();
    await sbx.files.write(
      "/tmp/big.bin",
      new ReadableStream<Uint8Array>({
        start(c) {
          for (let off = 0; off < big.length; off += 1 << 20) c.enqueue(new Uint8Array(big.subarray(off, off + (1 << 20))));
          c.close();
        },
      }),
    );
    const t1 = Date.now();
    const stream = await sbx.files.read("/tmp/big.bin", { format: "stream" });
    const hash = createHash("sha256");
    let n = 0;
    for await (const chunk of stream as unknown as AsyncIterable<Uint8Array>) {
      hash.update(chunk);
      n += chunk.length;
    }
    const t2 = Date.now();
    assert.equal(n, big.length);
    assert.equal(hash.digest("hex"), createHash("sha256").update(big).digest("hex"));
    console.log(`# 24 MiB: write ${t1 - t0} ms, read ${t2 - t1} ms`);
  });

  it("lists a directory one level down by default, deeper with depth", async () => {
    await sbx.files.write([
      { path: "/tmp/tree/top.txt", data: "t" },
      { path: "/tmp/tree/d1/mid.txt", data: "m" },
      { path: "/tmp/tree/d1/d2/deep.txt", data: "d" },
    ]);
    const one = await sbx.files.list("/tmp/tree");
    assert.deepEqual(
      one.map((e) => [e.path, e.type]),
      [
        ["/tmp/tree/d1", FileType.DIR],
        ["/tmp/tree/top.txt", FileType.FILE],
      ],
    );
    const two = await sbx.files.list("/tmp/tree", { depth: 2 });
    assert.deepEqual(two.map((e) => e.path).sort(), ["/tmp/tree/d1", "/tmp/tree/d1/d2", "/tmp/tree/d1/mid.txt", "/tmp/tree/top.txt"]);
    const three = await sbx.files.list("/tmp/tree", { depth: 3 });
    assert.ok(three.some((e) => e.path === "/tmp/tree/d1/d2/deep.txt" && e.size === 1));
    await assert.rejects(sbx.files.list("/tmp/tree/top.txt"), InvalidArgumentError, "a file is not a directory");
  });

  it("exists, makeDir (false when there), rename and remove", async () => {
    assert.equal(await sbx.files.exists("/tmp/tree/top.txt"), true);
    assert.equal(await sbx.files.exists("/tmp/nothing/here"), false);
    assert.equal(await sbx.files.makeDir("made/a/b"), true);
    assert.equal(await sbx.files.makeDir("made/a/b"), false);
    assert.equal((await sbx.files.getInfo(`${HOME}/made/a`)).owner, "dev");
    const moved = await sbx.files.rename("/tmp/tree/top.txt", "/tmp/elsewhere/top.txt");
    assert.equal(moved.path, "/tmp/elsewhere/top.txt");
    assert.equal(moved.name, "top.txt");
    assert.equal(await sbx.files.exists("/tmp/tree/top.txt"), false);
    assert.equal(await sbx.files.read("/tmp/elsewhere/top.txt"), "t");
    await sbx.files.remove("/tmp/tree");
    assert.equal(await sbx.files.exists("/tmp/tree/d1/d2/deep.txt"), false);
    assert.equal(await sbx.files.exists("/tmp/tree"), false);
  });

  it("a missing path is the SDK's NotFoundError, for every call", async () => {
    await assert.rejects(sbx.files.read("/tmp/missing.txt"), NotFoundError);
    await assert.rejects(sbx.files.getInfo("/tmp/missing.txt"), NotFoundError);
    await assert.rejects(sbx.files.list("/tmp/missing"), NotFoundError);
    await assert.rejects(sbx.files.remove("/tmp/missing"), NotFoundError);
    await assert.rejects(sbx.files.rename("/tmp/missing", "/tmp/x"), NotFoundError);
    await assert.rejects(sbx.files.read("/tmp"), InvalidArgumentError, "a directory is not a file");
  });

  it("watchDir reports a write and a remove", async () => {
    await sbx.files.makeDir("/tmp/watched");
    const events: FilesystemEvent[] = [];
    const handle = await sbx.files.watchDir("/tmp/watched", (e) => void events.push(e));
    try {
      await sbx.files.write("/tmp/watched/new.txt", "x");
      await sbx.files.remove("/tmp/watched/new.txt");
      const deadline = Date.now() + 30_000;
      while (!events.some((e) => e.type === "remove") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      const seen = events.map((e) => `${e.type}:${e.name}`);
      assert.ok(seen.includes("create:new.txt"), seen.join(" "));
      assert.ok(seen.includes("write:new.txt"), seen.join(" "));
      assert.ok(seen.includes("remove:new.txt"), seen.join(" "));
    } finally {
      await handle.stop();
    }
    await assert.rejects(
      sbx.files.watchDir("/tmp/not-there", () => undefined),
      NotFoundError,
    );
  });

  it("watchDir with recursive sees changes in subdirectories, ones made after it started too", async () => {
    await sbx.files.makeDir("/tmp/rec/old");
    const events: FilesystemEvent[] = [];
    const handle = await sbx.files.watchDir("/tmp/rec", (e) => void events.push(e), { recursive: true });
    try {
      await sbx.files.write("/tmp/rec/old/a.txt", "a");
      await sbx.files.makeDir("/tmp/rec/new");
      await new Promise((r) => setTimeout(r, 300)); // the new directory's watch is added when its create arrives
      await sbx.files.write("/tmp/rec/new/b.txt", "b");
      const deadline = Date.now() + 30_000;
      while (!events.some((e) => e.name === "new/b.txt") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      const seen = events.map((e) => `${e.type}:${e.name}`);
      for (const want of ["create:old/a.txt", "create:new", "create:new/b.txt"]) assert.ok(seen.includes(want), `${want} in ${seen.join(" ")}`);
    } finally {
      await handle.stop();
    }
  });

  it("the polling watcher calls (CreateWatcher, GetWatcherEvents, RemoveWatcher) over Connect", async () => {
    // The SDK does not use these; a Connect client with the SDK's own headers does.
    const token = (sbx as unknown as { envdAccessToken?: string }).envdAccessToken;
    const headers: Record<string, string> = { "E2b-Sandbox-Id": sbx.sandboxId, Authorization: `Basic ${Buffer.from("dev:").toString("base64")}` };
    if (token) headers["X-Access-Token"] = token;
    const fs = createClient(Filesystem, createConnectTransport({ baseUrl: bed.opts.sandboxUrl, httpVersion: "1.1", useBinaryFormat: false }));
    await sbx.files.makeDir("polled");
    const { watcherId } = await fs.createWatcher({ path: "polled" }, { headers });
    await sbx.files.write("polled/p.txt", "p");
    let names: string[] = [];
    const deadline = Date.now() + 30_000;
    while (!names.includes("1:p.txt") && Date.now() < deadline) {
      const { events } = await fs.getWatcherEvents({ watcherId }, { headers });
      names = [...names, ...events.map((e) => `${e.type}:${e.name}`)];
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(names.includes("1:p.txt"), `a create event (type 1) for p.txt in ${names.join(" ")}`);
    await fs.removeWatcher({ watcherId }, { headers });
    await assert.rejects(fs.getWatcherEvents({ watcherId }, { headers }), (err: unknown) => err instanceof ConnectError && err.code === Code.NotFound);
  });

  it("refuses to write over a directory (InvalidArgumentError) and an unknown user (AuthenticationError)", async () => {
    await assert.rejects(sbx.files.write("/tmp", "x"), InvalidArgumentError);
    await assert.rejects(sbx.files.read("/etc/passwd", { user: "no-such-user" }), AuthenticationError);
    await assert.rejects(sbx.files.getInfo("/etc/passwd", { user: "no-such-user" }), AuthenticationError);
  });

  it("acts as another user when a call names one", async () => {
    const w = await sbx.files.write("from-root.txt", "r", { user: "root" });
    assert.equal(w.path, "/root/from-root.txt", "relative to root's home");
    const info = await sbx.files.getInfo("/root/from-root.txt", { user: "root" });
    assert.equal(info.owner, "root");
    assert.ok((await sbx.files.list("~", { user: "root" })).some((e) => e.name === "from-root.txt"));
  });

  it("once the sandbox is killed, file calls say it is not running (TimeoutError), not that a file is missing", async () => {
    await sbx.kill();
    await assert.rejects(sbx.files.list("/tmp"), TimeoutError);
    await assert.rejects(sbx.files.read("/etc/passwd"), TimeoutError);
  });
});
