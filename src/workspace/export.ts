// exportPatch: everything the guest changed on top of the host's checkout (HEAD plus work in
// progress, as recorded in the copied commit), as one mbox of `git format-patch` patches
// based on the host's HEAD. Computed on the host (the image needs no git): the guest's
// workspace comes back through files.get into a temporary directory, host git runs there in
// a view of banger's making (git.ts: no user, system or repository config) against the
// guest's objects plus the host repository's (alternates), and the directory is removed
// whatever happens.
//
// series.ts says which commits: the guest's own (one patch each), then its uncommitted and
// untracked (not ignored) changes as "banger: uncommitted changes in <vm>", dated like its
// parent so the same guest state always gives the same bytes, and never the host's own work
// in progress. The guest's index is not read: staged or not, uncommitted is uncommitted.
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { isAbsolute, join } from "node:path";
import type { AgentClient } from "../guest/index.ts";
import { BangerError, ErrorCode, invalidArgument } from "../util/errors.ts";
import { validateName } from "../util/names.ts";
import { DEFAULT_GUEST_WORKSPACE } from "./copyin.ts";
import { extractGuestTree, spoolArchive } from "./extract.ts";
import { findRepo, git, gitLine, gitRaw, isolatedGitEnv, type GitOptions } from "./git.ts";
import { copiedState, guestSeries } from "./series.ts";

export interface ExportOptions {
  vmName: string;
  /** Guest directory the workspace was copied to; default /workspace. */
  workspace?: string;
  /** HEAD of the host repository at copy time: the patch's base (null before the first commit). */
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
  /** An mbox of format-patch patches (empty when nothing changed); `git am` applies it on baseCommit. */
  patch: Buffer;
  /** The host's HEAD when copied: what the patch applies to (also its `base-commit:` line); null: a root series. */
  baseCommit: string | null;
  /** The commit recording the copied state (HEAD + index + work tree). */
  copiedCommit: string;
  /** Commits made in the guest that the patch carries one by one (0 when squashed). */
  commits: number;
  hasUncommitted: boolean;
  /** The guest's history did not separate from the host's HEAD and work: one patch holds everything. */
  squashed: boolean;
  /** Paths that come back with the host's own uncommitted changes in them (series.ts). */
  carried: string[];
}

/** Computes the guest's changes; a pure function of the guest's workspace and the copied commit. */
/** What exportPatch needs of the guest: its workspace as a tar (an agent, or the CLI through the daemon). */
export type GuestFiles = Pick<AgentClient, "getFiles">;

