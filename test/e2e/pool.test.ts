// Warm pools on real VMs (QEMU, TCG here), as a user drives them: `pool set` boots VMs ahead
// (hidden from `vm ls`), `vm run` and `vm create` take one at once under their own name and
// hostname, the pool refills; a daemon SIGKILLed with a ready pool finds it again; `--size 0`
// and `daemon stop` leave nothing (no VMM process, no directory); the memory cap refuses.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { processesMentioning } from "../kits/vm.ts";
import { daemonPid, isAlive, makeTempHome, mustRun, prepareBootableHome, runBanger, stopDaemon } from "../helpers.ts";

interface PoolList {
  pools: { image: string; size: number; ready: number; warming: number; memoryBytes: number; lastError: string | null }[];
  memoryBytes: number;
  maxMemoryBytes: number;
}

describe("warm pools (real VMs under QEMU)", () => {
  const { home, cleanup } = makeTempHome();
  let env: NodeJS.ProcessEnv = {};
  const banger = (args: string[]) => runBanger(args, { home, env, cwd: home });
  const pools = async (): Promise<PoolList> => JSON.parse((await mustRun(banger(["pool", "ls", "--json"]))).stdout) as PoolList;
  /** The pooled VMs' directories (<root>/vms/pool-*): the members there are now. */
  const memberDirs = () => (existsSync(join(home, "vms")) ? readdirSync(join(home, "vms")).filter((n) => n.startsWith("pool-")) : []);
  const vmmPids = () => processesMentioning(join(home, "run", "vms"));
  /** The nice values of a process's threads (field 19 of each thread's stat), distinct. */
  const niceOf = (pid: number) => [...new Set(readdirSync(`/proc/${pid}/task`).map((t) => Number(readFileSync(`/proc/${pid}/task/${t}/stat`, "utf8").split(") ")[1]!.split(" ")[16])))];

  /** Polls `pool ls` until the image's pool has `ready` VMs ready and none warming. */
  async function waitReady(ready: number, timeoutMs = 240_000): Promise<PoolList> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const list = await pools();
      const p = list.pools.find((x) => x.image === "busybox");
      if (p && p.ready === ready && p.warming === 0) return list;
      if (Date.now() > deadline) assert.fail(`pool not ready in time: ${JSON.stringify(list)}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  before(async () => {
    // The dashboard on (any free port): its API shows the pools and its create takes from them.
    ({ env } = await prepareBootableHome(home, { BANGER_WEB: "1", BANGER_WEB_PORT: "0" }));
    await mustRun(banger(["config", "set", "default_image", "busybox"]));
  });
  after(async () => {
    await banger(["pool", "set", "busybox", "--size", "0"]);
    for (const v of JSON.parse((await banger(["vm", "ls", "--json"])).stdout || "[]") as { name: string }[]) await banger(["vm", "rm", "-f", v.name]);
    await stopDaemon(home);
    cleanup();
  });

  it("refuses a pool over pool.max_memory in one line saying the cap and how to raise it", async () => {
    await mustRun(banger(["config", "set", "pool.max_memory", "1G"]));
    const r = await banger(["pool", "set", "busybox", "--size", "3"]);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr.trimEnd().split("\n").length, 1, r.stderr);
    assert.match(r.stderr, /pool busybox of 3 x 512 MiB would hold 1\.5 GiB, over pool\.max_memory \(1\.0 GiB\).*banger config set pool\.max_memory 1536M/);
    assert.deepEqual((await pools()).pools, [], "nothing was stored");
    await mustRun(banger(["config", "unset", "pool.max_memory"]));
  });

  it("boots a pool to ready, hidden from vm ls but counted in pool ls", async () => {
    const set = await mustRun(banger(["pool", "set", "busybox", "--size", "1"]));
    assert.match(set.stdout, /^pool busybox: 1 VM\(s\) of 1 cpu, 512 MiB, net full; 0 ready, 1 warming/);
    const list = await waitReady(1);
    assert.equal(list.memoryBytes, 512 * 1024 ** 2);
    assert.equal(list.maxMemoryBytes, 2 * 1024 ** 3);
    assert.deepEqual(JSON.parse((await mustRun(banger(["vm", "ls", "--json"]))).stdout), []);
    assert.equal(memberDirs().length, 1);
    assert.match((await mustRun(banger(["pool", "ls"]))).stdout, /^busybox +1 +1 +0 +1 cpu, 512 MiB, net full +512 MiB/m);
  });

  it("vm run takes the ready VM: its name and hostname, in a fraction of a boot; the pool refills", async () => {
    const before = memberDirs();
    const r = await banger(["vm", "run", "--name", "taker", "--no-workspace", "--timings", "--", "hostname"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "taker\n");
    assert.match(r.stderr, /taking a ready VM from pool busybox/);
    const create = Number(/timings: .*create (\d+\.\d+)s/.exec(r.stderr)?.[1]);
    assert.ok(create < 2, `create took ${create}s: a pooled VM is already booted (${r.stderr})`);
    assert.ok(!memberDirs().includes(before[0]!), "the member left the pool");
    await waitReady(1);
    assert.equal(memberDirs().length, 1, "refilled with a new member");
  });

  it("vm run with a workspace takes a pooled VM too: the repository lands in its workspace slot", async () => {
    const repo = join(home, "repo");
    mkdirSync(repo);
    const git = (...args: string[]) => execFileSync("git", ["-c", "user.email=t@example.com", "-c", "user.name=t", ...args], { cwd: repo });
    git("init", "-q", "-b", "main");
    writeFileSync(join(repo, "README.md"), "from the host\n");
    git("add", "-A");
    git("commit", "-qm", "init");
    const r = await runBanger(["vm", "run", "--name", "ws", "--", "sh", "-c", "pwd; cat README.md; hostname; grep -c ' /workspace ext4 ' /proc/mounts"], { home, env, cwd: repo });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "/workspace\nfrom the host\nws\n1\n", "the slot's ext4 mounted at /workspace");
    assert.match(r.stderr, /taking a ready VM from pool busybox/);
    await waitReady(1);
  });

  it("the dashboard shows the pool and its create takes the ready VM", async () => {
    const web = JSON.parse((await mustRun(banger(["web", "--json", "--no-open"]))).stdout) as { url: string; token: string };
    const api = async (method: string, path: string, body?: unknown) => {
      const res = await fetch(`${web.url}${path}`, {
        method,
        headers: { Authorization: `Bearer ${web.token}`, ...(body ? { "Content-Type": "application/json" } : {}) },
        body: body ? JSON.stringify(body) : undefined,
      });
      return (await res.json()) as Record<string, unknown>;
    };
    const shown = (await api("GET", "/api/pools")) as unknown as PoolList;
    assert.deepEqual(
      shown.pools.map((p) => [p.image, p.size, p.ready, p.warming]),
      [["busybox", 1, 1, 0]],
    );
    let task = await api("POST", "/api/vms", { image: "busybox", name: "from-web" });
    for (let i = 0; i < 600 && task.state === "running"; i++) {
      await new Promise((r) => setTimeout(r, 100));
      task = await api("GET", `/api/tasks/${task.id}`);
    }
    assert.equal(task.state, "done", JSON.stringify(task));
    assert.equal((task.result as { fromPool?: boolean }).fromPool, true);
    assert.equal((await mustRun(banger(["vm", "exec", "from-web", "--", "hostname"]))).stdout, "from-web\n");
    await mustRun(banger(["vm", "rm", "-f", "from-web"]));
    await waitReady(1);
  });

  it("vm create takes one too (--json says so); the taken VM is an ordinary VM that snapshots, stops and starts under its name", async () => {
    const memberPid = JSON.parse((await mustRun(banger(["vm", "show", memberDirs()[0]!, "--json"]))).stdout).pid as number;
    // As root, a pooled VM waits at a low priority (a refill never slows the VMs users wait on).
    if (process.getuid?.() === 0) assert.deepEqual(niceOf(memberPid), [10]);
    const created = JSON.parse((await mustRun(banger(["vm", "create", "--name", "t2", "--json"]))).stdout);
    assert.equal(created.pid, memberPid, "the pooled VM itself");
    if (process.getuid?.() === 0) assert.deepEqual(niceOf(memberPid), [0], "taken: the normal priority again");
    assert.equal(created.name, "t2");
    assert.equal(created.fromPool, true);
    assert.equal(created.state, "running");
    assert.equal(created.config.disk.path, join(home, "vms", "t2", "root.qcow2"));
    assert.equal((await mustRun(banger(["vm", "exec", "t2", "--", "hostname"]))).stdout, "t2\n");
    assert.deepEqual(
      (JSON.parse((await mustRun(banger(["vm", "ls", "--json"]))).stdout) as { name: string }[]).map((v) => v.name),
      ["t2"],
    );
    await mustRun(banger(["vm", "exec", "t2", "--user", "root", "--", "sh", "-c", "echo kept > /root/mark"]));
    // Its disk directory was renamed under its running QEMU: a snapshot (QEMU lets go of its
    // disks while saving, then takes them back) must not look for the old path.
    await mustRun(banger(["vm", "snapshot", "t2", "--name", "t2-snap"]));
    assert.equal((await mustRun(banger(["vm", "exec", "t2", "--user", "root", "--", "cat", "/root/mark"]))).stdout, "kept\n");
    await mustRun(banger(["vm", "stop", "t2"]));
    await mustRun(banger(["vm", "start", "t2"]));
    assert.equal((await mustRun(banger(["vm", "exec", "t2", "--user", "root", "--", "sh", "-c", "hostname; cat /root/mark"]))).stdout, "t2\nkept\n");
    await mustRun(banger(["vm", "rm", "-f", "t2"]));
    await mustRun(banger(["snapshot", "rm", "t2-snap"]));
  });

  it("two creates at once with one ready VM: one takes it, the other boots its own", async () => {
    await waitReady(1);
    const both = await Promise.all(["t3", "t4"].map(async (name) => JSON.parse((await mustRun(banger(["vm", "create", "--name", name, "--json"]))).stdout)));
    assert.deepEqual(both.map((v) => v.fromPool === true).sort(), [false, true]);
    for (const v of both) assert.equal((await mustRun(banger(["vm", "exec", v.name, "--", "hostname"]))).stdout, `${v.name}\n`);
    await mustRun(banger(["vm", "rm", "-f", "t3", "t4"]));
    await waitReady(1);
  });

  it("a daemon SIGKILLed with a ready pool finds it again at start: the same VM, nothing lost or leaked", async () => {
    const [member] = memberDirs();
    const shown = JSON.parse((await mustRun(banger(["vm", "show", member!, "--json"]))).stdout);
    process.kill(daemonPid(home), "SIGKILL");
    await new Promise((r) => setTimeout(r, 300));
    const list = await waitReady(1); // starts a new daemon
    assert.equal(list.pools[0]!.size, 1);
    assert.deepEqual(memberDirs(), [member], "the same member, adopted");
    assert.ok(isAlive(shown.pid), "its VMM kept running");
    assert.deepEqual(await vmmPids(), [shown.pid], "one VMM: no second member booted");
    const r = await mustRun(banger(["vm", "run", "--name", "after-kill", "--no-workspace", "--", "hostname"]));
    assert.equal(r.stdout, "after-kill\n");
    await waitReady(1);
  });

  it("--size 0 empties the pool: no VMM, no directories", async () => {
    const pid = JSON.parse((await mustRun(banger(["vm", "show", memberDirs()[0]!, "--json"]))).stdout).pid as number;
    assert.equal((await mustRun(banger(["pool", "set", "busybox", "--size", "0"]))).stdout, "pool busybox emptied\n");
    assert.deepEqual((await pools()).pools, []);
    assert.deepEqual(memberDirs(), []);
    assert.deepEqual(await vmmPids(), []);
    assert.ok(!isAlive(pid));
    assert.deepEqual(readdirSync(join(home, "run", "vms")), [], "no runtime directories");
  });

  it("daemon stop removes pooled VMs; the pool is rebuilt at the next start", async () => {
    await mustRun(banger(["pool", "set", "busybox", "--size", "1"]));
    await waitReady(1);
    await mustRun(banger(["daemon", "stop"]));
    for (let i = 0; i < 100 && existsSync(join(home, "run", "bangerd.pid")); i++) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(memberDirs(), []);
    assert.deepEqual(await vmmPids(), []);
    await waitReady(1);
    assert.equal(memberDirs().length, 1);
  });
});
