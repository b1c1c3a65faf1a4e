// Running a command in a VM for a CLI caller: the agent's exec streams are bridged onto
// the RPC call (see streams.ts): output out as events, stdin in with an ack window (when
// the caller forwards it), resizes and signals in as control input (always).
import type { CallContext } from "../rpc/index.ts";
import type { ExecHandle, ExitStatus } from "../guest/index.ts";
import { invalidArgument } from "../util/errors.ts";
import type { ExecRequest, StreamEvent, StreamInput } from "../api/index.ts";
import { controlInput, emitStream, inputStream } from "./streams.ts";

/** What a command runs with: the wire request (api/), checked by parseExecParams. */
export type ExecParams = ExecRequest;

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

/** Bridges one exec to the call until the command exits; returns its exit status. */
export async function bridgeExec(handle: ExecHandle, params: ExecParams, call: CallContext): Promise<ExitStatus> {
  const onAbort = () => handle.close();
  call.signal.addEventListener("abort", onAbort, { once: true });
  try {
    const onControl = (input: StreamInput) => {
      if (input.t === "resize") handle.resize(input.rows, input.cols);
      else if (input.t === "signal") handle.signal(input.name as NodeJS.Signals);
    };
    if (params.stdin) {
      const stdin = inputStream(call, onControl);
      stdin.pipe(handle.stdin);
      stdin.on("error", () => undefined);
    } else {
      // Resizes and signals flow without stdin too: Ctrl-C must reach `vm run -- CMD </dev/null`.
      controlInput(call, onControl);
      handle.stdin.end();
    }
    void call.emit({ t: "started", pid: handle.pid } satisfies StreamEvent);
    const [status] = await Promise.all([handle.wait(), emitStream(handle.stdout, call, 1), emitStream(handle.stderr, call, 2)]);
    return status;
  } finally {
    call.signal.removeEventListener("abort", onAbort);
  }
}
