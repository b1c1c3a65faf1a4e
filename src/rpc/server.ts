// The daemon side of the socket: reads requests, runs handlers concurrently, writes answers.
import { chmod, chown, rm } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { BangerError, ErrorCode, cancelled } from "../util/errors.ts";
import type { Progress } from "../util/progress.ts";
import { CANCEL, EVENT, INPUT, LineSplitter, type PayloadSink, payloadBytes, withPayloads, writeMessage, PROGRESS, toErrorObject, type RequestId, type RpcErrorObject } from "./protocol.ts";

export interface CallContext {
  /** Aborted when the client cancels, disconnects, or the daemon shuts down. */
  signal: AbortSignal;
  progress: Progress;
  /** Sends handler-defined output to the caller; resolves once the socket can take more. */
  emit(event: unknown): Promise<void>;
  /** Receives what the caller sends with `$/input` for this call. */
  onInput(listener: (input: unknown) => void): void;
}

export type Handler = (params: unknown, ctx: CallContext) => unknown;
export type MethodTable = Readonly<Record<string, Handler>>;

/**
 * A method table checked against a method map (client.ts MethodMap): each handler must return
 * its method's result. Params stay unknown: they come off the wire and the handler checks them.
 */
export type TypedMethodTable<M, K extends keyof M = keyof M> = {
  [P in K]: (params: unknown, ctx: CallContext) => ResultOf<M[P]> | Promise<ResultOf<M[P]>>;
};
type ResultOf<E> = E extends { result: infer R } ? R : never;

