// The web layer against its contract, a method table: auth (tokens, one-time logins,
// cookies, CSRF, Origin and Host checks), routes and error statuses, pull tasks over SSE,
// the terminal WebSocket, and the OpenAPI document covering every route. The methods here
// stand in for the daemon's; test/e2e/webui.test.ts runs the real daemon in a browser.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { request } from "node:http";
import { WebSocket } from "ws";
import type { MethodTable } from "../rpc/index.ts";
import { BangerError, ErrorCode, notFound } from "../util/errors.ts";
import { optionalInt, optionalString, requireString } from "../rpc/index.ts";
import { resolvePaths } from "../config/index.ts";
import { startWebServer, webMethods, type WebHandle } from "./index.ts";
import openapi from "./openapi.json" with { type: "json" };

const quietLog = { info: () => undefined, warn: () => undefined, error: () => undefined };

const methods: MethodTable = {
  "vm.list": () => [
    { name: "a1", state: "stopped", image: "busybox", kernel: "k", vmm: "qemu", cpus: 1, memoryBytes: 256 * 1024 ** 2, ip: null, error: null, createdAt: "2026-01-01T00:00:00Z", startedAt: null },
  ],
  "vm.show": (p) => {
    throw notFound(`vm ${(p as { name: string }).name}`, "see `banger vm ls`");
  },
  "vm.start": (p) => ({ name: (p as { name: string }).name, state: "running" }),
  // vm.create checks its params with the daemon's accessors (as daemon/methods-vm.ts does), then
  // reports progress: a bad field is refused before any work, a good call runs as a task.
  "vm.create": async (p, call) => {
    const name = optionalString(p, "name") ?? "gen-1";
    const image = requireString(p, "image");
    const cpus = optionalInt(p, "cpus", 1, 64);
    const memoryBytes = optionalInt(p, "memoryBytes", 64 * 1024 ** 2, 256 * 1024 ** 3);
    if (image !== "busybox") throw notFound(`image ${image}`, "see `banger image list`, or `banger image pull`");
    call.progress({ phase: "disk", message: `cloning image ${image}` });
    await new Promise((r) => setTimeout(r, 20));
    call.progress({ phase: "boot" });
    return { name, image, cpus: cpus ?? 1, memoryBytes: memoryBytes ?? 512 * 1024 ** 2, state: "running" };
  },
  "vm.pause": (p) => ({ name: requireString(p, "name"), state: "paused", stateReason: "paused by the user" }),
  "vm.resume": (p) => {
    throw new BangerError(ErrorCode.InUse, `cannot resume vm ${requireString(p, "name")}: it is stopped`, "start it: banger vm start a1");
  },
  "image.rm": (p) => ({ removed: requireString(p, "name") }),
  "kernel.rm": (p) => ({ removed: requireString(p, "name"), force: (p as { force?: boolean }).force }),
  "defaults.get": () => ({ image: "busybox", kernel: null }),
  "defaults.set": (p) => {
    const image = optionalString(p, "image");
    if (image !== undefined && image !== "busybox") throw notFound(`image ${image}`, "see `banger image list`, or `banger image pull`");
    return { image: image ?? "busybox", kernel: null };
  },
  "kernel.pull": async (p, call) => {
    for (let done = 25; done <= 100; done += 25) {
      call.progress({ phase: "download", done, total: 100 });
      await new Promise((r) => setTimeout(r, 20));
    }
    return { name: (p as { name: string }).name };
  },
  // Echoes what is typed, upper-cased, until "exit": enough to see both directions and the end.
  "vm.exec": (p, call) =>
    new Promise((resolve) => {
      const say = (text: string) => void call.emit({ t: "out", fd: 1, data: Buffer.from(text) });
      const { tty } = p as { tty: { rows: number; cols: number } };
      say(`size ${tty.rows}x${tty.cols}\n`);
      call.onInput((raw) => {
        const input = raw as { t: string; b64?: string; rows?: number; cols?: number };
        if (input.t === "resize") say(`resized ${input.rows}x${input.cols}\n`);
        if (input.t !== "in") return;
        const text = Buffer.from(input.b64!, "base64").toString();
        void call.emit({ t: "ack", n: text.length });
        say(text.toUpperCase());
        if (text.includes("exit")) resolve({ exitCode: 0 });
      });
    }),
};

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function send(url: string, opts: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: opts.method ?? "GET", headers: opts.headers }, (res) => {
      let body = "";
      res.on("data", (c) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on("error", reject);
    req.end(opts.body);
  });
}

