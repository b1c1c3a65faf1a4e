// Calling a daemon method from HTTP: the same handler the CLI's RPC call reaches, given a
// CallContext made here (abort signal, progress, events, input) instead of the socket's.
import type { Handlers, MethodName, ResultOf, StreamEvent, StreamInput } from "../api/index.ts";
import type { CallContext } from "../rpc/index.ts";
import { BangerError, ErrorCode, cancelled, errorJson } from "../util/errors.ts";
import type { ProgressEvent } from "../util/progress.ts";

/**
 * The daemon's method table as the dashboard gets it: typed against api's Methods, any part of
 * it (a method the table lacks is answered "not available", as over the socket).
 */
export type DaemonTable = Partial<Handlers>;

export interface InvokeOptions {
  signal: AbortSignal;
  progress?: (event: ProgressEvent) => void;
  emit?: (event: StreamEvent) => void | Promise<void>;
  /** Input for the call (terminal keystrokes, resizes); see InputQueue. */
  input?: InputQueue;
}

/**
 * Runs one method of the table. Unknown methods are a programming error here, not user input.
 * Params are whatever the HTTP request gave: the handler checks them, as for an RPC call.
 */
export async function invoke<M extends MethodName>(methods: DaemonTable, method: M, params: unknown, opts: InvokeOptions): Promise<ResultOf<M>> {
  const handler: Handlers[M] | undefined = Object.hasOwn(methods, method) ? methods[method] : undefined;
  if (!handler) throw new BangerError(ErrorCode.MethodNotFound, `daemon method ${method} is not available`, "update bangerd");
  if (opts.signal.aborted) throw cancelled();
  const ctx: CallContext = {
    signal: opts.signal,
    progress: (p) => opts.progress?.(p),
    // Streaming handlers emit api's StreamEvents (CallContext's emit is untyped for rpc's sake).
    emit: async (event) => {
      await opts.emit?.(event as StreamEvent);
    },
    onInput: (listener) => opts.input?.listen(listener),
  };
  return handler(params, ctx);
}

/** Input sent before the handler listens is kept (bounded), as the RPC server does. */
export class InputQueue {
  private listener: ((input: unknown) => void) | undefined;
  private readonly early: StreamInput[] = [];

  constructor(private readonly maxEarly = 64) {}

  /** False when too much arrived before anyone listened: the caller should give up. */
  push(input: StreamInput): boolean {
    if (this.listener) {
      this.listener(input);
      return true;
    }
    if (this.early.length >= this.maxEarly) return false;
    this.early.push(input);
    return true;
  }

  listen(listener: (input: unknown) => void): void {
    this.listener = listener;
    for (const input of this.early.splice(0)) listener(input);
  }
}

/** The HTTP status for an error a method threw. */
export function httpStatus(err: unknown): number {
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

/** The JSON body of an error answer: the same as the CLI's `--json` error (util/errors.ts errorJson). */
export const errorBody = errorJson;
