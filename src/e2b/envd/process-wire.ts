// What the Process service reads off a request and answers errors with: the keepalive interval,
// a daemon error as a ConnectError with the Code the SDK maps (the filesystem service's mapping,
// filesystem-shared.ts, so both answer alike), and envd's wording of an exit status.
import { Code, ConnectError } from "@connectrpc/connect";
import { BangerError, ErrorCode, errorLine } from "../../util/errors.ts";
import { toConnectError } from "./filesystem-shared.ts";

/**
 * `err` as the ConnectError a client gets: envd's codes for the same cases (filesystem-shared's
 * mapping: an unknown user is Unauthenticated, as envd answers), and a command that cannot start
 * InvalidArgument (envd refuses such a Start).
 */
export function connectError(err: unknown): ConnectError {
  if (err instanceof BangerError && (err.code === ErrorCode.CommandNotFound || err.code === ErrorCode.NotExecutable)) return new ConnectError(errorLine(err), Code.InvalidArgument);
  return toConnectError(err);
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
