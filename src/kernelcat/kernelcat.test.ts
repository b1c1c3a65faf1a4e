import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import tar from "tar-stream";
import { servedHome, sha256Hex } from "../../test/helpers.ts";
import { makeTarZst } from "../bundle/index.ts";
import { rawTarZst, type RawMember } from "../../test/kits/bundle.ts";
import { type BangerError, ErrorCode } from "../util/errors.ts";
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
    entries: [
      {
        name,
        distro: "debian",
        arch: "x86_64",
        kernel_version: "6.1.0-18-cloud-amd64",
        tarball_url: bed.server.url(path),
        tarball_sha256: sha256Hex(bundle),
        size_bytes: bundle.length,
        description: "Debian 12 cloud kernel",
      },
    ],
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
  assert.deepEqual(
    { ...manifest, pulled_at: "" },
    {
      name: "debian-6.1",
      source: `pull:${entry.tarball_url}`,
      vmlinux_sha256: sha256Hex(vmlinux),
      kernel_version: "6.1.0-18-cloud-amd64",
      distro: "debian",
      arch: "x86_64",
      has_initrd: true,
      modules: true,
      pulled_at: "",
    },
  );
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

async function assertRejected(members: RawMember[] | Buffer, message: RegExp) {
  const d = dirs();
  const { catalogUrl } = publish(Buffer.isBuffer(members) ? members : await rawTarZst(members), "bad");
  const entry = lookup(await loadCatalog(catalogUrl), "bad")!;
  await assert.rejects(pullKernelBundle(entry, d), (err: BangerError) => {
    assert.equal(err.code, ErrorCode.Integrity);
    assert.match(err.message, message);
    assert.doesNotMatch(`${err.message}${err.hint ?? ""}`, /[\x00-\x1f\x7f]/, "one line");
    return true;
  });
  assert.equal(existsSync(join(d.kernelsDir, "bad")), false);
  assert.deepEqual(existsSync(d.kernelsDir) ? readdirSync(d.kernelsDir) : [], []);
  assert.deepEqual(existsSync(d.cacheDir) ? readdirSync(join(d.cacheDir, "bundles")) : [], []);
}

test("kernel bundles hold only vmlinux, initrd.img and modules/", async () => {
  await assertRejected(
    [
      { name: "vmlinux", content: "k" },
      { name: "etc/passwd", content: "x" },
    ],
    /kernel bundle: member "etc\/passwd": not part of a kernel bundle/,
  );
  await assertRejected([{ name: "initrd.img", content: "i" }], /kernel bundle: missing vmlinux/);
  await assertRejected([{ name: "vmlinux", type: "symlink", linkname: "initrd.img" }], /"vmlinux": vmlinux must be a regular file/);
  await assertRejected(
    [
      { name: "vmlinux", content: "k" },
      { name: "modules/build", type: "symlink", linkname: "/usr/src/linux" },
    ],
    /"modules\/build": symlink target "\/usr\/src\/linux" is absolute/,
  );
  await assertRejected(
    [
      { name: "vmlinux", content: "k" },
      { name: "modules/x", type: "symlink", linkname: "../../x" },
    ],
    /escapes the root/,
  );
  await assertRejected([{ name: "vmlinux", content: "" }], /vmlinux is empty/);
});

/** A tar.zst whose members are files of `size` zero bytes each, streamed through zstd (a few KiB however large). */
async function zeroBundle(names: string[], size: number): Promise<Buffer> {
  const zstd = spawn("zstd", ["-q", "-1", "-c"], { stdio: ["pipe", "pipe", "inherit"] });
  const out: Buffer[] = [];
  zstd.stdout.on("data", (b: Buffer) => out.push(b));
  const closed = new Promise((resolve) => zstd.on("close", resolve));
  const pack = tar.pack();
  pack.pipe(zstd.stdin);
  const zeros = Buffer.alloc(1 << 20);
  for (const name of names) {
    const entry = pack.entry({ name, size, mode: 0o644, mtime: new Date(0) });
    for (let left = size; left > 0; left -= zeros.length) {
      if (!entry.write(left >= zeros.length ? zeros : zeros.subarray(0, left))) await once(entry, "drain");
    }
    (entry as unknown as NodeJS.WritableStream).end();
  }
  pack.finalize();
  await closed;
  return Buffer.concat(out);
}

