// envd's Process service (process.proto, Connect protocol) on banger: every process is one
// in-process `vm.exec` call on the sandbox's VM (process-exec.ts), kept in a per-sandbox
// registry while it runs (process-registry.ts) so it outlives the Start stream:
//   Start       -> vm.exec {argv: cmd+args, env: sandbox envVars + envs, cwd, user, tty, stdin};
//                  the stream: start{pid} (the guest pid), data{stdout|stderr|pty}, keepalive
//                  (Keepalive-Ping-Interval), end{exit_code, exited, status, error}
//   Connect     -> another stream of the same process's output, from now on
//   List        -> the registry (config as asked, pid, tag)
//   SendInput / StreamInput -> vm.exec input `in` (stdin or PTY bytes, within its ack window)
//   CloseStdin  -> `eof`;  Update -> `resize`;  SendSignal -> `signal` SIGTERM/SIGKILL
// The user is the request's Basic Authorization name (the SDK's `user`), else the VM's
// landing user. `/bin/bash` falls back to `/bin/sh` on images without bash.
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Process, ProcessInput, ProcessSelector, StartRequest, ProcessEventSchema } from "../gen/process_pb.ts";
import { Signal } from "../gen/process_pb.ts";
import type { EnvdDeps, EnvdSandbox } from "./context.ts";
import { launch } from "./process-exec.ts";
import { type Output, type ProcessEntry, ProcessRegistry, type ProcessSpec, type Subscriber } from "./process-registry.ts";
import { userFromHeaders } from "./filesystem-shared.ts";
import { connectError, keepaliveMs } from "./process-wire.ts";

/** Longest command line (cmd + args), environment, cwd and tag a Start may carry (the registry keeps them while it runs). */
const MAX_START_BYTES = 1024 * 1024;
/** Largest input one SendInput / StreamInput message may carry. */
const MAX_INPUT_BYTES = 4 * 1024 * 1024;
const DEFAULT_PTY = { rows: 24, cols: 80 };

/** A Start or Connect answer (the two are the same message). */
type EventInit = { event: MessageInitShape<typeof ProcessEventSchema> };

export function processService(deps: EnvdDeps): ServiceImpl<typeof Process> {
  const registry = new ProcessRegistry();
  const sandboxOf = (ctx: HandlerContext): Promise<EnvdSandbox> => deps.sandboxFor(ctx.requestHeader);
  const find = async (selector: ProcessSelector | undefined, ctx: HandlerContext): Promise<ProcessEntry> => registry.find((await sandboxOf(ctx)).id, selector?.selector);

  return {
    async list(_req, ctx) {
      const sandbox = await sandboxOf(ctx);
      return { processes: registry.list(sandbox.id).map((p) => p.info) };
    },

    async *start(req, ctx) {
      const sandbox = await sandboxOf(ctx);
      const spec = specOf(req);
      const size = req.pty?.size;
      const { entry, stream } = await launch(deps, registry, {
        sandbox,
        spec,
        user: userFromHeaders(ctx.requestHeader),
        pty: spec.pty ? { rows: size?.rows || DEFAULT_PTY.rows, cols: size?.cols || DEFAULT_PTY.cols } : undefined,
        timeoutMs: ctx.timeoutMs(),
      });
      yield* follow(entry, stream, ctx);
    },

    async *connect(req, ctx) {
      const entry = await find(req.process, ctx);
      yield* follow(entry, entry.attach(), ctx);
    },

    async update(req, ctx) {
      const entry = await find(req.process, ctx);
      const size = req.pty?.size;
      if (!size?.rows || !size.cols) throw new ConnectError("update needs pty.size with rows and cols", Code.InvalidArgument);
      entry.resize(size.rows, size.cols);
      return {};
    },

    async sendInput(req, ctx) {
      const entry = await find(req.process, ctx);
      await write(entry, req.input, ctx.signal);
      return {};
    },

    async streamInput(requests, ctx) {
      let entry: ProcessEntry | undefined;
      for await (const req of requests) {
        const ev = req.event;
        if (ev.case === "start") entry = await find(ev.value.process, ctx);
        else if (ev.case === "data") {
          if (!entry) throw new ConnectError("send a start event (the process) before data", Code.InvalidArgument);
          await write(entry, ev.value.input, ctx.signal);
        }
      }
      return {};
    },

    async sendSignal(req, ctx) {
      const entry = await find(req.process, ctx);
      if (req.signal !== Signal.SIGKILL && req.signal !== Signal.SIGTERM) throw new ConnectError("signal must be SIGTERM or SIGKILL", Code.InvalidArgument);
      entry.signal(req.signal === Signal.SIGKILL ? "SIGKILL" : "SIGTERM");
      return {};
    },

    async closeStdin(req, ctx) {
      const entry = await find(req.process, ctx);
      entry.closeStdin();
      return {};
    },
  };
}

