// The real agent client (src/guest) against a hostile fake agent (fake.ts): whatever the
// guest sends, the host gets one clear error for that connection (or drops the frame), never
// an exception that escapes to the process, and never memory beyond the stated bound.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { text } from "node:stream/consumers";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { REPO } from "../helpers.ts";
import { spawnUntilReady } from "../kits/agent-process.ts";
import { BangerError, ErrorCode } from "../../src/util/errors.ts";
import { MAX_BUFFERED_BYTES, MAX_CHANNELS, connectAgent, type AgentClient } from "../../src/guest/index.ts";
import { dialUnix } from "../../src/vmm/index.ts";
import { FrameType, INITIAL_WINDOW, Stream, magic } from "../../src/guest/frame.ts"; // the wire format itself, as the fake agent speaks it
import { EXPECTED, MISBEHAVIOURS, answer, answerNeverClose, eofThenData, useFakes } from "./fake.ts";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

/** What an exec against a misbehaving agent came to: its output and status, or the error. */
async function execOutcome(client: AgentClient): Promise<{ out?: string; status?: unknown; error?: BangerError }> {
  try {
    const h = await client.exec({ argv: ["x"] });
    h.stderr.resume();
    const [status, out] = await Promise.all([h.wait(), text(h.stdout).catch(() => "")]);
    return { out, status };
  } catch (err) {
    assert.ok(err instanceof BangerError, `a BangerError, not ${String(err)}`);
    return { error: err };
  }
}

/** Lets any error Node emits asynchronously (an unhandled stream 'error') surface first. */
const settle = () => new Promise((r) => setTimeout(r, 50));

