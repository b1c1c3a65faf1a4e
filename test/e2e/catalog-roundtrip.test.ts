// Publishing through a catalog, as a mirror maintainer would: bundles made by
// `banger internal make-kernel-bundle` / `make-bundle` are served by a local catalog and
// pulled back with `kernel pull` / `image pull`, byte for byte.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { createWriteStream, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { busyboxRootfsTar } from "../../src/presets/index.ts";
import { makeTempHome, mustRun, runBanger, stopDaemon, testKernelDeb } from "../helpers.ts";

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

describe("catalog round trip", () => {
  const { home, cleanup } = makeTempHome();
  const pub = join(home, "pub");
  const env = { BANGER_KERNEL_CATALOG: join(pub, "kernels.json"), BANGER_IMAGE_CATALOG: join(pub, "images.json") };
  const banger = (args: string[]) => runBanger(args, { home, env, timeoutMs: 300_000 });

  before(async () => {
    mkdirSync(pub);
    await mustRun(banger(["kernel", "import", "--debian", "--deb", await testKernelDeb(), "--name", "local-k"]));
    const kb = JSON.parse((await mustRun(banger(["internal", "make-kernel-bundle", join(home, "kernels", "local-k"), "--name", "pub-k", "--out", pub, "--json"]))).stdout);
    writeFileSync(
      env.BANGER_KERNEL_CATALOG,
      JSON.stringify({
        version: 1,
        entries: [
          {
            name: "pub-k",
            distro: "debian",
            arch: "x86_64",
            kernel_version: kb.kernelVersion ?? "6.1",
            tarball_url: "pub-k.tar.zst",
            tarball_sha256: kb.sha256,
            size_bytes: kb.sizeBytes,
            description: "published kernel",
          },
        ],
      }),
    );
    const tar = join(pub, "rootfs.tar");
    await pipeline(await busyboxRootfsTar(), createWriteStream(tar));
    const ib = JSON.parse(
      (
        await mustRun(
          banger(["internal", "make-bundle", "--rootfs-tar", tar, "--name", "pub-img", "--kernel-ref", "pub-k", "--distro", "busybox", "--description", "published image", "--out", pub, "--json"]),
        )
      ).stdout,
    );
    writeFileSync(
      env.BANGER_IMAGE_CATALOG,
      JSON.stringify({
        version: 1,
        entries: [
          {
            name: "pub-img",
            distro: "busybox",
            arch: "x86_64",
            kernel_ref: "pub-k",
            tarball_url: "pub-img.tar.zst",
            tarball_sha256: ib.sha256,
            size_bytes: ib.sizeBytes,
            description: "published image",
          },
        ],
      }),
    );
  });
  after(async () => {
    await stopDaemon(home);
    cleanup();
  });

  it("lists the catalogs with what is pulled", async () => {
    const kernels = JSON.parse((await banger(["kernel", "list", "--available", "--json"])).stdout);
    assert.deepEqual(
      kernels.map((k: { name: string; state: string }) => [k.name, k.state]),
      [["pub-k", "available"]],
    );
    const table = (await banger(["image", "list", "--available"])).stdout;
    assert.match(table, /^NAME\s+STATE\s+DISTRO/m);
    assert.match(table, /pub-img\s+available\s+busybox/);
  });

  it("refuses an image whose kernel is missing, naming the pull to run", async () => {
    const r = await banger(["image", "pull", "pub-img"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /kernel pub-k \(needed by image pub-img\) is not present \(run `banger kernel pull pub-k`/);
  });

  it("pulls the kernel back with the same vmlinux, and refuses to overwrite without --force", async () => {
    const k = JSON.parse((await mustRun(banger(["kernel", "pull", "pub-k", "--json"]))).stdout);
    assert.match(k.source, /^pull:/);
    const original = sha256(readFileSync(join(home, "kernels", "local-k", "vmlinux")));
    assert.equal(k.vmlinuxSha256, original);
    assert.equal(sha256(readFileSync(join(home, "kernels", "pub-k", "vmlinux"))), original);
    const again = await banger(["kernel", "pull", "pub-k"]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /kernel pub-k already exists \(use --force to replace it\)/);
    assert.equal((await banger(["kernel", "pull", "pub-k", "--force"])).code, 0);
    assert.match((await banger(["kernel", "list", "--available"])).stdout, /pub-k\s+pulled/);
  });

  it("pulls the image back with a byte-identical rootfs", async () => {
    const r = JSON.parse((await mustRun(banger(["image", "pull", "pub-img", "--json"]))).stdout);
    assert.equal(r.via, "catalog");
    assert.equal(r.image.kernelRef, "pub-k");
    const bundled = execFileSync("tar", ["-I", "zstd", "-xOf", join(pub, "pub-img.tar.zst"), "rootfs.ext4"], { maxBuffer: 1024 ** 3 });
    const pulled = readFileSync(join(home, "images", "pub-img", "rootfs.ext4"));
    assert.equal(pulled.length, bundled.length);
    assert.equal(sha256(pulled), sha256(bundled));
    assert.equal(statSync(join(home, "images", "pub-img", "rootfs.ext4")).size, r.image.sizeBytes);
  });
});
