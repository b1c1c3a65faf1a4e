import assert from "node:assert/strict";
import { chmodSync, chownSync, existsSync, linkSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { extractRootfsTar } from "../rootfs/index.ts";
import { BangerError, ErrorCode } from "../util/errors.ts";
import { run } from "../util/exec.ts";
import { makeWorkDir, mountsUnder, releaseWorkDir, tarDirectory } from "./pack.ts";

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), "bgr-pack-"));
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** A small tree with what debootstrap trees hold: owners, exact modes, links, a device node. */
function makeTree(root: string): void {
  mkdirSync(join(root, "etc/sudoers.d"), { recursive: true });
  mkdirSync(join(root, "home/dev"), { recursive: true });
  mkdirSync(join(root, "dev"));
  writeFileSync(join(root, "etc/sudoers.d/dev"), "dev ALL=(ALL:ALL) NOPASSWD: ALL\n");
  chmodSync(join(root, "etc/sudoers.d/dev"), 0o440);
  chownSync(join(root, "home/dev"), 1000, 1000);
  chmodSync(join(root, "home/dev"), 0o700);
  writeFileSync(join(root, "etc/perl"), "x");
  linkSync(join(root, "etc/perl"), join(root, "etc/perl-link"));
  symlinkSync("/usr/bin", join(root, "bin"));
}

function doneSignal(): { onDone: () => Promise<void>; done: Promise<void> } {
  let resolve!: () => void;
  const done = new Promise<void>((r) => (resolve = r));
  return { done, onDone: async () => resolve() };
}

describe("tarDirectory", () => {
  const notRoot = process.getuid?.() !== 0 ? "needs root (chown, mknod), as the debian presets do" : false;
  it("streams a tree that rootfs extracts with owners, modes, links and devices intact", { skip: notRoot }, async () => {
    const src = join(dir, "src");
    makeTree(src);
    const mk = await run(["mknod", "-m", "666", join(src, "dev/null"), "c", "1", "3"]);
    assert.equal(mk.code, 0, mk.stderr);
    const d = doneSignal();
    const tree = await extractRootfsTar(tarDirectory(src, { onDone: d.onDone }), join(dir, "out1"));
    await d.done;
    const e = (p: string) => tree.entries.get(p);
    assert.deepEqual([e("home/dev")?.uid, e("home/dev")?.gid, e("home/dev")?.mode], [1000, 1000, 0o700]);
    assert.deepEqual([e("etc/sudoers.d/dev")?.uid, e("etc/sudoers.d/dev")?.mode], [0, 0o440]);
    assert.deepEqual([e("etc/perl-link")?.type, e("etc/perl-link")?.linkTarget], ["hardlink", "etc/perl"]);
    assert.deepEqual([e("bin")?.type, e("bin")?.linkTarget], ["symlink", "/usr/bin"]);
    assert.deepEqual([e("dev/null")?.type, e("dev/null")?.devMajor, e("dev/null")?.devMinor], ["chardev", 1, 3]);
  });

  it("a tar failure is a stream error, and onDone still runs", async () => {
    const d = doneSignal();
    await assert.rejects(extractRootfsTar(tarDirectory(join(dir, "missing"), { onDone: d.onDone }), join(dir, "out2")), /tar of the built root filesystem failed/);
    await d.done;
  });

  it("an abort stops tar, fails the stream as cancelled, and runs onDone", async () => {
    const src = join(dir, "big");
    mkdirSync(src);
    writeFileSync(join(src, "blob"), Buffer.alloc(64 * 1024 * 1024));
    const ac = new AbortController();
    const d = doneSignal();
    const stream = tarDirectory(src, { signal: ac.signal, onDone: d.onDone });
    stream.once("data", () => ac.abort());
    await assert.rejects(
      (async () => {
        for await (const _ of stream) {
          /* drain */
        }
      })(),
      (err: unknown) => err instanceof BangerError && err.code === ErrorCode.Cancelled,
    );
    await d.done;
  });
});

describe("work directories", () => {
  it("sweeps leftovers of a crashed build but never one in use", async () => {
    const parent = join(dir, "work");
    mkdirSync(join(parent, "debian-stale/root/etc"), { recursive: true });
    const first = await makeWorkDir(parent, "debian-");
    const second = await makeWorkDir(parent, "debian-");
    assert.deepEqual(readdirSync(parent).sort(), [first, second].map((p) => p.slice(parent.length + 1)).sort());
    await releaseWorkDir(first);
    await releaseWorkDir(second);
    assert.equal(existsSync(first) || existsSync(second), false);
  });

  it("finds mounts under a directory from mountinfo, octal escapes decoded", async () => {
    const info = join(dir, "mountinfo");
    writeFileSync(
      info,
      ["22 27 0:21 / /proc rw,relatime - proc proc rw", "90 27 0:50 / /var/x/work/a\\040b/root/proc rw - proc proc rw", "91 27 0:51 / /var/x/workshop rw - tmpfs tmpfs rw"].join("\n"),
    );
    assert.deepEqual(await mountsUnder("/var/x/work", info), ["/var/x/work/a b/root/proc"]);
    assert.deepEqual(await mountsUnder("/var/x/work/", info), ["/var/x/work/a b/root/proc"]);
  });
});