describe("the agent client against a hostile agent", () => {
  const { home, agent, peer } = useFakes();

  test("every misbehaviour ends that connection with one clear error (or is dropped); none escapes", async () => {
    assert.deepEqual(Object.keys(EXPECTED).sort(), Object.keys(MISBEHAVIOURS).sort(), "every misbehaviour has an expectation");
    for (const [name, want] of Object.entries(EXPECTED)) {
      const path = await agent(`${name}.sock`, (c, o) => void MISBEHAVIOURS[name]!(c, o));
      const client = await connectAgent(await dialUnix(path), { replyTimeoutMs: 300 });
      const got = await execOutcome(client);
      await settle();
      if (want.ok !== undefined) {
        assert.equal(got.error, undefined, `${name}: ${got.error?.message}`);
        assert.equal(got.out, want.ok, name);
        assert.deepEqual(got.status, { exitCode: 0 }, name);
        assert.deepEqual(client.usage(), { channels: 0, bufferedBytes: 0 }, `${name}: nothing held after the outcome`);
        client.close();
      } else {
        assert.equal(got.error?.code, want.error!.code, `${name}: ${got.error?.message}`);
        assert.match(got.error!.message, want.error!.message, name);
        assert.doesNotMatch(got.error!.message, /\n/, `${name}: one line`);
        const reason = await client.done;
        assert.equal(reason?.message, got.error!.message, `${name}: the connection ended with that error`);
        await assert.rejects(client.health(), (e: unknown) => e === reason, `${name}: the dead connection says why`);
      }
    }
  });

  test("EOF then data on a stream nobody reads (the stats poll) is dropped, and the process survives", async () => {
    const path = await agent("stats.sock", eofThenData);
    const client = await connectAgent(await dialUnix(path));
    for (let i = 0; i < 3; i++) assert.equal((await client.stats()).memory.total, 1 << 30);
    await settle();
    assert.deepEqual(client.usage(), { channels: 0, bufferedBytes: 0 });
    client.close();
  });

  test("channels the guest never closes are released when the host is done: 600 health calls hold nothing", async () => {
    const path = await agent("never-close.sock", answerNeverClose);
    const client = await connectAgent(await dialUnix(path));
    for (let i = 0; i < 600; i += 50) await Promise.all(Array.from({ length: 50 }, () => client.health()));
    assert.deepEqual(client.usage(), { channels: 0, bufferedBytes: 0 });
    client.close();
  });

  test("a guest flooding one-shot replies is cut off; 200 such requests leave no memory behind", async () => {
    // The fake runs as its own process, so only the host side's memory is measured here.
    const path = join(home, "flood.sock");
    const fake = await spawnUntilReady(process.execPath, ["--import", "tsx", join(REPO, "test/hostile-agent/serve.ts"), path, "flood"]);
    try {
      gc();
      const before = process.memoryUsage().arrayBuffers;
      const clients: AgentClient[] = [];
      let refused = 0;
      for (let i = 0; i < 200; i++) {
        const client = await connectAgent(await dialUnix(path)); // a fresh connection each time, as the daemon makes after one ends
        clients.push(client);
        await client.health().catch((err: unknown) => {
          assert.match((err as Error).message, /data on stream 1 of channel 1 \(health\), which has no such stream$/);
          refused++;
        });
      }
      await settle();
      gc();
      const grown = process.memoryUsage().arrayBuffers - before;
      for (const c of clients) c.close();
      assert.equal(refused, 200, "every flooded reply is a violation");
      // Held, 200 x 512 KiB would be 100 MiB; what may linger is a socket's last read per connection.
      assert.ok(grown < 16 << 20, `memory grew by ${grown} bytes`);
    } finally {
      fake.kill("SIGKILL");
    }
  });

  test(`unread output is bounded: ${MAX_CHANNELS} channels with full windows, then a clear refusal`, async () => {
    const full = Buffer.alloc(INITIAL_WINDOW, 0x62);
    const path = await agent("unread.sock", (c, o) => {
      c.json(o.id, FrameType.Opened, { pid: o.id });
      c.frame(o.id, FrameType.Data, full, Stream.Out);
      c.frame(o.id, FrameType.Data, full, Stream.Err);
    });
    const client = await connectAgent(await dialUnix(path));
    const handles = [];
    for (let i = 0; i < MAX_CHANNELS; i++) handles.push(await client.exec({ argv: ["x"] }));
    await settle();
    const usage = client.usage();
    assert.equal(usage.channels, MAX_CHANNELS);
    assert.equal(usage.bufferedBytes, MAX_CHANNELS * 2 * INITIAL_WINDOW);
    assert.ok(usage.bufferedBytes <= MAX_BUFFERED_BYTES);
    await assert.rejects(client.exec({ argv: ["x"] }), (e: unknown) => e instanceof BangerError && e.code === ErrorCode.Unavailable && /already has 64 operations open/.test(e.message));
    for (const h of handles) h.close();
    assert.deepEqual(client.usage(), { channels: 0, bufferedBytes: 0 });
    assert.equal((await client.exec({ argv: ["x"] })).pid > 0, true, "closing frees the slots");
    client.close();
  });

  test("replies whose text would reach the store or a terminal must follow the protocol's rules", async () => {
    const session = (over: Record<string, unknown>) => ({ name: "ok", pid: 1, argv: ["sh"], state: "running", started: "2026-01-02T03:04:05Z", bytes: 0, ...over });
    const replies: Array<[unknown, RegExp]> = [
      [{ sessions: [session({ name: "evil\u001b[31m" })] }, /session: a name that breaks the name rule/],
      [{ sessions: [session({ name: "../../x" })] }, /session: a name that breaks the name rule/],
      [{ sessions: [session({ started: "yesterday\u001b[2J" })] }, /"started" is not an RFC 3339 UTC time/],
      [{ sessions: Array.from({ length: 65 }, (_, i) => session({ name: `s${i}` })) }, /at most 64 sessions/],
    ];
    let next = 0;
    const path = await agent("replies.sock", (c, o) => {
      if (o.kind === "ports") return c.json(o.id, FrameType.Result, { ports: [{ proto: "tcp", address: "0.0.0.0\u001b]0;pwned\u0007", port: 80 }] });
      c.json(o.id, FrameType.Result, replies[next++]![0]);
    });
    const client = await connectAgent(await dialUnix(path));
    for (const [, why] of replies) await assert.rejects(client.sessionList(), (e: unknown) => e instanceof BangerError && e.code === ErrorCode.Integrity && why.test(e.message));
    await assert.rejects(client.ports(), /ports: an address that is not an IP address/);
    assert.deepEqual(client.usage(), { channels: 0, bufferedBytes: 0 }, "a bad reply fails its request; the connection stays");
    client.close();
  });

  test("wrong versions are refused at the handshake", async () => {
    const magicV2 = await peer("magic-v2.sock", (s) => s.once("data", () => s.write(magic(2))));
    await assert.rejects(connectAgent(await dialUnix(magicV2)), /not a banger agent/);
    const helloV2 = await peer("hello-v2.sock", (s) => s.once("data", (d: Buffer) => s.write(answer(d, { version: 2 }))));
    await assert.rejects(connectAgent(await dialUnix(helloV2)), /agent speaks protocol 2, banger speaks 1/);
  });
});
