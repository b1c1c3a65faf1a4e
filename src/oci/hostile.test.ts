// A registry is untrusted: a proxy in front of a real docker-registry lies about digests,
// truncates and pads blobs, resets connections and fails with 503s; a fake registry
// redirects to plain HTTP; pushed layers try to escape the tree. Each case must end in one
// clear error with nothing left on disk but verified cache blobs.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { makeTempHome } from "../../test/helpers.ts";
import { type RunningRegistry, startRegistry } from "../../test/registry/harness.ts";
import { type PushedImage, pushTestImage } from "../../test/registry/images.ts";
import { type RegistryProxy, startProxy } from "../../test/registry/proxy.ts";
import { sha256 } from "../../test/registry/push.ts";
import { makeTar } from "../../test/registry/tarball.ts";
import { flattenLayers } from "../rootfs/flatten.ts";
import { BangerError, ErrorCode } from "../util/errors.ts";
import { openLayer, pullImage, startPull } from "./index.ts";
import { parseDocument } from "./manifest.ts";

let registry: RunningRegistry;
let proxy: RegistryProxy;
let tmp: { home: string; cleanup: () => void };
let image: PushedImage;
let n = 0;
const FAST = { retries: 2, retryBaseMs: 5 };

before(async () => {
  tmp = makeTempHome();
  registry = await startRegistry();
  proxy = await startProxy(registry.url);
  image = await pushTestImage({ url: registry.url }, "test/app", "1", "amd64", "oci");
});

after(async () => {
  await proxy?.stop();
  await registry?.stop();
  tmp?.cleanup();
});

const freshCache = () => join(tmp.home, `cache-${n++}`);
const bigLayer = () => image.layers[0]!; // the gzip base layer with busybox (~1 MiB)
const isBlob = (path: string, digest: string) => path.endsWith(`/blobs/${digest}`);

/** Only verified blobs may remain: every cached file hashes to its name, and no temp files. */
function assertOnlyVerified(cacheDir: string, mustNotHave?: string): void {
  const dir = join(cacheDir, "blobs", "sha256");
  for (const name of existsSync(dir) ? readdirSync(dir) : []) {
    assert.equal(
      createHash("sha256")
        .update(readFileSync(join(dir, name)))
        .digest("hex"),
      name,
    );
  }
  if (mustNotHave) assert.equal(existsSync(join(dir, mustNotHave.slice(7))), false);
  const tmpDir = join(cacheDir, "blobs", "tmp");
  assert.deepEqual(existsSync(tmpDir) ? readdirSync(tmpDir) : [], []);
}

async function pullFails(tamper: RegistryProxy["tamper"], code: number, message: RegExp): Promise<string> {
  const cacheDir = freshCache();
  proxy.tamper = tamper;
  try {
    await assert.rejects(pullImage(`${proxy.host}/test/app:1`, { cacheDir, ...FAST }), (err: unknown) => {
      assert.ok(err instanceof BangerError, String(err));
      assert.equal(err.code, code, err.message);
      assert.match(err.message, message);
      return true;
    });
  } finally {
    proxy.tamper = undefined;
  }
  assertOnlyVerified(cacheDir, bigLayer().digest);
  return cacheDir;
}

