// Byte streams over an RPC call, in both directions, with flow control:
//   out: a Readable becomes `{t:"out", fd, data}` events (raw payloads over RPC), paused while
//        the CLI's socket is full;
//   in:  `$/input` `{t:"in"}` with raw bytes (rpc's payload: `data`) or `{t:"in", b64}` (the
//        web terminal), and `{t:"eof"}`, become a Readable; each chunk is acknowledged
//        (`{t:"ack", n}`) once taken, so the caller keeps a bounded window in flight.
// Exec stdio, file copies and session attach all use these. The events, the input and the
// window are the wire contract's (api/streams.ts); this file is the daemon's side of them.
import { PassThrough, type Readable } from "node:stream";
import { INPUT_WINDOW_BYTES, type StreamEvent, type StreamInput } from "../api/index.ts";
import type { CallContext } from "../rpc/index.ts";

/** Emits every chunk of `stream` to the caller; resolves at its end. */
export async function emitStream(stream: Readable, call: CallContext, fd: 1 | 2 = 1): Promise<void> {
  for await (const chunk of stream) {
    await call.emit({ t: "out", fd, data: chunk as Buffer } satisfies StreamEvent);
  }
}

/**
 * Feeds the caller's control input (resize, signal: anything but bytes and eof) to
 * `onControl`, for a call whose bytes nobody reads: a command without stdin still gets
 * Ctrl-C. Register it or inputStream, not both: the server hands input that came early to
 * the first listener only.
 */
export function controlInput(call: CallContext, onControl: (input: StreamInput) => void): void {
  call.onInput((raw) => {
    const input = raw as StreamInput | null;
    if (input && input.t !== "in" && input.t !== "eof") control(onControl, input);
  });
}

/** A listener that throws (an unknown signal name) drops that one input, nothing more. */
function control(onControl: (input: StreamInput) => void, input: StreamInput): void {
  try {
    onControl(input);
  } catch {
    // a bad control message from the caller ends nothing
  }
}

/**
 * A Readable of the bytes the caller sends. Other input kinds (resize, signal) go to
 * `onControl` (see controlInput). The stream ends at the caller's eof; it errors if the call
 * is aborted.
 */
export function inputStream(call: CallContext, onControl?: (input: StreamInput) => void): Readable {
  const out = new PassThrough({ highWaterMark: INPUT_WINDOW_BYTES });
  const ack = (n: number) => void call.emit({ t: "ack", n } satisfies StreamEvent);
  // Bytes taken while the stream was full: acknowledged together once it drains.
  let held = 0;
  out.on("drain", () => {
    const n = held;
    held = 0;
    if (n > 0) ack(n);
  });
  call.signal.addEventListener("abort", () => out.destroy(call.signal.reason as Error), { once: true });
  call.onInput((raw) => {
    const input = raw as StreamInput;
    if (input?.t === "in") {
      if (out.writableEnded || out.destroyed) return;
      const data = "data" in input ? input.data : Buffer.from(input.b64, "base64");
      if (out.write(data) && held === 0) ack(data.length);
      else held += data.length;
    } else if (input?.t === "eof") {
      if (!out.writableEnded) out.end();
    } else if (input && onControl) {
      control(onControl, input);
    }
  });
  return out;
}
