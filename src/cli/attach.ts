// Running a command in a VM from the terminal: the local stdin, stdout, stderr, window
// size and Ctrl-C are wired to a `vm.exec` call. Returns the exit status to leave with
// (the command's own, or 128+N when a signal ended it).
import { constants } from "node:os";
import { STDIN_WINDOW_BYTES, type ExecEvent, type ExecInput } from "../daemon/exec.ts";
import type { ExitStatus } from "../guest/index.ts";
import { withClient } from "./daemon-client.ts";

export interface AttachOptions {
  tty: boolean;
  /** Forward local stdin (otherwise the command sees EOF at once). */
  stdin: boolean;
}

export function exitCodeOf(status: ExitStatus): number {
  if ("exitCode" in status) return status.exitCode;
  return 128 + (status.signalNumber || (constants.signals as Record<string, number>)[status.signal] || 0);
}

export async function attachExec(method: string, params: Record<string, unknown>, opts: AttachOptions): Promise<number> {
  return withClient(async (client) => {
    const stdin = process.stdin;
    const tty = opts.tty && stdin.isTTY === true;
    const size = () => ({ rows: process.stdout.rows || 24, cols: process.stdout.columns || 80 });
    // Local stdin starts flowing once the command runs, and pauses while a window of
    // bytes is unacknowledged, so a large pipe is streamed, not buffered in the daemon.
    let unacked = 0;
    const startStdin = () => {
      if (!opts.stdin) return;
      if (tty) stdin.setRawMode(true);
      stdin.on("data", onData);
      stdin.on("end", onEnd);
      stdin.resume();
    };
    const call = client.start<ExitStatus>(
      method,
      { ...params, stdin: opts.stdin, ...(opts.tty ? { tty: size() } : {}) },
      {
        onEvent: (e) => {
          const ev = e as ExecEvent;
          if (ev.t === "out") (ev.fd === 2 ? process.stderr : process.stdout).write(Buffer.from(ev.b64, "base64"));
          else if (ev.t === "started") startStdin();
          else if (ev.t === "ack") {
            unacked -= ev.n;
            if (stdin.isPaused() && unacked < STDIN_WINDOW_BYTES / 4) stdin.resume();
          }
        },
      },
    );
    const send = (input: ExecInput) => call.input(input);
    const onData = (b: Buffer) => {
      unacked += b.length;
      send({ t: "in", b64: b.toString("base64") });
      if (unacked > STDIN_WINDOW_BYTES) stdin.pause();
    };
    const onEnd = () => send({ t: "eof" });
    const onResize = () => send({ t: "resize", ...size() });
    let interrupts = 0;
    // Without a TTY, Ctrl-C interrupts the remote command; a second one gives up on it.
    const onSigint = () => (++interrupts === 1 ? send({ t: "signal", name: "SIGINT" }) : call.cancel());
    const onSigterm = () => call.cancel();
    if (opts.tty) process.stdout.on("resize", onResize);
    process.on("SIGINT", onSigint);
    process.on("SIGTERM", onSigterm);
    try {
      return exitCodeOf(await call.result);
    } finally {
      process.off("SIGINT", onSigint);
      process.off("SIGTERM", onSigterm);
      process.stdout.off("resize", onResize);
      stdin.off("data", onData);
      stdin.off("end", onEnd);
      if (tty) stdin.setRawMode(false);
      stdin.pause();
    }
  });
}
