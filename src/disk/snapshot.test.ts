// A snapshot's disk and disks made from it, with qemu-img/qemu-io (what QEMU itself reads):
// the copy holds what was written before it, later writes to the source or to a clone stay
// out of it, and a clone of a qcow2 snapshot disk is an overlay, not a copy.
import assert from "node:assert/strict";
import { readFile, readdir, stat, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, test } from "node:test";
import { makeTempHome } from "../../test/helpers.ts";
import { run, runChecked } from "../util/exec.ts";
import { cloneDisk, cloneFromSnapshot, diskStandIn, snapshotDisk } from "./index.ts";
import { qcow2Header } from "./snapshot.ts";

const MiB = 1024 * 1024;
const home = makeTempHome();
after(() => home.cleanup());

/** Whether the 64 KiB at `offset` of a disk all hold `byte` (qemu-io read -P checks it). */
async function holds(path: string, format: string, offset: number, byte: number): Promise<boolean> {
  const res = await run(["qemu-io", "-f", format, "-c", `read -P ${byte} ${offset} 64k`, path]);
  return res.code === 0 && !/Pattern verification failed/.test(res.stdout + res.stderr);
}
const write = (path: string, format: string, offset: number, byte: number) => runChecked(["qemu-io", "-f", format, "-c", `write -P ${byte} ${offset} 64k`, path]);

test("a qcow2 overlay's snapshot keeps what was written before; clones of it are overlays of their own", async () => {
  const base = join(home.home, "base.raw");
  await writeFile(base, "");
  await truncate(base, 64 * MiB);
  const vmDisk = await cloneDisk(base, join(home.home, "vm.qcow2"), "qcow2");
  await write(vmDisk.path, "qcow2", 0, 0xab);
  const snapDir = join(home.home, "snap");
  await runChecked(["mkdir", snapDir]);
  const snap = await snapshotDisk(vmDisk, snapDir);
  assert.equal(snap.format, "qcow2");
  assert.equal(snap.path, join(snapDir, "disk.qcow2"));
  assert.ok(snap.bytes > 0 && snap.bytes < 8 * MiB, `sparse: ${snap.bytes} bytes`);
  await write(vmDisk.path, "qcow2", MiB, 0xcd); // the VM runs on after the snapshot

  const a = await cloneFromSnapshot(snap, join(home.home, "a.qcow2"), "qcow2");
  const b = await cloneFromSnapshot(snap, join(home.home, "b.qcow2"), "qcow2");
  assert.equal(a.sizeBytes, 64 * MiB);
  const info = JSON.parse((await runChecked(["qemu-img", "info", "--output=json", a.path])).stdout) as { "backing-filename"?: string };
  assert.equal(info["backing-filename"], snap.path, "an overlay of the snapshot's disk");
  assert.ok(await holds(a.path, "qcow2", 0, 0xab), "written before the snapshot");
  assert.ok(!(await holds(a.path, "qcow2", MiB, 0xcd)), "written after it: not there");
  await write(a.path, "qcow2", 2 * MiB, 0xef);
  assert.ok(!(await holds(b.path, "qcow2", 2 * MiB, 0xef)), "one clone's writes are its own");
  assert.ok(!(await holds(snap.path, "qcow2", 2 * MiB, 0xef)), "the snapshot's disk is untouched");
  // The second clone was written from the first one's bytes (no qemu-img run): a sound overlay too.
  await runChecked(["qemu-img", "check", b.path]);
  const infoB = JSON.parse((await runChecked(["qemu-img", "info", "--output=json", b.path])).stdout) as { "backing-filename"?: string; "virtual-size"?: number };
  assert.equal(infoB["backing-filename"], snap.path);
  assert.equal(infoB["virtual-size"], 64 * MiB);
  assert.ok(await holds(b.path, "qcow2", 0, 0xab), "the second clone reads the snapshot's data too");
  const notQcow2 = join(home.home, "not.qcow2");
  await writeFile(notQcow2, Buffer.alloc(4096));
  await assert.rejects(cloneFromSnapshot({ path: notQcow2, format: "qcow2" }, join(home.home, "d.qcow2"), "qcow2"), /is not a qcow2 disk/);
  assert.deepEqual(
    (await readdir(home.home)).filter((n) => n.includes(".partial-")),
    [],
  );
  await assert.rejects(cloneFromSnapshot(snap, join(home.home, "c.raw"), "sparse-copy"), /cannot be cloned with sparse-copy/);
});

test("clones of another snapshot disk of the same size reuse the first overlay's bytes with their own backing", async () => {
  const base = join(home.home, "base2.raw");
  await writeFile(base, "");
  await truncate(base, 48 * MiB);
  const snaps = [];
  for (const [i, byte] of [0x21, 0x42].entries()) {
    const vm = await cloneDisk(base, join(home.home, `vm2-${i}.qcow2`), "qcow2");
    await write(vm.path, "qcow2", 0, byte);
    const dir = join(home.home, `snap2-${i}-${"x".repeat(i * 40)}`); // backing names of different lengths
    await runChecked(["mkdir", dir]);
    snaps.push({ snap: await snapshotDisk(vm, dir), byte });
  }
  for (const [i, { snap, byte }] of snaps.entries()) {
    const clone = await cloneFromSnapshot(snap, join(home.home, `clone2-${i}.qcow2`), "qcow2");
    await runChecked(["qemu-img", "check", clone.path]);
    const info = JSON.parse((await runChecked(["qemu-img", "info", "--output=json", clone.path])).stdout) as { "backing-filename"?: string; "virtual-size"?: number };
    assert.equal(info["backing-filename"], snap.path, `clone ${i} is an overlay of its own snapshot's disk`);
    assert.equal(info["virtual-size"], 48 * MiB);
    assert.ok(await holds(clone.path, "qcow2", 0, byte), `clone ${i} reads its snapshot's data`);
  }
});

