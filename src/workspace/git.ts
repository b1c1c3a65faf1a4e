// Running host git for workspaces: argv only, byte-exact output (patches and paths are not
// always UTF-8), a hard cap instead of silent truncation, and an environment we choose.
import { spawn } from "node:child_process";
import { BangerError, ErrorCode, cancelled, failed } from "../util/errors.ts";
import { installHint } from "../util/exec.ts";

export interface GitOptions {
  cwd?: string;
  env: NodeJS.ProcessEnv;
  input?: string | Buffer;
  signal?: AbortSignal;
  /** Output beyond this is an error, never a truncated answer. Default 64 MiB. */
  maxOutput?: number;
}

export interface GitResult {
  code: number;
  stdout: Buffer;
  stderr: string;
}

/**
 * Config every git call gets: no hooks, no fsmonitor daemon, and no automatic gc or
 * maintenance (which would repack objects while a copy of .git is being streamed).
 */
const SAFE_CONFIG = [
  ...["-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "core.untrackedCache=false"],
  ...["-c", "gc.auto=0", "-c", "maintenance.auto=false"],
];

/** Runs git; resolves with the exit code whatever it is. */
export function gitRaw(args: readonly string[], opts: GitOptions): Promise<GitResult> {
  const max = opts.maxOutput ?? 64 * 1024 * 1024;
  return new Promise((resolve, reject) => {
    if (opts.signal?.aborted) return reject(cancelled());
    const child = spawn("git", [...SAFE_CONFIG, ...args], {
      cwd: opts.cwd,
      env: opts.env,
      stdio: [opts.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
      signal: opts.signal,
      killSignal: "SIGKILL",
    });
    const out: Buffer[] = [];
    let outLen = 0;
    let stderr = "";
    let tooBig = false;
    child.stdout!.on("data", (b: Buffer) => {
      outLen += b.length;
      if (outLen > max) {
        tooBig = true;
        child.kill("SIGKILL");
      } else out.push(b);
    });
    child.stderr!.on("data", (b: Buffer) => {
      if (stderr.length < 64 * 1024) stderr += b.toString("utf8");
    });
    if (opts.input !== undefined) {
      child.stdin!.on("error", () => undefined); // git may exit before reading everything
      child.stdin!.end(opts.input);
    }
    child.on("error", (e: NodeJS.ErrnoException) => {
      if (e.code === "ENOENT") reject(new BangerError(ErrorCode.MissingDependency, "git not found", installHint("git")));
      else if (e.name === "AbortError") reject(cancelled());
      else reject(e);
    });
    child.on("close", (code, sig) => {
      if (opts.signal?.aborted) return reject(cancelled());
      if (tooBig) return reject(failed(`git ${args[0]} produced more than ${max} bytes`, "the change is too large to export this way"));
      resolve({ code: code ?? (sig ? 128 : 1), stdout: Buffer.concat(out), stderr });
    });
  });
}

/** Runs git and fails on a non-zero exit with git's last stderr line. */
export async function git(args: readonly string[], opts: GitOptions): Promise<Buffer> {
  const res = await gitRaw(args, opts);
  if (res.code !== 0) throw gitFailed(args, res);
  return res.stdout;
}

/** git's stdout as trimmed text (ids, ref names). */
export async function gitLine(args: readonly string[], opts: GitOptions): Promise<string> {
  return (await git(args, opts)).toString("utf8").trim();
}

export function gitFailed(args: readonly string[], res: GitResult): BangerError {
  const last = res.stderr.trim().split("\n").pop() ?? "";
  return failed(`git ${args[0]} exited with status ${res.code}${last ? `: ${last}` : ""}`);
}

/** The process environment minus variables that would point git at another repository or index. */
export function hostGitEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (REPO_VARS.has(k)) continue;
    env[k] = v;
  }
  return { ...env, GIT_OPTIONAL_LOCKS: "0", GIT_TERMINAL_PROMPT: "0", LC_ALL: "C", ...extra };
}

const REPO_VARS = new Set([
  "GIT_DIR",
  "GIT_WORK_TREE",
  "GIT_INDEX_FILE",
  "GIT_OBJECT_DIRECTORY",
  "GIT_ALTERNATE_OBJECT_DIRECTORIES",
  "GIT_COMMON_DIR",
  "GIT_PREFIX",
  "GIT_NAMESPACE",
  "GIT_CEILING_DIRECTORIES",
  "GIT_CONFIG",
  "GIT_CONFIG_PARAMETERS",
  "GIT_CONFIG_COUNT",
]);

/**
 * An environment for git over files that came from a guest: no user or system config (so
 * autocrlf and friends cannot change bytes, and nothing configured runs), a fixed identity,
 * and only PATH and the repository variables we set.
 */
export function isolatedGitEnv(home: string, extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: home,
    LC_ALL: "C",
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_CONFIG_GLOBAL: "/dev/null",
    GIT_TERMINAL_PROMPT: "0",
    GIT_OPTIONAL_LOCKS: "0",
    ...BANGER_IDENT,
    ...extra,
  };
}

/** Who banger's own commits (the copied snapshot, the guest's uncommitted work) are by. */
export const BANGER_IDENT = {
  GIT_AUTHOR_NAME: "banger",
  GIT_AUTHOR_EMAIL: "banger@localhost",
  GIT_COMMITTER_NAME: "banger",
  GIT_COMMITTER_EMAIL: "banger@localhost",
} as const;
