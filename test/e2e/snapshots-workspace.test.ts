// Snapshots and forks of VMs with a workspace disk, on real VMs (QEMU/TCG here), as a user
// drives them: `vm run --keep` fills a VM's workspace slot; its fork children each see the
// workspace, write their own changes, never see each other's, and the parent stays as it
// was; `vm workspace export` of a child shows only its change; a snapshot of a child (whose
// slot is an overlay) restores with the child's files; a VM with an empty slot forks into
// children whose slot can still be filled; a damaged slot copy is refused in one line; and
// removing everything leaves no slot copy behind.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { resolvePaths, vmDir } from "../../src/config/index.ts";
import { RpcClient } from "../../src/rpc/index.ts";
import { Uploader, streamEvents } from "../../src/cli/streams.ts";
import { buildTar } from "../kits/tar.ts";
import { makeTempHome, mustRun, prepareBootableHome, runBanger, stopDaemon } from "../helpers.ts";

describe("snapshots and forks of a VM with a workspace disk (real VMs under QEMU)", () => {
  const { home, cleanup } = makeTempHome();
  let env: NodeJS.ProcessEnv = {};
  let repo = "";
  const banger = (args: string[]) => runBanger(args, { home, env, cwd: repo });
  const json = async <T = Record<string, unknown>>(args: string[]): Promise<T> => JSON.parse((await mustRun(banger([...args, "--json"]))).stdout) as T;
  const guest = async (vm: string, script: string) => (await mustRun(banger(["vm", "exec", vm, "--", "sh", "-c", script]))).stdout;
  const vmNames = async () => (await json<{ name: string }[]>(["vm", "ls"])).map((v) => v.name).sort();
  const paths = () => resolvePaths({ BANGER_HOME: home });
  /** Every workspace slot file or copy under the home. */
  const slotFiles = (dir = home): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? slotFiles(join(dir, e.name)) : /^workspace\.(img|qcow2|raw)$/.test(e.name) ? [join(dir, e.name)] : []));
  /** The workspace's listing in a VM: sorted names at /workspace, one line. */
  const listing = async (vm: string) => (await guest(vm, "ls /workspace | tr '\\n' ' '")).trim();
  const errorLines = (stderr: string) =>
    stderr
      .split("\n")
      .filter((l) => l.startsWith("banger:"))
      .join("\n");

  before(async () => {
    ({ env } = await prepareBootableHome(home));
    await mustRun(runBanger(["config", "set", "default_image", "busybox"], { home, env }));
    repo = join(home, "repo");
    mkdirSync(repo, { recursive: true });
    const git = (...args: string[]) => execFileSync("git", ["-c", "user.email=t@example.com", "-c", "user.name=t", ...args], { cwd: repo });
    git("init", "-q", "-b", "main");
    writeFileSync(join(repo, "README.md"), "hello\n");
    git("add", "-A");
    git("commit", "-qm", "init");
    // The workspace goes onto the VM's slot disk (vm run's copy).
    await mustRun(banger(["vm", "run", "--keep", "--name", "ws", "--", "true"]));
  });
  after(async () => {
    for (const vm of await vmNames().catch(() => [] as string[])) await banger(["vm", "rm", "-f", vm]).catch(() => undefined);
    await stopDaemon(home);
    cleanup();
  });

  it("fork children each get their own copy of the parent's workspace disk; writes stay in the VM that made them", async () => {
    assert.match(await guest("ws", "grep ' /workspace ' /proc/mounts"), /^\/dev\/vd[b-z] \/workspace ext4 /, "the parent's workspace is its slot disk");
    const forked = await json<{ children: { name: string; state: string }[] }>(["vm", "fork", "ws", "--count", "2"]);
    assert.deepEqual(
      forked.children.map((c) => [c.name, c.state]),
      [
        ["ws-1", "running"],
        ["ws-2", "running"],
      ],
    );
    for (const child of ["ws-1", "ws-2"]) {
      assert.equal(await listing(child), "README.md", `${child} sees the parent's workspace`);
      assert.equal(await guest(child, "cat /workspace/README.md"), "hello\n");
      // Its own file in its own directory: an overlay on the fork's copy, never the parent's file.
      assert.ok(statSync(join(vmDir(paths(), child), "workspace.qcow2")).isFile(), `${child} has its own slot file`);
    }
    await guest("ws-1", "echo one > /workspace/one.txt && echo 'from ws-1' >> /workspace/README.md && sync");
    await guest("ws-2", "echo two > /workspace/two.txt && sync");
    assert.equal(await listing("ws-1"), "README.md one.txt");
    assert.equal(await listing("ws-2"), "README.md two.txt", "no write of its sibling");
    assert.equal(await guest("ws-2", "cat /workspace/README.md"), "hello\n");
    assert.equal(await listing("ws"), "README.md", "the parent unchanged");
    assert.equal(await guest("ws", "cat /workspace/README.md"), "hello\n");
    // The slot survives a restart of a child (its own overlay, mounted again at boot).
    await mustRun(banger(["vm", "stop", "ws-2"]));
    await mustRun(banger(["vm", "start", "ws-2"]));
    assert.equal(await listing("ws-2"), "README.md two.txt");
  });

  it("vm workspace export of a child shows only that child's changes", async () => {
    const one = await mustRun(banger(["vm", "workspace", "export", "ws-1"]));
    assert.match(one.stdout, /one\.txt/);
    assert.match(one.stdout, /\+from ws-1/);
    assert.doesNotMatch(one.stdout, /two\.txt/);
    const two = await mustRun(banger(["vm", "workspace", "export", "ws-2"]));
    assert.match(two.stdout, /two\.txt/);
    assert.doesNotMatch(two.stdout, /one\.txt|from ws-1/);
    const parent = await mustRun(banger(["vm", "workspace", "export", "ws"]));
    assert.equal(parent.stdout, "");
    assert.match(parent.stderr, /no changes in the guest/);
  });

  it("a snapshot of a child restores with the child's workspace; a damaged copy of it is refused in one line", async () => {
    await mustRun(banger(["vm", "snapshot", "ws-1", "--name", "s1"]));
    const copy = join(paths().snapshotsDir, "s1", "workspace.raw");
    const size = statSync(copy).size;
    assert.equal(size, 16 * 1024 ** 3, "the slot's copy, flattened out of the child's overlay");
    assert.ok(statSync(copy).blocks * 512 < 1024 ** 3, "sparse");
    const shown = await json<{ workspaceDiskBytes: number | null; usedBytes: number }>(["snapshot", "show", "s1"]);
    assert.equal(shown.workspaceDiskBytes, size);
    assert.ok(shown.usedBytes >= statSync(copy).blocks * 512, "what it takes on disk counts the copy");
    assert.match((await mustRun(banger(["snapshot", "show", "s1"]))).stdout, /workspace disk 16 GiB \(sparse\)/);
    await mustRun(banger(["vm", "create", "--from-snapshot", "s1", "--name", "r1"]));
    assert.equal(await listing("r1"), "README.md one.txt");
    assert.equal(await guest("r1", "cat /workspace/README.md"), "hello\nfrom ws-1\n");
    truncateSync(copy, size / 2);
    const refused = await banger(["vm", "create", "--from-snapshot", "s1", "--name", "bad"]);
    assert.equal(refused.code, 1);
    assert.match(errorLines(refused.stderr), /^banger: snapshot s1 is damaged: its workspace disk copy \(workspace\.raw\) is 8\.0 GiB \(8589934592 bytes\), 17179869184 when taken \(remove it .*\)$/);
    assert.ok(!(await vmNames()).includes("bad"), "nothing left of the refused VM");
  });

  it("a VM with an empty slot forks into children whose slot each can still fill", async () => {
    const client = await RpcClient.connect(paths().socket);
    try {
      await client.call("vm.create", { name: "empty", image: "busybox", workspaceSlot: true });
      const forked = await json<{ children: { name: string }[] }>(["vm", "fork", "empty"]);
      assert.deepEqual(
        forked.children.map((c) => c.name),
        ["empty-1"],
      );
      let uploader: Uploader | undefined;
      const tar = buildTar([{ name: "put.txt", type: "0", mode: 0o644, data: Buffer.from("put\n") }]);
      const call = client.start(
        "vm.workspace.put",
        { name: "empty-1", dest: "/workspace", uid: 1000, gid: 1000 },
        { onEvent: (e) => streamEvents({ 1: process.stdout, 2: process.stderr }, uploader)(e) },
      );
      uploader = new Uploader(call, Readable.from([tar]));
      uploader.start();
      assert.equal(((await call.result) as { via: string }).via, "disk", "the child's empty slot is its own raw file, filled on the host");
    } finally {
      client.close();
    }
    assert.equal(await guest("empty-1", "cat /workspace/put.txt"), "put\n");
    assert.equal(await guest("empty", "grep -c ' /workspace ' /proc/mounts || true"), "0\n", "the parent's slot stays empty");
  });

  it("removing the VMs and snapshots leaves no slot copy behind", async () => {
    for (const vm of await vmNames()) await mustRun(banger(["vm", "rm", "-f", vm]));
    await mustRun(banger(["snapshot", "rm", "s1"]));
    assert.deepEqual(readdirSync(paths().snapshotsDir), []);
    assert.deepEqual(await json(["snapshot", "ls", "--all"]), []);
    assert.deepEqual(slotFiles(), []);
    assert.ok(!existsSync(vmDir(paths(), "ws-1")));
  });
});
