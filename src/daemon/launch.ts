// Starting bangerd in the background and waiting until it answers. Used by `bangerd`
// without --foreground and by the CLI when nothing answers on the socket. Kept free of the
// daemon's heavy imports (SQLite) so the CLI stays quick to start.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, openSync, closeSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Paths } from "../config/index.ts";
import { RpcClient } from "../rpc/index.ts";
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
export function spawnDaemon(paths: Paths, env: NodeJS.ProcessEnv = process.env): number {
  mkdirSync(paths.logsDir, { recursive: true, mode: 0o700 });
  const errFd = openSync(join(paths.logsDir, "bangerd.stderr"), "a", 0o600);
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

/** Connects to the daemon for this root, starting one when none answers. */
export async function connectOrStart(paths: Paths, timeoutMs = 15000): Promise<RpcClient> {
  try {
    return await RpcClient.connect(paths.socket);
  } catch (err) {
    if (!isAbsent(err)) throw unavailable(paths, err);
  }
  spawnDaemon(paths);
  return waitForDaemon(paths, timeoutMs);
}

/** Polls the socket until a daemon answers, or fails with where to look. */
export async function waitForDaemon(paths: Paths, timeoutMs: number): Promise<RpcClient> {
  const deadline = Date.now() + timeoutMs;
  let delay = 10;
  for (;;) {
    try {
      return await RpcClient.connect(paths.socket);
    } catch (err) {
      if (!isAbsent(err) || Date.now() > deadline) throw unavailable(paths, err);
    }
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 200);
  }
}

function unavailable(paths: Paths, err: unknown): BangerError {
  return new BangerError(
    ErrorCode.Unavailable,
    `bangerd is not answering on ${paths.socket}: ${(err as Error).message}`,
    `see ${join(paths.logsDir, "bangerd.stderr")} and \`banger daemon logs\``,
  );
}
