// Hostile kernel packages and directories (a `kernel import` upload is anyone's bytes): module
// metadata that would reach the terminal, and sizes that would hold the daemon's memory or
// time. Each is refused with one printable line, and nothing is left in kernelsDir.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { BangerError } from "../util/errors.ts";
import { Readable } from "node:stream";
import { crc32 } from "node:zlib";
import tar from "tar-stream";
import { importKernel, receiveKernelUpload } from "./index.ts";

const root = mkdtempSync(join(tmpdir(), "bgr-kernel-hostile-"));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

/** A minimal ELF64 little-endian module: a section table with .shstrtab and .modinfo. */
function moduleElf(modinfo: string[]): Buffer {
  const shstrtab = Buffer.from("\0.shstrtab\0.modinfo\0");
  const info = Buffer.from(`${modinfo.join("\0")}\0`, "latin1");
  const shoff = 64 + shstrtab.length + info.length;
  const out = Buffer.alloc(shoff + 3 * 64);
  out.writeUInt32BE(0x7f454c46, 0);
  out[4] = 2;
  out[5] = 1;
  out.writeBigUInt64LE(BigInt(shoff), 0x28);
  out.writeUInt16LE(64, 0x3a);
  out.writeUInt16LE(3, 0x3c);
  out.writeUInt16LE(1, 0x3e);
  shstrtab.copy(out, 64);
  info.copy(out, 64 + shstrtab.length);
  const section = (i: number, nameOff: number, offset: number, size: number) => {
    out.writeUInt32LE(nameOff, shoff + i * 64);
    out.writeBigUInt64LE(BigInt(offset), shoff + i * 64 + 0x18);
    out.writeBigUInt64LE(BigInt(size), shoff + i * 64 + 0x20);
  };
  section(1, 1, 64, shstrtab.length);
  section(2, 11, 64 + shstrtab.length, info.length);
  return out;
}

/** A kernel directory: an ELF "vmlinux" with a release string, and the given module tree files. */
function kernelDir(files: Record<string, Buffer | string>): string {
  const dir = join(root, `src-${n++}`);
  mkdirSync(join(dir, "modules"), { recursive: true });
  writeFileSync(join(dir, "vmlinux"), Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46]), Buffer.alloc(60), Buffer.from("Linux version 6.1.0-test (nobody) #1\n")]));
  for (const [rel, body] of Object.entries(files)) {
    mkdirSync(join(dir, "modules", rel, ".."), { recursive: true });
    writeFileSync(join(dir, "modules", rel), body);
  }
  return dir;
}

/** An ar archive, as a .deb is. */
function ar(members: Record<string, Buffer>): Buffer {
  const parts: Buffer[] = [Buffer.from("!<arch>\n")];
  for (const [name, body] of Object.entries(members)) {
    const h = [`${name}/`.padEnd(16), "0".padEnd(12), "0".padEnd(6), "0".padEnd(6), "100644".padEnd(8), String(body.length).padEnd(10), "`\n"].join("");
    parts.push(Buffer.from(h, "latin1"), body, Buffer.alloc(body.length % 2, "\n"));
  }
  return Buffer.concat(parts);
}

/** A ustar header for `name` declaring `size` bytes (octal, 11 digits: up to 8 GiB). */
function tarHeader(name: string, size: number): Buffer {
  const b = Buffer.alloc(512);
  b.write(name, 0, "latin1");
  b.write("0000644\0", 100, "latin1");
  b.write("0000000\0", 108, "latin1");
  b.write("0000000\0", 116, "latin1");
  b.write(`${size.toString(8).padStart(11, "0")}\0`, 124, "latin1");
  b.write("00000000000\0", 136, "latin1");
  b.write("        ", 148, "latin1");
  b.write("0", 156, "latin1");
  b.write("ustar\x0000", 257, "latin1");
  let sum = 0;
  for (const byte of b) sum += byte;
  b.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "latin1");
  return b;
}

/** `data` as .xz whose LZMA2 header asks for a `dictBits`-coded dictionary (37: 1.5 GiB, the most .xz allows). */
function xzAskingFor(data: Buffer, dictBits: number): Buffer {
  const xz = execFileSync("xz", ["-c", "--lzma2=dict=4KiB"], { input: data });
  const size = (xz[12]! + 1) * 4; // the block header follows the 12-byte stream header
  const header = xz.subarray(12, 12 + size);
  header[header.indexOf(0x21, 2) + 2] = dictBits; // LZMA2 filter: id 0x21, props size 1, dictionary byte
  header.writeUInt32LE(crc32(header.subarray(0, size - 4)), size - 4);
  return xz;
}

async function rejectsClean(source: string, pattern: RegExp): Promise<void> {
  const kernelsDir = join(root, `kernels-${n++}`);
  await assert.rejects(importKernel(source, { name: "hostile", kernelsDir, agentPath: "/bin/busybox" }), (err: unknown) => {
    assert.ok(err instanceof BangerError, String(err));
    assert.match(err.message, pattern);
    assert.doesNotMatch(`${err.message}${err.hint ?? ""}`, /[\x00-\x1f\x7f-\x9f]/, "one printable line");
    return true;
  });
  assert.deepEqual(existsSync(kernelsDir) ? readdirSync(kernelsDir) : [], [], "nothing left");
}

