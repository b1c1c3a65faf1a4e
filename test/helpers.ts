// Shared test helpers: temporary state roots and repository paths.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const REPO = new URL("..", import.meta.url).pathname;

/** A fresh BANGER_HOME under /tmp; call the returned cleanup in `after`. Short, so socket paths fit. */
export function makeTempHome(): { home: string; cleanup: () => void } {
  const home = mkdtempSync(join(tmpdir(), "bgr-"));
  return { home, cleanup: () => rmSync(home, { recursive: true, force: true }) };
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs bin/banger (the built CLI, as a user would) with BANGER_HOME set. */
export function runBanger(args: string[], opts: { home: string; env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number }): Promise<CliResult> {
  return runBin("banger", args, opts);
}

export function runBin(bin: "banger" | "bangerd", args: string[], opts: { home: string; env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number }): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(join(REPO, "bin", bin), args, {
      env: { ...process.env, ...opts.env, BANGER_HOME: opts.home },
      stdio: ["pipe", "pipe", "pipe"],
      timeout: opts.timeoutMs ?? 60_000,
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b) => (stdout += b));
    child.stderr.on("data", (b) => (stderr += b));
    child.stdin.end(opts.input ?? "");
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr }));
  });
}

/** Stops the daemon of a test root (if any) so no process outlives the test. */
export async function stopDaemon(home: string): Promise<void> {
  const pidFile = join(home, "run", "bangerd.pid");
  let pid: number | undefined;
  try {
    pid = Number.parseInt(readFileSync(pidFile, "utf8"), 10);
  } catch {
    return;
  }
  try {
    process.kill(pid, "SIGTERM");
  } catch {
    return;
  }
  for (let i = 0; i < 200; i++) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  process.kill(pid, "SIGKILL");
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
