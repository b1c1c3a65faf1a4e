// A guest that fills the host disk, with a real VM under QEMU whose disk lives on a small
// tmpfs the test mounts over <root>/vms: QEMU pauses it (io-error), banger reports it paused
// with the fix within a second or two, calls to it fail fast, `vm resume` continues it once
// space exists (the guest's command then finishes), and `vm rm -f` of a paused VM is quick.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { rmSync, statfsSync } from "node:fs";
import { join } from "node:path";
import { runChecked } from "../../src/util/exec.ts";
import { qmpCommand } from "../../src/vmm/index.ts";
import { mustRun } from "../helpers.ts";
import { faultHome } from "./faults.ts";

const MiB = 1024 * 1024;

describe("a guest that fills the host disk is paused, reported, resumed, removed quickly (real VM under QEMU)", () => {
  const t = faultHome();
  const vmsDir = join(t.home, "vms");
  const ballast = join(vmsDir, "ballast");
  let mounted = false;
  const free = () => {
    const st = statfsSync(vmsDir);
    return st.bavail * st.bsize;
  };
  /** Fills the small filesystem until `leave` bytes are free. */
  const fill = (leave: number) => runChecked(["fallocate", "-l", String(Math.max(MiB, free() - leave)), ballast]);
  /** The guest writes 32 MiB of random data to its disk and syncs it (more than the host has). */
  const guestWrite = (file: string) =>
    t.banger(["vm", "exec", "full", "--user", "root", "--", "sh", "-c", `dd if=/dev/urandom of=/root/${file} bs=1M count=32 conv=fsync 2>/dev/null && echo written`]);
  /** Waits until QEMU itself says io-error, then until banger says paused: returns how long banger took. */
  const waitPaused = async (qmp: string) => {
    const deadline = Date.now() + 120_000;
    for (;;) {
      const { status } = await qmpCommand<{ status: string }>(qmp, "query-status");
      if (status === "io-error") break;
      if (Date.now() > deadline) throw new Error(`QEMU status still ${status}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const since = Date.now();
    return t.waitFor("full", (v) => v.state === "paused", since, 10_000);
  };

  before(async () => {
    await t.setup();
    await runChecked(["mount", "-t", "tmpfs", "-o", "size=160m,mode=0700", "banger-test-full", vmsDir]);
    mounted = true;
    await mustRun(t.banger(["config", "set", "min_free_bytes", "4M"]));
  });
  after(async () => {
    await t.banger(["vm", "rm", "-f", "full"]).catch(() => undefined);
    if (mounted) await runChecked(["umount", "-l", vmsDir]).catch(() => undefined);
    await t.teardown([]);
  });

  it("refuses create below the free-space floor with one line naming free and needed", async () => {
    await fill(2 * MiB);
    const r = await t.create("full");
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`^banger: cannot create vm full: only \\S+ \\S+ free under ${t.home}, banger keeps 4\\.0 MiB free \\(min_free_bytes\\)`));
    assert.equal(r.stderr.trim().split("\n").length, 1);
    rmSync(ballast);
  });

  it("pauses the VM on a full disk, says why and how to fix it, and calls fail fast", async () => {
    await mustRun(t.create("full", ["--disk-size", "256M"]));
    const vm = await t.show("full");
    const qmp = join(t.home, "run", "vms", vm.id, "qmp.sock");
    await fill(8 * MiB);
    const writing = guestWrite("fill");
    const { vm: paused, seenAfterMs } = await waitPaused(qmp);
    assert.ok(seenAfterMs < 2000, `banger said paused ${seenAfterMs} ms after QEMU did`);
    assert.equal(paused.stateReason, `no space left on the host disk (io-error): free space under ${t.home}, then \`banger vm resume full\``);

    for (const args of [
      ["vm", "exec", "full", "--", "true"],
      ["vm", "stats", "full"],
    ]) {
      const started = Date.now();
      const r = await t.banger(args);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /vm full is paused \(no space left on the host disk \(io-error\)/);
      assert.ok(Date.now() - started < 3000, `${args[1]} failed fast (${Date.now() - started} ms)`);
    }
    const stillFull = await t.banger(["vm", "resume", "full"]);
    assert.equal(stillFull.code, 1);
    assert.match(stillFull.stderr, /cannot resume vm full: only .* free under/);

    rmSync(ballast);
    const resumed = await t.banger(["vm", "resume", "full", "--json"]);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.equal(JSON.parse(resumed.stdout).state, "running");
    const done = await writing;
    assert.equal(done.code, 0, done.stderr);
    assert.equal(done.stdout, "written\n", "the guest's write finished after the resume");
  });

  it("removes a paused VM with rm -f in under 3 seconds, leaving nothing", async () => {
    const vm = await t.show("full");
    await fill(8 * MiB);
    const writing = guestWrite("fill2");
    await waitPaused(join(t.home, "run", "vms", vm.id, "qmp.sock"));
    const started = Date.now();
    const rm = await t.banger(["vm", "rm", "-f", "full"]);
    const took = Date.now() - started;
    assert.equal(rm.code, 0, rm.stderr);
    assert.ok(took < 3000, `rm -f took ${took} ms`);
    assert.notEqual((await writing).code, 0, "the guest's command ends with its VM");
    rmSync(ballast);
    await t.assertNothingLeft([vm.pid!]);
  });
});
