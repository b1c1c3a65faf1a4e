// The whole class of hostile names, through the real pipeline: tar -> (OCI layer flattening |
// docker-export extraction) -> ext4 via real mkfs.ext4 and debugfs. Member names, directory
// names, device/fifo names (debugfs mknod), symlink targets, hardlink targets and xattr names
// hold every control byte, debugfs commands after a newline or carriage return (`!cmd` runs a
// shell; `write`/`dump` copy host files in and out), quotes, backslashes, leading '-' and '!',
// "<N>" (debugfs's inode syntax) and shell metacharacters. Each is stored literally (read back
// from the image with debugfs) or refused with one clear line; canaries prove nothing ran on
// the host and no host file was read into the image; a refusal leaves nothing behind.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { BangerError } from "../util/errors.ts";
import { buildExt4, extractRootfsTar, flattenLayers, type Tree } from "./index.ts";
import { buildTar, type RawTarEntry } from "../../test/kits/tar.ts";

let root: string;
let canary: string;
let secret: string;
let dumped: string;
let n = 0;

before(() => {
  root = mkdtempSync(join(tmpdir(), "bgr-hostile-"));
  canary = join(root, "pwned");
  secret = join(root, "host-secret");
  dumped = join(root, "dumped");
  writeFileSync(secret, "HOST-SECRET-d41d8cd9\n");
});
after(() => rmSync(root, { recursive: true, force: true }));

const PIPELINES: Record<string, (tar: Buffer, staging: string) => Promise<Tree>> = {
  "OCI layer": (tar, staging) => flattenLayers([Readable.from([tar])], staging),
  "docker export": (tar, staging) => extractRootfsTar(Readable.from([tar]), staging),
};

/** Every byte refused in names: NUL, C0 controls and DEL. */
const CONTROL_BYTES = [...Array(0x20).keys(), 0x7f];

/** Strings that end a debugfs script line and then run a command. */
const injections = () => [`x\n!touch ${canary}\n`, `x\r!touch ${canary}`, `x\nwrite ${secret} /stolen\n`, `x\ndump /d/f ${dumped}\n`];

/** Strings that are legal in names and must come out byte for byte. */
const literals = () => [
  '"',
  'q""x"',
  "\\",
  '\\"',
  "'",
  "-",
  "--",
  "-f",
  `-f ${secret}`,
  "!x",
  `!touch ${canary}`,
  "#x",
  "<2>",
  "<12>",
  " lead",
  "trail ",
  `$(touch ${canary})`,
  `\`touch ${canary}\``,
  `; touch ${canary} &`,
  "*?[]{}~|&>",
  "write x y",
  "é☃\u0085\u00a0",
];

const pax = (records: Record<string, string>) => Object.fromEntries(Object.entries(records).map(([k, v]) => [k, Buffer.from(v)]));
const BASE: RawTarEntry[] = [
  { name: "d/", type: "5" },
  { name: "d/f", type: "0", data: Buffer.from("image file\n") },
];

/** Where a hostile string goes: the tar entries carrying `s` in that place. */
const PLACES: Record<string, (s: string) => RawTarEntry[]> = {
  "file name": (s) => [{ name: "p", type: "0", pax: pax({ path: `d/${s}` }), data: Buffer.from("x") }],
  "directory name": (s) => [{ name: "p", type: "5", pax: pax({ path: `d/${s}/` }) }],
  "fifo name": (s) => [{ name: "p", type: "6", pax: pax({ path: `d/${s}` }) }],
  "symlink target": (s) => [{ name: "d/l", type: "2", linkname: "x", pax: pax({ linkpath: s }) }],
  "hardlink target": (s) => [{ name: "d/h", type: "1", linkname: "x", pax: pax({ linkpath: `d/${s}` }) }],
  "xattr name": (s) => [{ name: "d/x", type: "0", pax: pax({ [`SCHILY.xattr.user.${s}`]: "v" }) }],
  "xattr name (dropped namespace)": (s) => [{ name: "d/y", type: "0", pax: pax({ [`SCHILY.xattr.trusted.${s}`]: "v" }) }],
};

