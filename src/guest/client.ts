// The host's agent client: handshake, channel multiplexing, flow control, typed operations.
// Every byte from the guest is untrusted: frames are bounded by the decoder, buffering by
// the credit windows, waiting by timeouts, and every reply is validated before use.
import { Duplex, Readable, Writable } from "node:stream";
import { constants as osConstants } from "node:os";
import { randomBytes } from "node:crypto";
import { BangerError, ErrorCode, cancelled } from "../util/errors.ts";
import {
  BULK_CHUNK,
  DATA_CHUNK,
  FrameDecoder,
  FrameType,
  HEADER_SIZE,
  INITIAL_WINDOW,
  MAX_PAYLOAD,
  MAGIC_SIZE,
  PROTO_VERSION,
  Stream,
  encodeFrame,
  encodeHeader,
  encodeJSON,
  magic,
  protocolError,
  type Frame,
} from "./frame.ts";
import {
  parseExit,
  parseHealth,
  parseHello,
  parsePorts,
  parseStats,
  parseJSON,
  parseSessionInfo,
  parseSessionList,
  type AgentHealth,
  type AgentInfo,
  type ExitStatus,
  type GuestStats,
  type ListeningPort,
  type SessionInfo,
} from "./messages.ts";

export interface ConnectOptions {
  /** Handshake deadline (the agent may still be booting on a serial port). Default 10 s. */
  timeoutMs?: number;
  /** Deadline for one-shot replies (health, ports, stats, shutdown, opening channels). Default 30 s. */
  replyTimeoutMs?: number;
  signal?: AbortSignal;
  /** Sent in the HELLO, for the guest's logs. */
  client?: string;
  /**
   * The stream is a virtio-serial port (QEMU chardev socket): it outlives connections, so
   * skip bytes an earlier session left behind until the agent's answer to this handshake.
   */
  serial?: boolean;
}

export interface ExecOptions {
  argv: string[];
  env?: Record<string, string>;
  cwd?: string;
  /** "name", "uid", optionally ":group"; default the agent's user (root in a VM). */
  user?: string;
  /** A stream to copy into the command's stdin, or true to write it via the handle. */
  stdin?: Readable | boolean;
  /** Run under a PTY of this size (stdout carries the terminal output, stderr stays empty). */
  tty?: { rows: number; cols: number };
}

export interface ExecHandle {
  readonly pid: number;
  readonly stdout: Readable;
  readonly stderr: Readable;
  /** The command's stdin (a PTY's input with tty); end() closes it. */
  readonly stdin: Writable;
  write(data: string | Buffer): Promise<void>;
  resize(rows: number, cols: number): void;
  signal(sig: NodeJS.Signals | number): void;
  /** Resolves when the command ends: { exitCode } or { signal }. */
  wait(): Promise<ExitStatus>;
  /** Abandons the command (the agent kills it). */
  close(): void;
}

export interface PutOptions {
  /** Owner for every extracted entry; default: the archive's owners (the agent runs as root). */
  uid?: number;
  gid?: number;
  signal?: AbortSignal;
}

export interface SessionStartOptions extends Pick<ExecOptions, "argv" | "env" | "cwd" | "user"> {
  /** Unique in the guest; the name rule of VMs and images. */
  name: string;
  /** Terminal size: default 24x80, so interactive programs work; null runs it on pipes (stdout and stderr merged). */
  tty?: { rows: number; cols: number } | null;
}

/** A host attached to a session: closing it (detach) leaves the session running. */
export interface SessionAttachment {
  readonly pid: number;
  readonly tty: boolean;
  /** The scrollback, then live output; ends when the session's output does. */
  readonly output: Readable;
  /** Input to the session; end() only stops forwarding (the session's input stays open). */
  readonly input: Writable;
  write(data: string | Buffer): Promise<void>;
  resize(rows: number, cols: number): void;
  signal(sig: NodeJS.Signals | number): void;
  /** The session's final state once its output ended; undefined when detached first. */
  wait(): Promise<SessionInfo | undefined>;
  /** Stops following; the session keeps running. */
  detach(): void;
}

/** A session's scrollback (and, following, its live output) as a stream. */
export interface SessionOutput {
  readonly output: Readable;
  /** The session's state when the output ended; undefined when stopped first. */
  readonly done: Promise<SessionInfo | undefined>;
  stop(): void;
}

