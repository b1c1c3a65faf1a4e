// The JSON API under /api: each route is one daemon method of the table the CLI also uses
// (one code path per operation); this file only maps URLs and query/body fields to params.
// Documented in openapi.json (served at /api/openapi.json); keep the two in step.
import { type MethodName, outBytes } from "../api/index.ts";
import { invalidArgument, notFound } from "../util/errors.ts";
import { parseSize } from "../util/size.ts";
import { type DaemonTable, errorBody, invoke } from "./invoke.ts";
import type { LiveVms } from "./live.ts";
import type { Tasks } from "./tasks.ts";

export interface RouteInput {
  params: Record<string, string>;
  query: URLSearchParams;
  body: Record<string, unknown>;
  signal: AbortSignal;
}

/** What a route answers: JSON (status 200 unless given) or a server-sent event stream. */
export type RouteResult = { json: unknown; status?: number } | { sse: SseSource };

/** Starts feeding an SSE stream; returns the function that stops it. */
export type SseSource = (send: (event: string, data: string) => void, end: () => void) => () => void;

export interface Route {
  method: "GET" | "POST" | "DELETE";
  pattern: RegExp;
  run(input: RouteInput): Promise<RouteResult> | RouteResult;
}

/** Console tail: what the page asks for by default, and the most it may ask for. */
const CONSOLE_DEFAULT_BYTES = 64 * 1024;
const CONSOLE_MAX_BYTES = 1024 * 1024;

/** `/api/vms/:name` → a RegExp with named groups (names are single path segments). */
function path(template: string): RegExp {
  const source = template.replace(/:(\w+)/g, (_m, name: string) => `(?<${name}>[^/]+)`);
  return new RegExp(`^${source}$`);
}

export function buildRoutes(methods: DaemonTable, live: LiveVms, tasks: Tasks, openapi: unknown): Route[] {
  const call = (method: MethodName, params: unknown, signal: AbortSignal) => invoke(methods, method, params, { signal });
  const json = async (p: Promise<unknown>): Promise<RouteResult> => ({ json: await p });
  const route = (method: Route["method"], template: string, run: Route["run"]): Route => ({ method, pattern: path(template), run });
  const get = (template: string, daemonMethod: MethodName, params: (i: RouteInput) => unknown = () => ({})) => route("GET", template, (i) => json(call(daemonMethod, params(i), i.signal)));

  return [
    route("GET", "/api/openapi.json", () => ({ json: openapi })),
    get("/api/daemon", "daemon.status"),
    route("GET", "/api/vms", (i) => json(i.query.get("stats") === "1" ? live.snapshot(i.signal) : call("vm.list", {}, i.signal))),
    route("POST", "/api/vms", async (i) => ({ status: 202, json: await tasks.start("vm.create", String(i.body.name ?? i.body.image ?? ""), createParams(i.body)) })),
    get("/api/vms/:name", "vm.show", (i) => ({ name: i.params.name })),
    get("/api/vms/:name/stats", "vm.stats", (i) => ({ name: i.params.name })),
    get("/api/vms/:name/ports", "vm.ports", (i) => ({ name: i.params.name })),
    get("/api/vms/:name/sessions", "session.list", (i) => ({ vm: i.params.name })),
    route("GET", "/api/vms/:name/console", (i) => json(consoleTail(methods, i))),
    route("POST", "/api/vms/:name/start", (i) => json(call("vm.start", { name: i.params.name }, i.signal))),
    route("POST", "/api/vms/:name/stop", (i) => json(call("vm.stop", { name: i.params.name, timeoutMs: i.body.timeoutMs }, i.signal))),
    route("POST", "/api/vms/:name/kill", (i) => json(call("vm.kill", { name: i.params.name }, i.signal))),
    route("POST", "/api/vms/:name/pause", (i) => json(call("vm.pause", { name: i.params.name }, i.signal))),
    route("POST", "/api/vms/:name/resume", (i) => json(call("vm.resume", { name: i.params.name }, i.signal))),
    route("DELETE", "/api/vms/:name", (i) => json(call("vm.rm", { name: i.params.name, force: i.query.get("force") === "1" }, i.signal))),
    get("/api/kernels", "kernel.list"),
    get("/api/kernels/catalog", "kernel.catalog"),
    route("POST", "/api/kernels/pull", async (i) => ({ status: 202, json: await tasks.start("kernel.pull", requireField(i.body, "name"), { name: i.body.name, force: i.body.force }) })),
    route("DELETE", "/api/kernels/:name", (i) => json(call("kernel.rm", { name: i.params.name, force: i.query.get("force") === "1" }, i.signal))),
    get("/api/images", "image.list"),
    get("/api/images/catalog", "image.catalog"),
    route("POST", "/api/images/pull", async (i) => ({ status: 202, json: await tasks.start("image.pull", requireField(i.body, "ref"), { ref: i.body.ref, name: i.body.name, force: i.body.force }) })),
    route("DELETE", "/api/images/:name", (i) => json(call("image.rm", { name: i.params.name, force: i.query.get("force") === "1" }, i.signal))),
    get("/api/snapshots", "snapshot.list"),
    get("/api/defaults", "defaults.get"),
    route("POST", "/api/defaults", (i) => json(call("defaults.set", { image: i.body.image, kernel: i.body.kernel }, i.signal))),
    get("/api/operations", "ops.list", (i) => ({ limit: i.query.has("limit") ? Number(i.query.get("limit")) : undefined })),
    get("/api/sessions", "session.list"),
    get("/api/pools", "pool.list"),
    route("GET", "/api/tasks/:id", (i) => {
      const task = tasks.get(i.params.id!);
      return task ? { json: task } : { status: 404, json: errorBody(notFound(`task ${i.params.id}`)) };
    }),
    route("GET", "/api/tasks/:id/events", (i) => ({ sse: taskEvents(tasks, i.params.id!) })),
    route("GET", "/api/events", () => ({ sse: (send) => live.watch((snapshot) => send("vms", snapshot)) })),
  ];
}

