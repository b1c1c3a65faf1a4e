// Wire format of the agent protocol (agent/PROTOCOL.md): constants, encoding, and a
// decoder that refuses oversized or malformed frames before buffering them.
import { BangerError, ErrorCode } from "../util/errors.ts";

export const PROTO_VERSION = 1;
export const HEADER_SIZE = 12;
/** Largest payload either side accepts; anything bigger is a protocol violation. */
export const MAX_PAYLOAD = 1 << 20;
/** Largest DATA payload the host sends (keeps channels fair on the shared stream). */
export const DATA_CHUNK = 32 << 10;
/**
 * Largest DATA payload on a bulk channel (files.put): fewer, larger frames cost the guest
 * far fewer wake-ups and copies; a frame of this size still crosses the link in a few ms.
 */
export const BULK_CHUNK = 256 << 10;
/** Credit each side starts with per (channel, stream) and direction. */
export const INITIAL_WINDOW = 256 << 10;

export const FrameType = {
  Hello: 1,
  Open: 2,
  Opened: 3,
  Data: 4,
  Eof: 5,
  Window: 6,
  Control: 7,
  Result: 8,
  Error: 9,
  Close: 10,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

export const Stream = { In: 0, Out: 1, Err: 2 } as const;
export type Stream = (typeof Stream)[keyof typeof Stream];

export interface Frame {
  channel: number;
  type: FrameType;
  stream: Stream;
  payload: Buffer;
}

/** "BNGR", the protocol version, three zero bytes: opens the connection in both directions. */
export function magic(version = PROTO_VERSION): Buffer {
  return Buffer.from([0x42, 0x4e, 0x47, 0x52, version, 0, 0, 0]);
}
export const MAGIC_SIZE = 8;

export function encodeFrame(channel: number, type: FrameType, payload: Buffer = Buffer.alloc(0), stream: Stream = Stream.In): Buffer {
  checkPayload(payload.length);
  const buf = Buffer.allocUnsafe(HEADER_SIZE + payload.length);
  writeHeader(buf, channel, type, payload.length, stream);
  payload.copy(buf, HEADER_SIZE);
  return buf;
}

/** Just the header of a frame whose payload is written separately (bulk DATA: no copy). */
export function encodeHeader(channel: number, type: FrameType, length: number, stream: Stream = Stream.In): Buffer {
  checkPayload(length);
  const buf = Buffer.allocUnsafe(HEADER_SIZE);
  writeHeader(buf, channel, type, length, stream);
  return buf;
}

function checkPayload(length: number): void {
  if (length > MAX_PAYLOAD) throw new Error(`frame payload too large: ${length}`);
}

function writeHeader(buf: Buffer, channel: number, type: FrameType, length: number, stream: Stream): void {
  buf.writeUInt32BE(length, 0);
  buf.writeUInt32BE(channel >>> 0, 4);
  buf.writeUInt8(type, 8);
  buf.writeUInt8(stream, 9);
  buf.writeUInt16BE(0, 10);
}

export function encodeJSON(channel: number, type: FrameType, value: unknown): Buffer {
  return encodeFrame(channel, type, Buffer.from(JSON.stringify(value)));
}

export function protocolError(detail: string): BangerError {
  return new BangerError(ErrorCode.Integrity, `guest agent protocol violation: ${detail}`, "the guest agent misbehaved or is not a banger agent; restart the VM");
}

/** Splits a byte stream into frames. Never holds more than one maximal frame of input. */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private size = 0;

  /** Appends bytes and returns every complete frame; throws on a malformed header. */
  push(chunk: Buffer): Frame[] {
    this.chunks.push(chunk);
    this.size += chunk.length;
    const frames: Frame[] = [];
    for (;;) {
      if (this.size < HEADER_SIZE) break;
      const head = this.peek(HEADER_SIZE);
      const len = head.readUInt32BE(0);
      if (len > MAX_PAYLOAD) throw protocolError(`frame of ${len} bytes exceeds the ${MAX_PAYLOAD}-byte limit`);
      const type = head.readUInt8(8);
      const stream = head.readUInt8(9);
      if (type < FrameType.Hello || type > FrameType.Close) throw protocolError(`unknown frame type ${type}`);
      if (stream > Stream.Err) throw protocolError(`unknown stream ${stream}`);
      if (head.readUInt16BE(10) !== 0) throw protocolError("reserved header bytes are not zero");
      if (this.size < HEADER_SIZE + len) break;
      const whole = this.take(HEADER_SIZE + len);
      frames.push({
        channel: whole.readUInt32BE(4),
        type: type as FrameType,
        stream: stream as Stream,
        payload: whole.subarray(HEADER_SIZE),
      });
    }
    return frames;
  }

  /** Bytes received but not yet part of a complete frame. */
  get buffered(): number {
    return this.size;
  }

  private peek(n: number): Buffer {
    if (this.chunks[0]!.length < n) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0]!.subarray(0, n);
  }

  private take(n: number): Buffer {
    if (this.chunks[0]!.length < n) this.chunks = [Buffer.concat(this.chunks)];
    const first = this.chunks[0]!;
    const out = first.subarray(0, n);
    if (first.length === n) this.chunks.shift();
    else this.chunks[0] = first.subarray(n);
    this.size -= n;
    return out;
  }
}
