// VMM processes that outlive the daemon: spawned detached in their own process group with
// stdio going to files, recorded in a pid file, and recognised again later by their command
// line (which names the runtime directory), so a recycled pid is never mistaken for a VM.
import { spawn } from "node:child_process";
import { accessSync, closeSync, constants, openSync, readFileSync } from "node:fs";
import { mkdir, open, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { connect, type Socket } from "node:net";
import { basename, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { BangerError, ErrorCode, cancelled, invalidArgument } from "../util/errors.ts";
import { installHint, which } from "../util/exec.ts";
import { isAlive } from "../util/pids.ts";
import { retry } from "../util/retry.ts";
import type { VmmName } from "./types.ts";

export { isAlive };

export const PID_FILE = "vmm.pid";
export const STATE_FILE = "vmm.json";
export const VMM_LOG = "vmm.log";
export const CONSOLE_LOG = "console.log";

/** sun_path is 108 bytes including the NUL. */
const MAX_SOCKET_PATH = 107;

/** What adopt() needs to know about a VMM started earlier. */
export interface VmmState {
  driver: VmmName;
  pid: number;
  /** Control socket (QMP or Firecracker API). */
  controlSocket: string;
  /** qemu: the QMP monitor kept open for events (absent for VMMs started before it existed). */
  eventsSocket?: string;
  /** Agent socket: qemu virtio-serial chardev, or the Firecracker vsock UDS. */
  agentSocket?: string;
  /** qemu with vhost-vsock: the guest CID to dial. */
  vsockCid?: number;
  /** Every socket file to remove after the VMM exits. */
  sockets: string[];
  /** qemu: the guest RAM file it shares (VmSpec.memoryFile), removed after the VMM exits. */
  memoryFile?: string;
  /** qemu restored from a snapshot: the snapshot's RAM file, mapped copy-on-write (never removed here). */
  privateMemory?: string;
  /** Text the VMM's command line must contain to be ours (default: the runtime dir). */
  cmdlineMark?: string;
}

export function checkSocketPath(path: string): string {
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH) {
    throw invalidArgument(`socket path too long (${Buffer.byteLength(path)} bytes, max ${MAX_SOCKET_PATH}): ${path}`, "use a shorter BANGER_HOME");
  }
  return path;
}

export async function prepareRuntimeDir(runtimeDir: string, staleFiles: string[]): Promise<void> {
  await mkdir(runtimeDir, { recursive: true, mode: 0o700 });
  // A stale socket file makes bind() fail (Firecracker does not unlink before binding).
  for (const f of staleFiles) await rm(f, { force: true });
}

/**
 * Starts argv detached (own process group, survives our exit) with stdout/stderr appended
 * to files. Returns its pid; the caller writes the state file.
 */
export function spawnDetached(argv: readonly string[], stdoutPath: string, stderrPath: string, cwd: string): number {
  const [cmd, ...args] = argv;
  if (!cmd || !isExecutable(cmd)) throw new BangerError(ErrorCode.MissingDependency, `${cmd} not found`, installHint(cmd ?? ""));
  const out = openSync(stdoutPath, "a", 0o600);
  const err = stdoutPath === stderrPath ? out : openSync(stderrPath, "a", 0o600);
  try {
    const child = spawn(cmd, args, { detached: true, stdio: ["ignore", out, err], cwd });
    // Reported asynchronously; the start sequence notices the dead pid instead.
    child.on("error", () => undefined);
    if (child.pid === undefined) throw new BangerError(ErrorCode.Failed, `could not start ${cmd}`);
    const pid = child.pid;
    // Our own child: its exit status is known (an adopted VMM's is not: see childExit).
    childExits.set(pid, new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal }))));
    child.unref();
    return pid;
  } finally {
    closeSync(out);
    if (err !== out) closeSync(err);
  }
}

