// Where a command lands in a VM when its caller does not say: one rule for `vm run`,
// `vm exec`, `vm shell`, sessions and the web terminal. The user: the image's own (OCI
// `User`), else the image's `dev` user when it has one, else root. The directory: the
// workspace `vm run` copied in (as recorded by vm.workspace.record), else the image's
// WorkingDir, else the user's home. Users are looked up by the guest agent (its `user`
// channel, or `id` run with an argv on older agents): image text never reaches a shell.
import type { Handlers, Landing } from "../api/index.ts";
import { requireString } from "../rpc/index.ts";
import type { AgentClient, ExecHandle, GuestUser } from "../guest/index.ts";
import { BangerError, ErrorCode, errorLine } from "../util/errors.ts";
import { withDeadline } from "../util/exec.ts";
import type { DaemonContext } from "./context.ts";
import { getVm, runningAgent } from "./vms.ts";

type LandingUser = Omit<Landing, "cwd" | "cwdFrom"> & { home: string };

/**
 * The resolved user per VM boot (id + start time): /etc/passwd is read once per boot, not per
 * exec. By id, not name: a VM taken from a warm pool keeps what was resolved while it waited.
 */
const cache = new WeakMap<DaemonContext, Map<string, { key: string; user: LandingUser }>>();

export function landingMethods(ctx: DaemonContext): Handlers<"vm.landing"> {
  return {
    "vm.landing": async (p, call) => {
      const name = requireString(p, "name");
      return landingOf(ctx, name, await runningAgent(ctx, name, call.signal));
    },
  };
}

/** Fills in the user and directory a caller left out (exec, session.start, the web terminal). */
export async function withLanding<T extends { user?: string; cwd?: string }>(ctx: DaemonContext, vmName: string, agent: AgentClient, params: T): Promise<T> {
  if (params.user !== undefined && params.cwd !== undefined) return params;
  const landing = await landingOf(ctx, vmName, agent);
  // Without a workspace or WorkingDir, the agent starts in the user's own home (whoever that is).
  const cwd = params.cwd ?? (landing.cwdFrom === "home" ? undefined : landing.cwd);
  return { ...params, user: params.user ?? landing.user, cwd };
}

export async function landingOf(ctx: DaemonContext, vmName: string, agent: AgentClient): Promise<Landing> {
  const vm = getVm(ctx, vmName);
  const config = imageConfig(ctx, vm.image);
  const key = `${vm.id}@${vm.startedAt ?? ""}`;
  let perVm = cache.get(ctx);
  if (!perVm) cache.set(ctx, (perVm = new Map()));
  let user = perVm.get(vm.id)?.key === key ? perVm.get(vm.id)!.user : undefined;
  if (!user) {
    user = await landingUser(ctx, vmName, agent, config.user);
    perVm.set(vm.id, { key, user });
  }
  const { home, ...who } = user;
  const workspace = (vm.config.workspace as { guestPath?: unknown } | undefined)?.guestPath;
  if (typeof workspace === "string" && workspace.startsWith("/")) return { ...who, cwd: workspace, cwdFrom: "workspace" };
  if (config.workingDir) return { ...who, cwd: config.workingDir, cwdFrom: "image" };
  return { ...who, cwd: home || "/", cwdFrom: "home" };
}

/** The fields of the image config that matter here, checked (the image is untrusted). */
function imageConfig(ctx: DaemonContext, image: string): { user?: string; workingDir?: string } {
  const cfg = (ctx.store.getImage(image)?.config ?? {}) as { user?: unknown; workingDir?: unknown };
  const text = (v: unknown) => (typeof v === "string" && v !== "" && v.length <= 4096 && !v.includes("\0") ? v : undefined);
  const workingDir = text(cfg.workingDir);
  return { user: text(cfg.user), workingDir: workingDir?.startsWith("/") ? workingDir : undefined };
}

async function landingUser(ctx: DaemonContext, vmName: string, agent: AgentClient, imageUser: string | undefined): Promise<LandingUser> {
  if (imageUser) {
    const u = await lookup(agent, imageUser);
    if (u) return { user: imageUser, uid: u.uid, gid: u.gid, home: u.home };
    ctx.log.warn("the image's user is not in the guest; landing as root", { vm: vmName, user: imageUser });
  } else {
    const dev = await lookup(agent, "dev");
    if (dev) return { user: "dev", uid: dev.uid, gid: dev.gid, home: dev.home };
  }
  const root = await lookup(agent, "0");
  return { user: root?.name || "0", uid: 0, gid: root?.gid ?? 0, home: root?.home || "/root" };
}

/** The guest's answer for a user spec; undefined when it has no such user. */
async function lookup(agent: AgentClient, spec: string): Promise<GuestUser | undefined> {
  try {
    return (await agent.user(spec)) ?? (await lookupById(agent, spec));
  } catch (err) {
    if (err instanceof BangerError && err.code === ErrorCode.NotFound) return undefined;
    throw err;
  }
}

const NAME = /^[a-z_][a-z0-9_.-]{0,63}$/i;
const NUMERIC = /^(\d{1,10})(?::(\d{1,10}))?$/;

/** For agents without the `user` channel: numbers as given, names through `id` (an argv, no shell). */
async function lookupById(agent: AgentClient, spec: string): Promise<GuestUser | undefined> {
  const numeric = NUMERIC.exec(spec);
  if (numeric) return { name: "", uid: Number(numeric[1]), gid: Number(numeric[2] ?? numeric[1]), home: "" };
  const name = spec.split(":")[0] ?? "";
  if (!NAME.test(name)) return undefined;
  const [uid, gid] = await Promise.all([idOf(agent, "-u", name), idOf(agent, "-g", name)]);
  return uid === undefined || gid === undefined ? undefined : { name, uid, gid, home: "" };
}

/** How long an old agent's `id` may take: a guest that never answers must not hold up exec. */
const ID_TIMEOUT_MS = 5000;

async function idOf(agent: AgentClient, flag: "-u" | "-g", name: string): Promise<number | undefined> {
  let h: ExecHandle | undefined;
  try {
    h = await agent.exec({ argv: ["id", flag, name], stdin: false });
    let out = "";
    h.stdout.on("data", (d: Buffer) => {
      if (out.length < 64) out += d.toString("utf8");
    });
    h.stderr.resume();
    const status = await withDeadline(h.wait(), ID_TIMEOUT_MS, `answer from id ${flag} ${name}`);
    const n = Number(out.trim());
    return "exitCode" in status && status.exitCode === 0 && /^\d+$/.test(out.trim()) && n <= 0xffffffff ? n : undefined;
  } catch (err) {
    if (err instanceof BangerError && [ErrorCode.NotFound, ErrorCode.CommandNotFound, ErrorCode.Timeout].includes(err.code as never)) return undefined;
    throw new BangerError(ErrorCode.Failed, `could not look up guest user ${name}: ${errorLine(err)}`);
  } finally {
    h?.close();
  }
}
