// A small QMP (QEMU Machine Protocol) client: newline-delimited JSON over a Unix socket.
// Connect, negotiate capabilities, then run commands, each with a timeout. Commands are
// pipelined: written at once and answered in order by id (QEMU reads its input in order, so
// capabilities and a first command can go before the greeting is read: one round trip per
// call, not three). Events go to the `onEvent` listener, if any. QEMU's QMP socket takes
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
  /** Started once QEMU has greeted: each command's timeout counts from then, not from a wait for the monitor. */
  timer?: NodeJS.Timeout;
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
  private readonly pending = new Map<number, Pending>();
  private greeting: ((ok: boolean) => void) | undefined;
  private greeted = false;
  /** Commands written before the greeting, their timers not started yet. */
  private unarmed: (() => void)[] = [];
  private closed = false;

  private constructor(private readonly sock: Socket) {
    sock.setEncoding("utf8");
    sock.on("data", (chunk: string) => this.onData(chunk));
    sock.on("close", () => this.handleClose());
    sock.on("error", () => undefined); // close follows
  }

  /** A connection not negotiated yet (qmpCommand pipelines its command behind the negotiation). */
  static async open(path: string): Promise<QmpClient> {
    return new QmpClient(await connectUnix(path));
  }

  static async connect(path: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<QmpClient> {
    const client = await QmpClient.open(path);
    try {
      await client.negotiate(timeoutMs);
      return client;
    } catch (err) {
      client.close();
      throw err;
    }
  }

  /** The greeting and capabilities negotiation, the latter sent without waiting for the former. */
  async negotiate(timeoutMs: number): Promise<void> {
    const greeted = this.waitGreeting(timeoutMs);
    const negotiated = this.execute("qmp_capabilities", undefined, timeoutMs);
    negotiated.catch(() => undefined); // a closed connection fails the greeting first
    await greeted;
    await negotiated;
  }

  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<T> {
    if (this.closed) return Promise.reject(qmpError(`QMP connection closed before ${command}`));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const pending: Pending = { id, resolve: resolve as (v: unknown) => void, reject, closeIsSuccess: command === "quit" };
      const arm = () => {
        pending.timer = setTimeout(() => {
          this.pending.delete(id);
          reject(new BangerError(ErrorCode.Timeout, `QMP ${command} got no answer in ${timeoutMs} ms`));
        }, timeoutMs);
      };
      this.pending.set(id, pending);
      if (this.greeted) arm();
      else this.unarmed.push(arm);
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
    if (msg.QMP !== undefined) {
      this.greeted = true;
      for (const arm of this.unarmed.splice(0)) arm();
      return this.greeting?.(true);
    }
    if (msg.event !== undefined) {
      const data = typeof msg.data === "object" && msg.data !== null ? (msg.data as Record<string, unknown>) : {};
      if (typeof msg.event === "string") this.onEvent?.({ event: msg.event, data });
      return;
    }
    const p = typeof msg.id === "number" ? this.pending.get(msg.id) : undefined;
    if (!p) return;
    clearTimeout(p.timer);
    this.pending.delete(p.id);
    if (msg.error) p.reject(qmpError(`QMP error ${msg.error.class ?? ""}: ${msg.error.desc ?? "unknown"}`));
    else p.resolve(msg.return);
  }

  private handleClose(): void {
    this.closed = true;
    this.onClose?.();
    this.greeting?.(false);
    for (const p of this.takeAll()) {
      if (p.closeIsSuccess) p.resolve({});
      else p.reject(qmpError("QMP connection closed before the reply"));
    }
  }

  private fail(err: Error): void {
    for (const p of this.takeAll()) p.reject(err);
    this.close();
  }

  /** Every command still waiting, forgotten (their timers stopped) for the caller to settle. */
  private takeAll(): Pending[] {
    const all = [...this.pending.values()];
    this.pending.clear();
    this.unarmed = [];
    for (const p of all) clearTimeout(p.timer);
    return all;
  }
}

/** Connects, runs one command, disconnects: the command goes with the capabilities negotiation. */
export async function qmpCommand<T = unknown>(path: string, command: string, args?: Record<string, unknown>, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<T> {
  const client = await QmpClient.open(path);
  try {
    const negotiated = client.negotiate(timeoutMs);
    const result = client.execute<T>(command, args, timeoutMs);
    result.catch(() => undefined); // awaited below, once the negotiation is known to have worked
    await negotiated;
    return await result;
  } finally {
    client.close();
  }
}

function qmpError(message: string): BangerError {
  return new BangerError(ErrorCode.Failed, message, "see the VM's vmm.log");
}
