// One TCP connection in a guest bridged onto an RPC call: what `vm.tcp` (port forwards) and
// `vm.ssh` (the ssh ProxyCommand) answer with.
import type { Duplex } from "node:stream";
import type { CallContext } from "../rpc/index.ts";
import type { StreamEvent } from "../api/index.ts";
import { emitStream, inputStream } from "./streams.ts";

/**
 * Bytes in as `$/input`, out as events (see streams.ts). Ends when the guest side closes or
 * the caller cancels.
 */
export async function bridgeConnection(conn: Duplex, call: CallContext): Promise<{ closed: true }> {
  const onAbort = () => conn.destroy();
  call.signal.addEventListener("abort", onAbort, { once: true });
  try {
    const input = inputStream(call);
    input.on("error", () => conn.destroy());
    input.pipe(conn);
    void call.emit({ t: "started" } satisfies StreamEvent);
    await emitStream(conn, call).catch((err: unknown) => {
      if (!call.signal.aborted) throw err;
    });
    return { closed: true };
  } finally {
    call.signal.removeEventListener("abort", onAbort);
    conn.destroy();
  }
}
