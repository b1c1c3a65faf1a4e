// The repository side of a workspace copy (plan.ts validates and decides; this file knows git).
//
// What the guest gets is the host's checkout as it is, work in progress included:
// - files: what `git add -A` would see (tracked files plus untracked, not ignored ones, minus
//   tracked files deleted on disk), submodules with their content and git metadata (each
//   recorded at the commit the index names), minus untracked secrets (secrets.ts);
// - .git: the repository's own, with HEAD on the same branch and commit as the host's and
//   the user's own index, so in the guest `git status` and `git diff` show the same staged,
//   unstaged and untracked changes as on the host; config gains the user's effective
//   user.name/user.email, so the guest's commits are the user's.
// The state copied is recorded on the host, like `git stash` records one, without touching
// the user's index, work tree or branches: the "copied commit" has the copied work tree as
// its tree, HEAD as its first parent and a commit of the user's index as its second (HEAD
// itself when nothing was uncommitted). refs/banger/copied/<vm> keeps it alive; export.ts
// diffs the guest against it.
import { lstat, mkdtemp, readFile, readdir, realpath, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cancelled, invalidArgument } from "../util/errors.ts";
import { validateName } from "../util/names.ts";
import { shown } from "../util/paths.ts";
import { type EntryList, joinName } from "./entries.ts";
import { checkRepoOwner, findRepo, git, gitLine, gitRaw, metadataEnv, openView, readSmall, userConfig, type GitView, type RepoLayout } from "./git.ts";
import type { SecretFilter } from "./secrets.ts";

/** Drops refs/banger/copied/<vmName> (when the VM is gone), letting git collect its copied commit. */
export async function releaseWorkspace(hostRepo: string, vmName: string): Promise<void> {
  validateName("vm", vmName);
  await checkRepoOwner(hostRepo);
  const res = await gitRaw(["update-ref", "-d", copiedRef(vmName)], { cwd: hostRepo, env: metadataEnv() });
  if (res.code !== 0 && !/not a git repository/i.test(res.stderr)) throw invalidArgument(`cannot drop ${copiedRef(vmName)} in ${hostRepo}: ${res.stderr.trim()}`);
}

/** Records refs/banger/copied/<vmName> at the copied commit. */
export async function recordCopied(top: string, vmName: string, commit: string, signal?: AbortSignal): Promise<void> {
  validateName("vm", vmName);
  await git(["update-ref", "-m", "banger: workspace copy", copiedRef(vmName), commit], { cwd: top, env: metadataEnv(), signal });
}

export interface RepoListing {
  baseCommit: string | null;
  copiedCommit: string;
}

/** Lists the repository's copy into `list` and records the copied commit (unreferenced until recordCopied). */
export async function listRepo(repo: RepoLayout, list: EntryList, filter: SecretFilter, opts: { includeGit?: boolean; signal?: AbortSignal }): Promise<RepoListing> {
  const meta = { cwd: repo.top, env: metadataEnv(), signal: opts.signal };
  // Only the name: the object is read in the view (a metadata command never reads objects).
  const head = await gitRaw(["rev-parse", "-q", "--verify", "HEAD"], meta);
  const view = await openView(repo, { copyIndex: true });
  try {
    const snap = await snapshot(view, head.code === 0 ? head.stdout.toString("utf8").trim() : null, filter, opts.signal);
    await list.addDir(".", repo.top);
    await addRepoFiles(list, ".", repo.top, snap.stages, filter, opts.signal);
    if (opts.includeGit !== false) await addGitDir(list, repo, snap, opts.signal);
    return { baseCommit: snap.base, copiedCommit: snap.commit };
  } finally {
    await view.close();
  }
}

interface Snapshot {
  /** HEAD's commit; null before the first commit. */
  base: string | null;
  commit: string;
  /** The user's index as it was (shipped as the guest's .git/index); undefined when there is none. */
  userIndex: Buffer | undefined;
  /** `git ls-files -s -z` of the copied work tree (what is shipped). */
  stages: Buffer;
}

/**
 * Records the copied state through the view's index, which starts as a copy of the user's
 * (its stat cache spares re-hashing): the index as a tree, then `git add -A` minus untracked
 * secrets as the work tree's tree, then the copied commit over both (see the file header).
 */
