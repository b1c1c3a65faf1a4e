import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, readlinkSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { test } from "node:test";
import { pathToFileURL } from "node:url";
import { servedHome, sha256Hex } from "../../test/helpers.ts";
import { runChecked } from "../util/exec.ts";
import { BangerError, ErrorCode } from "../util/errors.ts";
import type { ProgressEvent } from "../util/progress.ts";
import { type BundleRules, bundleCachePath, fetchBundle, type FetchBundleOptions, makeTarZst } from "./index.ts";
import { rawTarZst, type RawMember, type TestServer, zstdCompress } from "../../test/kits/bundle.ts";

const anything: BundleRules = { kind: "test bundle", check: () => undefined, required: [], maxDecodedBytes: 64 * 1024 ** 3, maxMembers: 200_000 };
const imageLike: BundleRules = {
  kind: "image bundle",
  check: (m) => (["rootfs.ext4", "manifest.json"].includes(m.path) && m.type === "file" ? undefined : "not part of an image bundle"),
  required: ["rootfs.ext4", "manifest.json"],
  maxDecodedBytes: 64 * 1024 ** 3,
  maxMembers: 8,
};

const bed = servedHome();
let n = 0;

/** A fresh root for one test: dest, cache and tmp under it, so "nothing left" is checkable. */
function freshRoot() {
  const root = join(bed.home, `t${++n}`);
  mkdirSync(root);
  return { root, destDir: join(root, "dest", "bundle"), cacheDir: join(root, "cache"), tmpDir: join(root, "tmp") };
}

/** Serves `bytes` at a fresh path and returns fetch options for it (declared sha and size are the real ones unless overridden). */
function serve(bytes: Buffer, route: Parameters<TestServer["route"]>[1] = {}) {
  const path = `/b${++n}.tar.zst`;
  bed.server.route(path, { body: bytes, ...route });
  return { path, url: bed.server.url(path), sha256: sha256Hex(bytes), sizeBytes: bytes.length };
}

function opts(src: { url: string; sha256: string; sizeBytes: number }, root: ReturnType<typeof freshRoot>, extra: Partial<FetchBundleOptions<undefined>> = {}): FetchBundleOptions<undefined> {
  return { ...src, destDir: root.destDir, cacheDir: root.cacheDir, tmpDir: root.tmpDir, rules: anything, ...extra };
}

/** Every file and directory left under `root`, relative, skipping empty scaffolding directories. */
function leftovers(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      if (statSync(p, { throwIfNoEntry: false })?.isDirectory() && !statSync(p).isSymbolicLink()) walk(p);
      else out.push(relative(root, p));
    }
  };
  walk(root);
  return out.sort();
}

async function assertFails(promise: Promise<unknown>, code: ErrorCode, message: RegExp): Promise<BangerError> {
  const err = await promise.then(
    () => assert.fail("expected the pull to fail"),
    (e: unknown) => e,
  );
  assert.ok(err instanceof BangerError, `not a BangerError: ${String(err)}`);
  assert.match(err.message, message);
  assert.equal(err.code, code, err.message);
  assert.equal(err.message.includes("\n"), false, "one line");
  return err;
}

async function evil(members: RawMember[]) {
  return serve(await rawTarZst(members));
}

async function packedBundle(): Promise<Buffer> {
  const src = join(bed.home, `src${++n}`);
  mkdirSync(join(src, "sub"), { recursive: true });
  writeFileSync(join(src, "a.txt"), "hello\n");
  // Zero blocks (written as holes) between data, as in an ext4 image.
  writeFileSync(join(src, "sub", "disk.img"), Buffer.concat([Buffer.from("head"), Buffer.alloc(1 << 20), Buffer.from("tail")]), { mode: 0o755 });
  symlinkSync("sub/disk.img", join(src, "link"));
  const out = join(bed.home, `out${n}.tar.zst`);
  await makeTarZst(src, ["a.txt", "sub", "link"], out, { level: 3 });
  return readFileSync(out);
}

