// Pulls from a real docker-registry (Debian's distribution 2.8) on loopback, through a
// recording proxy, and flattens the result: the tree must match the image entry by entry.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { makeTempHome } from "../../test/helpers.ts";
import { type RunningRegistry, startRegistry } from "../../test/registry/harness.ts";
import { type PushedImage, expectedTree, pushTestImage, pushTestIndex } from "../../test/registry/images.ts";
import { type RegistryProxy, startProxy } from "../../test/registry/proxy.ts";
import { describeTree } from "../../test/registry/tarball.ts";
import type { Pushed } from "../../test/registry/push.ts";
import { flattenLayers } from "../rootfs/flatten.ts";
import { BangerError, ErrorCode } from "../util/errors.ts";
import type { ProgressEvent } from "../util/progress.ts";
import { type PullResult, openLayer, pullImage, startPull } from "./index.ts";

let registry: RunningRegistry;
let proxy: RegistryProxy;
let tmp: { home: string; cleanup: () => void };
let oci: PushedImage;
let docker: PushedImage;
let multi: { index: Pushed; amd64: PushedImage; arm64: PushedImage };
let list: { index: Pushed; amd64: PushedImage; arm64: PushedImage };
let n = 0;

before(async () => {
  tmp = makeTempHome();
  registry = await startRegistry();
  proxy = await startProxy(registry.url);
  const target = { url: registry.url };
  [oci, docker, multi, list] = await Promise.all([
    pushTestImage(target, "test/oci", "1", "amd64", "oci"),
    pushTestImage(target, "test/docker", "1", "amd64", "docker"),
    pushTestIndex(target, "test/multi", "1", "oci"),
    pushTestIndex(target, "test/list", "1", "docker"),
  ]);
});

after(async () => {
  await proxy?.stop();
  await registry?.stop();
  tmp?.cleanup();
});

const freshCache = () => join(tmp.home, `cache-${n++}`);

async function flatten(result: PullResult) {
  return flattenLayers(
    result.layers.map((l) => () => openLayer(l)),
    join(tmp.home, `tree-${n++}`),
  );
}

