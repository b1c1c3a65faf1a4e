// The host-side extraction of a guest's workspace archive: hostile archives are refused,
// and a guest's git configuration never reaches the host.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import type { Readable } from "node:stream";
import tar from "tar-stream";
import { makeTempHome } from "../../test/helpers.ts";
import { BangerError, ErrorCode } from "../util/errors.ts";
import { extractGuestTree } from "./extract.ts";

type Member = { name: string; type?: "file" | "directory" | "symlink" | "link"; body?: string; linkname?: string; mode?: number };

function archive(members: Member[]): Readable {
  const pack = tar.pack();
  for (const m of members) {
    const type = m.type ?? "file";
    const header = { name: m.name, type, mode: m.mode ?? 0o644, linkname: m.linkname };
    if (type === "file") pack.entry(header, m.body ?? "");
    else pack.entry(header);
  }
  pack.finalize();
  return pack as unknown as Readable;
}

const { home, cleanup } = makeTempHome();
after(cleanup);
let n = 0;

function dirs(): { work: string; gitDir: string } {
  const base = join(home, `x${n++}`);
  const d = { work: join(base, "work"), gitDir: join(base, "git") };
  mkdirSync(d.work, { recursive: true });
  mkdirSync(d.gitDir);
  return d;
}

const limits = { maxBytes: 1024 * 1024, maxEntries: 1000 };

const isRefusal = (err: unknown) => err instanceof BangerError && err.code === ErrorCode.Integrity;

test("keeps work tree files, modes and symlinks, and only history from .git", async () => {
  const d = dirs();
  await extractGuestTree(
    archive([
      { name: "workspace/", type: "directory" },
      { name: "workspace/a.txt", body: "a" },
      { name: "workspace/run.sh", body: "#!/bin/sh\n", mode: 0o755 },
      { name: "workspace/l", type: "symlink", linkname: "/etc/passwd" },
      { name: "workspace/.git/HEAD", body: "ref: refs/heads/main\n" },
      { name: "workspace/.git/refs/heads/main", body: "0".repeat(40) },
      { name: "workspace/.git/objects/ab/cdef", body: "obj" },
      { name: "workspace/.git/objects/info/alternates", body: "/home/someone/.git/objects" },
      { name: "workspace/.git/config", body: "[core]\n\tfsmonitor = evil\n" },
      { name: "workspace/.git/hooks/post-checkout", body: "evil", mode: 0o755 },
      { name: "workspace/sub/.git", body: "gitdir: /root/.git" },
      { name: "workspace/sub/f", body: "f" },
      { name: "workspace/nested/.git/config", body: "evil" },
    ]),
    d,
    limits,
  );
  assert.deepEqual(readdirSync(d.work).sort(), ["a.txt", "l", "run.sh", "sub"]);
  assert.deepEqual(readdirSync(join(d.work, "sub")), ["f"]);
  assert.equal(lstatSync(join(d.work, "run.sh")).mode & 0o111, 0o111);
  assert.ok(lstatSync(join(d.work, "l")).isSymbolicLink());
  assert.deepEqual(readdirSync(d.gitDir).sort(), ["HEAD", "objects", "refs"]);
  assert.equal(readFileSync(join(d.gitDir, "objects/ab/cdef"), "utf8"), "obj");
  assert.equal(existsSync(join(d.gitDir, "objects/info/alternates")), false);
});

test("refuses members that escape, absolute names and writes through symlinks", async () => {
  for (const members of [
    [{ name: "workspace/../../etc/x", body: "x" }],
    [{ name: "/etc/x", body: "x" }],
    [
      { name: "workspace/l", type: "symlink" as const, linkname: home },
      { name: "workspace/l/planted", body: "x" },
    ],
  ]) {
    const d = dirs();
    await assert.rejects(extractGuestTree(archive(members), d, limits), isRefusal);
    assert.equal(existsSync(join(home, "planted")), false);
  }
  // Inside .git a symlink is dropped, so what follows lands in a real directory.
  const d = dirs();
  await extractGuestTree(
    archive([
      { name: "workspace/.git/refs", type: "symlink", linkname: home },
      { name: "workspace/.git/refs/planted", body: "x" },
    ]),
    d,
    limits,
  );
  assert.equal(existsSync(join(home, "planted")), false);
  assert.ok(lstatSync(join(d.gitDir, "refs")).isDirectory());
});

