// Calling a method table in the daemon's own process (the dashboard's and the sandbox API's
// HTTP routes): the same handler an RPC call over the socket reaches, given a CallContext made
// here (abort signal, progress, events, input) instead of the socket's.
import { BangerError, ErrorCode, cancelled } from "../util/errors.ts";
import type { ProgressEvent } from "../util/progress.ts";
import type { CallContext, Handler } from "./server.ts";

export interface LocalCallOptions<Event, Input> {
  signal: AbortSignal;
  progress?: (event: ProgressEvent) => void;
  emit?: (event: Event) => void | Promise<void>;
  /** Input for the call (stdin bytes, terminal keystrokes, resizes); see InputQueue. */
  input?: InputQueue<Input>;
}

/**
 * Runs one method of `table`. A method the table lacks is answered "not available", as over
 * the socket. Params are whatever the caller gave: the handler checks them, as for an RPC call.
 */
export async function callLocal<Event, Input>(table: Partial<Record<string, Handler>>, method: string, params: unknown, opts: LocalCallOptions<Event, Input>): Promise<unknown> {
  const handler = Object.hasOwn(table, method) ? table[method] : undefined;
  if (!handler) throw new BangerError(ErrorCode.MethodNotFound, `daemon method ${method} is not available`, "update bangerd");
  if (opts.signal.aborted) throw cancelled();
  const ctx: CallContext = {
    signal: opts.signal,
    progress: (p) => opts.progress?.(p),
    // Handlers emit their method's events (CallContext's emit is untyped for rpc's sake).
    emit: async (event) => {
      await opts.emit?.(event as Event);
    },
    onInput: (listener) => opts.input?.listen(listener),
  };
  return handler(params, ctx);
}

/** Input sent before the handler listens is kept (bounded), as the RPC server does. */
export class InputQueue<Input = unknown> {
  private listener: ((input: unknown) => void) | undefined;
  private readonly early: Input[] = [];

  constructor(private readonly maxEarly = 64) {}

  /** False when too much arrived before anyone listened: the caller should give up. */
  push(input: Input): boolean {
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
