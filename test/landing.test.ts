// The landing rule (daemon/landing.ts) on a real bangerd and the real agent, without a VM:
// "VMs" recorded as running whose agent is `banger-agent serve --unix` on this host (so the
// guest's /etc/passwd is this host's: root and nobody, no dev), as in the hostile-agent
// tests. Asserted: exec and sessions land as the image's user in its WorkingDir, a recorded
// workspace wins, the caller's --user/-w win over both, and hostile image text (a user that
// is a shell command, a relative WorkingDir) is looked up as a name and ignored, never run.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { join } from "node:path";
import { makeTempHome, mustRun, runBanger, stopDaemon } from "./helpers.ts";
import { recordFakeVm, startAgent } from "./kits/agent-process.ts";
import { RpcClient } from "../src/rpc/index.ts";
import { openStore } from "../src/store/index.ts";

describe("where commands land (real daemon, real agent, no VM)", () => {
  const { home, cleanup } = makeTempHome();
  const procs: ChildProcess[] = [];
  /** A recorded workspace is just a path the guest has (here, this host's /usr: open to nobody too). */
  const workspace = "/usr";
  let rpc: RpcClient;

  /** `vm.exec` of `id -un; pwd` as the CLI makes it: what it printed. */
  const where = async (vm: string, extra: Record<string, unknown> = {}): Promise<string> => {
    let out = "";
    await rpc.call(
      "vm.exec",
      { name: vm, argv: ["sh", "-c", "id -un; pwd"], stdin: false, ...extra },
      {
        onEvent: (ev) => {
          const e = ev as { t?: string; data?: Buffer };
          if (e.t === "out" && Buffer.isBuffer(e.data)) out += e.data.toString();
        },
      },
    );
    return out;
  };

  before(async () => {
    await mustRun(runBanger(["daemon", "start"], { home })); // creates the store
    await stopDaemon(home);
    const store = openStore(join(home, "banger.db"));
    try {
      const image = (name: string, config: Record<string, unknown>) =>
        store.putImage({ name, source: `oci:example/${name}`, digest: "", kernelRef: "k", distro: "debian", arch: "amd64", sizeBytes: 1, config });
      image("as-nobody", { user: "nobody", workingDir: "/tmp" });
      image("plain", {});
      image("hostile", { user: "nobody; touch /tmp/pwned", workingDir: "tmp" });
    } finally {
      store.close();
    }
    for (const [vm, img] of [
      ["oci", "as-nobody"],
      ["plain", "plain"],
      ["evil", "hostile"],
    ] as const)
      procs.push(await recordFakeVm(home, vm, startAgent, img));
    await mustRun(runBanger(["daemon", "start"], { home }));
    rpc = await RpcClient.connect(join(home, "run", "bangerd.sock"));
  });
  after(async () => {
    rpc?.close();
    await stopDaemon(home);
    for (const p of procs) p.kill("SIGKILL");
    cleanup();
  });

  test("an OCI image's User and WorkingDir", async () => {
    assert.deepEqual(await rpc.call("vm.landing", { name: "oci" }), { user: "nobody", uid: 65534, gid: 65534, cwd: "/tmp", cwdFrom: "image" });
    assert.equal(await where("oci"), "nobody\n/tmp\n");
    assert.equal(await where("oci", { user: "root", cwd: "/" }), "root\n/\n", "the caller's choice wins");
  });

  test("no image user and no dev user: root in its home; a recorded workspace then wins for every user", async () => {
    assert.deepEqual(await rpc.call("vm.landing", { name: "plain" }), { user: "root", uid: 0, gid: 0, cwd: "/root", cwdFrom: "home" });
    assert.equal(await where("plain"), "root\n/root\n");
    assert.equal(await where("plain", { user: "nobody" }), "nobody\n/\n", "another user gets its own home (nobody's does not exist: /)");
    await rpc.call("vm.workspace.record", { name: "plain", hostRepo: home, guestPath: workspace });
    assert.equal(await where("plain"), `root\n${workspace}\n`);
    assert.equal(await where("plain", { user: "nobody" }), `nobody\n${workspace}\n`);
  });

  test("sessions land by the same rule", async () => {
    await rpc.call("session.start", { vm: "oci", name: "who", argv: ["sh", "-c", "id -un; pwd"], tty: null });
    let out = "";
    for (const deadline = Date.now() + 10_000; !out.includes("/tmp\n") && Date.now() < deadline; await new Promise((r) => setTimeout(r, 100))) {
      out = "";
      await rpc.call("session.logs", { vm: "oci", name: "who" }, { onEvent: (ev) => void ((ev as { data?: Buffer }).data && (out += (ev as { data: Buffer }).data.toString())) });
    }
    assert.equal(out, "nobody\n/tmp\n");
  });

  test("hostile image text is a name to look up, never a command; a relative WorkingDir is ignored", async () => {
    assert.deepEqual(await rpc.call("vm.landing", { name: "evil" }), { user: "root", uid: 0, gid: 0, cwd: "/root", cwdFrom: "home" });
    assert.equal(await where("evil"), "root\n/root\n");
    const { existsSync } = await import("node:fs");
    assert.equal(existsSync("/tmp/pwned"), false);
  });
});
