// Export and --apply end to end with the host's work in progress in place (staged, unstaged,
// deleted, untracked) and a guest that does what people do: edits, deletes, renames, binary
// files, several commits, `commit -a`, edits on top of the host's own. The real agent plays
// the guest; the branch must hold exactly the guest's changes on the host's HEAD, and the
// host's checkout must be left as it was.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { makeTempHome } from "../../test/helpers.ts";
import type { AgentClient } from "../guest/index.ts";
import { applyPatch, copyIn, exportPatch, packWorkspace } from "./index.ts";
import { BINARY, committedRepo, guestSh, hostGit, useAgent, viewTree } from "../../test/kits/workspace.ts";

const LINES = Array.from({ length: 12 }, (_, i) => `line ${i + 1}`);
const text = (lines: string[]) => `${lines.join("\n")}\n`;
const edit = (n: number, what: string) => text(LINES.map((l, i) => (i === n - 1 ? `${l}, ${what}` : l)));
const GUEST_ENV = { GIT_AUTHOR_NAME: "Guest", GIT_AUTHOR_EMAIL: "g@guest", GIT_COMMITTER_NAME: "Guest", GIT_COMMITTER_EMAIL: "g@guest" };

describe("workspace: export and apply with the host's work in progress in place", () => {
  const { home, cleanup } = makeTempHome();
  const { agent: client } = useAgent(home);
  after(cleanup);
  let agent: AgentClient;
  before(() => {
    agent = client();
  });

  /**
   * Committed: f.txt (12 lines), s.txt, d.txt, t.txt, x.txt, r.txt. Host work in progress:
   * f.txt line 2 edited (unstaged), s.txt edited and staged, d.txt deleted, u.txt untracked.
   */
  function hostRepo(name: string): string {
    const repo = committedRepo(join(home, name), { "f.txt": text(LINES), "s.txt": "s\n", "d.txt": "d\n", "t.txt": "t\n", "x.txt": "x\n", "r.txt": "rename me\n" }, "first");
    writeFileSync(join(repo, "f.txt"), edit(2, "host"));
    writeFileSync(join(repo, "s.txt"), "s, staged on the host\n");
    hostGit(repo, "add", "s.txt");
    unlinkSync(join(repo, "d.txt"));
    writeFileSync(join(repo, "u.txt"), "untracked on the host\n");
    return repo;
  }

  /** Copies `repo` to a fresh guest directory, runs `script` there, exports and applies it as banger/<vm>. */
  async function roundTrip(repo: string, vm: string, script: string) {
    const packed = await packWorkspace(repo, { vmName: vm });
    const dest = join(home, `${vm}-guest`);
    await copyIn(agent, packed.stream, { dest });
    await guestSh(agent, script, { cwd: dest, env: { HOME: dest, ...GUEST_ENV } });
    const hostBefore = { status: hostGit(repo, "status", "--porcelain=v1", "-uall"), tree: viewTree(repo, (r) => r === ".git"), head: headOf(repo) };
    const exported = await exportPatch(agent, { vmName: vm, workspace: dest, baseCommit: packed.baseCommit, copiedCommit: packed.copiedCommit, hostRepo: repo });
    const applied = exported.patch.length === 0 ? undefined : await applyPatch(repo, exported.patch, { branch: `banger/${vm}`, base: exported.baseCommit });
    assert.deepEqual(
      { status: hostGit(repo, "status", "--porcelain=v1", "-uall"), tree: viewTree(repo, (r) => r === ".git"), head: headOf(repo) },
      hostBefore,
      "the host's checkout (work tree, index, HEAD) is untouched",
    );
    return { exported, applied, files: (rev: string) => branchFiles(repo, rev) };
  }

  /** path -> content of every file at `rev`. */
  function branchFiles(repo: string, rev: string): Record<string, string> {
    const out: Record<string, string> = {};
    for (const path of hostGit(repo, "ls-tree", "-r", "--name-only", rev).split("\n").filter(Boolean)) out[path] = hostGit(repo, "show", `${rev}:${path}`);
    return out;
  }

  const HEAD_FILES = { "f.txt": text(LINES), "s.txt": "s\n", "d.txt": "d\n", "t.txt": "t\n", "x.txt": "x\n", "r.txt": "rename me\n" };

  test("edits, a delete, a rename and a binary file over several commits and uncommitted work come back as exactly those changes", async () => {
    const repo = hostRepo("many");
    const { exported, applied, files } = await roundTrip(
      repo,
      "many",
      [
        "printf 't, guest\\n' > t.txt && git add t.txt && git commit -q -m 'guest: t only'",
        "git mv r.txt r2.txt && git commit -q -m 'guest: rename'",
        `printf '${[...BINARY.subarray(0, 64)].map((b) => `\\${b.toString(8).padStart(3, "0")}`).join("")}' > bin.dat && git add bin.dat && git commit -q -m 'guest: binary'`,
        "sed -i 's/^line 11$/line 11, guest/' f.txt && rm x.txt",
      ].join(" && "),
    );
    assert.deepEqual([exported.commits, exported.hasUncommitted, exported.squashed, exported.carried], [3, true, false, []]);
    assert.deepEqual(hostGit(repo, "log", "--format=%s|%an", `${exported.baseCommit}..${applied!.head}`).trim().split("\n").reverse(), [
      "guest: t only|Guest",
      "guest: rename|Guest",
      "guest: binary|Guest",
      "banger: uncommitted changes in many|banger",
    ]);
    const { "x.txt": _deleted, "r.txt": r, ...kept } = HEAD_FILES;
    const got = files(applied!.head);
    delete got["bin.dat"];
    assert.deepEqual(got, { ...kept, "t.txt": "t, guest\n", "r2.txt": r, "f.txt": edit(11, "guest") });
    const bin = execGitBytes(repo, ["cat-file", "blob", `${applied!.head}:bin.dat`]);
    assert.deepEqual(bin, BINARY.subarray(0, 64), "the binary file arrives byte for byte");
  });

  test("an edit overlapping the host's comes back whole and is named in carried", async () => {
    const repo = hostRepo("overlap");
    const { exported, applied, files } = await roundTrip(repo, "overlap", "sed -i 's/^line 2, host$/line 2, guest/' f.txt");
    assert.deepEqual([exported.commits, exported.hasUncommitted, exported.carried], [0, true, ["f.txt"]]);
    assert.deepEqual(files(applied!.head), { ...HEAD_FILES, "f.txt": edit(2, "guest") });
  });

  test("commit -a (sweeping in the host's staged and unstaged work) of the guest's own edit to an untouched file keeps the commit, minus the host's work", async () => {
    const repo = hostRepo("commita");
    const { exported, applied, files } = await roundTrip(repo, "commita", "printf 't, guest\\n' > t.txt && git commit -q -a -m 'guest: everything'");
    assert.deepEqual([exported.commits, exported.hasUncommitted, exported.squashed], [1, false, false]);
    assert.deepEqual(files(applied!.head), { ...HEAD_FILES, "t.txt": "t, guest\n" }, "no host work (f.txt, s.txt, d.txt) on the branch");
  });

  test("a guest that deletes the host's untracked file, unstages the host's work or restores the host's deleted file exports nothing", async () => {
    const repo = hostRepo("undo");
    const { exported } = await roundTrip(repo, "undo", "rm u.txt && git reset -q && git checkout -- d.txt");
    assert.equal(exported.patch.length, 0);
  });

  test("renaming a file the host had edited carries the host's edit into the new path, and says so", async () => {
    const repo = hostRepo("mvdirty");
    const { exported, applied, files } = await roundTrip(repo, "mvdirty", "git mv f.txt f2.txt && git commit -q -m 'guest: move f'");
    const got = files(applied!.head);
    assert.equal(got["f.txt"], undefined);
    assert.equal(got["f2.txt"], edit(2, "host"), "the moved file is the guest's, host edit included");
    assert.ok(exported.squashed || exported.carried.includes("f2.txt"), "the host's work in f2.txt is named (carried), not silent");
  });

  test("a repository with no commit yet: the guest's commit comes back as a root commit without the host's untracked files", async () => {
    const repo = join(home, "unborn");
    mkdirSync(repo);
    hostGit(repo, "init", "-q", "-b", "main");
    writeFileSync(join(repo, "host.txt"), "host, never committed\n");
    const { exported, applied, files } = await roundTrip(repo, "unborn", "printf 'guest\\n' > guest.txt && git add guest.txt && git commit -q -m 'guest: first'");
    assert.equal(exported.baseCommit, null);
    assert.deepEqual([exported.commits, exported.hasUncommitted], [1, false]);
    assert.deepEqual(files(applied!.head), { "guest.txt": "guest\n" });
  });

  test("a host in the middle of a conflicted merge: the guest's edit to another file comes back alone", async () => {
    const repo = committedRepo(join(home, "conflict"), { "c.txt": "base\n", "t.txt": "t\n" }, "first");
    hostGit(repo, "checkout", "-q", "-b", "other");
    writeFileSync(join(repo, "c.txt"), "other\n");
    hostGit(repo, "commit", "-q", "-am", "other");
    hostGit(repo, "checkout", "-q", "main");
    writeFileSync(join(repo, "c.txt"), "main\n");
    hostGit(repo, "commit", "-q", "-am", "main");
    assert.throws(() => hostGit(repo, "merge", "-q", "other"));
    const { exported, applied, files } = await roundTrip(repo, "conflict", "printf 't, guest\\n' > t.txt");
    assert.deepEqual(exported.carried, []);
    assert.deepEqual(files(applied!.head), { "c.txt": "main\n", "t.txt": "t, guest\n" });
  });
});

/** HEAD's ref and commit ("unborn" before the first commit). */
function headOf(repo: string): string {
  const ref = hostGit(repo, "symbolic-ref", "-q", "HEAD").trim();
  try {
    return `${ref} ${hostGit(repo, "rev-parse", "-q", "--verify", "HEAD").trim()}`;
  } catch {
    return `${ref} unborn`;
  }
}

function execGitBytes(cwd: string, args: string[]): Buffer {
  return execFileSync("git", args, { cwd });
}
