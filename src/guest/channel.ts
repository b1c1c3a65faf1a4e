// One channel of an agent connection (agent/PROTOCOL.md "Channels", "Flow control"): its
// replies, its guest→host streams as Readables that return credit as they are read, and
// its host→guest stream spending the credit the agent grants.
//
// Every frame the guest sends for a channel is checked against the channel's state: data
// on a stream the kind does not have, after EOF, or beyond the window is a violation that
// the connection (mux.ts) turns into one error for this VM. A channel is released as
// soon as its outcome (RESULT or ERROR) arrives or the host gives up on it, whether or not
// the guest ever sends CLOSE; late frames for it are then dropped by the connection.
import { Readable, Writable } from "node:stream";
import { DATA_CHUNK, FrameType, INITIAL_WINDOW, Stream, encodeFrame, encodeJSON, protocolError, type Frame } from "./frame.ts";
import { parseJSON } from "./messages.ts";
import { agentError, closedError } from "./errors.ts";

/** What a channel needs from its connection. */
export interface ChannelHost {
  send(buf: Buffer): void;
  sendData(id: number, payload: Buffer): void;
  /** The channel is over: stop routing frames to it. */
  release(id: number): void;
}

/** The guest→host streams each kind has; the others are ended at open, so data on them is a violation. */
const OUTPUT_STREAMS: Record<string, readonly Stream[]> = {
  exec: [Stream.Out, Stream.Err],
  "files.get": [Stream.Out],
  tcp: [Stream.Out],
  "session.attach": [Stream.Out],
  "session.logs": [Stream.Out],
  "fs.list": [Stream.Out],
  "fs.read": [Stream.Out],
  "fs.watch": [Stream.Out],
};

interface Deferred<T> {
  promise: Promise<T>;
  resolve(v: T): void;
  reject(e: unknown): void;
}

export function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => undefined); // a rejection nobody awaited is not a crash
  return { promise, resolve, reject };
}

/** One guest→host stream: a Readable whose consumption returns credit to the agent. */
class Inbound {
  readonly readable: Readable;
  private received = 0;
  private granted = 0;
  /** Why no more data may come: the agent's EOF, or the kind has no such stream. */
  private ended: string | undefined;
  constructor(
    private readonly ch: Channel,
    private readonly stream: Stream,
  ) {
    this.readable = new Readable({ highWaterMark: INITIAL_WINDOW, read: () => this.onRead() });
  }

  /** Bytes the consumer has not taken yet (at most the window). */
  get buffered(): number {
    return this.readable.destroyed ? 0 : this.readable.readableLength;
  }

  push(payload: Buffer): void {
    // Checked on our own flag, never on the Readable's: pushing after push(null) makes Node
    // emit an 'error' that nobody may be listening for, and that kills the process.
    if (this.ended) throw protocolError(`data on stream ${this.stream} of channel ${this.ch.id} (${this.ch.kind})${this.ended}`);
    if (this.received + payload.length - this.granted > INITIAL_WINDOW) throw protocolError("agent exceeded its flow-control window");
    this.received += payload.length;
    if (this.readable.destroyed) return; // the consumer is gone: drop the bytes (and grant no more credit)
    this.readable.push(payload);
    this.grant();
  }

  end(why = " after its EOF"): void {
    if (this.ended) return;
    this.ended = why;
    if (!this.readable.destroyed) this.readable.push(null);
  }

  /** Fails the stream; an 'error' event only reaches someone listening (else it would crash). */
  abort(err: unknown): void {
    if (this.ended) return;
    this.ended = " after the channel failed";
    if (this.readable.destroyed) return;
    this.readable.destroy(this.readable.listenerCount("error") > 0 ? (err as Error) : undefined);
  }

  /**
   * Node calls read() once and then waits for a push before calling it again. So it returns
   * whatever was consumed at once; when nothing was yet, an empty push re-arms read() for the
   * consumer's next read — else a reader that drains the buffer later and an agent waiting
   * for credit deadlock.
   */
  private onRead(): void {
    if (!this.grant(true) && !this.ended && !this.readable.destroyed) this.readable.push(Buffer.alloc(0));
  }

  /** Returns credit for bytes the consumer took: in batches, at once when drained, or when asked to. */
  private grant(now = false): boolean {
    if (this.ended) return false; // nothing more may come: credit would only invite a violation
    const consumed = this.received - this.readable.readableLength;
    const delta = consumed - this.granted;
    if (delta <= 0) return false;
    if (now || delta >= INITIAL_WINDOW / 4 || this.readable.readableLength === 0) {
      this.granted += delta;
      const b = Buffer.alloc(4);
      b.writeUInt32BE(delta);
      this.ch.host.send(encodeFrame(this.ch.id, FrameType.Window, b, this.stream));
      return true;
    }
    return false;
  }
}

export class Channel {
  readonly opened = deferred<unknown>();
  readonly result = deferred<unknown>();
  readonly inbound: [undefined, Inbound, Inbound];
  private credit = INITIAL_WINDOW;
  private creditWaiters: Array<() => void> = [];
  /** Largest DATA payload sent: DATA_CHUNK, or BULK_CHUNK on channels that move files. */
  chunk = DATA_CHUNK;
  closed = false;
  private failure: unknown;
  private resultSeen = false;