/** Runs tar -> tree -> ext4 in a fresh directory; returns that directory's paths. */
async function toImage(pipeline: string, entries: RawTarEntry[]): Promise<{ staging: string; outDir: string; image: string }> {
  const dir = join(root, `case-${n++}`);
  const paths = { staging: join(dir, "staging"), outDir: join(dir, "out"), image: join(dir, "out", "rootfs.ext4") };
  mkdirSync(paths.outDir, { recursive: true });
  const tree = await PIPELINES[pipeline]!(buildTar([...BASE, ...entries]), paths.staging);
  await buildExt4(tree, paths.image);
  return paths;
}

/** Nothing ran on the host: no canary, no image file dumped out. */
function assertHostUntouched(): void {
  assert.equal(existsSync(canary), false, "a command ran on the host");
  assert.equal(existsSync(dumped), false, "an image file was dumped onto the host");
  assert.equal(existsSync(join(process.cwd(), "pwned")), false);
}

const hex = (b: number) => `0x${b.toString(16).padStart(2, "0")}`;

for (const pipeline of Object.keys(PIPELINES)) {
  describe(`${pipeline}: control bytes and debugfs commands in names are refused with one line`, () => {
    for (const [place, entries] of Object.entries(PLACES)) {
      it(`in a ${place}`, async () => {
        const cases = [...injections().map((s) => ({ s, byte: s.includes("\n") ? 0x0a : 0x0d })), ...CONTROL_BYTES.map((b) => ({ s: `a${String.fromCharCode(b)}b`, byte: b }))];
        for (const { s, byte } of cases) {
          const dir = join(root, `case-${n}`);
          await assert.rejects(toImage(pipeline, entries(s)), (err: unknown) => {
            assertHostUntouched();
            assert.ok(err instanceof BangerError, `${JSON.stringify(s)}: ${String(err)}`);
            assert.match(err.message, new RegExp(`control byte ${hex(byte)}`), JSON.stringify(s));
            assert.doesNotMatch(`${err.message}${err.hint ?? ""}`, /[\x00-\x1f\x7f-\x9f]/, "one printable line");
            return true;
          });
          assert.equal(existsSync(join(dir, "staging")), false, "staging removed");
          assert.deepEqual(readdirSync(join(dir, "out")), [], "no image or work files left");
          assertHostUntouched();
        }
      });
    }
  });

  describe(`${pipeline}: quotes, backslashes, leading '-' and '!', '<N>' and shell metacharacters are stored literally`, () => {
    let image: string;
    const ls = literals();
    before(async () => {
      const entries = ls.flatMap((s, i): RawTarEntry[] => [
        { name: "p", type: "0", mode: 0o4755, uid: 1234, pax: pax({ path: `d/${s}`, [`SCHILY.xattr.user.${s}`]: `value ${i}` }), data: Buffer.from(`file ${i}\n`) },
        { name: "p", type: "6", mode: 0o640, uid: 4321, pax: pax({ path: `fifo/${s}` }) },
        { name: `link/${i}`, type: "2", linkname: "x", pax: pax({ linkpath: s }) },
        { name: "p", type: "1", linkname: "x", pax: pax({ path: `hard/${s}`, linkpath: `d/${s}` }) },
      ]);
      ({ image } = await toImage(pipeline, [{ name: "fifo/", type: "5" }, { name: "link/", type: "5" }, { name: "hard/", type: "5" }, ...entries]));
    });

    it("files keep their names, owners, setuid modes and xattr names", () => {
      for (const [i, s] of ls.entries()) {
        const st = stat(image, `/d/${s}`);
        assert.match(st, /Type: regular\s+Mode:\s+04755/, JSON.stringify(s));
        assert.match(st, /User:\s+1234\s/, JSON.stringify(s));
        assert.equal(xattr(image, `/d/${s}`, `user.${s}`), `value ${i}`, JSON.stringify(s));
      }
    });

    it("fifos (debugfs mknod) keep their names", () => {
      for (const s of ls) assert.match(stat(image, `/fifo/${s}`), /Type: FIFO\s+Mode:\s+0640/, JSON.stringify(s));
    });

    it("symlinks keep their targets and hardlinks share their target's inode", () => {
      for (const [i, s] of ls.entries()) {
        assert.equal(/Fast link dest: "(.*)"\n/.exec(stat(image, `/link/${i}`))?.[1], s);
        assert.equal(inode(stat(image, `/hard/${s}`)), inode(stat(image, `/d/${s}`)), JSON.stringify(s));
      }
    });

    it("ran nothing on the host and read no host file into the image", () => {
      assertHostUntouched();
      assert.doesNotMatch(debugfs(image, "ls -p /"), /stolen/);
      assert.doesNotMatch(readFileSync(image).toString("latin1"), /HOST-SECRET-d41d8cd9/);
    });
  });
}