export async function exportPatch(agent: GuestFiles, opts: ExportOptions): Promise<ExportedPatch> {
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
    await prepareGitDir(dirs.gitDir, opts.copiedCommit, opts.baseCommit);
    const env = isolatedGitEnv(dirs.gitDir, { GIT_WORK_TREE: dirs.work, GIT_INDEX_FILE: join(tmp, "index") });
    const run: GitOptions = { cwd: dirs.work, env, signal: opts.signal };
    const maxPatchBytes = opts.maxPatchBytes ?? 2 * 1024 ** 3;
    await checkObjectSizes(run, hostObjects, maxPatchBytes);
    // Only now: the check above must see the guest's objects alone.
    await writeFile(join(dirs.gitDir, "objects", "info", "alternates"), `${hostObjects}\n`);
    const copied = await gitLine(["rev-parse", "--verify", `${opts.copiedCommit}^{commit}`], run);
    const base = opts.baseCommit === null ? null : await gitLine(["rev-parse", "--verify", `${opts.baseCommit}^{commit}`], run);
    const state = await copiedState(copied, base, run);
    const headRes = await gitRaw(["rev-parse", "-q", "--verify", "HEAD^{commit}"], run);
    const guestHead = headRes.code === 0 ? headRes.stdout.toString("utf8").trim() : base;
    const worktree = await worktreeTree(guestHead, run);
    const series = await guestSeries(state, guestHead, worktree, opts.vmName, run, tmp);
    const range = base === null ? ["--root", series.tip ?? ""] : [`--base=${base}`, `${base}..${series.tip}`];
    const patch =
      series.tip === base
        ? Buffer.alloc(0)
        : await git(["format-patch", "--stdout", "--binary", "--no-signature", "--no-renames", ...range], {
            ...run,
            maxOutput: maxPatchBytes,
          });
    return { patch, baseCommit: base, copiedCommit: copied, commits: series.commits, hasUncommitted: series.hasUncommitted, squashed: series.squashed, carried: series.carried };
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

async function hostObjectsDir(hostRepo: string): Promise<string> {
  const repo = await findRepo(hostRepo);
  if (!repo) throw invalidArgument(`${hostRepo} is not a git repository`, "export needs the repository the workspace was copied from");
  return join(repo.commonDir, "objects");
}

/**
 * Refuses a guest object that inflates past `max` bytes. Host git holds an object whole to
 * diff or format it, and a few KiB of zeros sent as a loose object or a pack entry inflate
 * to gigabytes: the archive's bounds say nothing about that. Reads object headers only.
 */
async function checkObjectSizes(run: GitOptions, hostObjects: string, max: number): Promise<void> {
  const check = ["cat-file", "--batch-check=%(objectname) %(objectsize)"];
  // Streamed, keeping only what is too big: a large repository's shipped history is millions of objects.
  const big = new Map<string, string>();
  let partial = "";
  await git([...check, "--batch-all-objects", "--unordered"], {
    ...run,
    onStdout: (chunk) => {
      const lines = (partial + chunk.toString("latin1")).split("\n");
      partial = lines.pop()!;
      for (const line of lines) {
        const [oid, size] = line.split(" ");
        if (oid && Number(size) > max) big.set(oid, size!);
      }
    },
  });
  if (big.size === 0) return;
  // The host's own big objects (shipped with its .git) come back as they went.
  const host = await git(check, { ...run, env: { ...run.env, GIT_OBJECT_DIRECTORY: hostObjects }, input: [...big.keys()].map((oid) => `${oid}\n`).join("") });
  const hostSizes = new Map(
    host
      .toString("utf8")
      .split("\n")
      .map((l) => l.split(" ") as [string, string]),
  );
  const [oid, size] = [...big].find(([o, s]) => hostSizes.get(o) !== s) ?? [];
  if (oid) {
    throw new BangerError(
      ErrorCode.Integrity,
      `guest workspace refused: object ${oid.slice(0, 12)} of ${size} bytes is larger than the ${max}-byte patch bound`,
      "the guest's change is too large to export as a patch; copy it out of the VM another way",
    );
  }
}

/** A minimal repository around the guest's objects and refs, with our config (the host's objects are added later, as alternates). */
async function prepareGitDir(gitDir: string, copied: string, base: string | null): Promise<void> {
  await mkdir(join(gitDir, "objects", "info"), { recursive: true });
  await mkdir(join(gitDir, "refs"), { recursive: true });
  const sha256 = copied.length === 64;
  const config = sha256 ? "[core]\n\trepositoryformatversion = 1\n\tbare = false\n[extensions]\n\tobjectformat = sha256\n" : "[core]\n\trepositoryformatversion = 0\n\tbare = false\n";
  await writeFile(join(gitDir, "config"), config);
  // A guest without .git (or without HEAD) is compared as a plain tree, as if it had not moved HEAD.
  await writeFile(join(gitDir, "HEAD"), base === null ? "ref: refs/heads/banger-unborn\n" : `${base}\n`, { flag: "wx" }).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== "EEXIST") throw err;
  });
}

/**
 * The guest's work tree as a tree object: `parent`'s tree (the guest's HEAD) updated by
 * `git add -A`, with submodule paths left as they are in `parent` (their insides are another
 * repository's).
 */
async function worktreeTree(parent: string | null, run: GitOptions): Promise<string> {
  await git(parent === null ? ["read-tree", "--empty"] : ["read-tree", parent], run);
  const listing = parent === null ? Buffer.alloc(0) : await git(["ls-tree", "-r", "-z", parent], { ...run, maxOutput: 1024 ** 3 });
  const gitlinks = listing
    .toString("utf8")
    .split("\0")
    .filter((rec) => rec.startsWith("160000 "))
    .map((rec) => rec.slice(rec.indexOf("\t") + 1));
  await git(["add", "-A", "--", ".", ...gitlinks.map((p) => `:(exclude,literal)${p}`)], run);
  return gitLine(["write-tree"], run);
}
