// The agent's fs.* operations (agent/PROTOCOL.md, feature "fs" and "fs.watch"): one path's
// stat, list, mkdir, move, remove, read, write and watch. Every reply is validated here
// (paths, names, sizes, modes, times, event types) and bounded (a listing's entries and
// bytes, a line's length, a read's exact length): the guest is untrusted.
import { type Readable, Transform } from "node:stream";
import type { FsEntry, FsEvent, FsEventType } from "../api/index.ts";
import { BangerError, ErrorCode, cancelled } from "../util/errors.ts";
import { pumpInto } from "./channel.ts";
import { BULK_CHUNK, Stream, protocolError } from "./frame.ts";
import type { AgentInfo } from "./messages.ts";
import type { Mux } from "./mux.ts";

/** Entries one listing may return, and the bytes they may take on the wire. */
export const MAX_LIST_ENTRIES = 50_000;
const MAX_LIST_BYTES = 32 * 1024 * 1024;
/** One JSON line of an entry: two paths of PATH_MAX and the rest. */
const MAX_LINE = 16 * 1024;
const PATH_MAX = 4096;

export interface GuestFs {
  stat(path: string, user?: string): Promise<FsEntry>;
  list(path: string, opts?: { depth?: number; user?: string }): Promise<FsEntry[]>;
  mkdir(path: string, user?: string): Promise<FsEntry>;
  move(path: string, dest: string, user?: string): Promise<FsEntry>;
  remove(path: string, user?: string): Promise<void>;
  /** A regular file's bytes: exactly `size` of them, or the stream fails. */
  read(path: string, user?: string): Promise<{ size: number; stream: Readable }>;
  /** Replaces the file at `path` with `data`'s bytes. */
  write(path: string, data: Readable, opts?: { user?: string; signal?: AbortSignal }): Promise<FsEntry>;
  /** Calls onEvent per change (awaited: a slow consumer slows the guest, which drops, never buffers). */
  watch(path: string, onEvent: (ev: FsEvent) => Promise<void> | void, opts?: { recursive?: boolean; user?: string }): Promise<FsWatch>;
}

export interface FsWatch {
  /** Resolves when the watch ended (the directory went, or stop()); rejects if the connection failed. */
  done: Promise<void>;
  stop(): void;
}

export function guestFs(mux: Mux, info: AgentInfo): GuestFs {
  const need = (feature: string) => {
    if (!info.features.includes(feature)) {
      throw new BangerError(ErrorCode.Unavailable, `the guest agent (${info.agentVersion}) has no ${feature} operations`, "recreate the VM: every boot runs the current agent");
    }
  };
  const params = (path: string, user?: string) => ({ path: checkPath(path), user });
  return {
    async stat(path, user) {
      need("fs");
      return parseEntry(await mux.request("fs.stat", params(path, user)));
    },
    async list(path, opts = {}) {
      need("fs");
      const ch = mux.open("fs.list", { ...params(path, opts.user), depth: opts.depth ?? 1, limit: MAX_LIST_ENTRIES });
      await mux.withTimeout(ch.opened.promise, "fs.list", ch);
      const entries: FsEntry[] = [];
      let bytes = 0;
      try {
        await eachLine(ch.inbound[Stream.Out].readable, (line) => {
          bytes += line.length;
          if (entries.length >= MAX_LIST_ENTRIES || bytes > MAX_LIST_BYTES) throw protocolError(`fs.list sent more than ${MAX_LIST_ENTRIES} entries or ${MAX_LIST_BYTES} bytes`);
          entries.push(parseEntry(parseLine(line)));
        });
        await mux.withTimeout(ch.result.promise, "fs.list", ch);
      } catch (err) {
        ch.close();
        throw err;
      }
      return entries;
    },
    async mkdir(path, user) {
      need("fs");
      return parseEntry(await mux.request("fs.mkdir", params(path, user)));
    },
    async move(path, dest, user) {
      need("fs");
      return parseEntry(await mux.request("fs.move", { ...params(path, user), dest: checkPath(dest) }));
    },
    async remove(path, user) {
      need("fs");
      await mux.request("fs.remove", params(path, user));
    },
    async read(path, user) {
      need("fs");
      const ch = mux.open("fs.read", params(path, user));
      const opened = (await mux.withTimeout(ch.opened.promise, "fs.read", ch)) as { size?: unknown } | undefined;
      const size = opened?.size;
      if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0) {
        ch.close();
        throw protocolError("fs.read: no size");
      }
      const out = ch.inbound[Stream.Out].readable;
      ch.result.promise.catch((err) => out.destroy(err as Error));
      const exact = exactly(size);
      out.on("error", (err) => exact.destroy(err));
      exact.on("close", () => ch.close()); // a consumer that gives up frees the channel
      out.pipe(exact);
      return { size, stream: exact };
    },
    async write(path, data, opts = {}) {
      need("fs");
      const ch = mux.open("fs.write", params(path, opts.user));
      ch.chunk = BULK_CHUNK;
      const onAbort = () => ch.close();
      opts.signal?.addEventListener("abort", onAbort, { once: true });
      try {
        await mux.withTimeout(ch.opened.promise, "fs.write", ch);
        const sending = pumpInto(ch, data);
        const res = await Promise.race([ch.result.promise, sending.then(() => ch.result.promise)]);
        if (opts.signal?.aborted) throw cancelled();
        return parseEntry(res);
      } catch (err) {
        data.destroy();
        ch.close();
        if (opts.signal?.aborted) throw cancelled();
        throw err;
      } finally {
        opts.signal?.removeEventListener("abort", onAbort);
      }
    },
    async watch(path, onEvent, opts = {}) {
      need("fs.watch");
      const ch = mux.open("fs.watch", { ...params(path, opts.user), recursive: opts.recursive === true });
      await mux.withTimeout(ch.opened.promise, "fs.watch", ch);
      let stopped = false;
      const stop = () => {
        stopped = true;
        ch.close();
      };
      const done = (async () => {
        try {
          await eachLine(ch.inbound[Stream.Out].readable, async (line) => {
            if (!stopped) await onEvent(parseEvent(parseLine(line)));
          });
          await ch.result.promise;
        } catch (err) {
          if (stopped) return;
          ch.close();
          throw err;
        }
      })();
      done.catch(() => undefined);
      return { done, stop };
    },
  };
}