test("a raw disk's snapshot is a sparse copy, cloned by copy", async () => {
  const raw = join(home.home, "vm.raw");
  await writeFile(raw, "");
  await truncate(raw, 32 * MiB);
  await write(raw, "raw", 0, 0x11);
  const snapDir = join(home.home, "snapraw");
  await runChecked(["mkdir", snapDir]);
  const snap = await snapshotDisk({ path: raw, format: "raw" }, snapDir);
  assert.equal(snap.path, join(snapDir, "disk.raw"));
  assert.ok(snap.bytes < 4 * MiB, `sparse: ${snap.bytes} bytes`);
  const clone = await cloneFromSnapshot(snap, join(home.home, "clone.raw"), "sparse-copy");
  assert.equal(clone.format, "raw");
  assert.deepEqual(await readFile(clone.path), await readFile(raw));
});

test("a disk stand-in is an empty overlay on the VM's own backing, then rewritten in place by the copy", async () => {
  const base = join(home.home, "base3.raw");
  await writeFile(base, "");
  await truncate(base, 40 * MiB);
  await write(base, "raw", 3 * MiB, 0x5a);
  const vm = await cloneDisk(base, join(home.home, "vm3.qcow2"), "qcow2");
  await write(vm.path, "qcow2", 0, 0x77);
  const dir = join(home.home, "snap3");
  await runChecked(["mkdir", dir]);
  const standIn = await diskStandIn(vm, dir);
  assert.equal(standIn, join(dir, "disk.qcow2"));
  const header = await qcow2Header(standIn!);
  assert.deepEqual(header, { size: 40 * MiB, backing: base, backingFormat: "raw" }, "the VM's size, backing file and backing format");
  assert.ok(await holds(standIn!, "qcow2", 3 * MiB, 0x5a), "a valid chain: it reads the backing");
  assert.ok(!(await holds(standIn!, "qcow2", 0, 0x77)), "and nothing of the VM's own writes yet");
  const { ino } = await stat(standIn!);
  const copy = await snapshotDisk(vm, dir, { inPlace: true });
  assert.equal((await stat(copy.path)).ino, ino, "the same file, which a waiting VMM may hold open");
  assert.ok(await holds(copy.path, "qcow2", 0, 0x77), "now the VM's disk");
  await runChecked(["qemu-img", "check", copy.path]);
  assert.equal(await diskStandIn({ path: base, format: "raw" }, dir), undefined, "a raw disk has no stand-in");
  const flat = await runChecked(["qemu-img", "create", "-q", "-f", "qcow2", join(home.home, "flat.qcow2"), "8M"]).then(() => join(home.home, "flat.qcow2"));
  assert.equal(await diskStandIn({ path: flat, format: "qcow2" }, dir), undefined, "nor does a qcow2 without a backing file");
});

test("a qcow2 header that lies is read within its first 64 KiB and yields no stand-in", async () => {
  const lying = Buffer.alloc(4096);
  lying.writeUInt32BE(0x514649fb, 0); // magic
  lying.writeUInt32BE(3, 4); // version
  lying.writeBigUInt64BE(BigInt(1 << 30), 8); // backing name far past the bytes read
  lying.writeUInt32BE(900, 16);
  lying.writeBigUInt64BE(BigInt(8 * MiB), 24); // size
  lying.writeUInt32BE(112, 100); // header length: extensions at 112
  lying.writeUInt32BE(0xe2792aca, 112); // backing format extension claiming 4 GiB
  lying.writeUInt32BE(0xffffffff, 116);
  const path = join(home.home, "lying.qcow2");
  await writeFile(path, lying);
  assert.deepEqual(await qcow2Header(path), { size: 8 * MiB }, "no backing name, no format: nothing read past the buffer");
  // A backing format that is not a plain word never reaches qemu-img's argv.
  const odd = Buffer.from(lying);
  odd.writeBigUInt64BE(512n, 8);
  odd.writeUInt32BE(4, 16);
  odd.write("/b/x", 512);
  odd.writeUInt32BE(9, 116);
  odd.write("raw,x=y\n", 120);
  await writeFile(path, odd);
  assert.deepEqual(await qcow2Header(path), { size: 8 * MiB, backing: "/b/x", backingFormat: "raw,x=y\n\0" });
  const dir = join(home.home, "snap-lying");
  await runChecked(["mkdir", dir]);
  assert.equal(await diskStandIn({ path, format: "qcow2" }, dir), undefined);
  assert.deepEqual(await readdir(dir), [], "nothing made");
});
