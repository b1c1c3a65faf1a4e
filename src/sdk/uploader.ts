// Sending a local byte source as a streaming call's input (`$/input` chunks with raw
// payloads) within the window the daemon acknowledges (api/streams.ts; daemon/streams.ts is
// the other end). The CLI's stdin, `vm.writeFile`'s tar and an exec's stdin all go this way.
import { Readable } from "node:stream";
import { INPUT_CHUNK_BYTES, INPUT_WINDOW_BYTES, type StreamInput } from "../api/index.ts";
import type { Call } from "../rpc/index.ts";

/**
 * Sends a local Readable to a call, pausing while too much is unacknowledged. Chunks that
 * arrive together (a tar of small files comes in many small pieces) go out as one `$/input`
 * message of up to INPUT_CHUNK_BYTES, sent before the event loop waits for more input.
 */
export class Uploader {
  private unacked = 0;
  private started = false;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private flushQueued = false;
  private readonly onData = (b: Buffer) => {
    this.unacked += b.length;
    this.pending.push(b);
    this.pendingBytes += b.length;
    if (this.pendingBytes >= INPUT_CHUNK_BYTES) this.flush();
    else if (!this.flushQueued) {
      this.flushQueued = true;
      setImmediate(this.flush);
    }
    if (this.unacked > INPUT_WINDOW_BYTES) this.source.pause();
  };
  private readonly flush = () => {
    this.flushQueued = false;
    if (this.pendingBytes === 0) return;
    const data = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    this.call.input({ t: "in" }, data); // raw bytes after the message, no base64
  };
  private readonly onEnd = () => {
    this.flush();
    this.send({ t: "eof" });
  };

  private readonly source: Readable;

  constructor(
    private readonly call: Pick<Call<unknown>, "input">,
    source: Readable | AsyncIterable<Buffer>,
  ) {
    // tar-stream packs are streamx streams: wrap anything that is not a Node Readable.
    this.source = source instanceof Readable ? source : Readable.from(source);
  }

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
    this.pending = [];
    this.pendingBytes = 0;
  }
}
