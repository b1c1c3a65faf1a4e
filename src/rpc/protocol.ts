// Wire format: JSON-RPC 2.0, one message per line (NDJSON) over a Unix socket.
//
// Besides requests and responses, three notifications carry the rest of a call's life:
//   server → client  "$/progress" {id, phase, done?, total?, unit?, message?}  progress of call `id`
//   server → client  "$/event"    {id, event}                          handler-defined output
//   client → server  "$/cancel"   {id}                                 abort call `id`
//   client → server  "$/input"    {id, input}                          handler-defined input
// A client that disconnects cancels every call it had in flight.
//
// Bytes need not be base64 in JSON: an `$/input` or `$/event` whose params also hold `bytes: N`
// is followed on the wire, right after its newline, by exactly N raw bytes
// (1 <= N <= MAX_PAYLOAD_BYTES), which the receiver attaches to the input or event as `data`
// (a Buffer). Handlers emit events with a `data` Buffer and callers send input with one; the
// framing is the server's and client's business. Workspace copies and exports go this way:
// base64 and JSON cost more CPU than the copy itself.
import type { Socket } from "node:net";
import { BangerError, ErrorCode } from "../util/errors.ts";

export type RequestId = number | string;

export interface RpcRequest {
  jsonrpc: "2.0";
  id: RequestId;
  method: string;
  params?: unknown;
}

export interface RpcNotification {
  jsonrpc: "2.0";
  method: string;
  params?: unknown;
}

export interface RpcErrorObject {
  code: number;
  message: string;
  data?: { hint?: string };
}

export type RpcResponse = { jsonrpc: "2.0"; id: RequestId | null; result: unknown } | { jsonrpc: "2.0"; id: RequestId | null; error: RpcErrorObject };

export const PROGRESS = "$/progress";
export const EVENT = "$/event";
export const CANCEL = "$/cancel";
export const INPUT = "$/input";

/** Largest single message either side accepts; bigger ones close the connection. */
export const MAX_LINE_BYTES = 16 * 1024 * 1024;
/** Largest raw payload after a message (see the header). */
export const MAX_PAYLOAD_BYTES = 4 * 1024 * 1024;

/** The raw bytes announced in a message's params (`bytes`), or 0; throws on a bad count. */
export function payloadBytes(params: unknown): number {
  const n = (params as { bytes?: unknown } | undefined)?.bytes;
  if (n === undefined) return 0;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 1 || n > MAX_PAYLOAD_BYTES) {
    throw new Error(`bad payload size ${JSON.stringify(n)} (1 to ${MAX_PAYLOAD_BYTES} bytes)`);
  }
  return n;
}

/** `data` in pieces of at most MAX_PAYLOAD_BYTES, each with the message that announces it. */
export function withPayloads(data: Uint8Array, message: (bytes: number) => object): Array<[message: object, payload: Buffer]> {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const out: Array<[object, Buffer]> = [];
  for (let off = 0; off < buf.length; off += MAX_PAYLOAD_BYTES) {
    const part = buf.subarray(off, off + MAX_PAYLOAD_BYTES);
    out.push([message(part.length), part]);
  }
  return out;
}

/** Writes a message, and its raw payload right after it in the same write batch. */
export function writeMessage(socket: Socket, msg: object, payload?: Buffer): boolean {
  if (socket.destroyed) return true;
  if (!payload) return socket.write(`${JSON.stringify(msg)}\n`);
  socket.cork();
  socket.write(`${JSON.stringify(msg)}\n`);
  const ok = socket.write(payload);
  socket.uncork();
  return ok;
}

/** What a line handler returns when raw bytes follow its message: how many, and who takes them. */
export interface PayloadSink {
  bytes: number;
  take(payload: Buffer): void;
}

export function toErrorObject(err: unknown): RpcErrorObject {
  if (err instanceof BangerError) {
    return { code: err.code, message: err.message, ...(err.hint ? { data: { hint: err.hint } } : {}) };
  }
  return { code: ErrorCode.Internal, message: err instanceof Error ? err.message : String(err) };
}

export function fromErrorObject(obj: RpcErrorObject): BangerError {
  return new BangerError(obj.code as ErrorCode, obj.message, obj.data?.hint);
}

/**
 * Splits a byte stream into lines, refusing any line longer than MAX_LINE_BYTES so a peer
 * cannot make us buffer without bound. When `onLine` returns a PayloadSink, that many raw
 * bytes after the line go to it instead.
 */
export class LineSplitter {
  private pending: Buffer[] = [];
  private pendingLen = 0;
  private payload: { sink: PayloadSink; parts: Buffer[]; left: number } | undefined;
  constructor(
    private readonly onLine: (line: string) => PayloadSink | void,
    private readonly maxBytes = MAX_LINE_BYTES,
  ) {}

  push(chunk: Buffer): void {
    let start = 0;
    for (;;) {
      start = this.takePayload(chunk, start);
      if (this.payload) return; // the chunk ended inside a payload
      const nl = chunk.indexOf(0x0a, start);
      if (nl === -1) break;
      const piece = chunk.subarray(start, nl);
      const line = this.pendingLen > 0 ? Buffer.concat([...this.pending, piece]) : piece;
      this.pending = [];
      this.pendingLen = 0;
      if (line.length > this.maxBytes) throw new Error(`message over ${this.maxBytes} bytes`);
      const sink = line.length > 0 ? this.onLine(line.toString("utf8")) : undefined;
      if (sink) this.payload = { sink, parts: [], left: sink.bytes };
      start = nl + 1;
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      this.pendingLen += rest.length;
      if (this.pendingLen > this.maxBytes) throw new Error(`message over ${this.maxBytes} bytes`);
      this.pending.push(rest);
    }
  }

  /** Feeds a pending payload from `chunk` at `start`; returns where line parsing resumes. */
  private takePayload(chunk: Buffer, start: number): number {
    const p = this.payload;
    if (!p) return start;
    const n = Math.min(p.left, chunk.length - start);
    p.parts.push(chunk.subarray(start, start + n));
    p.left -= n;
    if (p.left === 0) {
      this.payload = undefined;
      p.sink.take(p.parts.length === 1 ? p.parts[0]! : Buffer.concat(p.parts));
    }
    return start + n;
  }
}