export interface ServerLogger {
  info(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

interface InFlight {
  controller: AbortController;
  inputListeners: ((input: unknown) => void)[];
  /** Input that arrived before the handler listened; bounded, handed over on onInput. */
  early: unknown[];
}

/** Input messages kept for a handler that has not called onInput yet. */
const MAX_EARLY_INPUTS = 64;

export class RpcServer {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly shutdown = new AbortController();
  private readonly running = new Set<Promise<void>>();
  private active = 0;

  /** Calls being handled right now, on every connection (a handler asking counts itself). */
  get activeCalls(): number {
    return this.active;
  }

  constructor(
    private readonly methods: MethodTable,
    private readonly log?: ServerLogger,
  ) {}

  /** Binds the socket with the given mode (and group, when given); removes a stale file first. */
  async listen(path: string, opts: { mode?: number; gid?: number } = {}): Promise<void> {
    await rm(path, { force: true });
    const server = createServer((socket) => this.serveConnection(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(path, () => {
        server.off("error", reject);
        resolve();
      });
    });
    await chmod(path, opts.mode ?? 0o600);
    if (opts.gid !== undefined) await chown(path, process.getuid?.() ?? 0, opts.gid);
  }

  /**
   * Stops accepting, aborts every call in flight, waits (bounded) for their handlers to
   * finish cleaning up, and closes every connection.
   */
  async close(graceMs = 10_000): Promise<void> {
    const server = this.server;
    const closed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
    this.shutdown.abort();
    await Promise.race([Promise.allSettled([...this.running]), new Promise((r) => setTimeout(r, graceMs).unref())]);
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  private serveConnection(socket: Socket): void {
    this.sockets.add(socket);
    const calls = new Map<RequestId, InFlight>();
    const send = (msg: object, payload?: Buffer): boolean => writeMessage(socket, msg, payload);
    const drained = (): Promise<void> =>
      socket.writableNeedDrain && !socket.destroyed
        ? new Promise((resolve) => {
            const done = () => {
              socket.off("drain", done);
              socket.off("close", done);
              resolve();
            };
            socket.on("drain", done);
            socket.on("close", done);
          })
        : Promise.resolve();

    const splitter = new LineSplitter((line) => this.handleLine(line, calls, send, drained));
    socket.on("data", (chunk: Buffer) => {
      try {
        splitter.push(chunk);
      } catch (err) {
        send({ jsonrpc: "2.0", id: null, error: { code: ErrorCode.InvalidRequest, message: (err as Error).message } });
        socket.end();
      }
    });
    socket.on("error", () => undefined);
    socket.on("close", () => {
      this.sockets.delete(socket);
      for (const call of calls.values()) call.controller.abort(cancelled("client disconnected"));
      calls.clear();
    });
  }

  private handleLine(line: string, calls: Map<RequestId, InFlight>, send: (msg: object, payload?: Buffer) => boolean, drained: () => Promise<void>): PayloadSink | void {
    let msg: unknown;
    try {
      msg = JSON.parse(line);
    } catch {
      send({ jsonrpc: "2.0", id: null, error: { code: ErrorCode.ParseError, message: "parse error: not JSON" } });
      return;
    }
    if (typeof msg !== "object" || msg === null || (msg as { jsonrpc?: unknown }).jsonrpc !== "2.0") {
      send({ jsonrpc: "2.0", id: null, error: { code: ErrorCode.InvalidRequest, message: "invalid request: not JSON-RPC 2.0" } });
      return;
    }
    const { id, method, params } = msg as { id?: unknown; method?: unknown; params?: unknown };
    if (typeof method !== "string") {
      send({ jsonrpc: "2.0", id: null, error: { code: ErrorCode.InvalidRequest, message: "invalid request: method must be a string" } });
      return;
    }
    if (id === undefined) return this.handleNotification(method, params, calls);
    if (typeof id !== "number" && typeof id !== "string") {
      send({ jsonrpc: "2.0", id: null, error: { code: ErrorCode.InvalidRequest, message: "invalid request: bad id" } });
      return;
    }
    if (calls.has(id)) {
      send({ jsonrpc: "2.0", id, error: { code: ErrorCode.InvalidRequest, message: `request id ${id} is already in flight` } });
      return;
    }
    const running = this.runCall(id, method, params, calls, send, drained);
    this.running.add(running);
    void running.finally(() => this.running.delete(running));
  }

  private handleNotification(method: string, params: unknown, calls: Map<RequestId, InFlight>): PayloadSink | void {
    const target = (params as { id?: RequestId } | undefined)?.id;
    const call = target === undefined ? undefined : calls.get(target);
    if (method === CANCEL) call?.controller.abort(cancelled("cancelled by client"));
    else if (method === INPUT) {
      const input = (params as { input?: unknown }).input;
      const bytes = payloadBytes(params); // throws on a bad count: the stream can't be followed
      const deliver = (value: unknown) => (call ? this.deliverInput(call, value) : undefined); // a finished call's input is dropped
      if (bytes === 0) return deliver(input);
      return { bytes, take: (data) => deliver({ ...(input as object), data }) };
    }
  }

  private deliverInput(call: InFlight, input: unknown): void {
    if (call.inputListeners.length > 0) for (const l of call.inputListeners) l(input);
    else if (call.early.length < MAX_EARLY_INPUTS) call.early.push(input);
    else call.controller.abort(new BangerError(ErrorCode.InvalidRequest, "too much input before the call was ready"));
  }

  private async runCall(
    id: RequestId,
    method: string,
    params: unknown,
    calls: Map<RequestId, InFlight>,
    send: (msg: object, payload?: Buffer) => boolean,
    drained: () => Promise<void>,
  ): Promise<void> {
    const handler = Object.hasOwn(this.methods, method) ? this.methods[method] : undefined;
    if (!handler) {
      send({ jsonrpc: "2.0", id, error: { code: ErrorCode.MethodNotFound, message: `unknown method ${method}` } });
      return;
    }
    const controller = new AbortController();
    const onShutdown = () => controller.abort(cancelled("daemon shutting down"));
    this.shutdown.signal.addEventListener("abort", onShutdown, { once: true });
    const call: InFlight = { controller, inputListeners: [], early: [] };
    calls.set(id, call);
    this.active++;
    const ctx: CallContext = {
      signal: controller.signal,
      progress: (p) => void send({ jsonrpc: "2.0", method: PROGRESS, params: { id, ...p } }),
      emit: (event) => {
        const data = (event as { data?: unknown } | null)?.data;
        if (data instanceof Uint8Array && data.length > 0) {
          const { data: _, ...rest } = event as { data: Uint8Array };
          for (const [msg, part] of withPayloads(data, (bytes) => ({ jsonrpc: "2.0", method: EVENT, params: { id, event: rest, bytes } }))) send(msg, part);
        } else send({ jsonrpc: "2.0", method: EVENT, params: { id, event } });
        return drained();
      },
      onInput: (listener) => {
        call.inputListeners.push(listener);
        for (const input of call.early.splice(0)) listener(input);
      },
    };
    const started = Date.now();
    try {
      const result = await handler(params, ctx);
      if (controller.signal.aborted) throw cancelled();
      send({ jsonrpc: "2.0", id, result: result ?? null });
    } catch (err) {
      const error: RpcErrorObject = controller.signal.aborted && !(err instanceof BangerError) ? toErrorObject(cancelled()) : toErrorObject(err);
      if (error.code === ErrorCode.Internal) this.log?.error("handler failed", { method, error: String((err as Error)?.stack ?? err) });
      send({ jsonrpc: "2.0", id, error });
    } finally {
      this.active--;
      calls.delete(id);
      this.shutdown.signal.removeEventListener("abort", onShutdown);
      this.log?.info("call", { method, ms: Date.now() - started });
    }
  }
}
