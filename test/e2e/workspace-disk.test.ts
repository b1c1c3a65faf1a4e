// The workspace disk on real VMs (QEMU/TCG): `vm run` puts the workspace on a second disk
// the host filled with an ext4 (daemon/workspace-disk.ts), mounted at /workspace and owned
// by the guest user; it is mounted again after a restart. The one rule choosing: a VM
// without a slot, or whose slot is already filled, gets the tar through the agent. A
// hostile tar sent straight to vm.workspace.put is refused with one line, leaves no staging
// directory, and leaves the slot free for the next copy. (vm-run-workspace.test.ts checks
// the copy's content and git state, which now travel this way.)
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Readable } from "node:stream";
import { resolvePaths, vmDir } from "../../src/config/index.ts";
import { RpcClient } from "../../src/rpc/index.ts";
import { Uploader, streamEvents } from "../../src/cli/streams.ts";
import { buildTar, type RawTarEntry } from "../kits/tar.ts";
import { makeTempHome, mustRun, prepareBootableHome, runBanger, stopDaemon } from "../helpers.ts";

describe("vm run: the workspace disk (real VMs under QEMU)", () => {
  const { home, cleanup } = makeTempHome();
  let env: NodeJS.ProcessEnv = {};
  let repo = "";
  const banger = (args: string[]) => runBanger(args, { home, env, cwd: repo });
  const paths = () => resolvePaths({ BANGER_HOME: home });

  /** vm.workspace.put with `tar` as its input, as the CLI sends it. */
  const put = async (name: string, tar: Buffer): Promise<{ files: number; via: string }> => {
    const client = await RpcClient.connect(paths().socket);
    try {
      let uploader: Uploader | undefined;
      const call = client.start("vm.workspace.put", { name, dest: "/workspace", uid: 1000, gid: 1000 }, { onEvent: (e) => streamEvents({ 1: process.stdout, 2: process.stderr }, uploader)(e) });
      uploader = new Uploader(call, Readable.from([tar]));
      uploader.start();
      return (await call.result) as { files: number; via: string };
    } finally {
      client.close();
    }
  };
  const createWithSlot = async (name: string) => {
    const client = await RpcClient.connect(paths().socket);
    try {
      await client.call("vm.create", { name, image: "busybox", workspaceSlot: true });
    } finally {
      client.close();
    }
  };
  const guest = async (name: string, script: string) => (await mustRun(banger(["vm", "exec", name, "--", "sh", "-c", script]))).stdout;

  before(async () => {
    ({ env } = await prepareBootableHome(home));
    await mustRun(runBanger(["config", "set", "default_image", "busybox"], { home, env }));
    repo = join(home, "repo");
    mkdirSync(join(repo, "src"), { recursive: true });
    const git = (...args: string[]) => execFileSync("git", ["-c", "user.email=t@example.com", "-c", "user.name=t", ...args], { cwd: repo });
    git("init", "-q", "-b", "main");
    writeFileSync(join(repo, "README.md"), "hello\n");
    writeFileSync(join(repo, "src", "run.sh"), "#!/bin/sh\necho ran\n", { mode: 0o755 });
    git("add", "-A");
    git("commit", "-qm", "init");
  });
  after(async () => {
    for (const name of ["wsd", "plain", "slot"]) await runBanger(["vm", "rm", "-f", name], { home, env }).catch(() => undefined);
    await stopDaemon(home);
    cleanup();
  });

  it("vm run mounts the workspace disk at /workspace, everything the guest user's, nothing else on it", async () => {
    const r = await banger(["vm", "run", "--keep", "--name", "wsd", "--", "sh", "-c", "grep ' /workspace ' /proc/mounts; ls -A /workspace; find /workspace ! -user dev | wc -l; ./src/run.sh"]);
    assert.equal(r.code, 0, r.stderr);
    const [mount, ...rest] = r.stdout.split("\n");
    assert.match(mount!, /^\/dev\/vd[b-z] \/workspace ext4 rw,nosuid,nodev/, "an ext4 disk of its own");
    assert.deepEqual(rest, [".git", "README.md", "src", "0", "ran", ""], "the repository and no lost+found; owned by dev; modes kept");
  });

  it("the disk is mounted again after a restart, with the guest's changes", async () => {
    await guest("wsd", "echo changed >> README.md && sync");
    await mustRun(banger(["vm", "stop", "wsd"]));
    await mustRun(banger(["vm", "start", "wsd"]));
    assert.equal(await guest("wsd", "cat /workspace/README.md"), "hello\nchanged\n");
  });

  it("a filled slot, or none, takes the tar through the agent", async () => {
    const tar = buildTar([{ name: "extra.txt", type: "0", mode: 0o644, data: Buffer.from("extra\n") }]);
    assert.equal((await put("wsd", tar)).via, "agent", "the slot is taken");
    assert.equal(await guest("wsd", "cat /workspace/extra.txt /workspace/README.md"), "extra\nhello\nchanged\n", "onto the mounted disk");
    await mustRun(banger(["vm", "create", "--name", "plain", "--image", "busybox"]));
    assert.equal((await put("plain", tar)).via, "agent", "no slot");
    assert.equal(await guest("plain", "cat /workspace/extra.txt; grep -c ' /workspace ' /proc/mounts || true"), "extra\n0\n");
  });

  it("a hostile tar is refused with one line, leaves no staging behind, and the slot stays free", async () => {
    await createWithSlot("slot");
    for (const entries of [
      [{ name: "../escape", type: "0", data: Buffer.from("x") }],
      [
        { name: "etc", type: "2", linkname: "/etc" },
        { name: "etc/passwd", type: "0", data: Buffer.from("x") },
      ],
    ] as RawTarEntry[][]) {
      await assert.rejects(put("slot", buildTar(entries)), (err: Error) => err.message.split("\n").length === 1 && /tar member|lies under/.test(err.message));
    }
    assert.deepEqual(
      readdirSync(vmDir(paths(), "slot")).filter((f) => f.startsWith(".")),
      [],
      "no staging left",
    );
    const ok = await put("slot", buildTar([{ name: "good.txt", type: "0", mode: 0o644, data: Buffer.from("good\n") }]));
    assert.equal(ok.via, "disk");
    assert.equal(await guest("slot", "cat /workspace/good.txt; stat -c %u /workspace/good.txt"), "good\n1000\n");
  });
});
