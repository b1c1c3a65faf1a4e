import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BangerError, ErrorCode } from "../util/errors.ts";
import { TokenCache, dockerCredentials, parseChallenge } from "./auth.ts";
import { isInsecureAllowed, schemeFor } from "./http.ts";
import { parsePlatform, selectPlatform } from "./platform.ts";
import { formatRef, isLoopbackRegistry, parseRef } from "./ref.ts";

const HEX = "a".repeat(64);

describe("parseRef", () => {
  const cases: Array<[string, object]> = [
    ["alpine", { registry: "registry-1.docker.io", repository: "library/alpine", tag: "latest" }],
    ["alpine:3.20", { registry: "registry-1.docker.io", repository: "library/alpine", tag: "3.20" }],
    ["docker.io/library/alpine", { registry: "registry-1.docker.io", repository: "library/alpine", tag: "latest" }],
    ["index.docker.io/user/app:v1", { registry: "registry-1.docker.io", repository: "user/app", tag: "v1" }],
    ["user/app", { registry: "registry-1.docker.io", repository: "user/app", tag: "latest" }],
    [`ghcr.io/o/r@sha256:${HEX}`, { registry: "ghcr.io", repository: "o/r", digest: `sha256:${HEX}` }],
    ["localhost:5000/x:1", { registry: "localhost:5000", repository: "x", tag: "1" }],
    ["localhost/x", { registry: "localhost", repository: "x", tag: "latest" }],
    [`reg:5000/a/b:tag@sha256:${HEX}`, { registry: "reg:5000", repository: "a/b", tag: "tag", digest: `sha256:${HEX}` }],
    ["[::1]:5000/a_b/c-d__e.f:x", { registry: "[::1]:5000", repository: "a_b/c-d__e.f", tag: "x" }],
  ];
  for (const [text, want] of cases) {
    it(`parses ${text}`, () => assert.deepEqual(parseRef(text), want));
  }

  const invalid: Array<[string, RegExp]> = [
    ["", /empty/],
    ["Alpine", /lowercase/],
    ["alpine:", /tag/],
    ["alpine:-x", /tag/],
    ["a//b", /repository component ""/],
    ["a/-b", /repository component/],
    ["alpine@sha256:abc", /sha256:<64 hex digits>/],
    [`alpine@sha512:${"a".repeat(128)}`, /sha512 is not supported/],
    [`alpine@sha256:${"A".repeat(64)}`, /64 lowercase hex/],
    ["reg:99999/a", /port 99999 out of range/],
    ["a b", /whitespace/],
    [`x/${"a".repeat(300)}`, /longer than 255/],
  ];
  for (const [text, message] of invalid) {
    it(`rejects ${JSON.stringify(text.slice(0, 40))}`, () => {
      assert.throws(
        () => parseRef(text),
        (err: unknown) => err instanceof BangerError && err.code === ErrorCode.InvalidArgument && message.test(err.message),
      );
    });
  }

  it("formats back to a canonical reference", () => {
    assert.equal(formatRef(parseRef("alpine")), "registry-1.docker.io/library/alpine:latest");
  });
});

describe("transport policy", () => {
  it("uses plain HTTP only for loopback and configured insecure registries", () => {
    for (const r of ["localhost:5000", "127.0.0.1:5000", "127.1.2.3", "[::1]:5000"]) assert.ok(isLoopbackRegistry(r), r);
    assert.equal(schemeFor("127.0.0.1:5000"), "http");
    assert.equal(schemeFor("registry.lan:5000"), "https");
    assert.equal(schemeFor("registry.lan:5000", ["registry.lan:5000"]), "http");
    assert.equal(schemeFor("registry.lan:5000", ["http://registry.lan"]), "http");
    assert.equal(isInsecureAllowed("registry.lan.evil.com", ["registry.lan"]), false);
    assert.equal(schemeFor("ghcr.io"), "https");
  });
});

describe("platforms", () => {
  it("parses and normalises", () => {
    assert.deepEqual(parsePlatform("linux/arm64/v8"), { os: "linux", architecture: "arm64", variant: "v8" });
    assert.deepEqual(parsePlatform("linux/x86_64"), { os: "linux", architecture: "amd64" });
    assert.throws(() => parsePlatform("linux"), /invalid platform "linux"/);
  });

  it("selects by os, architecture and variant with Docker's defaults", () => {
    const entries = [
      { id: 1, platform: { os: "linux", architecture: "arm", variant: "v6" } },
      { id: 2, platform: { os: "linux", architecture: "arm", variant: "v7" } },
      { id: 3, platform: { os: "linux", architecture: "arm64" } },
      { id: 4, platform: { os: "unknown", architecture: "unknown" } },
    ];
    assert.equal(selectPlatform(entries, parsePlatform("linux/arm"))?.id, 2);
    assert.equal(selectPlatform(entries, parsePlatform("linux/arm/v6"))?.id, 1);
    assert.equal(selectPlatform(entries, parsePlatform("linux/arm64/v8"))?.id, 3);
    assert.equal(selectPlatform(entries, parsePlatform("linux/arm64/v9")), undefined);
    assert.equal(selectPlatform(entries, parsePlatform("linux/amd64")), undefined);
  });
});

describe("auth helpers", () => {
  it("parses bearer and basic challenges", () => {
    assert.deepEqual(parseChallenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"'), {
      scheme: "bearer",
      params: { realm: "https://auth.docker.io/token", service: "registry.docker.io", scope: "repository:library/alpine:pull" },
    });
    assert.deepEqual(parseChallenge('Basic realm="x"'), { scheme: "basic", params: { realm: "x" } });
    assert.equal(parseChallenge("Negotiate abc"), undefined);
    assert.equal(parseChallenge(null), undefined);
  });

  it("reads credentials from $DOCKER_CONFIG, matching Docker Hub's legacy key", () => {
    const dir = mkdtempSync(join(tmpdir(), "bgr-dc-"));
    try {
      writeFileSync(
        join(dir, "config.json"),
        JSON.stringify({
          auths: {
            "https://index.docker.io/v1/": { auth: Buffer.from("hub:pw:with:colons").toString("base64") },
            "http://reg.lan:5000": { username: "u", password: "p" },
          },
        }),
      );
      const env = { DOCKER_CONFIG: dir };
      assert.deepEqual(dockerCredentials("registry-1.docker.io", env), { username: "hub", password: "pw:with:colons" });
      assert.deepEqual(dockerCredentials("reg.lan:5000", env), { username: "u", password: "p" });
      assert.equal(dockerCredentials("other.io", env), undefined);
      assert.equal(dockerCredentials("other.io", { HOME: dir }), undefined);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("caches tokens per scope until shortly before they expire", () => {
    const cache = new TokenCache();
    const key = TokenCache.key("r", undefined, "repository:a:pull");
    cache.set(key, "t", 60, 0);
    assert.equal(cache.get(key, 1000), "t");
    assert.equal(cache.get(TokenCache.key("r", undefined, "repository:b:pull"), 1000), undefined);
    assert.equal(cache.get(key, 55_000), undefined);
  });
});
