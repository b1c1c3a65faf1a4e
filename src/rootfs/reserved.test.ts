// mkfs.ext4 makes /lost+found itself. An image entry of another type there either fails mkfs
// with its own multi-line output (files, symlinks, hardlinks) or, for a fifo or device that
// debugfs mknod links in, silently gives the root two "lost+found" entries (e2fsck: errors).
// Either way the answer is one clear line, and nothing is left.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, describe, it } from "node:test";
import { execFileSync } from "node:child_process";
import { BangerError } from "../util/errors.ts";
import { buildExt4, extractRootfsTar, flattenLayers, type Tree } from "./index.ts";
import { buildTar, type RawTarEntry } from "../../test/kits/tar.ts";

const root = mkdtempSync(join(tmpdir(), "bgr-reserved-"));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

const PIPELINES: Record<string, (tar: Buffer, staging: string) => Promise<Tree>> = {
  "OCI layer": (tar, staging) => flattenLayers([Readable.from([tar])], staging),
  "docker export": (tar, staging) => extractRootfsTar(Readable.from([tar]), staging),
};

const AT_LOST_FOUND: Record<string, RawTarEntry[]> = {
  fifo: [{ name: "lost+found", type: "6" }],
  "character device": [{ name: "lost+found", type: "3", devmajor: 1, devminor: 3 }],
  file: [{ name: "lost+found", type: "0", data: Buffer.from("x") }],
  symlink: [{ name: "lost+found", type: "2", linkname: "etc" }],
  hardlink: [
    { name: "f", type: "0" },
    { name: "lost+found", type: "1", linkname: "f" },
  ],
};

describe("an image entry at /lost+found that is not a directory", () => {
  for (const [pipeline, read] of Object.entries(PIPELINES)) {
    for (const [type, entries] of Object.entries(AT_LOST_FOUND)) {
      it(`${pipeline}: a ${type} is refused with one line, nothing left`, async () => {
        const dir = join(root, `case-${n++}`);
        mkdirSync(join(dir, "out"), { recursive: true });
        const tree = await read(buildTar(entries), join(dir, "staging"));
        const image = join(dir, "out", "rootfs.ext4");
        const err = await buildExt4(tree, image).then(
          () => `built an image; e2fsck says: ${fsck(image)}`,
          (e: unknown) => e,
        );
        assert.ok(err instanceof BangerError, String(err));
        assert.match(err.message, /at \/lost\+found, where mkfs\.ext4 makes its own directory/);
        assert.doesNotMatch(err.message, /[\x00-\x1f\x7f-\x9f]/);
        assert.deepEqual(readdirSync(join(dir, "out")), [], "no image or work files left");
      });
    }
  }
  it("a directory there is merged with mkfs's own", async () => {
    const dir = join(root, `case-${n++}`);
    mkdirSync(join(dir, "out"), { recursive: true });
    const tree = await PIPELINES["docker export"]!(buildTar([{ name: "lost+found/", type: "5", mode: 0o700 }]), join(dir, "staging"));
    await buildExt4(tree, join(dir, "out", "rootfs.ext4"));
    assert.match(fsck(join(dir, "out", "rootfs.ext4")), /^clean/);
  });
});

function fsck(image: string): string {
  try {
    execFileSync("e2fsck", ["-fn", image], { stdio: "pipe" });
    return "clean";
  } catch (err) {
    return String((err as { stdout?: Buffer }).stdout ?? err)
      .split("\n")
      .slice(0, 6)
      .join(" / ");
  }
}