test("a bundle is downloaded, verified, extracted and published with progress", async () => {
  const root = freshRoot();
  const src = serve(await packedBundle());
  const events: ProgressEvent[] = [];
  const got = await fetchBundle(opts(src, root, { progress: (e) => events.push(e) }));
  assert.equal(got.cached, false);
  assert.equal(got.members, 4);
  assert.equal(readFileSync(join(root.destDir, "a.txt"), "utf8"), "hello\n");
  const disk = readFileSync(join(root.destDir, "sub", "disk.img"));
  assert.equal(disk.length, 4 + (1 << 20) + 4);
  assert.equal(disk.subarray(-4).toString(), "tail");
  assert.ok(statSync(join(root.destDir, "sub", "disk.img")).blocks * 512 < 1 << 20, "zero blocks are holes");
  assert.equal(statSync(join(root.destDir, "sub", "disk.img")).mode & 0o777, 0o755);
  assert.equal(readlinkSync(join(root.destDir, "link")), "sub/disk.img");
  assert.equal(events[0]?.phase, "download");
  assert.deepEqual(events.filter((e) => e.phase === "download").at(-1), { phase: "download", done: src.sizeBytes, total: src.sizeBytes });
  assert.equal(events.at(-1)?.phase, "extract");
  assert.deepEqual(leftovers(root.root), [`cache/bundles/${src.sha256}.tar.zst`, "dest/bundle/a.txt", "dest/bundle/link", "dest/bundle/sub/disk.img"]);
});

test("a second pull of the same bundle comes from the cache without any request", async () => {
  const root = freshRoot();
  const src = serve(await packedBundle());
  await fetchBundle(opts(src, root));
  assert.equal(bed.server.hits(src.path), 1);
  const events: ProgressEvent[] = [];
  const again = await fetchBundle(opts(src, root, { destDir: join(root.root, "dest", "again"), progress: (e) => events.push(e) }));
  assert.equal(again.cached, true);
  assert.equal(bed.server.hits(src.path), 1);
  assert.equal(events[0]?.message, "cached");
  assert.equal(readFileSync(join(root.root, "dest", "again", "a.txt"), "utf8"), "hello\n");
});

test("a corrupted cache entry is detected, dropped, and the pull fails cleanly", async () => {
  const root = freshRoot();
  const src = serve(await packedBundle());
  await fetchBundle(opts(src, root));
  const cached = bundleCachePath(root.cacheDir, src.sha256);
  const bytes = readFileSync(cached);
  bytes.writeUInt8(bytes.readUInt8(bytes.length - 10) ^ 0xff, bytes.length - 10);
  writeFileSync(cached, bytes);
  await assertFails(fetchBundle(opts(src, root, { destDir: join(root.root, "dest", "x") })), ErrorCode.Integrity, /cached bundle .*sha256 mismatch|not a valid/);
  assert.deepEqual(
    leftovers(root.root).filter((p) => !p.startsWith("dest/bundle/")),
    [],
  );
});

test("file:// URLs and redirects work like http", async () => {
  const bytes = await packedBundle();
  const file = join(bed.home, `mirror${++n}.tar.zst`);
  writeFileSync(file, bytes);
  const root = freshRoot();
  await fetchBundle(opts({ url: pathToFileURL(file).href, sha256: sha256Hex(bytes), sizeBytes: bytes.length }, root));
  assert.equal(readFileSync(join(root.destDir, "a.txt"), "utf8"), "hello\n");
  const target = serve(bytes);
  bed.server.route("/moved", { redirectTo: target.url });
  const root2 = freshRoot();
  await fetchBundle(opts({ ...target, url: bed.server.url("/moved") }, root2));
  assert.equal(readFileSync(join(root2.destDir, "a.txt"), "utf8"), "hello\n");
});

// Each way a bundle can be bad: one clear error, nothing under the root afterwards.
const hostile: Array<[string, RawMember[], RegExp, BundleRules?]> = [
  ["absolute member path", [{ name: "/etc/passwd", content: "x" }], /test bundle: member "\/etc\/passwd" is absolute/],
  ["member escaping after normalisation", [{ name: "a/../../x", content: "x" }], /member "a\/\.\.\/\.\.\/x" has a "\.\." component/],
  ["symlink escaping the target", [{ name: "l", type: "symlink", linkname: "../../etc/shadow" }], /member "l": symlink target "..\/..\/etc\/shadow" escapes the root/],
  ["absolute symlink", [{ name: "l", type: "symlink", linkname: "/etc/shadow" }], /symlink target "\/etc\/shadow" is absolute/],
  [
    "symlink escaping through another symlink",
    [
      { name: "a", type: "symlink", linkname: "." },
      { name: "b", type: "symlink", linkname: "a/.." },
    ],
    /"b": symlink target "a\/.." escapes/,
  ],
  [
    "file written through a symlink",
    [
      { name: "d", type: "symlink", linkname: "." },
      { name: "d/x", content: "x" },
    ],
    /"d\/x": member is beneath symlink "d"/,
  ],
  [
    "hardlink",
    [
      { name: "f", content: "x" },
      { name: "h", type: "link", linkname: "f" },
    ],
    /"h": hardlinks are not allowed/,
  ],
  ["character device", [{ name: "null", type: "character-device" }], /device nodes are not allowed/],
  ["block device", [{ name: "sda", type: "block-device" }], /device nodes are not allowed/],
  ["fifo", [{ name: "p", type: "fifo" }], /fifos are not allowed/],
  [
    "duplicated member",
    [
      { name: "f", content: "one" },
      { name: "./f", content: "two" },
    ],
    /"\.\/f": duplicated member/,
  ],
  [
    "member outside the caller's rules",
    [
      { name: "rootfs.ext4", content: "x" },
      { name: "manifest.json", content: "{}" },
      { name: "evil.sh", content: "x" },
    ],
    /image bundle: member "evil.sh": not part of an image bundle/,
    imageLike,
  ],
  ["directory where the rules want a file", [{ name: "rootfs.ext4", type: "directory" }], /"rootfs.ext4": not part of an image bundle/, imageLike],
  ["required file missing", [{ name: "rootfs.ext4", content: "x" }], /image bundle: missing manifest.json/, imageLike],
];

