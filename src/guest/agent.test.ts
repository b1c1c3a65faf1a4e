// End to end against the real agent: `banger-agent serve --unix` runs as a normal process
// (no VM, no mounts) and the TypeScript client drives every operation over the socket.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { createServer, type Server } from "node:net";
import { lstatSync, mkdirSync, readFileSync, readlinkSync, statSync, existsSync } from "node:fs";
import { join } from "node:path";
import { PassThrough, Readable } from "node:stream";
import { randomBytes } from "node:crypto";
import { buffer as collect } from "node:stream/consumers";
import { once } from "node:events";
import * as tarStream from "tar-stream";
import { makeTempHome } from "../../test/helpers.ts";
import { BangerError, ErrorCode } from "../util/errors.ts";
import { connectAgent, type AgentClient } from "./index.ts";
import { dialUnix } from "../vmm/index.ts";
import { startAgent } from "../../test/kits/agent-process.ts";
import { hostname } from "node:os";
import { requireReidentify } from "./identity.ts";

function makeTar(entries: Array<{ name: string; type?: "file" | "directory" | "symlink" | "link"; mode?: number; body?: string; linkname?: string }>): Readable {
  const pack = tarStream.pack();
  for (const e of entries) {
    const type = e.type ?? "file";
    const header = { name: e.name, type, mode: e.mode ?? 0o644, linkname: e.linkname, mtime: new Date(1_600_000_000_000) };
    if (type === "file") pack.entry(header, e.body ?? "");
    else pack.entry(header);
  }
  pack.finalize();
  return pack as unknown as Readable;
}