async function snapshot(view: GitView, head: string | null, filter: SecretFilter, signal?: AbortSignal): Promise<Snapshot> {
  const run = { cwd: view.env.GIT_WORK_TREE, env: view.env, signal };
  const base = head === null ? null : await gitLine(["rev-parse", "--verify", `${head}^{commit}`], run);
  const userIndex = await readFile(view.index).catch(() => undefined);
  const headTree = base === null ? await emptyTree(run) : await gitLine(["rev-parse", `${base}^{tree}`], run);
  // A partial clone may lack blobs the index names: they stay missing rather than fetched (git.ts).
  // An index with conflicts has no tree: HEAD's stands in (export then sees staged work as unstaged).
  const wt = await gitRaw(["write-tree", "--missing-ok"], run);
  const indexTree = wt.code === 0 ? wt.stdout.toString("utf8").trim() : headTree;
  const others = await git(["ls-files", "-z", "--others", "--exclude-standard"], { ...run, maxOutput: 1024 * 1024 * 1024 });
  const secrets = splitZ(others).filter((path) => filter.verdict(path, false) === "skip");
  // Submodules are left as the index records them: for a gitlink, `git add -A` runs `git
  // status` inside the submodule, and that child obeys the submodule's own config (its
  // filters, textconv), which nothing here controls. export.ts's worktreeTree does the same.
  const gitlinks = parseStages(await git(["ls-files", "-s", "-z"], { ...run, maxOutput: 1024 * 1024 * 1024 }))
    .filter((e) => e.mode === "160000")
    .map((e) => `:(exclude,literal)${e.path}`);
  await git(["add", "-A", "--", ".", ...gitlinks], run);
  if (secrets.length > 0) await git(["update-index", "--force-remove", "-z", "--stdin"], { ...run, input: Buffer.from(`${secrets.join("\0")}\0`) });
  const tree = await gitLine(["write-tree", "--missing-ok"], run);
  let commit = base;
  if (base === null || tree !== headTree || indexTree !== headTree) {
    const parent = base === null ? [] : ["-p", base];
    const index = await gitLine(["commit-tree", indexTree, ...parent, "-m", "banger: index copied"], run);
    commit = await gitLine(["commit-tree", tree, ...parent, "-p", index, "-m", "banger: work in progress copied"], run);
  }
  const stages = await git(["ls-files", "-s", "-z"], { ...run, maxOutput: 1024 * 1024 * 1024 });
  return { base, commit: commit!, userIndex, stages };
}

/** The empty tree's id in this repository's object format (written, so later commands find it). */
export async function emptyTree(run: { cwd?: string; env: NodeJS.ProcessEnv; signal?: AbortSignal }): Promise<string> {
  return gitLine(["hash-object", "-t", "tree", "-w", "--stdin"], { ...run, input: "" });
}

/**
 * Adds the files an index lists (`ls-files -s -z` output), recursing into submodules. The
 * index is the repository's: a name git would never record ("../x", "/x", ".git/x") is
 * refused, and a path under a symlink or a file is absent, as git itself sees it (a nested
 * repository's index is not re-read by `git add -A`, so this is the only check it gets).
 */
async function addRepoFiles(list: EntryList, prefix: string, top: string, stages: Buffer, filter: SecretFilter, signal?: AbortSignal): Promise<void> {
  const realDirs = new Map<string, boolean>();
  for (const { mode, path } of parseStages(stages)) {
    if (signal?.aborted) throw cancelled();
    const name = joinName(prefix, path);
    if (path.split("/").some((part) => part === "" || part === "." || part === ".." || part.toLowerCase() === ".git")) {
      throw invalidArgument(
        `the index of ${top} names ${shown(path)}, a path git never records`,
        "the repository's index was written by hand; rebuild it with git read-tree HEAD, or use --no-workspace",
      );
    }
    if (!(await underRealDirs(top, path, realDirs))) continue;
    const abs = join(top, path);
    if (mode === "160000") await addSubmodule(list, name, abs, filter, signal);
    else await list.addPath(name, abs); // a tracked file deleted on disk is simply absent
  }
}

/** True when every directory above `path` inside `top` is a real directory, not a symlink (memoised in `seen`). */
async function underRealDirs(top: string, path: string, seen: Map<string, boolean>): Promise<boolean> {
  let dir = top;
  for (const part of path.split("/").slice(0, -1)) {
    dir = join(dir, part);
    let ok = seen.get(dir);
    if (ok === undefined) {
      ok = (await lstat(dir).catch(() => undefined))?.isDirectory() ?? false;
      seen.set(dir, ok);
    }
    if (!ok) return false;
  }
  return true;
}

/**
 * A submodule (or nested repository) with its content: its own tracked and untracked files
 * (minus untracked secrets), and its `.git` (a gitfile pointing into the parent's
 * .git/modules, shipped with the parent's .git, or a directory). Left as an empty directory
 * when not checked out.
 */
async function addSubmodule(list: EntryList, name: string, abs: string, filter: SecretFilter, signal?: AbortSignal): Promise<void> {
  if (!(await list.addPath(name, abs))) return;
  if (!(await lstat(abs)).isDirectory()) return; // a symlink (to another repository, say) is copied as a symlink
  const dotGit = await lstat(join(abs, ".git")).catch(() => undefined);
  if (!dotGit) return;
  const repo = await findRepo(abs, signal);
  if (repo?.top !== (await realpath(abs))) return; // not a repository of its own after all
  const view = await openView(repo, { copyIndex: true });
  try {
    const run = { cwd: abs, env: view.env, signal, maxOutput: 1024 * 1024 * 1024 };
    await addRepoFiles(list, name, abs, await git(["ls-files", "-s", "-z"], run), filter, signal);
    const others = await git(["ls-files", "-z", "--others", "--exclude-standard"], run);
    for (const path of splitZ(others)) {
      if (filter.verdict(joinName(name, path), false) !== "skip") await list.addPath(joinName(name, path), join(abs, path));
    }
  } finally {
    await view.close();
  }
  await list.addPath(`${name}/.git`, join(abs, ".git"));
  if (dotGit.isDirectory()) await list.walk(`${name}/.git`, join(abs, ".git"), shippedFromGitDir);
}

