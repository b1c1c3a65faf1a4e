// The CLI side of the socket: one connection, many concurrent calls, each with its own
// progress, events, input and cancellation.
import { connect, type Socket } from "node:net";
import { BangerError, ErrorCode, cancelled } from "../util/errors.ts";
import type { ProgressEvent } from "../util/progress.ts";
import { CANCEL, EVENT, INPUT, LineSplitter, PROGRESS, type PayloadSink, payloadBytes, withPayloads, writeMessage, fromErrorObject, type RequestId, type RpcErrorObject } from "./protocol.ts";

/**
 * What every call in flight fails with when the connection closes under it (the daemon was
 * killed or stopped mid-call): the CLI tells it apart from the call's own failure.
 */
export class ConnectionLostError extends BangerError {
  constructor() {
    super(ErrorCode.Unavailable, "connection to bangerd lost", "see `banger daemon logs`");
  }
}

export interface CallOptions {
  signal?: AbortSignal;
  onProgress?: (p: ProgressEvent) => void;
  onEvent?: (event: unknown) => void;
}

/**
 * A map of method name -> `{ params; result }` a client and a method table are typed against
 * (the caller's contract: banger's is api/). Untyped: any name, unknown params and result.
 */
export type MethodMap<M> = { [K in keyof M]: { params: unknown; result: unknown } };
export type Untyped = Record<string, { params: unknown; result: unknown }>;

/** The params (optional when the method's params may be undefined) and the call's options. */
export type CallArgs<P> = undefined extends P ? [params?: P, opts?: CallOptions] : [params: P, opts?: CallOptions];

export interface Call<T> {
  id: RequestId;
  result: Promise<T>;
  /** Sends `$/input` to the handler of this call; `data` goes as raw bytes after it (the handler sees `input.data`). */
  input(input: unknown, data?: Buffer): void;
  cancel(): void;
}

interface Pending {
  resolve(value: unknown): void;
  reject(err: unknown): void;
  opts: CallOptions;
}

export class RpcClient<M extends MethodMap<M> = Untyped> {
  private nextId = 1;
  private readonly pending = new Map<RequestId, Pending>();
  private closedError: BangerError | undefined;

  private constructor(private readonly socket: Socket) {
    const splitter = new LineSplitter((line) => this.handleLine(line));
    socket.on("data", (chunk: Buffer) => {
      try {
        splitter.push(chunk);
      } catch (err) {
        this.failAll(new BangerError(ErrorCode.Unavailable, `bad answer from bangerd: ${(err as Error).message}`));
        socket.destroy();
      }
    });
    socket.on("error", () => undefined);
    socket.on("close", () => this.failAll(new ConnectionLostError()));
  }

  /** Connects to a daemon socket; rejects with the raw errno error (ENOENT, ECONNREFUSED, ...). */
  static connect<M extends MethodMap<M> = Untyped>(path: string, timeoutMs = 5000): Promise<RpcClient<M>> {
    return new Promise((resolve, reject) => {
      const socket = connect(path);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(Object.assign(new Error(`timed out connecting to ${path}`), { code: "ETIMEDOUT" }));
      }, timeoutMs);
      socket.once("connect", () => {
        clearTimeout(timer);
        socket.off("error", reject);
        resolve(new RpcClient<M>(socket));
      });
      socket.once("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
  }

  call<K extends keyof M & string>(method: K, ...args: CallArgs<M[K]["params"]>): Promise<M[K]["result"]> {
    return this.start(method, ...args).result;
  }

  start<K extends keyof M & string>(method: K, ...[params, opts = {}]: CallArgs<M[K]["params"]>): Call<M[K]["result"]> {
    type T = M[K]["result"];
    const id = this.nextId++;
    const result = new Promise<T>((resolve, reject) => {
      if (this.closedError) return reject(this.closedError);
      if (opts.signal?.aborted) return reject(cancelled());
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, opts });
      this.send({ jsonrpc: "2.0", id, method, ...(params === undefined ? {} : { params }) });
    });
    const cancel = () => this.send({ jsonrpc: "2.0", method: CANCEL, params: { id } });
    // Cancelling tells the daemon and stops waiting at once; the daemon's answer is ignored.
    opts.signal?.addEventListener(
      "abort",
      () => {
        cancel();
        const p = this.pending.get(id);
        this.pending.delete(id);
        p?.reject(cancelled());
      },
      { once: true },
    );
    return {
      id,
      result,
      input: (input, data) => {
        if (!data || data.length === 0) return this.send({ jsonrpc: "2.0", method: INPUT, params: { id, input } });
        for (const [msg, part] of withPayloads(data, (bytes) => ({ jsonrpc: "2.0", method: INPUT, params: { id, input, bytes } }))) this.send(msg, part);
      },
      cancel,
    };
  }

  close(): void {
    this.socket.end();
    this.socket.destroy();
  }

  private send(msg: object, payload?: Buffer): void {
    writeMessage(this.socket, msg, payload);
  }

  private handleLine(line: string): PayloadSink | void {
    let msg: { id?: RequestId | null; method?: string; params?: { id?: RequestId; event?: unknown }; result?: unknown; error?: RpcErrorObject };
    try {
      msg = JSON.parse(line);
    } catch {
      return;
    }
    if (msg.method !== undefined) {
      const target = msg.params?.id;
      const p = target === undefined ? undefined : this.pending.get(target);
      if (msg.method === EVENT) {
        const event = msg.params?.event;
        const bytes = payloadBytes(msg.params); // throws on a bad count: the stream can't be followed
        if (bytes === 0) return void p?.opts.onEvent?.(event);
        return { bytes, take: (data) => p?.opts.onEvent?.({ ...(event as object), data }) }; // taken even for a call no longer waited on
      }
      if (p && msg.method === PROGRESS) {
        const { id: _id, ...event } = msg.params as ProgressEvent & { id: RequestId };
        p.opts.onProgress?.(event);
      }
      return;
    }
    if (msg.id === undefined || msg.id === null) {
      if (msg.error) this.failAll(fromErrorObject(msg.error));
      return;
    }
    const p = this.pending.get(msg.id);
    if (!p) return;
    this.pending.delete(msg.id);
    if (msg.error) p.reject(fromErrorObject(msg.error));
    else p.resolve(msg.result);
  }

  private failAll(err: BangerError): void {
    this.closedError ??= err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }
}
