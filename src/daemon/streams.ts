// Byte streams over an RPC call, in both directions, with flow control:
//   out: a Readable becomes `{t:"out", fd, data}` events (raw payloads over RPC), paused while
//        the CLI's socket is full;
//   in:  `$/input` `{t:"in"}` with raw bytes (rpc's payload: `data`) or `{t:"in", b64}` (the
//        web terminal), and `{t:"eof"}`, become a Readable; each chunk is acknowledged
//        (`{t:"ack", n}`) once taken, so the caller keeps a bounded window in flight.
// Exec stdio, file copies and session attach all use these.
import { PassThrough, type Readable } from "node:stream";
import type { CallContext } from "../rpc/index.ts";

/** What the CLI sends with `$/input` while streaming. */
export type StreamInput =
  | { t: "in"; data: Buffer }
  | { t: "in"; b64: string }
  | { t: "eof" }
  | { t: "resize"; rows: number; cols: number }
  | { t: "signal"; name: string };

/** What the daemon emits while streaming. */
export type StreamEvent = { t: "out"; fd: 1 | 2; data: Buffer } | { t: "started"; pid?: number } | { t: "ack"; n: number };

/** The bytes of an `out` event, or undefined for any other event. */
export function outBytes(event: unknown): { fd: 1 | 2; data: Buffer } | undefined {
  const ev = event as Partial<Extract<StreamEvent, { t: "out" }>> | null;
  return ev?.t === "out" && Buffer.isBuffer(ev.data) && (ev.fd === 1 || ev.fd === 2) ? { fd: ev.fd, data: ev.data } : undefined;
}

/**
 * Most bytes the CLI may have sent and not yet seen acknowledged. Enough to keep a
 * workspace copy flowing while the daemon forwards to the guest; also the bound on what
 * the daemon buffers per call.
 */
export const INPUT_WINDOW_BYTES = 4 * 1024 * 1024;
/** Largest `in` chunk the CLI sends (before base64): small pieces are batched up to this. */
export const INPUT_CHUNK_BYTES = 256 * 1024;

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
