// Calling the daemon from a command: connect (starting bangerd if nothing answers), make
// one call, show its progress, and turn Ctrl-C into a cancellation the daemon sees.
import { resolvePaths } from "../config/index.ts";
import { connectOrStart } from "../daemon/launch.ts";
import type { CallOptions, RpcClient } from "../rpc/index.ts";
import { ProgressView } from "./output.ts";

export interface CallSettings {
  /** Show progress events on stderr (off under --json, which prints only the result). */
  showProgress?: boolean;
  onEvent?: CallOptions["onEvent"];
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
      return await client.call<T>(method, params, {
        signal: controller.signal,
        onProgress: view ? (p) => view.update(p) : undefined,
        onEvent: settings.onEvent,
      });
    } finally {
      view?.finish();
      process.off("SIGINT", onSigint);
    }
  });
}
