// The E2B-compatible API served by a real bangerd, without booting a VM: off unless asked, the
// key per root (0600) and its checks, request validation (bounded bodies, bad JSON: one-line 400
// in the SDK's { code, message }), unknown sandboxes (404), a busy port (one line), config keys.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { statSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { makeTempHome, mustRun, runBanger, stopDaemon } from "./helpers.ts";

describe("the E2B API (bangerd, no VMs)", () => {
  const { home, cleanup } = makeTempHome();
  const env = { BANGER_NETWORK: "off", BANGER_API: "1", BANGER_API_PORT: "0" };
  const banger = (args: string[], extra: NodeJS.ProcessEnv = {}) => runBanger(args, { home, env: { ...env, ...extra }, cwd: home });
  let url = "";
  let key = "";
  const api = (path: string, init: RequestInit = {}, withKey = true) =>
    fetch(`${url}${path}`, { ...init, headers: { ...(withKey ? { "X-API-KEY": key } : {}), ...(init.headers as Record<string, string>) } });
  const errorOf = async (res: Response) => (await res.json()) as { code: number; message: string };

  before(async () => {
    const info = JSON.parse((await mustRun(banger(["api", "env", "--json"]))).stdout) as { apiUrl: string; apiKey: string };
    url = info.apiUrl;
    key = info.apiKey;
  });
  after(async () => {
    await stopDaemon(home);
    cleanup();
  });

  it("banger api env prints shell-safe export lines; the key is stored 0600 under the root", async () => {
    const out = (await mustRun(banger(["api", "env"]))).stdout;
    assert.equal(out, `export E2B_API_URL='${url}'\nexport E2B_SANDBOX_URL='${url}'\nexport E2B_API_KEY='${key}'\n`);
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(statSync(join(home, "api-key")).mode & 0o777, 0o600);
    assert.equal((await mustRun(banger(["api", "key"]))).stdout, `${key}\n`);
  });

  it("a missing or wrong key is 401 in the SDK's error shape; /health needs none", async () => {
    for (const res of [await api("/v2/sandboxes", {}, false), await api("/v2/sandboxes", { headers: { "X-API-KEY": `e2b_${"1".repeat(40)}` } }, false)]) {
      assert.equal(res.status, 401);
      const err = await errorOf(res);
      assert.equal(err.code, 401);
      assert.match(err.message, /API key/);
    }
    assert.equal((await fetch(`${url}/health`)).status, 200);
    assert.deepEqual(await (await api("/v2/sandboxes")).json(), []);
  });

  it("a foreign Host header (a DNS-rebinding page) is refused with 403, even with the key", async () => {
    const { request } = await import("node:http");
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(`${url}/v2/sandboxes`, { headers: { Host: `evil.example:${new URL(url).port}`, "X-API-KEY": key } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on("error", reject);
      req.end();
    });
    assert.equal(status, 403);
    assert.equal((await fetch(`${url.replace("127.0.0.1", "localhost")}/v2/sandboxes`, { headers: { "X-API-KEY": key } })).status, 200);
  });

  it("bad JSON, a non-object, a missing templateID and a bad timeout are one-line 400s", async () => {
    const post = (body: string) => api("/sandboxes", { method: "POST", body, headers: { "Content-Type": "application/json" } });
    for (const [body, message] of [
      ["{bad", /^request body is not JSON: /],
      ["[1,2]", /^request body must be a JSON object$/],
      ["{}", /^templateID is required$/],
      ['{"templateID":"busybox","timeout":-1}', /^timeout must be a whole number of seconds$/],
      ['{"templateID":"busybox","metadata":{"a":1}}', /"metadata\.a" must be a string/],
      ['{"templateID":"busybox","envVars":{"A B":"x"}}', /not an environment variable name/],
      ['{"templateID":"../x"}', /invalid template name/],
    ] as const) {
      const res = await post(body);
      assert.equal(res.status, 400, body);
      const err = await errorOf(res);
      assert.equal(err.code, 400);
      assert.match(err.message, message);
      assert.equal(err.message.includes("\n"), false);
    }
  });

  it("a body over the bound is refused with 413 without being read whole", async () => {
    const res = await api("/sandboxes", { method: "POST", body: JSON.stringify({ templateID: "busybox", metadata: { big: "x".repeat(300 * 1024) } }) });
    assert.equal(res.status, 413);
    assert.match((await errorOf(res)).message, /^request body over \d+ bytes$/);
  });

  it("an unknown sandbox is 404 on every route; an unknown image too; an unknown route 404", async () => {
    for (const [method, path] of [
      ["GET", "/sandboxes/inope"],
      ["DELETE", "/sandboxes/inope"],
      ["POST", "/sandboxes/inope/timeout"],
      ["POST", "/sandboxes/inope/connect"],
      ["POST", "/sandboxes/inope/pause"],
    ] as const) {
      const res = await api(path, { method, body: method === "POST" ? '{"timeout":10}' : undefined });
      assert.equal(res.status, 404, `${method} ${path}`);
      assert.equal((await errorOf(res)).code, 404);
    }
    const res = await api("/sandboxes", { method: "POST", body: '{"templateID":"nosuchimage"}' });
    assert.equal(res.status, 404);
    assert.match((await errorOf(res)).message, /image nosuchimage not found/);
    assert.equal((await api("/nothing/here")).status, 404);
    assert.equal((await api("/v2/sandboxes?limit=0")).status, 400);
    assert.equal((await api("/v2/sandboxes?state=sleeping")).status, 400);
  });

  it("the sandbox plane: an unknown sandbox is 404 on /envs and NotFound on a Connect call", async () => {
    assert.equal((await fetch(`${url}/envs`, { headers: { "E2b-Sandbox-Id": "inope" } })).status, 404);
    const res = await fetch(`${url}/process.Process/List`, { method: "POST", headers: { "Content-Type": "application/json", "E2b-Sandbox-Id": "inope" }, body: "{}" });
    assert.ok(res.status === 404 || res.status === 501, `status ${res.status}`);
  });

  it("config: api.enabled takes true/false, api.port 1-65535; a busy port is one line and the daemon keeps serving", async () => {
    assert.equal((await banger(["config", "set", "api.enabled", "maybe"])).code, 2);
    const bad = await banger(["config", "set", "api.port", "0"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /api\.port takes a port number from 1 to 65535/);
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(0, "127.0.0.1", () => r()));
    const port = (busy.address() as { port: number }).port;
    try {
      await stopDaemon(home);
      const r = await banger(["api", "env"], { BANGER_API_PORT: String(port) });
      assert.equal(r.code, 1);
      assert.equal(r.stderr.trimEnd().split("\n").length, 1, r.stderr);
      assert.match(r.stderr, new RegExp(`the E2B API is enabled but not listening: the E2B API cannot listen on 127\\.0\\.0\\.1:${port}: the port is in use`));
      await mustRun(banger(["vm", "ls"], { BANGER_API_PORT: String(port) }));
    } finally {
      busy.close();
      await stopDaemon(home);
    }
  });

  it("is off unless asked: a daemon without api.enabled serves nothing and api env says how to turn it on", async () => {
    const r = await runBanger(["api", "env"], { home, env: { BANGER_NETWORK: "off" }, cwd: home });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /the E2B API is off.*banger config set api\.enabled true/);
    await stopDaemon(home);
  });
});