describe("pullImage from a real registry", () => {
  it("pulls an OCI image by tag and flattens it to exactly the expected tree", async () => {
    const cacheDir = freshCache();
    const events: ProgressEvent[] = [];
    const result = await pullImage(`${proxy.host}/test/oci:1`, { cacheDir, progress: (e) => events.push(e) });
    assert.equal(result.digest, oci.digest);
    assert.equal(result.manifestDigest, oci.digest);
    assert.deepEqual(result.platform, { os: "linux", architecture: "amd64" });
    assert.equal(result.cached, false);
    assert.deepEqual(
      result.layers.map((l) => l.digest),
      oci.layers.map((l) => l.digest),
    );
    assert.equal(
      result.bytes,
      oci.layers.reduce((s, l) => s + l.size, 0),
    );
    assert.deepEqual(
      result.layerPaths,
      oci.layers.map((l) => join(cacheDir, "blobs", "sha256", l.digest.slice(7))),
    );
    assert.deepEqual(result.config, {
      entrypoint: ["/bin/sh", "-c"],
      cmd: ["echo hello"],
      env: ["PATH=/usr/bin:/bin", "GREETING=hi"],
      workingDir: "/home/user",
      user: "1000:1000",
      exposedPorts: ["8080/tcp", "53/udp"],
      os: "linux",
      architecture: "amd64",
      diffIds: result.layers.map((l) => l.diffId),
    });
    for (const layer of oci.layers) {
      const last = events.filter((e) => e.phase === "layer" && e.message === layer.digest).pop();
      assert.deepEqual(last, { phase: "layer", message: layer.digest, done: layer.size, total: layer.size });
    }
    assert.deepEqual(readdirSync(join(cacheDir, "blobs", "tmp")), []);

    const tree = await flatten(result);
    assert.deepEqual(describeTree(tree), expectedTree());
    assert.deepEqual(readFileSync(join(tree.dir, "bin/busybox")), readFileSync("/bin/busybox"));
    assert.equal(readFileSync(join(tree.dir, "etc/arch"), "utf8"), "amd64\n");
  });

  it("startPull hands over each layer once it is verified, so flattening overlaps the download", async () => {
    const cacheDir = freshCache();
    const pull = await startPull(`${proxy.host}/test/oci:1`, { cacheDir });
    assert.equal(pull.manifestDigest, oci.digest);
    let allDone = false;
    void pull.done.then(() => (allDone = true));
    const seenBeforeDone: boolean[] = [];
    const tree = await flattenLayers(
      pull.layers.map((l, i) => async () => {
        await pull.layerReady(i);
        seenBeforeDone.push(!allDone);
        assert.equal(readFileSync(l.path).length, l.size, "a ready layer is complete in the cache");
        return openLayer(l);
      }),
      join(tmp.home, `tree-${n++}`),
    );
    assert.equal(seenBeforeDone[0], true, "the first layer was handed over before the pull finished");
    assert.deepEqual(await pull.done, { cached: false, downloadedBytes: oci.layers.reduce((s, l) => s + l.size, 0) });
    assert.deepEqual(describeTree(tree), expectedTree());
  });

  it("serves a second pull from the cache: no blob requests by tag, no requests at all by digest", async () => {
    const cacheDir = freshCache();
    await pullImage(`${proxy.host}/test/oci:1`, { cacheDir });
    const before = proxy.requests.length;
    const blobsBefore = proxy.blobRequests();
    const again = await pullImage(`${proxy.host}/test/oci:1`, { cacheDir });
    assert.equal(again.cached, true);
    assert.equal(again.downloadedBytes, 0);
    assert.equal(proxy.blobRequests(), blobsBefore);
    assert.ok(proxy.requests.length > before, "the tag is still resolved against the registry");
    const mark = proxy.requests.length;
    const byDigest = await pullImage(`${proxy.host}/test/oci@${oci.digest}`, { cacheDir });
    assert.equal(byDigest.cached, true);
    assert.equal(proxy.requests.length, mark);
  });

  it("pulls a Docker schema2 image by digest", async () => {
    const result = await pullImage(`${proxy.host}/test/docker@${docker.digest}`, { cacheDir: freshCache() });
    assert.equal(result.digest, docker.digest);
    assert.deepEqual(
      result.layers.map((l) => l.mediaType),
      ["application/vnd.docker.image.rootfs.diff.tar.gzip", "application/vnd.oci.image.layer.v1.tar+zstd", "application/vnd.docker.image.rootfs.diff.tar"],
    );
    assert.deepEqual(describeTree(await flatten(result)), expectedTree());
  });

  it("picks the requested platform from an OCI index", async () => {
    const result = await pullImage(`${proxy.host}/test/multi:1`, { cacheDir: freshCache(), platform: "linux/arm64/v8" });
    assert.equal(result.digest, multi.index.digest);
    assert.equal(result.manifestDigest, multi.arm64.digest);
    assert.deepEqual(result.platform, { os: "linux", architecture: "arm64", variant: "v8" });
    const tree = await flatten(result);
    assert.equal(readFileSync(join(tree.dir, "etc/arch"), "utf8"), "arm64\n");
  });

  it("defaults to the host platform and matches arm64 without a variant in a Docker manifest list", async () => {
    const cacheDir = freshCache();
    const host = await pullImage(`${proxy.host}/test/list:1`, { cacheDir });
    assert.equal(host.manifestDigest, process.arch === "arm64" ? list.arm64.digest : list.amd64.digest);
    const arm = await pullImage(`${proxy.host}/test/list:1`, { cacheDir, platform: "linux/arm64" });
    assert.equal(arm.manifestDigest, list.arm64.digest);
  });

  it("names the platforms an index has when the wanted one is missing", async () => {
    await assert.rejects(pullImage(`${proxy.host}/test/multi:1`, { cacheDir: freshCache(), platform: "linux/s390x" }), (err: unknown) => {
      assert.ok(err instanceof BangerError);
      assert.equal(err.code, ErrorCode.NotFound);
      assert.match(err.message, /has no linux\/s390x image \(it has: linux\/amd64, linux\/arm64\/v8\)/);
      return true;
    });
  });

  it("reports a missing tag as not found", async () => {
    await assert.rejects(pullImage(`${proxy.host}/test/oci:nope`, { cacheDir: freshCache() }), (err: unknown) => {
      assert.ok(err instanceof BangerError);
      assert.equal(err.code, ErrorCode.NotFound);
      assert.match(err.message, /manifest .*test\/oci:nope/);
      return true;
    });
  });
});