/** A path is checked as given; a bare name is looked up on PATH. */
function isExecutable(cmd: string): boolean {
  if (!cmd.includes("/")) return which(cmd) !== undefined;
  try {
    accessSync(cmd, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export interface LaunchRequest {
  runtimeDir: string;
  argv: readonly string[];
  stdoutPath: string;
  stderrPath: string;
  /** What to record for adopt(), minus the pid. */
  state: Omit<VmmState, "pid">;
  /** Brings the VMM to "running" (wait for its socket, configure it); a failure kills it and cleans up. */
  ready: (pid: number) => Promise<void>;
}

/** Spawns a VMM detached, records its state, and runs `ready`; on any failure nothing stays running. */
export async function launchVmm(req: LaunchRequest): Promise<VmmState> {
  const pid = spawnDetached(req.argv, req.stdoutPath, req.stderrPath, req.runtimeDir);
  const state: VmmState = { ...req.state, pid };
  try {
    await writeState(req.runtimeDir, state);
    await req.ready(pid);
    return state;
  } catch (err) {
    if (isAlive(pid)) await killAndWait(pid).catch(() => undefined);
    await removeRuntimeLeftovers(req.runtimeDir, ownedFiles(state));
    throw err;
  }
}

export async function writeState(runtimeDir: string, state: VmmState): Promise<void> {
  await writeFile(join(runtimeDir, PID_FILE), `${state.pid}\n`, { mode: 0o600 });
  await writeFile(join(runtimeDir, STATE_FILE), `${JSON.stringify(state)}\n`, { mode: 0o600 });
}

/** The recorded state when its pid is alive and really is the VMM for this runtime dir. */
export async function readLiveState(runtimeDir: string, driver: VmmName): Promise<VmmState | undefined> {
  let state: VmmState;
  try {
    state = JSON.parse(await readFile(join(runtimeDir, STATE_FILE), "utf8")) as VmmState;
  } catch {
    return undefined;
  }
  if (state.driver !== driver || !Number.isInteger(state.pid) || state.pid <= 1) return undefined;
  if (!isAlive(state.pid) || !(await commandLineMentions(state.pid, state.cmdlineMark ?? runtimeDir))) return undefined;
  return state;
}

/** Socket names the drivers use, for cleaning a runtime dir whose state file is gone. */
const KNOWN_SOCKETS = ["qmp.sock", "qmp-events.sock", "agent.sock", "fc.sock", "vsock.sock", "mig-out.sock", "mig-in.sock"];

/**
 * After a VM died on its own (or while no daemon ran): removes its sockets, RAM file, pid and
 * state files, keeping the logs. Refuses while the recorded VMM is still alive.
 */
export async function cleanupDeadVm(runtimeDir: string): Promise<void> {
  let state: Partial<VmmState> = {};
  try {
    state = JSON.parse(await readFile(join(runtimeDir, STATE_FILE), "utf8")) as Partial<VmmState>;
  } catch {
    // No state: fall back to the well-known names.
  }
  if (state.driver && (await readLiveState(runtimeDir, state.driver))) {
    throw new BangerError(ErrorCode.InUse, `the VMM of ${runtimeDir} is still running (pid ${state.pid})`, "stop or kill the VM first");
  }
  const sockets = Array.isArray(state.sockets) ? state.sockets.filter((s) => typeof s === "string") : KNOWN_SOCKETS.map((n) => join(runtimeDir, n));
  await removeRuntimeLeftovers(runtimeDir, [...sockets, ...(typeof state.memoryFile === "string" ? [state.memoryFile] : [])]);
}

/** The files a VMM leaves that are removed once it has exited: its sockets and its RAM file. */
export function ownedFiles(state: Pick<VmmState, "sockets" | "memoryFile">): string[] {
  return [...state.sockets, ...(state.memoryFile ? [state.memoryFile] : [])];
}

/** Pids (not this process) whose command line mentions `text`. */
export async function processesMentioning(text: string): Promise<number[]> {
  const pids: number[] = [];
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    const cmdline = await readFile(`/proc/${name}/cmdline`, "utf8").catch(() => "");
    if (cmdline.includes(text)) pids.push(Number(name));
  }
  return pids;
}

const VMM_PROGRAM = /^(qemu-system-|firecracker)/;

/**
 * SIGKILLs the VMMs of a runtime dir that no state file records: a daemon killed between
 * spawning a VMM and writing vmm.json leaves one that adopt() cannot find. A VMM's command
 * line names its runtime dir (QEMU's sockets, Firecracker's --api-sock), so it is found by
 * that, and by its program name, so nothing else that mentions the dir is touched.
 */
export async function killUnrecordedVmms(runtimeDir: string): Promise<number[]> {
  const found: number[] = [];
  for (const pid of await processesMentioning(`${runtimeDir}/`)) {
    const argv0 = (await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")).split("\0")[0] ?? "";
    if (!VMM_PROGRAM.test(basename(argv0)) || !isAlive(pid)) continue;
    found.push(pid);
    await killAndWait(pid);
  }
  return found;
}

/** Removes what a dead VMM leaves behind: sockets (and RAM file), pid and state files (logs stay). */
export async function removeRuntimeLeftovers(runtimeDir: string, files: string[]): Promise<void> {
  for (const f of [...files, join(runtimeDir, PID_FILE), join(runtimeDir, STATE_FILE)]) await rm(f, { force: true });
}

/** How a VMM process ended, when this daemon started it (an adopted one's parent is init). */
export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const childExits = new Map<number, Promise<ExitStatus>>();

/** The exit of a VMM this process spawned (resolves once Node reaped it); undefined for others. */
export function childExit(pid: number): Promise<ExitStatus> | undefined {
  return childExits.get(pid);
}

/** Forgets a reaped child's status (the pid may be reused by another process). */
export function forgetChildExit(pid: number): void {
  childExits.delete(pid);
}

/**
 * The process's start time in clock ticks since boot (/proc/PID/stat field 22): with the
 * pid it names one process for good, so a recycled pid is never taken for the VMM.
 */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

async function commandLineMentions(pid: number, text: string): Promise<boolean> {
  try {
    const cmdline = (await readFile(`/proc/${pid}/cmdline`, "utf8")).split("\0");
    return cmdline.some((arg) => arg.includes(text));
  } catch {
    return false;
  }
}

/** Signals the process group (the VMM leads it), falling back to the pid alone. */
export function signalVmm(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      // Already gone.
    }
  }
}

/** Polls until the pid is gone; true if it exited within timeoutMs (no timeout: waits forever). */
export async function waitForExit(pid: number, timeoutMs?: number, signal?: AbortSignal): Promise<boolean> {
  const deadline = timeoutMs === undefined ? Infinity : Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (signal?.aborted) throw cancelled();
    if (Date.now() >= deadline) return false;
    await sleep(25);
  }
  return true;
}

