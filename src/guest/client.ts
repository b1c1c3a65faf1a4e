// The host's agent client: the typed operations of the guest agent protocol (health, user,
// exec with PTY, files as tar, ports, stats, shutdown, tcp, detached sessions, reidentify) on one
// multiplexed connection (mux.ts). Every reply is validated (messages.ts) before use.
import { Duplex, Readable } from "node:stream";
import { constants as osConstants } from "node:os";
import { BangerError, ErrorCode, cancelled } from "../util/errors.ts";
import { BULK_CHUNK, Stream, protocolError } from "./frame.ts";
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
  type GuestStats,
  type GuestUser,
  type ListeningPort,
  type SessionInfo,
} from "./messages.ts";
import { pumpInto, type Channel } from "./channel.ts";
import { handshake } from "./handshake.ts";
import { reidentifyRequest, requireReidentify, type ReidentifyParams } from "./identity.ts";
import { Mux } from "./mux.ts";
import { guestFs, type GuestFs } from "./fs.ts";
import type { AgentClient, ConnectOptions, ExecHandle, ExecOptions, PutOptions, SessionAttachment, SessionOutput, SessionStartOptions } from "./client-types.ts";

/** Runs the versioned handshake over a connected byte stream and returns the client. */
export async function connectAgent(stream: Duplex, opts: ConnectOptions = {}): Promise<AgentClient> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const { info, rest } = await handshake(stream, timeoutMs, opts);
  return new Client(new Mux(stream, rest, opts.replyTimeoutMs ?? 30_000), info);
}

/** The operations, each on its own channel of the connection. */
class Client implements AgentClient {
  readonly done: Promise<BangerError | undefined>;
  readonly fs: GuestFs;

  constructor(
    private readonly mux: Mux,
    readonly info: AgentInfo,
  ) {
    this.done = mux.done;
    this.fs = guestFs(mux, info);
  }

  close(): void {
    this.mux.close();
  }

  usage(): { channels: number; bufferedBytes: number } {
    return this.mux.usage();
  }

  async health(): Promise<AgentHealth> {
    return parseHealth(await this.mux.request("health"));
  }

  async user(spec: string): Promise<GuestUser | undefined> {
    if (!this.info.features.includes("user")) return undefined;
    return parseGuestUser(await this.mux.request("user", { user: spec }));
  }

  async mountDisk(serial: string, path: string): Promise<{ device: string }> {
    if (!this.info.features.includes("disk.mount")) throw protocolError("the guest agent cannot mount disks (no disk.mount feature)");
    const res = (await this.mux.request("disk.mount", { name: serial, path })) as { device?: unknown } | undefined;
    return { device: typeof res?.device === "string" ? res.device.slice(0, 64) : "" };
  }

  async ports(): Promise<ListeningPort[]> {
    return parsePorts(await this.mux.request("ports"));
  }

  async stats(): Promise<GuestStats> {
    return parseStats(await this.mux.request("stats"));
  }

  async shutdown(): Promise<void> {
    await this.mux.request("shutdown");
  }

  async reidentify(p: ReidentifyParams): Promise<void> {
    const params = reidentifyRequest(p); // invalid input fails before the agent's age matters
    requireReidentify(this.info);
    await this.mux.request("reidentify", params);
  }

  async exec(opts: ExecOptions): Promise<ExecHandle> {
    if (!Array.isArray(opts.argv) || opts.argv.length === 0 || opts.argv.some((a) => typeof a !== "string")) {
      throw new BangerError(ErrorCode.InvalidArgument, "exec needs a command (argv)");
    }
    const wantsStdin = opts.stdin !== undefined && opts.stdin !== false;
    const ch = this.mux.open("exec", {
      argv: opts.argv,
      env: opts.env,
      cwd: opts.cwd,
      user: opts.user,
      stdin: wantsStdin || opts.tty !== undefined,
      tty: opts.tty ? checkSize(opts.tty.rows, opts.tty.cols) : undefined,
    });
    const opened = await this.mux.withTimeout(ch.opened.promise, "exec", ch);
    const pid = (opened as { pid?: unknown } | undefined)?.pid;
    if (typeof pid !== "number" || !Number.isInteger(pid)) {
      ch.close();
      throw protocolError("exec reply without a pid");
    }
    return makeExecHandle(ch, pid, opts);
  }

  async putFiles(destDir: string, tar: Readable, opts: PutOptions = {}): Promise<{ files: number; bytes: number }> {
    const ch = this.mux.open("files.put", { path: destDir, uid: opts.uid, gid: opts.gid });
    ch.chunk = BULK_CHUNK;
    const onAbort = () => ch.close();
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      await this.mux.withTimeout(ch.opened.promise, "files.put", ch);
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
    const ch = this.mux.open("files.get", { path });
    await this.mux.withTimeout(ch.opened.promise, "files.get", ch);
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
    const ch = this.mux.open("tcp", { port });
    await this.mux.withTimeout(ch.opened.promise, "tcp", ch);
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
    const res = (await this.mux.request("session.start", { name: opts.name, argv: opts.argv, env: opts.env, cwd: opts.cwd, user: opts.user, tty })) as { pid?: unknown };
    if (typeof res?.pid !== "number" || !Number.isInteger(res.pid)) throw protocolError("session.start reply without a pid");
    return { name: opts.name, pid: res.pid };
  }

  async sessionList(): Promise<SessionInfo[]> {
    this.requireSessions();
    return parseSessionList(await this.mux.request("session.list"));
  }

  /** Opens a channel that streams a session's output; resolves once the agent accepted it. */
  private async openSessionStream(
    kind: "session.attach" | "session.logs",
    params: Record<string, unknown>,
  ): Promise<{ ch: Channel; opened: { pid: number; tty: boolean }; done: Promise<SessionInfo | undefined>; stop: () => void }> {
    this.requireSessions();
    const ch = this.mux.open(kind, params);
    const opened = (await this.mux.withTimeout(ch.opened.promise, kind, ch)) as { pid?: unknown; tty?: unknown } | undefined;
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
      await this.mux.request("session.send", { name, data: bytes.subarray(off, off + SEND_CHUNK).toString("base64") });
      if (bytes.length === 0) break;
    }
    return bytes.length;
  }

  async sessionKill(name: string, signal: NodeJS.Signals | number = "SIGTERM"): Promise<{ removed: boolean }> {
    this.requireSessions();
    const res = (await this.mux.request("session.kill", { name, signal: signalNumber(signal) })) as { removed?: unknown };
    return { removed: res?.removed === true };
  }

  async sessionRemove(name: string, opts: { force?: boolean } = {}): Promise<void> {
    this.requireSessions();
    await this.mux.request("session.rm", { name, force: opts.force === true });
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
