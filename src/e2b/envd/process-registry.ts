// The processes envd's Process service runs, per sandbox: each is one in-process vm.exec call
// that outlives the Start stream that made it (background commands, commands.connect, kill,
// list) and is forgotten once its end event went out. Output fans out to the streams
// attached to it (Start, Connect), each with a bounded queue: a full queue holds back the
// exec's output (vm.exec's own flow control then stops reading from the guest), so a client
// that stops reading never makes the daemon buffer more than OUTPUT_QUEUE_BYTES per stream.
import { Code, ConnectError } from "@connectrpc/connect";
import { INPUT_WINDOW_BYTES, type StreamInput } from "../../api/index.ts";
import { InputQueue } from "../../rpc/index.ts";
import type { ProcessConfig } from "../gen/process_pb.ts";

/** Most processes one sandbox runs at once through envd (a Start past it: ResourceExhausted). */
export const MAX_PROCESSES_PER_SANDBOX = 64;
/** Most streams attached to one process (its Start and any Connects). */
export const MAX_STREAMS_PER_PROCESS = 16;
/** Output queued for one stream before the process's output waits for that client. */
export const OUTPUT_QUEUE_BYTES = 1024 * 1024;

export interface EndInfo {
  exitCode: number;
  exited: boolean;
  status: string;
  error?: string;
}

/** What a stream carries, before it becomes a ProcessEvent. */
export type Output = { t: "data"; stream: "stdout" | "stderr" | "pty"; data: Uint8Array } | { t: "end"; end: EndInfo } | { t: "keepalive" };

export interface ProcessSpec {
  /** As the client asked (List answers with it). */
  config: { cmd: string; args: string[]; envs: Record<string, string>; cwd?: string };
  tag?: string;
  pty: boolean;
  stdin: boolean;
}

/** One stream's queue: pushes wait while it holds OUTPUT_QUEUE_BYTES; closing it drops the rest. */
export class Subscriber {
  private readonly items: Output[] = [];
  private bytes = 0;
  private closed = false;
  private wake: (() => void) | undefined;
  private readonly room: (() => void)[] = [];

  /** Resolves once this queue has room again (at once when it has, or is closed). */
  push(out: Output): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.items.push(out);
    this.bytes += out.t === "data" ? out.data.length : 0;
    this.wake?.();
    if (this.bytes < OUTPUT_QUEUE_BYTES) return Promise.resolve();
    return new Promise((resolve) => this.room.push(resolve));
  }

  close(): void {
    this.closed = true;
    this.items.length = 0;
    this.bytes = 0;
    this.release();
    this.wake?.();
  }

  /**
   * The queued output until the end event (included) or the stream's signal, with a
   * keepalive after every `keepaliveMs` without output.
   */
  async *drain(signal: AbortSignal, keepaliveMs: number | undefined): AsyncGenerator<Output> {
    const onAbort = () => this.wake?.();
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      for (;;) {
        const out = this.items.shift();
        if (out) {
          if (out.t === "data") this.bytes -= out.data.length;
          if (this.bytes < OUTPUT_QUEUE_BYTES) this.release();
          yield out;
          if (out.t === "end") return;
          continue;
        }
        if (this.closed || signal.aborted) return;
        if (await this.nothingFor(keepaliveMs)) yield { t: "keepalive" };
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
      this.close();
    }
  }

  /** Waits for output (false) or `ms` without any (true). */
  private nothingFor(ms: number | undefined): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = ms === undefined ? undefined : setTimeout(() => done(true), ms);
      const done = (idle: boolean) => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve(idle);
      };
      this.wake = () => done(false);
    });
  }

  private release(): void {
    for (const resolve of this.room.splice(0)) resolve();
  }
}

/** One running process: its streams, its input (to vm.exec) and the stdin window. */
export class ProcessEntry {
  pid = 0;
  /** Input for the current vm.exec call (a fresh one per attempt: see process-exec.ts). */
  input = new InputQueue<StreamInput>();
  /** Aborts the vm.exec call (the agent closes the command's channel). */
  readonly controller = new AbortController();
  private readonly streams = new Set<Subscriber>();
  private stdinClosed = false;
  private unacked = 0;
  private readonly acked: (() => void)[] = [];
  private ended = false;

  constructor(
    readonly sandboxId: string,
    readonly spec: ProcessSpec,
  ) {}

  get info(): { pid: number; tag?: string; config: ProcessConfig | Omit<ProcessConfig, "$typeName"> } {
    return { pid: this.pid, tag: this.spec.tag, config: { ...this.spec.config } };
  }

  /** A new stream of this process's output from now on. */
  attach(): Subscriber {
    if (this.ended) throw new ConnectError(`process ${this.pid} has ended`, Code.NotFound);
    if (this.streams.size >= MAX_STREAMS_PER_PROCESS) throw new ConnectError(`process ${this.pid} already has ${MAX_STREAMS_PER_PROCESS} streams attached`, Code.ResourceExhausted);
    const sub = new Subscriber();
    this.streams.add(sub);
    return sub;
  }

  detach(sub: Subscriber): void {
    this.streams.delete(sub);
    sub.close();
  }

