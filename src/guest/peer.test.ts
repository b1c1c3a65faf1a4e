// The guest is untrusted: fake peers (plain Unix-socket servers standing in for a broken
// or hostile guest) must get clear errors, never hangs or unbounded buffering. Also the
// Firecracker hybrid-vsock dial against a fake socket (no firecracker binary on this host).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createServer, connect, type Server, type Socket } from "node:net";
import { once } from "node:events";
import { join } from "node:path";
import type { ChildProcess } from "node:child_process";
import { makeTempHome } from "../../test/helpers.ts";
import { BangerError, ErrorCode } from "../util/errors.ts";
import { connectAgent } from "./index.ts";
import { dialFirecrackerVsock, dialUnix } from "../vmm/index.ts";
import { FrameDecoder, FrameType, MAX_PAYLOAD, encodeFrame, encodeJSON, magic } from "./frame.ts";
import { startAgent } from "../../test/kits/agent-process.ts";
import { answer, helloThen, useFakes } from "../../test/hostile-agent/fake.ts";

const isBanger = (code: number, re: RegExp) => (e: unknown) => e instanceof BangerError && e.code === code && re.test(e.message);

describe("untrusted peers", () => {
  const { peer } = useFakes();

  test("a garbage handshake is refused with a clear error", async () => {
    const path = await peer("garbage.sock", (s) => s.write("SSH-2.0-OpenSSH_9.2\r\n"));
    await assert.rejects(connectAgent(await dialUnix(path)), isBanger(ErrorCode.Integrity, /not a banger agent.*SSH-2\.0/));
  });

  test("serial mode skips stale bytes and stale handshakes; socket mode does not", async () => {
    const stale = Buffer.concat([Buffer.from("old output BNG"), encodeFrame(7, FrameType.Close), magic(), encodeJSON(0, FrameType.Hello, { version: 1, nonce: "an-old-one" })]);
    const path = await peer("serial.sock", (s) => s.once("data", (d: Buffer) => s.write(Buffer.concat([stale, answer(d)]))));
    const client = await connectAgent(await dialUnix(path), { serial: true });
    assert.equal(client.info.agentVersion, "fake");
    client.close();
    await assert.rejects(connectAgent(await dialUnix(path)), isBanger(ErrorCode.Integrity, /not a banger agent/));
  });

  test("a silent peer times out the handshake", async () => {
    const path = await peer("silent.sock", () => undefined);
    await assert.rejects(connectAgent(await dialUnix(path), { timeoutMs: 150 }), isBanger(ErrorCode.Timeout, /handshake/));
  });

  test("a wrong protocol version is refused", async () => {
    const path = await peer("v2.sock", (s) => s.once("data", () => s.write(magic(2))));
    await assert.rejects(connectAgent(await dialUnix(path)), isBanger(ErrorCode.Integrity, /not a banger agent/));
  });

  test("an oversized frame ends the connection before anything is buffered", async () => {
    const path = await peer(
      "big.sock",
      helloThen((s) => {
        s.once("data", () => {
          const hdr = Buffer.alloc(12);
          hdr.writeUInt32BE(64 << 20, 0); // 64 MiB announced
          hdr.writeUInt32BE(1, 4);
          hdr.writeUInt8(FrameType.Result, 8);
          s.write(hdr);
        });
      }),
    );
    const client = await connectAgent(await dialUnix(path));
    await assert.rejects(client.health(), isBanger(ErrorCode.Integrity, /exceeds the 1048576-byte limit/));
    const reason = await client.done;
    assert.match(reason?.message ?? "", /protocol violation/);
  });

  test("data beyond the flow-control window is a violation", async () => {
    const path = await peer(
      "flood.sock",
      helloThen((s) => {
        s.once("data", () => {
          s.write(encodeJSON(1, FrameType.Opened, { pid: 42 }));
          const chunk = Buffer.alloc(64 << 10);
          for (let i = 0; i < 5; i++) s.write(encodeFrame(1, FrameType.Data, chunk, 1)); // 320 KiB > 256 KiB window
        });
      }),
    );
    const client = await connectAgent(await dialUnix(path));
    const h = await client.exec({ argv: ["true"] });
    h.stdout.pause(); // nobody reads: the window must not be refilled
    h.stdout.on("error", () => undefined);
    await assert.rejects(h.wait(), isBanger(ErrorCode.Integrity, /flow-control window/));
  });

  test("a reply of the wrong shape is a violation, not a crash", async () => {
    const path = await peer(
      "shape.sock",
      helloThen((s) => s.once("data", () => s.write(encodeJSON(1, FrameType.Result, { memory: "lots" })))),
    );
    const client = await connectAgent(await dialUnix(path));
    await assert.rejects(client.stats(), isBanger(ErrorCode.Integrity, /stats\.memory/));
    client.close();
  });

  test("a peer that never replies times out the request", async () => {
    const path = await peer(
      "mute.sock",
      helloThen(() => undefined),
    );
    const client = await connectAgent(await dialUnix(path), { replyTimeoutMs: 100 });
    await assert.rejects(client.ports(), isBanger(ErrorCode.Timeout, /ports/));
    client.close();
  });

  test("the decoder rejects bad headers", () => {
    const hdr = encodeFrame(1, FrameType.Data, Buffer.from("x"));
    hdr.writeUInt8(99, 8);
    assert.throws(() => new FrameDecoder().push(hdr), /unknown frame type 99/);
    const d = new FrameDecoder();
    const frame = encodeFrame(7, FrameType.Data, Buffer.alloc(MAX_PAYLOAD), 2);
    assert.equal(d.push(frame.subarray(0, 100)).length, 0);
    const [f] = d.push(frame.subarray(100));
    assert.equal(f?.channel, 7);
    assert.equal(f?.payload.length, MAX_PAYLOAD);
    assert.equal(d.buffered, 0);
  });
});

