// Starting an envd process: one in-process vm.exec call (rpc's callLocal on the daemon's
// table), its events turned into the process's output, its input fed from the registry entry.
// The process lives until it exits or the Start request's own timeout (Connect-Timeout-Ms,
// the SDK's `timeoutMs`) kills it, as envd does; the Start stream going away does not end it.
import type { ExitStatus, StreamEvent, StreamInput } from "../../api/index.ts";
import { streamEvent } from "../../api/index.ts";
import { InputQueue, type Handler, callLocal } from "../../rpc/index.ts";
import { BangerError, ErrorCode, errorLine } from "../../util/errors.ts";
import type { EnvdDeps, EnvdSandbox } from "./context.ts";
import { type EndInfo, ProcessEntry, type ProcessRegistry, type ProcessSpec, type Subscriber } from "./process-registry.ts";
import { connectError, signalStatus } from "./process-wire.ts";

export interface LaunchRequest {
  sandbox: EnvdSandbox;
  spec: ProcessSpec;
  /** Undefined: the VM's landing user. */
  user?: string;
  pty?: { rows: number; cols: number };
  /** Kill the process after this long (0 or undefined: never). */
  timeoutMs?: number;
}

/** How long a VM found without /bin/bash gets /bin/sh straight away. */
const BASHLESS_TTL_MS = 30_000;
/** How long a process killed at its timeout gets before its vm.exec call is dropped. */
const KILL_GRACE_MS = 5000;

type Attempt = { started: true; done: Promise<unknown> } | { started: false; err: unknown };

/**
 * Starts the process and registers it once the guest gave its pid; returns the entry and
 * the Start stream's subscriber (attached before the command runs, so it misses nothing).
 */
export async function launch(deps: EnvdDeps, registry: ProcessRegistry, req: LaunchRequest): Promise<{ entry: ProcessEntry; stream: Subscriber }> {
  const { sandbox, spec } = req;
  registry.reserve(sandbox.id);
  const entry = new ProcessEntry(sandbox.id, spec);
  const stream = entry.attach();
  // The SDK runs everything as /bin/bash; images without bash (busybox, alpine) get /bin/sh,
  // which takes the same -l/-c/-i flags (ash, dash). A VM found without bash goes straight to
  // sh for a while (one guest round trip less per command), then bash is tried again.
  const viaSh = ["/bin/sh", ...spec.config.args];
  const argv = [spec.config.cmd, ...spec.config.args];
  const knownBashless = argv[0] === "/bin/bash" && (registry.bashless.get(sandbox.vm) ?? 0) > Date.now();
  let run = await attempt(deps, entry, req, knownBashless ? viaSh : argv);
  if (!run.started && bashMissing(run.err, argv) && !knownBashless) {
    for (const [vm, until] of registry.bashless) if (until <= Date.now()) registry.bashless.delete(vm);
    registry.bashless.set(sandbox.vm, Date.now() + BASHLESS_TTL_MS);
    run = await attempt(deps, entry, req, viaSh);
  }
  if (!run.started) {
    registry.failed(sandbox.id);
    throw connectError(run.err);
  }
  registry.started(entry);
  const stopTimer = killAfter(entry, req.timeoutMs);
  void run.done
    .then(
      (status) => entry.end(endOf(status as ExitStatus)),
      (err: unknown) => entry.end({ exitCode: -1, exited: false, status: "error", error: errorLine(err) }),
    )
    .finally(() => {
      stopTimer();
      registry.forget(entry);
    });
  return { entry, stream };
}

function bashMissing(err: unknown, argv: string[]): boolean {
  return argv[0] === "/bin/bash" && err instanceof BangerError && err.code === ErrorCode.CommandNotFound;
}

/** One vm.exec call: resolves once the guest started the command (or it failed to). */
function attempt(deps: EnvdDeps, entry: ProcessEntry, req: LaunchRequest, argv: string[]): Promise<Attempt> {
  const { sandbox, spec } = req;
  entry.input = new InputQueue<StreamInput>();
  const params = {
    name: sandbox.vm,
    argv,
    // The sandbox's envVars under the request's own.
    env: { ...sandbox.envVars, ...spec.config.envs },
    cwd: spec.config.cwd || undefined,
    user: req.user,
    tty: req.pty,
    stdin: spec.stdin || spec.pty,
  };
  return new Promise((resolve) => {
    let started = false;
    // The call's promise, once callLocal has returned it: a "started" emitted before then (were
    // a handler ever to emit synchronously) resolves when it exists.
    let done: Promise<unknown> | undefined;
    const emit = async (raw: StreamEvent) => {
      const ev = streamEvent(raw);
      if (ev?.t === "started") {
        started = true;
        entry.pid = ev.pid ?? 0;
        if (done) resolve({ started: true, done });
      } else if (ev?.t === "ack") {
        entry.onAck(ev.n);
      } else if (ev?.t === "out") {
        await entry.broadcast({ t: "data", stream: spec.pty ? "pty" : ev.fd === 1 ? "stdout" : "stderr", data: ev.data });
      }
    };
    const table = deps.methods as Partial<Record<string, Handler>>;
    done = callLocal<StreamEvent, StreamInput>(table, "vm.exec", params, { signal: entry.controller.signal, input: entry.input, emit });
    if (started) resolve({ started: true, done });
    done.then(
      () => {
        if (!started) resolve({ started: false, err: new BangerError(ErrorCode.Failed, "the command ended before the guest reported its pid") });
      },
      (err: unknown) => {
        if (!started) resolve({ started: false, err });
      },
    );
  });
}

/** envd's end event for an exit status (Go's os.ProcessState wording in `status`). */
export function endOf(status: ExitStatus): EndInfo {
  if ("exitCode" in status) return { exitCode: status.exitCode, exited: true, status: `exit status ${status.exitCode}` };
  return { exitCode: -1, exited: false, status: signalStatus(status.signal) };
}

/** SIGKILLs the process after `ms` (envd's per-process deadline); returns the timer's stop. */
function killAfter(entry: ProcessEntry, ms: number | undefined): () => void {
  if (!ms || ms <= 0) return () => undefined;
  let grace: NodeJS.Timeout | undefined;
  const timer = setTimeout(() => {
    try {
      entry.signal("SIGKILL");
    } catch {
      // the exec stopped taking input: dropping the call below ends it
    }
    grace = setTimeout(() => entry.controller.abort(), KILL_GRACE_MS);
    grace.unref();
  }, ms);
  timer.unref();
  return () => {
    clearTimeout(timer);
    clearTimeout(grace);
  };
}