test("refuses archives over the size or entry limits", async () => {
  await assert.rejects(extractGuestTree(archive([{ name: "workspace/big", body: "x".repeat(2000) }]), dirs(), { maxBytes: 1000, maxEntries: 10 }), isRefusal);
  const many = Array.from({ length: 20 }, (_, i) => ({ name: `workspace/f${i}`, body: "" }));
  await assert.rejects(extractGuestTree(archive(many), dirs(), { maxBytes: 1000, maxEntries: 10 }), isRefusal);
});

test("names and symlink targets with control bytes are refused with one line; other bytes are kept literally", async () => {
  const controls = [...Array(0x20).keys(), 0x7f].map((b) => `a${String.fromCharCode(b)}b`);
  // Past ustar's 100 bytes, so the names travel in PAX records (a ustar field cannot hold a NUL).
  const long = "p".repeat(100);
  for (const s of [`x\n!touch ${join(home, "pwned")}`, ...controls]) {
    for (const members of [[{ name: `workspace/${long}${s}`, body: "x" }], [{ name: "workspace/l", type: "symlink" as const, linkname: `${long}${s}` }]]) {
      const d = dirs();
      await assert.rejects(extractGuestTree(archive(members), d, limits), (err: unknown) => {
        assert.ok(isRefusal(err), `${JSON.stringify(s)}: ${String(err)}`);
        assert.match((err as BangerError).message, /contains the control byte 0x[0-9a-f]{2}/);
        assert.doesNotMatch((err as BangerError).message, /[\x00-\x1f\x7f-\x9f]/);
        return true;
      });
      assert.deepEqual(readdirSync(d.work), [], JSON.stringify(s));
    }
  }
  const literal = ['"', "\\", "-f", "!x", "<2>", " lead", "$(id)", "é☃\u0085"];
  const d = dirs();
  await extractGuestTree(
    archive(
      literal.flatMap((s, i) => [
        { name: `workspace/${s}`, body: `${i}` },
        { name: `workspace/l${i}`, type: "symlink" as const, linkname: s },
      ]),
    ),
    d,
    limits,
  );
  for (const [i, s] of literal.entries()) {
    assert.equal(readFileSync(join(d.work, s), "utf8"), `${i}`);
    assert.equal(readlinkSync(join(d.work, `l${i}`)), s);
  }
  assert.equal(existsSync(join(home, "pwned")), false);
});

test("refusals show member names escaped: C1 controls (CSI, NEL) never reach the terminal raw", async () => {
  const H = "\u009b2J\u0085";
  for (const members of [
    [
      { name: `workspace/${H}`, type: "symlink" as const, linkname: "x" },
      { name: `workspace/${H}/f`, body: "x" },
    ],
    [
      { name: `workspace/${H}`, type: "directory" as const },
      { name: `workspace/${H}`, type: "symlink" as const, linkname: "x" },
    ],
    [{ name: `workspace/${H}`, type: "symlink" as const, linkname: "a\nb" }],
  ]) {
    await assert.rejects(extractGuestTree(archive(members), dirs(), limits), (err: unknown) => {
      assert.ok(isRefusal(err), String(err));
      assert.doesNotMatch((err as BangerError).message, /[\x00-\x1f\x7f-\x9f]/, JSON.stringify((err as BangerError).message));
      assert.ok((err as BangerError).message.includes("\\u009b2J\\u0085"), JSON.stringify((err as BangerError).message));
      return true;
    });
  }
});

test("a member path the host cannot hold (past PATH_MAX under the work tree): the error shows it escaped", async () => {
  const H = "\u009b2J\u0085";
  const deep = `workspace/${Array(16)
    .fill(`${H}${"d".repeat(247)}`)
    .join("/")}/${"f".repeat(16)}`; // within the name rule's 4095 bytes
  await assert.rejects(extractGuestTree(archive([{ name: deep, body: "x" }]), dirs(), limits), (err: unknown) => {
    assert.match((err as Error).message, /ENAMETOOLONG/);
    assert.doesNotMatch((err as Error).message, /[\x00-\x1f\x7f-\x9f]/, "one printable line");
    return true;
  });
});
