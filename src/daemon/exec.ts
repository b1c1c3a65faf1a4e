// Running a command in a VM for a CLI caller: the agent's exec streams are bridged onto
// the RPC call. Output goes out as events (base64, with backpressure: the guest is paused
// while the socket to the CLI is full); stdin, resizes and signals come in as input.
import type { Readable } from "node:stream";
import type { CallContext } from "../rpc/index.ts";
import type { ExecHandle, ExitStatus } from "../guest/index.ts";
import { invalidArgument } from "../util/errors.ts";

/** What the CLI sends with `$/input` during an exec. */
export type ExecInput =
  | { t: "in"; b64: string }
  | { t: "eof" }
  | { t: "resize"; rows: number; cols: number }
  | { t: "signal"; name: string };

/**
 * What the daemon emits during an exec. `ack` reports stdin bytes the guest has taken, so
 * the CLI keeps a bounded window in flight instead of pushing a whole pipe into the daemon.
 */
export type ExecEvent = { t: "out"; fd: 1 | 2; b64: string } | { t: "started"; pid: number } | { t: "ack"; n: number };

/** Most stdin bytes the CLI may have sent and not yet seen acknowledged. */
export const STDIN_WINDOW_BYTES = 1024 * 1024;

export interface ExecParams {
  argv: string[];
  env?: Record<string, string>;
  cwd?: string;
  user?: string;
  tty?: { rows: number; cols: number };
  /** False when the caller has no stdin to send (the command gets EOF at once). */
  stdin?: boolean;
}

export function parseExecParams(p: Record<string, unknown>): ExecParams {
  const argv = p.argv;
  if (!Array.isArray(argv) || argv.length === 0 || argv.some((a) => typeof a !== "string")) {
    throw invalidArgument("a command is required", "put it after --, e.g. banger vm exec NAME -- uname -a");
  }
  const env = p.env;
  if (env !== undefined && (typeof env !== "object" || env === null || Object.values(env).some((v) => typeof v !== "string"))) {
    throw invalidArgument("env must map names to strings");
  }
  const tty = p.tty as { rows?: unknown; cols?: unknown } | undefined;
  if (tty !== undefined && (typeof tty.rows !== "number" || typeof tty.cols !== "number")) throw invalidArgument("tty needs rows and cols");
  return {
    argv: argv as string[],
    env: env as Record<string, string> | undefined,
    cwd: typeof p.cwd === "string" ? p.cwd : undefined,
    user: typeof p.user === "string" ? p.user : undefined,
    tty: tty as ExecParams["tty"],
    stdin: p.stdin !== false,
  };
}

async function pump(stream: Readable, fd: 1 | 2, call: CallContext): Promise<void> {
  for await (const chunk of stream) {
    await call.emit({ t: "out", fd, b64: (chunk as Buffer).toString("base64") } satisfies ExecEvent);
  }
}

/** Bridges one exec to the call until the command exits; returns its exit status. */
export async function bridgeExec(handle: ExecHandle, params: ExecParams, call: CallContext): Promise<ExitStatus> {
  const onAbort = () => handle.close();
  call.signal.addEventListener("abort", onAbort, { once: true });
  if (!params.stdin) handle.stdin.end();
  // Writes and EOF keep their order: each waits for the one before it.
  let stdinChain: Promise<unknown> = Promise.resolve();
  call.onInput((raw) => {
    const input = raw as ExecInput;
    switch (input?.t) {
      case "in": {
        const data = Buffer.from(input.b64, "base64");
        stdinChain = stdinChain
          .then(() => handle.write(data))
          .then(() => call.emit({ t: "ack", n: data.length } satisfies ExecEvent))
          .catch(() => undefined);
        break;
      }
      case "eof":
        stdinChain = stdinChain.then(() => handle.stdin.end());
        break;
      case "resize":
        handle.resize(input.rows, input.cols);
        break;
      case "signal":
        handle.signal(input.name as NodeJS.Signals);
        break;
    }
  });
  try {
    void call.emit({ t: "started", pid: handle.pid } satisfies ExecEvent);
    const [status] = await Promise.all([handle.wait(), pump(handle.stdout, 1, call), pump(handle.stderr, 2, call)]);
    return status;
  } finally {
    call.signal.removeEventListener("abort", onAbort);
  }
}
