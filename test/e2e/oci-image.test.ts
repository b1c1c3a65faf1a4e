// `banger image pull <oci-ref>` against a real registry (Debian's docker-registry on
// loopback): the test image's awkward entries land in the ext4 exactly, the image config is
// kept and becomes `vm run`'s default command, a second pull is a no-op that says so, and a
// hostile layer fails cleanly leaving nothing under the state root.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { makeTempHome, mustRun, runBanger, stopDaemon, testKernelDeb } from "../helpers.ts";
import { readXattr, statInode } from "../kits/ext4.ts";
import { startRegistry, type RunningRegistry } from "../registry/harness.ts";
import { IMAGE_CONFIG, buildLayers, pushTestImage, pushTestIndex } from "../registry/images.ts";
import { CAP_ALL_EP, makeTar } from "../registry/tarball.ts";
import { sha256 } from "../registry/push.ts";

describe("image pull from an OCI registry", () => {
  const { home, cleanup } = makeTempHome();
  let registry: RunningRegistry;
  let digest = "";
  const banger = (args: string[]) => runBanger(args, { home, timeoutMs: 120_000 });

  before(async () => {
    registry = await startRegistry();
    const target = { url: registry.url };
    digest = (await pushTestImage(target, "bgr/test", "1", "amd64", "oci")).digest;
    await pushTestIndex(target, "bgr/multi", "1", "docker");
    const layers = await buildLayers("amd64", "oci");
    const evil = await makeTar([{ name: "../escape.txt", content: "out" }]);
    await pushTestImage(target, "bgr/evil", "1", "amd64", "oci", [...layers.slice(0, 1), { bytes: evil, mediaType: "application/vnd.oci.image.layer.v1.tar", diffId: sha256(evil) }]);
    await mustRun(banger(["kernel", "import", "--debian", "--deb", await testKernelDeb(), "--name", "k1"]));
    await mustRun(banger(["config", "set", "default_kernel", "k1"]));
  });
  after(async () => {
    await runBanger(["vm", "rm", "-f", "ocivm"], { home }).catch(() => undefined);
    await stopDaemon(home);
    await registry?.stop();
    cleanup();
  });

  it("builds an ext4 whose entries match the image, entry by entry", async () => {
    const r = await banger(["image", "pull", `${registry.host}/bgr/test:1`, "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const res = JSON.parse(r.stdout);
    assert.equal(res.via, "oci");
    assert.equal(res.details.digest, digest);
    assert.equal(res.details.platform, "linux/amd64");
    assert.equal(res.details.layers.length, 3);
    const name = res.image.name;
    assert.equal(name, "test-1");
    const image = join(home, "images", name, "rootfs.ext4");
    const check = (path: string, want: Partial<ReturnType<typeof statInode>>) => {
      const got = statInode(image, path);
      for (const [k, v] of Object.entries(want)) assert.equal(got[k as keyof typeof got], v, `${path} ${k}`);
      return got;
    };
    check("/bin/busybox", { type: "regular", uid: 0, gid: 0, mode: 0o755 });
    const su = check("/bin/su", { type: "regular", uid: 0, mode: 0o4755 });
    assert.equal(su.mode & 0o4000, 0o4000, "setuid survives");
    check("/bin/sh", { type: "symlink", linkTarget: "busybox" });
    check("/link1", { type: "symlink", linkTarget: "link2" });
    check("/link2", { type: "symlink", linkTarget: "/bin/sh" });
    const busybox = statInode(image, "/bin/busybox");
    // bin/ls (same layer) and usr/bin/ls2 (a later layer) are hardlinks of bin/busybox.
    assert.equal(busybox.links, 3);
    assert.equal(statInode(image, "/usr/bin/ls2").text.match(/Inode: (\d+)/)?.[1], busybox.text.match(/Inode: (\d+)/)?.[1]);
    check("/home/user", { type: "directory", uid: 1000, gid: 1000, mode: 0o750 });
    check("/home/user/notes", { uid: 1000, gid: 1000, mode: 0o640 });
    check("/tmp", { type: "directory", mode: 0o1777 });
    check("/dev/null", { type: "character", devMajor: 1, devMinor: 3, mode: 0o666 });
    check("/dev/sda", { type: "block", devMajor: 8, devMinor: 0, gid: 6, mode: 0o660 });
    check("/run/ctl", { type: "FIFO", mode: 0o600 });
    check("/opq", { type: "directory", mode: 0o700 });
    check("/sbin/banger-agent", { type: "regular", uid: 0, gid: 0, mode: 0o755 });
    assert.deepEqual(readXattr(image, "/usr/bin/ping", "security.capability"), CAP_ALL_EP);
    for (const gone of ["/gone.txt", "/gonedir", "/opq/old"]) assert.throws(() => statInode(image, gone), `${gone} was whited out`);
    assert.equal(statInode(image, "/opq/new").type, "regular");
  });

  it("keeps the image config", async () => {
    const show = JSON.parse((await banger(["image", "show", "test-1", "--json"])).stdout);
    assert.deepEqual(show.config.entrypoint, IMAGE_CONFIG.Entrypoint);
    assert.deepEqual(show.config.cmd, IMAGE_CONFIG.Cmd);
    assert.deepEqual(show.config.env, IMAGE_CONFIG.Env);
    assert.equal(show.config.workingDir, IMAGE_CONFIG.WorkingDir);
    assert.equal(show.config.user, IMAGE_CONFIG.User);
    assert.equal(show.digest, digest);
    assert.equal(show.kernelRef, "k1");
  });

  it("says so when the same digest is pulled again, and imports under another name", async () => {
    const again = await banger(["image", "pull", `${registry.host}/bgr/test:1`]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, new RegExp(`image test-1 is up to date \\(${digest}\\); nothing to do`));
    const renamed = JSON.parse((await banger(["image", "pull", `${registry.host}/bgr/test@${digest}`, "--name", "renamed", "--json"])).stdout);
    assert.equal(renamed.image.name, "renamed");
    assert.equal(renamed.details.cached, true, "every blob came from the cache");
  });

  it("picks the platform from a manifest list", async () => {
    const r = JSON.parse((await banger(["image", "pull", `${registry.host}/bgr/multi:1`, "--platform", "linux/arm64", "--json"])).stdout);
    assert.equal(r.details.platform, "linux/arm64/v8");
    assert.equal(r.image.arch, "arm64");
  });

  it("boots the pulled image and runs its Entrypoint + Cmd as its User", async () => {
    const r = await banger(["vm", "run", "--image", "test-1", "--name", "ocivm", "--no-workspace"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "hello\n");
    const who = await banger(["vm", "run", "--image", "test-1", "--no-workspace", "--", "sh", "-c", "id -u; pwd; echo $GREETING"]);
    assert.equal(who.stdout, "1000\n/home/user\nhi\n");
  });

  it("refuses a layer that escapes the tree, leaving nothing behind", async () => {
    const r = await banger(["image", "pull", `${registry.host}/bgr/evil:1`]);
    assert.equal(r.code, 1);
    const errors = r.stderr
      .trim()
      .split("\n")
      .filter((l) => l.startsWith("banger: "));
    assert.equal(errors.length, 1, `one clear error line: ${r.stderr}`);
    assert.match(errors[0]!, /escape|outside|\.\./i);
    assert.deepEqual(readdirSync(join(home, "images")).sort(), ["multi-1", "renamed", "test-1"]);
    assert.deepEqual(readdirSync(join(home, "tmp")), []);
  });
});
