// Typed replies from the agent, validated field by field: the guest is untrusted, so a
// reply of the wrong shape is a protocol error, never a crash or a silently wrong value.
import { isIP } from "node:net";
import { constants as osConstants } from "node:os";
import type { GuestStats, ListeningPort } from "../api/index.ts";
import { isValidName } from "../util/names.ts";
import { PROTO_VERSION, protocolError } from "./frame.ts";

export interface AgentInfo {
  version: number;
  agentVersion: string;
  arch: string;
  pid1: boolean;
  features: string[];
  /** Echo of the host's handshake nonce (tells this handshake's answer from stale bytes). */
  nonce: string;
}

export interface AgentHealth {
  version: string;
  arch: string;
  pid1: boolean;
  hostname: string;
  kernel: string;
  agentUptimeMs: number;
}

/** Whom the agent's exec runs as for a user spec (the `user` channel). */
export interface GuestUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

export type ExitStatus = { exitCode: number } | { signal: string; signalNumber: number };

// The agent's stats and listening ports are sent on unchanged (vm.stats, vm.ports), so their
// shapes are the wire's: api's.
export type { GuestStats, ListeningPort };

export function parseJSON(payload: Buffer): unknown {
  try {
    return JSON.parse(payload.toString("utf8"));
  } catch {
    throw protocolError("reply is not valid JSON");
  }
}

type Obj = Record<string, unknown>;

function obj(v: unknown, what: string): Obj {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw protocolError(`${what}: expected an object`);
  return v as Obj;
}

function num(o: Obj, key: string, what: string, optional = false): number {
  const v = o[key];
  if (v === undefined && optional) return 0;
  if (typeof v !== "number" || !Number.isFinite(v)) throw protocolError(`${what}: "${key}" must be a number`);
  return v;
}

function str(o: Obj, key: string, what: string, max = 4096): string {
  const v = o[key] ?? "";
  if (typeof v !== "string" || v.length > max) throw protocolError(`${what}: "${key}" must be a string of at most ${max} characters`);
  return v;
}

export function parseHello(payload: Buffer): AgentInfo {
  const o = obj(parseJSON(payload), "HELLO");
  const version = num(o, "version", "HELLO");
  if (version !== PROTO_VERSION) throw protocolError(`agent speaks protocol ${version}, banger speaks ${PROTO_VERSION}`);
  const features = Array.isArray(o.features) ? o.features.filter((f): f is string => typeof f === "string").slice(0, 64) : [];
  return { version, agentVersion: str(o, "agent_version", "HELLO", 128), arch: str(o, "arch", "HELLO", 32), pid1: o.pid1 === true, features, nonce: str(o, "nonce", "HELLO", 64) };
}

export function parseGuestUser(v: unknown): GuestUser {
  const o = obj(v, "user");
  const id = (key: string) => {
    const n = num(o, key, "user");
    if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw protocolError(`user: "${key}" must be a 32-bit id`);
    return n;
  };
  return { name: str(o, "name", "user", 256), uid: id("uid"), gid: id("gid"), home: str(o, "home", "user", 4096) };
}

export function parseHealth(v: unknown): AgentHealth {
  const o = obj(v, "health");
  return {
    version: str(o, "version", "health", 128),
    arch: str(o, "arch", "health", 32),
    pid1: o.pid1 === true,
    hostname: str(o, "hostname", "health", 255),
    kernel: str(o, "kernel", "health", 255),
    agentUptimeMs: num(o, "agent_uptime_ms", "health", true),
  };
}

const signalNames = new Map(Object.entries(osConstants.signals).map(([name, n]) => [n as number, name]));

export function parseExit(v: unknown): ExitStatus {
  const o = obj(v, "exit status");
  if (typeof o.exit_code === "number" && Number.isInteger(o.exit_code)) return { exitCode: o.exit_code };
  if (typeof o.signal === "number" && Number.isInteger(o.signal)) {
    return { signal: signalNames.get(o.signal) ?? `SIG${o.signal}`, signalNumber: o.signal };
  }
  throw protocolError("exit status has neither exit_code nor signal");
}

