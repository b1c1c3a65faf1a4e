// The errors a guest agent connection reports: closed, timed out, or the agent's own ERROR
// frame turned into one bounded line (the guest's text never reaches a terminal raw).
import { BangerError, ErrorCode } from "../util/errors.ts";
import { parseJSON } from "./messages.ts";

export const closedError = () => new BangerError(ErrorCode.Unavailable, "guest agent connection closed", "check the VM is running: banger vm ls");

export function timeoutError(what: string, ms: number): BangerError {
  return new BangerError(ErrorCode.Timeout, `guest agent did not answer ${what} within ${ms} ms`, "check the VM console log: banger vm logs");
}

/** The agent's reasons a command did not start (exec, session.start): see agent/PROTOCOL.md. */
const START_FAILURES: Record<string, { code: ErrorCode; hint?: string }> = {
  command_not_found: { code: ErrorCode.CommandNotFound },
  not_executable: { code: ErrorCode.NotExecutable },
  bad_cwd: { code: ErrorCode.NotFound, hint: "pick another with -w/--workdir" },
};

/** The agent's other ERROR codes that say more than "failed". */
const ERROR_CODES: Record<string, ErrorCode> = {
  not_found: ErrorCode.NotFound,
  invalid: ErrorCode.InvalidArgument,
  exists: ErrorCode.AlreadyExists,
  no_space: ErrorCode.ResourceExhausted,
};

/** An ERROR payload from the agent as a BangerError with a one-line, bounded message. */
export function agentError(payload: Buffer, what: string): BangerError {
  let code = "failed";
  let message = "unknown error";
  try {
    const v = parseJSON(payload) as { code?: unknown; message?: unknown };
    if (typeof v.code === "string") code = v.code;
    if (typeof v.message === "string") message = v.message;
  } catch {
    /* keep the defaults: a garbled error is still an error */
  }
  const line = oneLine(message);
  // Why a command did not start: the guest's own words are the whole message, like a shell's.
  const cause = START_FAILURES[code];
  if (cause) return new BangerError(cause.code, line, cause.hint);
  const errCode = ERROR_CODES[code] ?? ErrorCode.Failed;
  return new BangerError(errCode, `guest agent: ${what}: ${line}`, code === "protocol" ? "the host and agent disagree on the protocol; rebuild the image's agent" : undefined);
}

export function oneLine(s: string): string {
  // C0 control bytes (the guest chose them) become spaces, so the message stays one line.
  const clean = s.replace(/[\x00-\x1f\x7f]+/g, " ").trim();
  return clean.length > 300 ? `${clean.slice(0, 300)}…` : clean;
}