/** The process a Start asks for, checked. */
function specOf(req: StartRequest): ProcessSpec {
  const config = req.process;
  if (!config?.cmd) throw new ConnectError("process.cmd is required", Code.InvalidArgument);
  const size = [config.cmd, ...config.args, ...Object.entries(config.envs).flat(), config.cwd ?? "", req.tag ?? ""].reduce((n, s) => n + Buffer.byteLength(s), 0);
  if (size > MAX_START_BYTES) throw new ConnectError(`command, environment, cwd and tag are over ${MAX_START_BYTES} bytes`, Code.InvalidArgument);
  if ([config.cmd, ...config.args].some((s) => s.includes("\0"))) throw new ConnectError("command arguments cannot contain NUL", Code.InvalidArgument);
  const pty = req.pty !== undefined;
  return {
    config: { cmd: config.cmd, args: [...config.args], envs: { ...config.envs }, ...(config.cwd ? { cwd: config.cwd } : {}) },
    tag: req.tag,
    pty,
    // envd's default when the client does not say: stdin open (the SDK sends false unless asked).
    stdin: req.stdin ?? true,
  };
}

async function write(entry: ProcessEntry, input: ProcessInput | undefined, signal: AbortSignal): Promise<void> {
  const data = input?.input.value;
  if (!data) throw new ConnectError("input (stdin or pty bytes) is required", Code.InvalidArgument);
  if (data.length > MAX_INPUT_BYTES) throw new ConnectError(`input over ${MAX_INPUT_BYTES} bytes in one message: split it`, Code.InvalidArgument);
  if (input.input.case === "pty" && !entry.spec.pty) throw new ConnectError(`process ${entry.pid} has no PTY: send stdin`, Code.FailedPrecondition);
  if (data.length > 0) await entry.write(data, signal);
}

/** The start event, then the process's output as ProcessEvents until its end or the client leaves. */
async function* follow(entry: ProcessEntry, stream: Subscriber, ctx: HandlerContext): AsyncGenerator<EventInit> {
  // A client gone before the first event was pulled must not leave a queue nobody drains
  // (it would hold the process's output back once full).
  const gone = () => entry.detach(stream);
  if (ctx.signal.aborted) gone();
  ctx.signal.addEventListener("abort", gone, { once: true });
  try {
    yield { event: { event: { case: "start", value: { pid: entry.pid } } } };
    for await (const out of stream.drain(ctx.signal, keepaliveMs(ctx.requestHeader))) yield eventOf(out);
  } catch (err) {
    throw connectError(err);
  } finally {
    ctx.signal.removeEventListener("abort", gone);
    entry.detach(stream);
  }
}

function eventOf(out: Output): EventInit {
  switch (out.t) {
    case "data":
      return { event: { event: { case: "data", value: { output: { case: out.stream, value: out.data } } } } };
    case "end":
      return { event: { event: { case: "end", value: out.end } } };
    case "keepalive":
      return { event: { event: { case: "keepalive", value: {} } } };
  }
}
