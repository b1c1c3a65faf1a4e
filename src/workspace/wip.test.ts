// The host's work in progress and the guest's changes to the same files (series.ts's rules),
// against the real agent as the "guest": what export carries, what it leaves to the host.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { makeTempHome } from "../../test/helpers.ts";
import type { AgentClient } from "../guest/index.ts";
import { applyPatch, copyIn, exportPatch, packWorkspace } from "./index.ts";
import { committedRepo, guestSh, hostGit, useAgent } from "../../test/kits/workspace.ts";

const LINES = Array.from({ length: 12 }, (_, i) => `line ${i + 1}`);
const text = (lines: string[]) => `${lines.join("\n")}\n`;
const GUEST_ENV = { GIT_AUTHOR_NAME: "Guest", GIT_AUTHOR_EMAIL: "g@guest", GIT_COMMITTER_NAME: "Guest", GIT_COMMITTER_EMAIL: "g@guest" };

describe("workspace: the host's work in progress and the guest's edits to the same files", () => {
  const { home, cleanup } = makeTempHome();
  const { agent: client } = useAgent(home);
  after(cleanup);
  let agent: AgentClient;
  before(() => {
    agent = client();
  });

  /** A repository with f.txt (12 lines) committed, then host work: line 2 edited, g.txt staged, u.txt untracked. */
  function hostWithWip(name: string): string {
    const repo = committedRepo(join(home, name), { "f.txt": text(LINES), "g.txt": "g\n" }, "first");
    writeFileSync(join(repo, "f.txt"), text(LINES.map((l, i) => (i === 1 ? "line 2, host edit" : l))));
    writeFileSync(join(repo, "g.txt"), "g, staged on the host\n");
    hostGit(repo, "add", "g.txt");
    writeFileSync(join(repo, "u.txt"), "untracked on the host\n");
    return repo;
  }

  async function copy(repo: string, vm: string) {
    const packed = await packWorkspace(repo, { vmName: vm });
    const dest = join(home, `${vm}-guest`);
    await copyIn(agent, packed.stream, { dest });
    const sh = (script: string) => guestSh(agent, script, { cwd: dest, env: { HOME: dest, ...GUEST_ENV } });
    const exp = () => exportPatch(agent, { vmName: vm, workspace: dest, baseCommit: packed.baseCommit, copiedCommit: packed.copiedCommit, hostRepo: repo });
    return { packed, dest, sh, exp };
  }

  test("an edit far from the host's is merged onto HEAD's version; a guest edit to a host-untracked file comes back whole and is named", async () => {
    const repo = hostWithWip("merge");
    const { packed, sh, exp } = await copy(repo, "merge");
    await sh("sed -i 's/^line 11$/line 11, guest edit/' f.txt && printf 'guest\\n' >> u.txt");
    const exported = await exp();
    assert.deepEqual([exported.commits, exported.hasUncommitted, exported.squashed], [0, true, false]);
    assert.deepEqual(exported.carried, ["u.txt"]);
    const patch = exported.patch.toString("utf8");
    assert.match(patch, /^\+line 11, guest edit$/m);
    assert.doesNotMatch(patch, /host edit|staged on the host|^diff --git a\/g\.txt/m, "the host's own changes are not in the patch");
    const applied = await applyPatch(repo, exported.patch, { branch: "banger/merge", base: exported.baseCommit });
    assert.equal(hostGit(repo, "show", `${applied.head}:f.txt`), text(LINES.map((l, i) => (i === 10 ? "line 11, guest edit" : l))));
    assert.equal(hostGit(repo, "show", `${applied.head}:u.txt`), "untracked on the host\nguest\n");
    assert.equal(hostGit(repo, "show", `${applied.head}:g.txt`), "g\n");
    // The host merges it with its work in progress still in place (stash, merge, pop: plain git);
    // u.txt, named as carried, is the one file the user settles by hand (here: takes the guest's).
    const other = join(home, "merge-host");
    execFileSync("cp", ["-a", repo, other]);
    hostGit(other, "stash", "-q");
    rmSync(join(other, "u.txt"));
    hostGit(other, "merge", "-q", "--ff-only", "banger/merge");
    hostGit(other, "stash", "pop", "-q");
    assert.equal(readFileSync(join(other, "f.txt"), "utf8"), text(LINES.map((l, i) => (i === 1 ? "line 2, host edit" : i === 10 ? "line 11, guest edit" : l))));
    assert.equal(packed.baseCommit, hostGit(repo, "rev-parse", "HEAD").trim());
  });

  test("a guest commit that sweeps in the host's changes (commit -a) and edits the same file comes back squashed, still without the host's changes", async () => {
    const repo = hostWithWip("sweep");
    const { sh, exp } = await copy(repo, "sweep");
    assert.equal(await sh("git status --porcelain"), " M f.txt\nM  g.txt\n?? u.txt\n");
    await sh("sed -i 's/^line 11$/line 11, guest edit/' f.txt && git commit -q -am 'guest: everything'");
    const exported = await exp();
    assert.deepEqual([exported.squashed, exported.commits, exported.carried], [true, 0, []]);
    const patch = exported.patch.toString("utf8");
    assert.match(patch, /^\+line 11, guest edit$/m);
    assert.doesNotMatch(patch, /host edit|staged on the host/, "the host's work is not re-added");
  });

  test("a guest commit that only commits the host's staged change is dropped; the guest's own commit stays one patch", async () => {
    const repo = hostWithWip("staged");
    const { exp, sh } = await copy(repo, "staged");
    await sh("git commit -q -m 'guest: commit what was staged' && printf 'mine\\n' > mine.txt && git add mine.txt && git commit -q -m 'guest: mine'");
    const exported = await exp();
    assert.deepEqual([exported.commits, exported.hasUncommitted, exported.squashed], [1, false, false]);
    assert.deepEqual(exported.patch.toString("utf8").match(/^Subject: .*$/gm), ["Subject: [PATCH] guest: mine"]);
  });

  test("the guest deleting a file the host also changed removes it from HEAD; ignoring the host's work leaves nothing to export", async () => {
    const repo = hostWithWip("del");
    const { exp, sh } = await copy(repo, "del");
    assert.equal((await exp()).patch.length, 0, "an untouched copy exports nothing, though the host's work is in it");
    await sh("rm f.txt");
    const exported = await exp();
    const applied = await applyPatch(repo, exported.patch, { branch: "banger/del", base: exported.baseCommit });
    assert.equal(hostGit(repo, "ls-tree", "--name-only", applied.head), "g.txt\n");
  });
});
