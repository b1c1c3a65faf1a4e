// The opening of an agent connection (agent/PROTOCOL.md "Handshake"): the host's magic and HELLO,
// then the agent's, found at the very start of a socket, or after bounded stale bytes on a
// virtio-serial port, and validated before any channel exists.
import type { Duplex } from "node:stream";
import { randomBytes } from "node:crypto";
import { BangerError, ErrorCode, cancelled } from "../util/errors.ts";
import { FrameDecoder, FrameType, HEADER_SIZE, MAGIC_SIZE, MAX_PAYLOAD, PROTO_VERSION, encodeJSON, magic, protocolError, type Frame } from "./frame.ts";
import { parseHello, type AgentInfo } from "./messages.ts";
import { agentError, timeoutError } from "./errors.ts";

export interface HandshakeOptions {
  signal?: AbortSignal;
  client?: string;
  serial?: boolean;
}

/** Runs the versioned handshake; resolves with the agent's HELLO and any bytes after it. */
export async function handshake(stream: Duplex, timeoutMs: number, opts: HandshakeOptions): Promise<{ info: AgentInfo; rest: Buffer }> {
  const nonce = randomBytes(8).toString("hex");
  const scanner = new HelloScanner(nonce, opts.serial === true);
  return new Promise((resolve, reject) => {
    const finish = (err?: unknown, value?: { info: AgentInfo; rest: Buffer }) => {
      clearTimeout(timer);
      stream.off("data", onData);
      stream.off("close", onClose);
      stream.off("error", onError);
      opts.signal?.removeEventListener("abort", onAbort);
      if (err) {
        stream.destroy();
        reject(err);
      } else resolve(value!);
    };
    const onData = (chunk: Buffer) => {
      try {
        const done = scanner.push(chunk);
        if (!done) return;
        stream.pause();
        finish(undefined, done);
      } catch (err) {
        finish(err);
      }
    };
    const onClose = () => finish(new BangerError(ErrorCode.Unavailable, "guest agent closed the connection during the handshake", "check the VM console log: banger vm logs"));
    const onError = (err: Error) => finish(new BangerError(ErrorCode.Unavailable, `guest agent connection failed: ${err.message}`));
    const onAbort = () => finish(cancelled());
    const timer = setTimeout(() => finish(timeoutError("the handshake", timeoutMs)), timeoutMs);
    if (opts.signal?.aborted) return finish(cancelled());
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    stream.on("data", onData);
    stream.on("close", onClose);
    stream.on("error", onError);
    stream.resume(); // a dialer may have paused it (explicitly paused streams ignore new 'data' listeners)
    const hello = { version: PROTO_VERSION, client: opts.client ?? "banger", nonce };
    stream.write(Buffer.concat([magic(PROTO_VERSION), encodeJSON(0, FrameType.Hello, hello)]));
  });
}

/** How many stale bytes a serial-port handshake may skip before giving up. */
const MAX_SERIAL_SKIP = 8 << 20;

/**
 * Finds the agent's answer: the magic, then a HELLO echoing our nonce. On a socket it must
 * come first. On a virtio-serial port, bytes an earlier connection left in the pipe come
 * first, so they are skipped (bounded), and a magic not followed by our HELLO is stale too.
 */
class HelloScanner {
  private buf = Buffer.alloc(0);
  private skipped = 0;
  private readonly want = magic(PROTO_VERSION);
  constructor(
    private readonly nonce: string,
    private readonly serial: boolean,
  ) {}

  push(chunk: Buffer): { info: AgentInfo; rest: Buffer } | undefined {
    this.buf = Buffer.concat([this.buf, chunk]);
    for (;;) {
      if (!this.alignToMagic()) return undefined;
      if (this.buf.length < MAGIC_SIZE) return undefined;
      let frames: Frame[];
      try {
        frames = new FrameDecoder().push(this.buf.subarray(MAGIC_SIZE, MAGIC_SIZE + HEADER_SIZE + MAX_PAYLOAD));
      } catch (err) {
        if (!this.serial) throw err;
        this.skip(1);
        continue;
      }
      const first = frames[0];
      if (!first) return undefined; // the HELLO is still arriving
      if (first.channel === 0 && first.type === FrameType.Error && !this.serial) throw agentError(first.payload, "handshake");
      const info = first.channel === 0 && first.type === FrameType.Hello ? parseHello(first.payload) : undefined;
      if (info && info.nonce === this.nonce) {
        return { info, rest: this.buf.subarray(MAGIC_SIZE + HEADER_SIZE + first.payload.length) };
      }
      if (!this.serial) throw protocolError("the agent's HELLO does not answer ours");
      this.skip(1);
    }
  }

  /** Drops bytes before the magic; false when more input is needed. */
  private alignToMagic(): boolean {
    if (!this.serial) {
      const n = Math.min(this.buf.length, MAGIC_SIZE);
      if (!this.buf.subarray(0, n).equals(this.want.subarray(0, n))) {
        throw new BangerError(
          ErrorCode.Integrity,
          `guest agent handshake failed: not a banger agent (first bytes ${JSON.stringify(this.buf.subarray(0, 16).toString("latin1"))})`,
          "make sure the image carries the banger agent and the VM booted it",
        );
      }
      return true;
    }
    const at = this.buf.indexOf(this.want);
    if (at >= 0) {
      this.skip(at);
      return true;
    }
    this.skip(Math.max(0, this.buf.length - (MAGIC_SIZE - 1))); // keep a possible partial magic
    return false;
  }

  private skip(n: number): void {
    this.buf = this.buf.subarray(n);
    this.skipped += n;
    if (this.skipped > MAX_SERIAL_SKIP) {
      throw new BangerError(ErrorCode.Integrity, `guest agent handshake failed: no answer in ${MAX_SERIAL_SKIP} bytes from the serial port`, "check the VM console log: banger vm logs");
    }
  }
}
