// SSH into VMs (`ssh NAME.vm`): the user's public keys in guests (at boot and on `banger
// ssh-config`), and the guest's ssh server, started on demand when `banger vm ssh-proxy`
// (the ProxyCommand) asks for it: OpenSSH's sshd or dropbear from a fixed list of paths,
// as the agent session `sshd`, listening on the guest's loopback only (the ProxyCommand
// reaches it over the agent channel, so it works with `--net none`). An image with neither
// gets one error line saying so and naming `banger vm shell`. Every guest command here is a
// fixed argv, bounded in time and output.
import { join } from "node:path";
import type { Duplex, Readable } from "node:stream";
import { pack } from "tar-stream";
import type { Paths } from "../config/index.ts";
import type { AgentClient, ExitStatus, SessionInfo } from "../guest/index.ts";
import { optionalInt, requireString, type CallContext } from "../rpc/index.ts";
import type { VmRecord } from "../store/index.ts";
import { BangerError, ErrorCode, errorLine, failed, invalidArgument } from "../util/errors.ts";
import { withDeadline } from "../util/exec.ts";
import type { DaemonContext } from "./context.ts";
import type { Handlers, StreamEvent } from "../api/index.ts";
import { emitStream, inputStream } from "./streams.ts";

/** Installing keys is a few file appends: a guest that takes longer is stuck or hostile. */
const SSH_KEYS_TIMEOUT_MS = Number(process.env.BANGER_SSH_KEYS_TIMEOUT_MS ?? 15_000);
/** ssh-keygen -A makes an RSA key too: slow under TCG, still bounded. */
const HOST_KEYS_TIMEOUT_MS = 120_000;
/** From starting the server to its port listening (dropbear makes its key at first use). */
const SERVER_START_TIMEOUT_MS = Number(process.env.BANGER_SSHD_START_TIMEOUT_MS ?? 20_000);
const PROBE_TIMEOUT_MS = 10_000;
const MAX_GUEST_OUTPUT = 4096;
export const SSH_PORT = 22;
/** The agent session the on-demand server runs as (`banger session ls|logs|rm VM`). */
export const SSHD_SESSION = "sshd";

interface SshServer {
  path: string;
  /** Directories it needs (created through the agent, no guest tool needed). */
  dirs: string[];
  /** Run once before it starts (host keys); must exit 0. */
  prepare?: string[];
  /** In the foreground, logging to stderr, on the guest's loopback only. */
  argv: string[];
}

/** Where images keep an ssh server, in the order tried. */
export const SSH_SERVERS: readonly SshServer[] = [
  { path: "/usr/sbin/sshd", dirs: ["/run/sshd"], prepare: ["ssh-keygen", "-A"], argv: ["/usr/sbin/sshd", "-D", "-e", "-o", `ListenAddress=127.0.0.1:${SSH_PORT}`] },
  { path: "/usr/sbin/dropbear", dirs: ["/etc/dropbear"], argv: ["/usr/sbin/dropbear", "-F", "-E", "-R", "-p", `127.0.0.1:${SSH_PORT}`] },
];

/** Where `banger ssh-config` keeps its files: <root>/ssh/{config,known_hosts,id_ed25519}. */
export function sshPaths(paths: Paths): { dir: string; config: string; knownHosts: string } {
  const dir = join(paths.root, "ssh");
  return { dir, config: join(dir, "config"), knownHosts: join(dir, "known_hosts") };
}

const PUBLIC_KEY = /^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com) [A-Za-z0-9+/=]{16,16384}( [^\n\r\0]{0,256})?$/;

/** One OpenSSH public key line; anything else (several lines, options) is refused. */
export function validatePublicKey(text: string): string {
  const key = text.trim();
  if (!PUBLIC_KEY.test(key)) throw invalidArgument("not an OpenSSH public key line", "pass the contents of a .pub file, e.g. ~/.ssh/id_ed25519.pub");
  return key;
}