export interface AgentClient {
  readonly info: AgentInfo;
  /** Resolves once the connection is gone, with the reason if it failed. */
  readonly done: Promise<BangerError | undefined>;
  health(): Promise<AgentHealth>;
  exec(opts: ExecOptions): Promise<ExecHandle>;
  putFiles(destDir: string, tar: Readable, opts?: PutOptions): Promise<{ files: number; bytes: number }>;
  getFiles(path: string): Promise<Readable>;
  ports(): Promise<ListeningPort[]>;
  stats(): Promise<GuestStats>;
  shutdown(): Promise<void>;
  /** A byte pipe to 127.0.0.1:port inside the guest (port forwarding). */
  openTcp(port: number): Promise<Duplex>;
  /** Detached sessions (agent feature "sessions"): they outlive this connection. */
  sessionStart(opts: SessionStartOptions): Promise<{ name: string; pid: number }>;
  sessionList(): Promise<SessionInfo[]>;
  sessionAttach(name: string): Promise<SessionAttachment>;
  sessionLogs(name: string, opts?: { follow?: boolean }): Promise<SessionOutput>;
  /** Writes to the session's input; resolves with the bytes written. */
  sessionSend(name: string, data: string | Buffer): Promise<number>;
  /** Signals a running session (default SIGTERM); removes one that already exited. */
  sessionKill(name: string, signal?: NodeJS.Signals | number): Promise<{ removed: boolean }>;
  /** Forgets an exited session; force kills a running one first. */
  sessionRemove(name: string, opts?: { force?: boolean }): Promise<void>;
  close(): void;
}

const closedError = () =>
  new BangerError(ErrorCode.Unavailable, "guest agent connection closed", "check the VM is running: banger vm ls");

function timeoutError(what: string, ms: number): BangerError {
  return new BangerError(ErrorCode.Timeout, `guest agent did not answer ${what} within ${ms} ms`, "check the VM console log: banger vm logs");
}

/** Runs the versioned handshake over a connected byte stream and returns the client. */
export async function connectAgent(stream: Duplex, opts: ConnectOptions = {}): Promise<AgentClient> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const { info, rest } = await handshake(stream, timeoutMs, opts);
  return new Client(stream, info, rest, opts.replyTimeoutMs ?? 30_000);
}

