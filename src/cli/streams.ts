// The CLI end of streaming over an RPC call (daemon/streams.ts is the other end): local
// bytes go up as `$/input` chunks within an acknowledged window; `out` events come down.
import type { Readable, Writable } from "node:stream";
import { INPUT_WINDOW_BYTES, type StreamEvent, type StreamInput } from "../daemon/streams.ts";
import type { Call } from "../rpc/index.ts";

/** Sends a local Readable to a call, pausing while too much is unacknowledged. */
export class Uploader {
  private unacked = 0;
  private started = false;
  private readonly onData = (b: Buffer) => {
    this.unacked += b.length;
    this.send({ t: "in", b64: b.toString("base64") });
    if (this.unacked > INPUT_WINDOW_BYTES) this.source.pause();
  };
  private readonly onEnd = () => this.send({ t: "eof" });

  constructor(
    private readonly call: Pick<Call<unknown>, "input">,
    private readonly source: Readable,
  ) {}

  send(input: StreamInput): void {
    this.call.input(input);
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    this.source.on("data", this.onData);
    this.source.on("end", this.onEnd);
    this.source.resume();
  }

  ack(n: number): void {
    this.unacked -= n;
    if (this.started && this.source.isPaused() && this.unacked < INPUT_WINDOW_BYTES / 4) this.source.resume();
  }

  stop(): void {
    this.source.off("data", this.onData);
    this.source.off("end", this.onEnd);
    this.source.pause();
  }
}

/**
 * An onEvent handler writing `out` events to stdout/stderr (or the given sinks) and feeding
 * acks and the `started` signal to an uploader.
 */
export function streamEvents(sinks: { 1: Writable; 2: Writable }, uploader?: Uploader, onStarted?: () => void): (e: unknown) => void {
  return (e) => {
    const ev = e as StreamEvent;
    if (ev.t === "out") sinks[ev.fd].write(Buffer.from(ev.b64, "base64"));
    else if (ev.t === "ack") uploader?.ack(ev.n);
    else if (ev.t === "started") onStarted?.();
  };
}
