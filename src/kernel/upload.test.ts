// The two ends of a kernel import upload: what the CLI sends of a directory, and what the
// daemon stages (regular files and directories only, in a directory it owns).
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, describe, it } from "node:test";
import tar from "tar-stream";
import { BangerError } from "../util/errors.ts";
import { openKernelSource, receiveKernelUpload } from "./index.ts";

const root = mkdtempSync(join(tmpdir(), "bgr-kupload-"));
after(() => rmSync(root, { recursive: true, force: true }));

function listFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath ?? e.path, e.name).slice(dir.length + 1))
    .sort();
}

function tarOf(members: { name: string; type?: tar.Header["type"]; linkname?: string; body?: string }[]): Readable {
  const pack = tar.pack();
  for (const m of members)
    pack.entry({ name: m.name, type: m.type ?? "file", linkname: m.linkname, mode: 0o644, ...(m.type === "character-device" ? { devmajor: 1, devminor: 3 } : {}) }, m.body ?? "");
  pack.finalize();
  return Readable.from(pack as AsyncIterable<Buffer>);
}

describe("kernel upload", () => {
  it("the CLI sends vmlinux, initrd.img and module files, read through symlinks, and nothing else", async () => {
    const src = join(root, "src");
    mkdirSync(join(src, "modules", "kernel", "drivers"), { recursive: true });
    writeFileSync(join(root, "real-vmlinux"), "vmlinux bytes");
    symlinkSync(join(root, "real-vmlinux"), join(src, "vmlinux"));
    writeFileSync(join(src, "initrd.img"), "initrd bytes");
    writeFileSync(join(src, "modules", "modules.builtin"), "kernel/fs/ext4/ext4.ko\n");
    writeFileSync(join(src, "modules", "kernel", "drivers", "virtio_blk.ko.xz"), "ko");
    writeFileSync(join(src, "modules", "kernel", "notes.txt"), "not a module");
    writeFileSync(join(src, "private.key"), "not the kernel's");
    symlinkSync(join(src, "private.key"), join(src, "modules", "kernel", "linked.ko"));
    const source = await openKernelSource(src);
    assert.deepEqual([source.kind, source.label], ["dir", src]);
    const work = join(root, "work-ok");
    const staged = await receiveKernelUpload("dir", source.stream, work);
    assert.deepEqual(listFiles(staged), ["initrd.img", "modules/kernel/drivers/virtio_blk.ko.xz", "modules/modules.builtin", "vmlinux"]);
    assert.equal(readFileSync(join(staged, "vmlinux"), "utf8"), "vmlinux bytes");
  });

  it("the CLI sends a .deb as its bytes, and the daemon stages them", async () => {
    writeFileSync(join(root, "k.deb"), "!<arch>\npackage bytes");
    const source = await openKernelSource(join(root, "k.deb"));
    assert.equal(source.kind, "deb");
    const staged = await receiveKernelUpload("deb", source.stream, join(root, "work-deb"));
    assert.equal(readFileSync(staged, "utf8"), "!<arch>\npackage bytes");
  });

  for (const [what, member] of [
    ["a symlink to a host file", { name: "vmlinux", type: "symlink", linkname: "/etc/shadow" }],
    ["a symlink in the module tree", { name: "modules/x.ko", type: "symlink", linkname: "../../../../root/.ssh/id_ed25519" }],
    ["a hardlink", { name: "initrd.img", type: "link", linkname: "vmlinux" }],
    ["a device", { name: "modules/mem.ko", type: "character-device" }],
  ] as const) {
    it(`the daemon refuses a directory upload holding ${what}`, async () => {
      const base = member.name === "vmlinux" ? [] : [{ name: "vmlinux", body: "k" }];
      const input = tarOf([...base, { name: "modules/", type: "directory" }, member]);
      await assert.rejects(receiveKernelUpload("dir", input, join(root, `work-${member.name.replace(/\W/g, "")}`)), (e: unknown) => {
        assert.ok(e instanceof BangerError, String(e));
        assert.match(e.message, /^the kernel directory sent holds a (symlink|hardlink|chardev) /);
        return true;
      });
    });
  }

  it("the daemon refuses member paths that leave its directory", async () => {
    const input = tarOf([{ name: "../../etc/cron.d/x", body: "* * * * * root id" }]);
    const work = join(root, "work-escape");
    await assert.rejects(receiveKernelUpload("dir", input, work), BangerError);
    assert.equal(existsSync(join(root, "etc")), false, "nothing written outside");
    assert.deepEqual(existsSync(work) ? listFiles(work) : [], []);
  });
});
