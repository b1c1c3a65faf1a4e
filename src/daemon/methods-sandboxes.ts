// The sandbox.* methods (the E2B-compatible API's sandboxes): each checks its params and calls
// one operation of sandboxes.ts. The api.* methods are the API server's (e2b/, daemon/server.ts).
import type { Handlers } from "../api/index.ts";
import { optionalBool, optionalInt, optionalString, optionalStringArray, requireObject, requireString } from "../rpc/index.ts";
import { BangerError, ErrorCode } from "../util/errors.ts";
import { validateName } from "../util/names.ts";
import type { DaemonContext } from "./context.ts";
import { MAX_FORK_COUNT } from "./fork.ts";
import { connectSandbox, createSandbox, forkSandbox, killSandbox, listSandboxes, pauseSandbox, setSandboxTimeout, showSandbox, snapshotSandbox } from "./sandboxes.ts";

/** Longest timeout: 30 days (E2B's own cap is 24 hours; a self-hosted sandbox may live longer). */
export const MAX_TIMEOUT_MS = 30 * 24 * 3600 * 1000;
const MAX_MAP_ENTRIES = 256;
const MAX_MAP_TEXT = 64 * 1024;

const bad = (message: string) => new BangerError(ErrorCode.InvalidParams, message);

/** A map of strings (metadata, envVars): bounded in entries and size. */
function stringMap(p: unknown, key: string, opts: { envNames?: boolean } = {}): Record<string, string> {
  const v = requireObject(p)[key];
  if (v === undefined || v === null) return {};
  if (typeof v !== "object" || Array.isArray(v)) throw bad(`"${key}" must be an object of strings`);
  const entries = Object.entries(v as Record<string, unknown>);
  if (entries.length > MAX_MAP_ENTRIES) throw bad(`"${key}" has more than ${MAX_MAP_ENTRIES} entries`);
  let size = 0;
  for (const [k, value] of entries) {
    if (typeof value !== "string") throw bad(`"${key}.${k}" must be a string`);
    if (opts.envNames && !/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw bad(`"${key}": ${JSON.stringify(k)} is not an environment variable name`);
    size += k.length + value.length;
  }
  if (size > MAX_MAP_TEXT) throw bad(`"${key}" is over ${MAX_MAP_TEXT} characters`);
  return Object.fromEntries(entries) as Record<string, string>;
}

const timeoutParam = (p: unknown, key = "timeoutMs") => optionalInt(p, key, 0, MAX_TIMEOUT_MS);
const id = (p: unknown) => validateName("sandbox", requireString(p, "id"));

type SandboxMethod = "sandbox.create" | "sandbox.list" | "sandbox.show" | "sandbox.kill" | "sandbox.timeout" | "sandbox.connect" | "sandbox.pause" | "sandbox.fork" | "sandbox.snapshot";

export function sandboxMethods(ctx: DaemonContext): Handlers<SandboxMethod> {
  return {
    "sandbox.create": (p, call) => {
      const timeoutMs = timeoutParam(p);
      if (timeoutMs === undefined) throw bad(`"timeoutMs" is required`);
      const template = optionalString(p, "template");
      return createSandbox(
        ctx,
        {
          template: template === undefined ? undefined : validateName("template", template),
          timeoutMs,
          metadata: stringMap(p, "metadata"),
          envVars: stringMap(p, "envVars", { envNames: true }),
          autoPause: optionalBool(p, "autoPause") ?? false,
          secure: optionalBool(p, "secure") ?? true,
          internet: optionalBool(p, "internet") ?? true,
        },
        call,
      );
    },
    "sandbox.list": (p) => {
      const metadata = Object.entries(stringMap(p, "metadata"));
      const states = optionalStringArray(p, "state", 2);
      return listSandboxes(ctx).filter((s) => metadata.every(([k, v]) => s.metadata[k] === v) && (states === undefined || states.includes(s.state)));
    },
    "sandbox.show": (p) => showSandbox(ctx, id(p)),
    "sandbox.kill": (p) => killSandbox(ctx, id(p)),
    "sandbox.timeout": (p) => {
      const timeoutMs = timeoutParam(p);
      if (timeoutMs === undefined) throw bad(`"timeoutMs" is required`);
      return setSandboxTimeout(ctx, id(p), timeoutMs);
    },
    "sandbox.connect": (p, call) => connectSandbox(ctx, id(p), timeoutParam(p), call),
    "sandbox.pause": (p) => pauseSandbox(ctx, id(p)),
    "sandbox.fork": (p, call) => {
      const timeoutMs = timeoutParam(p);
      if (timeoutMs === undefined) throw bad(`"timeoutMs" is required`);
      return forkSandbox(ctx, id(p), optionalInt(p, "count", 1, MAX_FORK_COUNT) ?? 1, timeoutMs, call);
    },
    "sandbox.snapshot": (p, call) => {
      const name = optionalString(p, "name");
      return snapshotSandbox(ctx, id(p), name === undefined ? undefined : validateName("snapshot", name), call);
    },
  };
}
