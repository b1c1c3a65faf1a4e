// The host's agent client: channel multiplexing, flow control, typed operations.
// Every byte from the guest is untrusted: frames are bounded by the decoder, buffering by
// the credit windows, waiting by timeouts, and every reply is validated before use. Any
// frame a guest may send, in any state, is either dropped (a late frame for a channel the
// host is done with) or ends this connection with one protocol-violation error: nothing a
// guest sends can throw past the connection or grow the host's memory without bound.
//
// The bound, per agent connection (so per VM in the daemon): at most MAX_CHANNELS (64)
// channels open at once; a channel is released as soon as its outcome arrives or the host
// gives up on it, whatever the guest does next; each channel buffers at most two output
// streams of one window (256 KiB) each, because a guest that sends beyond its window is cut
// off. So at most 64 x 2 x 256 KiB = 32 MiB of guest data is held per connection, plus
// one frame (1 MiB) being decoded, which must complete within the reply deadline.
import { Duplex, Readable, type Writable } from "node:stream";
import { constants as osConstants } from "node:os";
import { BangerError, ErrorCode, cancelled } from "../util/errors.ts";
import { BULK_CHUNK, FrameDecoder, FrameType, INITIAL_WINDOW, MAX_PAYLOAD, Stream, encodeFrame, encodeHeader, protocolError, type Frame } from "./frame.ts";
import {
  parseExit,
  parseGuestUser,
  parseHealth,
  parsePorts,
  parseStats,
  parseSessionInfo,
  parseSessionList,
  type AgentHealth,
  type AgentInfo,
  type ExitStatus,
  type GuestStats,
  type GuestUser,
  type ListeningPort,
  type SessionInfo,
} from "./messages.ts";
import { Channel, deferred, type ChannelHost } from "./channel.ts";
import { agentError, closedError, timeoutError } from "./errors.ts";
import { handshake } from "./handshake.ts";

/** Channels open at once on one connection; see the bound above. */
export const MAX_CHANNELS = 64;
/** The most guest data one connection holds: every channel's output streams full, plus a frame being decoded. */
export const MAX_BUFFERED_BYTES = MAX_CHANNELS * 2 * INITIAL_WINDOW + MAX_PAYLOAD;

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
  /** Whom exec would run as for `spec` (name, uid, either with :group); undefined when the agent cannot say (feature "user"). */
  user(spec: string): Promise<GuestUser | undefined>;
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
  /** What this connection holds now: open channels, and guest bytes buffered (at most MAX_BUFFERED_BYTES). */
  usage(): { channels: number; bufferedBytes: number };
}

/** Runs the versioned handshake over a connected byte stream and returns the client. */
export async function connectAgent(stream: Duplex, opts: ConnectOptions = {}): Promise<AgentClient> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const { info, rest } = await handshake(stream, timeoutMs, opts);
  return new Client(stream, info, rest, opts.replyTimeoutMs ?? 30_000);
}

class Client implements AgentClient, ChannelHost {
  private decoder = new FrameDecoder();
  private readonly channels = new Map<number, Channel>();
  private nextId = 1;
  private dead: BangerError | undefined;
  private readonly doneD = deferred<BangerError | undefined>();
  readonly done = this.doneD.promise;
  /** Armed while a frame is half received: a guest that starts a frame must finish it. */
  private frameTimer: NodeJS.Timeout | undefined;

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

  release(id: number): void {
    this.channels.delete(id);
  }

  usage(): { channels: number; bufferedBytes: number } {
    let bytes = this.decoder.buffered;
    for (const ch of this.channels.values()) bytes += ch.buffered;
    return { channels: this.channels.size, bufferedBytes: bytes };
  }

  private onData(chunk: Buffer): void {
    if (this.dead) return;
    try {
      const frames = this.decoder.push(chunk);
      this.watchPartialFrame(frames.length > 0);
      for (const f of frames) this.route(f);
    } catch (err) {
      const e = err instanceof BangerError ? err : protocolError((err as Error).message);
      this.teardown(e);
    }
  }

  /** A frame's bytes must all arrive within the reply deadline of its first byte (no half frame then silence, no endless drip). */
  private watchPartialFrame(completedOne: boolean): void {
    if (this.decoder.buffered === 0 || completedOne) {
      clearTimeout(this.frameTimer);
      this.frameTimer = undefined;
    }
    if (this.decoder.buffered > 0 && !this.frameTimer) {
      const ms = this.replyTimeoutMs;
      this.frameTimer = setTimeout(() => this.teardown(protocolError(`a frame did not arrive whole within ${ms} ms (${this.decoder.buffered} bytes of it came)`)), ms);
      this.frameTimer.unref();
    }
  }

  private route(f: Frame): void {
    if (this.dead) return; // an earlier frame in the same chunk ended the connection
    if (f.channel === 0) {
      if (f.type === FrameType.Error) throw agentError(f.payload, "session");
      throw protocolError(`frame type ${f.type} on channel 0 after the handshake`);
    }
    if (f.channel >= this.nextId) throw protocolError(`frame for channel ${f.channel}, which the host never opened`);
    const ch = this.channels.get(f.channel);
    if (!ch) return; // the host is done with it (outcome in, or abandoned): late frames are dropped
    ch.handle(f);
  }

  private teardown(err: BangerError): void {
    if (this.dead) return;
    this.dead = err;
    clearTimeout(this.frameTimer);
    this.decoder = new FrameDecoder(); // a dead connection holds no guest bytes
    for (const ch of [...this.channels.values()]) ch.finish(err);
    this.stream.destroy();
    this.doneD.resolve(err.code === ErrorCode.Unavailable ? undefined : err);
  }

  close(): void {
    this.teardown(closedError());
  }

  private open(kind: string, params: Record<string, unknown> = {}): Channel {
    if (this.dead) throw this.dead;
    if (this.channels.size >= MAX_CHANNELS) {
      throw new BangerError(
        ErrorCode.Unavailable,
        `the guest agent already has ${MAX_CHANNELS} operations open on this connection`,
        "wait for running commands, copies, forwards or attaches to end, or close some",
      );
    }
    const id = this.nextId++;
    const request = Buffer.from(JSON.stringify({ ...params, kind }));
    if (request.length > MAX_PAYLOAD) {
      throw new BangerError(ErrorCode.InvalidArgument, `${kind} request is ${request.length} bytes; the agent protocol allows ${MAX_PAYLOAD}`, "pass large data through stdin or files instead of argv/env");
    }
    const ch = new Channel(this, id, kind);
    this.channels.set(id, ch);
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

  async user(spec: string): Promise<GuestUser | undefined> {
    if (!this.info.features.includes("user")) return undefined;
    return parseGuestUser(await this.request("user", { user: spec }));
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
