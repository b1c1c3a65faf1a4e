// The guest's ssh server, started on demand (`ssh NAME.vm`) when `banger vm ssh-proxy` (the
// ProxyCommand) asks for it: OpenSSH's sshd or dropbear from a fixed list of paths, as the
// agent session `sshd`, listening on the guest's loopback only (the ProxyCommand reaches it
// over the agent channel, so it works with `--net none`). An image with neither gets one
// error line saying so and naming `banger vm shell`. Every guest command here is a fixed
// argv, bounded in time and output.
import type { Duplex, Readable } from "node:stream";
import { pack } from "tar-stream";
import type { AgentClient, SessionInfo } from "../guest/index.ts";
import type { VmRecord } from "../store/index.ts";
import { BangerError, ErrorCode, failed } from "../util/errors.ts";
import { withDeadline } from "../util/exec.ts";
import { retry } from "../util/retry.ts";
import { MAX_GUEST_OUTPUT, runInGuest } from "./guest-run.ts";
import { SSH_KEYS_TIMEOUT_MS } from "./ssh-keys.ts";

/** ssh-keygen -A makes an RSA key too: slow under TCG, still bounded. */
const HOST_KEYS_TIMEOUT_MS = 120_000;
/** From starting the server to its port listening (dropbear makes its key at first use). */
const SERVER_START_TIMEOUT_MS = Number(process.env.BANGER_SSHD_START_TIMEOUT_MS ?? 20_000);
const PROBE_TIMEOUT_MS = 10_000;
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
  await retry(
    async () => {
      if (await sshListens(agent)) return true;
      if ((await sshdSession(agent))?.state === "exited") {
        throw failed(`${server.path} exited at start: ${await sessionLastLine(agent)}`, `see \`banger session logs VM ${SSHD_SESSION}\``);
      }
      return undefined;
    },
    {
      timeoutMs: SERVER_START_TIMEOUT_MS,
      delayMs: 100,
      onTimeout: () => new BangerError(ErrorCode.Timeout, `${server.path} did not listen on port ${SSH_PORT} within ${SERVER_START_TIMEOUT_MS} ms`, `see \`banger session logs VM ${SSHD_SESSION}\``),
    },
  );
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
