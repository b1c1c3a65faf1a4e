import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { makeBundle, makeKernelBundle } from "./index.ts";
import { buildTar, type RawTarEntry } from "../../test/kits/tar.ts";
import { debugfs, statInode } from "../../test/kits/ext4.ts";

const BUSYBOX = "/bin/busybox";
// VFS_CAP_REVISION_2 granting cap_setuid (bit 7) and cap_net_raw (bit 13): 0x80 proves binary safety.
const CAPABILITY = Buffer.from([0x01, 0, 0, 0x02, 0x80, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

function rootfsEntries(): RawTarEntry[] {
  const busybox = readFileSync(BUSYBOX);
  return [
    { name: "./", type: "5" },
    { name: "bin/", type: "5" },
    { name: "bin/busybox", type: "0", mode: 0o755, data: busybox },
    { name: "bin/sh", type: "2", linkname: "busybox", mode: 0o777 },
    { name: "bin/ping", type: "0", mode: 0o755, data: Buffer.from("#!/bin/sh\n"), pax: { "SCHILY.xattr.security.capability": CAPABILITY } },
    { name: "bin/su", type: "0", mode: 0o4755, data: Buffer.from("setuid\n") },
    { name: "usr/bin/", type: "5" }, // usr/ itself is implicit
    { name: "usr/bin/sh-chain", type: "2", linkname: "../../bin/sh" },
    { name: "usr/bin/abs-chain", type: "2", linkname: "/usr/bin/sh-chain" },
    { name: "usr/bin/wall", type: "0", mode: 0o2755, gid: 5, data: Buffer.from("setgid\n") },
    { name: "tmp/", type: "5", mode: 0o1777 },
    { name: "home/dev/", type: "5", mode: 0o750, uid: 1000, gid: 1000 },
    { name: "home/dev/notes with space.txt", type: "0", mode: 0o600, uid: 1000, gid: 1000, mtime: 1_600_000_000, data: Buffer.from("hello\n") },
    { name: "home/dev/hard", type: "1", linkname: "home/dev/notes with space.txt" },
    { name: "home/dev/.profile-link", type: "2", linkname: "notes with space.txt", uid: 1000, gid: 1000, mtime: 1_500_000_000 },
    { name: "dev/", type: "5" },
    { name: "dev/null", type: "3", mode: 0o666, devmajor: 1, devminor: 3 },
    { name: "dev/sda", type: "4", mode: 0o660, gid: 6, devmajor: 8, devminor: 0 },
    { name: "run/initctl", type: "6", mode: 0o600 },
    { name: 'run/odd dir/q"uote\\d !name', type: "6", mode: 0o640, uid: 1000 },
    { name: 'home/dev/say "hi" #1', type: "0", mode: 0o640, uid: 1000, gid: 1000, data: Buffer.from("hi\n") },
    { name: "sbin", type: "2", linkname: "usr/sbin" }, // merged /usr: the agent must land in usr/sbin
    { name: "usr/sbin/", type: "5" },
  ];
}

describe("makeBundle", () => {
  let dir: string;
  let image: string;
  let manifest: Record<string, unknown>;
  let result: Awaited<ReturnType<typeof makeBundle>>;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "bgr-rootfs-"));
    writeFileSync(join(dir, "rootfs.tar"), buildTar(rootfsEntries()));
    result = await makeBundle({
      rootfsTar: join(dir, "rootfs.tar"),
      name: "busybox-test",
      distro: "busybox",
      arch: "amd64",
      kernelRef: "debian-6.1-cloud",
      description: "test image",
      outDir: join(dir, "out"),
      agentPath: BUSYBOX, // any static file stands in for the agent here
    });
    const unpacked = join(dir, "unpacked");
    execFileSync("mkdir", ["-p", unpacked]);
    execFileSync("sh", ["-c", 'zstd -dc "$1" | tar -x -C "$2"', "sh", result.path, unpacked]);
    image = join(unpacked, "rootfs.ext4");
    manifest = JSON.parse(readFileSync(join(unpacked, "manifest.json"), "utf8"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("writes a bundle of exactly rootfs.ext4 and manifest.json, with its sha256 and size", () => {
    assert.deepEqual(readdirSync(join(dir, "out")), ["busybox-test.tar.zst"]);
    assert.equal(result.sizeBytes, statSync(result.path).size);
    const sha = execFileSync("sha256sum", [result.path], { encoding: "utf8" }).split(" ")[0];
    assert.equal(result.sha256, sha);
    const listing = execFileSync("sh", ["-c", 'zstd -dc "$1" | tar -tv', "sh", result.path], { encoding: "utf8" });
    assert.deepEqual(
      listing
        .trim()
        .split("\n")
        .map((l) => l.split(/\s+/).pop()),
      ["manifest.json", "rootfs.ext4"],
    );
    assert.match(listing, /root\/root|0\/0/);
    assert.equal(manifest.name, "busybox-test");
    assert.equal(manifest.kernel_ref, "debian-6.1-cloud");
    assert.equal(manifest.rootfs_size_bytes, statSync(image).size);
    assert.equal(manifest.rootfs_sha256, execFileSync("sha256sum", [image], { encoding: "utf8" }).split(" ")[0]);
  });

  it("produces a clean ext4 that e2fsck accepts", () => {
    execFileSync("e2fsck", ["-fn", image], { stdio: "pipe" });
  });

  it("keeps owners, modes and setuid/setgid/sticky bits", () => {
    const su = statInode(image, "/bin/su");
    assert.equal(su.type, "regular");
    assert.deepEqual([su.mode, su.uid, su.gid], [0o4755, 0, 0]);
    const wall = statInode(image, "/usr/bin/wall");
    assert.deepEqual([wall.mode, wall.gid], [0o2755, 5]);
    const tmp = statInode(image, "/tmp");
    assert.equal(tmp.type, "directory");
    assert.equal(tmp.mode, 0o1777);
    const home = statInode(image, "/home/dev");
    assert.deepEqual([home.mode, home.uid, home.gid], [0o750, 1000, 1000]);
    const notes = statInode(image, "/home/dev/notes with space.txt");
    assert.deepEqual([notes.mode, notes.uid, notes.gid, notes.mtime], [0o600, 1000, 1000, 1_600_000_000]);
    assert.equal(debugfs(image, 'cat "/home/dev/notes with space.txt"'), "hello\n");
    const quoted = statInode(image, '/home/dev/say ""hi"" #1');
    assert.deepEqual([quoted.mode, quoted.uid, quoted.gid], [0o640, 1000, 1000]);
    const link = statInode(image, "/home/dev/.profile-link");
    assert.deepEqual([link.type, link.uid, link.gid, link.mtime], ["symlink", 1000, 1000, 1_500_000_000]);
    const implicitUsr = statInode(image, "/usr");
    assert.deepEqual([implicitUsr.mode, implicitUsr.uid], [0o755, 0]);
    const root = statInode(image, "/");
    assert.deepEqual([root.mode, root.uid, root.gid], [0o755, 0, 0]);
  });

  it("keeps symlink targets, including chains and absolute targets", () => {
    const targets: Record<string, string> = { "/bin/sh": "busybox", "/usr/bin/sh-chain": "../../bin/sh", "/usr/bin/abs-chain": "/usr/bin/sh-chain", "/sbin": "usr/sbin" };
    for (const [path, target] of Object.entries(targets)) {
      const st = statInode(image, path);
      assert.equal(st.type, "symlink", path);
      assert.match(st.text, new RegExp(`Fast link dest: "${target.replace(/\./g, "\\.")}"`), path);
    }
  });

  it("keeps hardlinks as one inode", () => {
    const a = statInode(image, "/home/dev/notes with space.txt");
    assert.equal(a.links, 2);
    const ls = debugfs(image, "ls -l /home/dev");
    const inodes = ls
      .split("\n")
      .filter((l) => /notes with space|hard$/.test(l))
      .map((l) => l.trim().split(/\s+/)[0]);
    assert.equal(inodes.length, 2);
    assert.equal(inodes[0], inodes[1]);
  });

  it("creates devices and fifos with their numbers and modes", () => {
    const nul = statInode(image, "/dev/null");
    assert.equal(nul.type, "character");
    assert.equal(nul.mode, 0o666);
    assert.match(nul.text, /Device major\/minor number: 01:03/);
    const sda = statInode(image, "/dev/sda");
    assert.equal(sda.type, "block");
    assert.deepEqual([sda.mode, sda.gid], [0o660, 6]);
    assert.match(sda.text, /Device major\/minor number: 08:00/);
    const odd = statInode(image, '/run/odd dir/q""uote\\d !name');
    assert.deepEqual([odd.type, odd.mode, odd.uid], ["FIFO", 0o640, 1000]);
    const fifo = statInode(image, "/run/initctl");
    assert.equal(fifo.type, "FIFO");
    assert.equal(fifo.mode, 0o600);
  });

  it("keeps binary security.capability xattrs byte for byte", () => {
    const out = join(dir, "cap.bin");
    debugfs(image, `ea_get -f ${out} /bin/ping security.capability`);
    assert.deepEqual(readFileSync(out), CAPABILITY);
  });

  it("injects the agent at /sbin/banger-agent (through the /sbin symlink) root:root 0755, and /lib/banger", () => {
    const agent = statInode(image, "/usr/sbin/banger-agent");
    assert.deepEqual([agent.type, agent.mode, agent.uid, agent.gid], ["regular", 0o755, 0, 0]);
    const out = join(dir, "agent.bin");
    debugfs(image, `dump /usr/sbin/banger-agent ${out}`);
    assert.deepEqual(readFileSync(out), readFileSync(BUSYBOX));
    const lib = statInode(image, "/lib/banger");
    assert.deepEqual([lib.type, lib.mode, lib.uid], ["directory", 0o755, 0]);
  });
});

describe("makeKernelBundle", () => {
  it("bundles vmlinux, initrd.img and modules/ (not the manifest) and reports the kernel version", async () => {
    const dir = mkdtempSync(join(tmpdir(), "bgr-kbundle-"));
    try {
      const kdir = join(dir, "k");
      execFileSync("mkdir", ["-p", join(kdir, "modules")]);
      writeFileSync(join(kdir, "vmlinux"), "\x7fELF fake kernel");
      writeFileSync(join(kdir, "initrd.img"), "cpio");
      writeFileSync(join(kdir, "modules", "virtio.ko"), "ko");
      writeFileSync(join(kdir, "manifest.json"), JSON.stringify({ kernel_version: "6.1.0-test" }));
      const made = await makeKernelBundle(kdir, { name: "k1", outDir: join(dir, "out") });
      assert.equal(made.kernelVersion, "6.1.0-test");
      assert.equal(made.path, join(dir, "out", "k1.tar.zst"));
      const names = execFileSync("sh", ["-c", 'zstd -dc "$1" | tar -t', "sh", made.path], { encoding: "utf8" }).trim().split("\n");
      assert.deepEqual(
        names.map((n) => n.replace(/\/$/, "")),
        ["initrd.img", "modules", "modules/virtio.ko", "vmlinux"],
      );
      await assert.rejects(makeKernelBundle(join(dir, "out"), { name: "k2", outDir: join(dir, "out") }), /has no vmlinux/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
