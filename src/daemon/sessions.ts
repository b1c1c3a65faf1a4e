// Detached guest sessions: long-running processes the guest agent owns, so they outlive the
// CLI, this daemon and its agent connection. The agent keeps their output (a bounded
// scrollback); the store keeps a row per session so `session ls` answers even when a guest
// does not, and `session.list` reconciles those rows with what the agent reports.
import { basename } from "node:path";
import { constants as osConstants } from "node:os";
import type { CallContext } from "../rpc/index.ts";
import { optionalBool, optionalString, requireObject, requireString } from "../rpc/index.ts";
import type { AgentClient, ExitStatus, SessionInfo } from "../guest/index.ts";
import { BangerError, ErrorCode, errorLine, invalidArgument } from "../util/errors.ts";
import { withDeadline } from "../util/exec.ts";
import { validateName } from "../util/names.ts";
import type { DaemonContext } from "./context.ts";
import { parseExecParams } from "./exec.ts";
import { withLanding } from "./landing.ts";
import type { AttachResult, Handlers, SessionStartParams, SessionView, StreamEvent } from "../api/index.ts";
import { emitStream, inputStream } from "./streams.ts";
import { sessionView } from "./views.ts";
import { getVm, listVms, runningAgent } from "./vms.ts";

/** session.start's params without the VM (the caller names it separately). */
export type StartSessionParams = Omit<SessionStartParams, "vm">;

/** How long `session ls` waits for each guest before showing stored rows instead. */
const LIST_TIMEOUT_MS = 5000;
/** How long `session kill` waits to report that the session ended. */
const KILL_WAIT_MS = 3000;

export function sessionMethods(ctx: DaemonContext): Handlers<"session.start" | "session.list" | "session.attach" | "session.logs" | "session.send" | "session.kill" | "session.rm"> {
  return {
    "session.start": (p, call) => {
      const o = requireObject(p);
      // tty null (pipes, `--no-tty`) is the sessions' own value: exec's parser knows only sizes.
      const exec = parseExecParams({ ...o, tty: o.tty === null ? undefined : o.tty });
      const tty = o.tty === null ? null : exec.tty;
      return startSession(ctx, requireString(p, "vm"), { name: optionalString(p, "name"), argv: exec.argv, env: exec.env, cwd: exec.cwd, user: exec.user, tty }, call.signal);
    },
    "session.list": (p) => listSessions(ctx, optionalString(p, "vm")),
    "session.attach": (p, call) => attachSession(ctx, requireString(p, "vm"), sessionName(p), call),
    "session.logs": (p, call) => streamSessionLogs(ctx, requireString(p, "vm"), sessionName(p), optionalBool(p, "follow") ?? false, call),
    "session.send": (p) => sendToSession(ctx, requireString(p, "vm"), sessionName(p), sendData(p)),
    "session.kill": (p) => killSession(ctx, requireString(p, "vm"), sessionName(p), parseSignal(requireObject(p).signal)),
    "session.rm": (p) => removeSession(ctx, requireString(p, "vm"), sessionName(p), optionalBool(p, "force") ?? false),
  };
}

const sessionName = (p: unknown) => validateName("session", requireString(p, "name"));

/** `data` is text, or bytes as `b64`. */
function sendData(p: unknown): Buffer {
  const text = optionalString(p, "data");
  const b64 = optionalString(p, "b64");
  if ((text === undefined) === (b64 === undefined)) throw invalidArgument("give exactly one of data or b64");
  return text !== undefined ? Buffer.from(text) : Buffer.from(b64!, "base64");
}

/** Accepts 9, "9", "KILL" or "SIGKILL"; default SIGTERM. */
export function parseSignal(v: unknown): number {
  if (v === undefined || v === null) return osConstants.signals.SIGTERM;
  const s = String(v).toUpperCase();
  const n = /^\d+$/.test(s) ? Number(s) : (osConstants.signals as Record<string, number>)[s.startsWith("SIG") ? s : `SIG${s}`];
  if (n === undefined || !Number.isInteger(n) || n < 1 || n > 64) throw invalidArgument(`unknown signal ${JSON.stringify(v)}`, "use a name like TERM, INT, KILL or a number");
  return n;
}

function exitCodeOf(exit: ExitStatus | undefined): number | null {
  if (!exit) return null;
  return "exitCode" in exit ? exit.exitCode : 128 + exit.signalNumber;
}

