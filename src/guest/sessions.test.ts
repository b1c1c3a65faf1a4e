// Detached sessions against the real agent (`banger-agent serve --unix`): they outlive the
// connection that started them, keep their output, and take input from later connections.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { buffer as collect } from "node:stream/consumers";
import { makeTempHome, isAlive } from "../../test/helpers.ts";
import { BangerError, ErrorCode } from "../util/errors.ts";
import { connectAgent, type AgentClient } from "./index.ts";
import { dialUnix } from "../vmm/index.ts";
import { startAgent } from "../../test/kits/agent-process.ts";

/** Accumulates a stream's text; waitFor resolves once `re` matches all text so far. */
function textOf(stream: Readable) {
  let text = "";
  stream.on("data", (b: Buffer) => (text += b.toString()));
  return {
    async waitFor(re: RegExp, ms = 5000): Promise<string> {
      const deadline = Date.now() + ms;
      while (!re.test(text)) {
        if (Date.now() > deadline) throw new Error(`no ${re} in ${JSON.stringify(text)}`);
        await new Promise((r) => setTimeout(r, 10));
      }
      return text;
    },
  };
}

describe("guest sessions over a Unix socket", () => {
  const { home, cleanup } = makeTempHome();
  const sock = join(home, "agent.sock");
  let agent: ChildProcess;
  const clients: AgentClient[] = [];
  const connect = async () => {
    const c = await connectAgent(await dialUnix(sock), { timeoutMs: 5000 });
    clients.push(c);
    return c;
  };
  const pids: number[] = [];

  before(async () => {
    agent = await startAgent(sock);
  });
  after(() => {
    for (const c of clients) c.close();
    for (const pid of pids) if (isAlive(pid)) process.kill(pid, "SIGKILL"); // sessions outlive the agent process
    agent?.kill("SIGKILL");
    cleanup();
  });

  test("a session outlives its connection; attach replays, send and input reach it, kill ends it", async () => {
    const first = await connect();
    assert.ok(first.info.features.includes("sessions"));
    const script = 'echo ready; while read line; do echo "got:$line"; done';
    const { pid } = await first.sessionStart({ name: "echoer", argv: ["sh", "-c", script], tty: null });
    pids.push(pid);
    await first.sessionSend("echoer", "before-close\n");
    first.close();
    await first.done;

    const second = await connect();
    const [listed] = (await second.sessionList()).filter((s) => s.name === "echoer");
    assert.equal(listed?.state, "running");
    assert.equal(listed?.pid, pid);
    assert.deepEqual(listed?.argv, ["sh", "-c", script]);
    assert.ok(isAlive(pid));

    const att = await second.sessionAttach("echoer");
    assert.equal(att.pid, pid);
    const out = textOf(att.output);
    assert.equal(await out.waitFor(/got:before-close\n/), "ready\ngot:before-close\n");
    await att.write("typed\n");
    await out.waitFor(/got:typed\n/);
    await second.sessionSend("echoer", "sent\n");
    assert.equal(await out.waitFor(/got:sent\n/), "ready\ngot:before-close\ngot:typed\ngot:sent\n");
    att.detach();
    assert.equal(await att.wait(), undefined);
    assert.equal((await second.sessionList()).find((s) => s.name === "echoer")?.state, "running", "detach leaves it running");

    const logs = await second.sessionLogs("echoer");
    assert.equal((await collect(logs.output)).toString(), "ready\ngot:before-close\ngot:typed\ngot:sent\n");
    assert.equal((await logs.done)?.state, "running");

    const follow = await second.sessionLogs("echoer", { follow: true });
    assert.deepEqual(await second.sessionKill("echoer", "SIGTERM"), { removed: false });
    await collect(follow.output);
    const final = await follow.done;
    assert.equal(final?.state, "exited");
    assert.deepEqual(final?.exit, { signal: "SIGTERM", signalNumber: 15 });
    assert.equal((await second.sessionList()).find((s) => s.name === "echoer")?.state, "exited", "an exited session stays listed");
    assert.deepEqual(await second.sessionKill("echoer"), { removed: true });
    assert.equal(
      (await second.sessionList()).some((s) => s.name === "echoer"),
      false,
    );
  });

  test("runs under a PTY by default; attach follows resize and reports the exit status", async () => {
    const c = await connect();
    const { pid } = await c.sessionStart({ name: "shell", argv: ["sh"] });
    pids.push(pid);
    const att = await c.sessionAttach("shell");
    assert.equal(att.tty, true);
    const out = textOf(att.output);
    att.resize(33, 111);
    await att.write("stty size\n");
    await out.waitFor(/33 111/);
    await att.write("exit 5\n");
    const info = await att.wait();
    assert.deepEqual(info?.exit, { exitCode: 5 });
    await c.sessionRemove("shell");
  });

  test("names are unique, the name rule holds, and a missing program is CommandNotFound", async () => {
    const c = await connect();
    const { pid } = await c.sessionStart({ name: "dup", argv: ["sleep", "30"] });
    pids.push(pid);
    await assert.rejects(c.sessionStart({ name: "dup", argv: ["true"] }), (e: unknown) => e instanceof BangerError && e.code === ErrorCode.AlreadyExists);
    await assert.rejects(c.sessionStart({ name: "bad/name", argv: ["true"] }), (e: unknown) => e instanceof BangerError && e.code === ErrorCode.InvalidArgument);
    await assert.rejects(
      c.sessionStart({ name: "ghost", argv: ["no-such-cmd-xyz"] }),
      (e: unknown) => e instanceof BangerError && e.code === ErrorCode.CommandNotFound && e.message === "no-such-cmd-xyz: command not found",
    );
    await assert.rejects(c.sessionAttach("nobody"), (e: unknown) => e instanceof BangerError && e.code === ErrorCode.NotFound);
    await assert.rejects(c.sessionRemove("dup"), /still running/);
    await c.sessionRemove("dup", { force: true });
    const deadline = Date.now() + 5000;
    while (isAlive(pid)) {
      assert.ok(Date.now() < deadline, "forced rm did not kill the session");
      await new Promise((r) => setTimeout(r, 20));
    }
  });
});