/**
 * vm.create's params from the page's form: `memory` as people type it ("512M", "2G"; a bare
 * number is MiB, as `--memory` takes it); the rest go to the daemon, which checks them.
 */
function createParams(body: Record<string, unknown>): Record<string, unknown> {
  const { name, image, cpus, memory, start } = body;
  if (memory !== undefined && memory !== null && typeof memory !== "string") throw invalidArgument(`"memory" must be a size like "512M" or "2G"`);
  const memoryBytes = typeof memory === "string" && memory.trim() !== "" ? Math.round(parseSize(memory, "memory", "m") / 1024 ** 2) * 1024 ** 2 : undefined;
  if (start !== undefined && typeof start !== "boolean") throw invalidArgument(`"start" must be true or false`);
  return { name, image, cpus, memoryBytes, noStart: start === false };
}

function requireField(body: Record<string, unknown>, field: string): string {
  const v = body[field];
  if (typeof v !== "string" || v === "") throw invalidArgument(`the JSON body needs a "${field}" string`);
  return v;
}

/** The last bytes of the VM's serial console, through vm.logs (without follow). */
async function consoleTail(methods: DaemonTable, i: RouteInput): Promise<{ bytes: number; text: string }> {
  const want = Math.min(Math.max(Number(i.query.get("bytes") ?? CONSOLE_DEFAULT_BYTES) || CONSOLE_DEFAULT_BYTES, 1), CONSOLE_MAX_BYTES);
  let tail = Buffer.alloc(0);
  const result = await invoke(
    methods,
    "vm.logs",
    { name: i.params.name, follow: false },
    {
      signal: i.signal,
      emit: (event) => {
        const out = outBytes(event);
        if (!out) return;
        tail = Buffer.concat([tail, out.data]);
        if (tail.length > want) tail = tail.subarray(tail.length - want);
      },
    },
  );
  return { bytes: result.bytes, text: tail.toString("utf8") };
}

/** The task as it is now, then its progress, then one `end` event carrying the final state. */
function taskEvents(tasks: Tasks, id: string): SseSource {
  return (send, end) => {
    const task = tasks.get(id);
    if (!task) {
      send("error", JSON.stringify({ message: `task ${id} not found` }));
      end();
      return () => undefined;
    }
    send(task.state === "running" ? "progress" : "end", JSON.stringify(task));
    if (task.state !== "running") {
      end();
      return () => undefined;
    }
    return tasks.follow(id, (kind, view) => {
      send(kind, JSON.stringify(view));
      if (kind === "end") end();
    });
  };
}
