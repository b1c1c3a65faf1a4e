import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { BangerError, ErrorCode } from "../util/errors.ts";
import { buildExt4, extractRootfsTar } from "./index.ts";
import { buildTar, type RawTarEntry } from "../../test/kits/tar.ts";

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), "bgr-extract-"));
});
after(() => rmSync(dir, { recursive: true, force: true }));

async function rejects(entries: RawTarEntry[] | Buffer, pattern: RegExp, opts: { maxEntries?: number; maxBytes?: number } = {}): Promise<void> {
  const staging = join(dir, "stage", "tree");
  const tar = Buffer.isBuffer(entries) ? entries : buildTar(entries);
  await assert.rejects(extractRootfsTar(Readable.from([tar]), staging, opts), (err: unknown) => {
    assert.ok(err instanceof BangerError, String(err));
    assert.match(err.message, pattern);
    return true;
  });
  assert.equal(existsSync(staging), false, "staging directory removed");
  // Nothing may have been written beside the staging directory either.
  assert.deepEqual(readdirSync(join(dir, "stage")), []);
}

describe("extractRootfsTar rejects hostile tars and leaves nothing", () => {
  it("a member escaping with ..", () =>
    rejects(
      [
        { name: "etc/", type: "5" },
        { name: "etc/../../evil", type: "0", data: Buffer.from("x") },
      ],
      /has a "\.\." component/,
    ));
  it("an absolute member", () => rejects([{ name: "/etc/passwd", type: "0", data: Buffer.from("x") }], /"\/etc\/passwd" is absolute/));
  it("a write through a symlinked parent (absolute target)", () =>
    rejects(
      [
        { name: "evil", type: "2", linkname: "/etc" },
        { name: "evil/passwd", type: "0", data: Buffer.from("pwned") },
      ],
      /lies under "evil", which is a symlink/,
    ));
  it("a write through a symlinked parent (relative escape)", () =>
    rejects(
      [
        { name: "up", type: "2", linkname: "../../.." },
        { name: "up/tmp/x", type: "0", data: Buffer.from("x") },
      ],
      /which is a symlink/,
    ));
  it("a symlink replacing a written file", () =>
    rejects(
      [
        { name: "a", type: "0", data: Buffer.from("x") },
        { name: "a", type: "2", linkname: "/etc/shadow" },
      ],
      /appears twice/,
    ));
  it("a hardlink to something not in the tar", () => rejects([{ name: "h", type: "1", linkname: "/etc/shadow" }], /hardlink target of "h": "\/etc\/shadow" is absolute/));
  it("a hardlink to a later member", () => rejects([{ name: "h", type: "1", linkname: "later" }], /not earlier in the tar/));
  it("too many entries", () =>
    rejects(
      [1, 2, 3, 4].map((i) => ({ name: `f${i}`, type: "0" as const })),
      /more than 3 entries/,
      { maxEntries: 3 },
    ));
  it("too many bytes", () => rejects([{ name: "big", type: "0", data: Buffer.alloc(4096) }], /more than 1000 B of files/, { maxBytes: 1000 }));
  it("a file that is not a tar", () => rejects(Buffer.alloc(1024, 0x41), /not a valid rootfs tar/));
  it("a truncated tar", () => rejects(buildTar([{ name: "f", type: "0", data: Buffer.alloc(5000, 1) }]).subarray(0, 2048), /not a valid rootfs tar|truncated|premature/i));
});

describe("extractRootfsTar", () => {
  it("stops when cancelled mid-stream and removes the staging directory", async () => {
    const staging = join(dir, "cancel");
    const tar = buildTar([
      { name: "a", type: "0", data: Buffer.alloc(8192, 1) },
      { name: "b", type: "0", data: Buffer.alloc(8192, 2) },
    ]);
    const ac = new AbortController();
    async function* slow() {
      yield tar.subarray(0, 4096);
      ac.abort();
      await new Promise((r) => setTimeout(r, 50));
      yield tar.subarray(4096);
    }
    await assert.rejects(extractRootfsTar(Readable.from(slow()), staging, { signal: ac.signal }), (e: unknown) => e instanceof BangerError && e.code === ErrorCode.Cancelled);
    assert.equal(existsSync(staging), false);
  });

  it("records metadata without writing devices, and never writes setuid bits on the host", async () => {
    const staging = join(dir, "ok");
    const tar = buildTar([
      { name: "dev/console", type: "3", devmajor: 5, devminor: 1, mode: 0o600 },
      { name: "bin/su", type: "0", mode: 0o4755, data: Buffer.from("x") },
    ]);
    const tree = await extractRootfsTar(Readable.from([tar]), staging);
    assert.deepEqual([...tree.entries.keys()].sort(), ["bin", "bin/su", "dev", "dev/console"]);
    assert.equal(tree.entries.get("dev/console")?.devMajor, 5);
    assert.equal(existsSync(join(staging, "dev/console")), false);
    assert.equal(tree.entries.get("bin/su")?.mode, 0o4755);
    assert.equal(statSync(join(staging, "bin/su")).mode & 0o7777, 0o600);
  });

  it("buildExt4 refuses a size that cannot hold the content and leaves no image", async () => {
    const staging = join(dir, "small");
    const tree = await extractRootfsTar(Readable.from([buildTar([{ name: "big", type: "0", data: Buffer.alloc(3 * 1024 * 1024, 7) }])]), staging);
    const out = join(dir, "small.ext4");
    await assert.rejects(buildExt4(tree, out, { sizeBytes: 4 * 1024 * 1024 }), /too small for the content/);
    assert.equal(existsSync(out), false);
    assert.deepEqual(
      readdirSync(dir).filter((n) => n.includes("small.ext4")),
      [],
    );
  });
});
