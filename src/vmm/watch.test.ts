// Watching real QEMU VMs end and pause (Debian's cloud kernel, a busybox initramfs, TCG):
// a child killed with SIGKILL is reported at once with the signal; a VMM this process did
// not start (adopted after a daemon restart) is noticed by its pid within a second; QEMU's
// pause and resume come from its QMP events; a guest that panics is reported with the panic
// line. Plus the pure rules: how an end is described, and guest text kept bounded and inert.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, test } from "node:test";
import { describeEnd, findPanicLine } from "./ending.ts";
import { buildQemuArgv, killUnrecordedVmms, qemuDriver, qmpCommand, type VmHandle, type VmmEvent, type VmSpec } from "./index.ts";
import { forgetChildExit, isAlive, spawnDetached } from "./process.ts";
import { qemuTestBed } from "../../test/kits/vm.ts";

// /init: panics on request (sysrq c; panic=-1 then resets the guest and -no-reboot ends QEMU).
const SCRIPT = `
echo WATCH-READY
grep -q panicnow=1 /proc/cmdline && { sleep 1; echo c > /proc/sysrq-trigger; }
while true; do sleep 1; done
`;

const bed = qemuTestBed({ modules: [], script: SCRIPT }, 1024 * 1024);
const specFor = (name: string, extraCmdline = ""): VmSpec => bed.spec(name, extraCmdline);