for (const [what, members, message, rules] of hostile) {
  test(`rejects a bundle with a ${what}`, async () => {
    const root = freshRoot();
    const src = await evil(members);
    await assertFails(fetchBundle(opts(src, root, { rules: rules ?? anything })), ErrorCode.Integrity, message);
    assert.deepEqual(leftovers(root.root), []);
  });
}

test("rejects a body longer than size_bytes, stopping the read", async () => {
  const bytes = await packedBundle();
  const root = freshRoot();
  // Chunked: the server does not announce the size, so the client must count.
  const src = serve(Buffer.concat([bytes, Buffer.alloc(1 << 20)]), { chunked: true });
  await assertFails(fetchBundle(opts({ ...src, sizeBytes: bytes.length, sha256: sha256Hex(bytes) }, root)), ErrorCode.Integrity, /more than the declared \d+ bytes/);
  assert.deepEqual(leftovers(root.root), []);
  const announced = serve(Buffer.concat([bytes, Buffer.alloc(10)]));
  await assertFails(fetchBundle(opts({ ...announced, sizeBytes: bytes.length }, root)), ErrorCode.Integrity, /size is \d+ bytes, the catalog says \d+/);
  assert.deepEqual(leftovers(root.root), []);
});

test("rejects a bundle that decodes beyond the uncompressed cap", async () => {
  const root = freshRoot();
  const src = await evil([{ name: "zeros", content: Buffer.alloc(4 << 20) }]);
  assert.ok(src.sizeBytes < 4096, "highly compressible");
  await assertFails(fetchBundle(opts(src, root, { maxUncompressedBytes: 1 << 20 })), ErrorCode.Integrity, /decodes to more than 1048576 bytes \(decompression bomb cap\)/);
  assert.deepEqual(leftovers(root.root), []);
});

test("rejects a sha256 mismatch and keeps nothing in the cache", async () => {
  const root = freshRoot();
  const src = serve(await packedBundle());
  await assertFails(fetchBundle(opts({ ...src, sha256: "0".repeat(64) }, root)), ErrorCode.Integrity, /sha256 mismatch: got [0-9a-f]{64}, expected 0{64}/);
  assert.deepEqual(leftovers(root.root), []);
});

/** A tar of a tree with paths and a symlink target past ustar's 100 bytes, made by GNU tar. */
async function longNamesTar(format: "gnu" | "pax"): Promise<{ tar: Buffer; deepFile: string; linkTarget: string }> {
  const src = join(bed.home, `long${++n}`);
  const deepDir = Array.from({ length: 6 }, (_, i) => `directory-with-a-long-name-${i}`).join("/");
  const deepFile = `${deepDir}/file-whose-own-name-is-also-rather-long-${"x".repeat(60)}.txt`;
  mkdirSync(join(src, deepDir), { recursive: true });
  writeFileSync(join(src, deepFile), "deep\n");
  symlinkSync(deepFile, join(src, "shortcut"));
  const out = join(bed.home, `long${n}.tar`);
  await runChecked(["tar", `--format=${format}`, "-C", src, "-cf", out, "."]);
  return { tar: readFileSync(out), deepFile, linkTarget: deepFile };
}

