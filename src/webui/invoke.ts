// Calling a daemon method from the dashboard's HTTP routes (rpc's callLocal, typed against
// api's Methods). The HTTP status of what a method threw is util's httpStatusOf.
import type { Handlers, MethodName, ResultOf, StreamEvent, StreamInput } from "../api/index.ts";
import { type Handler, InputQueue, type LocalCallOptions, callLocal } from "../rpc/index.ts";
import { errorJson } from "../util/errors.ts";

/**
 * The daemon's method table as the dashboard gets it: typed against api's Methods, any part of
 * it (a method the table lacks is answered "not available", as over the socket).
 */
export type DaemonTable = Partial<Handlers>;

export type InvokeOptions = LocalCallOptions<StreamEvent, StreamInput>;

/**
 * Runs one method of the table (rpc's callLocal, typed against api's Methods). Params are
 * whatever the HTTP request gave: the handler checks them, as for an RPC call.
 */
export async function invoke<M extends MethodName>(methods: DaemonTable, method: M, params: unknown, opts: InvokeOptions): Promise<ResultOf<M>> {
  return (await callLocal(methods as Partial<Record<string, Handler>>, method, params, opts)) as ResultOf<M>;
}

export { InputQueue };

/** The JSON body of an error answer: the same as the CLI's `--json` error (util/errors.ts errorJson). */
export const errorBody = errorJson;
