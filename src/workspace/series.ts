// The guest's changes as commits on the host's HEAD, without the host's own work in progress.
//
// The guest started from the host's checkout: HEAD (H), the user's index (I) and work tree
// (S), recorded as the copied commit (pack.ts). Its final state is its HEAD (G, with commits
// on top of H) and its work tree (W). What comes back starts at H and holds only what the
// guest did, path by path:
// - a path the host had not changed (S and I equal H there) comes back as the guest left it;
// - a path with host work in progress that the guest did not touch is left as H has it (the
//   host still has that work in its own checkout);
// - a path both changed: the guest's edit is merged onto H's version (`git merge-file`, H +
//   (W - S)); when the edits overlap, or for binaries, symlinks and files H lacks, the path
//   comes back as the guest left it, host work included, and is reported in `carried`;
// - what cannot be said relative to H is not said: a guest that undoes the host's work
//   (`git checkout -- f`, `git stash`) or deletes a file the host had not committed yet
//   leaves that path as H has it.
// Guest commits become one commit each (same message, author and dates) when their changes
// separate from the host's work: a guest commit that merely commits the host's staged or
// unstaged changes becomes empty and is dropped. The rest of the guest's work tree becomes a
// last commit "banger: uncommitted changes in <vm>". A history that does not continue H
// (merges, a reset below it) or a commit that edits a file with host work in progress comes
// back as one squashed commit instead, as does a history of more than MAX_SERIES_COMMITS.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { invalidArgument } from "../util/errors.ts";
import { git, gitLine, gitRaw, type GitOptions } from "./git.ts";
import { emptyTree } from "./pack.ts";

/** A longer guest history comes back as one squashed commit: each commit costs several git runs, and a guest can send hundreds of thousands. */
export const MAX_SERIES_COMMITS = 500;

interface TreeEntry {
  mode: string;
  oid: string;
}

type Changes = Map<string, { old: TreeEntry | null; new: TreeEntry | null }>;

export interface Series {
  /** The last commit (H itself, or null before the first commit, when nothing changed). */
  tip: string | null;
  commits: number;
  hasUncommitted: boolean;
  squashed: boolean;
  /** Paths that come back with the host's work in progress in them (see the file header). */
  carried: string[];
}

/** What the copied commit says about the host's checkout. */
interface Copied {
  commit: string;
  head: string | null;
  headTree: string;
  indexTree: string;
  tree: string;
}

/** Reads H, I and S from the copied commit (pack.ts's layout); checks it continues the recorded base. */
export async function copiedState(copied: string, base: string | null, run: GitOptions): Promise<Copied> {
  const tree = await gitLine(["rev-parse", `${copied}^{tree}`], run);
  if (base !== null && copied === base) return { commit: copied, head: base, headTree: tree, indexTree: tree, tree };
  const parents = (await gitLine(["rev-list", "--parents", "-n", "1", copied], run)).split(" ").slice(1);
  const headTree = base === null ? await emptyTree(run) : await gitLine(["rev-parse", `${base}^{tree}`], run);
  const want = base === null ? [] : [base];
  if (parents.length === want.length + 1 && want.every((p, i) => parents[i] === p)) {
    return { commit: copied, head: base, headTree, indexTree: await gitLine(["rev-parse", `${parents.at(-1)}^{tree}`], run), tree };
  }
  // A copy made before the index was recorded: its tree stands for the index too.
  if (parents.length === want.length && want.every((p, i) => parents[i] === p)) return { commit: copied, head: base, headTree, indexTree: tree, tree };
  throw invalidArgument(
    `the recorded copied commit ${copied.slice(0, 12)} does not continue the recorded base commit`,
    "the VM's workspace record is inconsistent; export by hand with git in the guest",
  );
}

