// packWorkspace: a repository (or any directory) as a lazily produced tar stream.
//
// For a git repository the copy is what `git add -A` would see: tracked files plus untracked
// files that are not ignored, minus tracked files deleted on disk, with submodules (and
// nested repositories) included with their content and their git metadata. The state copied
// is recorded as a commit (the "copied commit") built with a temporary index, so the user's
// index, working tree and branches are never touched; the guest's .git is shipped with its
// current branch pointing at that commit and a matching index, so inside the guest `git
// diff` starts empty and every later change is the guest's own.
import { copyFile, lstat, mkdtemp, open, readFile, readdir, readlink, realpath, rm, type FileHandle } from "node:fs/promises";
import { close as fsClose, constants as fsConstants, open as fsOpen, read as fsRead, type Stats } from "node:fs";
import { tmpdir } from "node:os";
import { join, posix, resolve } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import tar from "tar-stream";
import { packEntry, type PackHeader } from "../util/tarpack.ts";
import { cancelled, invalidArgument } from "../util/errors.ts";
import { validateName } from "../util/names.ts";
import { checkRepoOwner, findRepo, git, gitLine, gitRaw, metadataEnv, openView, type GitView, type RepoLayout } from "./git.ts";

export interface PackOptions {
  /** Ship the repository's .git too (so git works in the guest). Default true. */
  includeGit?: boolean;
  /** Keeps the copied commit reachable in the host repository as refs/banger/copied/<vmName>. */
  vmName?: string;
  signal?: AbortSignal;
}

export interface PackedWorkspace {
  /** The tar archive, produced file by file as it is read; names are relative ("./", "src/a.ts"). */
  stream: Readable;
  /** The directory packed: the repository's top level, or the directory itself. */
  root: string;
  isRepo: boolean;
  /** HEAD when copied; null outside git or before the first commit. */
  baseCommit: string | null;
  /** The commit holding exactly the copied state (baseCommit itself when the tree was clean). */
  copiedCommit: string | null;
  /** Archive entries (files, directories, symlinks). */
  files: number;
  /** Bytes of file content in the archive. */
  bytes: number;
}

type Entry =
  | { kind: "dir"; name: string; mode: number; mtime: Date }
  | { kind: "file"; name: string; abs: string; mode: number; mtime: Date; size: number }
  | { kind: "symlink"; name: string; mode: number; mtime: Date; target: string }
  | { kind: "data"; name: string; mode: number; mtime: Date; data: Buffer };

/** Packs `dir` for copying into a guest; see the file header for what goes in. */
export async function packWorkspace(dir: string, opts: PackOptions = {}): Promise<PackedWorkspace> {
  if (opts.vmName !== undefined) validateName("vm", opts.vmName);
  const abs = resolve(dir);
  const st = await lstat(abs).catch(() => undefined);
  if (!st?.isDirectory()) throw invalidArgument(`workspace ${abs} is not a directory`, "pass an existing directory with --workspace, or --no-workspace");
  const repo = await findRepo(abs, opts.signal);
  const list = new EntryList();
  let baseCommit: string | null = null;
  let copiedCommit: string | null = null;
  if (repo === undefined) {
    // Not inside a work tree: packed as a plain directory.
    await list.addDir(".", abs);
    await list.walk(".", abs, () => true);
  } else {
    ({ baseCommit, copiedCommit } = await packRepo(repo, list, opts));
  }
  const entries = list.entries;
  let bytes = 0;
  for (const e of entries) bytes += e.kind === "file" ? e.size : e.kind === "data" ? e.data.length : 0;
  return {
    stream: streamEntries(entries, opts.signal),
    root: repo?.top ?? abs,
    isRepo: repo !== undefined,
    baseCommit,
    copiedCommit,
    files: entries.length,
    bytes,
  };
}

/** Drops refs/banger/copied/<vmName> (when the VM is gone), letting git collect its copied commit. */
export async function releaseWorkspace(hostRepo: string, vmName: string): Promise<void> {
  validateName("vm", vmName);
  await checkRepoOwner(hostRepo);
  const res = await gitRaw(["update-ref", "-d", copiedRef(vmName)], { cwd: hostRepo, env: metadataEnv() });
  if (res.code !== 0 && !/not a git repository/i.test(res.stderr)) throw invalidArgument(`cannot drop ${copiedRef(vmName)} in ${hostRepo}: ${res.stderr.trim()}`);
}

