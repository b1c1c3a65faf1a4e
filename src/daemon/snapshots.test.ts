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
import { verifySnapshot } from "./snapshots.ts";
import { restoreOnly } from "./restore.ts";

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
    } finally {
      cleanup();
    }
  });

  it("refuses machine params beside fromSnapshot: the restored VM is the snapshot's machine", () => {
    assert.equal(restoreOnly({ name: "x", fromSnapshot: "s1" }, "s1"), "s1");
    assert.throws(() => restoreOnly({ image: "debian", memoryBytes: 1 }, "s1"), /image, memoryBytes cannot be set with fromSnapshot/);
    assert.throws(() => restoreOnly({}, "../x"), /invalid snapshot name/);
  });
});
