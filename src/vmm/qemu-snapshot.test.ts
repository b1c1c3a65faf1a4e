// QEMU snapshot pieces that need no VM: the command lines (RAM in a file, shared or mapped
// from a snapshot, waiting for incoming state) and the checks that refuse a damaged snapshot
// before anything starts. snapshot-vm.test.ts does the real thing.
import assert from "node:assert/strict";
import { mkdir, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, test } from "node:test";
import { makeTempHome } from "../../test/helpers.ts";
import { errorLine } from "../util/errors.ts";
import { buildQemuArgv, checkQemuSnapshot, type VmSpec } from "./index.ts";

const home = makeTempHome();
after(() => home.cleanup());

const spec: VmSpec = {
  kernelPath: "/k/vmlinux",
  cmdline: "console=ttyS0",
  rootDisk: { path: "/d/root.qcow2", format: "qcow2" },
  cpus: 2,
  memoryMib: 512,
  runtimeDir: "/run/vm1",
};
const opts = { accel: "tcg" as const, agentChannel: "virtio-serial" as const };
const after1 = (argv: string[], flag: string) => argv.filter((_, i) => argv[i - 1] === flag);

test("a VM with a memory file boots with its RAM shared in that file", () => {
  const argv = buildQemuArgv({ ...spec, memoryFile: "/dev/shm/banger-x/vm1.mem" }, opts);
  assert.deepEqual(after1(argv, "-M"), ["microvm,x-option-roms=off,isa-serial=on,rtc=on,memory-backend=ram"]);
  assert.deepEqual(after1(argv, "-object"), ["memory-backend-file,id=ram,size=512M,mem-path=/dev/shm/banger-x/vm1.mem,share=on"]);
  assert.deepEqual(after1(argv, "-m"), ["512M"]);
  assert.ok(!argv.includes("-incoming"));
});

test("without one, RAM is anonymous: no backend object", () => {
  const argv = buildQemuArgv(spec, opts);
  assert.deepEqual(after1(argv, "-M"), ["microvm,x-option-roms=off,isa-serial=on,rtc=on"]);
  assert.deepEqual(after1(argv, "-object"), []);
});

test("a restore maps the snapshot's RAM privately and waits for the device state", () => {
  const argv = buildQemuArgv({ ...spec, memoryFile: "/dev/shm/banger-x/vm2.mem" }, { ...opts, memory: { path: "/snaps/a,b/memory", shared: false }, incoming: true });
  // The snapshot's file, copy-on-write (share=off); a comma in the path doubled (QEMU's escape).
  assert.deepEqual(after1(argv, "-object"), ["memory-backend-file,id=ram,size=512M,mem-path=/snaps/a,,b/memory,share=off"]);
  assert.deepEqual(after1(argv, "-incoming"), ["defer"]);
  // Same machine and devices as a cold boot of the spec: QEMU loads device state by device.
  const cold = buildQemuArgv({ ...spec, memoryFile: "/dev/shm/banger-x/vm2.mem" }, opts);
  assert.deepEqual(after1(argv, "-device"), after1(cold, "-device"));
  assert.deepEqual(after1(argv, "-M"), after1(cold, "-M"));
  // The guest's kernel is in the snapshot's RAM: QEMU is not made to read one.
  assert.deepEqual(after1(cold, "-kernel"), ["/k/vmlinux"]);
  for (const flag of ["-kernel", "-initrd", "-append"]) assert.ok(!argv.includes(flag), `a restore has no ${flag}`);
});

async function snapshotDir(name: string, memoryBytes: number, state: Buffer | undefined): Promise<string> {
  const dir = join(home.home, name);
  await mkdir(dir);
  await writeFile(join(dir, "memory"), "");
  await truncate(join(dir, "memory"), memoryBytes);
  if (state) await writeFile(join(dir, "vmstate"), state);
  return dir;
}

test("a snapshot QEMU cannot restore is refused in one line", async () => {
  const MiB = 1024 * 1024;
  const qevm = Buffer.concat([Buffer.from("QEVM"), Buffer.from([0, 0, 0, 3]), Buffer.alloc(100)]);
  await checkQemuSnapshot(await snapshotDir("good", 512 * MiB, qevm), 512);
  const cases: Array<[string, () => Promise<void>, RegExp]> = [
    ["truncated memory", async () => checkQemuSnapshot(await snapshotDir("short", 300 * MiB, qevm), 512), /memory file holds 314572800 bytes, a 512 MiB VM needs 536870912/],
    ["another VM's size", async () => checkQemuSnapshot(await snapshotDir("other", 512 * MiB, qevm), 256), /a 256 MiB VM needs/],
    ["no device state", async () => checkQemuSnapshot(await snapshotDir("nostate", 512 * MiB, undefined), 512), /has no device state file/],
    ["not QEMU's state", async () => checkQemuSnapshot(await snapshotDir("fcstate", 512 * MiB, Buffer.from("firecracker state")), 512), /device state is not QEMU's/],
  ];
  for (const [what, check, want] of cases) {
    await assert.rejects(check(), (err) => {
      const line = errorLine(err);
      assert.match(line, want, what);
      assert.ok(!line.includes("\n"), `${what}: one line`);
      return true;
    });
  }
});
