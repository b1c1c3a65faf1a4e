// Calling the daemon from a command: connect (starting bangerd if nothing answers), make
// one call, show its progress, and turn Ctrl-C into a cancellation the daemon sees.
import type { Readable } from "node:stream";
import { resolvePaths } from "../config/index.ts";
import { connectOrStart } from "../daemon/launch.ts";
import type { CallOptions, RpcClient } from "../rpc/index.ts";
import { ProgressView } from "./output.ts";
import { Uploader, streamEvents } from "./streams.ts";

export interface CallSettings {
  /** Show progress events on stderr (off under --json, which prints only the result). */
  showProgress?: boolean;
  onEvent?: CallOptions["onEvent"];
  /** Bytes sent as the call's input (daemon/streams.ts inputStream); a read error cancels the call. */
  input?: Readable;
}

export async function withClient<T>(fn: (client: RpcClient) => Promise<T>): Promise<T> {
  const client = await connectOrStart(resolvePaths());
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}

export function callDaemon<T>(method: string, params?: unknown, settings: CallSettings = {}): Promise<T> {
  return withClient(async (client) => {
    const controller = new AbortController();
    const onSigint = () => controller.abort();
    process.once("SIGINT", onSigint);
    const view = settings.showProgress ? new ProgressView() : undefined;
    try {
      const opts: CallOptions = { signal: controller.signal, onProgress: view ? (p) => view.update(p) : undefined, onEvent: settings.onEvent };
      return await (settings.input ? callWithInput<T>(client, method, params, settings.input, opts) : client.call<T>(method, params, opts));
    } finally {
      view?.finish();
      process.off("SIGINT", onSigint);
    }
  });
}

/** One call fed with `input`'s bytes within the acknowledged window; fails with input's error, if any. */
async function callWithInput<T>(client: RpcClient, method: string, params: unknown, input: Readable, opts: CallOptions): Promise<T> {
  let uploader: Uploader | undefined;
  const toSinks = (e: unknown) => streamEvents({ 1: process.stdout, 2: process.stderr }, uploader)(e);
  const call = client.start<T>(method, params, { ...opts, onEvent: (e) => (toSinks(e), opts.onEvent?.(e)) });
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