/** Collects a handle's events; `next(kind)` waits for the next one of that kind. */
function collect(handle: VmHandle) {
  const events: Array<VmmEvent & { at: number }> = [];
  const unwatch = handle.watch((e) => events.push({ ...e, at: Date.now() }));
  const next = async (kind: VmmEvent["kind"], timeoutMs = 60_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = events.find((e) => e.kind === kind);
      if (found) {
        events.splice(events.indexOf(found), 1);
        return found;
      }
      if (Date.now() > deadline) throw new Error(`no ${kind} event`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  return { events, unwatch, next };
}

describe("watching a VMM (real boots under QEMU)", () => {
  test("a child killed with SIGKILL is reported crashed at once, with the signal", async (t) => {
    if (typeof bed.kernel === "string") return t.skip(bed.kernel);
    const vm = await qemuDriver.start(specFor("w1"));
    const w = collect(vm);
    const killedAt = Date.now();
    process.kill(vm.pid, "SIGKILL");
    const ended = await w.next("ended");
    assert.deepEqual({ ...ended, at: 0 }, { kind: "ended", state: "crashed", reason: "the VMM was killed by SIGKILL", at: 0 });
    assert.ok(ended.at - killedAt < 1000, `reported after ${ended.at - killedAt} ms`);
  });

  test("an adopted VMM: pause and resume from QMP events, its end noticed by pid within a second", async (t) => {
    if (typeof bed.kernel === "string") return t.skip(bed.kernel);
    const started = await qemuDriver.start(specFor("w2"));
    // As after a daemon restart: this process is not its parent, so no exit status.
    forgetChildExit(started.pid);
    const vm = (await qemuDriver.adopt(started.runtimeDir))!;
    const w = collect(vm);
    const qmp = join(vm.runtimeDir, "qmp.sock");
    await qmpCommand(qmp, "stop");
    assert.deepEqual({ ...(await w.next("paused")), at: 0 }, { kind: "paused", reason: "paused by the VMM", nospace: false, at: 0 });
    await qmpCommand(qmp, "cont");
    await w.next("resumed");
    const killedAt = Date.now();
    process.kill(vm.pid, "SIGKILL");
    const ended = (await w.next("ended")) as Extract<VmmEvent, { kind: "ended" }> & { at: number };
    assert.equal(ended.state, "crashed");
    assert.equal(ended.reason, `the VMM (pid ${vm.pid}) ended without shutting down (killed?)`);
    assert.ok(ended.at - killedAt < 1000, `reported after ${ended.at - killedAt} ms`);
  });

  test("a guest that panics is reported crashed with its panic line", async (t) => {
    if (typeof bed.kernel === "string") return t.skip(bed.kernel);
    const vm = await qemuDriver.start(specFor("w3", "panicnow=1"));
    const w = collect(vm);
    const ended = (await w.next("ended")) as Extract<VmmEvent, { kind: "ended" }>;
    assert.equal(ended.state, "crashed");
    assert.match(ended.reason, /^guest kernel panic: Kernel panic - not syncing: sysrq triggered crash/);
  });

  test("unwatching stops the reports: an operation that ends the VMM itself hears nothing", async (t) => {
    if (typeof bed.kernel === "string") return t.skip(bed.kernel);
    const vm = await qemuDriver.start(specFor("w4"));
    const w = collect(vm);
    w.unwatch();
    await vm.kill();
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(w.events, []);
  });
});

describe("a VMM no state file records (its daemon was killed right after spawning it)", () => {
  test("is found by its runtime dir and killed; other processes naming the dir are left alone", async (t) => {
    if (typeof bed.kernel === "string") return t.skip(bed.kernel);
    const spec = specFor("w5");
    await mkdir(spec.runtimeDir, { recursive: true });
    const vmm = spawnDetached(buildQemuArgv(spec, { accel: spec.accel!, agentChannel: "virtio-serial" }), join(spec.runtimeDir, "vmm.log"), join(spec.runtimeDir, "vmm.log"), spec.runtimeDir);
    const bystander = spawn("sh", ["-c", "sleep 30", join(spec.runtimeDir, "console.log")], { stdio: "ignore" });
    try {
      assert.equal(await qemuDriver.adopt(spec.runtimeDir), undefined, "nothing recorded: adopt cannot find it");
      assert.deepEqual(await killUnrecordedVmms(spec.runtimeDir), [vmm]);
      assert.equal(isAlive(vmm), false);
      assert.equal(isAlive(bystander.pid!), true, "a process that only mentions the dir is not a VMM");
    } finally {
      bystander.kill("SIGKILL");
    }
  });
});

describe("describing an end", () => {
  test("the facts decide the state and the reason", () => {
    const cases: Array<[Parameters<typeof describeEnd>[0], string, string]> = [
      [{ pid: 7, status: { code: null, signal: "SIGKILL" } }, "crashed", "the VMM was killed by SIGKILL"],
      [{ pid: 7, status: { code: 1, signal: null }, logLine: "qemu: could not open disk" }, "crashed", "the VMM exited with status 1: qemu: could not open disk"],
      [{ pid: 7, status: { code: 0, signal: null }, shutdown: "guest-shutdown" }, "stopped", "the guest powered off"],
      [{ pid: 7, status: { code: 0, signal: null }, shutdown: "guest-reset" }, "stopped", "the guest rebooted (a VM ends on reboot)"],
      [{ pid: 7, shutdown: "guest-reset", panicLine: "Kernel panic - not syncing: oops" }, "crashed", "guest kernel panic: Kernel panic - not syncing: oops"],
      [{ pid: 7, status: { code: 0, signal: null } }, "stopped", "the VMM exited"],
      [{ pid: 7 }, "crashed", "the VMM (pid 7) ended without shutting down (killed?)"],
    ];
    for (const [facts, state, reason] of cases) assert.deepEqual(describeEnd(facts), { kind: "ended", state, reason });
  });

  test("a panic line from the guest is kept as one bounded line without controls", async () => {
    const path = join(bed.home, "hostile-console.log");
    await writeFile(path, `boot\n[ 1.0] Kernel panic - not syncing: \x1b]52;c;AAAA\x07evil\r${"x".repeat(10_000)}\nafter\n`);
    const line = (await findPanicLine(path))!;
    assert.ok(line.startsWith("Kernel panic - not syncing: "), line);
    assert.doesNotMatch(line, /[\u0000-\u001f\u007f-\u009f]/);
    assert.ok(line.length <= 160, `${line.length} characters`);
    assert.equal(await findPanicLine(join(bed.home, "no-such-console.log")), undefined);
  });
});