/** Builds the series (see the file header); `worktree` is the guest's work tree as a tree. */
export async function guestSeries(c: Copied, guestHead: string | null, worktree: string, vmName: string, run: GitOptions, tmp: string): Promise<Series> {
  const wip = new Map<string, { h: TreeEntry | null; s: TreeEntry | null; i: TreeEntry | null }>();
  for (const [path, ch] of await diffTrees(c.headTree, c.tree, run)) wip.set(path, { h: ch.old, s: ch.new, i: ch.old });
  for (const [path, ch] of await diffTrees(c.headTree, c.indexTree, run)) {
    const w = wip.get(path);
    wip.set(path, { h: ch.old, s: w ? w.s : ch.old, i: ch.new });
  }
  const carried: string[] = [];
  // The final tree: H plus, for every path the guest changed relative to S, the rule above.
  const finalUpdates = new Map<string, TreeEntry | null>();
  for (const [path, ch] of await diffTrees(c.tree, worktree, run)) {
    const host = wip.get(path);
    if (!host) finalUpdates.set(path, ch.new);
    else finalUpdates.set(path, await rebaseEntry(path, host.h, host.s, ch.new, carried, run, tmp));
  }
  const finalTree = await updateTree(c.headTree, finalUpdates, run);

  const moved = guestHead !== null && guestHead !== c.head;
  const tooMany = moved && Number(await gitLine(["rev-list", "--count", c.head === null ? guestHead : `${c.head}..${guestHead}`], run)) > MAX_SERIES_COMMITS;
  const guestCommits = !moved || tooMany ? [] : await linearCommits(c.head, guestHead, run);
  let tip = c.head;
  let commits = 0;
  let squashed = guestCommits === undefined || tooMany;
  if (guestCommits !== undefined) {
    let tree = c.headTree;
    let prevGuestTree = c.headTree;
    for (const commit of guestCommits) {
      const guestTree = await gitLine(["rev-parse", `${commit}^{tree}`], run);
      const updates = new Map<string, TreeEntry | null>();
      for (const [path, ch] of await diffTrees(prevGuestTree, guestTree, run)) {
        const host = wip.get(path);
        if (!host) updates.set(path, ch.new);
        else if (![host.h, host.s, host.i].some((e) => sameEntry(e, ch.new))) squashed = true; // an edit on top of host work
      }
      prevGuestTree = guestTree;
      if (squashed) break;
      const next = await updateTree(tree, updates, run);
      if (next === tree) continue; // it only committed the host's work in progress
      tip = await recommit(commit, next, tip, run);
      tree = next;
      commits++;
    }
  }
  if (squashed) {
    const why = tooMany ? `more than ${MAX_SERIES_COMMITS} commits` : "the guest's history does not separate from the host's HEAD and work in progress";
    const message = `banger: all changes in ${vmName} (squashed: ${why})`;
    const changed = finalTree !== c.headTree;
    return { tip: changed ? await commitTree(finalTree, c.head, message, await dateOf(c.head, run, c), run) : c.head, commits: 0, hasUncommitted: changed, squashed: true, carried };
  }
  const tipTree = tip === null ? c.headTree : await gitLine(["rev-parse", `${tip}^{tree}`], run);
  if (finalTree === tipTree) return { tip, commits, hasUncommitted: false, squashed: false, carried };
  const last = await commitTree(finalTree, tip, `banger: uncommitted changes in ${vmName}`, await dateOf(tip, run, c), run);
  return { tip: last, commits, hasUncommitted: true, squashed: false, carried };
}

/** A path both the host and the guest changed, as it goes on H (see the file header). */
async function rebaseEntry(path: string, h: TreeEntry | null, s: TreeEntry | null, w: TreeEntry | null, carried: string[], run: GitOptions, tmp: string): Promise<TreeEntry | null> {
  if (w === null) return null; // deleted by the guest
  const regular = (e: TreeEntry | null): e is TreeEntry => e !== null && (e.mode === "100644" || e.mode === "100755");
  if (regular(h) && regular(s) && regular(w)) {
    const merged = await mergeBlobs(h.oid, s.oid, w.oid, run, tmp);
    if (merged) return { mode: w.mode, oid: merged };
  }
  carried.push(path);
  return w;
}

