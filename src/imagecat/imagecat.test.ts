import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { before, test } from "node:test";
import { servedHome, sha256Hex } from "../../test/helpers.ts";
import { makeTarZst } from "../bundle/index.ts";
import { rawTarZst, type RawMember } from "../../test/kits/bundle.ts";
import { catalogOverride } from "../config/index.ts";
import { type BangerError, ErrorCode } from "../util/errors.ts";
import { type ImageCatalogEntry, loadCatalog, lookup, lookupName, parseCatalog, pullImageBundle } from "./index.ts";

const bed = servedHome();
let rootfs: Buffer;
let n = 0;
const manifest = { name: "debian-12", distro: "debian", arch: "x86_64", kernel_ref: "debian-6.1", description: "Debian 12", built_by: "make-bundle" };

before(() => {
  const img = join(bed.home, "rootfs.ext4");
  execFileSync("truncate", ["-s", "8M", img]);
  execFileSync("mkfs.ext4", ["-q", "-F", img]);
  rootfs = readFileSync(img);
});

function dirs() {
  const root = join(bed.home, `r${++n}`);
  return { root, imagesDir: join(root, "images"), cacheDir: join(root, "cache"), tmpDir: join(root, "tmp") };
}

async function imageBundle(files: Record<string, Buffer | string>): Promise<Buffer> {
  const src = join(bed.home, `isrc${++n}`);
  mkdirSync(src);
  for (const [name, content] of Object.entries(files)) writeFileSync(join(src, name), content);
  const out = join(bed.home, `i${n}.tar.zst`);
  await makeTarZst(src, Object.keys(files), out, { level: 3 });
  return readFileSync(out);
}

function entryFor(bundle: Buffer, name = "debian-12"): ImageCatalogEntry {
  const path = `/i${++n}.tar.zst`;
  bed.server.route(path, { body: bundle });
  return { name, kernel_ref: "debian-6.1", tarball_url: bed.server.url(path), tarball_sha256: sha256Hex(bundle), size_bytes: bundle.length };
}

test("the built-in catalog is valid and empty", async () => {
  assert.deepEqual(await loadCatalog(), { version: 1, entries: [] });
});

test("image pull through a URL override (BANGER_IMAGE_CATALOG): byte-identical rootfs and its manifest", async () => {
  const d = dirs();
  const entry = entryFor(await imageBundle({ "rootfs.ext4": rootfs, "manifest.json": JSON.stringify(manifest) }));
  bed.server.route("/images.json", { body: JSON.stringify({ version: 1, entries: [entry] }) });
  const override = catalogOverride("image", { image_catalog: "/ignored/when/env/set" }, { BANGER_IMAGE_CATALOG: bed.server.url("/images.json") });
  const found = lookup(await loadCatalog(override), "debian-12");
  assert.deepEqual(found, entry);
  const pulled = await pullImageBundle(found!, d);
  assert.equal(pulled.dir, join(d.imagesDir, "debian-12"));
  assert.equal(pulled.cached, false);
  assert.equal(sha256Hex(readFileSync(pulled.rootfs)), sha256Hex(rootfs));
  const { built_by: _unknown, ...known } = manifest;
  assert.deepEqual(pulled.manifest, known);
  assert.deepEqual(readdirSync(pulled.dir).sort(), ["manifest.json", "rootfs.ext4"]);
});

test("image pull by path override, under another name, from the cache the second time", async () => {
  const d = dirs();
  const entry = entryFor(await imageBundle({ "rootfs.ext4": rootfs, "manifest.json": JSON.stringify(manifest) }));
  const file = join(bed.home, `images${n}.json`);
  writeFileSync(file, JSON.stringify({ version: 1, entries: [entry] }));
  const found = lookupName(await loadCatalog(file), "debian-12")!;
  await pullImageBundle(found, d);
  const again = await pullImageBundle(found, { ...d, name: "mine" });
  assert.equal(again.cached, true);
  assert.equal(again.dir, join(d.imagesDir, "mine"));
  assert.equal(bed.server.hits(new URL(entry.tarball_url).pathname), 1);
});

async function assertRejected(members: RawMember[] | Buffer, message: RegExp) {
  const d = dirs();
  const entry = entryFor(Buffer.isBuffer(members) ? members : await rawTarZst(members));
  await assert.rejects(pullImageBundle(entry, d), (err: BangerError) => {
    assert.equal(err.code, ErrorCode.Integrity, err.message);
    assert.match(err.message, message);
    return true;
  });
  assert.deepEqual(existsSync(d.imagesDir) ? readdirSync(d.imagesDir) : [], []);
  assert.deepEqual(existsSync(d.cacheDir) ? readdirSync(join(d.cacheDir, "bundles")) : [], []);
  assert.deepEqual(existsSync(d.tmpDir) ? readdirSync(d.tmpDir) : [], []);
}

test("an image bundle holds exactly rootfs.ext4 and manifest.json, as regular files", async () => {
  const m = JSON.stringify(manifest);
  await assertRejected(
    [
      { name: "rootfs.ext4", content: rootfs },
      { name: "manifest.json", content: m },
      { name: "extra", content: "x" },
    ],
    /"extra": an image bundle holds only rootfs.ext4 and manifest.json/,
  );
  await assertRejected(
    [
      { name: "rootfs.ext4", type: "symlink", linkname: "manifest.json" },
      { name: "manifest.json", content: m },
    ],
    /"rootfs.ext4": rootfs.ext4 must be a regular file/,
  );
  await assertRejected([{ name: "manifest.json", content: m }], /image bundle: missing rootfs.ext4/);
  await assertRejected(
    [
      { name: "rootfs.ext4", content: rootfs },
      { name: "rootfs.ext4", content: rootfs },
    ],
    /duplicated member/,
  );
});

test("the manifest is validated and the rootfs must be ext4", async () => {
  const withManifest = (m: unknown, fs: Buffer = rootfs) => imageBundle({ "rootfs.ext4": fs, "manifest.json": typeof m === "string" ? m : JSON.stringify(m) });
  await assertRejected(await withManifest({ ...manifest, kernel_ref: "../k" }), /manifest.json: kernel_ref: expected a name/);
  await assertRejected(await withManifest({ distro: "x" }), /manifest.json: name: missing/);
  await assertRejected(await withManifest("[1,2"), /manifest.json: not valid JSON/);
  await assertRejected(await withManifest(manifest, Buffer.alloc(4096, 1)), /rootfs.ext4 is not an ext4 filesystem/);
});

test("an OCI reference is simply not in the catalog; image entries may carry kernel_ref", () => {
  const e = { name: "alpine", tarball_url: "https://example.org/a.tar.zst", tarball_sha256: "b".repeat(64), size_bytes: 1 };
  const catalog = parseCatalog(JSON.stringify({ version: 1, entries: [{ ...e, kernel_ref: "debian-6.1" }] }), "t");
  assert.equal(catalog.entries[0]?.kernel_ref, "debian-6.1");
  assert.equal(lookup(catalog, "docker.io/library/debian:12"), undefined);
  assert.throws(
    () => lookupName(catalog, "debian:12"),
    (err: BangerError) => err.code === ErrorCode.InvalidArgument,
  );
  assert.throws(() => parseCatalog(JSON.stringify({ version: 1, entries: [{ ...e, kernel_ref: "a b" }] }), "t"), /t: entries\[0\].kernel_ref: expected a name/);
});
