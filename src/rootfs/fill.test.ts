// fillExt4: the workspace slot's filesystem, written into an existing file (the disk a VM
// already has attached), checked with debugfs as a user would: every entry owned by the
// guest user (root directory included), modes and mtimes as the tar said, no /lost+found, the file keeps its size and stays sparse, and a second fill replaces the
// first. Hostile tars are refused by the reader before anything is written.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, describe, it } from "node:test";
import { debugfs, statInode } from "../../test/kits/ext4.ts";
import { buildTar, type RawTarEntry } from "../../test/kits/tar.ts";
import { extractRootfsTar, fillExt4 } from "./index.ts";

const root = mkdtempSync(join(tmpdir(), "bgr-fill-"));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const SLOT = 256 * 1024 * 1024;
const MTIME = 1_600_000_000;

async function fill(entries: RawTarEntry[], image: string, owner = { uid: 1000, gid: 1001 }): Promise<void> {
  const work = join(root, `work-${n++}`);
  const tree = await extractRootfsTar(Readable.from([buildTar(entries)]), join(work, "tree"));
  try {
    await fillExt4(tree, image, { owner, label: "workspace", workDir: work });
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

function slot(): string {
  const image = join(root, `slot-${n++}.img`);
  writeFileSync(image, "");
  truncateSync(image, SLOT);
  return image;
}

describe("fillExt4 (the workspace slot)", () => {
  it("writes the tree owned by the guest user, with the tar's modes and mtimes, and no lost+found", async () => {
    const image = slot();
    await fill(
      [
        { name: "./", type: "5", mode: 0o755, mtime: MTIME },
        { name: "src/", type: "5", mode: 0o750, mtime: MTIME },
        { name: "src/run.sh", type: "0", mode: 0o755, mtime: MTIME, data: Buffer.from("#!/bin/sh\n") },
        { name: "README.md", type: "0", mode: 0o644, mtime: MTIME, data: Buffer.from("hello\n") },
        { name: "link", type: "2", mode: 0o777, mtime: MTIME, linkname: "README.md" },
      ],
      image,
    );
    assert.equal(statSync(image).size, SLOT, "the slot keeps its size");
    assert.ok(statSync(image).blocks * 512 < 64 * 1024 * 1024, "and stays sparse");
    for (const [path, type, mode] of [
      ["/", "directory", 0o755],
      ["/src", "directory", 0o750],
      ["/src/run.sh", "regular", 0o755],
      ["/README.md", "regular", 0o644],
      ["/link", "symlink", 0o777],
    ] as const) {
      const st = statInode(image, path);
      assert.equal(st.type, type, path);
      assert.equal(st.mode & 0o7777, mode, path);
      assert.deepEqual([st.uid, st.gid], [1000, 1001], `${path} is the guest user's`);
      if (path !== "/") assert.equal(st.mtime, MTIME, path);
    }
    assert.equal(statInode(image, "/link").linkTarget, "README.md");
    assert.equal(debugfs(image, "cat /README.md"), "hello\n");
    assert.doesNotMatch(debugfs(image, "ls -l /"), /lost\+found/);
  });

  it("a second fill replaces the first", async () => {
    const image = slot();
    await fill([{ name: "old.txt", type: "0", data: Buffer.from("old\n") }], image);
    await fill([{ name: "new.txt", type: "0", data: Buffer.from("new\n") }], image, { uid: 0, gid: 0 });
    const ls = debugfs(image, "ls /");
    assert.match(ls, /new\.txt/);
    assert.doesNotMatch(ls, /old\.txt/);
    assert.equal(statInode(image, "/new.txt").uid, 0);
  });

  it("refuses content that does not fit, and leaves the slot's size alone", async () => {
    const image = join(root, "small.img");
    writeFileSync(image, "");
    truncateSync(image, 8 * 1024 * 1024);
    await assert.rejects(fill([{ name: "big.bin", type: "0", data: Buffer.alloc(16 * 1024 * 1024) }], image), /does not fit in the 8.0 MiB disk/);
    assert.equal(statSync(image).size, 8 * 1024 * 1024);
  });

  it("hostile member names never reach mkfs or debugfs: the reader refuses them", async () => {
    for (const entries of [
      [{ name: "../escape", type: "0", data: Buffer.from("x") }],
      [
        { name: "a", type: "2", linkname: "/etc" },
        { name: "a/passwd", type: "0", data: Buffer.from("x") },
      ],
      [{ name: 'q"\nrm -rf /', type: "0", data: Buffer.from("x") }],
    ] as RawTarEntry[][]) {
      await assert.rejects(fill(entries, slot()), (err: Error) => err.message.split("\n").length === 1);
    }
  });
});
