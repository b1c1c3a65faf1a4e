// The hostile-name class through a real bundle pull (zstd, the unpacker thread, the member
// checks): member names and symlink targets holding every control byte or a newline followed
// by a command are refused with one printable line and leave nothing; quotes, backslashes,
// leading '-' and '!', '<N>' and shell metacharacters are written literally.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";
import { pathToFileURL } from "node:url";
import { makeTempHome, sha256Hex } from "../../test/helpers.ts";
import { BangerError, ErrorCode } from "../util/errors.ts";
import { type BundleRules, fetchBundle } from "./index.ts";
import { rawTarZst, type RawMember } from "../../test/kits/bundle.ts";

const anything: BundleRules = { kind: "test bundle", check: () => undefined, required: [], maxDecodedBytes: 64 * 1024 ** 3, maxMembers: 200_000 };
const { home, cleanup } = makeTempHome();
after(cleanup);
let n = 0;

const CONTROL_BYTES = [...Array(0x20).keys(), 0x7f];
const canary = join(home, "pwned");

/** Pulls a bundle of `members` from a file URL into a fresh root; returns the root and the result. */
async function pull(members: RawMember[]) {
  const root = join(home, `r${++n}`);
  mkdirSync(root);
  const bytes = await rawTarZst(members);
  const file = join(home, `b${n}.tar.zst`);
  writeFileSync(file, bytes);
  const destDir = join(root, "dest", "bundle");
  const run = fetchBundle({ url: pathToFileURL(file).href, sha256: sha256Hex(bytes), sizeBytes: bytes.length, destDir, cacheDir: join(root, "cache"), tmpDir: join(root, "tmp"), rules: anything });
  return { root, destDir, run };
}

/** Files left under `root` (verified downloads in the cache are allowed to stay). */
function leftovers(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (!p.includes(`${join(root, "cache", "bundles")}/`)) out.push(p);
    }
  };
  walk(root);
  return out;
}

test("control bytes and debugfs/shell commands in member names and symlink targets are refused with one line", async () => {
  const strings = [`x\n!touch ${canary}\n`, `x\rwrite /etc/passwd x`, ...CONTROL_BYTES.map((b) => `a${String.fromCharCode(b)}b`)];
  // Past ustar's 100 bytes, so the names travel in PAX records (a ustar field cannot hold a NUL).
  const long = "p".repeat(100);
  for (const s of strings) {
    for (const members of [[{ name: `d/${long}${s}`, content: "x" }], [{ name: "l", type: "symlink" as const, linkname: `${long}${s}` }]]) {
      const { root, destDir, run } = await pull(members);
      await assert.rejects(run, (err: unknown) => {
        assert.ok(err instanceof BangerError, `${JSON.stringify(s)}: ${String(err)}`);
        assert.equal(err.code, ErrorCode.Integrity);
        assert.match(err.message, /contains the control byte 0x[0-9a-f]{2}/, JSON.stringify(s));
        assert.doesNotMatch(`${err.message}${err.hint ?? ""}`, /[\x00-\x1f\x7f-\x9f]/, "one printable line");
        return true;
      });
      assert.equal(existsSync(destDir), false);
      assert.deepEqual(leftovers(root), [], JSON.stringify(s));
      assert.equal(existsSync(canary), false);
    }
  }
});

test("quotes, backslashes, leading '-' and '!', '<N>' and shell metacharacters are written literally", async () => {
  const names = ['"', '\\"', "-f", "--", "!x", "#x", "<2>", " lead", "trail ", `$(touch ${canary.replaceAll("/", "_")})`, "*?[]{}~|&>", "é☃\u0085"];
  const members: RawMember[] = names.flatMap((s, i): RawMember[] => [
    { name: `d/${s}`, content: `file ${i}` },
    { name: `l/${i}`, type: "symlink", linkname: `../d/${s}` },
  ]);
  const { destDir, run } = await pull(members);
  await run;
  assert.deepEqual(readdirSync(join(destDir, "d")).sort(), [...names].sort());
  for (const [i, s] of names.entries()) {
    assert.equal(readFileSync(join(destDir, "d", s), "utf8"), `file ${i}`);
    assert.equal(readlinkSync(join(destDir, "l", String(i))), `../d/${s}`);
  }
  assert.equal(existsSync(canary), false);
});

test("a member path the host cannot stage (past PATH_MAX under the staging directory): the error shows it escaped", async () => {
  const H = "\u009b2J\u0085";
  const deep = `${Array(16)
    .fill(`${H}${"d".repeat(247)}`)
    .join("/")}/${"f".repeat(26)}`; // 4090 bytes: within the name rule
  for (const members of [
    [{ name: deep, content: "x" }],
    [
      { name: `${deep.slice(0, -27)}/`, type: "directory" as const },
      { name: deep, content: "x" },
    ],
  ] as RawMember[][]) {
    const { root, destDir, run } = await pull(members);
    await assert.rejects(run, (err: unknown) => {
      assert.match(String((err as Error).message), /ENAMETOOLONG/);
      assert.doesNotMatch((err as Error).message, /[\x00-\x1f\x7f-\x9f]/, "one printable line");
      return true;
    });
    assert.equal(existsSync(destDir), false);
    assert.deepEqual(leftovers(root), []);
  }
});
