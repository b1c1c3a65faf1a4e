import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Readable } from "node:stream";
import { makeTempHome } from "../../test/helpers.ts";
import { CAP_ALL_EP, type TarEntry, describeTree, makeTar } from "../../test/registry/tarball.ts";
import { BangerError, ErrorCode } from "../util/errors.ts";
import { flattenLayers } from "./flatten.ts";

const T = 1_700_000_000;
let tmp: { home: string; cleanup: () => void };
let n = 0;
const staging = () => join(tmp.home, `staging-${n++}`);
const layers = async (...ls: TarEntry[][]) => Promise.all(ls.map(async (l) => Readable.from([await makeTar(l)])));

before(() => {
  tmp = makeTempHome();
});
after(() => tmp.cleanup());

describe("flattenLayers", () => {
  it("applies layers in order: whiteouts, opaque dirs, hardlinks, specials, owners, modes, xattrs", async () => {
    const base: TarEntry[] = [
      { name: "./", type: "directory" },
      { name: "bin/", type: "directory" },
      { name: "bin/busybox", content: "BUSYBOX", mode: 0o755 },
      { name: "bin/sh", type: "symlink", linkname: "busybox" },
      { name: "bin/su", content: "SU", mode: 0o4755 },
      { name: "usr/bin/ping", content: "PING", mode: 0o755, xattrs: { "security.capability": CAP_ALL_EP, "trusted.overlay.x": Buffer.from("y") } },
      { name: "link1", type: "symlink", linkname: "link2" },
      { name: "link2", type: "symlink", linkname: "/bin/sh" },
      { name: "home/user/", type: "directory", uid: 1000, gid: 1000, mode: 0o750 },
      { name: "home/user/notes", content: "mine", uid: 1000, gid: 1000, mode: 0o640 },
      { name: "tmp/", type: "directory", mode: 0o1777 },
      { name: "srv/", type: "directory", mode: 0o2775, gid: 50 },
      { name: "dev/null", type: "character-device", devmajor: 1, devminor: 3, mode: 0o666 },
      { name: "dev/loop0", type: "block-device", devmajor: 7, devminor: 0, mode: 0o660, gid: 6 },
      { name: "run/ctl", type: "fifo", mode: 0o600 },
      { name: "hard/a", content: "shared", mode: 0o600 },
      { name: "hard/b", type: "link", linkname: "hard/a" },
      { name: "gone.txt", content: "bye" },
      { name: "gonedir/x", content: "x" },
      { name: "opq/old", content: "old" },
      { name: "opq/sub/old2", content: "old2" },
      { name: "etc/passwd", content: "root:x:0:0::/root:/bin/sh\n", mode: 0o644 },
      { name: "var/data/", type: "directory", mode: 0o755 },
    ];
    const top: TarEntry[] = [
      { name: ".wh.gone.txt" },
      { name: ".wh.gonedir" },
      { name: "opq/", type: "directory", mode: 0o700 },
      { name: "opq/new", content: "new" },
      { name: "opq/.wh..wh..opq" },
      { name: "hard/c", type: "link", linkname: "hard/b" },
      { name: "etc/passwd", content: "root:x:0:0::/root:/bin/ash\n", mode: 0o600 },
      { name: "var/data/", type: "directory", mode: 0o700, uid: 5, gid: 5 },
    ];
    const dir = staging();
    const tree = await flattenLayers(await layers(base, top), dir);
    assert.equal(tree.dir, dir);
    const hex = CAP_ALL_EP.toString("hex");
    assert.deepEqual(describeTree(tree), {
      bin: "dir 0:0 0755",
      "bin/busybox": "file 0:0 0755",
      "bin/sh": "symlink 0:0 0644 -> busybox",
      "bin/su": "file 0:0 4755",
      usr: "dir 0:0 0755",
      "usr/bin": "dir 0:0 0755",
      "usr/bin/ping": `file 0:0 0755 xattrs security.capability=${hex}`,
      link1: "symlink 0:0 0644 -> link2",
      link2: "symlink 0:0 0644 -> /bin/sh",
      home: "dir 0:0 0755",
      "home/user": "dir 1000:1000 0750",
      "home/user/notes": "file 1000:1000 0640",
      tmp: "dir 0:0 1777",
      srv: "dir 0:50 2775",
      dev: "dir 0:0 0755",
      "dev/null": "chardev 0:0 0666 dev 1:3",
      "dev/loop0": "blockdev 0:6 0660 dev 7:0",
      run: "dir 0:0 0755",
      "run/ctl": "fifo 0:0 0600 dev 0:0",
      hard: "dir 0:0 0755",
      "hard/a": "file 0:0 0600",
      "hard/b": "hardlink 0:0 0600 -> hard/a",
      opq: "dir 0:0 0700",
      etc: "dir 0:0 0755",
      "etc/passwd": "file 0:0 0600",
      var: "dir 0:0 0755",
      "var/data": "dir 5:5 0700",
      "hard/c": "hardlink 0:0 0600 -> hard/a",
      "opq/new": "file 0:0 0644",
    });
    // The staging dir holds the bytes; specials have no file; hardlinks share one inode.
    assert.equal(readFileSync(join(dir, "etc/passwd"), "utf8"), "root:x:0:0::/root:/bin/ash\n");
    assert.equal(readlinkSync(join(dir, "link2")), "/bin/sh");
    assert.equal(statSync(join(dir, "hard/c")).ino, statSync(join(dir, "hard/a")).ino);
    assert.equal(existsSync(join(dir, "dev/null")), false);
    assert.equal(existsSync(join(dir, "gone.txt")), false);
    assert.deepEqual(readdirSync(join(dir, "opq")), ["new"]);
    assert.equal(tree.entries.get("bin/su")!.mtime, T);
  });

  it("keeps an opaque dir's same-layer entries whatever their order, and clears merged subdirs", async () => {
    const tree = await flattenLayers(
      await layers([{ name: "d/lower" }, { name: "d/sub/lower" }], [{ name: "d/early" }, { name: "d/sub/", type: "directory" }, { name: "d/.wh..wh..opq" }, { name: "d/late" }]),
      staging(),
    );
    assert.deepEqual([...tree.entries.keys()].sort(), ["d", "d/early", "d/late", "d/sub"]);
  });

  it("keeps a hardlink group alive when its first name is whited out or replaced", async () => {
    const dir = staging();
    const tree = await flattenLayers(
      await layers(
        [
          { name: "a", content: "data", mode: 0o751, uid: 3 },
          { name: "b", type: "link", linkname: "a" },
          { name: "c", type: "link", linkname: "a" },
        ],
        [{ name: ".wh.a" }],
      ),
      dir,
    );
    assert.deepEqual(describeTree(tree), { b: "file 3:0 0751", c: "hardlink 3:0 0751 -> b" });
    assert.equal(readFileSync(join(dir, "c"), "utf8"), "data");
  });

  it("opens layers lazily, in order", async () => {
    const opened: number[] = [];
    const src = (i: number, e: TarEntry[]) => async () => {
      opened.push(i);
      return Readable.from([await makeTar(e)]);
    };
    const tree = await flattenLayers([src(0, [{ name: "f", content: "1" }]), src(1, [{ name: "f", content: "2", mode: 0o600 }])], staging());
    assert.deepEqual(opened, [0, 1]);
    assert.equal(readFileSync(join(tree.dir, "f"), "utf8"), "2");
  });

  const hostile: Array<[string, TarEntry[][], RegExp]> = [
    ["dot-dot traversal", [[{ name: "a/../../escape", content: "x" }]], /"a\/\.\.\/\.\.\/escape" has a "\.\." component/],
    ["absolute path", [[{ name: "/etc/evil", content: "x" }]], /path "\/etc\/evil" is absolute/],
    ["write through an absolute symlink parent", [[{ name: "etc", type: "symlink", linkname: "/etc" }], [{ name: "etc/evil", content: "x" }]], /goes through the symlink "etc"/],
    [
      "write through a relative symlink parent",
      [
        [
          { name: "up", type: "symlink", linkname: "../.." },
          { name: "up/evil", content: "x" },
        ],
      ],
      /goes through the symlink "up"/,
    ],
    ["hardlink out of the tree", [[{ name: "h", type: "link", linkname: "../../etc/shadow" }]], /hardlink target "\.\.\/\.\.\/etc\/shadow" has a "\.\." component/],
    ["hardlink to nothing", [[{ name: "h", type: "link", linkname: "missing" }]], /points at "missing", which does not exist/],
    [
      "file as a parent dir",
      [
        [
          { name: "f", content: "x" },
          { name: "f/g", content: "y" },
        ],
      ],
      /which is a file, not a directory/,
    ],
  ];
  for (const [what, ls, message] of hostile) {
    it(`rejects ${what} and leaves nothing behind`, async () => {
      const dir = staging();
      const outside = join(tmp.home, "outside");
      mkdirSync(outside, { recursive: true });
      await assert.rejects(flattenLayers(await layers(...ls), dir), (err: unknown) => {
        assert.ok(err instanceof BangerError);
        assert.equal(err.code, ErrorCode.Integrity);
        assert.match(err.message, message);
        return true;
      });
      assert.equal(existsSync(dir), false);
      assert.deepEqual(readdirSync(outside), []);
    });
  }

  it("reports a corrupt tar clearly and removes the staging dir", async () => {
    const dir = staging();
    const garbage = Buffer.alloc(1024, 0x41);
    await assert.rejects(flattenLayers([Readable.from([garbage])], dir), /layer 1: not a valid tar/);
    assert.equal(existsSync(dir), false);
  });

  it("stops on abort and removes the staging dir", async () => {
    const dir = staging();
    const ctl = new AbortController();
    ctl.abort();
    await assert.rejects(flattenLayers(await layers([{ name: "f" }]), dir, { signal: ctl.signal }), (err: unknown) => err instanceof BangerError && err.code === ErrorCode.Cancelled);
    assert.equal(existsSync(dir), false);
  });

  it("refuses a non-empty staging dir without touching it", async () => {
    const dir = staging();
    mkdirSync(dir);
    writeFileSync(join(dir, "keep"), "k");
    await assert.rejects(flattenLayers([], dir), /not empty/);
    assert.ok(lstatSync(join(dir, "keep")).isFile());
  });
});
