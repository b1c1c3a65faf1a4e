// Running a command in a VM from the terminal: the local stdin, stdout, stderr, window
// size and Ctrl-C / SIGTERM / SIGHUP are wired to a `vm.exec` call (signals whether or not
// stdin is forwarded; see interrupts.ts for the second-one-force-stops rule). Returns the
// exit status to leave with (the command's own, or 128+N when a signal ended it).
import { constants } from "node:os";
import type { Client, ExecRequest, ExitStatus } from "../api/index.ts";
import { withClient } from "./daemon-client.ts";
import { cancelledForReader, readerGone } from "./output.ts";
import { InterruptPolicy, onInterrupts, signalStatus, type InterruptSignal } from "./interrupts.ts";
import { Uploader, streamEvents } from "./streams.ts";

export interface AttachOptions {
  tty: boolean;
  /** Forward local stdin (otherwise the command sees EOF at once). */
  stdin: boolean;
  /** Told of every interrupt banger gets while the command runs (vm run keeps an interrupted VM). */
  onInterrupt?: (sig: InterruptSignal, action: "forward" | "force") => void;
}

/**
 * The status when the reader of the command's output went away (`vm exec vm -- cat big | head`):
 * the call is cancelled, which ends the command in the guest, and banger exits 128+SIGPIPE as
 * the command itself would have in a local pipeline. Not 0: the command did not finish, and a
 * script (`set -o pipefail`) must not take its cut-short output for a success.
 */
export const READER_GONE_STATUS = 128 + constants.signals.SIGPIPE;

export function exitCodeOf(status: ExitStatus): number {
  if ("exitCode" in status) return status.exitCode;
  return 128 + (status.signalNumber || (constants.signals as Record<string, number>)[status.signal] || 0);
}

/** vm.exec's params but stdin and tty, which come from `opts`. */
export type AttachParams = Omit<ExecRequest, "stdin" | "tty"> & { name: string };

export function attachExec(method: "vm.exec", params: AttachParams, opts: AttachOptions): Promise<number> {
  return withClient((client) => attachWith(client, method, params, opts));
}

/** The same as attachExec on an existing connection (vm run makes several calls on one). */
export async function attachWith(client: Client, method: "vm.exec", params: AttachParams, opts: AttachOptions): Promise<number> {
  const stdin = process.stdin;
  const raw = opts.tty && stdin.isTTY === true;
  const size = () => ({ rows: process.stdout.rows || 24, cols: process.stdout.columns || 80 });
  let uploader: Uploader | undefined;
  // Local stdin starts flowing once the command runs (see streams.ts for the window).
  const startStdin = () => {
    if (!uploader) return;
    if (raw) stdin.setRawMode(true);
    uploader.start();
  };
  // Aborted by a second interrupt: stops waiting at once, and the daemon ends the command.
  const forced = new AbortController();
  let forcedBy: InterruptSignal | undefined;
  const call = client.start(
    method,
    { ...params, stdin: opts.stdin, ...(opts.tty ? { tty: size() } : {}) },
    {
      onEvent: (e) => handler(e),
      signal: AbortSignal.any([readerGone, forced.signal]),
    },
  );
  if (opts.stdin) uploader = new Uploader(call, stdin);
  const handler = streamEvents({ 1: process.stdout, 2: process.stderr }, uploader, startStdin);
  const onResize = () => uploader?.send({ t: "resize", ...size() }) ?? call.input({ t: "resize", ...size() });
  // Ctrl-C (SIGINT without a raw TTY), SIGTERM, SIGHUP go to the remote command; a second
  // one within a second gives up on it.
  const policy = new InterruptPolicy();
  const stopInterrupts = onInterrupts((sig) => {
    const action = policy.next(sig, Date.now());
    opts.onInterrupt?.(sig, action);
    if (action === "forward") return call.input({ t: "signal", name: sig });
    forcedBy ??= sig;
    forced.abort();
  });
  if (opts.tty) process.stdout.on("resize", onResize);
  try {
    return exitCodeOf(await call.result);
  } catch (err) {
    if (cancelledForReader(err)) return READER_GONE_STATUS;
    if (forcedBy) return signalStatus(forcedBy);
    throw err;
  } finally {
    stopInterrupts();
    process.stdout.off("resize", onResize);
    uploader?.stop();
    if (raw) stdin.setRawMode(false);
  }
}
