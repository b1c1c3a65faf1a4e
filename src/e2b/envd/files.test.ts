// POST /files against a hostile client, with a stand-in vm.fs.write (no daemon, no VM: it
// acknowledges and counts the bytes, as the daemon's would take them): a gzip upload the
// client abandons ends the request's handling, and an upload (gzip or raw) is bounded by
// what it carries after inflating, not only by its declared length.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { type IncomingMessage, type Server, type ServerResponse, createServer, request } from "node:http";
import { createGzip } from "node:zlib";
import type { Handlers, StreamInput } from "../../api/index.ts";
import type { CallContext } from "../../rpc/index.ts";
import { cancelled } from "../../util/errors.ts";
import type { EnvdDeps } from "./context.ts";
import { handleFiles } from "./files.ts";

const LIMIT = 1024 * 1024;

describe("POST /files (stand-in daemon)", () => {
  let server: Server;
  let port = 0;
  /** Bytes each vm.fs.write took, and how each request's handling ended. */
  const written: number[] = [];
  const handled: Array<"done" | "failed"> = [];
  let handledNow: () => void = () => undefined;
  const methods = {
    "vm.fs.write": (_p: unknown, call: CallContext) =>
      new Promise((resolve, reject) => {
        let n = 0;
        call.signal.addEventListener("abort", () => reject(cancelled()), { once: true });
        call.onInput((raw) => {
          const input = raw as StreamInput;
          if (input.t === "in") {
            const size = "data" in input ? input.data.length : 0;
            n += size;
            void call.emit({ t: "ack", n: size });
          } else if (input.t === "eof") {
            written.push(n);
            resolve({ name: "f", type: "file", path: "/f", sizeBytes: n, mode: 0o644, permissions: "-rw-r--r--", owner: "root", group: "root", mtime: { seconds: 0, nanos: 0 } });
          }
        });
      }),
  } as unknown as Partial<Handlers>;
  const deps: EnvdDeps = { methods, sandboxFor: async () => ({ id: "isandbox", vm: "isandbox", envVars: {} }) };

  before(async () => {
    server = createServer((req: IncomingMessage, res: ServerResponse) => {
      handleFiles(deps, req, res, { maxUploadBytes: LIMIT }).then(
        () => (handled.push("done"), handledNow()),
        () => (handled.push("failed"), handledNow()),
      );
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as { port: number }).port;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  const post = (headers: Record<string, string>, body: Buffer | ((req: ReturnType<typeof request>) => void)) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request({ host: "127.0.0.1", port, path: "/files?path=/f", method: "POST", headers: { "content-type": "application/octet-stream", ...headers } }, (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => (text += d));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
      });
      req.on("error", reject);
      if (Buffer.isBuffer(body)) req.end(body);
      else body(req);
    });
  const gzip = (data: Buffer) =>
    new Promise<Buffer>((resolve) => {
      const z = createGzip();
      const out: Buffer[] = [];
      z.on("data", (b: Buffer) => out.push(b));
      z.on("end", () => resolve(Buffer.concat(out)));
      z.end(data);
    });

  it("takes a gzip upload within the bound, inflated", async () => {
    const res = await post({ "content-encoding": "gzip" }, await gzip(Buffer.alloc(LIMIT, 7)));
    assert.equal(res.status, 200, res.body);
    assert.equal(written.at(-1), LIMIT);
  });

  it("refuses a gzip bomb and a chunked raw body past the bound (400), however small on the wire", async () => {
    const bomb = await gzip(Buffer.alloc(8 * LIMIT));
    assert.ok(bomb.length < LIMIT / 16);
    const res = await post({ "content-encoding": "gzip" }, bomb);
    assert.equal(res.status, 400);
    assert.match(res.body, /larger than/);
    const raw = await post({}, (req) => {
      for (let i = 0; i < 4; i++) req.write(Buffer.alloc(LIMIT / 2));
      req.end();
    });
    assert.equal(raw.status, 400);
    assert.match(raw.body, /larger than/);
  });

  it("ends its handling of a gzip upload the client abandons midway", async () => {
    const before = handled.length;
    const ended = new Promise<void>((resolve) => (handledNow = () => handled.length > before && resolve()));
    const part = (await gzip(Buffer.alloc(4 * LIMIT, 1))).subarray(0, 64);
    const req = request({
      host: "127.0.0.1",
      port,
      path: "/files?path=/f",
      method: "POST",
      headers: { "content-type": "application/octet-stream", "content-encoding": "gzip", "content-length": "100000" },
    });
    req.on("error", () => undefined);
    req.write(part);
    await new Promise((r) => setTimeout(r, 200));
    req.destroy();
    const timeout = new Promise<string>((resolve) => setTimeout(() => resolve("hung"), 3000).unref());
    assert.equal(await Promise.race([ended.then(() => "ended"), timeout]), "ended");
  });
});
