// Running a command in a VM from a program: `vm.exec` over the socket, its output either
// gathered (exec: bounded, as strings) or handed over as Node streams (spawn), stdin from a
// string, a Buffer or a stream, a timeout that ends the command in the guest.
import { constants } from "node:os";
import { PassThrough, Readable, type Writable } from "node:stream";
import { type Client, type ExitStatus, streamEvent } from "../api/index.ts";
import { BangerError, ErrorCode } from "../util/errors.ts";
import { Uploader } from "./uploader.ts";

/** A command: an argv (run as is) or a string (run with `sh -c`). */
export type Command = string | readonly string[];

export interface SpawnOptions {
  /** Working directory in the guest (default: the workspace `vm run` copied, else the image's, else the user's home). */
  cwd?: string;
  env?: Record<string, string>;
  /** Guest user to run as (default: the image's user, else `dev` when the image has one, else root). */
  user?: string;
  /** The command's stdin: bytes, or a stream; omitted, it reads EOF at once (spawn: `stdin: "pipe"` keeps it open). */
  stdin?: string | Uint8Array | Readable | AsyncIterable<Uint8Array> | "pipe";
  /** Cancels the command (it is ended in the guest). */
  signal?: AbortSignal;
}

export interface ExecOptions extends Omit<SpawnOptions, "stdin"> {
  stdin?: string | Uint8Array | Readable | AsyncIterable<Uint8Array>;
  /** Ends the command after this long: the call rejects with ExecTimeoutError (it carries the output so far). */
  timeoutMs?: number;
  /** Most bytes kept of each of stdout and stderr (default 16 MiB); the rest is counted in `truncated`. */
  maxOutputBytes?: number;
}

/** How a command ended: its exit code (128+N when signal N ended it) and the signal's name then. */
export interface ExitResult {
  exitCode: number;
  signal?: string;
}

export interface ExecResult extends ExitResult {
  stdout: string;
  stderr: string;
  /** Bytes of each stream beyond maxOutputBytes, not kept (0 when all is there). */
  truncated: { stdout: number; stderr: number };
}

/** exec's timeout: the command was ended in the guest; `stdout`/`stderr` hold what it wrote before. */
export class ExecTimeoutError extends BangerError {
  constructor(
    timeoutMs: number,
    readonly stdout: string,
    readonly stderr: string,
  ) {
    super(ErrorCode.Timeout, `command timed out after ${timeoutMs / 1000}s and was ended`, "raise timeoutMs, or run it in the background (nohup CMD >log 2>&1 &)");
    this.name = "ExecTimeoutError";
  }
}

/** A running command: its output as streams, its stdin when piped, and how it ends. */
export interface VmProcess {
  readonly stdout: Readable;
  readonly stderr: Readable;
  /** With `stdin: "pipe"`: write to it, end() sends EOF. Otherwise already ended. */
  readonly stdin: Writable;
  /** Resolves when the command ends; rejects when it could not run or the call failed. */
  readonly exited: Promise<ExitResult>;
  /** Sends a signal (default SIGTERM) to the command in the guest. */
  kill(signal?: NodeJS.Signals): void;
}

export function argvOf(command: Command): string[] {
  if (typeof command === "string") return ["sh", "-c", command];
  if (command.length === 0) throw new BangerError(ErrorCode.InvalidArgument, "a command is required", 'give an argv (["ls", "-l"]) or a shell string ("ls -l | wc -l")');
  return [...command];
}

export function exitResult(status: ExitStatus): ExitResult {
  if ("exitCode" in status) return { exitCode: status.exitCode };
  const n = status.signalNumber || (constants.signals as Record<string, number>)[status.signal] || 0;
  return { exitCode: 128 + n, signal: status.signal };
}

function inputStream(stdin: Exclude<SpawnOptions["stdin"], undefined>): Readable {
  if (stdin === "pipe") return new PassThrough();
  if (typeof stdin === "string") return Readable.from([Buffer.from(stdin)]);
  if (stdin instanceof Uint8Array) return Readable.from([Buffer.from(stdin)]);
  return stdin instanceof Readable ? stdin : Readable.from(stdin);
}

/** Starts `command` in VM `name`; `onOut` gets its output (spawn and exec differ only there). */
function start(client: Client, name: string, command: Command, opts: SpawnOptions, onOut: (fd: 1 | 2, data: Buffer) => void) {
  const argv = argvOf(command);
  const input = opts.stdin === undefined ? undefined : inputStream(opts.stdin);
  let uploader: Uploader | undefined;
  const call = client.start(
    "vm.exec",
    { name, argv, env: opts.env, cwd: opts.cwd, user: opts.user, stdin: input !== undefined },
    {
      signal: opts.signal,
      onEvent: (e) => {
        const ev = streamEvent(e);
        if (ev?.t === "out") onOut(ev.fd, ev.data);
        else if (ev?.t === "ack") uploader?.ack(ev.n);
        else if (ev?.t === "started") uploader?.start(); // stdin flows once the command runs
      },
    },
  );
  if (input) uploader = new Uploader(call, input);
  const exited = call.result.then(exitResult).finally(() => uploader?.stop());
  return { call, input, exited };
}

/** Runs a command to its end and gathers its output (bounded by maxOutputBytes). */
export async function execIn(client: Client, name: string, command: Command, opts: ExecOptions = {}): Promise<ExecResult> {
  const max = opts.maxOutputBytes ?? 16 * 1024 * 1024;
  const kept: Record<1 | 2, Buffer[]> = { 1: [], 2: [] };
  const size = { 1: 0, 2: 0 };
  const dropped = { 1: 0, 2: 0 };
  const timeout = opts.timeoutMs === undefined ? undefined : new AbortController();
  const timer = timeout && setTimeout(() => timeout.abort(), opts.timeoutMs);
  const signal = timeout ? (opts.signal ? AbortSignal.any([opts.signal, timeout.signal]) : timeout.signal) : opts.signal;
  const text = (fd: 1 | 2) => Buffer.concat(kept[fd]).toString("utf8");
  try {
    const { exited } = start(client, name, command, { ...opts, signal }, (fd, data) => {
      const room = Math.max(0, max - size[fd]);
      if (room > 0) kept[fd].push(data.length <= room ? data : data.subarray(0, room));
      size[fd] += Math.min(room, data.length);
      dropped[fd] += Math.max(0, data.length - room);
    });
    const status = await exited;
    return { ...status, stdout: text(1), stderr: text(2), truncated: { stdout: dropped[1], stderr: dropped[2] } };
  } catch (err) {
    if (timeout?.signal.aborted && !opts.signal?.aborted) throw new ExecTimeoutError(opts.timeoutMs!, text(1), text(2));
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

/** Starts a command and hands over its streams at once. */
export function spawnIn(client: Client, name: string, command: Command, opts: SpawnOptions = {}): VmProcess {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const { call, input, exited } = start(client, name, command, opts, (fd, data) => (fd === 1 ? stdout : stderr).write(data));
  const ended = exited.then(
    (status) => {
      stdout.end();
      stderr.end();
      return status;
    },
    (err: unknown) => {
      stdout.destroy();
      stderr.destroy();
      throw err;
    },
  );
  ended.catch(() => undefined); // the caller may never look: no unhandled rejection
  const stdin = input instanceof PassThrough && opts.stdin === "pipe" ? input : new PassThrough().end();
  return {
    stdout,
    stderr,
    stdin,
    exited: ended,
    kill: (sig = "SIGTERM") => call.input({ t: "signal", name: sig }),
  };
}
