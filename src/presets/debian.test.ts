import assert from "node:assert/strict";
import { chownSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync, chmodSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import tar from "tar-stream";
import { TEST_CACHE } from "../../test/helpers.ts";
import { BangerError, ErrorCode } from "../util/errors.ts";
import type { ProgressEvent } from "../util/progress.ts";
import { cleanDebianTree, configureDebianTree } from "./debian.ts";
import { presetRootfsTar } from "./index.ts";

const notRoot = process.getuid?.() !== 0 ? "needs root (file owners), as the debian presets do" : false;

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), "bgr-debian-"));
});
after(() => rmSync(dir, { recursive: true, force: true }));

function write(root: string, rel: string, text: string, mode = 0o644): void {
  mkdirSync(join(root, rel, ".."), { recursive: true });
  writeFileSync(join(root, rel), text);
  chmodSync(join(root, rel), mode);
}

/** The parts of a fresh debootstrap tree that configure and clean touch. */
function fakeDebootstrapTree(root: string): void {
  write(root, "etc/passwd", "root:x:0:0:root:/root:/bin/bash\n");
  write(root, "etc/group", "root:x:0:\nsudo:x:27:\nshadow:x:42:\n");
  write(root, "etc/shadow", "root:*:20000:0:99999:7:::\n", 0o640);
  chownSync(join(root, "etc/shadow"), 0, 42);
  write(root, "etc/gshadow", "root:*::\n", 0o640);
  write(root, "etc/skel/.bashrc", "# bashrc\n");
  write(root, "etc/skel/.profile", "# profile\n");
  write(root, "etc/ssh/ssh_host_ed25519_key", "secret", 0o600);
  write(root, "etc/ssh/ssh_host_ed25519_key.pub", "pub");
  write(root, "etc/ssh/sshd_config", "# sshd\n");
  write(root, "etc/resolv.conf", "nameserver 10.255.255.53\n");
  write(root, "etc/hostname", "buildhost\n");
  write(root, "var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages", "x");
  mkdirSync(join(root, "var/lib/apt/lists/partial"));
  write(root, "var/cache/apt/archives/bash_5.2_amd64.deb", "deb");
  write(root, "var/cache/apt/pkgcache.bin", "bin");
  write(root, "var/log/bootstrap.log", "log");
  mkdirSync(join(root, "tmp"));
  mkdirSync(join(root, "home"));
  // A symlink where a generated file goes must be replaced, never written through.
  write(dir, "outside-hosts", "host file\n");
  symlinkSync(join(dir, "outside-hosts"), join(root, "etc/hosts"));
}

