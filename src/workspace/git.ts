// Running host git for workspaces: argv only, byte-exact output (patches and paths are not
// always UTF-8), a hard cap instead of silent truncation, and an environment we choose.
//
// The repository is untrusted input (`vm run` exists to contain code you don't trust), and
// git runs programs its config names: filters (clean, smudge, process), textconv and
// diff/merge drivers, gpg, fsmonitor, hooks, pagers, editors, credential helpers, ssh and
// remote transports (a partial clone fetches missing objects on its own), and include.path
// pulls any of them in from another file. Overriding each such key would only be as safe as
// the list is complete, so instead no git that touches objects, an index or a work tree reads
// the repository's config at all:
//
// - It runs in a *view* (openView): a temporary GIT_DIR that banger writes, whose config names
//   only the object format and the user's excludes file, with GIT_OBJECT_DIRECTORY at the
//   repository's objects and GIT_WORK_TREE at its files; no system or global config, no
//   system attributes, HOME inside the view. .gitattributes can still name a driver, but a
//   driver nobody configured is no driver: files are recorded exactly as they are on disk.
//   A partial clone's missing object is an error, never a fetch (no promisor is configured).
//   export.ts builds its view around the guest's objects with the same environment
//   (isolatedGitEnv). Needs git 2.32 for GIT_CONFIG_GLOBAL (Debian 12 ships 2.39).
// - The repository's own GIT_DIR is used only by METADATA commands, which read or write refs
//   and config and run no program but the reference-transaction hook, off through
//   core.hooksPath=/dev/null; since they read its config (and include files), they are
//   bounded in time. gitRaw refuses any other command outside a view, so a new call site
//   cannot forget the rule.
// - findRepo checks the layout git reports: the work tree must be the one its git directory
//   belongs to, so core.worktree or a .git file cannot point the copy at other host files.
import { spawn } from "node:child_process";
import { constants as fsConstants } from "node:fs";
import { copyFile, lstat, mkdir, mkdtemp, open, readdir, realpath, rm, symlink, writeFile } from "node:fs/promises";
import { homedir, tmpdir } from "node:os";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { BangerError, ErrorCode, cancelled, failed, invalidArgument } from "../util/errors.ts";
import { installHint } from "../util/exec.ts";

export interface GitOptions {
  cwd?: string;
  env: NodeJS.ProcessEnv;
  input?: string | Buffer;
  signal?: AbortSignal;
  /** Output beyond this is an error, never a truncated answer. Default 64 MiB. */
  maxOutput?: number;
  /** Receives stdout as it arrives instead of keeping it (the result's stdout is then empty, and maxOutput does not apply). */
  onStdout?: (chunk: Buffer) => void;
}

export interface GitResult {
  code: number;
  stdout: Buffer;
  stderr: string;
}

/**
 * Config every git call gets on its command line, which outranks the repository's: no hooks,
 * no fsmonitor (belt and braces for METADATA commands), and no automatic gc or maintenance,
 * which would repack the repository's objects, even from a view, while a copy of .git is
 * being streamed.
 */
