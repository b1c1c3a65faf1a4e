// The shapes of the agent client's API (what callers hold): options, handles and the
// AgentClient interface that client.ts implements.
import type { Duplex, Readable, Writable } from "node:stream";
import type { BangerError } from "../util/errors.ts";
import type { AgentHealth, AgentInfo, ExitStatus, GuestStats, GuestUser, ListeningPort, SessionInfo } from "./messages.ts";
import type { ReidentifyParams } from "./identity.ts";
import type { GuestFs } from "./fs.ts";

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
   * skip bytes an earlier connection left behind until the agent's answer to this handshake.
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
  /** One path's filesystem operations as a guest user (features "fs", "fs.watch"). */
  readonly fs: GuestFs;
  /**
   * Mounts the ext4 on the disk whose virtio-blk serial is `serial` at `path` (feature
   * "disk.mount"); resolves with the guest's device name (untrusted text).
   */
  mountDisk(serial: string, path: string): Promise<{ device: string }>;
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
  /**
   * Makes a restored or forked guest a new machine (also fine on a fresh boot): hostname, kernel
   * RNG reseeded from `seed`, clock, and with `net` a new MAC and address. Fails with one line
   * when the agent is too old to do it (feature "reidentify").
   */
  reidentify(p: ReidentifyParams): Promise<void>;
  close(): void;
  /** What this connection holds now: open channels, and guest bytes buffered (at most MAX_BUFFERED_BYTES). */
  usage(): { channels: number; bufferedBytes: number };
}
