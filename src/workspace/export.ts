// exportPatch: everything the guest changed relative to the copied commit, as one mbox of
// `git format-patch` patches. Computed on the host (the image needs no git): the guest's
// workspace comes back through files.get into a temporary directory, host git runs there in
// a view of banger's making (git.ts: no user, system or repository config) against the
// guest's objects plus the host repository's (alternates), and the directory is removed
// whatever happens.
//
// Guest commits since the copied commit become one patch each; uncommitted and untracked
// (not ignored) changes become a last commit "banger: uncommitted changes in <vm>" whose
// author date is its parent's, so the same guest state always gives the same bytes. When
// the guest's history is not a straight line from the copied commit (merges, a reset below
// it, a deleted .git), the whole difference is one squashed patch instead.
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { isAbsolute, join } from "node:path";
import type { AgentClient } from "../guest/index.ts";
import { invalidArgument } from "../util/errors.ts";
import { validateName } from "../util/names.ts";
import { DEFAULT_GUEST_WORKSPACE } from "./copyin.ts";
import { extractGuestTree, spoolArchive } from "./extract.ts";
import { findRepo, git, gitLine, gitRaw, isolatedGitEnv, type GitOptions } from "./git.ts";

export interface ExportOptions {
  vmName: string;
  /** Guest directory the workspace was copied to; default /workspace. */
  workspace?: string;
  /** HEAD of the host repository at copy time (reported back; null before the first commit). */
  baseCommit: string | null;
  /** The commit holding the copied state (PackedWorkspace.copiedCommit). */
  copiedCommit: string | null;
  /** The host repository the workspace came from (its objects back the guest's). */
  hostRepo: string;
  /** Scratch space for the guest's files; default the OS temp directory. */
  tmpDir?: string;
  /** Bounds on what the guest may send back. Defaults: 16 GiB, 4 million entries, 2 GiB of patch. */
  maxBytes?: number;
  maxEntries?: number;
  maxPatchBytes?: number;
  signal?: AbortSignal;
}

export interface ExportedPatch {
  /** An mbox of format-patch patches (empty when nothing changed); `git am` applies it. */
  patch: Buffer;
  baseCommit: string | null;
  /** What the patch applies to (also in its `base-commit:` line). */
  copiedCommit: string;
  /** Commits made in the guest that the patch carries one by one (0 when squashed). */
  commits: number;
  hasUncommitted: boolean;
  /** The guest's history was not linear from the copied commit: one patch holds everything. */
  squashed: boolean;
}

/** Computes the guest's changes; a pure function of the guest's workspace and the copied commit. */
export async function exportPatch(agent: AgentClient, opts: ExportOptions): Promise<ExportedPatch> {
  validateName("vm", opts.vmName);
  if (!opts.copiedCommit) {
    throw invalidArgument(`the workspace of ${opts.vmName} was not copied from a git repository: there is nothing to compare it with`, "copy files out with the agent instead");
  }
  const workspace = opts.workspace ?? DEFAULT_GUEST_WORKSPACE;
  if (!isAbsolute(workspace)) throw invalidArgument(`guest workspace ${JSON.stringify(workspace)} must be an absolute path`);
  const hostObjects = await hostObjectsDir(opts.hostRepo);
  const tmp = await mkdtemp(join(opts.tmpDir ?? tmpdir(), "banger-export-"));
  try {
    const dirs = { work: join(tmp, "work"), gitDir: join(tmp, "git") };
    await mkdir(dirs.work);
    await mkdir(dirs.gitDir);
    const limits = { maxBytes: opts.maxBytes ?? 16 * 1024 ** 3, maxEntries: opts.maxEntries ?? 4_000_000 };
    // Tar headers and padding on top of the content limit.
    const spoolLimit = limits.maxBytes + limits.maxEntries * 1536;
    const spool = join(tmp, "workspace.tar");
    const archive = await spoolArchive(await agent.getFiles(workspace), spool, spoolLimit, opts.signal);
    await extractGuestTree(archive, dirs, limits, opts.signal);
    await rm(spool);
    await prepareGitDir(dirs.gitDir, hostObjects, opts.copiedCommit);
    const env = isolatedGitEnv(dirs.gitDir, { GIT_WORK_TREE: dirs.work, GIT_INDEX_FILE: join(tmp, "index") });
    const run: GitOptions = { cwd: dirs.work, env, signal: opts.signal };
    const copied = await gitLine(["rev-parse", "--verify", `${opts.copiedCommit}^{commit}`], run);
    const series = await guestSeries(copied, opts.vmName, run);
    const patch =
      series.tip === copied
        ? Buffer.alloc(0)
        : await git(["format-patch", "--stdout", "--binary", "--no-signature", "--no-renames", `--base=${copied}`, `${copied}..${series.tip}`], {
            ...run,
            maxOutput: opts.maxPatchBytes ?? 2 * 1024 ** 3,
          });
    return { patch, baseCommit: opts.baseCommit, copiedCommit: copied, commits: series.commits, hasUncommitted: series.hasUncommitted, squashed: series.squashed };
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

async function hostObjectsDir(hostRepo: string): Promise<string> {
  const repo = await findRepo(hostRepo);
  if (!repo) throw invalidArgument(`${hostRepo} is not a git repository`, "export needs the repository the workspace was copied from");
  return join(repo.commonDir, "objects");
}

/** A minimal repository around the guest's objects and refs: our config, the host's objects as a fallback. */
async function prepareGitDir(gitDir: string, hostObjects: string, copied: string): Promise<void> {
  await mkdir(join(gitDir, "objects", "info"), { recursive: true });
  await mkdir(join(gitDir, "refs"), { recursive: true });
  const sha256 = copied.length === 64;
  const config = sha256 ? "[core]\n\trepositoryformatversion = 1\n\tbare = false\n[extensions]\n\tobjectformat = sha256\n" : "[core]\n\trepositoryformatversion = 0\n\tbare = false\n";
  await writeFile(join(gitDir, "config"), config);
  await writeFile(join(gitDir, "objects", "info", "alternates"), `${hostObjects}\n`);
  // A guest without .git (or without HEAD) is compared as a plain tree against the copied commit.
  await writeFile(join(gitDir, "HEAD"), `${copied}\n`, { flag: "wx" }).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== "EEXIST") throw err;
  });
}