const SAFE_CONFIG = [...["-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "core.untrackedCache=false"], ...["-c", "gc.auto=0", "-c", "maintenance.auto=false"]];

/** The only commands that may run with the repository's own config: refs and config, nothing else. */
const METADATA = new Set(["rev-parse", "symbolic-ref", "update-ref", "show-ref", "check-ref-format", "branch", "config"]);

/** True when git will read no config but $GIT_DIR/config, and GIT_DIR is one we named. */
function isView(env: NodeJS.ProcessEnv): boolean {
  return env.GIT_CONFIG_NOSYSTEM === "1" && env.GIT_CONFIG_GLOBAL === "/dev/null" && !!env.GIT_DIR && env.HOME === env.GIT_DIR;
}

/**
 * How long a METADATA command may take. They are instant, but the repository's config is
 * read, and its include.path may name a fifo that never ends.
 */
export const METADATA_TIMEOUT_MS = 15_000;

/** Runs git; resolves with the exit code whatever it is. */
export function gitRaw(args: readonly string[], opts: GitOptions): Promise<GitResult> {
  const inView = isView(opts.env);
  if (!METADATA.has(args[0] ?? "") && !inView) {
    // A programming error, not a user's: this call would obey the repository's config.
    return Promise.reject(new Error(`git ${args[0]} must run in a view (see src/workspace/git.ts)`));
  }
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
    let timedOut = false;
    const timer = inView ? undefined : setTimeout(() => ((timedOut = true), child.kill("SIGKILL")), METADATA_TIMEOUT_MS);
    child.stdout!.on("data", (b: Buffer) => {
      if (opts.onStdout) return opts.onStdout(b);
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
      clearTimeout(timer);
      if (e.code === "ENOENT") reject(new BangerError(ErrorCode.MissingDependency, "git not found", installHint("git")));
      else if (e.name === "AbortError") reject(cancelled());
      else reject(e);
    });
    child.on("close", (code, sig) => {
      clearTimeout(timer);
      if (opts.signal?.aborted) return reject(cancelled());
      if (timedOut) return reject(failed(`git ${args[0]} did not finish in ${METADATA_TIMEOUT_MS / 1000} s`, "the repository's config may include a file that never ends (a fifo)"));
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

/**
 * For METADATA commands on the user's repository: the user's environment (their own config
 * decides safe.directory and identity) minus variables that would point git at another
 * repository or index.
 */
export function metadataEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (REPO_VARS.has(k)) continue;
    env[k] = v;
  }
  return { ...env, GIT_OPTIONAL_LOCKS: "0", GIT_TERMINAL_PROMPT: "0", GIT_NO_LAZY_FETCH: "1", LC_ALL: "C" };
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
 * The environment of a view whose GIT_DIR is `gitDir`: no user or system config (so autocrlf
 * and friends cannot change bytes, and nothing configured runs), a fixed identity, and only
 * PATH and the repository variables we set.
 */
export function isolatedGitEnv(gitDir: string, extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: gitDir,
    LC_ALL: "C",
    GIT_DIR: gitDir,
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_CONFIG_GLOBAL: "/dev/null",
    GIT_ATTR_NOSYSTEM: "1",
    GIT_TERMINAL_PROMPT: "0",
    GIT_OPTIONAL_LOCKS: "0",
    GIT_NO_LAZY_FETCH: "1",
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

/** A repository as findRepo checked it. */
export interface RepoLayout {
  /** The work tree's top level. */
  top: string;
  /** This work tree's git directory (a linked worktree's own, not the common one). */
  gitDir: string;
  /** Where config, refs and objects live. */
  commonDir: string;
  objectFormat: "sha1" | "sha256";
  /** The user's core.excludesFile (or git's default one), when there is one. */
  excludesFile?: string;
}

/**
 * The repository `dir` is in, or undefined outside a work tree. Fails when the work tree git
 * reports is not the one its git directory belongs to: `<top>/.git` must be that directory
 * itself (not a symlink), or a .git file whose target names `<top>` back (a linked worktree's
 * `gitdir` file, or a submodule's or separate git dir's core.worktree).
 */
export async function findRepo(dir: string, signal?: AbortSignal): Promise<RepoLayout | undefined> {
  const run = { cwd: dir, env: metadataEnv(), signal };
  const res = await gitRaw(["rev-parse", "--show-toplevel", "--absolute-git-dir", "--git-common-dir", "--show-object-format"], run);
  if (res.code !== 0) return undefined; // not inside a work tree
  const lines = res.stdout.toString("utf8").split("\n");
  const [top, gitDir, commonRel, format] = lines;
  if (lines.length !== 5 || !top || !gitDir || !commonRel || (format !== "sha1" && format !== "sha256")) {
    throw invalidArgument(`cannot read the layout of the repository at ${JSON.stringify(dir)}`, "a path with a newline in it is not supported");
  }
  await checkOwnsWorkTree(top, gitDir, run.env);
  const commonDir = resolve(dir, commonRel);
  await checkOwnsCommonDir(top, gitDir, commonDir);
  const excludes = await gitRaw(["config", "--path", "--get", "core.excludesFile"], run);
  const excludesFile = excludes.code === 0 ? excludes.stdout.toString("utf8").replace(/\n$/, "") : defaultExcludesFile();
  return {
    top,
    gitDir,
    commonDir,
    objectFormat: format,
    excludesFile: excludesFile && isAbsolute(excludesFile) ? excludesFile : undefined,
  };
}

/**
 * The CLI acts on a VM's recorded repository (apply, dropping its ref on rm) only when it
 * belongs to the user running it: any client of the socket may record a workspace, so another
 * member of the socket's group could otherwise point one of their VMs at this user's
 * repository. Root may act anywhere, as it could anyway.
 */
export async function checkRepoOwner(top: string, uid = process.getuid?.() ?? 0): Promise<void> {
  if (uid === 0) return;
  const st = await lstat(top).catch(() => undefined);
  if (st && st.uid !== uid) {
    throw invalidArgument(`the repository ${JSON.stringify(top)} is not yours (owner uid ${st.uid})`, "apply or remove a workspace from the account that copied it");
  }
}

/** git's own default when core.excludesFile is unset. */
function defaultExcludesFile(): string {
  return join(process.env.XDG_CONFIG_HOME || join(homedir(), ".config"), "git", "ignore");
}

async function checkOwnsWorkTree(top: string, gitDir: string, env: NodeJS.ProcessEnv): Promise<void> {
  const dotGit = join(top, ".git");
  const st = await lstat(dotGit).catch(() => undefined);
  const real = (p: string) => realpath(p).catch(() => p);
  const [realTop, realGitDir] = [await real(top), await real(gitDir)];
  if (st?.isDirectory() && (await real(dotGit)) === realGitDir) return;
  if (st?.isFile()) {
    // A linked worktree: its git dir's "gitdir" file names <top>/.git.
    const back = await readSmall(join(gitDir, "gitdir"), 64 * 1024);
    if (back && (await real(dirname(resolve(gitDir, back.toString("utf8").trim())))) === realTop) return;
    // A submodule or --separate-git-dir: core.worktree in the git dir's own config names <top>.
    const wt = await gitRaw(["config", "--file", join(gitDir, "config"), "--get", "core.worktree"], { cwd: gitDir, env });
    if (wt.code === 0 && (await real(resolve(gitDir, wt.stdout.toString("utf8").replace(/\n$/, "")))) === realTop) return;
  }
  throw invalidArgument(`${top} is not the work tree of its git directory ${gitDir}`, "its .git or core.worktree points elsewhere; copy a checkout whose .git belongs to it, or use --no-workspace");
}

/**
 * The common directory (config, refs, objects: what is shipped as .git) must be the git
 * directory itself, or the repository a linked worktree belongs to (its git directory is
 * <common>/worktrees/<name>). Otherwise a `commondir` file, which any git directory may hold,
 * would ship another host repository's history and config.
 */
async function checkOwnsCommonDir(top: string, gitDir: string, commonDir: string): Promise<void> {
  const real = (p: string) => realpath(p).catch(() => p);
  const [realGit, realCommon] = [await real(gitDir), await real(commonDir)];
  if (realGit === realCommon || dirname(realGit) === join(realCommon, "worktrees")) return;
  throw invalidArgument(
    `${top} is not the work tree of its git directory ${gitDir}: it shares the git directory ${commonDir}`,
    "its git directory's commondir file points at another repository; copy a checkout whose .git belongs to it, or use --no-workspace",
  );
}

/** A regular file's bytes up to `max` (never through a symlink, never blocking on a fifo); undefined otherwise. */
export async function readSmall(path: string, max: number): Promise<Buffer | undefined> {
  const fh = await open(path, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK).catch(() => undefined);
  if (!fh) return undefined;
  try {
    const st = await fh.stat();
    if (!st.isFile() || st.size > max) return undefined;
    return await fh.readFile();
  } finally {
    await fh.close();
  }
}

export interface ViewOptions {
  /** The work tree git sees; default the repository's top level. */
  workTree?: string;
  /** Start from a copy of the repository's index (its stat cache spares re-hashing); default an empty one. */
  copyIndex?: boolean;
  /** The view's HEAD (detached); default an unborn branch. */
  head?: string;
}

export interface GitView {
  /** The environment for every git call on this view. */
  env: NodeJS.ProcessEnv;
  /** The view's index file (written by git, never the repository's). */
  index: string;
  close(): Promise<void>;
}

/** A view of `repo` (see the file header); the caller closes it. */
export async function openView(repo: RepoLayout, opts: ViewOptions = {}): Promise<GitView> {
  const dir = await mkdtemp(join(tmpdir(), "banger-git-"));
  const close = () => rm(dir, { recursive: true, force: true });
  try {
    const index = join(dir, "index");
    const env = isolatedGitEnv(dir, { GIT_OBJECT_DIRECTORY: join(repo.commonDir, "objects"), GIT_WORK_TREE: opts.workTree ?? repo.top, GIT_INDEX_FILE: index });
    await mkdir(join(dir, "refs"));
    await mkdir(join(dir, "info"));
    await writeFile(join(dir, "HEAD"), opts.head ? `${opts.head}\n` : "ref: refs/heads/banger-view\n");
    await writeFile(join(dir, "config"), viewConfig(repo.objectFormat));
    // Through git, which quotes the value: a path is data, never config syntax.
    if (repo.excludesFile) await git(["config", "--file", join(dir, "config"), "core.excludesFile", repo.excludesFile], { cwd: dir, env });
    for (const name of ["exclude", "attributes"]) {
      const data = await readSmall(join(repo.commonDir, "info", name), 16 * 1024 * 1024);
      if (data) await writeFile(join(dir, "info", name), data);
    }
    if (opts.copyIndex) await copyIndex(repo.gitDir, dir, index);
    return { env, index, close };
  } catch (err) {
    await close();
    throw err;
  }
}

function viewConfig(format: "sha1" | "sha256"): string {
  const core = `[core]\n\trepositoryformatversion = ${format === "sha256" ? 1 : 0}\n\tbare = false\n`;
  return format === "sha256" ? `${core}[extensions]\n\tobjectformat = sha256\n` : core;
}

/**
 * The largest index copied (and shipped, held in memory): a 3.5-million-file index is about
 * 400 MiB. A larger one, such as a sparse file a hostile repository holds, would fill the
 * temporary directory before git found it corrupt.
 */
export const MAX_INDEX_BYTES = 1024 ** 3;

/** The repository's index (a regular file) and, for a split index, the shared parts it names. */
async function copyIndex(gitDir: string, viewDir: string, index: string): Promise<void> {
  const st = await lstat(join(gitDir, "index")).catch(() => undefined);
  if (!st?.isFile()) return;
  if (st.size > MAX_INDEX_BYTES) {
    throw invalidArgument(
      `the index ${join(gitDir, "index")} is larger than ${MAX_INDEX_BYTES / 1024 ** 2} MiB (${st.size} bytes)`,
      "copying a repository with an index this big is not supported; use --no-workspace",
    );
  }
  await copyFile(join(gitDir, "index"), index);
  for (const name of await readdir(gitDir)) {
    if (/^sharedindex\.[0-9a-f]{40,64}$/.test(name)) await symlink(join(gitDir, name), join(viewDir, name));
  }
}

/** The committer the user's own config names, for commits made on their behalf; banger's when none. */
export async function userIdent(repo: RepoLayout): Promise<NodeJS.ProcessEnv> {
  const { name, email } = await userConfig(repo);
  const [n, e] = [name.trim(), email.trim()];
  if (!n || !e) return { GIT_COMMITTER_NAME: BANGER_IDENT.GIT_COMMITTER_NAME, GIT_COMMITTER_EMAIL: BANGER_IDENT.GIT_COMMITTER_EMAIL };
  return { GIT_COMMITTER_NAME: n, GIT_COMMITTER_EMAIL: e };
}

/** The user's effective `user.name` and `user.email` for this repository ("" when unset), read as metadata. */
export async function userConfig(repo: RepoLayout, signal?: AbortSignal): Promise<{ name: string; email: string }> {
  const get = async (key: string) => {
    const res = await gitRaw(["config", "--get", key], { cwd: repo.top, env: metadataEnv(), signal });
    return res.code === 0 ? res.stdout.toString("utf8").replace(/\n$/, "") : "";
  };
  return { name: await get("user.name"), email: await get("user.email") };
}
