// Authentication against real registries: docker-registry with htpasswd (basic auth) and
// with token auth backed by a local token server (the bearer flow Docker Hub and GHCR use).
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { makeTempHome } from "../../test/helpers.ts";
import { type RunningRegistry, type TokenServer, startRegistry, startTokenServer } from "../../test/registry/harness.ts";
import { buildLayers, pushTestImage } from "../../test/registry/images.ts";
import { BangerError } from "../util/errors.ts";
import { TokenCache, pullImage, resolveImage } from "./index.ts";

const USER = "alice";
const PASSWORD = "s3cret:pw";
const basic = (u: string, p: string) => `Basic ${Buffer.from(`${u}:${p}`).toString("base64")}`;

let tmp: { home: string; cleanup: () => void };
let basicReg: RunningRegistry;
let anonTokens: TokenServer;
let anonReg: RunningRegistry;
let loginTokens: TokenServer;
let loginReg: RunningRegistry;
let noConfigEnv: NodeJS.ProcessEnv;
let n = 0;

before(async () => {
  tmp = makeTempHome();
  noConfigEnv = { DOCKER_CONFIG: join(tmp.home, "no-docker-config") };
  [anonTokens, loginTokens] = await Promise.all([startTokenServer(), startTokenServer({ [USER]: PASSWORD })]);
  [basicReg, anonReg, loginReg] = await Promise.all([
    startRegistry({ kind: "htpasswd", user: USER, password: PASSWORD }),
    startRegistry({ kind: "token", server: anonTokens }),
    startRegistry({ kind: "token", server: loginTokens }),
  ]);
  const layers = await buildLayers("amd64", "oci");
  await Promise.all([
    pushTestImage({ url: basicReg.url, authorization: () => basic(USER, PASSWORD) }, "private/app", "1", "amd64", "oci", layers),
    pushTestImage({ url: anonReg.url, authorization: (s) => `Bearer ${anonTokens.issue(s)}` }, "public/app", "1", "amd64", "oci", layers),
    pushTestImage({ url: loginReg.url, authorization: (s) => `Bearer ${loginTokens.issue(s)}` }, "private/app", "1", "amd64", "oci", layers),
  ]);
});

after(async () => {
  await Promise.all([basicReg?.stop(), anonReg?.stop(), loginReg?.stop()]);
  await Promise.all([anonTokens?.stop(), loginTokens?.stop()]);
  tmp?.cleanup();
});

const cacheDir = () => join(tmp.home, `cache-${n++}`);

function dockerConfig(registry: string, user: string, password: string): NodeJS.ProcessEnv {
  const dir = join(tmp.home, `docker-${n++}`);
  mkdirSync(dir);
  writeFileSync(join(dir, "config.json"), JSON.stringify({ auths: { [registry]: { auth: Buffer.from(`${user}:${password}`).toString("base64") } } }));
  return { DOCKER_CONFIG: dir };
}

const denied = (pattern: RegExp) => (err: unknown) => {
  assert.ok(err instanceof BangerError);
  assert.match(err.message, pattern);
  assert.match(err.hint ?? "", /docker login/);
  return true;
};

describe("basic auth (htpasswd)", () => {
  it("asks for a login when there are no credentials", async () => {
    await assert.rejects(pullImage(`${basicReg.host}/private/app:1`, { cacheDir: cacheDir(), env: noConfigEnv }), denied(/denied access to private\/app .*needs a login/));
  });

  it("pulls with credentials from $DOCKER_CONFIG/config.json", async () => {
    const result = await pullImage(`${basicReg.host}/private/app:1`, { cacheDir: cacheDir(), env: dockerConfig(basicReg.host, USER, PASSWORD) });
    assert.equal(result.layers.length, 3);
  });

  it("resolves without downloading layers, and the result carries no credentials", async () => {
    const image = await resolveImage(`${basicReg.host}/private/app:1`, { credentials: { username: USER, password: PASSWORD }, platform: "linux/amd64" });
    assert.equal(image.layers.length, 3);
    assert.deepEqual(image.platform, { os: "linux", architecture: "amd64" });
    assert.equal(JSON.stringify(image).includes(PASSWORD), false);
  });

  it("pulls with explicit credentials and rejects a wrong password clearly", async () => {
    await pullImage(`${basicReg.host}/private/app:1`, { cacheDir: cacheDir(), credentials: { username: USER, password: PASSWORD } });
    await assert.rejects(pullImage(`${basicReg.host}/private/app:1`, { cacheDir: cacheDir(), credentials: { username: USER, password: "wrong" } }), denied(/rejected the credentials/));
  });
});

describe("bearer token flow", () => {
  it("gets an anonymous token once per scope and reuses it for every request and the next pull", async () => {
    const tokenCache = new TokenCache();
    const before = anonTokens.requests;
    const first = await pullImage(`${anonReg.host}/public/app:1`, { cacheDir: cacheDir(), env: noConfigEnv, tokenCache });
    assert.equal(first.layers.length, 3);
    assert.equal(anonTokens.requests - before, 1);
    await pullImage(`${anonReg.host}/public/app:1`, { cacheDir: cacheDir(), env: noConfigEnv, tokenCache });
    assert.equal(anonTokens.requests - before, 1);
  });

  it("sends Docker config credentials to the token server", async () => {
    await assert.rejects(pullImage(`${loginReg.host}/private/app:1`, { cacheDir: cacheDir(), env: noConfigEnv, tokenCache: new TokenCache() }), denied(/token server .* answered 401/));
    const result = await pullImage(`${loginReg.host}/private/app:1`, {
      cacheDir: cacheDir(),
      env: dockerConfig(`http://${loginReg.host}`, USER, PASSWORD),
      tokenCache: new TokenCache(),
    });
    assert.equal(result.cached, false);
  });
});