/**
 * Appends the keys to root's authorized_keys in the guest (and the dev user's, when the
 * image has one), skipping keys already there. Keys travel as environment, never as code.
 */
export async function installSshKeys(agent: AgentClient, keys: readonly string[], opts: { timeoutMs?: number } = {}): Promise<void> {
  if (keys.length === 0) return;
  const timeoutMs = opts.timeoutMs ?? SSH_KEYS_TIMEOUT_MS;
  const script = [
    "set -e",
    'install_keys() { home="$1"; owner="$2"; mkdir -p "$home/.ssh"; chmod 700 "$home/.ssh"; f="$home/.ssh/authorized_keys"; touch "$f"; chmod 600 "$f";',
    '  printf "%s\\n" "$BANGER_KEYS" | while IFS= read -r k; do [ -z "$k" ] || grep -qxF "$k" "$f" || printf "%s\\n" "$k" >> "$f"; done;',
    '  chown -R "$owner" "$home/.ssh"; }',
    "install_keys /root 0:0",
    'if grep -q "^dev:" /etc/passwd && [ -d /home/dev ]; then install_keys /home/dev dev; fi',
  ].join("\n");
  const hint = "is the guest overloaded or its shell stuck? restart the VM and run `banger ssh-config` again";
  const res = await runInGuest(agent, ["/bin/sh", "-c", script], { env: { BANGER_KEYS: keys.join("\n") }, timeoutMs, what: "installing SSH keys in the guest", hint });
  if (!("exitCode" in res.status) || res.status.exitCode !== 0) throw failed(`installing SSH keys in the guest failed: ${res.lastLine || JSON.stringify(res.status)}`);
}

/**
 * Runs a fixed argv in the guest to its end within `timeoutMs` (then kills it): output is read
 * so the guest is not blocked, at most MAX_GUEST_OUTPUT bytes of stderr kept for the message.
 */
async function runInGuest(agent: AgentClient, argv: string[], o: { env?: Record<string, string>; timeoutMs: number; what: string; hint?: string }): Promise<{ status: ExitStatus; lastLine: string }> {
  const started = Date.now();
  const exec = await withDeadline(agent.exec({ argv, env: o.env, stdin: false }), o.timeoutMs, `start of ${o.what}`);
  const stderr = new BoundedText(MAX_GUEST_OUTPUT);
  exec.stderr.on("data", (b: Buffer) => stderr.add(b));
  exec.stdout.resume();
  try {
    const status = await withDeadline(exec.wait(), Math.max(1, o.timeoutMs - (Date.now() - started)), `end of ${o.what}`);
    return { status, lastLine: stderr.lastLine() };
  } catch (err) {
    exec.close();
    if (err instanceof BangerError && err.code === ErrorCode.Timeout) throw new BangerError(ErrorCode.Timeout, `${o.what} did not finish within ${o.timeoutMs} ms`, o.hint);
    throw err;
  }
}

/** Keeps the first `max` bytes of a stream's output; its last line is the message to show. */
class BoundedText {
  private readonly chunks: Buffer[] = [];
  private size = 0;
  constructor(private readonly max: number) {}
  add(b: Buffer): void {
    if (this.size >= this.max) return;
    const part = b.subarray(0, this.max - this.size);
    this.chunks.push(part);
    this.size += part.length;
  }
  lastLine(): string {
    return Buffer.concat(this.chunks).toString("utf8").trim().split("\n").pop()?.trim() ?? "";
  }
}

// --- the ssh server, on demand ---

export function noSshServer(vm: Pick<VmRecord, "name" | "image">): BangerError {
  return new BangerError(ErrorCode.NotFound, `${vm.name} has no ssh server (image ${vm.image}); use \`banger vm shell ${vm.name}\``);
}

async function sshListens(agent: AgentClient): Promise<boolean> {
  return (await agent.ports()).some((p) => p.port === SSH_PORT);
}