describe("hostile registries", () => {
  it("rejects a layer whose bytes do not match its digest", async () => {
    await pullFails((_m, p) => (isBlob(p, bigLayer().digest) ? "corrupt" : undefined), ErrorCode.Integrity, /blob sha256:\w+ does not match its digest/);
  });

  it("never hands over a layer that fails its digest: layerReady and done reject, nothing is left", async () => {
    const cacheDir = freshCache();
    proxy.tamper = (_m, p) => (isBlob(p, bigLayer().digest) ? "corrupt" : undefined);
    try {
      const pull = await startPull(`${proxy.host}/test/app:1`, { cacheDir, ...FAST });
      const index = pull.layers.findIndex((l) => l.digest === bigLayer().digest);
      const lied = /blob sha256:\w+ does not match its digest/;
      await assert.rejects(pull.layerReady(index), lied);
      await assert.rejects(pull.done, lied);
    } finally {
      proxy.tamper = undefined;
    }
    assertOnlyVerified(cacheDir, bigLayer().digest);
  });

  it("retries a truncated blob, then gives up with a clear error", async () => {
    const before = proxy.requests.length;
    await pullFails((_m, p) => (isBlob(p, bigLayer().digest) ? "truncate" : undefined), ErrorCode.Integrity, /was cut off after \d+ of \d+ bytes/);
    const tries = proxy.requests.slice(before).filter((r) => isBlob(r.path, bigLayer().digest)).length;
    assert.equal(tries, 1 + FAST.retries);
  });

  it("stops reading a blob at the size the manifest declares", async () => {
    await pullFails((_m, p) => (isBlob(p, bigLayer().digest) ? "oversize" : undefined), ErrorCode.Integrity, /larger than the \d+ bytes the manifest declares/);
  });

  it("rejects a Content-Length that disagrees with the manifest", async () => {
    await pullFails(
      (_m, p) => (isBlob(p, bigLayer().digest) ? { header: "content-length", value: String(bigLayer().size - 1) } : undefined),
      ErrorCode.Integrity,
      /sends \d+ bytes but the manifest says/,
    );
  });

  it("rejects a manifest whose Docker-Content-Digest header lies", async () => {
    await pullFails(
      (_m, p) => (p.includes("/manifests/") ? { header: "docker-content-digest", value: `sha256:${"0".repeat(64)}` } : undefined),
      ErrorCode.Integrity,
      /Docker-Content-Digest says sha256:0+ but the bytes are/,
    );
  });

  it("retries 503s and connection resets, then succeeds", async () => {
    const cacheDir = freshCache();
    const failures = new Map<string, number>();
    proxy.tamper = (_m, p) => {
      const seen = failures.get(p) ?? 0;
      failures.set(p, seen + 1);
      if (p.includes("/manifests/") && seen === 0) return "503";
      if (isBlob(p, bigLayer().digest) && seen < 2) return seen === 0 ? "reset" : "503";
      return undefined;
    };
    try {
      const result = await pullImage(`${proxy.host}/test/app:1`, { cacheDir, ...FAST });
      assert.equal(result.digest, image.digest);
    } finally {
      proxy.tamper = undefined;
    }
    assertOnlyVerified(cacheDir);
  });

  it("cancels every download on abort and keeps only verified blobs", async () => {
    const cacheDir = freshCache();
    const ctl = new AbortController();
    proxy.tamper = (_m, p) => (isBlob(p, bigLayer().digest) ? "truncate" : undefined); // keeps the big layer in flight
    try {
      const pull = pullImage(`${proxy.host}/test/app:1`, { cacheDir, retries: 50, retryBaseMs: 20, signal: ctl.signal });
      setTimeout(() => ctl.abort(), 150);
      await assert.rejects(pull, (err: unknown) => err instanceof BangerError && err.code === ErrorCode.Cancelled);
    } finally {
      proxy.tamper = undefined;
    }
    assertOnlyVerified(cacheDir, bigLayer().digest);
  });

  it("refuses a redirect to plain HTTP on a non-loopback host", async () => {
    let hits = 0;
    const server = createServer((_req, res) => {
      hits++;
      res.writeHead(302, { location: "http://203.0.113.9/evil" }).end();
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
      await assert.rejects(pullImage(`${host}/x/y:1`, { cacheDir: freshCache(), ...FAST }), /refusing http:\/\/203\.0\.113\.9: plain HTTP is allowed only for loopback/);
      assert.equal(hits, 1);
    } finally {
      server.close();
    }
  });

  it("rejects digests other than sha256 in a manifest", () => {
    const doc = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        config: { digest: `sha256:${"a".repeat(64)}`, size: 2 },
        layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar", digest: `sha512:${"a".repeat(128)}`, size: 1 }],
      }),
    );
    assert.throws(() => parseDocument(doc, "", "m"), /only sha256 digests are supported/);
  });
});

describe("hostile layers pulled from a registry", () => {
  const cases: Array<[string, Parameters<typeof makeTar>[0][], RegExp]> = [
    ["path traversal", [[{ name: "../../../tmp/pwned", content: "x" }]], /path "\.\.\/\.\.\/\.\.\/tmp\/pwned" has a "\.\." component/],
    [
      "a write through an absolute symlink parent",
      [[{ name: "etc", type: "symlink", linkname: "/etc" }], [{ name: "etc/cron.d/evil", content: "x" }]],
      /"etc\/cron\.d" goes through the symlink "etc"/,
    ],
    // The whole class (every control byte, in every place, on to a real ext4) is src/rootfs/hostile.test.ts.
    ["a debugfs command after a newline in a name", [[{ name: "x\n!touch /tmp/pwned", content: "x" }]], /layer 1: path "x\\n!touch \/tmp\/pwned" contains the control byte 0x0a/],
    [
      "a debugfs command after a newline in a symlink target",
      [[{ name: "l", type: "symlink", linkname: "x\n!touch /tmp/pwned" }]],
      /layer 1: symlink target of "l": "x\\n!touch \/tmp\/pwned" contains the control byte 0x0a/,
    ],
  ];
  for (const [what, layers, message] of cases) {
    it(`rejects ${what} while flattening, leaving only the verified blobs`, async () => {
      const tars = await Promise.all(layers.map((l) => makeTar(l)));
      const pushed = await pushTestImage(
        { url: registry.url },
        "test/hostile",
        `case${n}`,
        "amd64",
        "oci",
        tars.map((t) => ({ bytes: gzipSync(t), mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", diffId: sha256(t) })),
      );
      const cacheDir = freshCache();
      const result = await pullImage(`${proxy.host}/test/hostile@${pushed.digest}`, { cacheDir });
      const staging = join(tmp.home, `staging-${n++}`);
      await assert.rejects(
        flattenLayers(
          result.layers.map((l) => () => openLayer(l)),
          staging,
        ),
        (err: unknown) => {
          assert.ok(err instanceof BangerError);
          assert.equal(err.code, ErrorCode.Integrity);
          assert.match(err.message, message);
          return true;
        },
      );
      assert.equal(existsSync(staging), false);
      assert.equal(existsSync("/tmp/pwned"), false);
      assertOnlyVerified(cacheDir);
    });
  }
});