async function handshake(stream: Duplex, timeoutMs: number, opts: ConnectOptions): Promise<{ info: AgentInfo; rest: Buffer }> {
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
 * come first. On a virtio-serial port, bytes an earlier session left in the pipe come
 * first, so they are skipped (bounded), and a magic not followed by our HELLO is stale too.
 */
class HelloScanner {
  private buf = Buffer.alloc(0);
  private skipped = 0;
  private readonly want = magic(PROTO_VERSION);
  constructor(private readonly nonce: string, private readonly serial: boolean) {}

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

/** An ERROR payload from the agent as a BangerError with a one-line, bounded message. */
function agentError(payload: Buffer, what: string): BangerError {
  let code = "failed";
  let message = "unknown error";
  try {
    const v = parseJSON(payload) as { code?: unknown; message?: unknown };
    if (typeof v.code === "string") code = v.code;
    if (typeof v.message === "string") message = v.message;
  } catch {
    /* keep the defaults: a garbled error is still an error */
  }
  const line = oneLine(message);
  const errCode =
    code === "not_found" ? ErrorCode.NotFound : code === "invalid" ? ErrorCode.InvalidArgument : code === "exists" ? ErrorCode.AlreadyExists : ErrorCode.Failed;
  return new BangerError(errCode, `guest agent: ${what}: ${line}`, code === "protocol" ? "the host and agent disagree on the protocol; rebuild the image's agent" : undefined);
}

function oneLine(s: string): string {
  // eslint-disable-next-line no-control-regex
  const clean = s.replace(/[\x00-\x1f\x7f]+/g, " ").trim();
  return clean.length > 300 ? `${clean.slice(0, 300)}…` : clean;
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve(v: T): void;
  reject(e: unknown): void;
}

function deferred<T>(): Deferred<T> {
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
  /** The agent sent EOF: what is buffered is the whole stream. */
  eof = false;
  constructor(private readonly ch: Channel, private readonly stream: Stream) {
    this.readable = new Readable({ highWaterMark: INITIAL_WINDOW, read: () => this.onRead() });
  }

  push(payload: Buffer): void {
    if (this.readable.destroyed) return;
    if (this.readable.readableEnded) throw protocolError("data after EOF");
    if (this.received + payload.length - this.granted > INITIAL_WINDOW) throw protocolError("agent exceeded its flow-control window");
    this.received += payload.length;
    this.readable.push(payload);
    this.grant();
  }

  end(): void {
    if (this.eof) return;
    this.eof = true;
    if (!this.readable.destroyed) this.readable.push(null);
  }

  /** Fails the stream; an 'error' event only reaches someone listening (else it would crash). */
  abort(err: unknown): void {
    if (this.eof || this.readable.destroyed) return;
    this.readable.destroy(this.readable.listenerCount("error") > 0 ? (err as Error) : undefined);
  }

  /**
   * Node calls read() once and then waits for a push before calling it again. So it returns
   * whatever was consumed at once; when nothing was yet, an empty push re-arms read() for the
   * consumer's next read — else a reader that drains the buffer later and an agent waiting
   * for credit deadlock.
   */
  private onRead(): void {
    if (!this.grant(true) && !this.eof && !this.readable.destroyed) this.readable.push(Buffer.alloc(0));
  }

  /** Returns credit for bytes the consumer took: in batches, at once when drained, or when asked to. */
  private grant(now = false): boolean {
    const consumed = this.received - this.readable.readableLength;
    const delta = consumed - this.granted;
    if (delta <= 0) return false;
    if (now || delta >= INITIAL_WINDOW / 4 || this.readable.readableLength === 0) {
      this.granted += delta;
      const b = Buffer.alloc(4);
      b.writeUInt32BE(delta);
      this.ch.client.send(encodeFrame(this.ch.id, FrameType.Window, b, this.stream));
      return true;
    }
    return false;
  }
}

class Channel {
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

  constructor(readonly client: Client, readonly id: number) {
    this.inbound = [undefined, new Inbound(this, Stream.Out), new Inbound(this, Stream.Err)];
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
      case FrameType.Result:
        this.resultSeen = true;
        this.result.resolve(parseJSON(f.payload));
        this.opened.resolve(undefined);
        return;
      case FrameType.Error:
        this.fail(agentError(f.payload, this.client.kindOf(this.id)));
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
    this.client.forget(this.id);
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
      this.client.sendData(this.id, data.subarray(off, off + n));
      off += n;
    }
  }

  sendEof(): void {
    if (!this.closed) this.client.send(encodeFrame(this.id, FrameType.Eof));
  }

  control(msg: object): void {
    if (!this.closed) this.client.send(encodeJSON(this.id, FrameType.Control, msg));
  }

  /** Host-side close: the agent aborts whatever runs on the channel. */
  close(): void {
    if (this.closed) return;
    this.client.send(encodeFrame(this.id, FrameType.Close));
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

class Client implements AgentClient {
  private readonly decoder = new FrameDecoder();
  private readonly channels = new Map<number, Channel>();
  private readonly kinds = new Map<number, string>();
  private nextId = 1;
  private dead: BangerError | undefined;
  private readonly doneD = deferred<BangerError | undefined>();
  readonly done = this.doneD.promise;

  constructor(
    private readonly stream: Duplex,
    readonly info: AgentInfo,
    rest: Buffer,
    private readonly replyTimeoutMs: number,
  ) {
    stream.on("data", (chunk: Buffer) => this.onData(chunk));
    stream.on("error", (err) => this.teardown(new BangerError(ErrorCode.Unavailable, `guest agent connection failed: ${err.message}`)));
    stream.on("close", () => this.teardown(closedError()));
    stream.on("end", () => this.teardown(closedError()));
    if (rest.length > 0) this.onData(rest);
    stream.resume();
  }

  send(buf: Buffer): void {
    if (!this.dead) this.stream.write(buf);
  }

  /** A DATA frame written as header + payload in one writev, without copying the payload. */
  sendData(id: number, payload: Buffer): void {
    if (this.dead) return;
    this.stream.cork();
    this.stream.write(encodeHeader(id, FrameType.Data, payload.length));
    this.stream.write(payload);
    this.stream.uncork();
  }

  kindOf(id: number): string {
    return this.kinds.get(id) ?? "request";
  }

  forget(id: number): void {
    this.channels.delete(id);
    this.kinds.delete(id);
  }

  private onData(chunk: Buffer): void {
    if (this.dead) return;
    try {
      for (const f of this.decoder.push(chunk)) this.route(f);
    } catch (err) {
      const e = err instanceof BangerError ? err : protocolError((err as Error).message);
      this.teardown(e);
    }
  }

  private route(f: Frame): void {
    if (f.channel === 0) {
      if (f.type === FrameType.Error) throw agentError(f.payload, "session");
      throw protocolError(`frame type ${f.type} on channel 0 after the handshake`);
    }
    if (f.channel >= this.nextId) throw protocolError(`frame for channel ${f.channel}, which the host never opened`);
    const ch = this.channels.get(f.channel);
    if (!ch) return; // closed by us a moment ago; late frames are harmless
    ch.handle(f);
  }

  private teardown(err: BangerError): void {
    if (this.dead) return;
    this.dead = err;
    for (const ch of [...this.channels.values()]) ch.finish(err);
    this.stream.destroy();
    this.doneD.resolve(err.code === ErrorCode.Unavailable ? undefined : err);
  }

  close(): void {
    this.teardown(closedError());
  }

  private open(kind: string, params: Record<string, unknown> = {}): Channel {
    if (this.dead) throw this.dead;
    const id = this.nextId++;
    const request = Buffer.from(JSON.stringify({ ...params, kind }));
    if (request.length > MAX_PAYLOAD) {
      throw new BangerError(ErrorCode.InvalidArgument, `${kind} request is ${request.length} bytes; the agent protocol allows ${MAX_PAYLOAD}`, "pass large data through stdin or files instead of argv/env");
    }
    const ch = new Channel(this, id);
    this.channels.set(id, ch);
    this.kinds.set(id, kind);
    this.send(encodeFrame(id, FrameType.Open, request));
    return ch;
  }

  private withTimeout<T>(p: Promise<T>, what: string, ch: Channel): Promise<T> {
    const ms = this.replyTimeoutMs;
    return new Promise<T>((resolve, reject) => {
      const t = setTimeout(() => {
        ch.close();
        reject(timeoutError(what, ms));
      }, ms);
      p.then(
        (v) => (clearTimeout(t), resolve(v)),
        (e) => (clearTimeout(t), reject(e)),
      );
    });
  }

  /** Opens a one-shot channel and returns its RESULT. */
  private async request(kind: string, params?: Record<string, unknown>): Promise<unknown> {
    const ch = this.open(kind, params);
    return this.withTimeout(ch.result.promise, kind, ch);
  }

  async health(): Promise<AgentHealth> {
    return parseHealth(await this.request("health"));
  }

  async ports(): Promise<ListeningPort[]> {
    return parsePorts(await this.request("ports"));
  }

  async stats(): Promise<GuestStats> {
    return parseStats(await this.request("stats"));
  }

  async shutdown(): Promise<void> {
    await this.request("shutdown");
  }

  async exec(opts: ExecOptions): Promise<ExecHandle> {
    if (!Array.isArray(opts.argv) || opts.argv.length === 0 || opts.argv.some((a) => typeof a !== "string")) {
      throw new BangerError(ErrorCode.InvalidArgument, "exec needs a command (argv)");
    }
    const wantsStdin = opts.stdin !== undefined && opts.stdin !== false;
    const ch = this.open("exec", {
      argv: opts.argv,
      env: opts.env,
      cwd: opts.cwd,
      user: opts.user,
      stdin: wantsStdin || opts.tty !== undefined,
      tty: opts.tty ? checkSize(opts.tty.rows, opts.tty.cols) : undefined,
    });
    const opened = await this.withTimeout(ch.opened.promise, "exec", ch);
    const pid = (opened as { pid?: unknown } | undefined)?.pid;
    if (typeof pid !== "number" || !Number.isInteger(pid)) {
      ch.close();
      throw protocolError("exec reply without a pid");
    }
    return makeExecHandle(ch, pid, opts);
  }

  async putFiles(destDir: string, tar: Readable, opts: PutOptions = {}): Promise<{ files: number; bytes: number }> {
    const ch = this.open("files.put", { path: destDir, uid: opts.uid, gid: opts.gid });
    ch.chunk = BULK_CHUNK;
    const onAbort = () => ch.close();
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      await this.withTimeout(ch.opened.promise, "files.put", ch);
      const sending = pumpInto(ch, tar);
      const res = await Promise.race([ch.result.promise, sending.then(() => ch.result.promise)]);
      if (opts.signal?.aborted) throw cancelled();
      return parseCounts(res);
    } catch (err) {
      tar.destroy();
      ch.close(); // e.g. the local tar stream failed: the agent must stop waiting for it
      if (opts.signal?.aborted) throw cancelled();
      throw err;
    } finally {
      opts.signal?.removeEventListener("abort", onAbort);
    }
  }

  async getFiles(path: string): Promise<Readable> {
    const ch = this.open("files.get", { path });
    await this.withTimeout(ch.opened.promise, "files.get", ch);
    const out = ch.inbound[Stream.Out].readable;
    // A failure after the archive started (file vanished, I/O error) surfaces on the stream.
    ch.result.promise.catch((err) => out.destroy(err as Error));
    out.on("close", () => {
      if (!out.readableEnded) ch.close();
    });
    return out;
  }

  async openTcp(port: number): Promise<Duplex> {
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw new BangerError(ErrorCode.InvalidArgument, `bad guest port ${port}`);
    }
    const ch = this.open("tcp", { port });
    await this.withTimeout(ch.opened.promise, "tcp", ch);
    return Duplex.from({ readable: ch.inbound[Stream.Out].readable, writable: ch.writable() });
  }

  private requireSessions(): void {
    if (!this.info.features.includes("sessions")) {
      throw new BangerError(ErrorCode.Unavailable, `the guest agent (${this.info.agentVersion}) has no sessions`, "recreate the VM from an image with a newer agent");
    }
  }

  async sessionStart(opts: SessionStartOptions): Promise<{ name: string; pid: number }> {
    this.requireSessions();
    if (!Array.isArray(opts.argv) || opts.argv.length === 0 || opts.argv.some((a) => typeof a !== "string")) {
      throw new BangerError(ErrorCode.InvalidArgument, "a session needs a command (argv)");
    }
    const tty = opts.tty === null ? undefined : opts.tty ? checkSize(opts.tty.rows, opts.tty.cols) : { rows: 24, cols: 80 };
    const res = (await this.request("session.start", { name: opts.name, argv: opts.argv, env: opts.env, cwd: opts.cwd, user: opts.user, tty })) as { pid?: unknown };
    if (typeof res?.pid !== "number" || !Number.isInteger(res.pid)) throw protocolError("session.start reply without a pid");
    return { name: opts.name, pid: res.pid };
  }

  async sessionList(): Promise<SessionInfo[]> {
    this.requireSessions();
    return parseSessionList(await this.request("session.list"));
  }

  /** Opens a channel that streams a session's output; resolves once the agent accepted it. */
  private async openSessionStream(kind: "session.attach" | "session.logs", params: Record<string, unknown>): Promise<{ ch: Channel; opened: { pid: number; tty: boolean }; done: Promise<SessionInfo | undefined>; stop: () => void }> {
    this.requireSessions();
    const ch = this.open(kind, params);
    const opened = (await this.withTimeout(ch.opened.promise, kind, ch)) as { pid?: unknown; tty?: unknown } | undefined;
    let stopped = false;
    const stop = () => {
      stopped = true;
      ch.close();
    };
    const done = ch.result.promise.then(parseSessionInfo, (err: unknown) => {
      if (stopped) return undefined;
      throw err;
    });
    done.catch(() => undefined);
    return { ch, opened: { pid: typeof opened?.pid === "number" ? opened.pid : 0, tty: opened?.tty === true }, done, stop };
  }

  async sessionAttach(name: string): Promise<SessionAttachment> {
    const { ch, opened, done, stop } = await this.openSessionStream("session.attach", { name });
    ch.inbound[Stream.Err].end(); // one merged output stream
    const input = ch.writable();
    input.on("error", () => undefined); // input after the end fails quietly; wait() tells how it ended
    return {
      ...opened,
      output: ch.inbound[Stream.Out].readable,
      input,
      write: (data) => ch.sendData(Buffer.isBuffer(data) ? data : Buffer.from(data)),
      resize: (rows, cols) => ch.control({ op: "resize", ...checkSize(rows, cols) }),
      signal: (sig) => ch.control({ op: "signal", signal: signalNumber(sig) }),
      wait: () => done,
      detach: stop,
    };
  }

  async sessionLogs(name: string, opts: { follow?: boolean } = {}): Promise<SessionOutput> {
    const { ch, done, stop } = await this.openSessionStream("session.logs", { name, follow: opts.follow === true });
    ch.inbound[Stream.Err].end();
    return { output: ch.inbound[Stream.Out].readable, done, stop };
  }

  async sessionSend(name: string, data: string | Buffer): Promise<number> {
    this.requireSessions();
    const bytes = Buffer.isBuffer(data) ? data : Buffer.from(data);
    // Each request must fit a frame once base64-encoded.
    for (let off = 0; off < bytes.length || off === 0; off += SEND_CHUNK) {
      await this.request("session.send", { name, data: bytes.subarray(off, off + SEND_CHUNK).toString("base64") });
      if (bytes.length === 0) break;
    }
    return bytes.length;
  }

  async sessionKill(name: string, signal: NodeJS.Signals | number = "SIGTERM"): Promise<{ removed: boolean }> {
    this.requireSessions();
    const res = (await this.request("session.kill", { name, signal: signalNumber(signal) })) as { removed?: unknown };
    return { removed: res?.removed === true };
  }

  async sessionRemove(name: string, opts: { force?: boolean } = {}): Promise<void> {
    this.requireSessions();
    await this.request("session.rm", { name, force: opts.force === true });
  }
}

/** Bytes per session.send request: base64 of it stays well inside a frame. */
const SEND_CHUNK = 512 * 1024;

function checkSize(rows: number, cols: number): { rows: number; cols: number } {
  const ok = (n: number) => Number.isInteger(n) && n >= 1 && n <= 65535;
  if (!ok(rows) || !ok(cols)) throw new BangerError(ErrorCode.InvalidArgument, `bad terminal size ${rows}x${cols}`);
  return { rows, cols };
}

function parseCounts(v: unknown): { files: number; bytes: number } {
  const o = v as { files?: unknown; bytes?: unknown } | undefined;
  return { files: typeof o?.files === "number" ? o.files : 0, bytes: typeof o?.bytes === "number" ? o.bytes : 0 };
}

/**
 * Copies a Readable into the channel's input with credit-based backpressure, then EOF.
 * Chunks already queued in the source go out together (up to the channel's chunk size):
 * a tar of small files arrives as many small pieces, and each DATA frame costs the guest
 * a wake-up. Nothing waits for more input, so interactive bytes are not delayed.
 */
async function pumpInto(ch: Channel, src: Readable): Promise<void> {
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

function signalNumber(sig: NodeJS.Signals | number): number {
  const n = typeof sig === "number" ? sig : (osConstants.signals as Record<string, number>)[sig];
  if (n === undefined || !Number.isInteger(n) || n < 1 || n > 64) throw new BangerError(ErrorCode.InvalidArgument, `unknown signal ${String(sig)}`);
  return n;
}

function makeExecHandle(ch: Channel, pid: number, opts: ExecOptions): ExecHandle {
  const stdin = ch.writable();
  const stdout = ch.inbound[Stream.Out].readable;
  const stderr = ch.inbound[Stream.Err].readable;
  if (opts.tty) ch.inbound[Stream.Err].end(); // a PTY has one output stream
  stdin.on("error", () => undefined); // writes after exit fail quietly; wait() says how it ended
  if (opts.stdin instanceof Readable) {
    const src = opts.stdin;
    void pumpInto(ch, src).catch(() => src.destroy());
  }
  const exit = ch.result.promise.then(parseExit);
  exit.catch(() => undefined); // callers who never wait() must not crash on a dropped connection
  return {
    pid,
    stdout,
    stderr,
    stdin,
    write: (data) => ch.sendData(Buffer.isBuffer(data) ? data : Buffer.from(data)),
    resize: (rows, cols) => ch.control({ op: "resize", ...checkSize(rows, cols) }),
    signal: (sig) => ch.control({ op: "signal", signal: signalNumber(sig) }),
    wait: () => exit,
    close: () => ch.close(),
  };
}