async function packRepo(repo: RepoLayout, list: EntryList, opts: PackOptions): Promise<{ baseCommit: string | null; copiedCommit: string }> {
  const meta = { cwd: repo.top, env: metadataEnv(), signal: opts.signal };
  // Only the name: the object is read in the view (a metadata command never reads objects).
  const head = await gitRaw(["rev-parse", "-q", "--verify", "HEAD"], meta);
  const view = await openView(repo, { copyIndex: true });
  try {
    const snap = await snapshot(view, head.code === 0 ? head.stdout.toString("utf8").trim() : null, opts);
    if (opts.vmName !== undefined) {
      await git(["update-ref", "-m", "banger: workspace copy", copiedRef(opts.vmName), snap.commit], meta);
    }
    await list.addDir(".", repo.top);
    await addRepoFiles(list, ".", repo.top, snap.stages, opts.signal);
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
  /** The view's index, matching the copied state (shipped as the guest's .git/index). */
  index: Buffer;
  /** `git ls-files -s -z` of that index. */
  stages: Buffer;
}

/**
 * Records the working tree as a commit through the view's index (git add -A, write-tree,
 * commit-tree). The index starts as a copy of the user's: its stat cache spares re-hashing.
 */
async function snapshot(view: GitView, head: string | null, opts: PackOptions): Promise<Snapshot> {
  const run = { cwd: view.env.GIT_WORK_TREE, env: view.env, signal: opts.signal };
  const base = head === null ? null : await gitLine(["rev-parse", "--verify", `${head}^{commit}`], run);
  await git(["add", "-A", "--", "."], run);
  // A partial clone may lack blobs the index names: they stay missing rather than fetched (git.ts).
  const tree = await gitLine(["write-tree", "--missing-ok"], run);
  let commit = base;
  if (base === null || (await gitLine(["rev-parse", `${base}^{tree}`], run)) !== tree) {
    const message = `banger: uncommitted changes copied${opts.vmName ? ` into ${opts.vmName}` : ""}`;
    const parent = base === null ? [] : ["-p", base];
    commit = await gitLine(["commit-tree", tree, ...parent, "-m", message], run);
  }
  const stages = await git(["ls-files", "-s", "-z"], { ...run, maxOutput: 1024 * 1024 * 1024 });
  return { base, commit: commit!, index: await readFile(view.index), stages };
}

/** Adds the files an index lists (`ls-files -s -z` output), recursing into submodules. */
async function addRepoFiles(list: EntryList, prefix: string, top: string, stages: Buffer, signal?: AbortSignal): Promise<void> {
  for (const { mode, path } of parseStages(stages)) {
    if (signal?.aborted) throw cancelled();
    const name = joinName(prefix, path);
    const abs = join(top, path);
    if (mode === "160000") await addSubmodule(list, name, abs, signal);
    else await list.addPath(name, abs); // a tracked file deleted on disk is simply absent
  }
}

/**
 * A submodule (or nested repository) with its content: its own tracked and untracked files,
 * and its `.git` (a gitfile pointing into the parent's .git/modules, shipped with the parent's
 * .git, or a directory). Left as an empty directory when not checked out.
 */
async function addSubmodule(list: EntryList, name: string, abs: string, signal?: AbortSignal): Promise<void> {
  if (!(await list.addPath(name, abs))) return;
  const dotGit = await lstat(join(abs, ".git")).catch(() => undefined);
  if (!dotGit) return;
  const repo = await findRepo(abs, signal);
  if (repo?.top !== (await realpath(abs))) return; // not a repository of its own after all
  const view = await openView(repo, { copyIndex: true });
  try {
    const run = { cwd: abs, env: view.env, signal, maxOutput: 1024 * 1024 * 1024 };
    await addRepoFiles(list, name, abs, await git(["ls-files", "-s", "-z"], run), signal);
    const others = await git(["ls-files", "-z", "--others", "--exclude-standard"], run);
    for (const path of splitZ(others)) await list.addPath(joinName(name, path), join(abs, path));
  } finally {
    await view.close();
  }
  await list.addPath(`${name}/.git`, join(abs, ".git"));
  if (dotGit.isDirectory()) await list.walk(`${name}/.git`, join(abs, ".git"), shippedFromGitDir);
}

/**
 * The repository's .git with the current branch (or detached HEAD) at the copied commit and
 * the snapshot's index. A linked worktree's or gitfile's repository is flattened into a
 * plain .git directory (common dir + this worktree's HEAD) without core.worktree.
 */
async function addGitDir(list: EntryList, repo: RepoLayout, snap: Snapshot, signal?: AbortSignal): Promise<void> {
  const { top, gitDir, commonDir } = repo;
  const now = new Date();
  const branch = await gitRaw(["symbolic-ref", "-q", "HEAD"], { cwd: top, env: metadataEnv(), signal });
  const branchRef = branch.code === 0 ? branch.stdout.toString("utf8").trim() : undefined;
  const overrides = new Map<string, Buffer>();
  overrides.set(".git/index", snap.index);
  if (branchRef?.startsWith("refs/heads/")) {
    overrides.set(`.git/${branchRef}`, Buffer.from(`${snap.commit}\n`));
    overrides.set(".git/HEAD", Buffer.from(`ref: ${branchRef}\n`));
  } else {
    overrides.set(".git/HEAD", Buffer.from(`${snap.commit}\n`));
  }
  const plain = gitDir === commonDir && resolve(top, ".git") === gitDir;
  if (!plain) overrides.set(".git/config", await configWithoutWorktree(commonDir));
  await list.addDir(".git", commonDir);
  await list.walk(".git", commonDir, (name) => !overrides.has(name) && shippedFromGitDir(name) && name !== ".git/worktrees");
  for (const [name, data] of overrides) await list.addData(name, data, now);
}

/** The common dir's config minus core.worktree, which points at a host path. */
async function configWithoutWorktree(commonDir: string): Promise<Buffer> {
  const tmp = await mkdtemp(join(tmpdir(), "banger-ws-"));
  try {
    const file = join(tmp, "config");
    await copyFile(join(commonDir, "config"), file);
    await gitRaw(["config", "--file", file, "--unset-all", "core.worktree"], { cwd: tmp, env: metadataEnv() }); // status 5: was not set
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

function joinName(prefix: string, path: string): string {
  return prefix === "." ? path : `${prefix}/${path}`;
}

/** The archive's entries in order, each directory before anything inside it. */
class EntryList {
  readonly entries: Entry[] = [];
  private readonly names = new Set<string>();

  /** Adds a directory entry (root is "."); its metadata from `abs`, or defaults if absent. */
  async addDir(name: string, abs: string | undefined): Promise<void> {
    if (this.names.has(name)) return;
    const st = abs === undefined ? undefined : await lstat(abs).catch(() => undefined);
    await this.parents(name, abs);
    this.push({ kind: "dir", name, mode: st?.isDirectory() ? st.mode & 0o777 : 0o755, mtime: st?.mtime ?? new Date() });
  }

  /** Adds whatever is at `abs` (file, symlink or directory) as `name`; false when it does not exist. */
  async addPath(name: string, abs: string): Promise<boolean> {
    if (this.names.has(name)) return true;
    const st = await lstat(abs).catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT" || err.code === "ENOTDIR") return undefined;
      throw err;
    });
    if (!st) return false;
    await this.parents(name, abs);
    const entry = await toEntry(name, abs, st);
    if (entry) this.push(entry);
    return true;
  }

  async addData(name: string, data: Buffer, mtime: Date): Promise<void> {
    await this.parents(name, undefined);
    const i = this.entries.findIndex((e) => e.name === name);
    const entry: Entry = { kind: "data", name, mode: 0o644, mtime, data };
    if (i >= 0) this.entries[i] = entry;
    else this.push(entry);
  }

  /** Adds everything under the directory `abs` (already added as `name`) that `keep` accepts. */
  async walk(name: string, abs: string, keep: (name: string) => boolean): Promise<void> {
    for (const child of (await readdir(abs)).sort()) {
      const childName = joinName(name, child);
      if (!keep(childName)) continue;
      const childAbs = join(abs, child);
      const st = await lstat(childAbs).catch(() => undefined);
      if (!st) continue;
      await this.addPath(childName, childAbs);
      if (st.isDirectory()) await this.walk(childName, childAbs, keep);
    }
  }

  /** Makes sure every ancestor directory of `name` precedes it (so the guest owns them too). */
  private async parents(name: string, abs: string | undefined): Promise<void> {
    if (name === ".") return;
    const dir = posix.dirname(name);
    if (this.names.has(dir)) return;
    await this.addDir(dir, abs === undefined ? undefined : join(abs, ".."));
  }

  private push(e: Entry): void {
    this.names.add(e.name);
    this.entries.push(e);
  }
}

async function toEntry(name: string, abs: string, st: Stats): Promise<Entry | undefined> {
  const mode = st.mode & 0o777;
  if (st.isDirectory()) return { kind: "dir", name, mode, mtime: st.mtime };
  if (st.isSymbolicLink()) return { kind: "symlink", name, mode, mtime: st.mtime, target: await readlink(abs) };
  if (st.isFile()) return { kind: "file", name, abs, mode, mtime: st.mtime, size: st.size };
  return undefined; // sockets, fifos, devices: nothing to copy
}

/**
 * Produces the tar lazily, with the consumer's backpressure. Small files are read a few
 * ahead (copying many small files is bound by open/read latency, not bandwidth); large
 * ones are streamed in chunks. Memory stays bounded by READ_AHEAD * SMALL_FILE.
 */
function streamEntries(entries: readonly Entry[], signal?: AbortSignal): Readable {
  const pack = tar.pack();
  // A failure reaches whoever reads the stream; without this, one before anyone reads would crash the process.
  pack.on("error", () => undefined);
  const onAbort = () => pack.destroy(cancelled());
  signal?.addEventListener("abort", onAbort, { once: true });
  const ahead = new Map<number, Promise<Buffer | undefined>>();
  const readAhead = (i: number) => {
    const e = entries[i];
    if (e?.kind !== "file" || e.size > SMALL_FILE || ahead.has(i)) return;
    const p = readSmallFile(e);
    p.catch(() => undefined); // awaited in order below; a failure after an abort is nobody's
    ahead.set(i, p);
  };
  void (async () => {
    for (let i = 0; i < entries.length; i++) {
      if (signal?.aborted) throw cancelled();
      for (let j = i; j < i + READ_AHEAD; j++) readAhead(j);
      const e = entries[i]!;
      const small = ahead.get(i);
      ahead.delete(i);
      if (small) {
        const data = await small;
        if (data) await packEntry(pack, headerOf(e, data.length), data);
      } else await writeEntry(pack, e);
    }
    pack.finalize();
  })()
    .catch((err: unknown) => pack.destroy(err as Error))
    .finally(() => signal?.removeEventListener("abort", onAbort));
  return pack as unknown as Readable;
}

/** Files up to this size are read whole, ahead of time; larger ones are streamed. */
const SMALL_FILE = 256 * 1024;
const READ_AHEAD = 32;


function headerOf(e: Entry, size?: number): PackHeader {
  const base = { name: e.kind === "dir" ? `${e.name}/` : e.name, mode: e.mode, mtime: e.mtime, uid: 0, gid: 0 };
  if (e.kind === "dir") return { ...base, type: "directory" };
  if (e.kind === "symlink") return { ...base, type: "symlink", linkname: e.target };
  return { ...base, type: "file", size: size ?? (e.kind === "data" ? e.data.length : e.size) };
}


async function writeEntry(pack: tar.Pack, e: Entry): Promise<void> {
  if (e.kind === "data") return packEntry(pack, headerOf(e), e.data);
  if (e.kind !== "file") return packEntry(pack, headerOf(e));
  const fh = await openIfPresent(e.abs);
  if (!fh) return;
  try {
    await new Promise<void>((res, rej) => {
      const sink = pack.entry(headerOf(e), (err) => (err ? rej(err) : res()));
      pipeline(Readable.from(exactBytes(fh, e.size)), sink).catch(rej);
    });
  } finally {
    await fh.close();
  }
}

/**
 * The whole of a small file (exactly its listed size, like exactBytes), or undefined when it
 * vanished since listing. Plain descriptors, not FileHandles: for thousands of small files
 * the FileHandle machinery costs more than the reads (measured: ~5x for 10k files).
 */
async function readSmallFile(e: Extract<Entry, { kind: "file" }>): Promise<Buffer | undefined> {
  const fd = await new Promise<number | undefined>((res, rej) =>
    fsOpen(e.abs, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW, (err, fd) => (err?.code === "ENOENT" ? res(undefined) : err ? rej(err) : res(fd))),
  );
  if (fd === undefined) return undefined;
  try {
    const buf = Buffer.allocUnsafe(e.size);
    let got = 0;
    while (got < e.size) {
      const n = await new Promise<number>((res, rej) => fsRead(fd, buf, got, e.size - got, null, (err, n) => (err ? rej(err) : res(n))));
      if (n === 0) break;
      got += n;
    }
    return buf.fill(0, got); // a file that shrank is zero-padded: the header promised size bytes
  } finally {
    await new Promise<void>((res) => fsClose(fd, () => res()));
  }
}

/** A file that vanished since listing (an edit, a concurrent `git gc`) is left out. */
async function openIfPresent(abs: string): Promise<FileHandle | undefined> {
  return open(abs, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return undefined;
    throw err;
  });
}

/** Exactly `size` bytes of the file (the header already promised them): cut if it grew, zero-padded if it shrank. */
async function* exactBytes(fh: FileHandle, size: number): AsyncGenerator<Buffer> {
  let left = size;
  while (left > 0) {
    const buf = Buffer.allocUnsafe(Math.min(left, 256 * 1024));
    const { bytesRead } = await fh.read(buf, 0, buf.length, null);
    if (bytesRead === 0) {
      yield Buffer.alloc(left);
      return;
    }
    left -= bytesRead;
    yield buf.subarray(0, bytesRead);
  }
}

/**
 * The ref keeping a VM's copied commit alive. Not refs/banger/<vm>: git resolves the short
 * name "banger/<vm>" as refs/<name> before refs/heads/<name>, so it would shadow the
 * banger/<vm> branch that applyPatch creates.
 */
export function copiedRef(vmName: string): string {
  return `refs/banger/copied/${vmName}`;
}
