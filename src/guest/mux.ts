// The multiplexer of one agent connection (agent/PROTOCOL.md "Framing", "Channels"): frames
// decoded from and written to the byte stream, channels opened by id and frames routed to
// them, the connection's deadlines, and its one end. client.ts puts typed operations on it.
//
// Every byte from the guest is untrusted: frames are bounded by the decoder, buffering by
// the credit windows, waiting by timeouts, and every reply is validated before use. Any
// frame a guest may send, in any state, is either dropped (a late frame for a channel the
// host is done with) or ends this connection with one protocol-violation error: nothing a
// guest sends can throw past the connection or grow the host's memory without bound.
//
// The bound, per agent connection (so per VM in the daemon): at most MAX_CHANNELS (64)
// channels open at once; a channel is released as soon as its outcome arrives or the host
// gives up on it, whatever the guest does next; each channel buffers at most two output
// streams of one window (256 KiB) each, because a guest that sends beyond its window is cut
// off. So at most 64 x 2 x 256 KiB = 32 MiB of guest data is held per connection, plus
// one frame (1 MiB) being decoded, which must complete within the reply deadline.
import type { Duplex } from "node:stream";
import { BangerError, ErrorCode } from "../util/errors.ts";
import { FrameDecoder, FrameType, INITIAL_WINDOW, MAX_PAYLOAD, encodeFrame, encodeHeader, protocolError, type Frame } from "./frame.ts";
import { Channel, deferred, type ChannelHost } from "./channel.ts";
import { agentError, closedError, timeoutError } from "./errors.ts";

/** Channels open at once on one connection; see the bound above. */
export const MAX_CHANNELS = 64;
/** The most guest data one connection holds: every channel's output streams full, plus a frame being decoded. */
export const MAX_BUFFERED_BYTES = MAX_CHANNELS * 2 * INITIAL_WINDOW + MAX_PAYLOAD;

/** One agent connection: its channels over one byte stream, ended once (teardown). */
export class Mux implements ChannelHost {
  private decoder = new FrameDecoder();
  private readonly channels = new Map<number, Channel>();
  private nextId = 1;
  private dead: BangerError | undefined;
  private readonly doneD = deferred<BangerError | undefined>();
  readonly done = this.doneD.promise;
  /** Armed while a frame is half received: a guest that starts a frame must finish it. */
  private frameTimer: NodeJS.Timeout | undefined;

  /** `rest`: bytes that came after the agent's HELLO (handshake.ts), the first frames. */
  constructor(
    private readonly stream: Duplex,
    rest: Buffer,
    private readonly replyTimeoutMs: number,
  ) {
    stream.on("data", (chunk: Buffer) => this.onData(chunk));
    stream.on("error", (err) => this.teardown(new BangerError(ErrorCode.Unavailable, `guest agent connection failed: ${err.message}`)));
    stream.on("close", () => this.teardown(closedError()));
    stream.on("end", () => this.teardown(closedError()));
    if (rest.length > 0) this.onData(rest);
    stream.resume();
  }

  send(buf: Buffer): void {
    if (!this.dead) this.stream.write(buf);
  }

  /** A DATA frame written as header + payload in one writev, without copying the payload. */
  sendData(id: number, payload: Buffer): void {
    if (this.dead) return;
    this.stream.cork();
    this.stream.write(encodeHeader(id, FrameType.Data, payload.length));
    this.stream.write(payload);
    this.stream.uncork();
  }

  release(id: number): void {
    this.channels.delete(id);
  }

  usage(): { channels: number; bufferedBytes: number } {
    let bytes = this.decoder.buffered;
    for (const ch of this.channels.values()) bytes += ch.buffered;
    return { channels: this.channels.size, bufferedBytes: bytes };
  }

  private onData(chunk: Buffer): void {
    if (this.dead) return;
    try {
      const frames = this.decoder.push(chunk);
      this.watchPartialFrame(frames.length > 0);
      for (const f of frames) this.route(f);
    } catch (err) {
      const e = err instanceof BangerError ? err : protocolError((err as Error).message);
      this.teardown(e);
    }
  }

  /** A frame's bytes must all arrive within the reply deadline of its first byte (no half frame then silence, no endless drip). */
  private watchPartialFrame(completedOne: boolean): void {
    if (this.decoder.buffered === 0 || completedOne) {
      clearTimeout(this.frameTimer);
      this.frameTimer = undefined;
    }
    if (this.decoder.buffered > 0 && !this.frameTimer) {
      const ms = this.replyTimeoutMs;
      this.frameTimer = setTimeout(() => this.teardown(protocolError(`a frame did not arrive whole within ${ms} ms (${this.decoder.buffered} bytes of it came)`)), ms);
      this.frameTimer.unref();
    }
  }

  private route(f: Frame): void {
    if (this.dead) return; // an earlier frame in the same chunk ended the connection
    if (f.channel === 0) {
      if (f.type === FrameType.Error) throw agentError(f.payload, "connection");
      throw protocolError(`frame type ${f.type} on channel 0 after the handshake`);
    }
    if (f.channel >= this.nextId) throw protocolError(`frame for channel ${f.channel}, which the host never opened`);
    const ch = this.channels.get(f.channel);
    if (!ch) return; // the host is done with it (outcome in, or abandoned): late frames are dropped
    ch.handle(f);
  }

  private teardown(err: BangerError): void {
    if (this.dead) return;
    this.dead = err;
    clearTimeout(this.frameTimer);
    this.decoder = new FrameDecoder(); // a dead connection holds no guest bytes
    for (const ch of [...this.channels.values()]) ch.finish(err);
    this.stream.destroy();
    this.doneD.resolve(err.code === ErrorCode.Unavailable ? undefined : err);
  }

  close(): void {
    this.teardown(closedError());
  }

  /** Opens a channel of this kind: the OPEN frame carries `params` (bounded by MAX_PAYLOAD). */
  open(kind: string, params: Record<string, unknown> = {}): Channel {
    if (this.dead) throw this.dead;
    if (this.channels.size >= MAX_CHANNELS) {
      throw new BangerError(
        ErrorCode.Unavailable,
        `the guest agent already has ${MAX_CHANNELS} operations open on this connection`,
        "wait for running commands, copies, forwards or attaches to end, or close some",
      );
    }
    const id = this.nextId++;
    const request = Buffer.from(JSON.stringify({ ...params, kind }));
    if (request.length > MAX_PAYLOAD) {
      throw new BangerError(
        ErrorCode.InvalidArgument,
        `${kind} request is ${request.length} bytes; the agent protocol allows ${MAX_PAYLOAD}`,
        "pass large data through stdin or files instead of argv/env",
      );
    }
    const ch = new Channel(this, id, kind);
    this.channels.set(id, ch);
    this.send(encodeFrame(id, FrameType.Open, request));
    return ch;
  }

  /** `p` within the reply deadline, else the channel is closed and the wait fails. */
  withTimeout<T>(p: Promise<T>, what: string, ch: Channel): Promise<T> {
    const ms = this.replyTimeoutMs;
    return new Promise<T>((resolve, reject) => {
      const t = setTimeout(() => {
        ch.close();
        reject(timeoutError(what, ms));
      }, ms);
      p.then(
        (v) => (clearTimeout(t), resolve(v)),
        (e) => (clearTimeout(t), reject(e)),
      );
    });
  }

  /** Opens a one-shot channel and returns its RESULT. */
  async request(kind: string, params?: Record<string, unknown>): Promise<unknown> {
    const ch = this.open(kind, params);
    return this.withTimeout(ch.result.promise, kind, ch);
  }
}
