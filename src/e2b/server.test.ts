// The E2B server's sandbox plane against a hostile HTTP client, with a stand-in method table
// (no daemon, no VM): a Connect call is refused on its headers before any of its body is read,
// and a message over the limit is refused on its declared length.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { request } from "node:http";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Handlers } from "../api/index.ts";
import { BangerError, ErrorCode } from "../util/errors.ts";
import { ApiKeys } from "./keys.ts";
import { E2bServer } from "./server.ts";

const TOKEN = "a".repeat(48);
const SANDBOX = "i0123456789abcdefghi";
const GIB = 1024 ** 3;

describe("the E2B server's sandbox plane (stand-in daemon)", () => {
  const dir = mkdtempSync(join(tmpdir(), "e2b-server-"));
  let server: E2bServer;
  let port = 0;
  // Only what the sandbox lookup needs: a handler reached past it would fail the test's expectations.
  const methods = {
    "sandbox.show": (p: { id: string }) => {
      if (p.id !== SANDBOX) throw new BangerError(ErrorCode.NotFound, `sandbox ${p.id} not found`);
      return { id: SANDBOX, vm: SANDBOX, accessToken: TOKEN, envVars: {}, vmState: "running" };
    },
  } as unknown as Partial<Handlers>;

  before(async () => {
    server = new E2bServer({ methods, keys: new ApiKeys(join(dir, "api-key")), log: { info: () => undefined, warn: () => undefined } });
    await server.listen("127.0.0.1", 0);
    port = Number(new URL(server.url).port);
  });
  after(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /**
   * POSTs headers and one byte of a body declared `length` bytes long, and never the rest:
   * the answer (status and body) must come from the headers alone.
   */
  const answerBeforeBody = (path: string, headers: Record<string, string>, length: number) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const timer = setTimeout(() => {
        req.destroy();
        reject(new Error(`no answer to ${path} before its body`));
      }, 5000);
      const req = request({ host: "127.0.0.1", port, path, method: "POST", headers: { ...headers, "content-length": String(length) } }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => {
          body += d;
          // A streaming answer ends with its end-stream message; enough once the error is in.
          if (body.includes('"error"') || body.includes('"code"')) done();
        });
        res.on("end", done);
        res.on("error", done);
        function done() {
          clearTimeout(timer);
          req.destroy();
          resolve({ status: res.statusCode ?? 0, body });
        }
      });
      req.on("error", () => undefined);
      req.write("{");
    });
  const json = { "content-type": "application/json" };
  const streamJson = { "content-type": "application/connect+json" };

  it("refuses a Connect call without its sandbox's token on its headers, never reading the body", async () => {
    for (const headers of [{}, { "x-access-token": "wrong" }, { "x-access-token": "b".repeat(48) }] as Record<string, string>[]) {
      const unary = await answerBeforeBody("/process.Process/List", { ...json, "e2b-sandbox-id": SANDBOX, ...headers }, GIB);
      assert.equal(unary.status, 401);
      assert.match(unary.body, /unauthenticated/);
      const fs = await answerBeforeBody("/filesystem.Filesystem/Stat", { ...json, "e2b-sandbox-id": SANDBOX, ...headers }, GIB);
      assert.equal(fs.status, 401);
      // A server stream answers its error in the end-stream message.
      const stream = await answerBeforeBody("/process.Process/Start", { ...streamJson, "e2b-sandbox-id": SANDBOX, ...headers }, GIB);
      assert.match(stream.body, /unauthenticated/);
    }
  });

  it("answers an unknown or missing sandbox on its headers too, as each service does", async () => {
    assert.equal((await answerBeforeBody("/process.Process/List", json, GIB)).status, 404);
    assert.equal((await answerBeforeBody("/process.Process/List", { ...json, "e2b-sandbox-id": "inope" }, GIB)).status, 404);
    // The filesystem's gone sandbox is Unavailable (E2B's proxy: the SDK says it is not running).
    assert.equal((await answerBeforeBody("/filesystem.Filesystem/Stat", { ...json, "e2b-sandbox-id": "inope" }, GIB)).status, 503);
  });

  it("refuses a Start whose tag or cwd is over the Start bound (the registry would keep it while it runs)", async () => {
    for (const extra of [{ tag: "t".repeat(2 * 1024 * 1024) }, { process: { cmd: "/bin/true", cwd: `/${"d".repeat(2 * 1024 * 1024)}` } }]) {
      const json = Buffer.from(JSON.stringify({ process: { cmd: "/bin/true" }, ...extra }));
      const envelope = Buffer.alloc(5);
      envelope.writeUInt32BE(json.length, 1);
      const res = await fetch(`${server.url}/process.Process/Start`, {
        method: "POST",
        headers: { ...streamJson, "connect-protocol-version": "1", "e2b-sandbox-id": SANDBOX, "x-access-token": TOKEN },
        body: Buffer.concat([envelope, json]),
      });
      assert.match(await res.text(), /invalid_argument.*over 1048576 bytes/);
    }
  });

  it("refuses a message declared over the limit, with the token, without reading it", async () => {
    const res = await answerBeforeBody("/process.Process/List", { ...json, "e2b-sandbox-id": SANDBOX, "x-access-token": TOKEN }, GIB);
    assert.equal(res.status, 429);
    assert.match(res.body, /resource_exhausted/);
  });
});