describe("configure and clean a debootstrapped tree", { skip: notRoot }, () => {
  it("adds the dev user, sudo, /workspace and host files, and removes build leftovers", async () => {
    const root = join(dir, "tree");
    fakeDebootstrapTree(root);
    await configureDebianTree(root, { hostname: "debian", now: new Date("2026-01-02T00:00:00Z") });
    await cleanDebianTree(root);
    const st = (rel: string) => lstatSync(join(root, rel));
    const read = (rel: string) => readFileSync(join(root, rel), "utf8");

    assert.match(read("etc/passwd"), /^root:.*\ndev:x:1000:1000:dev:\/home\/dev:\/bin\/bash\n$/);
    assert.match(read("etc/shadow"), /\ndev:\*:20455:0:99999:7:::\n$/);
    assert.deepEqual([st("etc/shadow").mode & 0o7777, st("etc/shadow").gid], [0o640, 42], "shadow keeps its mode and group");
    assert.match(read("etc/group"), /\ndev:x:1000:\n$/);
    assert.deepEqual([st("home/dev").uid, st("home/dev").gid, st("home/dev").mode & 0o7777], [1000, 1000, 0o700]);
    assert.deepEqual(readdirSync(join(root, "home/dev")).sort(), [".bashrc", ".profile"]);
    assert.equal(st("home/dev/.bashrc").uid, 1000);
    assert.deepEqual([st("workspace").uid, st("workspace").gid, st("workspace").mode & 0o7777], [1000, 1000, 0o755]);
    assert.deepEqual([st("etc/sudoers.d/dev").uid, st("etc/sudoers.d/dev").mode & 0o7777], [0, 0o440]);
    assert.match(read("etc/sudoers.d/dev"), /^dev ALL=\(ALL:ALL\) NOPASSWD: ALL$/m);
    assert.equal(read("etc/hostname"), "debian\n");
    assert.ok(st("etc/hosts").isFile(), "the symlinked hosts was replaced by a file");
    assert.match(read("etc/hosts"), /127\.0\.1\.1\tdebian/);
    assert.equal(readFileSync(join(dir, "outside-hosts"), "utf8"), "host file\n", "nothing written outside the tree");
    assert.equal(read("etc/default/locale"), "LANG=C.UTF-8\n");
    assert.doesNotMatch(read("etc/resolv.conf"), /nameserver/, "the build host's resolver is not shipped");

    assert.deepEqual(readdirSync(join(root, "etc/ssh")), ["sshd_config"], "host keys go (the agent makes them at boot)");
    assert.deepEqual(readdirSync(join(root, "var/lib/apt/lists")), ["partial"]);
    assert.deepEqual(readdirSync(join(root, "var/cache/apt")), ["archives"]);
    assert.deepEqual(readdirSync(join(root, "var/cache/apt/archives")), ["partial"]);
    assert.equal(existsSync(join(root, "var/log/bootstrap.log")), false);
  });

  it("refuses to add dev over an existing uid 1000", async () => {
    const root = join(dir, "tree2");
    fakeDebootstrapTree(root);
    writeFileSync(join(root, "etc/passwd"), "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\n");
    await assert.rejects(configureDebianTree(root, { hostname: "debian", now: new Date() }), /already has id 1000/);
  });
});

// ---- The real thing: debootstrap from the Debian mirror. Minutes when the cache is cold. ----

const slow = process.env.BANGER_SLOW_TESTS === "1" ? false : "set BANGER_SLOW_TESTS=1: runs debootstrap against the Debian mirror (minutes cold)";
const skipSlow = slow || notRoot;
/** Shared with later runs so they are warm, as CI would keep it. */
const PRESET_CACHE = join(TEST_CACHE, "presets");

interface Member {
  type: string;
  uid: number;
  gid: number;
  mode: number;
  linkname?: string | null;
  text?: string;
}

