// Planning a workspace copy before anything is booted: which directory, whether it may be
// copied at all, and exactly which entries go (files, bytes, secrets left out). The plan is
// streamed later (startCopy), once the VM exists.
//
// Rules:
// - Inside a git repository the repository's top level is copied (pack.ts says what of it).
// - Outside one, a directory is copied only when the user named it (`explicit`: the CLI's
//   --workspace DIR): `vm run` in $HOME or / must not quietly copy everything.
// - `/` and the kernel's file systems (/proc, /sys, /dev and below) are always refused, $HOME
//   itself unless named (even when it is a repository). A plain directory's walk stays on its
//   own file system (other mounts are left out and reported).
// - Secrets are left out by name, unless included (secrets.ts).
import { realpath, stat } from "node:fs/promises";
import { homedir } from "node:os";
import { relative, resolve } from "node:path";
import type { Readable } from "node:stream";
import { invalidArgument } from "../util/errors.ts";
import { validateName } from "../util/names.ts";
import { EntryList, streamEntries, type Entry } from "./entries.ts";
import { findRepo } from "./git.ts";
import { listRepo, recordCopied } from "./pack.ts";
import { SecretFilter, includePaths } from "./secrets.ts";

export interface PlanOptions {
  /** The user named this directory (--workspace): needed to copy a directory outside git, or $HOME. */
  explicit?: boolean;
  /** --include paths (relative to `dir`, or absolute inside the copy): secrets to copy anyway. */
  include?: readonly string[];
  /** Ship the repository's .git too (so git works in the guest). Default true. */
  includeGit?: boolean;
  signal?: AbortSignal;
}

/** A copy above either bound is announced with what is in it before it starts. */
export const LARGE_COPY = { bytes: 100 * 1024 * 1024, files: 10_000 };

export interface WorkspacePlan {
  /** The directory copied: the repository's top level, or the directory itself. */
  root: string;
  isRepo: boolean;
  /** HEAD when planned; null outside git or before the first commit. */
  baseCommit: string | null;
  /** The commit recording the copied state (baseCommit itself when nothing was uncommitted). */
  copiedCommit: string | null;
  /** Archive entries (files, directories, symlinks). */
  files: number;
  /** Bytes of file content. */
  bytes: number;
  /** Secret paths left out (relative to root), a directory once. */
  skipped: string[];
  /** Mount points inside a plain directory that were not walked (relative to root). */
  otherMounts: string[];
  /** Above LARGE_COPY. */
  large: boolean;
  /** The heaviest top-level entries by bytes (at most 5), to say what makes a copy large. */
  heaviest: Array<{ name: string; files: number; bytes: number }>;
  /** @internal what startCopy streams. */
  readonly entries: readonly Entry[];
}

export interface PackedWorkspace extends Omit<WorkspacePlan, "entries"> {
  /** The tar archive, produced file by file as it is read; names are relative ("./", "src/a.ts"). */
  stream: Readable;
}

/** Validates `dir` and lists what a copy of it holds; boots nothing and changes nothing on the host but objects. */
export async function planWorkspace(dir: string, opts: PlanOptions = {}): Promise<WorkspacePlan> {
  if (dir === "") throw invalidArgument("--workspace names no directory (an empty path)", "name one, e.g. --workspace ., or pass --no-workspace");
  const abs = resolve(dir);
  const st = await stat(abs).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT" || err.code === "ENOTDIR") throw invalidArgument(`no such directory: ${abs}`, "pass an existing directory with --workspace, or --no-workspace");
    throw err;
  });
  if (!st.isDirectory()) throw invalidArgument(`${abs} is not a directory`, "pass a directory with --workspace, or --no-workspace");
  const real = await realpath(abs);
  if (isKernelFs(real)) throw invalidArgument(`refusing to copy ${real}: it is a system directory`, "run in a project directory, or pass --no-workspace");
  if (real === "/") throw invalidArgument("refusing to copy the root directory", "run in a project directory, or pass --no-workspace");
  const home = await realpath(homedir()).catch(() => homedir());
  if (!opts.explicit && real === home) {
    throw invalidArgument("refusing to copy your home directory without --workspace", "copy it with --workspace ~ or run with --no-workspace; secrets such as .ssh are left out");
  }
  const repo = await findRepo(real, opts.signal);
  if (!repo && !opts.explicit) {
    throw invalidArgument(`${real} is not in a git repository; refusing to copy it without --workspace`, "copy it with --workspace . or run with --no-workspace; secrets such as .ssh are left out");
  }
  const root = repo?.top ?? real;
  const filter = new SecretFilter(includePaths(opts.include ?? [], root, real));
  const list = new EntryList();
  const otherMounts: string[] = [];
  let commits = { baseCommit: null as string | null, copiedCommit: null as string | null };
  if (repo) {
    commits = await listRepo(repo, list, filter, opts);
  } else {
    await list.addDir(".", real);
    await list.walk(
      ".",
      real,
      (name, entry) => {
        if (entry.isDirectory() && entry.dev !== st.dev) {
          otherMounts.push(name);
          return false;
        }
        return filter.verdict(name, entry.isDirectory()) !== "skip";
      },
      opts.signal,
    );
  }
  const entries = list.entries;
  const byTop = new Map<string, { files: number; bytes: number }>();
  let bytes = 0;
  for (const e of entries) {
    const size = e.kind === "file" ? e.size : e.kind === "data" ? e.data.length : 0;
    bytes += size;
    const top = e.name.split("/")[0]!;
    if (top === ".") continue;
    const t = byTop.get(top) ?? { files: 0, bytes: 0 };
    t.files++;
    t.bytes += size;
    byTop.set(top, t);
  }
  const heaviest = [...byTop]
    .map(([name, t]) => ({ name, ...t }))
    .sort((a, b) => b.bytes - a.bytes || b.files - a.files)
    .slice(0, 5);
  return {
    root,
    isRepo: repo !== undefined,
    ...commits,
    files: entries.length,
    bytes,
    skipped: filter.skipped,
    otherMounts,
    large: bytes > LARGE_COPY.bytes || entries.length > LARGE_COPY.files,
    heaviest,
    entries,
  };
}

/** /proc, /sys, /dev and anything below them. */
function isKernelFs(real: string): boolean {
  return ["/proc", "/sys", "/dev"].some((d) => real === d || !relative(d, real).startsWith(".."));
}

/**
 * Starts streaming a plan; with `vmName`, first keeps its copied commit alive as
 * refs/banger/copied/<vmName> in the host repository.
 */
export async function startCopy(plan: WorkspacePlan, opts: { vmName?: string; signal?: AbortSignal } = {}): Promise<PackedWorkspace> {
  if (opts.vmName !== undefined) validateName("vm", opts.vmName);
  if (opts.vmName !== undefined && plan.isRepo && plan.copiedCommit) await recordCopied(plan.root, opts.vmName, plan.copiedCommit, opts.signal);
  const { entries, ...rest } = plan;
  return { ...rest, stream: streamEntries(entries, opts.signal) };
}

export interface PackOptions extends PlanOptions {
  /** Keeps the copied commit reachable in the host repository as refs/banger/copied/<vmName>. */
  vmName?: string;
}

/** planWorkspace then startCopy, for a caller that names the directory itself (explicit by default). */
export async function packWorkspace(dir: string, opts: PackOptions = {}): Promise<PackedWorkspace> {
  if (opts.vmName !== undefined) validateName("vm", opts.vmName);
  const plan = await planWorkspace(dir, { explicit: true, ...opts });
  return startCopy(plan, opts);
}