describe("the agent refuses a misbehaving host", () => {
  const { home, cleanup } = makeTempHome();
  const sock = join(home, "agent.sock");
  let agent: ChildProcess;
  before(async () => {
    agent = await startAgent(sock);
  });
  after(() => {
    agent?.kill("SIGKILL");
    cleanup();
  });

  async function rawConnection(): Promise<{ s: Socket; frames: () => Promise<FrameType[]> }> {
    const s = connect(sock);
    await once(s, "connect");
    const chunks: Buffer[] = [];
    s.on("data", (d: Buffer) => chunks.push(d));
    const closed = once(s, "close");
    return {
      s,
      frames: async () => {
        await closed;
        const all = Buffer.concat(chunks);
        if (all.length < 8) return [];
        return new FrameDecoder().push(all.subarray(8)).map((f) => f.type);
      },
    };
  }

  test("garbage instead of the magic: the agent hangs up", async () => {
    const { s, frames } = await rawConnection();
    s.write("GET / HTTP/1.1\r\n\r\n");
    assert.deepEqual(await frames(), []);
  });

  test("an oversized frame after the handshake: ERROR on channel 0, then hang up", async () => {
    const { s, frames } = await rawConnection();
    const hdr = Buffer.alloc(12);
    hdr.writeUInt32BE(16 << 20, 0);
    hdr.writeUInt8(FrameType.Open, 8);
    s.write(Buffer.concat([magic(), encodeJSON(0, FrameType.Hello, { version: 1 }), hdr]));
    assert.deepEqual(await frames(), [FrameType.Hello, FrameType.Error]);
  });

  test("the agent keeps serving other connections", async () => {
    const client = await connectAgent(await dialUnix(sock));
    assert.equal((await client.health()).pid1, false);
    client.close();
  });
});

describe("Firecracker hybrid vsock dial (fake Firecracker socket: no firecracker binary here)", () => {
  const { home, cleanup } = makeTempHome();
  const agentSock = join(home, "agent.sock");
  let agent: ChildProcess;
  const servers: Server[] = [];
  before(async () => {
    agent = await startAgent(agentSock);
  });
  after(() => {
    for (const s of servers) s.close();
    agent?.kill("SIGKILL");
    cleanup();
  });

  /** Mimics Firecracker: refuses `refusals` connections (no guest listener yet), then proxies to the agent. */
  async function fakeFirecracker(name: string, refusals: number, reply = (_port: number) => `OK 1073741824\n`): Promise<{ path: string; firstChunks: string[] }> {
    const path = join(home, name);
    const firstChunks: string[] = [];
    let seen = 0;
    const server = createServer((s) => {
      s.once("data", (d: Buffer) => {
        s.pause(); // keep the host's handshake bytes until the pipe is in place
        firstChunks.push(d.toString());
        if (seen++ < refusals) return s.destroy();
        const m = /^CONNECT (\d+)\n$/.exec(d.toString());
        if (!m) return s.destroy();
        const upstream = connect(agentSock);
        upstream.once("connect", () => {
          s.write(reply(Number(m[1])));
          s.pipe(upstream).pipe(s);
        });
        s.on("close", () => upstream.destroy());
      });
    });
    server.listen(path);
    await once(server, "listening");
    servers.push(server);
    return { path, firstChunks };
  }

  test("CONNECT in one write, OK line consumed, retries while the guest listener is not up", async () => {
    const fc = await fakeFirecracker("v.sock", 2);
    const sock = await dialFirecrackerVsock(fc.path, 52, { timeoutMs: 5000 });
    assert.deepEqual(fc.firstChunks, ["CONNECT 52\n", "CONNECT 52\n", "CONNECT 52\n"]);
    const client = await connectAgent(sock);
    assert.equal((await client.health()).version, client.info.agentVersion);
    client.close();
  });

  test("bytes that arrive with the OK line are kept for the handshake", async () => {
    // The agent's magic can share a packet with "OK n\n": prove nothing after the newline is lost.
    const path = join(home, "glued.sock");
    const server = createServer((s) => s.once("data", () => s.write(Buffer.concat([Buffer.from("OK 99\n"), Buffer.from("hello")]))));
    server.listen(path);
    await once(server, "listening");
    servers.push(server);
    const sock = await dialFirecrackerVsock(path, 52);
    const first = once(sock, "data");
    sock.resume(); // dialers hand back a paused socket so nothing is lost before the handshake
    const [data] = (await first) as [Buffer];
    assert.equal(data.toString(), "hello");
    sock.destroy();
  });

  test("a wrong reply is an error at once; no listener at all times out", async () => {
    const bad = await fakeFirecracker("bad.sock", 0, () => "NOPE\n");
    await assert.rejects(dialFirecrackerVsock(bad.path, 52), isBanger(ErrorCode.Integrity, /unexpected reply "NOPE"/));
    const never = await fakeFirecracker("never.sock", Infinity);
    const t0 = Date.now();
    await assert.rejects(dialFirecrackerVsock(never.path, 52, { timeoutMs: 300 }), isBanger(ErrorCode.Timeout, /vsock port 52/));
    assert.ok(Date.now() - t0 < 2000);
  });

  test("an aborted dial stops retrying", async () => {
    const never = await fakeFirecracker("abort.sock", Infinity);
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    await assert.rejects(dialFirecrackerVsock(never.path, 52, { signal: ac.signal, timeoutMs: 10_000 }), isBanger(ErrorCode.Cancelled, /cancelled/));
  });
});