/** `git merge-file` of three blobs (ours, base, theirs); the merged blob, or undefined on a conflict or a binary. */
async function mergeBlobs(ours: string, base: string, theirs: string, run: GitOptions, tmp: string): Promise<string | undefined> {
  const dir = await mkdtemp(join(tmp, "merge-"));
  try {
    const files = ["ours", "base", "theirs"].map((n) => join(dir, n));
    const oids = [ours, base, theirs];
    for (let k = 0; k < 3; k++) await writeFile(files[k]!, await git(["cat-file", "blob", oids[k]!], { ...run, maxOutput: 64 * 1024 * 1024 }));
    const res = await gitRaw(["merge-file", "-p", "--quiet", ...files], { ...run, maxOutput: 256 * 1024 * 1024 });
    if (res.code !== 0) return undefined;
    return await gitLine(["hash-object", "-w", "--stdin"], { ...run, input: res.stdout });
  } catch {
    return undefined; // too big to merge here: the guest's copy comes back whole
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The guest's commits from `base` (exclusive) to `head`, oldest first; undefined unless a straight line. */
async function linearCommits(base: string | null, head: string, run: GitOptions): Promise<string[] | undefined> {
  const range = base === null ? [head] : [`${base}..${head}`];
  const lines = (await gitLine(["rev-list", "--reverse", "--topo-order", "--parents", ...range], run)).split("\n").filter(Boolean);
  let prev = base;
  const out: string[] = [];
  for (const line of lines) {
    const [commit, ...parents] = line.split(" ");
    if (parents.length !== (prev === null ? 0 : 1) || (prev !== null && parents[0] !== prev)) return undefined;
    out.push(commit!);
    prev = commit!;
  }
  return prev === head ? out : undefined;
}

/** The same commit (message, author, committer, dates) with another tree and parent. */
async function recommit(commit: string, tree: string, parent: string | null, run: GitOptions): Promise<string> {
  const raw = (await git(["cat-file", "commit", commit], run)).toString("utf8");
  const split = raw.indexOf("\n\n");
  const headers = raw.slice(0, split < 0 ? raw.length : split).split("\n");
  const message = split < 0 ? "" : raw.slice(split + 2);
  const env: NodeJS.ProcessEnv = {};
  for (const [role, key] of [
    ["author", "AUTHOR"],
    ["committer", "COMMITTER"],
  ] as const) {
    const m = headers.map((h) => /^(author|committer) (.*) <(.*)> (\d+ [+-]\d{4})$/.exec(h)).find((x) => x?.[1] === role);
    if (m) Object.assign(env, { [`GIT_${key}_NAME`]: m[2], [`GIT_${key}_EMAIL`]: m[3], [`GIT_${key}_DATE`]: `@${m[4]}` });
  }
  return gitLine(["commit-tree", tree, ...(parent === null ? [] : ["-p", parent])], { ...run, env: { ...run.env, ...env }, input: message });
}

async function commitTree(tree: string, parent: string | null, message: string, date: string, run: GitOptions): Promise<string> {
  return gitLine(["commit-tree", tree, ...(parent === null ? [] : ["-p", parent]), "-m", message], {
    ...run,
    env: { ...run.env, GIT_AUTHOR_DATE: date, GIT_COMMITTER_DATE: date },
  });
}

/** A fixed date for banger's commits (the parent's, or the copied state's), so one guest state gives one patch. */
async function dateOf(commit: string | null, run: GitOptions, c: Copied): Promise<string> {
  return `@${await gitLine(["log", "-1", "--format=%ct", commit ?? c.commit], run)} +0000`;
}

/** `git diff-tree -r --raw` between two trees, by path. */
export async function diffTrees(a: string, b: string, run: GitOptions): Promise<Changes> {
  const out = await git(["diff-tree", "-r", "-z", "--raw", "--no-abbrev", "--no-renames", a, b], { ...run, maxOutput: 1024 ** 3 });
  const parts = out.toString("utf8").split("\0");
  const changes: Changes = new Map();
  for (let k = 0; k + 1 < parts.length; k += 2) {
    const meta = parts[k]!;
    const path = parts[k + 1]!;
    const [oldMode, newMode, oldOid, newOid] = meta.slice(1).split(" ");
    const entry = (mode?: string, oid?: string) => (!mode || /^0+$/.test(mode) ? null : { mode, oid: oid! });
    changes.set(path, { old: entry(oldMode, oldOid), new: entry(newMode, newOid) });
  }
  return changes;
}

/** `base` with each path set to an entry or removed; the new tree. */
async function updateTree(base: string, updates: Map<string, TreeEntry | null>, run: GitOptions): Promise<string> {
  if (updates.size === 0) return base;
  await git(["read-tree", base], run);
  const zero = "0".repeat(base.length);
  const lines = [...updates].map(([path, e]) => (e ? `${e.mode} ${e.oid}\t${path}` : `0 ${zero}\t${path}`));
  await git(["update-index", "-z", "--index-info"], { ...run, input: Buffer.from(`${lines.join("\0")}\0`) });
  return gitLine(["write-tree", "--missing-ok"], run);
}

function sameEntry(a: TreeEntry | null, b: TreeEntry | null): boolean {
  return a === null ? b === null : b !== null && a.mode === b.mode && a.oid === b.oid;
}
