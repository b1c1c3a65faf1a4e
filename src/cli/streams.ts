// The CLI end of streaming over an RPC call (daemon/streams.ts is the other end): local
// bytes go up as `$/input` chunks (raw payloads) within an acknowledged window; `out` events
// come down.
import type { Writable } from "node:stream";
import { streamEvent } from "../api/index.ts";
import { Uploader } from "../sdk/index.ts";

/** The uploader is the SDK's (sdk/uploader.ts): the CLI streams its stdin the same way. */
export { Uploader };

/**
 * An onEvent handler writing `out` events to stdout/stderr (or the given sinks) and feeding
 * acks and the `started` signal to an uploader.
 */
export function streamEvents(sinks: { 1: Writable; 2: Writable }, uploader?: Uploader, onStarted?: () => void): (e: unknown) => void {
  return (e) => {
    const ev = streamEvent(e);
    if (ev?.t === "out") sinks[ev.fd].write(ev.data);
    else if (ev?.t === "ack") uploader?.ack(ev.n);
    else if (ev?.t === "started") onStarted?.();
  };
}
