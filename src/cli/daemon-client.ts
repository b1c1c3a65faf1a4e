// Calling the daemon from a command: connect (starting bangerd if nothing answers), make
// one call, show its progress, and turn Ctrl-C into a cancellation the daemon sees.
import type { Readable } from "node:stream";
import { resolvePaths } from "../config/index.ts";
import type { Client, MethodName, ParamsOf, ResultOf } from "../api/index.ts";
import { connectOrStart } from "../launch/index.ts";
import type { CallArgs, CallOptions } from "../rpc/index.ts";
import { ProgressView, readerGone } from "./output.ts";
import { Uploader, streamEvents } from "./streams.ts";

export interface CallSettings {
  /** Show progress events on stderr (off under --json, which prints only the result). */
  showProgress?: boolean;
  /** The call's output (`out` events): the call is cancelled when its reader goes away (output.ts readerGone). */
  onEvent?: CallOptions["onEvent"];
  /** Bytes sent as the call's input (daemon/streams.ts inputStream); a read error cancels the call. */
  input?: Readable;
}

/** The params (optional when the method takes none) and the settings of one call. */
type CallDaemonArgs<M extends MethodName> = undefined extends ParamsOf<M> ? [params?: ParamsOf<M>, settings?: CallSettings] : [params: ParamsOf<M>, settings?: CallSettings];

export async function withClient<T>(fn: (client: Client) => Promise<T>): Promise<T> {
  const client = await connectOrStart(resolvePaths());
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}

export function callDaemon<M extends MethodName>(method: M, ...[params, settings = {}]: CallDaemonArgs<M>): Promise<ResultOf<M>> {
  return withClient(async (client) => {
    const controller = new AbortController();
    const onSigint = () => controller.abort();
    process.once("SIGINT", onSigint);
    const signal = settings.onEvent ? AbortSignal.any([controller.signal, readerGone]) : controller.signal;
    const call = (onProgress?: CallOptions["onProgress"]) => {
      const opts: CallOptions = { signal, onProgress, onEvent: settings.onEvent };
      // M is generic here, so the rest-tuple type is asserted; callers were checked by callDaemon's own signature.
      return settings.input ? callWithInput(client, method, params, settings.input, opts) : client.call(method, ...([params, opts] as CallArgs<ParamsOf<M>>));
    };
    try {
      return await (settings.showProgress ? new ProgressView().track(call) : call());
    } finally {
      process.off("SIGINT", onSigint);
    }
  });
}

/** One call fed with `input`'s bytes within the acknowledged window; fails with input's error, if any. */
async function callWithInput<M extends MethodName>(client: Client, method: M, params: ParamsOf<M> | undefined, input: Readable, opts: CallOptions): Promise<ResultOf<M>> {
  let uploader: Uploader | undefined;
  const toSinks = (e: unknown) => streamEvents({ 1: process.stdout, 2: process.stderr }, uploader)(e);
  const call = client.start(method, ...([params, { ...opts, onEvent: (e: unknown) => (toSinks(e), opts.onEvent?.(e)) }] as CallArgs<ParamsOf<M>>));
  const readFailed = new Promise<never>((_resolve, reject) =>
    input.on("error", (err) => {
      call.cancel();
      reject(err);
    }),
  );
  uploader = new Uploader(call, input);
  uploader.start();
  try {
    return await Promise.race([call.result, readFailed]);
  } finally {
    uploader.stop();
    input.destroy();
  }
}
