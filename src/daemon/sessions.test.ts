// The daemon's session operations against the real agent (`banger-agent serve --unix`)
// standing in for a VM's: the VMM side is the only fake, since no VM boots here.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { join } from "node:path";
import { isAlive, makeTempHome } from "../../test/helpers.ts";
import { connectAgent, type AgentClient } from "../guest/index.ts";
import { dialUnix } from "../vmm/index.ts";
import { startAgent } from "../../test/kits/agent-process.ts";
import type { CallContext } from "../rpc/index.ts";
import { openStore, type Store } from "../store/index.ts";
import { BangerError, ErrorCode } from "../util/errors.ts";
import type { DaemonContext } from "./context.ts";
import { Logger } from "./logger.ts";
import { attachSession, killSession, listSessions, parseSignal, removeSession, startSession } from "./sessions.ts";

/** A call whose events are collected and whose input the test sends. */
function fakeCall() {
  const controller = new AbortController();
  const events: Array<{ t: string; data?: Buffer }> = [];
  let listener: (input: unknown) => void = () => undefined;
  const call: CallContext = {
    signal: controller.signal,
    progress: () => undefined,
    emit: async (e) => void events.push(e as { t: string; data?: Buffer }),
    onInput: (l) => (listener = l),
  };
  const output = () =>
    events
      .filter((e) => e.t === "out")
      .map((e) => e.data!.toString())
      .join("");
  return { call, events, output, send: (input: unknown) => listener(input), cancel: () => controller.abort() };
}

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("daemon session operations", () => {
  const { home, cleanup } = makeTempHome();
  let agent: ChildProcess;
  let client: AgentClient;
  let store: Store;
  let reachable = true;
  const pids: number[] = [];
  let ctx: DaemonContext;

  before(async () => {
    const sock = join(home, "agent.sock");
    agent = await startAgent(sock);
    client = await connectAgent(await dialUnix(sock));
    store = openStore(join(home, "banger.db"));
    store.putKernel({ name: "k", source: "test", kernelVersion: "6.1", distro: "debian", arch: "x86_64", vmlinuxSha256: "a".repeat(64), hasInitrd: false, modules: [], sizeBytes: 1 });
    store.putImage({ name: "i", source: "test", digest: "", kernelRef: "k", distro: "busybox", arch: "x86_64", sizeBytes: 1, config: {} });
    store.insertVm({ name: "vm1", id: "id1", state: "running", image: "i", kernel: "k", vmm: "qemu", cpus: 1, memoryBytes: 256 * 1024 ** 2, diskBytes: 0, pid: 1, ip: null, error: null, config: {} });
    const runtime = {
      handle: (name: string) => (name === "vm1" && store.getVm("vm1")?.state === "running" ? {} : undefined),
      agent: async () => {
        if (!reachable) throw new BangerError(ErrorCode.Unavailable, "guest agent connection closed");
        return client;
      },
    };
    ctx = { store, runtime, log: new Logger(join(home, "bangerd.log"), false) } as unknown as DaemonContext;
  });
  after(() => {
    client?.close();
    for (const pid of pids) if (isAlive(pid)) process.kill(pid, "SIGKILL");
    agent?.kill("SIGKILL");
    store?.close();
    cleanup();
  });

  test("start names sessions after the command, records them, and lists them live", async () => {
    const a = await startSession(ctx, "vm1", { argv: ["sh", "-c", 'echo ready; while read l; do echo "in:$l"; done'] });
    const b = await startSession(ctx, "vm1", { argv: ["/bin/sh", "-c", "sleep 30"], tty: null });
    pids.push(a.pid, b.pid);
    assert.deepEqual([a.name, b.name], ["sh-1", "sh-2"]);
    assert.equal(store.listSessions("vm1")[0]?.command, `sh -c 'echo ready; while read l; do echo "in:$l"; done'`);
    const list = await listSessions(ctx);
    assert.deepEqual(
      list.map((s) => [s.name, s.state, s.live, s.pid]),
      [
        ["sh-1", "running", true, a.pid],
        ["sh-2", "running", true, b.pid],
      ],
    );
    await assert.rejects(startSession(ctx, "vm1", { name: "sh-1", argv: ["true"] }), /session sh-1 already exists in vm vm1/);
  });

  test("attach replays the scrollback, forwards input, and detaches without ending the session", async () => {
    const f = fakeCall();
    const attached = attachSession(ctx, "vm1", "sh-1", f.call);
    await until("the scrollback", () => f.output().includes("ready"));
    f.send({ t: "in", b64: Buffer.from("typed\n").toString("base64") });
    await until("the echo", () => f.output().includes("in:typed"));
    assert.ok(
      f.events.some((e) => e.t === "ack"),
      "input is acknowledged",
    );
    f.send({ t: "detach" });
    assert.deepEqual(await attached, { detached: true });
    assert.equal((await listSessions(ctx, "vm1")).find((s) => s.name === "sh-1")?.state, "running");
  });

  test("an unreachable agent shows the stored rows; a stopped VM's sessions are lost", async () => {
    reachable = false;
    try {
      const stale = await listSessions(ctx, "vm1");
      assert.deepEqual(
        stale.map((s) => [s.name, s.state, s.live]),
        [
          ["sh-1", "running", false],
          ["sh-2", "running", false],
        ],
      );
    } finally {
      reachable = true;
    }
    store.putSession({ vm: "vm1", name: "gone", command: "x", state: "running", exitCode: null });
    const live = await listSessions(ctx, "vm1");
    assert.equal(live.find((s) => s.name === "gone")?.state, "lost", "the agent no longer has it");
    await removeSession(ctx, "vm1", "gone", false);
    assert.equal(
      store.listSessions("vm1").some((s) => s.name === "gone"),
      false,
    );
  });

  test("kill reports the signal that ended it; killing an exited session removes it", async () => {
    const res = await killSession(ctx, "vm1", "sh-2", parseSignal("term"));
    assert.deepEqual(res.exit, { signal: "SIGTERM", signalNumber: 15 });
    assert.equal(store.listSessions("vm1").find((s) => s.name === "sh-2")?.exitCode, 128 + 15);
    assert.equal((await killSession(ctx, "vm1", "sh-2", 15)).state, "removed");
    assert.equal(
      store.listSessions("vm1").some((s) => s.name === "sh-2"),
      false,
    );
    assert.throws(() => parseSignal("NOPE"), /unknown signal/);
    assert.equal(parseSignal("9"), 9);
  });

  test("a stopped VM marks its running sessions lost", async () => {
    store.updateVm("vm1", { state: "stopped" });
    const list = await listSessions(ctx, "vm1");
    assert.deepEqual(
      list.map((s) => [s.name, s.state, s.live]),
      [["sh-1", "lost", false]],
    );
    await assert.rejects(attachSession(ctx, "vm1", "sh-1", fakeCall().call), /vm vm1 is stopped, not running/);
  });
});