describe("the debugfs script writer refuses what the name rule should have stopped (second wall)", () => {
  const hostile: Array<[string, (t: Tree) => void]> = [
    ["a path with a newline command", (t) => t.entries.set("a\n!touch CANARY", { path: "a\n!touch CANARY", type: "fifo", uid: 0, gid: 0, mode: 0o644, mtime: 0 })],
    ["an xattr name with a newline command", (t) => (t.entries.get("f")!.xattrs = { "user.x\n!touch CANARY": Buffer.from("v") })],
    ["an xattr name that reads as an option", (t) => (t.entries.get("f")!.xattrs = { "-f/etc/shadow": Buffer.from("v") })],
    ["a device name that is '..'", (t) => t.entries.set("..", { path: "..", type: "fifo", uid: 0, gid: 0, mode: 0o644, mtime: 0 })],
    [
      "a line longer than fgets reads",
      (t) => t.entries.set(`${'"'.repeat(250)}/`.repeat(16).slice(0, -1), { path: `${'"'.repeat(250)}/`.repeat(16).slice(0, -1), type: "fifo", uid: 0, gid: 0, mode: 0o644, mtime: 0 }),
    ],
  ];
  for (const [what, poison] of hostile) {
    it(what, async () => {
      const dir = join(root, `case-${n++}`);
      const staging = join(dir, "staging");
      mkdirSync(join(dir, "out"), { recursive: true });
      mkdirSync(staging);
      writeFileSync(join(staging, "f"), "x");
      const tree: Tree = { dir: staging, entries: new Map([["f", { path: "f", type: "file", uid: 1234, gid: 0, mode: 0o644, mtime: 0 }]]) };
      poison(tree);
      for (const e of tree.entries.values()) e.path = e.path.replace("CANARY", canary);
      await assert.rejects(buildExt4(tree, join(dir, "out", "rootfs.ext4")), (err: unknown) => {
        assertHostUntouched();
        assert.ok(err instanceof BangerError, String(err));
        assert.match(err.message, /refusing to put .* in a debugfs script|too long for the image builder/);
        assert.doesNotMatch(err.message, /[\x00-\x1f\x7f]/);
        return true;
      });
      assert.deepEqual(readdirSync(join(dir, "out")), [], "no image or work files left");
      assertHostUntouched();
    });
  }
});

function debugfs(image: string, request: string): string {
  return execFileSync("debugfs", ["-R", request, image], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** A debugfs argument: quoted, '"' doubled (how debugfs's parser reads it). */
const q = (s: string) => `"${s.replace(/"/g, '""')}"`;

function stat(image: string, path: string): string {
  const out = debugfs(image, `stat ${q(path)}`);
  assert.match(out, /^Inode: \d+/, `${JSON.stringify(path)} is in the image`);
  return out;
}

const inode = (statText: string) => /^Inode: (\d+)/.exec(statText)?.[1];

function xattr(image: string, path: string, name: string): string | undefined {
  const out = join(root, `xattr-${n++}`);
  debugfs(image, `ea_get -f ${q(out)} -- ${q(path)} ${q(name)}`);
  return existsSync(out) ? readFileSync(out, "utf8") : undefined;
}