/** The first server of SSH_SERVERS the image has: the agent answers command_not_found for a missing program. */
async function findSshServer(agent: AgentClient): Promise<SshServer | undefined> {
  for (const server of SSH_SERVERS) {
    try {
      // -V prints a version (or usage) and exits: nothing else happens in the guest.
      await runInGuest(agent, [server.path, "-V"], { timeoutMs: PROBE_TIMEOUT_MS, what: `${server.path} -V` });
      return server;
    } catch (err) {
      // CommandNotFound from this agent; NotFound from an older one.
      if (!(err instanceof BangerError && (err.code === ErrorCode.CommandNotFound || err.code === ErrorCode.NotFound))) throw err;
    }
  }
  return undefined;
}

/**
 * Whether `ssh NAME.vm` can work in this guest: something listens on 22, or a server can
 * start. Answers within `timeoutMs` (each probe is killed by its own bound).
 */
export async function hasSshServer(agent: AgentClient, timeoutMs = SSH_KEYS_TIMEOUT_MS): Promise<boolean> {
  const look = async () => (await sshListens(agent)) || (await findSshServer(agent)) !== undefined;
  return withDeadline(look(), timeoutMs, "answer to where the guest's ssh server is");
}

/** Starts in progress, by VM id: concurrent `ssh NAME.vm` share one start (one ssh-keygen). */
const starting = new Map<string, Promise<void>>();

/** A connection to the guest's ssh server, starting it first when nothing listens on 22. */
export async function openSsh(agent: AgentClient, vm: Pick<VmRecord, "id" | "name" | "image">): Promise<Duplex> {
  let start = starting.get(vm.id);
  if (!start) {
    start = ensureStarted(agent, vm).finally(() => starting.delete(vm.id));
    starting.set(vm.id, start);
  }
  await start;
  return agent.openTcp(SSH_PORT);
}

async function ensureStarted(agent: AgentClient, vm: Pick<VmRecord, "name" | "image">): Promise<void> {
  if (await sshListens(agent)) return;
  const server = await findSshServer(agent);
  if (!server) throw noSshServer(vm);
  await startSshServer(agent, server);
}

async function startSshServer(agent: AgentClient, server: SshServer): Promise<void> {
  for (const dir of server.dirs) {
    // An empty archive: files.put creates the directory (no mkdir needed in the image).
    const empty = pack();
    empty.finalize();
    await agent.putFiles(dir, empty as unknown as Readable);
  }
  if (server.prepare) {
    const res = await runInGuest(agent, server.prepare, { timeoutMs: HOST_KEYS_TIMEOUT_MS, what: `${server.prepare.join(" ")} in the guest` });
    if (!("exitCode" in res.status) || res.status.exitCode !== 0) throw failed(`${server.prepare.join(" ")} failed in the guest: ${res.lastLine || JSON.stringify(res.status)}`);
  }
  await startSession(agent, server.argv);
  await waitListening(agent, server);
}

/** Starts the `sshd` session; one already running (a concurrent start) is fine, an exited one is replaced. */
async function startSession(agent: AgentClient, argv: string[]): Promise<void> {
  try {
    await agent.sessionStart({ name: SSHD_SESSION, argv, tty: null });
  } catch (err) {
    if (!(err instanceof BangerError && err.code === ErrorCode.AlreadyExists)) throw err;
    if ((await sshdSession(agent))?.state !== "exited") return;
    await agent.sessionRemove(SSHD_SESSION);
    await agent.sessionStart({ name: SSHD_SESSION, argv, tty: null });
  }
}

async function sshdSession(agent: AgentClient): Promise<SessionInfo | undefined> {
  return (await agent.sessionList()).find((s) => s.name === SSHD_SESSION);
}

