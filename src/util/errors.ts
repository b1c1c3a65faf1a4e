// One error type for everything the user can see. A BangerError carries a stable code
// (also used as the JSON-RPC error code across the socket), a one-line message and an
// optional hint: the next thing the user should do.
import { statfsSync } from "node:fs";
import { dirname } from "node:path";
import { humanBytes } from "./human.ts";

export const ErrorCode = {
  // JSON-RPC 2.0 reserved codes.
  ParseError: -32700,
  InvalidRequest: -32600,
  MethodNotFound: -32601,
  InvalidParams: -32602,
  Internal: -32603,
  // banger's own codes.
  NotFound: 1001,
  AlreadyExists: 1002,
  InUse: 1003,
  Cancelled: 1004,
  InvalidArgument: 1005,
  MissingDependency: 1006,
  Integrity: 1007,
  Unavailable: 1008,
  Failed: 1009,
  Timeout: 1010,
  /** The host ran out of something (disk space, quota, memory, file descriptors): not the input's fault. */
  ResourceExhausted: 1011,
  /** A guest command that does not exist (the CLI exits 127, as a shell does). */
  CommandNotFound: 1012,
  /** A guest command that exists but cannot run: a directory, no execute bit, a bad interpreter (exit 126). */
  NotExecutable: 1013,
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class BangerError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;
  constructor(code: ErrorCode, message: string, hint?: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "BangerError";
    this.code = code;
    this.hint = hint;
  }
}

export const notFound = (what: string, hint?: string) => new BangerError(ErrorCode.NotFound, `${what} not found`, hint);
export const invalidArgument = (message: string, hint?: string) => new BangerError(ErrorCode.InvalidArgument, message, hint);
export const alreadyExists = (message: string, hint?: string) => new BangerError(ErrorCode.AlreadyExists, message, hint);
export const cancelled = (message = "cancelled") => new BangerError(ErrorCode.Cancelled, message);
export const integrity = (message: string, hint?: string) => new BangerError(ErrorCode.Integrity, message, hint);
export const failed = (message: string, hint?: string, cause?: unknown) => new BangerError(ErrorCode.Failed, message, hint, { cause });

/** Bad usage maps to exit status 2 in the CLI; every other failure to 1. */
export function isUsageError(err: unknown): boolean {
  return err instanceof BangerError && (err.code === ErrorCode.InvalidArgument || err.code === ErrorCode.InvalidParams);
}

/** The CLI's exit status for a failure: 127/126 for a command that could not run (as a shell), 2 for bad usage, else 1. */
export function exitStatusOf(err: unknown): number {
  if (err instanceof BangerError && err.code === ErrorCode.CommandNotFound) return 127;
  if (err instanceof BangerError && err.code === ErrorCode.NotExecutable) return 126;
  return isUsageError(err) ? 2 : 1;
}

/** The one line shown to a user for any thrown value. */
export function errorLine(err: unknown): string {
  if (err instanceof BangerError) return err.hint ? `${err.message} (${err.hint})` : err.message;
  if (err instanceof Error) return err.message;
  return String(err);
}

/** ErrorCode's names by number: NotFound for 1001, ... */
const CODE_NAMES = new Map<number, string>(Object.entries(ErrorCode).map(([name, code]) => [code, name]));

/**
 * An error as JSON shows it, the same for the CLI's `--json` and the web API: `code` is the
 * number the JSON-RPC socket carries (stable), `name` says it in words (NotFound, InUse,
 * InvalidArgument, ...), `hint` is what to do next when there is one.
 */
export interface ErrorJson {
  code: number;
  name: string;
  message: string;
  hint?: string;
}

/** The HTTP status for an error a daemon method threw (the dashboard's API and the E2B API answer with it). */
export function httpStatusOf(err: unknown): number {
  if (!(err instanceof BangerError)) return 500;
  switch (err.code) {
    case ErrorCode.InvalidArgument:
    case ErrorCode.InvalidParams:
    case ErrorCode.InvalidRequest:
    case ErrorCode.ParseError:
      return 400;
    case ErrorCode.NotFound:
    case ErrorCode.MethodNotFound:
    case ErrorCode.CommandNotFound:
      return 404;
    case ErrorCode.AlreadyExists:
    case ErrorCode.InUse:
      return 409;
    case ErrorCode.Unavailable:
    case ErrorCode.MissingDependency:
      return 503;
    case ErrorCode.Timeout:
      return 504;
    case ErrorCode.Cancelled:
      return 499;
    default:
      return 500;
  }
}