/** A readable name for the store: argv joined, quoting what needs it. */
function commandLine(argv: string[]): string {
  return argv
    .map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`))
    .join(" ")
    .slice(0, 4096);
}

/** `sh-1`, `sh-2`, ...: the command's base name cut to the name rule, numbered past those taken. */
function defaultName(argv: string[], taken: Set<string>): string {
  const base =
    basename(argv[0] ?? "")
      .replace(/[^a-zA-Z0-9._-]/g, "")
      .replace(/^[._-]+/, "")
      .slice(0, 48) || "session";
  for (let n = 1; ; n++) if (!taken.has(`${base}-${n}`)) return `${base}-${n}`;
}

/** Starts a detached session in a running VM and records it. Used by `session start` and `vm run -d`. */
export async function startSession(ctx: DaemonContext, vmName: string, p: StartSessionParams, signal?: AbortSignal): Promise<{ vm: string; name: string; pid: number }> {
  const agent = await runningAgent(ctx, vmName, signal);
  let name = p.name === undefined ? undefined : validateName("session", p.name);
  if (name === undefined) {
    const taken = new Set([...ctx.store.listSessions(vmName).map((s) => s.name), ...(await agent.sessionList()).map((s) => s.name)]);
    name = defaultName(p.argv, taken);
  }
  // Unless the caller says, a session lands where `vm run` puts commands (landing.ts).
  const { user, cwd } = await withLanding(ctx, vmName, agent, { user: p.user, cwd: p.cwd });
  const { pid } = await agent.sessionStart({ name, argv: p.argv, env: p.env, cwd, user, tty: p.tty }).catch((err: unknown) => {
    if (err instanceof BangerError && err.code === ErrorCode.AlreadyExists) {
      throw new BangerError(ErrorCode.AlreadyExists, `session ${name} already exists in vm ${vmName}`, `pick another --name, or remove it: banger session kill ${vmName} ${name}`);
    }
    throw err;
  });
  // A row left from before a reboot under the same name describes another process.
  if (ctx.store.listSessions(vmName).some((r) => r.name === name && r.state !== "running")) ctx.store.deleteSession(vmName, name);
  ctx.store.putSession({ vm: vmName, name, command: commandLine(p.argv), state: "running", exitCode: null });
  ctx.log.info("session started", { vm: vmName, session: name, pid });
  return { vm: vmName, name, pid };
}

/** Every session of one VM (or of all VMs): live from each running agent, else as stored. */
export async function listSessions(ctx: DaemonContext, vmName?: string): Promise<SessionView[]> {
  const vms = vmName === undefined ? listVms(ctx) : [getVm(ctx, vmName)];
  const views = await Promise.all(
    vms.map((vm) =>
      // A paused guest keeps its sessions (they go on after `vm resume`): shown as stored, not lost.
      vm.state === "paused" ? ctx.store.listSessions(vm.name).map((row) => sessionView(row, false)) : sessionsOfVm(ctx, vm.name, vm.state === "running" && ctx.runtime.handle(vm.name) !== undefined),
    ),
  );
  return views.flat();
}

async function sessionsOfVm(ctx: DaemonContext, vm: string, running: boolean): Promise<SessionView[]> {
  if (!running) {
    // The guest is off: its sessions are gone with it.
    for (const row of ctx.store.listSessions(vm)) if (row.state === "running") ctx.store.putSession({ ...row, state: "lost" });
    return ctx.store.listSessions(vm).map((row) => sessionView(row, false));
  }
  let live: SessionInfo[];
  try {
    const agent = await ctx.runtime.agent(vm, { timeoutMs: LIST_TIMEOUT_MS });
    live = await withDeadline(agent.sessionList(), LIST_TIMEOUT_MS);
  } catch (err) {
    ctx.log.warn("session list: no usable answer from the agent", { vm, error: errorLine(err) });
    return ctx.store.listSessions(vm).map((row) => sessionView(row, false));
  }
  // The guest client already refused any list whose names break the name rule (guest/messages.ts).
  reconcile(ctx, vm, live);
  const byName = new Map(live.map((s) => [s.name, s]));
  return ctx.store.listSessions(vm).map((row) => {
    const s = byName.get(row.name);
    return sessionView(row, true, s);
  });
}

/** The agent is the truth for what it reports; stored rows it no longer has are lost. */
function reconcile(ctx: DaemonContext, vm: string, live: SessionInfo[]): void {
  const stored = new Map(ctx.store.listSessions(vm).map((r) => [r.name, r]));
  for (const s of live) {
    const row = stored.get(s.name);
    ctx.store.putSession({ vm, name: s.name, command: row?.command ?? commandLine(s.argv), state: s.state, exitCode: exitCodeOf(s.exit), createdAt: row?.createdAt ?? s.started });
    stored.delete(s.name);
  }
  for (const row of stored.values()) if (row.state === "running") ctx.store.putSession({ ...row, state: "lost" });
}

/** Records how a session ended, as the agent reported at the end of attach/logs. */
function recordEnd(ctx: DaemonContext, vm: string, info: SessionInfo | undefined): void {
  if (info?.state !== "exited") return;
  const row = ctx.store.listSessions(vm).find((r) => r.name === info.name);
  if (row) ctx.store.putSession({ ...row, state: "exited", exitCode: exitCodeOf(info.exit) });
}

async function agentFor(ctx: DaemonContext, vm: string, signal?: AbortSignal): Promise<AgentClient> {
  return runningAgent(ctx, vm, signal);
}

/**
 * Bridges a session to the call: scrollback then live output as `out` events, `$/input`
 * bytes (acknowledged, see streams.ts), resizes and signals in. `{t:"detach"}` input or
 * cancelling the call detaches; the session keeps running either way.
 */
export async function attachSession(ctx: DaemonContext, vm: string, name: string, call: CallContext): Promise<AttachResult> {
  const agent = await agentFor(ctx, vm, call.signal);
  const att = await agent.sessionAttach(name);
  let detached = false;
  const detach = () => {
    detached = true;
    att.detach();
  };
  call.signal.addEventListener("abort", detach, { once: true });
  try {
    const input = inputStream(call, (raw) => {
      const ev = raw as { t: string; rows?: number; cols?: number; name?: string };
      if (ev.t === "resize") att.resize(ev.rows ?? 24, ev.cols ?? 80);
      else if (ev.t === "signal") att.signal(ev.name as NodeJS.Signals);
      else if (ev.t === "detach") detach();
    });
    input.on("error", () => undefined);
    input.pipe(att.input, { end: false }); // the caller's EOF never closes the session's input
    void call.emit({ t: "started", pid: att.pid } satisfies StreamEvent);
    await emitStream(att.output, call, 1).catch((err: unknown) => {
      if (!detached) throw err;
    });
    const info = await att.wait();
    recordEnd(ctx, vm, info);
    return info ? { detached: false, state: info.state, exit: info.exit } : { detached: true };
  } finally {
    call.signal.removeEventListener("abort", detach);
  }
}

/** Sends the scrollback as `out` events; with follow, live output too until the session ends or the call is cancelled. */
export async function streamSessionLogs(ctx: DaemonContext, vm: string, name: string, follow: boolean, call: CallContext): Promise<{ state?: string; exit?: ExitStatus }> {
  const agent = await agentFor(ctx, vm, call.signal);
  const logs = await agent.sessionLogs(name, { follow });
  const stop = () => logs.stop();
  call.signal.addEventListener("abort", stop, { once: true });
  try {
    await emitStream(logs.output, call, 1).catch((err: unknown) => {
      if (!call.signal.aborted) throw err;
    });
    const info = await logs.done;
    recordEnd(ctx, vm, info);
    return { state: info?.state, exit: info?.exit };
  } finally {
    call.signal.removeEventListener("abort", stop);
  }
}

export async function sendToSession(ctx: DaemonContext, vm: string, name: string, data: Buffer): Promise<{ bytes: number }> {
  const agent = await agentFor(ctx, vm);
  return { bytes: await agent.sessionSend(name, data) };
}

/** Signals a session and waits briefly to report how it ended; an exited one is removed. */
export async function killSession(ctx: DaemonContext, vm: string, name: string, signal: number): Promise<{ vm: string; name: string; state: string; exit?: ExitStatus }> {
  const agent = await agentFor(ctx, vm);
  const { removed } = await agent.sessionKill(name, signal);
  if (removed) {
    ctx.store.deleteSession(vm, name);
    return { vm, name, state: "removed" };
  }
  const deadline = Date.now() + KILL_WAIT_MS;
  for (;;) {
    const s = (await agent.sessionList()).find((x) => x.name === name);
    if (!s || s.state === "exited" || Date.now() > deadline) {
      if (s) reconcile(ctx, vm, [s]);
      return { vm, name, state: s?.state ?? "removed", exit: s?.exit };
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Forgets a session: in the guest (force kills a running one) and in the store. */
export async function removeSession(ctx: DaemonContext, vm: string, name: string, force: boolean): Promise<{ removed: string }> {
  const record = getVm(ctx, vm);
  if (record.state === "running" && ctx.runtime.handle(vm)) {
    const agent = await agentFor(ctx, vm);
    await agent.sessionRemove(name, { force }).catch((err: unknown) => {
      // Gone from the guest already (a reboot): the stored row is all there is to remove.
      if (!(err instanceof BangerError && err.code === ErrorCode.NotFound && ctx.store.listSessions(vm).some((r) => r.name === name))) throw err;
    });
  } else if (!ctx.store.listSessions(vm).some((r) => r.name === name)) {
    throw new BangerError(ErrorCode.NotFound, `session ${name} not found in vm ${vm}`, `see: banger session ls ${vm}`);
  }
  ctx.store.deleteSession(vm, name);
  return { removed: name };
}