export async function killAndWait(pid: number): Promise<void> {
  signalVmm(pid, "SIGKILL");
  if (!(await waitForExit(pid, 10_000))) throw new BangerError(ErrorCode.Failed, `VMM pid ${pid} did not die after SIGKILL`);
}

export function connectUnix(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const sock = connect(path);
    sock.once("connect", () => {
      sock.removeListener("error", reject);
      resolve(sock);
    });
    sock.once("error", reject);
  });
}

/**
 * Retries `attempt` until it succeeds, the VMM dies, the deadline passes or the signal
 * aborts; the last error explains a timeout.
 */
export function retryUntil<T>(what: string, attempt: () => Promise<T>, opts: { pid?: number; timeoutMs: number; signal?: AbortSignal; logPath?: string; maxDelayMs?: number }): Promise<T> {
  let lastError: unknown;
  return retry(
    async () => {
      try {
        return await attempt();
      } catch (err) {
        // The wrong peer (not the handshake expected) stays wrong: no use waiting.
        if (err instanceof BangerError && err.code === ErrorCode.Integrity) throw err;
        lastError = err;
      }
      if (opts.pid !== undefined && !isAlive(opts.pid)) {
        throw new BangerError(ErrorCode.Failed, `the VMM exited while waiting for ${what}${await logTail(opts.logPath)}`, "see the VM's vmm.log");
      }
      return undefined;
    },
    {
      timeoutMs: opts.timeoutMs,
      delayMs: 10,
      maxDelayMs: opts.maxDelayMs ?? 250,
      signal: opts.signal,
      onTimeout: () => {
        const why = lastError instanceof Error ? `: ${lastError.message}` : "";
        return new BangerError(ErrorCode.Timeout, `timed out after ${opts.timeoutMs} ms waiting for ${what}${why}`);
      },
    },
  );
}

/** The last line of a log, formatted to append to an error message. */
export async function logTail(path: string | undefined): Promise<string> {
  if (!path) return "";
  try {
    const fh = await open(path, "r");
    try {
      const { size } = await fh.stat();
      const len = Math.min(size, 4096);
      const buf = Buffer.alloc(len);
      await fh.read(buf, 0, len, size - len);
      const last = buf
        .toString("utf8")
        .trim()
        .split("\n")
        .filter((l) => l.trim() !== "")
        .pop();
      return last ? `: ${last.trim()}` : "";
    } finally {
      await fh.close();
    }
  } catch {
    return "";
  }
}