export function errorJson(err: unknown): { error: ErrorJson } {
  const code = err instanceof BangerError ? err.code : ErrorCode.Internal;
  const message = err instanceof Error ? err.message : String(err);
  const hint = err instanceof BangerError ? err.hint : undefined;
  return { error: { code, name: CODE_NAMES.get(code) ?? "Internal", message, ...(hint ? { hint } : {}) } };
}

/** The system errors that mean "the host ran out", with how to say each. */
const RESOURCE_ERRNOS: Record<string, { what: string; hint: string }> = {
  ENOSPC: { what: "no space left on", hint: "free space on that filesystem (or move BANGER_HOME), then retry; nothing was replaced" },
  EDQUOT: { what: "disk quota exceeded on", hint: "free space or raise the quota, then retry; nothing was replaced" },
  ENOMEM: { what: "out of memory while writing", hint: "free memory (stop VMs or other programs), then retry" },
  EMFILE: { what: "too many open files in the daemon while writing", hint: "raise the daemon's open-file limit (LimitNOFILE= / ulimit -n), then retry" },
  ENFILE: { what: "too many open files on this host while writing", hint: "raise fs.file-max or close files elsewhere, then retry" },
};
/** The same, as a host tool prints them (strerror text in a failed command's stderr). */
const RESOURCE_TEXT: [RegExp, string][] = [
  [/No space left on device/i, "ENOSPC"],
  [/Disk quota exceeded/i, "EDQUOT"],
  [/Cannot allocate memory/i, "ENOMEM"],
  [/Too many open files in system/i, "ENFILE"],
  [/Too many open files/i, "EMFILE"],
];

/** The resource errno an error (or one of its causes) carries, or undefined. */
export function resourceErrno(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e !== undefined && e !== null && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof BangerError && e.code === ErrorCode.ResourceExhausted) return (e as { errno?: string }).errno ?? "ENOSPC";
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && code in RESOURCE_ERRNOS) return code;
    if (code === "SQLITE_FULL") return "ENOSPC"; // the store's own write
    // Any other BangerError already says whose fault it is; text only from a host tool's failure.
    if (e instanceof BangerError && e.code !== ErrorCode.Failed) return undefined;
    const text = e instanceof Error ? e.message : "";
    for (const [re, errno] of RESOURCE_TEXT) if (re.test(text)) return errno;
  }
  return undefined;
}

export interface ResourceWhere {
  /** The directory (or file) banger was writing under; its filesystem's free space is shown. */
  path?: string;
  /** Bytes the step needed, when known. */
  neededBytes?: number;
}

/**
 * A resource error (ENOSPC, EDQUOT, ENOMEM, EMFILE, ENFILE) named as such, with the path and,
 * for space, how much was needed and is free: "no space left on /var/lib/banger/tmp: needs
 * ~512 MiB, 20 MiB free". Undefined for any other error. Code ResourceExhausted: exit 1.
 */
export function resourceError(err: unknown, where: ResourceWhere = {}): BangerError | undefined {
  const errno = resourceErrno(err);
  if (!errno) return undefined;
  if (err instanceof BangerError && err.code === ErrorCode.ResourceExhausted) return err;
  const { what, hint } = RESOURCE_ERRNOS[errno]!;
  const path = where.path ?? "the state root";
  const space = errno === "ENOSPC" || errno === "EDQUOT" ? spaceNote(where) : "";
  const e = new BangerError(ErrorCode.ResourceExhausted, `${what} ${path}${space} (${errno})`, hint, { cause: err });
  return Object.assign(e, { errno });
}

function spaceNote(where: ResourceWhere): string {
  const free = where.path ? freeBytesUnder(where.path) : undefined;
  const parts = [where.neededBytes !== undefined ? `needs ~${humanBytes(where.neededBytes)}` : "", free !== undefined ? `${humanBytes(free)} free` : ""].filter((p) => p !== "");
  return parts.length > 0 ? `: ${parts.join(", ")}` : "";
}

/** Free bytes (for this user) on the filesystem holding `path` or its nearest existing parent. */
export function freeBytesUnder(path: string): number | undefined {
  for (let dir = path; ; dir = dirname(dir)) {
    try {
      const st = statfsSync(dir);
      return st.bavail * st.bsize;
    } catch {
      if (dir === dirname(dir)) return undefined;
    }
  }
}

/** Throws the signal's reason as a Cancelled error when it has been aborted. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw cancelled();
}