/** Reads the tar's headers (and the small files we check), normalised to paths like `etc/passwd`. */
async function readTar(stream: Readable, keep: Set<string>): Promise<Map<string, Member>> {
  const members = new Map<string, Member>();
  const extract = tar.extract();
  stream.pipe(extract as unknown as NodeJS.WritableStream);
  stream.on("error", (e) => extract.destroy(e));
  for await (const entry of extract) {
    const h = entry.header;
    const name = h.name.replace(/^\.\//, "").replace(/\/$/, "");
    const m: Member = { type: h.type ?? "file", uid: h.uid ?? -1, gid: h.gid ?? -1, mode: (h.mode ?? 0) & 0o7777, linkname: h.linkname };
    if (keep.has(name)) {
      const chunks: Buffer[] = [];
      for await (const c of entry) chunks.push(c as Buffer);
      m.text = Buffer.concat(chunks).toString("utf8");
    } else entry.resume();
    members.set(name, m);
  }
  return members;
}

async function workDirsLeft(): Promise<string[]> {
  for (let i = 0; i < 100; i++) {
    const left = existsSync(join(PRESET_CACHE, "work")) ? readdirSync(join(PRESET_CACHE, "work")) : [];
    if (left.length === 0) return [];
    await new Promise((r) => setTimeout(r, 100));
  }
  return readdirSync(join(PRESET_CACHE, "work"));
}

describe("the debian preset, built for real", { skip: skipSlow }, () => {
  it("debootstraps bookworm with the dev user, sudo, /workspace and no apt lists", async () => {
    const events: ProgressEvent[] = [];
    const started = Date.now();
    const stream = await presetRootfsTar("debian", { cacheDir: PRESET_CACHE, progress: (e) => events.push(e) });
    const members = await readTar(stream, new Set(["etc/passwd", "etc/sudoers.d/dev", "etc/hostname", "etc/default/locale"]));
    console.log(`debian preset: ${((Date.now() - started) / 1000).toFixed(1)} s, ${members.size} entries`);

    const m = (p: string) => {
      const e = members.get(p);
      assert.ok(e, `${p} is in the image`);
      return e;
    };
    assert.equal(m("bin").type, "symlink", "merged /usr");
    for (const bin of ["usr/bin/bash", "usr/bin/git", "usr/bin/curl", "usr/bin/sudo", "usr/sbin/sshd", "usr/bin/ssh-keygen", "usr/bin/ip", "usr/bin/ps", "usr/bin/less"]) {
      assert.equal(m(bin).type, "file", `${bin} is a ${m(bin).type} to ${m(bin).linkname}`);
    }
    assert.equal(m("usr/bin/sudo").mode & 0o4000, 0o4000, "sudo keeps its setuid bit");
    assert.match(m("etc/passwd").text!, /^dev:x:1000:1000:dev:\/home\/dev:\/bin\/bash$/m);
    assert.deepEqual([m("home/dev").uid, m("home/dev").gid], [1000, 1000]);
    assert.deepEqual([m("workspace").uid, m("workspace").gid], [1000, 1000]);
    assert.deepEqual([m("etc/sudoers.d/dev").uid, m("etc/sudoers.d/dev").mode], [0, 0o440]);
    assert.match(m("etc/sudoers.d/dev").text!, /NOPASSWD: ALL/);
    assert.equal(m("etc/default/locale").text, "LANG=C.UTF-8\n");
    assert.equal(m("dev/null").type, "character-device");
    assert.deepEqual(
      [...members.keys()].filter((p) => p.startsWith("var/lib/apt/lists/")),
      ["var/lib/apt/lists/partial"],
      "no apt lists",
    );
    assert.deepEqual(
      [...members.keys()].filter((p) => /\.deb$|\.bin$/.test(p) && p.startsWith("var/cache/apt")),
      [],
      "no apt caches",
    );
    assert.deepEqual(
      [...members.keys()].filter((p) => /^etc\/ssh\/ssh_host_/.test(p)),
      [],
      "no shared ssh host keys",
    );
    assert.equal(members.has("usr/sbin/policy-rc.d"), false);
    for (const phase of ["debootstrap", "configure", "clean", "pack"])
      assert.ok(
        events.some((e) => e.phase === phase),
        `progress for ${phase}`,
      );
    assert.deepEqual(await workDirsLeft(), [], "the work directory is removed when the stream ends");
  });

  it("cancelling kills debootstrap and removes the work directory", async () => {
    const ac = new AbortController();
    const building = presetRootfsTar("debian", {
      cacheDir: PRESET_CACHE,
      signal: ac.signal,
      // Abort as soon as debootstrap is working on packages.
      progress: (e) => {
        if (e.phase === "debootstrap" && e.done !== undefined) ac.abort();
      },
    });
    await assert.rejects(building, (e: unknown) => e instanceof BangerError && e.code === ErrorCode.Cancelled);
    assert.deepEqual(await workDirsLeft(), []);
    const survivors = readdirSync("/proc")
      .filter((p) => /^\d+$/.test(p))
      .filter((pid) => {
        try {
          return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(join(PRESET_CACHE, "work"));
        } catch {
          return false;
        }
      });
    assert.deepEqual(survivors, [], "no debootstrap process outlives the cancel");
    assert.ok(statSync(PRESET_CACHE).isDirectory(), "the shared .deb cache is kept");
  });
});
