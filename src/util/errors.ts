// One error type for everything the user can see. A BangerError carries a stable code
// (also used as the JSON-RPC error code across the socket), a one-line message and an
// optional hint: the next thing the user should do.

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
export const invalidArgument = (message: string, hint?: string) =>
  new BangerError(ErrorCode.InvalidArgument, message, hint);
export const alreadyExists = (message: string, hint?: string) =>
  new BangerError(ErrorCode.AlreadyExists, message, hint);
export const cancelled = (message = "cancelled") => new BangerError(ErrorCode.Cancelled, message);
export const integrity = (message: string, hint?: string) => new BangerError(ErrorCode.Integrity, message, hint);
export const failed = (message: string, hint?: string, cause?: unknown) =>
  new BangerError(ErrorCode.Failed, message, hint, { cause });

/** Bad usage maps to exit status 2 in the CLI; every other failure to 1. */
export function isUsageError(err: unknown): boolean {
  return err instanceof BangerError && (err.code === ErrorCode.InvalidArgument || err.code === ErrorCode.InvalidParams);
}

/** The one line shown to a user for any thrown value. */
export function errorLine(err: unknown): string {
  if (err instanceof BangerError) return err.hint ? `${err.message} (${err.hint})` : err.message;
  if (err instanceof Error) return err.message;
  return String(err);
}

/** Throws the signal's reason as a Cancelled error when it has been aborted. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw cancelled();
}