for (const format of ["gnu", "pax"] as const) {
  test(`long member names and link targets (${format} format) arrive intact`, async () => {
    const root = freshRoot();
    const made = await longNamesTar(format);
    assert.ok(made.deepFile.length > 255, "longer than ustar's name + prefix");
    await fetchBundle(opts(serve(await zstdCompress(made.tar)), root));
    assert.equal(readFileSync(join(root.destDir, made.deepFile), "utf8"), "deep\n");
    assert.equal(readlinkSync(join(root.destDir, "shortcut")), made.linkTarget);
  });
}

test("a damaged tar header and a cut-off archive are refused and leave nothing", async () => {
  const { tar } = await longNamesTar("gnu");
  const damaged = Buffer.from(tar);
  damaged[1] = damaged[1]! ^ 0x20; // the first header's name: its checksum no longer matches
  const root = freshRoot();
  await assertFails(fetchBundle(opts(serve(await zstdCompress(damaged)), root)), ErrorCode.Integrity, /not a valid tar archive: tar header checksum mismatch/);
  const cut = tar.subarray(0, tar.length - 20 * 512 - 700); // valid zstd of a tar that stops mid-member
  await assertFails(fetchBundle(opts(serve(await zstdCompress(cut)), root)), ErrorCode.Integrity, /not a valid tar archive: unexpected end of archive/);
  assert.deepEqual(leftovers(root.root), []);
});

test("HTTP errors are clear and leave nothing", async () => {
  const root = freshRoot();
  const bytes = await packedBundle();
  for (const status of [404, 500]) {
    const src = serve(bytes, { status });
    await assertFails(fetchBundle(opts(src, root)), ErrorCode.Unavailable, new RegExp(`GET http://127.0.0.1:\\d+/b\\d+.tar.zst: HTTP ${status}$`));
  }
  assert.deepEqual(leftovers(root.root), []);
});

test("a truncated body is an error, with or without Content-Length", async () => {
  const bytes = await rawTarZst([{ name: "rand", content: randomBytes(256 << 10) }]);
  for (const chunked of [false, true]) {
    const root = freshRoot();
    const src = serve(bytes, { truncateAt: 65536 + 1000, chunked });
    await assertFails(fetchBundle(opts(src, root)), ErrorCode.Unavailable, /download cut short after \d+ of 26\d+ bytes/);
    assert.deepEqual(leftovers(root.root), []);
  }
});

test("garbage that is not zstd fails as such", async () => {
  const root = freshRoot();
  const src = serve(Buffer.from("this is not a zstd frame at all".repeat(10)));
  await assertFails(fetchBundle(opts(src, root)), ErrorCode.Integrity, /bundle is not a valid zstd stream/);
  assert.deepEqual(leftovers(root.root), []);
});

test("cancelling mid-download stops at once and leaves nothing", async () => {
  const root = freshRoot();
  const big = await rawTarZst([{ name: "rand", content: randomBytes(4 << 20) }]);
  const src = serve(big, { delayMs: 20 });
  const ac = new AbortController();
  const started = Date.now();
  const pull = fetchBundle(opts(src, root, { signal: ac.signal, progress: (e) => e.phase === "download" && (e.done ?? 0) > 0 && ac.abort() }));
  await assertFails(pull, ErrorCode.Cancelled, /cancelled/);
  assert.ok(Date.now() - started < 1000, "stopped long before the ~1.3 s transfer would end");
  assert.deepEqual(leftovers(root.root), []);
});

test("refuses an existing destination and bad arguments before any I/O", async () => {
  const root = freshRoot();
  mkdirSync(root.destDir, { recursive: true });
  const src = serve(Buffer.from("x"));
  await assertFails(fetchBundle(opts(src, root)), ErrorCode.AlreadyExists, /already exists/);
  await assertFails(fetchBundle(opts({ ...src, sha256: "abc" }, root)), ErrorCode.InvalidArgument, /sha256 must be 64 hex chars/);
  await assertFails(fetchBundle(opts({ ...src, url: "ftp://x/y" }, root)), ErrorCode.InvalidArgument, /unsupported URL scheme ftp:/);
  assert.equal(bed.server.hits(src.path), 0);
});

test("a missing zstd binary names the package to install", async () => {
  const root = freshRoot();
  const src = serve(Buffer.from("x"));
  const saved = process.env.PATH;
  process.env.PATH = join(root.root, "empty");
  try {
    const err = await assertFails(fetchBundle(opts(src, root)), ErrorCode.MissingDependency, /zstd not found/);
    assert.equal(err.hint, "install it: apt-get install -y zstd");
  } finally {
    process.env.PATH = saved;
  }
});
