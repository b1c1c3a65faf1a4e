// applyPatch: an exported patch onto a new branch of the host repository, starting at the
// HEAD the workspace was copied from, in a temporary work tree, so the user's working tree,
// index and current branch are never touched. The branch holds only the guest's changes
// (series.ts), so merging or checking it out does not collide with the host's own
// uncommitted or untracked files unless the guest changed those same files. Neither
// the repository's config nor its hooks are obeyed (see git.ts); the patch came from a guest.
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { alreadyExists, failed, invalidArgument, notFound } from "../util/errors.ts";
import { checkRepoOwner, findRepo, git, gitFailed, gitLine, gitRaw, metadataEnv, openView, userIdent, type GitOptions } from "./git.ts";

export interface ApplyOptions {
  /** The branch to create, e.g. banger/<vm>. */
  branch: string;
  /**
   * The commit the patch applies to: the host's HEAD when the workspace was copied, as the
   * host recorded it (null: the repository had no commit, the series starts at the root).
   * Never taken from the patch, whose text (a `base-commit:` line in a guest's commit
   * message) the guest writes.
   */
  base: string | null;
  /** Replace the branch if it exists. */
  force?: boolean;
  signal?: AbortSignal;
}

export interface AppliedPatch {
  branch: string;
  /** The new branch's tip. */
  head: string;
  base: string | null;
  /** Commits on the branch above base. */
  commits: number;
}

const COMMIT_ID = /^[0-9a-f]{40}([0-9a-f]{24})?$/;

/**
 * Applies `patch` (exportPatch's mbox) on `opts.branch` starting at the recorded base. `git am`
 * runs in a view (see git.ts) over a temporary work tree; only the final branch update
 * touches the repository itself.
 */
export async function applyPatch(hostRepo: string, patch: string | Buffer, opts: ApplyOptions): Promise<AppliedPatch> {
  const body = Buffer.isBuffer(patch) ? patch : Buffer.from(patch, "utf8");
  if (body.length === 0) throw invalidArgument("the patch is empty: the guest changed nothing", "nothing to apply");
  if (opts.base !== null && (typeof opts.base !== "string" || !COMMIT_ID.test(opts.base)))
    throw invalidArgument("applying a patch needs the recorded base commit (a full commit id, or null for a root series)");
  const repo = await findRepo(hostRepo, opts.signal);
  if (!repo) throw invalidArgument(`${hostRepo} is not a git repository`, "apply in the repository the workspace was copied from");
  await checkRepoOwner(repo.top);
  const meta: GitOptions = { cwd: repo.top, env: metadataEnv(), signal: opts.signal };
  const branchCheck = await gitRaw(["check-ref-format", "--branch", opts.branch], meta);
  if (branchCheck.code !== 0) throw invalidArgument(`${JSON.stringify(opts.branch)} is not a valid branch name`);
  const exists = (await gitRaw(["show-ref", "--verify", "--quiet", `refs/heads/${opts.branch}`], meta)).code === 0;
  if (exists && !opts.force) {
    throw alreadyExists(`branch ${opts.branch} already exists`, "pass --force to replace it, or choose another name with --branch");
  }
  const tmp = await mkdtemp(join(tmpdir(), "banger-apply-"));
  const wt = join(tmp, "wt");
  try {
    await mkdir(wt);
    const view = await openView(repo, { workTree: wt, head: opts.base ?? undefined });
    let head: string;
    let commits: number;
    try {
      const run: GitOptions = { cwd: wt, env: { ...view.env, ...(await userIdent(repo)) }, signal: opts.signal };
      const base = opts.base === null ? null : await resolveBase(opts.base, run, repo.top);
      await git(base === null ? ["read-tree", "--empty"] : ["read-tree", "--reset", "-u", base], run);
      const am = await gitRaw(["am", "--quiet", "--keep-cr", "--no-3way"], { ...run, input: body });
      if (am.code !== 0) {
        const why = gitFailed(["am"], am).message;
        throw failed(`the patch does not apply to ${base?.slice(0, 12) ?? "an empty tree"}: ${why}`, "export it again from the VM, or apply it by hand with git am");
      }
      head = await gitLine(["rev-parse", "HEAD"], run);
      commits = Number(await gitLine(["rev-list", "--count", base === null ? head : `${base}..${head}`], run));
    } finally {
      await view.close();
    }
    await git(["branch", ...(opts.force ? ["-f"] : []), opts.branch, head], meta);
    return { branch: opts.branch, head, base: opts.base, commits };
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

async function resolveBase(base: string, run: GitOptions, where: string): Promise<string> {
  const res = await gitRaw(["rev-parse", "-q", "--verify", `${base}^{commit}`], run);
  if (res.code !== 0) {
    throw notFound(`commit ${base.slice(0, 12)} (the HEAD the workspace was copied from) in ${where}`, "apply in the repository the workspace came from");
  }
  return res.stdout.toString("utf8").trim();
}
