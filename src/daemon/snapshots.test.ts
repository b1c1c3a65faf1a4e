// A snapshot's files are checked against what was recorded when it was taken (sizes of all
// three, sha256 of the device state and the disk copy) before any VMM starts: real files in a
// temporary root, no VM (verifySnapshot reads only the paths from the daemon's context).
import assert from "node:assert/strict";
import { mkdirSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { describe, it } from "node:test";
import { resolvePaths, snapshotDir } from "../config/index.ts";
import type { SnapshotRecord } from "../store/index.ts";
import { sha256File } from "../util/hash.ts";
import { makeTempHome } from "../../test/helpers.ts";
import type { DaemonContext } from "./context.ts";
import { KeyedLock } from "./context.ts";
import { Logger } from "./logger.ts";
import { reconcileSnapshots, releaseSnapshot, removeSnapshot, verifySnapshot } from "./snapshots.ts";
import { existsSync } from "node:fs";
import { openStore } from "../store/index.ts";
import { restoreOnly } from "./restore.ts";
import { StandbyRestores } from "./standby.ts";

async function fixture(home: string, name: string): Promise<{ ctx: DaemonContext; snap: SnapshotRecord; dir: string }> {
  const paths = resolvePaths({ BANGER_HOME: home });
  const dir = snapshotDir(paths, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(`${dir}/vmstate`, Buffer.alloc(4096, 7));
  writeFileSync(`${dir}/memory`, "");
  truncateSync(`${dir}/memory`, 64 * 1024 * 1024); // sparse, as guest RAM is
  writeFileSync(`${dir}/disk.qcow2`, Buffer.alloc(8192, 3));
  const state = await sha256File(`${dir}/vmstate`);
  const disk = await sha256File(`${dir}/disk.qcow2`);
  const snap: SnapshotRecord = {
    name,
    sourceVm: "dev",
    image: "i",
    kernel: "k",
    vmm: "qemu",
    cpus: 1,
    memoryBytes: 64 * 1024 * 1024,
    net: "none",
    netPeer: false,
    hasNic: false,
    diskFile: "disk.qcow2",
    diskFormat: "qcow2",
    stateBytes: state.sizeBytes,
    memoryFileBytes: 64 * 1024 * 1024,
    diskBytes: disk.sizeBytes,
    stateSha256: state.sha256,
    diskSha256: disk.sha256,
    internal: false,
    pauseMs: 5,
    workspace: null,
    createdAt: new Date().toISOString(),
  };
  return { ctx: { paths } as DaemonContext, snap, dir };
}

describe("snapshot verification", () => {
  it("accepts intact files and refuses a truncated, corrupted or missing one in one line naming it", async () => {
    const { home, cleanup } = makeTempHome();
    try {
      const { ctx, snap, dir } = await fixture(home, "s1");
      await verifySnapshot(ctx, snap);

      truncateSync(`${dir}/memory`, 1024 * 1024);
      await assert.rejects(verifySnapshot(ctx, snap), (err: Error) => {
        assert.match(err.message, /^snapshot s1 is damaged: its memory \(memory\) is 1\.0 MiB \(1048576 bytes\), 67108864 when taken$/);
        return true;
      });
      truncateSync(`${dir}/memory`, 64 * 1024 * 1024);
      await verifySnapshot(ctx, snap);

      // Same size, one byte changed: only the checksum can tell.
      const bytes = Buffer.alloc(8192, 3);
      bytes[100] = 4;
      writeFileSync(`${dir}/disk.qcow2`, bytes);
      await assert.rejects(verifySnapshot(ctx, snap), /^BangerError: snapshot s1 is damaged: its disk copy \(disk\.qcow2\) does not match the checksum recorded when it was taken$/);

      const { ctx: ctx2, snap: snap2, dir: dir2 } = await fixture(home, "s2");
      await verifySnapshot(ctx2, snap2);
      writeFileSync(`${dir2}/vmstate`, Buffer.alloc(4096, 8)); // rewritten after a successful check
      await assert.rejects(verifySnapshot(ctx2, snap2), /its device state \(vmstate\) does not match the checksum/);
      rmSync(`${dir2}/vmstate`);
      await assert.rejects(verifySnapshot(ctx2, snap2), /its device state \(vmstate\) is missing/);

      // A workspace slot copy (sparse, sized not hashed): a truncated one is refused in one line.
      const { ctx: ctx3, snap: snap3, dir: dir3 } = await fixture(home, "s3");
      writeFileSync(`${dir3}/workspace.raw`, "");
      truncateSync(`${dir3}/workspace.raw`, 16 * 1024 ** 3);
      const withSlot = { ...snap3, workspace: { slot: { file: "workspace.raw", bytes: 16 * 1024 ** 3, serial: "banger-workspace", mountedAt: "/workspace" } } };
      await verifySnapshot(ctx3, withSlot);
      truncateSync(`${dir3}/workspace.raw`, 1024 ** 3);
      await assert.rejects(verifySnapshot(ctx3, withSlot), (err: Error) => {
        assert.match(err.message, /^snapshot s3 is damaged: its workspace disk copy \(workspace\.raw\) is 1\.0 GiB \(1073741824 bytes\), 17179869184 when taken$/);
        return true;
      });
      rmSync(`${dir3}/workspace.raw`);
      await assert.rejects(verifySnapshot(ctx3, withSlot), /its workspace disk copy \(workspace\.raw\) is missing/);
    } finally {
      cleanup();
    }
  });

  it("refuses machine params beside fromSnapshot: the restored VM is the snapshot's machine", () => {
    assert.equal(restoreOnly({ name: "x", fromSnapshot: "s1" }, "s1"), "s1");
    assert.throws(() => restoreOnly({ image: "debian", memoryBytes: 1 }, "s1"), /image, memoryBytes cannot be set with fromSnapshot/);
    assert.throws(() => restoreOnly({}, "../x"), /invalid snapshot name/);
  });

  // The rows and files of snapshot rm, a VM's rm and the start-up reconcile: a real store and
  // real files; no VM runs (the VM rows stand for restored VMs' records).
  it("rm refuses while a VM uses it; forced, keeps the disk copy until that VM is gone; fork bases and stray dirs go", async () => {
    const { home, cleanup } = makeTempHome();
    const store = openStore(`${home}/banger.db`);
    try {
      const { ctx: base, snap } = await fixture(home, "s1");
      const ctx = { ...base, store, locks: new KeyedLock(), log: new Logger(`${home}/log`, false), standbys: new StandbyRestores() } as DaemonContext;
      const vmRow = (name: string, snapshot: string) =>
        store.insertVm({
          name,
          id: `id-${name}`,
          state: "running",
          image: "i",
          kernel: "k",
          vmm: "qemu",
          cpus: 1,
          memoryBytes: 64 * 1024 ** 2,
          diskBytes: 0,
          pid: null,
          ip: null,
          error: null,
          config: {},
          snapshot,
        });
      store.snapshots.insert(snap);
      vmRow("r1", "s1");
      await assert.rejects(removeSnapshot(ctx, "s1", {}), /^BangerError: snapshot s1 is in use by r1$/);
      const forced = await removeSnapshot(ctx, "s1", { force: true });
      assert.deepEqual([forced.removed, forced.diskKeptFor], ["s1", ["r1"]]);
      assert.equal(store.snapshots.get("s1"), undefined);
      const dir = snapshotDir(ctx.paths, "s1");
      assert.deepEqual([existsSync(`${dir}/vmstate`), existsSync(`${dir}/memory`), existsSync(`${dir}/disk.qcow2`)], [false, false, true], "the disk stays for r1's overlay");
      await reconcileSnapshots(ctx);
      assert.ok(existsSync(`${dir}/disk.qcow2`), "a daemon restart keeps it while r1 exists");
      store.deleteVm("r1");
      await releaseSnapshot(ctx, "s1");
      assert.ok(!existsSync(dir), "gone with its last VM");

      // A fork base goes with its last child; a kept snapshot does not; a stray directory goes at start.
      const { snap: forkBase } = await fixture(home, "dev.fork-1");
      const { snap: kept } = await fixture(home, "kept");
      for (const s of [forkBase, kept]) store.snapshots.insert({ ...s, internal: s === forkBase });
      vmRow("c1", "dev.fork-1");
      vmRow("c2", "dev.fork-1");
      store.deleteVm("c1");
      await releaseSnapshot(ctx, "dev.fork-1");
      assert.ok(store.snapshots.get("dev.fork-1"), "c2 still uses it");
      store.deleteVm("c2");
      await releaseSnapshot(ctx, "dev.fork-1");
      assert.equal(store.snapshots.get("dev.fork-1"), undefined);
      assert.ok(!existsSync(snapshotDir(ctx.paths, "dev.fork-1")));
      await releaseSnapshot(ctx, "kept");
      assert.ok(store.snapshots.get("kept") && existsSync(snapshotDir(ctx.paths, "kept")), "a user's snapshot stays with no VM");
      await fixture(home, "stray"); // files without a row: a daemon killed between the rename and the insert
      assert.deepEqual(await reconcileSnapshots(ctx), { removed: ["stray"] });
      assert.ok(!existsSync(snapshotDir(ctx.paths, "stray")) && existsSync(snapshotDir(ctx.paths, "kept")));
    } finally {
      store.close();
      cleanup();
    }
  });
});