function checkPath(p: string): string {
  if (typeof p !== "string" || p.length === 0 || Buffer.byteLength(p) > PATH_MAX || p.includes("\0")) {
    throw new BangerError(ErrorCode.InvalidArgument, `bad guest path ${JSON.stringify(String(p).slice(0, 100))}`, "give an absolute path, or one under the user's home");
  }
  return p;
}

/** Calls fn with each line (without its newline), awaiting it; a line beyond MAX_LINE is a violation. */
async function eachLine(stream: Readable, fn: (line: string) => void | Promise<void>): Promise<void> {
  let pending = "";
  for await (const chunk of stream) {
    pending += (chunk as Buffer).toString("utf8");
    let nl = pending.indexOf("\n");
    while (nl >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      if (line.length > 0) await fn(line);
      nl = pending.indexOf("\n");
    }
    if (pending.length > MAX_LINE) throw protocolError(`a line of more than ${MAX_LINE} bytes`);
  }
  if (pending.length > 0) throw protocolError("output ended inside a line");
}

function parseLine(line: string): unknown {
  if (line.length > MAX_LINE) throw protocolError(`a line of more than ${MAX_LINE} bytes`);
  try {
    return JSON.parse(line);
  } catch {
    throw protocolError("a line is not JSON");
  }
}

/** A pass-through that lets exactly `size` bytes by, failing on more or fewer. */
function exactly(size: number): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      seen += chunk.length;
      if (seen > size) return cb(protocolError(`fs.read sent more than the ${size} bytes it announced`));
      cb(null, chunk);
    },
    flush(cb) {
      cb(seen === size ? null : protocolError(`fs.read sent ${seen} of the ${size} bytes it announced`));
    },
  });
}

type Obj = Record<string, unknown>;
const TYPES = new Set(["file", "dir", "symlink", "other"]);
const EVENTS = new Set<FsEventType>(["create", "write", "remove", "rename", "chmod"]);
/** C0 controls and DEL: a guest's names carry them to terminals and JSON alike. */
const CONTROL = /[\x00-\x1f\x7f]/;

function text(o: Obj, key: string, max: number, opts: { path?: boolean; optional?: boolean } = {}): string {
  const v = o[key];
  if (v === undefined && opts.optional) return "";
  if (typeof v !== "string" || Buffer.byteLength(v) > max || v.includes("\0")) throw protocolError(`fs entry: "${key}" must be a string of at most ${max} bytes`);
  if (opts.path && !v.startsWith("/")) throw protocolError(`fs entry: "${key}" must be an absolute path`);
  return v;
}

function int(o: Obj, key: string, min: number, max: number): number {
  const v = o[key];
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min || v > max) throw protocolError(`fs entry: "${key}" must be an integer from ${min} to ${max}`);
  return v;
}

export function parseEntry(v: unknown): FsEntry {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw protocolError("fs entry: expected an object");
  const o = v as Obj;
  const type = o.type;
  if (typeof type !== "string" || !TYPES.has(type)) throw protocolError(`fs entry: unknown type`);
  const name = text(o, "name", 255);
  if (name.includes("/") && name !== "/") throw protocolError("fs entry: a name with a slash");
  const permissions = text(o, "permissions", 16);
  if (!/^[a-zA-Z?-]{10,12}$/.test(permissions)) throw protocolError("fs entry: malformed permissions");
  const owner = text(o, "owner", 64);
  const group = text(o, "group", 64);
  if (CONTROL.test(owner) || CONTROL.test(group)) throw protocolError("fs entry: control characters in owner or group");
  const entry: FsEntry = {
    name,
    type: type as FsEntry["type"],
    path: text(o, "path", PATH_MAX, { path: true }),
    sizeBytes: int(o, "size", 0, Number.MAX_SAFE_INTEGER),
    mode: int(o, "mode", 0, 0o7777),
    permissions,
    owner,
    group,
    // Years 0 to 9999: what a protobuf Timestamp (and the E2B SDK) can carry.
    mtime: { seconds: int(o, "mtime_sec", -62135596800, 253402300799), nanos: int(o, "mtime_nsec", 0, 999_999_999) },
  };
  if (o.symlink_target !== undefined) {
    if (type !== "symlink") throw protocolError("fs entry: a symlink target on something else");
    entry.symlinkTarget = text(o, "symlink_target", PATH_MAX);
  }
  return entry;
}

export function parseEvent(v: unknown): FsEvent {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw protocolError("fs event: expected an object");
  const o = v as Obj;
  const type = o.type;
  if (typeof type !== "string" || !EVENTS.has(type as FsEventType)) throw protocolError("fs event: unknown type");
  const name = text(o, "name", PATH_MAX);
  if (name.startsWith("/") || name.split("/").includes("..")) throw protocolError("fs event: a name outside the watched directory");
  return { name, type: type as FsEventType };
}
