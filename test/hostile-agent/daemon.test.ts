// A real bangerd with a hostile guest: two "VMs" recorded as running under QEMU, whose agent
// sockets are served by the hostile fake agent (serve.ts) and by the real agent
// (`banger-agent serve --unix`). The daemon adopts both at start, as it adopts VMs that
// outlived a restart (vmm.json + a live pid whose command line names the runtime dir), so
// nothing in the daemon is faked: only what sits behind the agent socket.
// Asserted: whatever the hostile guest sends, the daemon stays up, answers each call with
// one clear line, keeps serving the other VM, and its memory stays bounded.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { REPO, isAlive, makeTempHome, mustRun, runBanger, stopDaemon } from "../helpers.ts";
import { recordFakeVm, spawnUntilReady, startAgent } from "../kits/agent-process.ts";
import { RpcClient } from "../../src/rpc/index.ts";
import { EXPECTED } from "./fake.ts";

const daemonPid = (home: string) => Number.parseInt(readFileSync(join(home, "run", "bangerd.pid"), "utf8"), 10);
const rssBytes = (pid: number) => Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) * 1024;

/** `vm.exec` as the CLI makes it (no stdin): the output, or the error's message. */
async function exec(rpc: RpcClient, vm: string, argv: string[]): Promise<{ out: string; status?: unknown; error?: { code: number; message: string } }> {
  let out = "";
  const onEvent = (ev: unknown) => {
    const e = ev as { t?: string; data?: Buffer };
    if (e.t === "out" && Buffer.isBuffer(e.data)) out += e.data.toString();
  };
  try {
    const status = await rpc.call("vm.exec", { name: vm, argv, stdin: false }, { onEvent });
    return { out, status };
  } catch (err) {
    const e = err as { code: number; message: string };
    return { out, error: { code: e.code, message: e.message } };
  }
}

describe("a real daemon with a hostile guest agent", () => {
  const { home, cleanup } = makeTempHome();
  const procs: ChildProcess[] = [];
  let rpc: RpcClient;
  let pid: number;

  before(async () => {
    mkdirSync(join(home, "run", "vms"), { recursive: true });
    // The store exists before the VMs are recorded: a first daemon run creates it.
    await mustRun(runBanger(["daemon", "start"], { home }));
    await stopDaemon(home);
    procs.push(await recordFakeVm(home, "hostile", (sock) => spawnUntilReady(process.execPath, ["--import", "tsx", join(REPO, "test/hostile-agent/serve.ts"), sock])));
    procs.push(await recordFakeVm(home, "good", startAgent));
    await mustRun(runBanger(["daemon", "start"], { home }));
    pid = daemonPid(home);
    rpc = await RpcClient.connect(join(home, "run", "bangerd.sock"));
  });
  after(async () => {
    rpc?.close();
    await stopDaemon(home);
    for (const p of procs) p.kill("SIGKILL");
    cleanup();
  });

  /** The daemon is alive, answers, and the well-behaved VM still works. */
  async function stillServing(what: string): Promise<void> {
    assert.ok(isAlive(pid), `${what}: bangerd is still running`);
    const status = (await rpc.call("daemon.status")) as { pid: number };
    assert.equal(status.pid, pid, what);
    const good = await exec(rpc, "good", ["echo", "still here"]);
    assert.equal(good.out, "still here\n", `${what}: the other VM is served (${good.error?.message})`);
  }

  test("both VMs were adopted", async () => {
    const vms = (await rpc.call("vm.list")) as { name: string; state: string }[];
    assert.deepEqual(vms.map((v) => [v.name, v.state]).sort(), [
      ["good", "running"],
      ["hostile", "running"],
    ]);
    assert.equal((await exec(rpc, "hostile", ["echo"])).out, "hostile-ok\n");
  });

  test("stats answered, then EOF and data on a stream nobody reads: dropped, the daemon stays up", async () => {
    for (let i = 0; i < 3; i++) {
      const stats = (await rpc.call("vm.stats", { name: "hostile" })) as { guest: { memory: { total: number } } };
      assert.equal(stats.guest.memory.total, 1 << 30);
    }
    await new Promise((r) => setTimeout(r, 100));
    await stillServing("stats");
  });

  test("a port forward whose guest breaks the protocol after its EOF: the forward ends, the connection is dropped, nothing else", async () => {
    // Everything up to the EOF was valid, so the forward itself ended cleanly; the data after it ends the VM's connection.
    assert.deepEqual(await rpc.call("vm.tcp", { name: "hostile", port: 8080 }), { closed: true });
    await stillServing("tcp");
    const log = readFileSync(join(home, "logs", "bangerd.log"), "utf8");
    assert.match(log, /"vm":"hostile","error":"guest agent protocol violation: data on stream 1 of channel \d+ \(tcp\) after its EOF/);
  });

  // half-frame waits out the daemon's 30 s reply deadline; the client test covers it.
  for (const [name, want] of Object.entries(EXPECTED).filter(([n]) => n !== "half-frame")) {
    test(`exec misbehaviour "${name}": one clear answer, the daemon stays up`, async () => {
      const got = await exec(rpc, "hostile", [name]);
      if (want.ok !== undefined) {
        assert.equal(got.error, undefined, got.error?.message);
        assert.equal(got.out, want.ok);
      } else {
        assert.equal(got.error?.code, want.error!.code, got.error?.message);
        assert.match(got.error!.message, want.error!.message);
        assert.doesNotMatch(got.error!.message, /[\n\x1b]/);
      }
      await stillServing(name);
    });
  }

  test("300 flooded requests leave the daemon's memory bounded, and each got a clear error", async () => {
    const warm = async (n: number) => {
      for (let i = 0; i < n; i++) {
        await assert.rejects(rpc.call("vm.ports", { name: "hostile" }), /protocol violation: data on stream 1 of channel \d+ \(ports\), which has no such stream/);
      }
    };
    await warm(20); // let the heap settle before measuring
    const before = rssBytes(pid);
    await warm(300);
    const grown = rssBytes(pid) - before;
    // Before the fix the daemon held every flooded reply: 300 x 512 KiB, and RSS grew ~170 MiB.
    // Now each flood ends its connection; what one connection may hold is MAX_BUFFERED_BYTES
    // (33 MiB). RSS also counts garbage not yet collected, hence the margin.
    assert.ok(grown < 80 << 20, `bangerd's RSS grew by ${Math.round(grown / 1048576)} MiB`);
    await stillServing("flood");
    const log = readFileSync(join(home, "logs", "bangerd.log"), "utf8");
    assert.match(log, /"msg":"guest agent connection ended","vm":"hostile","error":"guest agent protocol violation: /);
  });
});
