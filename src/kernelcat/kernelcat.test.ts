import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { servedHome, sha256Hex } from "../../test/helpers.ts";
import { makeTarZst, rawTarZst, type RawMember } from "../bundle/index.ts";
import { BangerError, ErrorCode } from "../util/errors.ts";
import { loadCatalog, lookup, parseCatalog, pullKernelBundle } from "./index.ts";

const bed = servedHome();
let n = 0;
const vmlinux = randomBytes(64 * 1024);

function dirs() {
  const root = join(bed.home, `r${++n}`);
  return { root, kernelsDir: join(root, "kernels"), cacheDir: join(root, "cache"), tmpDir: join(root, "tmp") };
}

async function kernelBundle(): Promise<Buffer> {
  const src = join(bed.home, `ksrc${++n}`);
  mkdirSync(join(src, "modules", "6.1.0", "kernel", "drivers"), { recursive: true });
  writeFileSync(join(src, "vmlinux"), vmlinux);
  writeFileSync(join(src, "initrd.img"), "initrd");
  writeFileSync(join(src, "modules", "6.1.0", "kernel", "drivers", "virtio_blk.ko"), "ko");
  writeFileSync(join(src, "modules", "6.1.0", "modules.dep"), "kernel/drivers/virtio_blk.ko:\n");
  symlinkSync("kernel/drivers", join(src, "modules", "6.1.0", "drivers"));
  const out = join(bed.home, `k${n}.tar.zst`);
  await makeTarZst(src, ["vmlinux", "initrd.img", "modules"], out, { level: 3 });
  return readFileSync(out);
}

/** Serves `bundle` and a catalog listing it; returns the catalog URL and the bundle's path. */
function publish(bundle: Buffer, name = "debian-6.1") {
  const path = `/k${++n}.tar.zst`;
  bed.server.route(path, { body: bundle });
  const catalog = {
    version: 1,
    entries: [{ name, distro: "debian", arch: "x86_64", kernel_version: "6.1.0-18-cloud-amd64", tarball_url: bed.server.url(path), tarball_sha256: sha256Hex(bundle), size_bytes: bundle.length, description: "Debian 12 cloud kernel" }],
  };
  bed.server.route(`/catalog${n}.json`, { body: JSON.stringify(catalog) });
  return { catalogUrl: bed.server.url(`/catalog${n}.json`), path };
}

test("the built-in catalog is valid and empty", async () => {
  assert.deepEqual(await loadCatalog(), { version: 1, entries: [] });
  assert.deepEqual(await loadCatalog(""), { version: 1, entries: [] });
});

