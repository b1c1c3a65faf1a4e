// The metadata a tar reader holds in memory for a tree (member names, link targets, xattr
// names and values, kept or dropped) is bounded: a small compressed layer of long names or
// big xattr records would otherwise decode to gigabytes of them in the daemon's heap.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, describe, it } from "node:test";
import { BangerError } from "../util/errors.ts";
import { MAX_TREE_METADATA_BYTES } from "../util/paths.ts";
import { MAX_SCRIPT_BYTES, MAX_XATTR_VALUES } from "./debugfs.ts";
import { buildExt4, extractRootfsTar, flattenLayers, type Tree } from "./index.ts";
import { buildTar, type RawTarEntry } from "../../test/kits/tar.ts";

const root = mkdtempSync(join(tmpdir(), "bgr-metadata-"));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

const CAP = 1024 * 1024;
const PIPELINES: Record<string, (tar: Buffer, staging: string) => Promise<Tree>> = {
  "OCI layer": (tar, staging) => flattenLayers([Readable.from([tar])], staging, { maxMetadataBytes: CAP }),
  "docker export": (tar, staging) => extractRootfsTar(Readable.from([tar]), staging, { maxMetadataBytes: CAP }),
};

const big = (bytes: number) => Buffer.alloc(bytes, "v");
/** Each shape with about `count` x 32 KiB of metadata. */
const SHAPES: Record<string, (count: number) => RawTarEntry[]> = {
  "xattrs in a dropped namespace": (count) => [...Array(count).keys()].map((i) => ({ name: `f${i}`, type: "0" as const, pax: { "SCHILY.xattr.trusted.x": big(32 * 1024) } })),
  "kept xattrs": (count) => [...Array(count).keys()].map((i) => ({ name: `f${i}`, type: "0" as const, pax: { "SCHILY.xattr.user.x": big(32 * 1024) } })),
  "long names": (count) => [
    { name: "d/", type: "5" as const, pax: { path: Buffer.from(`${"d".repeat(250)}/`) } },
    ...[...Array(count * 64).keys()].map((i) => ({ name: "p", type: "0" as const, pax: { path: Buffer.from(`${"d".repeat(250)}/${String(i).padStart(250, "n")}`) } })),
  ],
  "long symlink targets": (count) => [...Array(count * 8).keys()].map((i) => ({ name: `l${i}`, type: "2" as const, linkname: "x", pax: { linkpath: Buffer.from("t".repeat(4000)) } })),
};

describe("tar readers bound the metadata they hold for a tree", () => {
  it(`by default at ${MAX_TREE_METADATA_BYTES} bytes`, () => assert.equal(MAX_TREE_METADATA_BYTES, 256 * 1024 * 1024));
  for (const [pipeline, read] of Object.entries(PIPELINES)) {
    for (const [shape, entries] of Object.entries(SHAPES)) {
      it(`${pipeline}: ${shape} past the cap are refused with one line, nothing left`, async () => {
        const staging = join(root, `case-${n++}`);
        await assert.rejects(read(buildTar(entries(40)), staging), (err: unknown) => {
          assert.ok(err instanceof BangerError, String(err));
          assert.match(err.message, new RegExp(`names, link targets and xattrs .*more than ${CAP} bytes`));
          assert.doesNotMatch(err.message, /[\x00-\x1f\x7f-\x9f]/);
          return true;
        });
        assert.equal(existsSync(staging), false, "staging removed");
      });
      it(`${pipeline}: ${shape} under the cap are read`, async () => {
        const tree = await read(buildTar(entries(20)), join(root, `case-${n++}`));
        assert.ok(tree.entries.size >= 20);
      });
    }
  }
});

describe("the debugfs script is bounded and written to disk as it is made", () => {
  // Every ea_set line repeats its path: 32 one-byte xattrs on a 4 KiB path cost ~130 KiB of
  // script for ~4 KiB of metadata, so the metadata cap alone would let a layer ask for
  // gigabytes of script (it was built in memory).
  const deep = Array(15).fill("d".repeat(250)).join("/");
  const xattrs = Object.fromEntries([...Array(32).keys()].map((i) => [`SCHILY.xattr.user.${i}`, Buffer.from("v")]));
  const entries = (count: number): RawTarEntry[] =>
    [...Array(count).keys()].map((i) => ({ name: "p", type: "0" as const, pax: { path: Buffer.from(`${deep}/${String(i).padStart(200, "f")}`), ...xattrs } }));

  it("a tree whose script would pass the cap is refused with one line, nothing left", async () => {
    const dir = join(root, `case-${n++}`);
    mkdirSync(join(dir, "out"), { recursive: true });
    const tree = await extractRootfsTar(Readable.from([buildTar(entries(40))]), join(dir, "staging"));
    await assert.rejects(buildExt4(tree, join(dir, "out", "rootfs.ext4"), { maxScriptBytes: CAP }), (err: unknown) => {
      assert.ok(err instanceof BangerError, String(err));
      assert.match(err.message, new RegExp(`debugfs script would pass ${CAP} bytes`));
      return true;
    });
    assert.deepEqual(readdirSync(join(dir, "out")), [], "no image or work files left");
  });

  it(`by default at ${MAX_SCRIPT_BYTES} bytes: the same tree builds`, async () => {
    assert.equal(MAX_SCRIPT_BYTES, 2 * 1024 ** 3);
    const dir = join(root, `case-${n++}`);
    mkdirSync(join(dir, "out"), { recursive: true });
    const tree = await extractRootfsTar(Readable.from([buildTar(entries(40))]), join(dir, "staging"));
    await buildExt4(tree, join(dir, "out", "rootfs.ext4"));
    assert.deepEqual(readdirSync(join(dir, "out")), ["rootfs.ext4"]);
  });
});

describe("xattr values become one work file per distinct value, and not too many", () => {
  const tar = (values: (i: number) => string) => buildTar([...Array(40).keys()].map((i) => ({ name: `f${i}`, type: "0" as const, pax: { "SCHILY.xattr.security.selinux": Buffer.from(values(i)) } })));

  it("many entries sharing labels (an SELinux image) build, each keeping its value", async () => {
    const dir = join(root, `case-${n++}`);
    mkdirSync(join(dir, "out"), { recursive: true });
    const tree = await extractRootfsTar(Readable.from([tar((i) => `system_u:object_r:type${i % 3}_t:s0`)]), join(dir, "staging"));
    const image = join(dir, "out", "rootfs.ext4");
    await buildExt4(tree, image, { maxXattrValues: 3 });
    for (const i of [0, 1, 2, 39]) {
      const out = join(dir, `v${i}`);
      execFileSync("debugfs", ["-R", `ea_get -f ${out} /f${i} security.selinux`, image], { stdio: "ignore" });
      assert.equal(readFileSync(out, "utf8"), `system_u:object_r:type${i % 3}_t:s0`);
    }
  });

  it("more distinct values than the cap are refused with one line, nothing left", async () => {
    assert.equal(MAX_XATTR_VALUES, 100_000);
    const dir = join(root, `case-${n++}`);
    mkdirSync(join(dir, "out"), { recursive: true });
    const tree = await extractRootfsTar(Readable.from([tar((i) => `v${i}`)]), join(dir, "staging"));
    await assert.rejects(buildExt4(tree, join(dir, "out", "rootfs.ext4"), { maxXattrValues: 39 }), (err: unknown) => {
      assert.ok(err instanceof BangerError, String(err));
      assert.match(err.message, /more than 39 distinct xattr values/);
      return true;
    });
    assert.deepEqual(readdirSync(join(dir, "out")), [], "no image or work files left");
  });
});
