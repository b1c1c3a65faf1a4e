// `vm exec` whose output reader goes away (`banger vm exec vm -- yes | head`), on a real VM
// under QEMU: the call is cancelled, so the command stops in the guest and the daemon streams
// to no one; the CLI exits 141 (128+SIGPIPE, as the command would in a local pipeline), quietly;
// `vm run` then removes its VM as after any command.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { assertNoCallLeft, makeTempHome, mustRun, prepareBootableHome, runBanger, runWithClosed, stopDaemon } from "../helpers.ts";

describe("vm exec when its reader goes away (real VM under QEMU)", () => {
  const { home, cleanup } = makeTempHome();
  let env: NodeJS.ProcessEnv = {};
  before(async () => {
    ({ env } = await prepareBootableHome(home));
    await mustRun(runBanger(["vm", "create", "--name", "pipes", "--image", "busybox", "--memory", "256M"], { home, env }));
  });
  after(async () => {
    await runBanger(["vm", "rm", "-f", "pipes"], { home, env }).catch(() => undefined);
    await stopDaemon(home);
    cleanup();
  });

  /**
   * Names of the guest's processes (busybox has no pgrep in every build: read /proc). A process
   * that ends between the glob and the read makes cat fail, which is no failure here.
   */
  async function guestCommands(): Promise<string[]> {
    const r = await mustRun(runBanger(["vm", "exec", "pipes", "--", "sh", "-c", "cat /proc/[0-9]*/comm 2>/dev/null; true"], { home, env }));
    return r.stdout.split("\n");
  }

  async function assertStoppedInGuest(command: string): Promise<void> {
    let names: string[] = [];
    for (let i = 0; i < 30; i++) {
      names = await guestCommands();
      if (!names.includes(command)) return;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.fail(`${command} still runs in the guest: ${names.join(" ")}`);
  }

  for (const [closed, argv] of [
    ["stdout", ["yes"]],
    ["stderr", ["sh", "-c", "exec yes >&2"]],
  ] as const) {
    it(`a closed ${closed} cancels the command, stops it in the guest, and exits 141 quietly`, async () => {
      const r = await runWithClosed(closed, ["vm", "exec", "pipes", "--", ...argv], home, env);
      assert.deepEqual(r, { code: 141, signal: null, other: "" });
      await assertNoCallLeft(home, env);
      await assertStoppedInGuest("yes");
    });
  }

  it("vm run whose reader goes away cancels the command, removes its VM, and exits 141", async () => {
    const r = await runWithClosed("stdout", ["vm", "run", "--no-workspace", "--image", "busybox", "--memory", "256M", "--name", "gone", "--", "yes"], home, env);
    assert.equal(r.code, 141, r.other);
    assert.doesNotMatch(r.other, /banger:|Error|failed/, "progress only, no error");
    assert.match(r.other, /^agent done \(/m);
    await assertNoCallLeft(home, env);
    const vms = JSON.parse((await mustRun(runBanger(["vm", "ls", "--json"], { home, env }))).stdout) as { name: string }[];
    assert.deepEqual(
      vms.map((v) => v.name),
      ["pipes"],
    );
  });
});