test("a kernel bundle is capped at 1 GiB decoded and 20,000 members, whatever the catalog allows", async () => {
  await assertRejected(await zeroBundle(["vmlinux"], 1024 ** 3 + (1 << 20)), /^kernel bundle: decodes to more than 1073741824 bytes/);
  const many = Array.from({ length: 20_001 }, (_, i) => `modules/m${i}.ko`);
  await assertRejected(await zeroBundle(["vmlinux", ...many], 0), /^kernel bundle: member "modules\/m19999.ko": more than 20000 members/);
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
  // Wrong types and shapes, each named by entry and field.
  [{ version: "1", entries: [] }, 'version: expected 1, got "1"'],
  [{ version: 1, entries: { k: good } }, "entries: expected a list"],
  [{ version: 1, entries: [{ ...good, name: 5 }] }, "entries[0].name: expected a name"],
  [{ version: 1, entries: [{ ...good, name: ["k"] }] }, "entries[0].name: expected a name"],
  [{ version: 1, entries: [{ ...good, name: "k".repeat(65) }] }, "entries[0].name: expected a name"],
  [{ version: 1, entries: [good, { ...good, name: undefined }] }, "entries[1].name: missing"],
  [{ version: 1, entries: [{ ...good, tarball_sha256: 5 }] }, "entries[0].tarball_sha256: expected 64 hex chars"],
  [{ version: 1, entries: [{ ...good, tarball_sha256: "g".repeat(64) }] }, "entries[0].tarball_sha256: expected 64 hex chars"],
  [{ version: 1, entries: [{ ...good, tarball_sha256: "a".repeat(65) }] }, "entries[0].tarball_sha256: expected 64 hex chars"],
  [{ version: 1, entries: [{ ...good, size_bytes: "10" }] }, "entries[0].size_bytes: expected a positive integer"],
  [{ version: 1, entries: [{ ...good, size_bytes: 1.5 }] }, "entries[0].size_bytes: expected a positive integer"],
  [{ version: 1, entries: [{ ...good, size_bytes: 6 * 1024 ** 3 }] }, "entries[0].size_bytes: expected a positive integer of at most 1073741824"],
  [{ version: 1, entries: [{ ...good, tarball_url: 5 }] }, "entries[0].tarball_url: expected a URL string"],
  [{ version: 1, entries: [{ ...good, tarball_url: undefined }] }, "entries[0].tarball_url: missing"],
  [{ version: 1, entries: [{ ...good, tarball_url: `https://example.org/${"x".repeat(2048)}` }] }, "entries[0].tarball_url: expected a URL string"],
  [{ version: 1, entries: [{ ...good, tarball_url: "javascript:alert(1)" }] }, "entries[0].tarball_url: unsupported URL scheme javascript:"],
  [{ version: 1, entries: [{ ...good, tarball_url: "https://user:pw@example.org/k.tar.zst" }] }, "entries[0].tarball_url: expected no user name or password in the URL"],
  [{ version: 1, entries: [{ ...good, kernel_version: 6.1 }] }, "entries[0].kernel_version: expected a non-empty string"],
  [{ version: 1, entries: [{ ...good, kernel_version: "6.1\n!touch /tmp/x" }] }, "entries[0].kernel_version: expected a non-empty string of at most 64 printable characters"],
  [{ version: 1, entries: [{ ...good, distro: "d".repeat(65) }] }, "entries[0].distro: expected a non-empty string of at most 64 printable characters"],
  [{ version: 1, entries: [{ ...good, arch: 64 }] }, "entries[0].arch: expected a non-empty string"],
  [{ version: 1, entries: [{ ...good, description: { text: "x" } }] }, "entries[0].description: expected a non-empty string"],
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
  // A catalog from the network may not point the daemon at its own files.
  const remote = JSON.stringify({ version: 1, entries: [{ ...good, tarball_url: "file:///etc/shadow" }] });
  assert.throws(() => parseCatalog(remote, "test.json", "https://mirror.example/catalog.json"), /test.json: entries\[0\].tarball_url: a catalog served over http\(s\) cannot name a file: URL/);
  assert.equal(parseCatalog(remote, "test.json", "file:///srv/mirror/catalog.json").entries[0]?.tarball_url, "file:///etc/shadow");
  assert.equal(parseCatalog(JSON.stringify({ version: 1, entries: [{ ...good, tarball_sha256: "A".repeat(64), future_field: 1 }] }), "t").entries[0]?.tarball_sha256, "a".repeat(64));
});

test("overrides that cannot be read and bad names are clear errors", async () => {
  await assert.rejects(loadCatalog(join(bed.home, "nope.json")), (err: BangerError) => err.code === ErrorCode.NotFound && /no such file/.test(err.message));
  await assert.rejects(loadCatalog(bed.server.url("/missing.json")), (err: BangerError) => err.code === ErrorCode.Unavailable && /HTTP 404/.test(err.message));
  bed.server.route("/huge.json", { body: Buffer.alloc(5 << 20, 0x20) });
  await assert.rejects(loadCatalog(bed.server.url("/huge.json")), /larger than 4194304 bytes/);
  const catalog = parseCatalog(JSON.stringify({ version: 1, entries: [good] }), "t");
  assert.equal(lookup(catalog, "nope"), undefined);
  assert.throws(
    () => lookup(catalog, "bad/name"),
    (err: BangerError) => err.code === ErrorCode.InvalidArgument,
  );
});
