// The CLI's output under faults, with the real bin/banger and bangerd: a reader that goes
// away (stdout or stderr a pipe whose read end is closed, as in `banger vm ls | true`) ends
// the CLI quietly and cancels the call whose output it was; a step that fails or whose
// daemon dies is shown failed or interrupted, never "done".
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { REPO, assertNoCallLeft, makeTempHome, mustRun, prepareBootableHome, runBanger, runWithClosed, stopDaemon, testKernelDeb } from "./helpers.ts";

describe("cli output under faults", () => {
  const { home, cleanup } = makeTempHome();
  let env: NodeJS.ProcessEnv = {};
  before(async () => {
    ({ env } = await prepareBootableHome(home));
    for (const name of ["alpha", "bravo", "charlie"]) await mustRun(runBanger(["vm", "create", "--no-start", "--image", "busybox", "--name", name, "--json"], { home, env }));
    // A console log as a VM leaves one (vmm/console.ts): `vm logs` reads it, running VM or not.
    const vm = JSON.parse((await mustRun(runBanger(["vm", "show", "alpha", "--json"], { home, env }))).stdout) as { id: string };
    mkdirSync(join(home, "run", "vms", vm.id), { recursive: true });
    writeFileSync(join(home, "run", "vms", vm.id, "console.log"), "[    0.000000] Linux version 6.1.0 (fake console)\n".repeat(20_000));
  });
  after(async () => {
    await stopDaemon(home);
    cleanup();
  });

  for (const args of [["vm", "ls"], ["vm", "ls", "--json"], ["vm", "show", "alpha"], ["image", "ls", "--json"], ["kernel", "ls"], ["--help"], ["vm", "--help"], ["--version"]]) {
    it(`a closed stdout ends \`banger ${args.join(" ")}\` quietly with exit 0`, async () => {
      const r = await runWithClosed("stdout", args, home, env);
      assert.deepEqual(r, { code: 0, signal: null, other: "" }, `stderr: ${r.other}`);
    });
  }

  for (const args of [
    ["vm", "logs", "alpha", "--all"],
    ["vm", "logs", "alpha", "-f"],
    ["daemon", "logs", "-f"],
  ]) {
    it(`a closed stdout cancels \`${args.join(" ")}\` (in the daemon too) and exits 0`, async () => {
      const r = await runWithClosed("stdout", args, home, env);
      assert.deepEqual(r, { code: 0, signal: null, other: "" }, `stderr: ${r.other}`);
      await assertNoCallLeft(home, env);
    });
  }

  it("a closed stderr stops the progress, not the operation: the VM is created and the result printed", async () => {
    const r = await runWithClosed("stderr", ["vm", "create", "--no-start", "--image", "busybox", "--name", "delta"], home, env);
    assert.equal(r.code, 0);
    assert.match(r.other, /^vm delta created, not started \(\d+\.\ds\); start it: banger vm start delta\n$/, "--no-start says how to start it");
    const shown = JSON.parse((await mustRun(runBanger(["vm", "show", "delta", "--json"], { home, env }))).stdout) as { state: string };
    assert.equal(shown.state, "stopped");
    await assertNoCallLeft(home, env);
  });

  it("shows the step that failed as failed, with the error once, never done", async () => {
    const deb = readFileSync(await testKernelDeb());
    const truncated = join(home, "truncated.deb");
    writeFileSync(truncated, deb.subarray(0, Math.floor(deb.length / 2)));
    const r = await runBanger(["kernel", "import", "--deb", truncated, "--name", "broken"], { home, env });
    assert.notEqual(r.code, 0);
    const lines = r.stderr.trimEnd().split("\n");
    const errors = lines.filter((l) => l.startsWith("banger: "));
    assert.equal(errors.length, 1, r.stderr);
    assert.equal(lines.at(-1), errors[0], "the error line comes last, after the failed step");
    const failedAt = lines.findIndex((l) => / failed \(\d+\.\ds\)$/.test(l));
    assert.ok(failedAt >= 0, `no step shown failed:\n${r.stderr}`);
    const step = lines[failedAt]!.split(" ")[0]!;
    assert.ok(!lines.some((l) => l.startsWith(`${step} done`)), `the failed step ${step} is also shown done:\n${r.stderr}`);
  });

  it("shows the step running when the daemon dies as interrupted (daemon connection lost), never done", async () => {
    const { pid } = JSON.parse((await mustRun(runBanger(["daemon", "status", "--json"], { home, env }))).stdout) as { pid: number };
    const child = spawn(join(REPO, "bin", "banger"), ["image", "build", "--preset", "busybox", "--name", "doomed", "--kernel-ref", "debian-6.1-cloud"], {
      env: { ...process.env, ...env, BANGER_HOME: home },
      stdio: ["ignore", "pipe", "pipe"],
      timeout: 120_000,
    });
    let stderr = "";
    let killed = false;
    child.stderr.on("data", (b) => {
      stderr += b;
      // Piped progress prints "<phase>: <message>..." when a phase starts: kill the daemon inside it.
      if (!killed && /^rootfs: /m.test(stderr)) {
        killed = true;
        process.kill(pid, "SIGKILL");
      }
    });
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    assert.ok(killed, `the build never reached its rootfs step:\n${stderr}`);
    assert.equal(code, 1);
    assert.match(stderr, /^rootfs interrupted \(\d+\.\ds, daemon connection lost\)$/m);
    assert.doesNotMatch(stderr, / done \(/);
    assert.match(stderr.trimEnd().split("\n").at(-1)!, /^banger: connection to bangerd lost/);
  });
});
