// Wire format: JSON-RPC 2.0, one message per line (NDJSON) over a Unix socket.
//
// Besides requests and responses, three notifications carry the rest of a call's life:
//   server → client  "$/progress" {id, phase, done?, total?, message?}  progress of call `id`
//   server → client  "$/event"    {id, event}                          handler-defined output
//   client → server  "$/cancel"   {id}                                 abort call `id`
//   client → server  "$/input"    {id, input}                          handler-defined input
// A client that disconnects cancels every call it had in flight.
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

export type RpcResponse =
  | { jsonrpc: "2.0"; id: RequestId | null; result: unknown }
  | { jsonrpc: "2.0"; id: RequestId | null; error: RpcErrorObject };

export const PROGRESS = "$/progress";
export const EVENT = "$/event";
export const CANCEL = "$/cancel";
export const INPUT = "$/input";

/** Largest single message either side accepts; bigger ones close the connection. */
export const MAX_LINE_BYTES = 16 * 1024 * 1024;

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
 * cannot make us buffer without bound.
 */
export class LineSplitter {
  private pending: Buffer[] = [];
  private pendingLen = 0;
  constructor(
    private readonly onLine: (line: string) => void,
    private readonly maxBytes = MAX_LINE_BYTES,
  ) {}

  push(chunk: Buffer): void {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      if (nl === -1) break;
      const piece = chunk.subarray(start, nl);
      const line = this.pendingLen > 0 ? Buffer.concat([...this.pending, piece]) : piece;
      this.pending = [];
      this.pendingLen = 0;
      if (line.length > this.maxBytes) throw new Error(`message over ${this.maxBytes} bytes`);
      if (line.length > 0) this.onLine(line.toString("utf8"));
      start = nl + 1;
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      this.pendingLen += rest.length;
      if (this.pendingLen > this.maxBytes) throw new Error(`message over ${this.maxBytes} bytes`);
      this.pending.push(rest);
    }
  }
}