  constructor(
    readonly host: ChannelHost,
    readonly id: number,
    readonly kind: string,
  ) {
    this.inbound = [undefined, new Inbound(this, Stream.Out), new Inbound(this, Stream.Err)];
    const has = OUTPUT_STREAMS[kind] ?? [];
    for (const s of [Stream.Out, Stream.Err] as const) if (!has.includes(s)) this.inbound[s].end(", which has no such stream");
  }

  /** Guest bytes not yet taken by their consumers on this channel. */
  get buffered(): number {
    return this.inbound[1].buffered + this.inbound[2].buffered;
  }

  handle(f: Frame): void {
    switch (f.type) {
      case FrameType.Opened:
        this.opened.resolve(parseJSON(f.payload));
        return;
      case FrameType.Data:
      case FrameType.Eof: {
        const inb = this.inbound[f.stream];
        if (!inb) throw protocolError(`agent sent data on input stream ${f.stream}`);
        if (f.type === FrameType.Data) inb.push(f.payload);
        else inb.end();
        return;
      }
      case FrameType.Window: {
        if (f.stream !== Stream.In || f.payload.length !== 4) throw protocolError("malformed WINDOW frame");
        this.credit += f.payload.readUInt32BE(0);
        if (this.credit > 2 ** 31) throw protocolError("flow-control window overflow");
        this.wakeWriters();
        return;
      }
      case FrameType.Result: {
        const value = parseJSON(f.payload);
        this.resultSeen = true;
        this.result.resolve(value);
        this.opened.resolve(undefined);
        this.finish(closedError()); // the outcome is in: whatever the guest sends later is dropped
        return;
      }
      case FrameType.Error:
        this.fail(agentError(f.payload, this.kind));
        this.finish(closedError());
        return;
      case FrameType.Close:
        this.finish(closedError());
        return;
      default:
        throw protocolError(`frame type ${f.type} not allowed from the agent`);
    }
  }

  fail(err: unknown): void {
    this.failure ??= err;
    this.opened.reject(err);
    this.result.reject(err);
    this.inbound[1].abort(this.failure);
    this.inbound[2].abort(this.failure);
  }

  /** The channel is over. After a RESULT its output streams simply end; otherwise they fail with `err`. */
  finish(err: unknown): void {
    if (this.closed) return;
    this.closed = true;
    this.host.release(this.id);
    if (this.resultSeen && this.failure === undefined) {
      this.inbound[1].end();
      this.inbound[2].end();
    } else this.fail(this.failure ?? err);
    this.wakeWriters();
  }

  /** Sends bytes on the input stream, waiting for credit; fails once the channel is over. */
  async sendData(data: Buffer): Promise<void> {
    let off = 0;
    while (off < data.length) {
      while (this.credit === 0 && !this.closed) await new Promise<void>((r) => this.creditWaiters.push(r));
      if (this.closed) throw this.failure ?? closedError();
      const n = Math.min(data.length - off, this.credit, this.chunk);
      this.credit -= n;
      this.host.sendData(this.id, data.subarray(off, off + n));
      off += n;
    }
  }

  sendEof(): void {
    if (!this.closed) this.host.send(encodeFrame(this.id, FrameType.Eof));
  }

  control(msg: object): void {
    if (!this.closed) this.host.send(encodeJSON(this.id, FrameType.Control, msg));
  }

  /** Host-side close: the agent aborts whatever runs on the channel. */
  close(): void {
    if (this.closed) return;
    this.host.send(encodeFrame(this.id, FrameType.Close));
    this.finish(closedError());
  }

  /** A Writable feeding the input stream, with end() sending EOF. */
  writable(): Writable {
    return new Writable({
      highWaterMark: DATA_CHUNK,
      write: (chunk: Buffer, _enc, cb) => void this.sendData(chunk).then(() => cb(), cb),
      final: (cb) => {
        this.sendEof();
        cb();
      },
    });
  }

  private wakeWriters(): void {
    const waiters = this.creditWaiters;
    this.creditWaiters = [];
    for (const w of waiters) w();
  }
}

/**
 * Copies a Readable into the channel's input with credit-based backpressure, then EOF.
 * Chunks already queued in the source go out together (up to the channel's chunk size):
 * a tar of small files arrives as many small pieces, and each DATA frame costs the guest
 * a wake-up. Nothing waits for more input, so interactive bytes are not delayed.
 */
export async function pumpInto(ch: Channel, src: Readable): Promise<void> {
  let batch: Buffer[] = [];
  let size = 0;
  for await (const chunk of src) {
    const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string);
    batch.push(b);
    size += b.length;
    // A Node Readable says what it still holds; other streams (streamx) go chunk by chunk.
    if (size >= ch.chunk || !((src as { readableLength?: number }).readableLength! > 0)) {
      await ch.sendData(batch.length === 1 ? batch[0]! : Buffer.concat(batch, size));
      batch = [];
      size = 0;
    }
  }
  if (size > 0) await ch.sendData(Buffer.concat(batch, size));
  ch.sendEof();
}