async function readTar(stream: Readable): Promise<Map<string, { mode: number; type: string; body: string; linkname?: string }>> {
  const out = new Map<string, { mode: number; type: string; body: string; linkname?: string }>();
  const extract = tarStream.extract();
  const done = new Promise<void>((resolve, reject) => {
    extract.on("entry", (header, body, next) => {
      void collect(body).then((b) => {
        out.set(header.name, { mode: header.mode ?? 0, type: header.type ?? "file", body: b.toString(), linkname: header.linkname ?? undefined });
        next();
      }, reject);
    });
    extract.on("finish", resolve);
    extract.on("error", reject);
  });
  stream.pipe(extract);
  await done;
  return out;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function text(r: Readable): Promise<string> {
  return collect(r).then((b) => b.toString());
}

describe("guest agent over a Unix socket", () => {
  const { home, cleanup } = makeTempHome();
  const sock = join(home, "agent.sock");
  let agent: ChildProcess;
  let client: AgentClient;

  before(async () => {
    agent = await startAgent(sock);
    client = await connectAgent(await dialUnix(sock), { timeoutMs: 5000 });
  });

  after(() => {
    client?.close();
    agent?.kill("SIGKILL");
    cleanup();
  });

  test("handshake and health report the agent's version", async () => {
    assert.equal(client.info.version, 1);
    assert.ok(client.info.features.includes("exec"));
    const h = await client.health();
    assert.equal(h.version, client.info.agentVersion);
    assert.equal(h.pid1, false);
    assert.ok(h.kernel.length > 0);
  });

  test("exec streams stdout and stderr and passes exit codes 0 and 3", async () => {
    const ok = await client.exec({ argv: ["echo", "hello", "world"] });
    assert.equal(await text(ok.stdout), "hello world\n");
    assert.deepEqual(await ok.wait(), { exitCode: 0 });

    const bad = await client.exec({ argv: ["sh", "-c", "echo out; echo oops >&2; exit 3"], env: { FOO: "bar" } });
    const [out, err] = await Promise.all([text(bad.stdout), text(bad.stderr)]);
    assert.equal(out, "out\n");
    assert.equal(err, "oops\n");
    assert.deepEqual(await bad.wait(), { exitCode: 3 });
  });

  test("exec honours env and cwd, and a missing command is a clear error", async () => {
    const h = await client.exec({ argv: ["sh", "-c", 'echo "$FOO $(pwd)"'], env: { FOO: "bar" }, cwd: home });
    assert.equal(await text(h.stdout), `bar ${home}\n`);
    await assert.rejects(
      client.exec({ argv: ["no-such-command-xyz"] }),
      (e: unknown) => e instanceof BangerError && e.code === ErrorCode.CommandNotFound && e.message === "no-such-command-xyz: command not found",
    );
    await assert.rejects(client.exec({ argv: ["/etc"] }), (e: unknown) => e instanceof BangerError && e.code === ErrorCode.NotExecutable && e.message === "/etc: is a directory");
    await assert.rejects(client.exec({ argv: ["true"], cwd: "/nonexist" }), (e: unknown) => e instanceof BangerError && e.code === ErrorCode.NotFound && e.message === "no such directory: /nonexist");
  });

  test("reidentify is checked before it is sent, and a test agent never renames or reseeds its host", async () => {
    assert.ok(client.info.features.includes("reidentify"));
    const good = {
      hostname: "child-1",
      seed: randomBytes(64),
      timeUnixMs: Date.now(),
      net: { mac: "02:aa:bb:cc:dd:01", ip: "172.30.0.7", prefixLength: 24, gateway: "172.30.0.1", dns: "172.30.0.1" },
    };
    const usage = (e: unknown) => e instanceof BangerError && e.code === ErrorCode.InvalidArgument;
    await assert.rejects(client.reidentify({ ...good, hostname: "no spaces" }), usage);
    await assert.rejects(client.reidentify({ ...good, seed: randomBytes(16) }), usage);
    await assert.rejects(client.reidentify({ ...good, timeUnixMs: Date.now() / 1000 }), usage);
    await assert.rejects(client.reidentify({ ...good, net: { ...good.net, mac: "01:00:5e:00:00:01" } }), usage);
    await assert.rejects(client.reidentify({ ...good, net: { ...good.net, gateway: "10.0.0.1" } }), usage);
    await assert.rejects(client.reidentify({ ...good, net: { ...good.net, ip: "172.30.0.255" } }), usage);
    const before = hostname();
    await assert.rejects(client.reidentify(good), /only an agent serving a VM/);
    assert.equal(hostname(), before);
    // An agent from before the operation: one clear line, nothing sent.
    assert.throws(() => requireReidentify({ ...client.info, features: client.info.features.filter((f) => f !== "reidentify") }), /agent \(.*\) is too old to be restored or forked/);
  });

  test("user answers whom exec would run as", async () => {
    assert.ok(client.info.features.includes("user"));
    assert.deepEqual(await client.user("nobody"), { name: "nobody", uid: 65534, gid: 65534, home: "/nonexistent" });
    assert.equal((await client.user("0"))?.uid, 0);
    await assert.rejects(client.user("no-such-user"), (e: unknown) => e instanceof BangerError && e.code === ErrorCode.NotFound);
  });

  test("exec runs as another user from /etc/passwd", async () => {
    const h = await client.exec({ argv: ["sh", "-c", 'echo "$(id -u) $HOME"'], user: "nobody" });
    assert.equal(await text(h.stdout), "65534 /nonexistent\n");
    await assert.rejects(client.exec({ argv: ["true"], user: "no-such-user" }), /user "no-such-user" not found/);
  });

  test("a request bigger than a frame is refused before sending", async () => {
    await assert.rejects(client.exec({ argv: ["echo", "x".repeat(2 << 20)] }), (e: unknown) => e instanceof BangerError && e.code === ErrorCode.InvalidArgument);
    assert.equal((await client.health()).pid1, false); // the connection is fine
  });

  test("a signal ends the command and is reported as that signal", async () => {
    const h = await client.exec({ argv: ["sleep", "30"] });
    h.signal("SIGTERM");
    assert.deepEqual(await h.wait(), { signal: "SIGTERM", signalNumber: 15 });
  });

  test("dropping the connection kills the commands it started", async () => {
    const c2 = await connectAgent(await dialUnix(sock));
    const h = await c2.exec({ argv: ["sleep", "30"] });
    assert.doesNotThrow(() => process.kill(h.pid, 0));
    c2.close();
    const deadline = Date.now() + 5000;
    while (isAlive(h.pid)) {
      assert.ok(Date.now() < deadline, "command survived its connection");
      await new Promise((r) => setTimeout(r, 20));
    }
  });

  test("stdin streams through with backpressure (4 MiB round trip through cat)", async () => {
    const data = Buffer.alloc(4 << 20);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
    const h = await client.exec({ argv: ["cat"], stdin: Readable.from([data.subarray(0, 1 << 20), data.subarray(1 << 20)]) });
    const out = await collect(h.stdout);
    assert.equal(out.length, data.length);
    assert.ok(out.equals(data));
    assert.deepEqual(await h.wait(), { exitCode: 0 });
  });

  test("stdin written through the handle, closed by end()", async () => {
    const h = await client.exec({ argv: ["wc", "-c"], stdin: true });
    await h.write("12345");
    h.stdin.end("678");
    assert.equal((await text(h.stdout)).trim(), "8");
  });

  test("a PTY echoes input and follows resize (stty size)", async () => {
    const h = await client.exec({ argv: ["sh"], tty: { rows: 24, cols: 80 } });
    let out = "";
    h.stdout.on("data", (d: Buffer) => (out += d.toString()));
    const waitFor = async (re: RegExp) => {
      const deadline = Date.now() + 5000;
      while (!re.test(out)) {
        if (Date.now() > deadline) throw new Error(`no ${re} in ${JSON.stringify(out)}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    await h.write("stty size\n");
    await waitFor(/24 80/);
    h.resize(40, 100);
    await h.write("echo typed-$((6*7)); stty size\n");
    await waitFor(/typed-\$\(\(6\*7\)\)/); // the terminal echoed what was typed
    await waitFor(/typed-42/);
    await waitFor(/40 100/);
    await h.write("exit 7\n");
    assert.deepEqual(await h.wait(), { exitCode: 7 });
  });

  test("put then get a tar keeps contents, modes and symlinks", async () => {
    const dest = join(home, "dest");
    const res = await client.putFiles(
      dest,
      makeTar([
        { name: "proj/", type: "directory", mode: 0o750 },
        { name: "proj/run.sh", mode: 0o755, body: "#!/bin/sh\necho run\n" },
        { name: "proj/secret", mode: 0o600, body: "s3cret" },
        { name: "proj/link", type: "symlink", linkname: "run.sh" },
      ]),
    );
    assert.equal(res.files, 4);
    assert.equal(statSync(join(dest, "proj")).mode & 0o777, 0o750);
    assert.equal(statSync(join(dest, "proj/run.sh")).mode & 0o777, 0o755);
    assert.equal(statSync(join(dest, "proj/secret")).mode & 0o777, 0o600);
    assert.equal(readFileSync(join(dest, "proj/secret"), "utf8"), "s3cret");
    assert.equal(readlinkSync(join(dest, "proj/link")), "run.sh");
    assert.equal(statSync(join(dest, "proj/run.sh")).mtimeMs, 1_600_000_000_000);

    const entries = await readTar(await client.getFiles(join(dest, "proj")));
    assert.deepEqual([...entries.keys()].sort(), ["proj/", "proj/link", "proj/run.sh", "proj/secret"]);
    assert.equal(entries.get("proj/run.sh")!.mode & 0o777, 0o755);
    assert.equal(entries.get("proj/secret")!.mode & 0o777, 0o600);
    assert.equal(entries.get("proj/run.sh")!.body, "#!/bin/sh\necho run\n");
    assert.equal(entries.get("proj/link")!.linkname, "run.sh");
  });

  test("a bulk put through a Node stream (many small files, one large) arrives byte for byte", async () => {
    // Through a PassThrough, as the daemon feeds it: queued pieces are batched into large
    // frames, and the agent's bulk window lets more than the initial 256 KiB be in flight.
    const dest = join(home, "bulk");
    const big = randomBytes(6 * 1024 * 1024 + 123);
    const small = Array.from({ length: 2000 }, (_, i) => ({ name: `s/${i % 20}/f${i}.txt`, body: `file ${i} `.repeat(1 + (i % 50)) }));
    const pack = tarStream.pack();
    for (const e of small) pack.entry({ name: e.name, mode: 0o644 }, e.body);
    pack.entry({ name: "big.bin", mode: 0o644 }, big);
    pack.finalize();
    const feed = new PassThrough({ highWaterMark: 4 * 1024 * 1024 });
    (pack as unknown as Readable).pipe(feed);
    const res = await client.putFiles(dest, feed);
    assert.equal(res.files, small.length + 1);
    assert.equal(res.bytes, big.length + small.reduce((n, e) => n + e.body.length, 0));
    assert.ok(readFileSync(join(dest, "big.bin")).equals(big));
    for (const e of [small[0]!, small[777]!, small[1999]!]) assert.equal(readFileSync(join(dest, e.name), "utf8"), e.body);
  });

  test("put refuses entries that escape the destination", async () => {
    const dest = join(home, "jail");
    mkdirSync(dest);
    await assert.rejects(client.putFiles(dest, makeTar([{ name: "../escaped", body: "x" }])), /escapes the destination/);
    assert.equal(existsSync(join(home, "escaped")), false);
    await assert.rejects(
      client.putFiles(
        dest,
        makeTar([
          { name: "out", type: "symlink", linkname: home },
          { name: "out/via-link", body: "x" },
        ]),
      ),
      /through the symlink/,
    );
    assert.equal(existsSync(join(home, "via-link")), false);
    assert.ok(lstatSync(join(dest, "out")).isSymbolicLink());
  });

  test("get of a missing path is NotFound", async () => {
    await assert.rejects(client.getFiles(join(home, "nope")), (e: unknown) => e instanceof BangerError && e.code === ErrorCode.NotFound);
  });

  test("ports lists a listener with its pid and command", async () => {
    const server: Server = createServer();
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const port = (server.address() as { port: number }).port;
    try {
      const ports = await client.ports();
      const mine = ports.find((p) => p.port === port);
      assert.ok(mine, `port ${port} not in ${JSON.stringify(ports)}`);
      assert.equal(mine.address, "127.0.0.1");
      assert.equal(mine.proto, "tcp");
      assert.equal(mine.pid, process.pid);
      assert.match(mine.command ?? "", /node/);
    } finally {
      server.close();
    }
  });

  test("stats reports memory, cpu and disk", async () => {
    const s = await client.stats();
    assert.ok(s.memory.total > 0 && s.memory.available <= s.memory.total);
    assert.ok(s.cpu.count >= 1 && s.cpu.user + s.cpu.idle > 0);
    assert.ok(s.disk.total > 0 && s.disk.free <= s.disk.total);
    assert.equal(s.load.length, 3);
  });

  test("tcp channel reaches a guest port (port forwarding)", async () => {
    const server = createServer((c) => c.pipe(c));
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    try {
      const pipe = await client.openTcp((server.address() as { port: number }).port);
      pipe.end("ping");
      assert.equal(await text(pipe), "ping");
    } finally {
      server.close();
    }
  });

  test("shutdown is acknowledged and the agent exits", async () => {
    const other = join(home, "second.sock");
    const second = await startAgent(other);
    const c2 = await connectAgent(await dialUnix(other));
    await c2.shutdown();
    const [code] = await once(second, "exit");
    assert.equal(code, 0);
    assert.equal(await c2.done, undefined);
  });
});