export function parsePorts(v: unknown): ListeningPort[] {
  const list = obj(v, "ports").ports ?? [];
  if (!Array.isArray(list)) throw protocolError("ports: expected a list");
  return list.map((item) => {
    const o = obj(item, "port");
    const proto = o.proto === "tcp6" ? "tcp6" : o.proto === "tcp" ? "tcp" : undefined;
    const port = num(o, "port", "port");
    if (!proto || !Number.isInteger(port) || port < 0 || port > 65535) throw protocolError("ports: bad entry");
    const address = str(o, "address", "port", 64);
    if (isIP(address) === 0) throw protocolError("ports: an address that is not an IP address");
    const out: ListeningPort = { proto, address, port };
    if (typeof o.pid === "number" && Number.isInteger(o.pid)) out.pid = o.pid;
    if (typeof o.command === "string") out.command = str(o, "command", "port", 512);
    return out;
  });
}

export function parseStats(v: unknown): GuestStats {
  const o = obj(v, "stats");
  const m = obj(o.memory, "stats.memory");
  const c = obj(o.cpu, "stats.cpu");
  const d = obj(o.disk, "stats.disk");
  const w = "stats";
  const load = Array.isArray(o.load) ? o.load.filter((x): x is number => typeof x === "number").slice(0, 3) : [];
  return {
    memory: {
      total: num(m, "total", w),
      free: num(m, "free", w, true),
      available: num(m, "available", w, true),
      buffers: num(m, "buffers", w, true),
      cached: num(m, "cached", w, true),
      swapTotal: num(m, "swap_total", w, true),
      swapFree: num(m, "swap_free", w, true),
    },
    cpu: {
      count: num(c, "count", w),
      user: num(c, "user", w, true),
      nice: num(c, "nice", w, true),
      system: num(c, "system", w, true),
      idle: num(c, "idle", w, true),
      iowait: num(c, "iowait", w, true),
      irq: num(c, "irq", w, true),
      softirq: num(c, "softirq", w, true),
      steal: num(c, "steal", w, true),
    },
    disk: { path: str(d, "path", w, 4096), total: num(d, "total", w), free: num(d, "free", w), available: num(d, "available", w) },
    load,
    uptimeSeconds: num(o, "uptime_seconds", w, true),
  };
}

/** A detached session as the agent reports it (session.list, and the end of attach/logs). */
export interface SessionInfo {
  name: string;
  pid: number;
  argv: string[];
  tty: boolean;
  /** ISO time the session started (and ended, once exited). */
  started: string;
  ended?: string;
  state: "running" | "exited";
  /** How it ended, once exited. */
  exit?: ExitStatus;
  /** Output produced so far; the guest keeps the last 1 MiB of it. */
  bytes: number;
}

export function parseSessionInfo(v: unknown): SessionInfo {
  const o = obj(v, "session");
  const w = "session";
  const state = o.state === "exited" ? "exited" : o.state === "running" ? "running" : undefined;
  if (!state) throw protocolError("session: bad state");
  const argv = Array.isArray(o.argv) ? o.argv.slice(0, 4096).map((a) => (typeof a === "string" ? a.slice(0, 4096) : "")) : [];
  // The name and times go into the store and onto terminals: only what the protocol allows.
  const name = str(o, "name", w, 64);
  if (!isValidName(name)) throw protocolError("session: a name that breaks the name rule");
  const info: SessionInfo = { name, pid: num(o, "pid", w), argv, tty: o.tty === true, started: time(o, "started"), state, bytes: num(o, "bytes", w, true) };
  if (state === "exited") {
    info.ended = time(o, "ended");
    info.exit = parseExit(o);
  }
  return info;
}

/** An RFC 3339 UTC time as the agent writes it (2026-01-02T03:04:05Z). */
function time(o: Obj, key: string): string {
  const v = str(o, key, "session", 64);
  if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/.test(v)) throw protocolError(`session: "${key}" is not an RFC 3339 UTC time`);
  return v;
}

/** The agent keeps at most this many sessions (agent/sessions.go maxSessions). */
const MAX_SESSIONS = 64;

export function parseSessionList(v: unknown): SessionInfo[] {
  const list = obj(v, "session list").sessions ?? [];
  if (!Array.isArray(list) || list.length > MAX_SESSIONS) throw protocolError(`session list: expected at most ${MAX_SESSIONS} sessions`);
  return list.map(parseSessionInfo);
}
