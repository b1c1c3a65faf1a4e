// Faults from outside banger, with real VMs under QEMU: the VMM killed, the guest rebooting
// or panicking, the daemon SIGKILLed half-way through create and rm. After each, `vm ls`
// tells the truth within a second, nothing is left of a VM that is not listed (doctor agrees),
// and a VM that was running before a daemon kill is re-adopted untouched.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { isAlive, mustRun } from "../helpers.ts";
import { faultHome, storedVm, until } from "./faults.ts";

describe("a VM that ends on its own is shown as it is (real VMs under QEMU)", () => {
  const t = faultHome();
  // A VM that exists before the daemon is killed, and must come through each kill untouched.
  before(async () => {
    await t.setup();
    await mustRun(t.create("keep"));
  });
  after(() => t.teardown(["keep", "k", "r", "half", "gone"]));

  async function assertKeptVmRuns(pidBefore: number): Promise<void> {
    const keep = await t.show("keep");
    assert.equal(keep.state, "running");
    assert.equal(keep.pid, pidBefore, "the same VMM, re-adopted");
    assert.equal((await t.banger(["vm", "exec", "keep", "--", "echo", "kept"])).stdout, "kept\n");
  }

  it("kill -9 of the VMM: crashed with the signal within a second; rm needs no -f; start boots it again", async () => {
    await mustRun(t.create("k"));
    const { pid } = await t.show("k");
    assert.ok(pid && isAlive(pid));
    const killedAt = Date.now();
    process.kill(pid, "SIGKILL");
    const { vm, seenAfterMs } = await t.waitFor("k", (v) => v.state !== "running", killedAt);
    assert.equal(vm.state, "crashed");
    assert.equal(vm.stateReason, "the VMM was killed by SIGKILL");
    assert.equal(vm.pid, null);
    assert.ok(seenAfterMs < 1000, `seen by a call made ${seenAfterMs} ms after the kill`);
    const ls = await t.banger(["vm", "ls"]);
    assert.match(ls.stdout, /k\s+crashed: the VMM was killed by SIGKILL/);
    assert.equal(existsSync(join(t.home, "run", "vms", vm.id, "qmp.sock")), false, "the dead VMM's sockets are removed");

    const exec = await t.banger(["vm", "exec", "k", "--", "true"]);
    assert.equal(exec.code, 1);
    assert.match(exec.stderr, /vm k is crashed \(the VMM was killed by SIGKILL\), not running \(start it: banger vm start k\)/);

    await mustRun(t.banger(["vm", "start", "k"]));
    const again = await t.show("k");
    assert.equal(again.state, "running");
    assert.equal(again.stateReason, null);
    assert.equal((await t.banger(["vm", "exec", "k", "--", "echo", "back"])).stdout, "back\n");

    process.kill(again.pid!, "SIGKILL");
    await t.waitFor("k", (v) => v.state === "crashed", Date.now());
    const rm = await t.banger(["vm", "rm", "k"]);
    assert.equal(rm.code, 0, rm.stderr);
    await t.assertNothingLeft([pid, again.pid!]);
  });

  it("a guest reboot stops the VM, a guest panic crashes it with the panic line", async () => {
    await mustRun(t.create("r"));
    // sysrq b resets the guest at once; QEMU runs with -no-reboot, so the VM ends.
    const since = Date.now();
    await t.banger(["vm", "exec", "r", "--user", "root", "--", "sh", "-c", "echo b > /proc/sysrq-trigger"]);
    const rebooted = await t.waitFor("r", (v) => v.state !== "running", since);
    assert.equal(rebooted.vm.state, "stopped");
    assert.equal(rebooted.vm.stateReason, "the guest rebooted (a VM ends on reboot)");

    await mustRun(t.banger(["vm", "start", "r"]));
    const { pid } = await t.show("r");
    const panicAt = Date.now();
    await t.banger(["vm", "exec", "r", "--user", "root", "--", "sh", "-c", "echo c > /proc/sysrq-trigger"]);
    const panicked = await t.waitFor("r", (v) => v.state !== "running", panicAt);
    assert.equal(panicked.vm.state, "crashed");
    assert.match(panicked.vm.stateReason ?? "", /^guest kernel panic: Kernel panic - not syncing: sysrq triggered crash/);
    assert.match((await t.banger(["vm", "show", "r"])).stdout, /state:\s+crashed: guest kernel panic: Kernel panic - not syncing/);
    assert.equal(isAlive(pid!), false);
    await mustRun(t.banger(["vm", "rm", "r"]));
  });

  it("a daemon SIGKILLed while `vm create` boots: after restart the VM is gone and nothing is left", async () => {
    const create = t.create("half");
    // This VM's VMM, once it runs (the create then waits for the guest agent).
    const pidFile = () => {
      const id = storedVm(t.home, "half")?.id;
      return id ? join(t.home, "run", "vms", id, "vmm.pid") : undefined;
    };
    await until(() => existsSync(pidFile() ?? "/nonexistent"), 60_000, "the VMM to start");
    const vmm = Number.parseInt(readFileSync(pidFile()!, "utf8"), 10);
    const kept = (await t.show("keep")).pid!;
    process.kill(t.daemonPid(), "SIGKILL");
    assert.notEqual((await create).code, 0, "the create fails with its daemon");
    assert.equal(
      (await t.list()).some((v) => v.name === "half"),
      false,
      "an interrupted create is not listed",
    );
    await t.assertNothingLeft([vmm]);
    await assertKeptVmRuns(kept);
  });

  it("a daemon SIGKILLed during `vm rm`: after restart the VM is gone and nothing is left", async () => {
    await mustRun(t.create("gone"));
    const { pid } = await t.show("gone");
    const rm = t.banger(["vm", "rm", "-f", "gone"]);
    await until(() => storedVm(t.home, "gone")?.state === "removing", 30_000, "the rm to begin");
    const kept = (await t.show("keep")).pid!;
    process.kill(t.daemonPid(), "SIGKILL");
    await rm;
    assert.equal(
      (await t.list()).some((v) => v.name === "gone"),
      false,
      "a half-done rm is finished",
    );
    await t.assertNothingLeft([pid!]);
    await assertKeptVmRuns(kept);
  });
});