  /** Sends output to every stream; resolves when each has room again (the exec's backpressure). */
  async broadcast(out: Output): Promise<void> {
    await Promise.all([...this.streams].map((s) => s.push(out)));
  }

  /** Bytes for the command's stdin or PTY; waits while a full window is unacknowledged. */
  async write(data: Uint8Array, signal?: AbortSignal): Promise<void> {
    if (this.ended) throw new ConnectError(`process ${this.pid} has ended`, Code.NotFound);
    if (!this.spec.stdin && !this.spec.pty) throw new ConnectError(`process ${this.pid} was started without stdin`, Code.FailedPrecondition);
    if (this.stdinClosed) throw new ConnectError(`stdin of process ${this.pid} is closed`, Code.FailedPrecondition);
    while (this.unacked >= INPUT_WINDOW_BYTES && !this.ended) {
      if (signal?.aborted) throw new ConnectError("cancelled", Code.Canceled);
      await new Promise<void>((resolve) => this.acked.push(resolve));
    }
    this.unacked += data.length;
    this.send({ t: "in", data: Buffer.from(data.buffer, data.byteOffset, data.length) });
  }

  /** vm.exec took `n` input bytes. */
  onAck(n: number): void {
    this.unacked = Math.max(0, this.unacked - n);
    for (const resolve of this.acked.splice(0)) resolve();
  }

  closeStdin(): void {
    if (this.spec.pty) throw new ConnectError("a PTY has no stdin to close: send Ctrl-D (0x04) as input instead", Code.FailedPrecondition);
    if (this.stdinClosed) return;
    this.stdinClosed = true;
    this.send({ t: "eof" });
  }

  resize(rows: number, cols: number): void {
    if (!this.spec.pty) throw new ConnectError(`process ${this.pid} has no PTY`, Code.FailedPrecondition);
    this.send({ t: "resize", rows, cols });
  }

  signal(name: "SIGTERM" | "SIGKILL"): void {
    this.send({ t: "signal", name });
  }

  /**
   * The last event: queued after the rest of each stream's output (not waited for: it is one
   * small event), then the streams end on their own once their clients have read it.
   */
  end(info: EndInfo): void {
    this.ended = true;
    for (const s of this.streams) void s.push({ t: "end", end: info });
    this.streams.clear();
    this.onAck(Number.MAX_SAFE_INTEGER);
  }

  private send(input: StreamInput): void {
    if (!this.input.push(input)) throw new ConnectError(`process ${this.pid} is not taking input`, Code.Unavailable);
  }
}

/** The running processes of every sandbox (one per Process service). */
export class ProcessRegistry {
  private readonly bySandbox = new Map<string, Map<number, ProcessEntry>>();
  /** VMs found without /bin/bash, until when (process-exec.ts runs /bin/sh there meanwhile). */
  readonly bashless = new Map<string, number>();
  /** Starts under way per sandbox (not yet given a pid): they count toward the cap. */
  private readonly starting = new Map<string, number>();

  /** Claims a slot for a new process; release it with `started` or `failed`. */
  reserve(sandboxId: string): void {
    const running = this.bySandbox.get(sandboxId)?.size ?? 0;
    const pending = this.starting.get(sandboxId) ?? 0;
    if (running + pending >= MAX_PROCESSES_PER_SANDBOX) {
      throw new ConnectError(`sandbox ${sandboxId} already runs ${MAX_PROCESSES_PER_SANDBOX} processes: wait for some to end or kill them`, Code.ResourceExhausted);
    }
    this.starting.set(sandboxId, pending + 1);
  }

  /** The reserved slot becomes `entry` (its pid is known now). */
  started(entry: ProcessEntry): void {
    this.unreserve(entry.sandboxId);
    let procs = this.bySandbox.get(entry.sandboxId);
    if (!procs) this.bySandbox.set(entry.sandboxId, (procs = new Map()));
    procs.set(entry.pid, entry);
  }

  failed(sandboxId: string): void {
    this.unreserve(sandboxId);
  }

  forget(entry: ProcessEntry): void {
    const procs = this.bySandbox.get(entry.sandboxId);
    if (procs?.get(entry.pid) !== entry) return;
    procs.delete(entry.pid);
    if (procs.size === 0) this.bySandbox.delete(entry.sandboxId);
  }

  list(sandboxId: string): ProcessEntry[] {
    return [...(this.bySandbox.get(sandboxId)?.values() ?? [])];
  }

  /** The process a selector names; NotFound when there is none (the SDK's kill then answers false). */
  find(sandboxId: string, selector: { case: "pid"; value: number } | { case: "tag"; value: string } | { case: undefined; value?: undefined } | undefined): ProcessEntry {
    if (!selector?.case) throw new ConnectError("a process selector (pid or tag) is required", Code.InvalidArgument);
    const procs = this.list(sandboxId);
    const found = selector.case === "pid" ? procs.find((p) => p.pid === selector.value) : procs.find((p) => p.spec.tag === selector.value);
    if (!found) throw new ConnectError(`process with ${selector.case} ${String(selector.value)} not found`, Code.NotFound);
    return found;
  }

  private unreserve(sandboxId: string): void {
    const n = (this.starting.get(sandboxId) ?? 1) - 1;
    if (n <= 0) this.starting.delete(sandboxId);
    else this.starting.set(sandboxId, n);
  }
}
