// QEMU snapshots on a real guest (TCG here; run under the VM lock): a VM whose PID 1 is the
// agent boots with its RAM in a tmpfs file, starts a counter, is paused, snapshotted (device
// state, RAM, disk) and resumed; two new QEMUs restored from that snapshot continue the same
// counter process with its memory, and see the file written before. A truncated memory file
// is refused in one line before anything starts. Afterwards nothing is left: no QEMU, no RAM
// file on the tmpfs.
import assert from "node:assert/strict";
import { copyFile, cp, mkdir, mkdtemp, readdir, readFile, rm, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { buffer as collect } from "node:stream/consumers";
import { resolvePaths, vmMemoryFile } from "../config/index.ts";
import { cloneFromSnapshot, cloneDisk, snapshotDisk } from "../disk/index.ts";
import { buildAgent, connectAgent, type AgentClient } from "../guest/index.ts";
import { forcedAccel } from "../host/index.ts";
import { errorLine } from "../util/errors.ts";
import { buildAgentGuest, ensureTestKernel, killProcessesMentioning, processesMentioning, type TestKernel } from "../../test/kits/vm.ts";
import { qemuDriver, type VmHandle, type VmSpec } from "./index.ts";

let home = "";
let kernel: TestKernel | string = "not set up";
let guest: { initrd: string; root: string; cmdline: string };
const handles: VmHandle[] = [];
const clients: AgentClient[] = [];

before(async () => {
  home = await mkdtemp(join(tmpdir(), "bgr-snap-"));
  kernel = await ensureTestKernel();
  if (typeof kernel === "string") return;
  guest = await buildAgentGuest(kernel, home, await buildAgent());
});

after(async () => {
  for (const c of clients) c.close();
  for (const h of handles) await h.kill().catch(() => undefined);
  await killProcessesMentioning(home);
  await rm(resolvePaths({ BANGER_HOME: home }).memoryDir, { recursive: true, force: true });
  await rm(home, { recursive: true, force: true });
});

function specFor(name: string, disk: string, withMemoryFile: boolean): VmSpec {
  if (typeof kernel === "string") throw new Error(kernel);
  return {
    kernelPath: kernel.vmlinuz,
    initrdPath: guest.initrd,
    cmdline: `${guest.cmdline} banger.hostname=${name}`,
    rootDisk: { path: disk, format: "qcow2" },
    cpus: 1,
    memoryMib: 256,
    runtimeDir: join(home, name),
    accel: forcedAccel() ?? "tcg",
    ...(withMemoryFile ? { memoryFile: vmMemoryFile(resolvePaths({ BANGER_HOME: home }), name) } : {}),
  };
}

async function agentOf(vm: VmHandle): Promise<AgentClient> {
  const client = await connectAgent(await vm.agentStream({ timeoutMs: 60_000 }), { serial: true, timeoutMs: 60_000 });
  clients.push(client);
  return client;
}

async function sh(client: AgentClient, script: string): Promise<string> {
  const proc = await client.exec({ argv: ["sh", "-c", script] });
  const out = (await collect(proc.stdout)).toString();
  assert.deepEqual(await proc.wait(), { exitCode: 0 }, `${script}: ${out}`);
  return out.trim();
}

/** The counter's pid and count: it keeps its count in its shell's memory and prints it to /run (a tmpfs). */
async function counter(client: AgentClient): Promise<{ pid: number; count: number }> {
  const [pid, count] = (await sh(client, "cat /run/counter.pid /run/count")).split("\n").map(Number);
  return { pid: pid ?? 0, count: count ?? 0 };
}

async function counts(client: AgentClient): Promise<{ pid: number; count: number }> {
  // Alive: the count moves on, in the same process (which may only just have started).
  const deadline = Date.now() + 30_000;
  while ((await sh(client, "[ -s /run/count ] && [ -s /run/counter.pid ] && echo yes || echo no")) !== "yes") {
    assert.ok(Date.now() < deadline, "the counter never started");
    await sleep(100);
  }
  const first = await counter(client);
  for (;;) {
    await sleep(300);
    const now = await counter(client);
    assert.equal(now.pid, first.pid, "the same counter process");
    if (now.count > first.count) return first;
    assert.ok(Date.now() < deadline, `the counter stays at ${now.count}`);
  }
}

test("a paused VM's snapshot restores into two new VMs that continue its processes, with its memory and disk", async (t) => {
  if (typeof kernel === "string") return t.skip(kernel);
  const snapDir = join(home, "snap");
  const parentDisk = await cloneDisk(guest.root, join(home, "parent.qcow2"), "qcow2");
  const parentSpec = specFor("parent", parentDisk.path, true);
  const parent = await qemuDriver.start(parentSpec);
  handles.push(parent);
  const p = await agentOf(parent);
  await sh(p, "echo written-before > /root/before.txt && sync");
  await sh(p, "setsid sh -c 'echo $$ > /run/counter.pid; i=0; while true; do i=$((i+1)); echo $i > /run/count; sleep 0.1; done' </dev/null >/dev/null 2>&1 &");
  const started = await counts(p);

  const t0 = performance.now();
  await parent.pause();
  const paused = performance.now();
  const saved = await parent.saveSnapshot(snapDir);
  const disk = await snapshotDisk(parentSpec.rootDisk as { path: string; format: "qcow2" }, snapDir);
  await parent.resume();
  const pauseMs = performance.now() - paused;
  t.diagnostic(`snapshot: paused ${pauseMs.toFixed(0)} ms (total ${(performance.now() - t0).toFixed(0)} ms); state ${saved.stateBytes} B, memory ${saved.memoryBytes} B on disk, disk ${disk.bytes} B`);
  assert.ok(saved.stateBytes > 0 && saved.stateBytes < 4 * 1024 * 1024, `device state only (no RAM): ${saved.stateBytes} bytes`);
  assert.ok(saved.memoryBytes > 0 && saved.memoryBytes < 256 * 1024 * 1024, `the RAM copy is sparse: ${saved.memoryBytes} bytes`);
  const atSnapshot = await counter(p);

  const children: AgentClient[] = [];
  for (const name of ["child1", "child2"]) {
    const clone = await cloneFromSnapshot(disk, join(home, `${name}.qcow2`), "qcow2");
    const r0 = performance.now();
    const vm = await qemuDriver.restore(specFor(name, clone.path, true), snapDir);
    handles.push(vm);
    assert.equal(await vm.status(), "running");
    const c = await agentOf(vm);
    t.diagnostic(`${name}: restored to agent ready in ${(performance.now() - r0).toFixed(0)} ms`);
    children.push(c);
  }
  for (const c of children) {
    const now = await counts(c);
    assert.equal(now.pid, started.pid, "the counter started before the snapshot runs in the restored VM");
    assert.ok(now.count >= started.count, `its count continues (${now.count} after ${started.count} before the snapshot), not restarted`);
    assert.equal(await sh(c, "cat /root/before.txt"), "written-before");
  }
  // The parent keeps running, and a child's writes are its own.
  assert.ok((await counts(p)).count >= atSnapshot.count);
  await sh(children[0]!, "echo child1 > /root/own.txt && sync");
  assert.equal(await sh(children[1]!, "cat /root/own.txt 2>/dev/null || echo none"), "none");
  assert.equal(await sh(p, "cat /root/own.txt 2>/dev/null || echo none"), "none");

  // A restored VM is snapshotted in turn (its RAM is private: the state carries it), and its
  // own restore continues the counter again.
  const child = handles[1]!;
  const snap2 = join(home, "snap2");
  await child.pause();
  const saved2 = await child.saveSnapshot(snap2);
  const disk2 = await snapshotDisk({ path: join(home, "child1.qcow2"), format: "qcow2" }, snap2);
  await child.resume();
  t.diagnostic(`snapshot of a restored VM: state ${saved2.stateBytes} B, memory ${saved2.memoryBytes} B on disk`);
  const grand = await qemuDriver.restore(specFor("grandchild", (await cloneFromSnapshot(disk2, join(home, "grandchild.qcow2"), "qcow2")).path, true), snap2);
  handles.push(grand);
  const g = await agentOf(grand);
  assert.equal((await counts(g)).pid, started.pid);
  assert.equal(await sh(g, "cat /root/own.txt"), "child1");
  await counts(children[0]!);

  for (const c of clients.splice(0)) c.close();
  for (const h of handles.splice(0)) await h.kill();
  assert.deepEqual(await processesMentioning(home), [], "no QEMU left");
  assert.deepEqual(await readdir(resolvePaths({ BANGER_HOME: home }).memoryDir), [], "no RAM file left on the tmpfs");

  // A truncated memory file: refused in one line, nothing started.
  const bad = join(home, "bad");
  await mkdir(bad);
  for (const f of ["vmstate", "memory"]) await copyFile(join(snapDir, f), join(bad, f));
  await truncate(join(bad, "memory"), 128 * 1024 * 1024);
  const clone = await cloneFromSnapshot(disk, join(home, "bad.qcow2"), "qcow2");
  const badSpec = specFor("badvm", clone.path, true);
  await assert.rejects(qemuDriver.restore(badSpec, bad), (err) => {
    const line = errorLine(err);
    assert.match(line, /memory file holds 134217728 bytes, a 256 MiB VM needs 268435456/);
    assert.doesNotMatch(line, /\n/);
    return true;
  });
  assert.deepEqual(await processesMentioning(badSpec.runtimeDir), []);
  // A device state that is not QEMU's: refused the same way.
  await cp(join(snapDir, "memory"), join(bad, "memory"));
  await truncate(join(bad, "vmstate"), 0);
  await truncate(join(bad, "vmstate"), 100);
  await assert.rejects(qemuDriver.restore(badSpec, bad), /device state is not QEMU's/);
  // QEMU's state cut short: QEMU fails to load it and exits; the restore says so, nothing stays.
  await writeFile(join(bad, "vmstate"), (await readFile(join(snapDir, "vmstate"))).subarray(0, 2000));
  await assert.rejects(qemuDriver.restore(badSpec, bad), (err) => {
    assert.match(errorLine(err), /^restoring the snapshot failed: /);
    return true;
  });
  assert.deepEqual(await processesMentioning(badSpec.runtimeDir), []);
});
