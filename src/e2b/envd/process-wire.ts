// What the Process service reads off a request and answers errors with: the user (the SDK's
// Authorization header), the keepalive interval, and a daemon error as a ConnectError with the
// Code the SDK maps (NotFound -> NotFoundError, InvalidArgument -> InvalidArgumentError, ...).
import { Code, ConnectError } from "@connectrpc/connect";
import { BangerError, ErrorCode, errorLine } from "../../util/errors.ts";

/** Connect codes for the daemon's error codes; anything else is Internal. */
const CODES: Partial<Record<ErrorCode, Code>> = {
  [ErrorCode.InvalidArgument]: Code.InvalidArgument,
  [ErrorCode.InvalidParams]: Code.InvalidArgument,
  [ErrorCode.CommandNotFound]: Code.InvalidArgument,
  [ErrorCode.NotExecutable]: Code.InvalidArgument,
  [ErrorCode.NotFound]: Code.NotFound,
  [ErrorCode.AlreadyExists]: Code.AlreadyExists,
  [ErrorCode.InUse]: Code.FailedPrecondition,
  [ErrorCode.Unavailable]: Code.Unavailable,
  [ErrorCode.MethodNotFound]: Code.Unimplemented,
  [ErrorCode.Timeout]: Code.DeadlineExceeded,
  [ErrorCode.Cancelled]: Code.Canceled,
  [ErrorCode.ResourceExhausted]: Code.ResourceExhausted,
};

/** `err` as the ConnectError a client gets (a ConnectError passes through). */
export function connectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  const code = err instanceof BangerError ? (CODES[err.code] ?? Code.Internal) : Code.Internal;
  return new ConnectError(errorLine(err), code);
}

/**
 * The user a request runs as: envd takes it as HTTP Basic auth with the name and an empty
 * password (the SDK's `user` option). Undefined: the VM's landing user (image spec, or root).
 */
export function requestUser(headers: Headers): string | undefined {
  const auth = headers.get("authorization");
  if (!auth) return undefined;
  const m = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(auth.trim());
  if (!m) throw new ConnectError("authorization must be Basic <base64 of user:>", Code.InvalidArgument);
  const decoded = Buffer.from(m[1]!, "base64").toString("utf8");
  const user = decoded.includes(":") ? decoded.slice(0, decoded.indexOf(":")) : decoded;
  if (user.length > 256 || user.includes("\0")) throw new ConnectError("bad user name", Code.InvalidArgument);
  return user === "" ? undefined : user;
}

/** Longest and shortest keepalive pause a client may ask for (Keepalive-Ping-Interval, seconds). */
const KEEPALIVE_MAX_S = 300;
const KEEPALIVE_MIN_S = 1;

/** Milliseconds between keepalive events on a stream; undefined when the client asked for none. */
export function keepaliveMs(headers: Headers): number | undefined {
  const raw = headers.get("keepalive-ping-interval");
  if (raw === null) return undefined;
  const s = Number(raw);
  if (!Number.isFinite(s) || s <= 0) return undefined;
  return Math.round(Math.min(Math.max(s, KEEPALIVE_MIN_S), KEEPALIVE_MAX_S) * 1000);
}

/** Go's os.ProcessState wording for a signal (what envd puts in `status`), for the usual ones. */
const SIGNAL_WORDS: Record<string, string> = {
  SIGKILL: "killed",
  SIGTERM: "terminated",
  SIGINT: "interrupt",
  SIGHUP: "hangup",
  SIGQUIT: "quit",
  SIGPIPE: "broken pipe",
  SIGSEGV: "segmentation fault",
  SIGABRT: "aborted",
};

export function signalStatus(name: string): string {
  return `signal: ${SIGNAL_WORDS[name] ?? name}`;
}