test("kernel pull through a URL override: files, manifest with recomputed sha256, cache on retry", async () => {
  const d = dirs();
  const { catalogUrl, path } = publish(await kernelBundle());
  const catalog = await loadCatalog(catalogUrl);
  const entry = lookup(catalog, "debian-6.1");
  assert.ok(entry);
  const manifest = await pullKernelBundle(entry, d);
  const dir = join(d.kernelsDir, "debian-6.1");
  assert.deepEqual({ ...manifest, pulled_at: "" }, {
    name: "debian-6.1",
    source: `pull:${entry.tarball_url}`,
    vmlinux_sha256: sha256Hex(vmlinux),
    kernel_version: "6.1.0-18-cloud-amd64",
    distro: "debian",
    arch: "x86_64",
    has_initrd: true,
    modules: true,
    pulled_at: "",
  });
  assert.ok(!Number.isNaN(Date.parse(manifest.pulled_at)));
  assert.deepEqual(JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8")), manifest);
  assert.deepEqual(readFileSync(join(dir, "vmlinux")), vmlinux);
  assert.equal(readlinkSync(join(dir, "modules", "6.1.0", "drivers")), "kernel/drivers");
  assert.deepEqual(readdirSync(d.kernelsDir), ["debian-6.1"]);

  // The daemon's --force removes the directory and pulls again: no second download.
  rmSync(dir, { recursive: true });
  await pullKernelBundle(entry, d);
  assert.equal(bed.server.hits(path), 1);
});

test("kernel pull through a path override with a relative tarball_url (a mirror on disk)", async () => {
  const d = dirs();
  const mirror = join(bed.home, `mirror${++n}`);
  mkdirSync(mirror);
  const bundle = await kernelBundle();
  writeFileSync(join(mirror, "k.tar.zst"), bundle);
  const entry = { name: "k1", kernel_version: "6.1.0", tarball_url: "k.tar.zst", tarball_sha256: sha256Hex(bundle), size_bytes: bundle.length };
  writeFileSync(join(mirror, "catalog.json"), JSON.stringify({ version: 1, entries: [entry] }));
  const catalog = await loadCatalog(join(mirror, "catalog.json"));
  assert.equal(catalog.entries[0]?.tarball_url, `file://${mirror}/k.tar.zst`);
  const manifest = await pullKernelBundle(catalog.entries[0]!, d);
  assert.equal(manifest.has_initrd, true);
  assert.equal(manifest.distro, undefined);
});

async function assertRejected(members: RawMember[], message: RegExp) {
  const d = dirs();
  const { catalogUrl } = publish(await rawTarZst(members), "bad");
  const entry = lookup(await loadCatalog(catalogUrl), "bad")!;
  await assert.rejects(pullKernelBundle(entry, d), (err: BangerError) => {
    assert.equal(err.code, ErrorCode.Integrity);
    assert.match(err.message, message);
    return true;
  });
  assert.equal(existsSync(join(d.kernelsDir, "bad")), false);
  assert.deepEqual(existsSync(d.kernelsDir) ? readdirSync(d.kernelsDir) : [], []);
  assert.deepEqual(existsSync(d.cacheDir) ? readdirSync(join(d.cacheDir, "bundles")) : [], []);
}

test("kernel bundles hold only vmlinux, initrd.img and modules/", async () => {
  await assertRejected([{ name: "vmlinux", content: "k" }, { name: "etc/passwd", content: "x" }], /kernel bundle: member "etc\/passwd": not part of a kernel bundle/);
  await assertRejected([{ name: "initrd.img", content: "i" }], /kernel bundle: missing vmlinux/);
  await assertRejected([{ name: "vmlinux", type: "symlink", linkname: "initrd.img" }], /"vmlinux": vmlinux must be a regular file/);
  await assertRejected([{ name: "vmlinux", content: "k" }, { name: "modules/build", type: "symlink", linkname: "/usr/src/linux" }], /"modules\/build": symlink target "\/usr\/src\/linux" is absolute/);
  await assertRejected([{ name: "vmlinux", content: "k" }, { name: "modules/x", type: "symlink", linkname: "../../x" }], /escapes the root/);
  await assertRejected([{ name: "vmlinux", content: "" }], /vmlinux is empty/);
});

const good = { name: "k", kernel_version: "6.1", tarball_url: "https://example.org/k.tar.zst", tarball_sha256: "a".repeat(64), size_bytes: 10 };
const malformed: Array<[unknown, string]> = [
  [{ version: 2, entries: [] }, "version: expected 1, got 2"],
  [{ version: 1 }, "entries: expected a list"],
  [{ version: 1, entries: [good, { ...good, name: "k2", tarball_sha256: "abc" }] }, "entries[1].tarball_sha256: expected 64 hex chars"],
  [{ version: 1, entries: [{ ...good, kernel_version: undefined }] }, "entries[0].kernel_version: missing"],
  [{ version: 1, entries: [{ ...good, name: "../etc" }] }, "entries[0].name: expected a name"],
  [{ version: 1, entries: [{ ...good, size_bytes: -1 }] }, "entries[0].size_bytes: expected a positive integer"],
  [{ version: 1, entries: [{ ...good, tarball_url: "ftp://x/k" }] }, "entries[0].tarball_url: unsupported URL scheme ftp:"],
  [{ version: 1, entries: [{ ...good, tarball_url: "k.tar.zst" }] }, "entries[0].tarball_url: expected an absolute http(s) or file URL"],
  [{ version: 1, entries: [{ ...good, description: "evil\u001b[2J" }] }, "entries[0].description: expected a non-empty string of at most 1024 printable characters"],
  [{ version: 1, entries: [good, good] }, 'entries[1].name: "k" duplicates entries[0]'],
  [{ version: 1, entries: ["k"] }, "entries[0]: expected an object"],
];

test("a malformed catalog is one clear error naming the field", () => {
  for (const [value, message] of malformed) {
    assert.throws(
      () => parseCatalog(JSON.stringify(value), "test.json"),
      (err: BangerError) => err.code === ErrorCode.Integrity && err.message.startsWith(`test.json: ${message}`),
      message,
    );
  }
  assert.throws(() => parseCatalog("{", "test.json"), /test.json: not valid JSON/);
  assert.equal(parseCatalog(JSON.stringify({ version: 1, entries: [{ ...good, tarball_sha256: "A".repeat(64), future_field: 1 }] }), "t").entries[0]?.tarball_sha256, "a".repeat(64));
});

test("overrides that cannot be read and bad names are clear errors", async () => {
  await assert.rejects(loadCatalog(join(bed.home, "nope.json")), (err: BangerError) => err.code === ErrorCode.NotFound && /no such file/.test(err.message));
  await assert.rejects(loadCatalog(bed.server.url("/missing.json")), (err: BangerError) => err.code === ErrorCode.Unavailable && /HTTP 404/.test(err.message));
  bed.server.route("/huge.json", { body: Buffer.alloc(5 << 20, 0x20) });
  await assert.rejects(loadCatalog(bed.server.url("/huge.json")), /larger than 4194304 bytes/);
  const catalog = parseCatalog(JSON.stringify({ version: 1, entries: [good] }), "t");
  assert.equal(lookup(catalog, "nope"), undefined);
  assert.throws(() => lookup(catalog, "bad/name"), (err: BangerError) => err.code === ErrorCode.InvalidArgument);
});
