// Snapshots, restore, fork and pause on real VMs (QEMU, TCG here), as a user drives them:
// a counter started before a snapshot keeps counting in the VMs restored from it, with the
// files written before; fork children are different machines (hostname, random bytes) while
// the parent keeps running; pause/resume; a snapshot in use or damaged on disk is refused;
// a daemon killed with SIGKILL loses nothing (rows, files, VMs re-adopted); removing the VMs
// frees what nothing else uses.
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { isAlive, makeTempHome, mustRun, prepareBootableHome, runBanger, stopDaemon } from "../helpers.ts";

describe("snapshots, restore, fork and pause (real VMs under QEMU)", () => {
  const { home, cleanup } = makeTempHome();
  let env: NodeJS.ProcessEnv = {};
  const banger = (args: string[]) => runBanger(args, { home, env });
  const json = async <T = Record<string, unknown>>(args: string[]): Promise<T> => JSON.parse((await mustRun(banger([...args, "--json"]))).stdout) as T;
  const sh = async (vm: string, script: string) => (await mustRun(banger(["vm", "exec", vm, "--user", "root", "--", "sh", "-c", script]))).stdout;
  const vmNames = async () => (await json<{ name: string }[]>(["vm", "ls"])).map((v) => v.name).sort();
  const daemonPid = () => JSON.parse(readFileSync(join(home, "run", "bangerd.pid"), "utf8")) as number;
  /** The counter's pid and value (it writes its count to /tmp/count every 100 ms; the number lives in its memory). */
  const counter = async (vm: string) => {
    const [pid, count] = (await sh(vm, "cat /tmp/counter.pid; cat /tmp/count")).trim().split("\n");
    return { pid: Number(pid), count: Number(count) };
  };
  let countAtSnapshot = 0;
  /** The VMMs the daemon started ahead for `snap`'s next restore, or `fork:<vm>`'s next fork (standby.ts): found by the marker in their runtime dirs. */
  const standbyIds = (snap: string) =>
    readdirSync(join(home, "run", "vms")).filter((id) => existsSync(join(home, "run", "vms", id, "standby")) && readFileSync(join(home, "run", "vms", id, "standby"), "utf8") === `${snap}\n`);
  const standbyPids = (snap: string) => standbyIds(snap).map((id) => Number(readFileSync(join(home, "run", "vms", id, "vmm.pid"), "utf8")));
  const standbyDirs = () => readdirSync(join(home, "vms")).filter((d) => d.startsWith(".standby-"));
  /** Waits for `snap`'s one standby to be ready (the daemon logs it with its pid); its pid. */
  const standbyReady = async (snap: string, msg = "standby restore ready") => {
    const ready = () => {
      const [pid, ...more] = standbyPids(snap);
      const log = readFileSync(join(home, "logs", "bangerd.log"), "utf8");
      return pid && more.length === 0 && new RegExp(`"msg":"${msg}",.*"pid":${pid}}`).test(log) ? pid : undefined;
    };
    for (let i = 0; i < 200 && !ready(); i++) await new Promise((r) => setTimeout(r, 50));
    const pid = ready();
    assert.ok(pid && isAlive(pid), `a VMM is waiting for ${snap}'s next restore`);
    return pid;
  };
  /** The error a command printed, past its progress lines: exactly one line is expected. */
  const errorLines = (stderr: string) =>
    stderr
      .split("\n")
      .filter((l) => l.startsWith("banger:"))
      .join("\n");

  before(async () => {
    ({ env } = await prepareBootableHome(home));
    await mustRun(banger(["vm", "create", "--name", "src", "--image", "busybox", "--memory", "256M"]));
    // A counter whose value exists only in its memory: a restored copy continues from the snapshot's value.
    await sh(
      "src",
      "echo written-before > /root/before; sync; setsid sh -c 'echo $$ > /tmp/counter.pid; i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done' </dev/null >/dev/null 2>&1 &",
    );
    await new Promise((r) => setTimeout(r, 500));
  });
  after(async () => {
    for (const vm of await vmNames().catch(() => [] as string[])) await banger(["vm", "rm", "-f", vm]).catch(() => undefined);
    await stopDaemon(home);
    cleanup();
  });

  it("pauses and resumes a VM: CPUs stopped, memory kept", async () => {
    const before = await counter("src");
    const paused = await json<{ state: string; stateReason: string }>(["vm", "pause", "src"]);
    assert.deepEqual([paused.state, paused.stateReason], ["paused", "paused by the user"]);
    const refused = await banger(["vm", "exec", "src", "--", "true"]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /vm src is paused \(paused by the user\), not running/);
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal((await json<{ state: string }>(["vm", "show", "src"])).state, "paused", "QEMU's own STOP event changes nothing");
    const resumed = await json<{ state: string; stateReason: string | null }>(["vm", "resume", "src"]);
    assert.deepEqual([resumed.state, resumed.stateReason], ["running", null]);
    const afterResume = await counter("src");
    assert.equal(afterResume.pid, before.pid, "the same process");
    assert.ok(afterResume.count >= before.count, `the count continued (${before.count} -> ${afterResume.count})`);
  });

  it("snapshots a running VM, which keeps running, and says how long it was paused", async () => {
    countAtSnapshot = (await counter("src")).count;
    const r = await banger(["vm", "snapshot", "src", "--name", "s1"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^snapshot s1 of vm src: paused \d+ ms, \d+ ms in all, .* on disk; restore: banger vm create --from-snapshot s1\n$/);
    assert.equal((await json<{ state: string }>(["vm", "show", "src"])).state, "running");
    const later = await counter("src");
    assert.ok(later.count > countAtSnapshot, "the source keeps counting");
    const shown = await json<{ name: string; sourceVm: string; memoryBytes: number; vms: string[]; usedBytes: number; pauseMs: number }>(["snapshot", "show", "s1"]);
    assert.deepEqual([shown.name, shown.sourceVm, shown.memoryBytes, shown.vms], ["s1", "src", 256 * 1024 ** 2, []]);
    assert.ok(shown.usedBytes > 0 && shown.usedBytes < 256 * 1024 ** 2 + 64 * 1024 ** 2, `sparse: ${shown.usedBytes}`);
    assert.deepEqual(readdirSync(join(home, "snapshots")), ["s1"], "no staging left");
    const again = await banger(["vm", "snapshot", "src", "--name", "s1"]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /^banger: snapshot s1 already exists/);
  });

  it("restores a new VM that continues the snapshot's processes and files, as a new machine", async () => {
    const r = await banger(["vm", "create", "--from-snapshot", "s1", "--name", "r1"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^vm r1 running, restored from s1 \(\d+ ms\)/);
    const shown = await json<{ state: string; snapshot: string; memoryBytes: number; image: string }>(["vm", "show", "r1"]);
    assert.deepEqual([shown.state, shown.snapshot, shown.memoryBytes, shown.image], ["running", "s1", 256 * 1024 ** 2, "busybox"]);
    assert.equal(await sh("r1", "cat /root/before"), "written-before\n");
    assert.equal((await sh("r1", "hostname")).trim(), "r1");
    const first = await counter("r1");
    assert.equal(first.pid, (await counter("src")).pid, "the same process, restored");
    assert.ok(first.count >= countAtSnapshot, `continues from the snapshot's value ${countAtSnapshot}, not from 0 (${first.count})`);
    await new Promise((r) => setTimeout(r, 1000));
    assert.ok((await counter("r1")).count > first.count, "and keeps counting");
    const refused = await banger(["vm", "create", "--from-snapshot", "s1", "--memory", "1G"]);
    assert.equal(refused.code, 2, "a usage error");
    assert.match(refused.stderr, /--memory cannot be used with --from-snapshot/);
  });

  it("restores into the VMM it started ahead for the snapshot, then starts the next", async () => {
    const ahead = await standbyReady("s1");
    const r2 = await json<{ name: string; pid: number; state: string }>(["vm", "create", "--from-snapshot", "s1", "--name", "r2"]);
    assert.deepEqual([r2.state, r2.pid], ["running", ahead], "r2 is the VMM started ahead");
    assert.equal((await sh("r2", "hostname")).trim(), "r2");
    assert.equal(await sh("r2", "cat /root/before"), "written-before\n");
    assert.equal((await counter("r2")).pid, (await counter("src")).pid, "the snapshot's process, restored");
    assert.ok(existsSync(join(home, "vms", "r2", "root.qcow2")), "its disk moved under its own name");
    await mustRun(banger(["vm", "rm", "-f", "r2"]));
    assert.notEqual(await standbyReady("s1"), ahead, "the next one");
    assert.equal(standbyDirs().length, 1, "one standby per snapshot");
  });

  it("does not take a VMM that died waiting: the restore starts its own", async () => {
    const ahead = await standbyReady("s1");
    process.kill(ahead, "SIGKILL");
    const r = await json<{ name: string; pid: number; state: string }>(["vm", "create", "--from-snapshot", "s1", "--name", "r2"]);
    assert.equal(r.state, "running");
    assert.notEqual(r.pid, ahead);
    assert.equal((await sh("r2", "hostname")).trim(), "r2");
    await mustRun(banger(["vm", "rm", "-f", "r2"]));
    assert.notEqual(await standbyReady("s1"), ahead, "and a new one waits");
    assert.equal(standbyDirs().length, 1, "the dead one's files removed");
  });

  it("forks children that differ in hostname and random bytes; the parent keeps running", async () => {
    const forked = await json<{ parent: string; snapshot: string; children: { name: string; state: string; snapshot: string }[]; pauseMs: number }>(["vm", "fork", "src", "--count", "2"]);
    assert.deepEqual(
      forked.children.map((c) => [c.name, c.state, c.snapshot]),
      [
        ["src-1", "running", forked.snapshot],
        ["src-2", "running", forked.snapshot],
      ],
    );
    const hosts = await Promise.all(["src", "src-1", "src-2"].map(async (vm) => (await sh(vm, "hostname")).trim()));
    assert.deepEqual(hosts, ["src", "src-1", "src-2"]);
    const random = await Promise.all(["src-1", "src-2"].map((vm) => sh(vm, "head -c 32 /dev/urandom | od -An -tx1")));
    assert.notEqual(random[0], random[1], "reseeded per child");
    assert.ok((await counter("src-1")).count >= 1 && (await counter("src-2")).pid === (await counter("src")).pid);
    assert.equal((await json<{ state: string }>(["vm", "show", "src"])).state, "running");
    const list = await json<{ name: string; internal: boolean }[]>(["snapshot", "ls"]);
    assert.deepEqual(
      list.map((s) => s.name),
      ["s1"],
      "the fork's base is internal",
    );
    const all = await json<{ name: string; internal: boolean }[]>(["snapshot", "ls", "--all"]);
    assert.deepEqual(
      all.map((s) => [s.name, s.internal]),
      [
        ["s1", false],
        [forked.snapshot, true],
      ],
    );
  });

  it("forks again into the VMM it started ahead for the parent's next fork, then starts the next", async () => {
    const ahead = await standbyReady("fork:src", "standby fork ready");
    const standbyDir = `.standby-${standbyIds("fork:src")[0]}`;
    assert.ok(existsSync(join(home, "vms", standbyDir)));
    const forked = await json<{ snapshot: string; children: { name: string; pid: number; state: string }[] }>(["vm", "fork", "src", "--name", "src-3"]);
    assert.deepEqual(
      forked.children.map((c) => [c.name, c.state, c.pid]),
      [["src-3", "running", ahead]],
      "src-3 is the VMM started ahead",
    );
    assert.equal((await sh("src-3", "hostname")).trim(), "src-3");
    assert.equal(await sh("src-3", "cat /root/before"), "written-before\n");
    const child = await counter("src-3");
    assert.equal(child.pid, (await counter("src")).pid, "the parent's process, forked");
    assert.ok(child.count > countAtSnapshot, `with the parent's count at the fork (${child.count}), not the older snapshot's (${countAtSnapshot})`);
    assert.ok(existsSync(join(home, "vms", "src-3", "root.qcow2")) && !existsSync(join(home, "vms", standbyDir!)), "its disk moved under its own name");
    assert.notEqual(await standbyReady("fork:src", "standby fork ready"), ahead, "the next one");
    await mustRun(banger(["vm", "rm", "-f", "src-3"]));
    assert.ok(!existsSync(join(home, "snapshots", forked.snapshot)), "its base went with its only child");
  });

  it("forks a paused parent without the VMM waiting (ended), and starts one again once it runs", async () => {
    const waiting = await standbyReady("fork:src", "standby fork ready");
    await mustRun(banger(["vm", "pause", "src"]));
    const fromPaused = await json<{ children: { name: string; pid: number; state: string }[] }>(["vm", "fork", "src", "--name", "src-4"]);
    assert.equal(fromPaused.children[0]?.state, "running");
    assert.notEqual(fromPaused.children[0]?.pid, waiting, "its snapshot is not written in place");
    assert.ok(!isAlive(waiting), "the VMM waiting for src's next fork was ended");
    assert.deepEqual(standbyPids("fork:src"), [], "and none is made for a paused VM");
    await mustRun(banger(["vm", "resume", "src"]));
    assert.equal((await sh("src-4", "hostname")).trim(), "src-4");
    await mustRun(banger(["vm", "rm", "-f", "src-4"]));
    await mustRun(banger(["vm", "fork", "src", "--name", "src-5"]));
    await mustRun(banger(["vm", "rm", "-f", "src-5"]));
    assert.notEqual(await standbyReady("fork:src", "standby fork ready"), waiting, "running again, forked again: one waits again");
  });

  it("refuses to remove a snapshot a VM was restored from", async () => {
    const r = await banger(["snapshot", "rm", "s1"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^banger: snapshot s1 is in use by r1 \(remove that VM first, or `banger snapshot rm -f s1`/);
    assert.ok(existsSync(join(home, "snapshots", "s1", "memory")));
  });

  it("refuses a truncated or corrupted snapshot with one line, before any VMM starts", async () => {
    await mustRun(banger(["vm", "snapshot", "src", "--name", "s2"]));
    const dir = join(home, "snapshots", "s2");
    const memory = join(dir, "memory");
    const size = Number((await json<{ memoryFileBytes: number }>(["snapshot", "show", "s2"])).memoryFileBytes);
    truncateSync(memory, Math.floor(size / 2));
    const truncated = await banger(["vm", "create", "--from-snapshot", "s2", "--name", "bad"]);
    assert.equal(truncated.code, 1);
    assert.match(errorLines(truncated.stderr), /^banger: snapshot s2 is damaged: its memory \(memory\) is 128 MiB \(134217728 bytes\), 268435456 when taken \(remove it .*\)$/);
    truncateSync(memory, size);
    const state = join(dir, "vmstate");
    const bytes = readFileSync(state);
    const mid = bytes.length >> 1;
    bytes.writeUInt8(bytes.readUInt8(mid) ^ 0xff, mid);
    writeFileSync(state, bytes);
    const corrupt = await banger(["vm", "create", "--from-snapshot", "s2", "--name", "bad"]);
    assert.equal(corrupt.code, 1);
    assert.match(errorLines(corrupt.stderr), /^banger: snapshot s2 is damaged: its device state \(vmstate\) does not match the checksum recorded when it was taken \(.*\)$/);
    assert.ok(!(await vmNames()).includes("bad"), "nothing left of the refused VM");
    await mustRun(banger(["snapshot", "rm", "s2"]));
    assert.ok(!existsSync(dir));
  });

  it("loses nothing to a daemon killed with SIGKILL: rows, files and VMs re-adopted", async () => {
    const before = await json<{ name: string; pid: number; state: string }[]>(["vm", "ls"]);
    // The rows as recorded; usedBytes is measured (du) at each call, and ext4 may allocate an
    // extent block for a fork base's memory when it writes it back (~30 s after the fork).
    const recorded = async () => (await json<{ name: string; usedBytes: number }[]>(["snapshot", "ls", "--all"])).map(({ usedBytes, ...row }) => (assert.ok(usedBytes > 0), row));
    const snaps = await recorded();
    // At most snapshot.standbys (2): src's next fork's, and s1's unless s2's pushed it out.
    const ahead = standbyPids("fork:src");
    assert.equal(ahead.length, 1, "a VMM waits for src's next fork");
    ahead.push(...standbyPids("s1"), ...standbyPids("s2"));
    process.kill(daemonPid(), "SIGKILL");
    const after = await json<{ name: string; pid: number; state: string }[]>(["vm", "ls"]);
    assert.deepEqual(
      after.map((v) => [v.name, v.pid, v.state]),
      before.map((v) => [v.name, v.pid, v.state]),
    );
    assert.ok(after.every((v) => isAlive(v.pid)));
    assert.deepEqual(await recorded(), snaps);
    assert.equal((await sh("r1", "hostname")).trim(), "r1");
    assert.ok((await counter("src-2")).count > 0);
    assert.ok(!ahead.some(isAlive), "the VMMs the killed daemon started ahead were ended");
    assert.deepEqual([standbyPids("s1"), standbyPids("fork:src"), standbyDirs()], [[], [], []], "and their files removed");
    assert.deepEqual(readdirSync(join(home, "snapshots")).sort(), snaps.map((s) => s.name).sort(), "with the stand-ins of src's next fork base");
  });

  it("frees a fork's base with its last child, and a snapshot once nothing uses it", async () => {
    const base = (await json<{ name: string; internal: boolean }[]>(["snapshot", "ls", "--all"])).find((s) => s.internal)!.name;
    await mustRun(banger(["vm", "rm", "-f", "src-1"]));
    assert.ok(existsSync(join(home, "snapshots", base)), "src-2 still uses it");
    await mustRun(banger(["vm", "rm", "-f", "src-2"]));
    assert.ok(!existsSync(join(home, "snapshots", base)));
    await mustRun(banger(["vm", "rm", "-f", "r1"]));
    // A restore starts a VMM ahead for the next; removing the snapshot ends it.
    await mustRun(banger(["vm", "create", "--from-snapshot", "s1", "--name", "r3"]));
    await mustRun(banger(["vm", "rm", "-f", "r3"]));
    const ahead = await standbyReady("s1");
    const rm = await json<{ removed: string; freedBytes: number }[]>(["snapshot", "rm", "s1"]);
    assert.ok(!isAlive(ahead), "the VMM started ahead for s1 is ended");
    assert.deepEqual([standbyPids("s1"), standbyDirs()], [[], []]);
    assert.equal(rm[0]?.removed, "s1");
    assert.ok((rm[0]?.freedBytes ?? 0) > 0);
    assert.deepEqual(readdirSync(join(home, "snapshots")), []);
    assert.deepEqual(await json(["snapshot", "ls", "--all"]), []);
  });
});
