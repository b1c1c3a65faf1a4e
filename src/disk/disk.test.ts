import assert from "node:assert/strict";
import { mkdir, readdir, writeFile } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { makeTempHome } from "../../test/helpers.ts";
import { BangerError, ErrorCode } from "../util/errors.ts";
import { run, runChecked } from "../util/exec.ts";
import { allocatedBytes, chooseCloneStrategy, cloneDisk, detectCloneStrategies } from "./index.ts";

const GiB = 1024 * 1024 * 1024;
const MiB = 1024 * 1024;

let home: { home: string; cleanup: () => void };
let big = ""; // 2 GiB ext4 image holding ~8 MiB of data
let small = ""; // 64 MiB ext4 image

async function makeExt4(path: string, size: string, dataMiB: number): Promise<void> {
  const tree = `${path}.tree`;
  await mkdir(tree);
  await writeFile(join(tree, "data.bin"), randomBytes(dataMiB * MiB));
  await runChecked(["mkfs.ext4", "-q", "-F", "-d", tree, path, size]);
}

async function blockCount(image: string): Promise<number> {
  const out = (await runChecked(["dumpe2fs", "-h", image])).stdout;
  return Number(out.match(/^Block count:\s+(\d+)/m)?.[1]);
}

async function leftovers(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((n) => n.includes(".partial-"));
}

before(async () => {
  home = makeTempHome();
  big = join(home.home, "big.ext4");
  small = join(home.home, "small.ext4");
  await makeExt4(big, "2G", 8);
  await makeExt4(small, "64M", 1);
});
after(() => home?.cleanup());

describe("clone strategies", () => {
  test("detection reports every strategy with a reason, and sparse-copy always works", async () => {
    const reports = await detectCloneStrategies(home.home);
    assert.deepEqual(
      reports.map((r) => r.strategy),
      ["qcow2", "reflink", "dm-snapshot", "sparse-copy"],
    );
    for (const r of reports) assert.ok(r.reason.length > 0);
    assert.equal(reports.find((r) => r.strategy === "sparse-copy")?.available, true);
  });

  test("qemu gets a qcow2 overlay; firecracker a raw clone, with the reason", async () => {
    assert.equal((await chooseCloneStrategy("qemu", home.home)).strategy, "qcow2");
    const fc = await chooseCloneStrategy("firecracker", home.home);
    assert.ok(fc.strategy === "reflink" || fc.strategy === "sparse-copy");
    if (fc.strategy === "sparse-copy") assert.match(fc.reason, /reflink: /, "says why reflink was not used");
  });
});

describe("cloneDisk", () => {
  test("a qcow2 clone of a 2 GiB image writes almost nothing and points at the image", async () => {
    const dest = join(home.home, "vm1.qcow2");
    const clone = await cloneDisk(big, dest, "qcow2");
    assert.equal(clone.format, "qcow2");
    assert.equal(clone.sizeBytes, 2 * GiB);
    assert.ok((await allocatedBytes(dest)) < 2 * MiB, `overlay uses ${await allocatedBytes(dest)} bytes`);
    const info = JSON.parse((await runChecked(["qemu-img", "info", "--output=json", dest])).stdout);
    assert.equal(info["backing-filename"], big);
    assert.equal(info["virtual-size"], 2 * GiB);
  });

  test("a grown qcow2 clone has the new size and says the filesystem must grow in the guest", async () => {
    const clone = await cloneDisk(small, join(home.home, "grown.qcow2"), "qcow2", { sizeBytes: 128 * MiB });
    const info = JSON.parse((await runChecked(["qemu-img", "info", "--output=json", clone.path])).stdout);
    assert.equal(info["virtual-size"], 128 * MiB);
    assert.equal(clone.filesystemNeedsGrow, true);
  });

  test("a sparse copy keeps the holes and the contents", async () => {
    const dest = join(home.home, "vm2.ext4");
    const clone = await cloneDisk(big, dest, "sparse-copy");
    assert.equal(clone.format, "raw");
    const used = await allocatedBytes(dest);
    assert.ok(used <= (await allocatedBytes(big)) + MiB, `copy uses ${used} bytes`);
    assert.ok(used < 256 * MiB, "holes were not filled");
    assert.equal((await run(["cmp", "-s", big, dest])).code, 0, "same bytes");
  });

  test("a raw clone grows, filesystem included", async () => {
    const before = await blockCount(small);
    const clone = await cloneDisk(small, join(home.home, "grown.ext4"), "sparse-copy", { sizeBytes: 128 * MiB });
    assert.equal(clone.filesystemNeedsGrow, false);
    const after = await blockCount(clone.path);
    assert.ok(after > before, `block count ${before} -> ${after}`);
    assert.equal(after * 1024, 128 * MiB, "mkfs picked 1 KiB blocks for a 64 MiB image; the fs now spans the disk");
    assert.equal((await run(["e2fsck", "-fn", clone.path])).code, 0, "the grown filesystem is clean");
  });

  test("reflink clones when the filesystem supports it", async (t) => {
    const report = (await detectCloneStrategies(home.home)).find((r) => r.strategy === "reflink");
    if (!report?.available) return t.skip(report?.reason ?? "no reflink");
    const dest = join(home.home, "vm3.ext4");
    await cloneDisk(big, dest, "reflink");
    assert.equal((await run(["cmp", "-s", big, dest])).code, 0);
  });

  test("dm-snapshot is detected, not used", async () => {
    const report = (await detectCloneStrategies(home.home)).find((r) => r.strategy === "dm-snapshot");
    assert.ok(report);
    await assert.rejects(cloneDisk(small, join(home.home, "dm"), "dm-snapshot"), (e: unknown) => e instanceof BangerError && e.code === ErrorCode.Unavailable);
  });

  test("bad requests fail clearly and leave nothing behind", async () => {
    const dest = join(home.home, "bad.ext4");
    // Sizes as the user reads and types them, and the flag that sets them.
    await assert.rejects(
      cloneDisk(small, dest, "sparse-copy", { sizeBytes: 32 * MiB }),
      (e: unknown) => e instanceof BangerError && /^disk size 32 MiB is smaller than the image \(64 MiB\)$/.test(e.message) && /--disk-size 64M or more/.test(e.hint ?? ""),
    );
    await assert.rejects(cloneDisk(join(home.home, "nope"), dest, "qcow2"), /not found/);
    await assert.rejects(cloneDisk(small, join(home.home, "vm1.qcow2"), "qcow2"), /already exists/);
    // Growing a raw file that is not ext4 fails in e2fsck/resize2fs: no partial clone stays.
    const junk = join(home.home, "junk.raw");
    await writeFile(junk, Buffer.alloc(MiB));
    await assert.rejects(cloneDisk(junk, dest, "sparse-copy", { sizeBytes: 2 * MiB }), BangerError);
    assert.deepEqual(await leftovers(home.home), []);
    assert.deepEqual(
      (await readdir(home.home)).filter((n) => n === "bad.ext4"),
      [],
    );
  });
});
