// A small QMP (QEMU Machine Protocol) client: newline-delimited JSON over a Unix socket.
// Connect, read the greeting, negotiate capabilities, then run commands one at a time,
// each with a timeout. Events go to the `onEvent` listener, if any. QEMU's QMP socket takes
// one client at a time, so callers connect per operation (qmpCommand) rather than holding a
// connection open; the one held open (events) is a second QMP monitor (qemu.ts).
import type { Socket } from "node:net";
import { BangerError, ErrorCode } from "../util/errors.ts";
import { connectUnix } from "./process.ts";

const MAX_LINE = 1024 * 1024;
const DEFAULT_TIMEOUT_MS = 5000;

interface Pending {
  id: number;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
  /** `quit` may close the socket before its reply arrives: that also means success. */
  closeIsSuccess: boolean;
}

/** A QMP event: its name and data, as QEMU sent them (untrusted shapes: check before use). */
export interface QmpEvent {
  event: string;
  data: Record<string, unknown>;
}

export class QmpClient {
  /** Hears every event; `onClose` hears the connection end. */
  onEvent: ((event: QmpEvent) => void) | undefined;
  onClose: (() => void) | undefined;
  private buffer = "";
  private nextId = 1;
  private pending: Pending | undefined;
  private greeting: ((ok: boolean) => void) | undefined;
  private closed = false;

  private constructor(private readonly sock: Socket) {
    sock.setEncoding("utf8");
    sock.on("data", (chunk: string) => this.onData(chunk));
    sock.on("close", () => this.handleClose());
    sock.on("error", () => undefined); // close follows
  }

  static async connect(path: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<QmpClient> {
    const client = new QmpClient(await connectUnix(path));
    try {
      await client.waitGreeting(timeoutMs);
      await client.execute("qmp_capabilities", undefined, timeoutMs);
      return client;
    } catch (err) {
      client.close();
      throw err;
    }
  }

  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<T> {
    if (this.closed) return Promise.reject(qmpError(`QMP connection closed before ${command}`));
    if (this.pending) return Promise.reject(new Error("QmpClient: one command at a time"));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending = undefined;
        reject(new BangerError(ErrorCode.Timeout, `QMP ${command} got no answer in ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending = { id, resolve: resolve as (v: unknown) => void, reject, timer, closeIsSuccess: command === "quit" };
      this.sock.write(`${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id })}\n`);
    });
  }

  close(): void {
    this.closed = true;
    this.sock.destroy();
  }

  private waitGreeting(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new BangerError(ErrorCode.Timeout, "no QMP greeting")), timeoutMs);
      this.greeting = (ok) => {
        clearTimeout(timer);
        this.greeting = undefined;
        if (ok) resolve();
        else reject(qmpError("QMP connection closed before the greeting"));
      };
    });
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    if (this.buffer.length > MAX_LINE) {
      this.fail(qmpError("QMP message too large"));
      return;
    }
    let nl: number;
    while ((nl = this.buffer.indexOf("\n")) >= 0) {
      const line = this.buffer.slice(0, nl).trim();
      this.buffer = this.buffer.slice(nl + 1);
      if (line) this.onMessage(line);
    }
  }

  private onMessage(line: string): void {
    let msg: { QMP?: unknown; event?: unknown; data?: unknown; id?: unknown; return?: unknown; error?: { class?: string; desc?: string } };
    try {
      msg = JSON.parse(line);
    } catch {
      this.fail(qmpError("QMP sent invalid JSON"));
      return;
    }
    if (msg.QMP !== undefined) return this.greeting?.(true);
    if (msg.event !== undefined) {
      const data = typeof msg.data === "object" && msg.data !== null ? (msg.data as Record<string, unknown>) : {};
      if (typeof msg.event === "string") this.onEvent?.({ event: msg.event, data });
      return;
    }
    const p = this.pending;
    if (!p || msg.id !== p.id) return;
    clearTimeout(p.timer);
    this.pending = undefined;
    if (msg.error) p.reject(qmpError(`QMP error ${msg.error.class ?? ""}: ${msg.error.desc ?? "unknown"}`));
    else p.resolve(msg.return);
  }

  private handleClose(): void {
    this.closed = true;
    this.onClose?.();
    this.greeting?.(false);
    const p = this.pending;
    if (!p) return;
    clearTimeout(p.timer);
    this.pending = undefined;
    if (p.closeIsSuccess) p.resolve({});
    else p.reject(qmpError("QMP connection closed before the reply"));
  }

  private fail(err: Error): void {
    const p = this.pending;
    this.pending = undefined;
    if (p) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this.close();
  }
}

/** Connects, runs one command, disconnects. */
export async function qmpCommand<T = unknown>(path: string, command: string, args?: Record<string, unknown>, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<T> {
  const client = await QmpClient.connect(path, timeoutMs);
  try {
    return await client.execute<T>(command, args, timeoutMs);
  } finally {
    client.close();
  }
}

function qmpError(message: string): BangerError {
  return new BangerError(ErrorCode.Failed, message, "see the VM's vmm.log");
}
