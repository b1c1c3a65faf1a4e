// The control plane: the REST routes of openapi.yml the official SDK calls (sandboxes, their
// timeout, connect, pause/resume, fork, snapshots), each translated onto one sandbox.* (or
// snapshot.*) daemon method called in-process, with the SDK's shapes in and out.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Handlers, MethodName, ParamsOf, ResultOf, SandboxView } from "../api/index.ts";
import { type Handler, callLocal } from "../rpc/index.ts";
import { BangerError, ErrorCode, errorLine } from "../util/errors.ts";
import { HttpError, readJson, sendEmpty, sendError, sendJson, statusOf } from "./http.ts";

/**
 * The envd version sandboxes report. The SDK gates features on it: >= 0.5.7 sends files.write as
 * an octet-stream POST /files, >= 0.5.2 closes stdin with CloseStdin, >= 0.4.0 sends `user` only
 * when given. (Not claimed: file metadata, 0.6.2; watch events with entries, 0.6.3.)
 */
export const ENVD_VERSION = "0.5.7";
/** The SDK's default when a body names no timeout (openapi's NewSandbox.timeout default), in seconds. */
const DEFAULT_TIMEOUT_S = 15;
const MAX_PAGE = 100;
const MIB = 1024 ** 2;

export type Call = <M extends MethodName>(method: M, params: ParamsOf<M>) => Promise<ResultOf<M>>;

/** A caller of the daemon's table for one request (aborted when the client goes away). */
export function caller(methods: Partial<Handlers>, signal: AbortSignal): Call {
  return async (method, params) => (await callLocal(methods as Partial<Record<string, Handler>>, method, params, { signal })) as ResultOf<typeof method>;
}

/** openapi's Sandbox (create, connect, resume, fork). */
function sandboxBody(s: SandboxView) {
  return {
    templateID: s.template,
    sandboxID: s.id,
    clientID: "banger",
    envdVersion: ENVD_VERSION,
    ...(s.accessToken ? { envdAccessToken: s.accessToken } : {}),
    trafficAccessToken: null,
    domain: null,
  };
}

/** openapi's ListedSandbox. */
function listedBody(s: SandboxView) {
  return {
    templateID: s.template,
    sandboxID: s.id,
    clientID: "banger",
    startedAt: s.startedAt,
    endAt: s.endAt,
    cpuCount: s.cpus,
    memoryMB: Math.round(s.memoryBytes / MIB),
    diskSizeMB: Math.round(s.diskBytes / MIB),
    metadata: s.metadata,
    state: s.state,
    envdVersion: ENVD_VERSION,
    volumeMounts: [],
  };
}

/** openapi's SandboxDetail. */
function detailBody(s: SandboxView) {
  return {
    ...listedBody(s),
    ...(s.accessToken ? { envdAccessToken: s.accessToken } : {}),
    domain: null,
    lifecycle: { onTimeout: s.autoPause ? "pause" : "kill", autoResume: false },
  };
}

/** `timeout` in seconds (a whole number from 0), as milliseconds; `fallback` when absent. */
function timeoutMs(body: Record<string, unknown>, fallback: number | undefined): number | undefined {
  const t = body.timeout;
  if (t === undefined || t === null) return fallback === undefined ? undefined : fallback * 1000;
  if (typeof t !== "number" || !Number.isInteger(t) || t < 0) throw new HttpError(400, "timeout must be a whole number of seconds");
  return t * 1000;
}

/** The metadata filter: "k=v&k2=v2" with keys and values URL-encoded (the SDK encodes them once more). */
export function parseMetadataQuery(text: string | null): Record<string, string> | undefined {
  if (!text) return undefined;
  const decode = (s: string) => {
    try {
      return decodeURIComponent(s);
    } catch {
      throw new HttpError(400, `metadata filter is not URL-encoded: ${JSON.stringify(s.slice(0, 80))}`);
    }
  };
  return Object.fromEntries([...new URLSearchParams(text)].map(([k, v]) => [decode(k), decode(v)]));
}

/** One page of a list ordered by start: `nextToken` is the id the page starts after. */
export function page<T extends { id: string }>(items: T[], limitText: string | null, nextToken: string | null): { items: T[]; next?: string } {
  const limit = limitText === null ? MAX_PAGE : Number(limitText);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) throw new HttpError(400, `limit must be a whole number from 1 to ${MAX_PAGE}`);
  let start = 0;
  if (nextToken) {
    const at = items.findIndex((s) => s.id === nextToken);
    if (at < 0) throw new HttpError(400, "nextToken is not from this list (or its sandbox is gone): list again from the start");
    start = at + 1;
  }
  const slice = items.slice(start, start + limit);
  return start + limit < items.length ? { items: slice, next: slice[slice.length - 1]!.id } : { items: slice };
}

