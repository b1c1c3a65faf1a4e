import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";
import tar from "tar-stream";
import { makeTempHome } from "../../test/helpers.ts";
import { type BangerError, ErrorCode } from "../util/errors.ts";
import { makeTarZst } from "./index.ts";

const home = makeTempHome();
after(() => home.cleanup());

function tree(name: string): string {
  const src = join(home.home, name);
  mkdirSync(join(src, "modules", "b"), { recursive: true });
  writeFileSync(join(src, "vmlinux"), "kernel");
  writeFileSync(join(src, "modules", "b", "z.ko"), "z", { mode: 0o600 });
  writeFileSync(join(src, "modules", "a.ko"), "a");
  symlinkSync("b/z.ko", join(src, "modules", "link"));
  return src;
}

async function headers(bundle: string): Promise<tar.Header[]> {
  const decoded = execFileSync("zstd", ["-dc", bundle]);
  const extract = tar.extract();
  const out: tar.Header[] = [];
  const done = (async () => {
    for await (const entry of extract) {
      out.push(entry.header);
      entry.resume();
    }
  })();
  extract.end(decoded);
  await done;
  return out;
}

test("bundles are reproducible: sorted members, zero times and owners, same bytes from equal trees", async () => {
  const a = tree("a");
  const b = tree("b");
  utimesSync(join(b, "vmlinux"), new Date(2001, 1, 1), new Date(2001, 1, 1));
  const one = await makeTarZst(a, ["vmlinux", "modules"], join(home.home, "one.tar.zst"), { level: 3 });
  const two = await makeTarZst(b, ["modules", "vmlinux"], join(home.home, "two.tar.zst"), { level: 3 });
  assert.equal(one.sha256, two.sha256);
  assert.equal(one.sizeBytes, readFileSync(one.path).length);
  const hs = await headers(one.path);
  assert.deepEqual(
    hs.map((h) => [h.name, h.type]),
    [
      ["modules", "directory"],
      ["modules/a.ko", "file"],
      ["modules/b", "directory"],
      ["modules/b/z.ko", "file"],
      ["modules/link", "symlink"],
      ["vmlinux", "file"],
    ],
  );
  assert.ok(hs.every((h) => h.mtime.getTime() === 0 && h.uid === 0 && h.gid === 0 && !h.uname && !h.gname));
  assert.equal(hs.find((h) => h.name === "modules/b/z.ko")?.mode, 0o600);
  assert.equal(hs.find((h) => h.name === "modules/link")?.linkname, "b/z.ko");
});

test("only files, directories and symlinks are packed, and nothing is left on failure", async () => {
  const src = join(home.home, "fifo");
  mkdirSync(src);
  execFileSync("mkfifo", [join(src, "p")]);
  const out = join(home.home, "fifo.tar.zst");
  await assert.rejects(makeTarZst(src, ["p"], out), (err: BangerError) => err.code === ErrorCode.InvalidArgument && /only regular files, directories and symlinks/.test(err.message));
  await assert.rejects(makeTarZst(src, ["../etc"], out), /give paths inside/);
  assert.throws(() => readFileSync(out));
  assert.deepEqual(
    execFileSync("ls", ["-A", home.home])
      .toString()
      .split("\n")
      .filter((f) => f.includes("fifo.tar.zst")),
    [],
  );
});