interface Series {
  tip: string;
  commits: number;
  hasUncommitted: boolean;
  squashed: boolean;
}

/** The commit range to format: the guest's commits (if linear) plus one for its uncommitted state. */
async function guestSeries(copied: string, vmName: string, run: GitOptions): Promise<Series> {
  const headRes = await gitRaw(["rev-parse", "-q", "--verify", "HEAD^{commit}"], run);
  const head = headRes.code === 0 ? headRes.stdout.toString("utf8").trim() : copied;
  const linear = head === copied || (await isLinearFrom(copied, head, run));
  const parent = linear ? head : copied;
  const commits = linear && head !== copied ? Number(await gitLine(["rev-list", "--count", `${copied}..${head}`], run)) : 0;
  const tree = await worktreeTree(parent, run);
  if (tree === (await gitLine(["rev-parse", `${parent}^{tree}`], run))) return { tip: parent, commits, hasUncommitted: false, squashed: false };
  const date = `@${await gitLine(["log", "-1", "--format=%ct", parent], run)} +0000`;
  const message = linear ? `banger: uncommitted changes in ${vmName}` : `banger: all changes in ${vmName} (squashed: the guest's history does not continue the copied commit)`;
  const tip = await gitLine(["commit-tree", tree, "-p", parent, "-m", message], {
    ...run,
    env: { ...run.env, GIT_AUTHOR_DATE: date, GIT_COMMITTER_DATE: date },
  });
  return { tip, commits, hasUncommitted: true, squashed: !linear };
}

async function isLinearFrom(copied: string, head: string, run: GitOptions): Promise<boolean> {
  const anc = await gitRaw(["merge-base", "--is-ancestor", copied, head], run);
  if (anc.code !== 0) return false;
  return (await gitLine(["rev-list", "--count", "--merges", `${copied}..${head}`], run)) === "0";
}

/**
 * The guest's work tree as a tree object: `parent`'s tree updated by `git add -A`, with
 * submodule paths left as they are in `parent` (their insides are another repository's).
 */
async function worktreeTree(parent: string, run: GitOptions): Promise<string> {
  await git(["read-tree", parent], run);
  const listing = await git(["ls-tree", "-r", "-z", parent], { ...run, maxOutput: 1024 ** 3 });
  const gitlinks = listing
    .toString("utf8")
    .split("\0")
    .filter((rec) => rec.startsWith("160000 "))
    .map((rec) => rec.slice(rec.indexOf("\t") + 1));
  await git(["add", "-A", "--", ".", ...gitlinks.map((p) => `:(exclude,literal)${p}`)], run);
  return gitLine(["write-tree"], run);
}