async function waitListening(agent: AgentClient, server: SshServer): Promise<void> {
  const deadline = Date.now() + SERVER_START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (await sshListens(agent)) return;
    if ((await sshdSession(agent))?.state === "exited") {
      throw failed(`${server.path} exited at start: ${await sessionLastLine(agent)}`, `see \`banger session logs VM ${SSHD_SESSION}\``);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new BangerError(ErrorCode.Timeout, `${server.path} did not listen on port ${SSH_PORT} within ${SERVER_START_TIMEOUT_MS} ms`, `see \`banger session logs VM ${SSHD_SESSION}\``);
}

/** The last line of the session's output (the last MAX_GUEST_OUTPUT bytes read, bounded in time). */
async function sessionLastLine(agent: AgentClient): Promise<string> {
  const logs = await agent.sessionLogs(SSHD_SESSION);
  let tail = Buffer.alloc(0);
  logs.output.on("data", (b: Buffer) => {
    tail = Buffer.concat([tail, b]);
    if (tail.length > MAX_GUEST_OUTPUT) tail = tail.subarray(tail.length - MAX_GUEST_OUTPUT);
  });
  await withDeadline(logs.done, PROBE_TIMEOUT_MS, "session logs").catch(() => undefined);
  logs.stop();
  return tail.toString("utf8").trim().split("\n").pop()?.trim() ?? "";
}

// --- methods ---

/**
 * One TCP connection in the guest bridged onto the call (bytes in as `$/input`, out as
 * events; see streams.ts). Ends when the guest side closes or the caller cancels.
 */
export async function bridgeConnection(conn: Duplex, call: CallContext): Promise<{ closed: true }> {
  const onAbort = () => conn.destroy();
  call.signal.addEventListener("abort", onAbort, { once: true });
  try {
    const input = inputStream(call);
    input.on("error", () => conn.destroy());
    input.pipe(conn);
    void call.emit({ t: "started" } satisfies StreamEvent);
    await emitStream(conn, call).catch((err: unknown) => {
      if (!call.signal.aborted) throw err;
    });
    return { closed: true };
  } finally {
    call.signal.removeEventListener("abort", onAbort);
    conn.destroy();
  }
}

type RunningAgent = (ctx: DaemonContext, name: string, signal?: AbortSignal) => Promise<AgentClient>;

/** `vm.tcp`, `vm.ssh` and `ssh.authorize` (network.ts's method table spreads them in). */
export function sshMethods(ctx: DaemonContext, runningAgent: RunningAgent): Handlers<"vm.tcp" | "vm.ssh" | "ssh.authorize"> {
  return {
    "vm.tcp": async (p, call) => {
      const port = optionalInt(p, "port", 1, 65535);
      if (port === undefined) throw invalidArgument("a guest port is required");
      const agent = await runningAgent(ctx, requireString(p, "name"), call.signal);
      return bridgeConnection(await agent.openTcp(port), call);
    },
    "vm.ssh": async (p, call) => {
      const name = requireString(p, "name");
      const agent = await runningAgent(ctx, name, call.signal);
      return bridgeConnection(await openSsh(agent, ctx.store.getVm(name)!), call);
    },
    "ssh.authorize": async (p) => {
      const keys = ctx.network.authorizeKey(requireString(p, "publicKey"));
      const installed: string[] = [];
      const noServer: { vm: string; image: string }[] = [];
      const failedVms: { vm: string; error: string }[] = [];
      // In parallel, each bounded in time: one stuck guest does not hold up the others.
      await Promise.all(ctx.store.listVms().filter((v) => v.state === "running").map(async (vm) => {
        try {
          const agent = await runningAgent(ctx, vm.name);
          await installSshKeys(agent, keys);
          if (await hasSshServer(agent)) installed.push(vm.name);
          else noServer.push({ vm: vm.name, image: vm.image });
        } catch (err) {
          failedVms.push({ vm: vm.name, error: errorLine(err) });
        }
      }));
      const byVm = (a: { vm: string }, b: { vm: string }) => a.vm.localeCompare(b.vm);
      return { keys: keys.length, installed: installed.sort(), noServer: noServer.sort(byVm), failed: failedVms.sort(byVm) };
    },
  };
}