describe("kernel import: hostile module trees and packages", () => {
  it("a module whose depends= names terminal escapes and newlines: refused with one printable line", async () => {
    for (const dep of ["\x1b]0;owned\x07", "evil\nbanger: all good", "\x9b2J", "a/../../etc/passwd", "x".repeat(300)]) {
      const dir = kernelDir({ "kernel/virtio_blk.ko": moduleElf(["license=GPL", `depends=virtio,${dep}`]), "kernel/virtio.ko": moduleElf(["depends="]) });
      await rejectsClean(dir, /virtio_blk .*not a module name/);
    }
  });

  it("a module file under a directory whose name holds C1 controls: messages stay printable", async () => {
    const dir = kernelDir({ "\u009b31m/virtio_blk.ko": Buffer.alloc(70 * 1024 * 1024) });
    await rejectsClean(dir, /virtio_blk\.ko.* is larger than/);
  });

  it("a module that decodes past 64 MiB is refused, and its decoder does not linger", async () => {
    const bomb = execFileSync("xz", ["-c", "-0"], { input: Buffer.alloc(65 * 1024 * 1024), maxBuffer: 64 * 1024 * 1024 });
    const dir = kernelDir({ "kernel/virtio_blk.ko.xz": bomb });
    await rejectsClean(dir, /decompressed data is larger than 67108864 bytes/);
    await new Promise((r) => setTimeout(r, 500));
    const children = execFileSync("ps", ["-o", "args=", "--ppid", String(process.pid)], { encoding: "utf8" });
    assert.doesNotMatch(children, /^\S*xz /m, "no xz left running");
  });

  it("modules the guest needs that decode to more than 256 MiB together are refused, nothing left", async () => {
    // A chain of dependencies, each module under the 64 MiB one-module cap: before, every link
    // was decoded into the kernel directory and read into the initramfs (a disk and memory bomb).
    const chain = ["virtio_blk", "m1", "m2", "m3", "m4"];
    const files: Record<string, Buffer> = {};
    for (const [i, name] of chain.entries()) {
      const ko = Buffer.concat([moduleElf([`depends=${chain[i + 1] ?? ""}`]), Buffer.alloc(60 * 1024 * 1024)]);
      files[`kernel/${name}.ko.xz`] = execFileSync("xz", ["-c", "-0"], { input: ko, maxBuffer: 64 * 1024 * 1024 });
    }
    await rejectsClean(kernelDir(files), /the guest's modules decode to more than 268435456 bytes/);
  });

  it("a modules.builtin larger than 1 MiB is refused, not read into memory", async () => {
    const dir = kernelDir({ "modules.builtin": Buffer.alloc(2 * 1024 * 1024, "kernel/fs/ext4/ext4.ko\n"), "kernel/virtio.ko": moduleElf(["depends="]) });
    await rejectsClean(dir, /modules\.builtin is larger than 1048576 bytes/);
  });

  it("a directory upload holding a symlink named with C1 controls: the refusal shows the name escaped", async () => {
    const pack = tar.pack();
    pack.entry({ name: "vmlinux" }, "k");
    pack.entry({ name: "modules/\u009b2J\u0085.ko", type: "symlink", linkname: "/etc/shadow" });
    pack.finalize();
    await assert.rejects(receiveKernelUpload("dir", Readable.from(pack as AsyncIterable<Buffer>), join(root, `work-${n++}`)), (err: unknown) => {
      assert.ok(err instanceof BangerError, String(err));
      assert.match(err.message, /holds a symlink \("modules\/\\u009b2J\\u0085\.ko"\)/);
      assert.doesNotMatch(err.message, /[\x00-\x1f\x7f-\x9f]/);
      return true;
    });
  });

  it("a .deb whose ar member name holds C1 controls: the message shows it escaped", async () => {
    const deb = join(root, "c1.deb");
    const member = Buffer.concat([
      Buffer.from("\x9b2J\x85/", "latin1"),
      Buffer.from(["".padEnd(11), "0".padEnd(12), "0".padEnd(6), "0".padEnd(6), "100644".padEnd(8), "999".padEnd(10), "`\n"].join("")),
    ]);
    writeFileSync(deb, Buffer.concat([Buffer.from("!<arch>\n"), member, Buffer.from("short")]));
    await rejectsClean(deb, /ar member "\\u009b2J\\u0085" is truncated/);
  });

  it("a .deb whose data.tar.xz asks xz for a 1.5 GiB dictionary is refused, not decoded", async () => {
    const deb = join(root, "dict.deb");
    const dataTar = Buffer.concat([tarHeader("./boot/vmlinuz-6.1.0-test", 0), Buffer.alloc(1024)]);
    writeFileSync(deb, ar({ "debian-binary": Buffer.from("2.0\n"), "data.tar.xz": xzAskingFor(dataTar, 37) }));
    await rejectsClean(deb, /data\.tar: xz could not decode the data/);
  });

  it("a .deb whose data.tar declares more than 4 GiB is refused at that header, not read through", async () => {
    const dataTar = Buffer.concat([tarHeader("./usr/share/doc/huge", 5 * 1024 ** 3), Buffer.alloc(64 * 1024)]);
    const deb = join(root, "huge.deb");
    writeFileSync(deb, ar({ "debian-binary": Buffer.from("2.0\n"), "data.tar": dataTar }));
    await rejectsClean(deb, /data is larger than 4294967296 bytes/);
  });
});
