// Starting bangerd in the background and waiting until it answers. Used by `bangerd`
// without --foreground and by the CLI when nothing answers on the socket. Kept free of the
// daemon's heavy imports (SQLite) so the CLI stays quick to start.
import { spawn } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Paths } from "../config/index.ts";
import type { Client, Methods } from "../api/index.ts";
import { RpcClient } from "../rpc/index.ts";
import { buildInfo } from "../util/buildinfo.ts";
import { isAlive } from "../util/pids.ts";
import { retry } from "../util/retry.ts";
import { BangerError, ErrorCode } from "../util/errors.ts";

/** dist/bangerd.js beside the running bundle, or in the repo's dist/ when run from sources. */
export function daemonEntry(): string {
  const here = fileURLToPath(import.meta.url);
  const candidates = [join(here, "..", "bangerd.js"), join(here, "..", "..", "..", "dist", "bangerd.js")];
  const found = candidates.find((c) => existsSync(c));
  if (!found) throw new BangerError(ErrorCode.MissingDependency, "bangerd is not built", "run `bash scripts/setup.sh` in the repository");
  return found;
}

/** Spawns a detached `bangerd --foreground`; its stderr goes to <root>/logs/bangerd.stderr. */
function spawnDaemon(paths: Paths, env: NodeJS.ProcessEnv = process.env): number {
  mkdirSync(paths.logsDir, { recursive: true, mode: 0o700 });
  const errFd = openSync(paths.daemonStderr, "a", 0o600);
  try {
    const child = spawn(process.execPath, [daemonEntry(), "--foreground", "--quiet"], {
      detached: true,
      stdio: ["ignore", "ignore", errFd],
      env: { ...env, BANGER_HOME: env.BANGER_HOME ?? "" },
    });
    child.unref();
    return child.pid ?? 0;
  } finally {
    closeSync(errFd);
  }
}

function isAbsent(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === "ENOENT" || code === "ECONNREFUSED";
}

/** This program's build: version, commit and build date (a rebuild changes it). */
export function buildId(): string {
  return `${buildInfo.version} ${buildInfo.commit} ${buildInfo.buildDate}`;
}

/**
 * Connects to the daemon for this root, starting one when none answers. A daemon of another
 * build (banger was upgraded or rebuilt; its code chunks may be gone) is replaced when it is
 * idle: its VMs keep running and the new daemon adopts them. A busy one is left alone, with
 * a note. `note` gets those one-line messages (default: stderr). A daemon started here gets
 * `env` (the SDK passes its own BANGER_HOME, which may not be this process's).
 */
export async function connectOrStart(
  paths: Paths,
  timeoutMs = 15000,
  note: (line: string) => void = (line) => void process.stderr.write(`banger: ${line}\n`),
  env: NodeJS.ProcessEnv = process.env,
): Promise<Client> {
  let client: Client | undefined;
  try {
    client = await RpcClient.connect<Methods>(paths.socket);
  } catch (err) {
    if (!isAbsent(err)) throw unavailable(paths, err);
  }
  if (client) return replaceIfStale(client, paths, timeoutMs, note, env);
  return (await startDaemon(paths, timeoutMs, env)).client;
}

/**
 * Spawns a daemon and waits until one answers (`pid` is the one that does). When several
 * CLIs start one at once, one spawn wins the root's lock and the others exit, unless one
 * starts so slowly that it takes the lock only after the winner stopped: a daemon nobody
 * asked for, back after `banger daemon stop`. So a spawn that is not the one answering is
 * stopped here.
 */
export async function startDaemon(paths: Paths, timeoutMs: number, env: NodeJS.ProcessEnv = process.env): Promise<{ client: Client; pid: number; spawned: number }> {
  const spawned = spawnDaemon(paths, env);
  const client = await waitForDaemon(paths, timeoutMs);
  const { pid } = await client.call("daemon.status");
  if (spawned > 0 && spawned !== pid && isAlive(spawned)) {
    try {
      process.kill(spawned, "SIGTERM");
    } catch {
      /* it exited meanwhile */
    }
  }
  return { client, pid, spawned };
}

async function replaceIfStale(client: Client, paths: Paths, timeoutMs: number, note: (line: string) => void, env: NodeJS.ProcessEnv): Promise<Client> {
  if (buildInfo.version === "dev") return client; // running from sources: no build to compare
  let theirs: string;
  try {
    theirs = readFileSync(paths.buildFile, "utf8").trim();
  } catch {
    return client; // a daemon older than this check, or one still starting
  }
  if (theirs === buildId()) return client;
  const status = await client.call("daemon.status");
  if ((status.activeCalls ?? 0) > 1) {
    note(`bangerd runs another build (${theirs}) and is busy; restart it when idle: banger daemon stop`);
    return client;
  }
  await client.call("daemon.stop");
  client.close();
  await pollUntil(() => !isAlive(status.pid), 10_000, `bangerd (pid ${status.pid}) did not stop in time`); // it holds the root's lock until it is gone
  const { client: fresh } = await startDaemon(paths, timeoutMs, env);
  note(`restarted bangerd, which ran another build (${theirs})`);
  return fresh;
}

/** Waits until a stopping daemon removed its socket. */
export function waitSocketGone(socket: string, timeoutMs: number): Promise<void> {
  return pollUntil(() => !existsSync(socket), timeoutMs, "bangerd did not stop in time");
}

function pollUntil(done: () => boolean, timeoutMs: number, timeoutMessage: string): Promise<void> {
  return retry(() => (done() ? true : undefined), {
    timeoutMs,
    delayMs: 25,
    onTimeout: () => new BangerError(ErrorCode.Timeout, timeoutMessage, "see `banger daemon logs`"),
  }).then(() => undefined);
}

/** Polls the socket until a daemon answers, or fails with where to look. */
function waitForDaemon(paths: Paths, timeoutMs: number): Promise<Client> {
  let lastError: unknown;
  return retry(
    async () => {
      try {
        return await RpcClient.connect<Methods>(paths.socket);
      } catch (err) {
        if (!isAbsent(err)) throw unavailable(paths, err);
        lastError = err;
        return undefined;
      }
    },
    { timeoutMs, delayMs: 10, maxDelayMs: 200, onTimeout: () => unavailable(paths, lastError) },
  );
}

function unavailable(paths: Paths, err: unknown): BangerError {
  return new BangerError(ErrorCode.Unavailable, `bangerd is not answering on ${paths.socket}: ${(err as Error).message}`, `see ${paths.daemonStderr} and \`banger daemon logs\``);
}