/**
 * The repository's .git as the host has it: HEAD on the same branch (or detached commit),
 * the user's own index, the repository's refs (not banger's own), and a config with the
 * user's identity. A linked worktree's or gitfile's repository is flattened into a plain
 * .git directory (common dir + this worktree's HEAD and index) without core.worktree.
 */
async function addGitDir(list: EntryList, repo: RepoLayout, snap: Snapshot, signal?: AbortSignal): Promise<void> {
  const { top, gitDir, commonDir } = repo;
  const now = new Date();
  const branch = await gitRaw(["symbolic-ref", "-q", "HEAD"], { cwd: top, env: metadataEnv(), signal });
  const branchRef = branch.code === 0 ? branch.stdout.toString("utf8").trim() : undefined;
  const overrides = new Map<string, Buffer>();
  if (snap.userIndex) overrides.set(".git/index", snap.userIndex);
  overrides.set(".git/HEAD", Buffer.from(branchRef?.startsWith("refs/heads/") ? `ref: ${branchRef}\n` : `${snap.base ?? snap.commit}\n`));
  overrides.set(".git/config", await guestConfig(repo, signal));
  const skip = new Set([".git/index", ".git/worktrees", ".git/refs/banger"]);
  await list.addDir(".git", commonDir);
  await list.walk(".git", commonDir, (name) => !overrides.has(name) && !skip.has(name) && shippedFromGitDir(name));
  // A linked worktree's split index names shared parts that live in its own git dir.
  if (gitDir !== commonDir && snap.userIndex) {
    for (const name of await readdir(gitDir)) {
      if (/^sharedindex\.[0-9a-f]{40,64}$/.test(name)) await list.addPath(`.git/${name}`, join(gitDir, name));
    }
  }
  for (const [name, data] of overrides) await list.addData(name, data, now);
}

/**
 * The guest's .git/config: the repository's own (the guest may obey it: it is the guest's
 * business), minus core.worktree (a host path), plus user.name and user.email as the host's
 * git would use them here. Values are written by git itself, so they stay values.
 */
async function guestConfig(repo: RepoLayout, signal?: AbortSignal): Promise<Buffer> {
  const tmp = await mkdtemp(join(tmpdir(), "banger-ws-"));
  try {
    const file = join(tmp, "config");
    await writeFile(file, (await readSmall(join(repo.commonDir, "config"), 16 * 1024 * 1024)) ?? "");
    const edit = { cwd: tmp, env: metadataEnv(), signal };
    await gitRaw(["config", "--file", file, "--unset-all", "core.worktree"], edit); // status 5: was not set
    const { name, email } = await userConfig(repo, signal);
    for (const [key, text] of [
      ["user.name", name],
      ["user.email", email],
    ] as const) {
      if (text !== "") await git(["config", "--file", file, "--replace-all", key, text], edit);
    }
    return await readFile(file);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/**
 * Everything in a .git is shipped but lock files (they would block git in the guest) and
 * alternates (host paths, meaningless in the guest and none of its business).
 */
function shippedFromGitDir(name: string): boolean {
  return !name.endsWith(".lock") && !/\/objects\/info\/(http-)?alternates$/.test(name);
}

function parseStages(buf: Buffer): Array<{ mode: string; path: string }> {
  const out: Array<{ mode: string; path: string }> = [];
  const seen = new Set<string>();
  for (const rec of splitZ(buf)) {
    // "<mode> <object> <stage>\t<path>"
    const tab = rec.indexOf("\t");
    if (tab < 0) continue;
    const path = rec.slice(tab + 1);
    if (seen.has(path)) continue; // unmerged paths list once per stage
    seen.add(path);
    out.push({ mode: rec.slice(0, rec.indexOf(" ")), path });
  }
  return out;
}

function splitZ(buf: Buffer): string[] {
  return buf
    .toString("utf8")
    .split("\0")
    .filter((s) => s !== "");
}

/**
 * The ref keeping a VM's copied commit alive. Not refs/banger/<vm>: git resolves the short
 * name "banger/<vm>" as refs/<name> before refs/heads/<name>, so it would shadow the
 * banger/<vm> branch that applyPatch creates.
 */
export function copiedRef(vmName: string): string {
  return `refs/banger/copied/${vmName}`;
}