/** Routes one control-plane request (the API key was checked). False: no such route. */
export async function handleControl(call: Call, req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean> {
  const method = req.method ?? "GET";
  const parts = url.pathname.split("/").filter((p) => p !== "");
  const q = url.searchParams;
  try {
    if (parts[0] === "sandboxes" && parts.length === 1) {
      if (method === "POST") {
        const body = await readJson(req);
        if (typeof body.templateID !== "string" || body.templateID === "") throw new HttpError(400, "templateID is required");
        const created = await call("sandbox.create", {
          template: body.templateID,
          timeoutMs: timeoutMs(body, DEFAULT_TIMEOUT_S)!,
          metadata: body.metadata as Record<string, string> | undefined,
          envVars: body.envVars as Record<string, string> | undefined,
          autoPause: body.autoPause as boolean | undefined,
          secure: body.secure as boolean | undefined,
          internet: body.allow_internet_access as boolean | undefined,
        });
        sendJson(res, 201, sandboxBody(created));
        return true;
      }
      if (method === "GET") {
        const list = await call("sandbox.list", { metadata: parseMetadataQuery(q.get("metadata")), state: ["running"] });
        sendJson(res, 200, list.map(listedBody));
        return true;
      }
      return false;
    }
    if (parts[0] === "v2" && parts[1] === "sandboxes" && parts.length === 2 && method === "GET") {
      await listV2(call, res, q);
      return true;
    }
    if (parts[0] === "sandboxes" && parts.length >= 2) return await sandboxRoute(call, req, res, method, parts[1]!, parts.slice(2).join("/"));
    if (parts[0] === "snapshots" && parts.length === 1 && method === "GET") {
      await listSnapshots(call, res, q);
      return true;
    }
    // Sandbox.deleteSnapshot: snapshots are templates to the SDK.
    if (parts[0] === "templates" && parts.length === 2 && method === "DELETE") {
      await call("snapshot.rm", { name: parts[1]! });
      sendEmpty(res);
      return true;
    }
    return false;
  } catch (err) {
    sendError(res, err);
    return true;
  }
}

async function listV2(call: Call, res: ServerResponse, q: URLSearchParams): Promise<void> {
  const states = q
    .get("state")
    ?.split(",")
    .filter((s) => s !== "");
  for (const s of states ?? []) if (s !== "running" && s !== "paused") throw new HttpError(400, `state must be running or paused, not ${JSON.stringify(s)}`);
  let list = await call("sandbox.list", { metadata: parseMetadataQuery(q.get("metadata")), state: states as ("running" | "paused")[] | undefined });
  const template = q.get("template");
  if (template) list = list.filter((s) => s.template === template);
  const after = q.get("startedAfter");
  if (after) {
    const t = Date.parse(after);
    if (Number.isNaN(t)) throw new HttpError(400, "startedAfter must be a date-time");
    list = list.filter((s) => Date.parse(s.startedAt) >= t);
  }
  const order = q.get("order") ?? "desc";
  if (order !== "asc" && order !== "desc") throw new HttpError(400, "order must be asc or desc");
  if (order === "desc") list.reverse();
  const { items, next } = page(list, q.get("limit"), q.get("nextToken"));
  sendJson(res, 200, items.map(listedBody), next ? { "X-Next-Token": next } : {});
}

async function listSnapshots(call: Call, res: ServerResponse, q: URLSearchParams): Promise<void> {
  const sandbox = q.get("sandboxID");
  const name = q.get("name");
  const all = (await call("snapshot.list", {})).filter((s) => (!sandbox || s.sourceVm === sandbox) && (!name || s.name === name));
  const { items, next } = page(
    all.map((s) => ({ ...s, id: s.name })),
    q.get("limit"),
    q.get("nextToken"),
  );
  sendJson(
    res,
    200,
    items.map((s) => ({ snapshotID: s.name, names: [s.name] })),
    next ? { "X-Next-Token": next } : {},
  );
}

async function sandboxRoute(call: Call, req: IncomingMessage, res: ServerResponse, method: string, id: string, action: string): Promise<boolean> {
  switch (`${method} ${action}`) {
    case "GET ":
      sendJson(res, 200, detailBody(await call("sandbox.show", { id })));
      return true;
    case "DELETE ":
      await call("sandbox.kill", { id });
      sendEmpty(res);
      return true;
    case "POST timeout": {
      const ms = timeoutMs(await readJson(req), undefined);
      if (ms === undefined) throw new HttpError(400, "timeout is required");
      await call("sandbox.timeout", { id, timeoutMs: ms });
      sendEmpty(res);
      return true;
    }
    case "POST connect":
    case "POST resume": {
      const body = await readJson(req);
      const before = await call("sandbox.show", { id });
      // /resume (deprecated) is for paused sandboxes only; /connect takes either.
      if (action === "resume" && before.state === "running") throw new BangerError(ErrorCode.InUse, `sandbox ${id} is already running`);
      const after = await call("sandbox.connect", { id, timeoutMs: timeoutMs(body, action === "resume" ? DEFAULT_TIMEOUT_S : undefined) });
      sendJson(res, before.state === "paused" || before.vmState !== "running" ? 201 : 200, sandboxBody(after));
      return true;
    }
    case "POST pause":
      await readJson(req);
      await call("sandbox.pause", { id });
      sendEmpty(res);
      return true;
    case "POST fork": {
      const body = await readJson(req);
      const count = body.count === undefined ? 1 : body.count;
      if (typeof count !== "number" || !Number.isInteger(count) || count < 1) throw new HttpError(400, "count must be a whole number from 1");
      try {
        const forks = await call("sandbox.fork", { id, count, timeoutMs: timeoutMs(body, DEFAULT_TIMEOUT_S)! });
        sendJson(
          res,
          201,
          forks.map((s) => ({ sandbox: sandboxBody(s) })),
        );
      } catch (err) {
        // The sandbox itself (missing, paused) fails the request; a failure to start the forks is per fork.
        const status = statusOf(err);
        if (status === 404 || status === 409 || status === 400) throw err;
        sendJson(
          res,
          201,
          Array.from({ length: count }, () => ({ error: { code: status, message: errorLine(err) } })),
        );
      }
      return true;
    }
    case "POST snapshots": {
      const body = await readJson(req);
      if (body.name !== undefined && typeof body.name !== "string") throw new HttpError(400, "name must be a string");
      const taken = await call("sandbox.snapshot", { id, name: body.name as string | undefined });
      sendJson(res, 201, { snapshotID: taken.snapshot, names: [taken.snapshot] });
      return true;
    }
    default:
      return false;
  }
}