describe("webui", () => {
  let web: WebHandle;
  let bearer: Record<string, string>;

  before(async () => {
    web = await startWebServer({ methods, paths: resolvePaths({ BANGER_HOME: "/nonexistent" }), config: {}, log: quietLog });
    bearer = { Authorization: `Bearer ${web.token}` };
  });
  after(() => web.close());

  it("listens on loopback on an ephemeral port", () => {
    assert.match(web.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.notEqual(web.url, "http://127.0.0.1:0");
  });

  it("refuses requests without credentials (401), with a wrong token, and under a foreign Host", async () => {
    assert.equal((await send(`${web.url}/api/vms`)).status, 401);
    assert.equal((await send(`${web.url}/`)).status, 401);
    assert.equal((await send(`${web.url}/api/vms`, { headers: { Authorization: "Bearer nope" } })).status, 401);
    assert.equal((await send(`${web.url}/api/vms`, { headers: { ...bearer, Host: "attacker.example:80" } })).status, 403, "DNS rebinding");
    const ok = await send(`${web.url}/api/vms`, { headers: bearer });
    assert.equal(ok.status, 200);
    assert.equal(JSON.parse(ok.body)[0].name, "a1");
    assert.equal(ok.headers["access-control-allow-origin"], undefined, "no CORS");
  });

  it("trades a login code once for an HttpOnly SameSite=Strict cookie", async () => {
    const login = web.loginUrl();
    const first = await send(login);
    assert.equal(first.status, 303);
    const cookie = String(first.headers["set-cookie"]);
    assert.match(cookie, /HttpOnly/);
    assert.match(cookie, /SameSite=Strict/);
    assert.equal((await send(login)).status, 401, "the code works once");
    const session = await send(`${web.url}/api/session`, { headers: { Cookie: cookie.split(";")[0]! } });
    assert.equal(session.status, 200);
    assert.ok(JSON.parse(session.body).csrf.length > 20);
  });

  it("needs the CSRF header and no foreign Origin for a cookie's POSTs (403)", async () => {
    const cookie = String((await send(web.loginUrl())).headers["set-cookie"]).split(";")[0]!;
    const { csrf } = JSON.parse((await send(`${web.url}/api/session`, { headers: { Cookie: cookie } })).body) as { csrf: string };
    const start = `${web.url}/api/vms/a1/start`;
    assert.equal((await send(start, { method: "POST", headers: { Cookie: cookie } })).status, 403, "no CSRF header");
    assert.equal((await send(start, { method: "POST", headers: { Cookie: cookie, "X-Banger-CSRF": "wrong" } })).status, 403);
    assert.equal((await send(start, { method: "POST", headers: { Cookie: cookie, "X-Banger-CSRF": csrf, Origin: "http://evil.example" } })).status, 403);
    assert.equal((await send(start, { method: "POST", headers: { Cookie: cookie, "X-Banger-CSRF": csrf, "Sec-Fetch-Site": "cross-site" } })).status, 403);
    const ok = await send(start, { method: "POST", headers: { Cookie: cookie, "X-Banger-CSRF": csrf, Origin: web.url } });
    assert.equal(ok.status, 200);
    assert.equal(JSON.parse(ok.body).state, "running");
  });

  it("answers method errors with their status, message and hint", async () => {
    const missing = await send(`${web.url}/api/vms/nope`, { headers: bearer });
    assert.equal(missing.status, 404);
    assert.deepEqual(JSON.parse(missing.body), { error: { code: 1001, name: "NotFound", message: "vm nope not found", hint: "see `banger vm ls`" } });
    const form = await send(`${web.url}/api/kernels/pull`, { method: "POST", headers: { ...bearer, "Content-Type": "application/x-www-form-urlencoded" }, body: "name=k" });
    assert.equal(form.status, 400, "only JSON bodies");
    const big = await send(`${web.url}/api/kernels/pull`, { method: "POST", headers: { ...bearer, "Content-Type": "application/json" }, body: JSON.stringify({ name: "x".repeat(70_000) }) });
    assert.equal(big.status, 400);
    assert.equal((await send(`${web.url}/api/nothing`, { headers: bearer })).status, 404);
  });

  it("runs a pull as a task whose progress streams over SSE to the end", async () => {
    const started = await send(`${web.url}/api/kernels/pull`, { method: "POST", headers: { ...bearer, "Content-Type": "application/json" }, body: JSON.stringify({ name: "k1" }) });
    assert.equal(started.status, 202);
    const task = JSON.parse(started.body) as { id: string; state: string };
    const events = await send(`${web.url}/api/tasks/${task.id}/events`, { headers: bearer });
    assert.equal(events.headers["content-type"], "text/event-stream");
    const kinds = [...events.body.matchAll(/^event: (\w+)$/gm)].map((m) => m[1]);
    assert.ok(kinds.filter((k) => k === "progress").length >= 2, events.body);
    assert.equal(kinds.at(-1), "end");
    const last = JSON.parse(
      events.body
        .trim()
        .split("\n")
        .at(-1)!
        .replace(/^data: /, ""),
    );
    assert.equal(last.state, "done");
    assert.deepEqual(last.progress, { phase: "download", done: 100, total: 100 });
  });

  it("refuses the create, pause, resume, remove and default routes without credentials (401)", async () => {
    const json = { "Content-Type": "application/json" };
    for (const [method, path, body] of [
      ["POST", "/api/vms", { image: "busybox" }],
      ["POST", "/api/vms/a1/pause", undefined],
      ["POST", "/api/vms/a1/resume", undefined],
      ["DELETE", "/api/images/busybox", undefined],
      ["DELETE", "/api/kernels/k", undefined],
      ["GET", "/api/defaults", undefined],
      ["POST", "/api/defaults", { image: "busybox" }],
    ] as const) {
      const answer = await send(`${web.url}${path}`, { method, headers: json, body: body && JSON.stringify(body) });
      assert.equal(answer.status, 401, `${method} ${path}`);
    }
  });

  it("creates a VM as a task with progress; memory is read like --memory", async () => {
    const started = await send(`${web.url}/api/vms`, {
      method: "POST",
      headers: { ...bearer, "Content-Type": "application/json" },
      body: JSON.stringify({ image: "busybox", name: "n1", cpus: 2, memory: "1G" }),
    });
    assert.equal(started.status, 202);
    const task = JSON.parse(started.body) as { id: string; method: string; target: string };
    assert.equal(task.method, "vm.create");
    assert.equal(task.target, "n1");
    const events = await send(`${web.url}/api/tasks/${task.id}/events`, { headers: bearer });
    const last = JSON.parse(
      events.body
        .trim()
        .split("\n")
        .at(-1)!
        .replace(/^data: /, ""),
    );
    assert.equal(last.state, "done");
    assert.deepEqual(last.result, { name: "n1", image: "busybox", cpus: 2, memoryBytes: 1024 ** 3, state: "running" });
    assert.match(events.body, /cloning image busybox/);
  });

  it("answers bad input to the new routes at once: 400 (or 404) with the daemon's one line and hint, no task", async () => {
    const post = (path: string, body: unknown) => send(`${web.url}${path}`, { method: "POST", headers: { ...bearer, "Content-Type": "application/json" }, body: JSON.stringify(body) });
    const expect = async (answer: Promise<Answer>, status: number, message: RegExp) => {
      const a = await answer;
      assert.equal(a.status, status, a.body);
      const { error } = JSON.parse(a.body) as { error: { message: string; hint?: string } };
      assert.match(error.message, message);
      assert.ok(!error.message.includes("\n"), "one line");
      return error;
    };
    const size = await expect(post("/api/vms", { image: "busybox", memory: "lots" }), 400, /^memory: cannot read size "lots"$/);
    assert.equal(size.hint, "use e.g. 512M, 2G or a number of bytes");
    await expect(post("/api/vms", { image: "busybox", memory: 512 }), 400, /"memory" must be a size/);
    await expect(post("/api/vms", { image: "busybox", cpus: "two" }), 400, /^"cpus" must be an integer from 1 to 64$/);
    await expect(post("/api/vms", { image: "busybox", memory: "1M" }), 400, /memory/i); // the daemon's own range check
    await expect(post("/api/vms", { image: "busybox", start: "yes" }), 400, /"start" must be true or false/);
    await expect(post("/api/vms", {}), 400, /"image" is required/);
    const missing = await expect(post("/api/vms", { image: "nosuch" }), 404, /^image nosuch not found$/);
    assert.match(missing.hint ?? "", /image pull/);
    await expect(post("/api/defaults", { image: "nosuch" }), 404, /^image nosuch not found$/);
    const resume = await expect(post("/api/vms/a1/resume", {}), 409, /^cannot resume vm a1: it is stopped$/);
    assert.equal(resume.hint, "start it: banger vm start a1");
  });

  it("pauses a VM through the daemon's vm.pause", async () => {
    const paused = await send(`${web.url}/api/vms/a1/pause`, { method: "POST", headers: { ...bearer, "Content-Type": "application/json" }, body: "{}" });
    assert.equal(paused.status, 200, paused.body);
    assert.deepEqual(JSON.parse(paused.body), { name: "a1", state: "paused", stateReason: "paused by the user" });
  });

  it("removes images and kernels (force passed on for kernels) and reads and sets the defaults", async () => {
    const del = async (path: string) => JSON.parse((await send(`${web.url}${path}`, { method: "DELETE", headers: bearer })).body);
    assert.deepEqual(await del("/api/images/busybox"), { removed: "busybox" });
    assert.deepEqual(await del("/api/kernels/k?force=1"), { removed: "k", force: true });
    assert.deepEqual(await del("/api/kernels/k"), { removed: "k", force: false });
    const defaults = await send(`${web.url}/api/defaults`, { headers: bearer });
    assert.deepEqual(JSON.parse(defaults.body), { image: "busybox", kernel: null });
    const set = await send(`${web.url}/api/defaults`, { method: "POST", headers: { ...bearer, "Content-Type": "application/json" }, body: JSON.stringify({ image: "busybox" }) });
    assert.equal(set.status, 200);
  });

  it("bridges a terminal WebSocket both ways, refusing foreign origins", async () => {
    const wsUrl = `${web.url.replace("http", "ws")}/api/vms/a1/terminal?rows=30&cols=100`;
    const refused = await new Promise<number>((resolve) => {
      const ws = new WebSocket(wsUrl, { headers: { ...bearer, Origin: "http://evil.example" } });
      ws.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
      ws.on("error", () => undefined);
    });
    assert.equal(refused, 403);
    const ws = new WebSocket(wsUrl, { headers: bearer });
    let out = "";
    const ended = new Promise<string>((resolve) => {
      ws.on("message", (data, binary) => {
        if (binary) out += data.toString();
        else resolve(data.toString());
      });
    });
    await new Promise((r) => ws.once("open", r));
    ws.send(JSON.stringify({ t: "resize", rows: 40, cols: 120 }));
    ws.send(Buffer.from("hello "));
    ws.send(Buffer.from("exit"));
    assert.deepEqual(JSON.parse(await ended), { t: "exit", status: { exitCode: 0 } });
    assert.match(out, /size 30x100/);
    assert.match(out, /resized 40x120/);
    assert.match(out, /HELLO EXIT/);
  });

  it("documents every API route in openapi.json", async () => {
    const doc = JSON.parse((await send(`${web.url}/api/openapi.json`, { headers: bearer })).body) as typeof openapi;
    assert.match(doc.openapi, /^3\./);
    const { buildRoutes } = await import("./api.ts");
    const routes = buildRoutes(methods, {} as never, {} as never, doc);
    for (const route of routes) {
      const template = route.pattern.source
        .replace(/^\^|\$$/g, "")
        .replace(/\(\?<(\w+)>\[\^\/\]\+\)/g, "{$1}")
        .replace(/\\\//g, "/");
      const entry = (doc.paths as Record<string, Record<string, unknown>>)[template];
      assert.ok(entry?.[route.method.toLowerCase()], `${route.method} ${template} is documented`);
    }
  });

  it("builds the page's DOM from text only: no source under app/ parses markup from strings", async () => {
    const { readdirSync, readFileSync } = await import("node:fs");
    const dir = new URL("./app/", import.meta.url);
    const sources = readdirSync(dir).filter((f) => f.endsWith(".ts"));
    assert.ok(sources.includes("dom.ts") && sources.length >= 5, sources.join(" "));
    for (const file of sources) {
      const text = readFileSync(new URL(file, dir), "utf8");
      assert.doesNotMatch(text, /\.(innerHTML|outerHTML)\b|insertAdjacentHTML|document\.write|createContextualFragment|DOMParser/, `${file} builds markup from a string`);
    }
  });

  it("answers web.info with the URL, a fresh login link and the token; says how to turn it on when off", async () => {
    const info = (await webMethods(web)["web.info"]!({}, {} as never)) as { url: string; loginUrl: string; token: string };
    assert.equal(info.url, web.url);
    assert.match(info.loginUrl, /\/login\?code=/);
    assert.throws(() => webMethods(undefined)["web.info"]!({}, {} as never), /dashboard is off/);
  });
});
