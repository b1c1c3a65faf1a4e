// applyPatch: an exported patch onto a new branch of the host repository, in a temporary
// worktree, so the user's working tree, index and current branch are never touched. Hooks
// are off: the patch came from a guest.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { alreadyExists, failed, invalidArgument, notFound } from "../util/errors.ts";
import { BANGER_IDENT, git, gitFailed, gitLine, gitRaw, hostGitEnv, type GitOptions } from "./git.ts";

export interface ApplyOptions {
  /** The branch to create, e.g. banger/<vm>. */
  branch: string;
  /** The commit the patch applies to; default the patch's `base-commit:` line. */
  base?: string;
  /** Replace the branch if it exists. */
  force?: boolean;
  signal?: AbortSignal;
}

export interface AppliedPatch {
  branch: string;
  /** The new branch's tip. */
  head: string;
  base: string;
  /** Commits on the branch above base. */
  commits: number;
}

/** Applies `patch` (exportPatch's mbox) on `opts.branch` starting at the copied commit. */
export async function applyPatch(hostRepo: string, patch: string | Buffer, opts: ApplyOptions): Promise<AppliedPatch> {
  const body = Buffer.isBuffer(patch) ? patch : Buffer.from(patch, "utf8");
  if (body.length === 0) throw invalidArgument("the patch is empty: the guest changed nothing", "nothing to apply");
  const run: GitOptions = { cwd: hostRepo, env: hostGitEnv(), signal: opts.signal };
  const branchCheck = await gitRaw(["check-ref-format", "--branch", opts.branch], run);
  if (branchCheck.code !== 0) throw invalidArgument(`${JSON.stringify(opts.branch)} is not a valid branch name`);
  const base = await resolveBase(body, opts.base, run);
  const exists = (await gitRaw(["show-ref", "--verify", "--quiet", `refs/heads/${opts.branch}`], run)).code === 0;
  if (exists && !opts.force) {
    throw alreadyExists(`branch ${opts.branch} already exists`, "pass --force to replace it, or choose another name with --branch");
  }
  run.env = { ...run.env, ...(await identityFallback(run)) };
  const tmp = await mkdtemp(join(tmpdir(), "banger-apply-"));
  const wt = join(tmp, "wt");
  try {
    await git(["worktree", "add", "--detach", "--quiet", wt, base], run);
    const am = await gitRaw(["am", "--quiet", "--keep-cr", "--no-3way"], { ...run, cwd: wt, input: body });
    if (am.code !== 0) {
      await gitRaw(["am", "--abort"], { ...run, cwd: wt });
      const why = gitFailed(["am"], am).message;
      throw failed(`the patch does not apply to ${base.slice(0, 12)}: ${why}`, "export it again from the VM, or apply it by hand with git am");
    }
    const head = await gitLine(["rev-parse", "HEAD"], { ...run, cwd: wt });
    await git(["branch", ...(opts.force ? ["-f"] : []), opts.branch, head], run);
    const commits = Number(await gitLine(["rev-list", "--count", `${base}..${head}`], run));
    return { branch: opts.branch, head, base, commits };
  } finally {
    await gitRaw(["worktree", "remove", "--force", wt], { ...run, signal: undefined });
    await rm(tmp, { recursive: true, force: true });
    await gitRaw(["worktree", "prune"], { ...run, signal: undefined });
  }
}

async function resolveBase(patch: Buffer, given: string | undefined, run: GitOptions): Promise<string> {
  const base = given ?? /^base-commit: ([0-9a-f]{40,64})$/m.exec(patch.toString("latin1"))?.[1];
  if (!base) throw invalidArgument("the patch does not say which commit it applies to", "pass the copied commit as the base");
  const res = await gitRaw(["rev-parse", "-q", "--verify", `${base}^{commit}`], run);
  if (res.code !== 0) {
    throw notFound(`commit ${base.slice(0, 12)} (the copied workspace state) in ${run.cwd}`, "it is kept as refs/banger/copied/<vm> while the VM exists; apply in the repository the workspace came from");
  }
  return res.stdout.toString("utf8").trim();
}

/** `git am` records a committer; a host without user.name/email gets banger's identity instead of a failure. */
async function identityFallback(run: GitOptions): Promise<NodeJS.ProcessEnv> {
  const res = await gitRaw(["var", "GIT_COMMITTER_IDENT"], run);
  return res.code === 0 ? {} : { GIT_COMMITTER_NAME: BANGER_IDENT.GIT_COMMITTER_NAME, GIT_COMMITTER_EMAIL: BANGER_IDENT.GIT_COMMITTER_EMAIL };
}
