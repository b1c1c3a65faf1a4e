// Workspace round trip against the real agent (`banger-agent serve --unix`, a stand-in for a
// VM that runs on this host): pack a repository, copy it into a "guest" directory, change
// it there as a guest would, export the changes and apply them on a branch.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { makeTempHome } from "../../test/helpers.ts";
import type { AgentClient } from "../guest/index.ts";
import { type BangerError, ErrorCode } from "../util/errors.ts";
import { applyPatch, copyIn, exportPatch, packWorkspace, releaseWorkspace, type PackedWorkspace } from "./index.ts";
import { BIG, BINARY, committedRepo, EXPECTED_FILES, guestSh, hostGit, makeHostRepo, useAgent, viewTree } from "../../test/kits/workspace.ts";

const GUEST_UID = 4242;
const GUEST_USER = `${GUEST_UID}:${GUEST_UID}`;
const GUEST_GIT_ENV = {
  GIT_AUTHOR_NAME: "Guest Agent",
  GIT_AUTHOR_EMAIL: "agent@guest",
  GIT_COMMITTER_NAME: "Guest Agent",
  GIT_COMMITTER_EMAIL: "agent@guest",
};

/** Everything a user would notice changing in their checkout. */
function hostState(repo: string): { head: string; branch: string; index: string; status: string; tree: Map<string, unknown> } {
  return {
    head: hostGit(repo, "rev-parse", "HEAD"),
    branch: hostGit(repo, "symbolic-ref", "HEAD"),
    index: createHash("sha256")
      .update(readFileSync(join(repo, ".git", "index")))
      .digest("hex"),
    status: hostGit(repo, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--ignored"),
    tree: viewTree(repo, (rel) => rel === ".git" || rel === "sub/.git"),
  };
}

/** The tree of a branch as files on disk (git archive), to compare with the guest's. */
function checkoutBranch(repo: string, branch: string, into: string): void {
  mkdirSync(into);
  const tarBytes = execFileSync("git", ["archive", "--format=tar", branch], { cwd: repo, maxBuffer: 1 << 28 });
  execFileSync("tar", ["-x", "-C", into], { input: tarBytes });
}

describe("workspace: copy in, change in the guest, export, apply", () => {
  const { home, cleanup } = makeTempHome();
  const guest = join(home, "guest");
  const guestHome = join(home, "guest-home");
  const { agent: client } = useAgent(home);
  after(cleanup); // after the agent has stopped
  let agent: AgentClient;
  let host: string;
  let packed: PackedWorkspace;
  let initial: ReturnType<typeof hostState>;

  before(async () => {
    chmodSync(home, 0o755); // the guest user (uid 4242) must reach its workspace
    mkdirSync(guestHome);
    chmodSync(guestHome, 0o777);
    host = makeHostRepo(home);
    initial = hostState(host);
    agent = client();
  });

  const asGuest = (script: string, env: Record<string, string> = {}) => guestSh(agent, script, { cwd: guest, user: GUEST_USER, env: { HOME: guestHome, ...GUEST_GIT_ENV, ...env } });

  test("exactly the right files arrive, with modes, symlinks and bytes intact, owned by the guest user", async () => {
    packed = await packWorkspace(host, { vmName: "vm1" });
    assert.equal(packed.isRepo, true);
    assert.equal(packed.baseCommit, hostGit(host, "rev-parse", "HEAD").trim());
    assert.notEqual(packed.copiedCommit, packed.baseCommit, "a dirty tree is copied as its own commit");
    assert.equal(hostGit(host, "rev-parse", "refs/banger/copied/vm1").trim(), packed.copiedCommit);
    const res = await copyIn(agent, packed.stream, { dest: guest, uid: GUEST_UID, gid: GUEST_UID });
    assert.equal(res.files, packed.files);
    assert.equal(res.bytes, packed.bytes);

    const files = [...viewTree(guest, (rel) => rel === ".git" || rel === "sub/.git").keys()].sort();
    assert.deepEqual(files, EXPECTED_FILES);
    assert.equal(lstatSync(join(guest, "bin/run.sh")).mode & 0o777, 0o755);
    assert.equal(lstatSync(join(guest, "README.md")).mode & 0o777, 0o644);
    assert.equal(readlinkSync(join(guest, "link")), "README.md");
    assert.deepEqual(readFileSync(join(guest, "data.bin")), BINARY);
    assert.deepEqual(readFileSync(join(guest, "big.bin")), BIG);
    assert.equal(readFileSync(join(guest, "README.md"), "utf8"), "# project\nunstaged edit\n");
    assert.equal(readFileSync(join(guest, "src/app.js"), "utf8"), "console.log('v2 staged');\n");
    for (const rel of [".", "src", "README.md", ".git", ".git/objects", "sub", "sub/lib.txt"]) {
      const st = lstatSync(join(guest, rel));
      assert.deepEqual([st.uid, st.gid], [GUEST_UID, GUEST_UID], `${rel} is owned by the guest user`);
    }
    assert.deepEqual(hostState(host), initial, "packing leaves the user's checkout alone");
  });

  test("the guest's git shows the host's work in progress as work in progress: same HEAD, index, dirty and untracked files", async () => {
    assert.equal(await asGuest("git rev-parse HEAD"), hostGit(host, "rev-parse", "HEAD"));
    assert.equal(await asGuest("git symbolic-ref HEAD"), "refs/heads/main\n");
    assert.deepEqual((await asGuest("git log --format=%s")).trim().split("\n"), ["add submodule", "initial"], "no commit of banger's in the guest's history");
    for (const cmd of ["status --porcelain", "diff --cached --stat", "diff --stat", "ls-files --stage"]) {
      assert.equal(await asGuest(`git ${cmd}`), hostGit(host, ...cmd.split(" ")), `git ${cmd} in the guest is the host's`);
    }
    assert.match(await asGuest("git status --porcelain"), /^M {2}src\/app\.js$/m, "staged stays staged");
    assert.match(await asGuest("git status --porcelain"), /^\?\? notes\.txt$/m, "untracked stays untracked");
    assert.equal(await asGuest("git -C sub log --format=%s"), "lib\n");
    assert.equal(await asGuest("git -C sub status --porcelain"), "?? scratch.txt\n");
    assert.equal(await asGuest("git show-ref | grep -c refs/banger/ || true"), "0\n", "banger's own refs stay on the host");
  });

  test("the guest's commits (even `commit -a`, which sweeps in the host's work) come back without the host's work, on the host's HEAD", async () => {
    await asGuest(
      [
        "printf '#!/bin/sh\\necho guest run\\n' > bin/run.sh",
        "git commit -q -am 'guest: change run'", // also commits README's, app.js's and to-delete's host changes
        "mkdir -p docs && printf 'new file\\n' > docs/new.md",
        "chmod +x data.bin",
        "printf '\\000\\377binary tail' >> data.bin",
        "ln -s src/app.js applink",
        "printf 'ignored\\n' > guest.log",
      ].join(" && "),
    );
    const head = hostGit(host, "rev-parse", "HEAD").trim();
    const exported = await exportPatch(agent, { vmName: "vm1", workspace: guest, baseCommit: packed.baseCommit, copiedCommit: packed.copiedCommit, hostRepo: host });
    assert.deepEqual([exported.commits, exported.hasUncommitted, exported.squashed, exported.carried], [1, true, false, []]);
    assert.equal(exported.baseCommit, head);
    const text = exported.patch.toString("latin1");
    assert.deepEqual(text.match(/^base-commit: .*$/gm), [`base-commit: ${head}`], "the base printed is the one in the patch");
    assert.doesNotMatch(text, /guest\.log|unstaged edit|v2 staged|notes\.txt|to-delete/, "neither ignored files nor the host's own work");

    const applied = await applyPatch(host, exported.patch, { branch: "banger/vm1", base: exported.baseCommit });
    assert.equal(applied.base, head);
    assert.equal(applied.commits, 2);
    assert.deepEqual(hostGit(host, "log", "--format=%s", `${head}..banger/vm1`).trim().split("\n"), ["banger: uncommitted changes in vm1", "guest: change run"]);
    assert.equal(hostGit(host, "log", "-1", "--format=%an <%ae>", "banger/vm1~1"), "Guest Agent <agent@guest>\n", "the guest's authorship is kept");
    assert.deepEqual(hostGit(host, "diff", "--name-only", head, "banger/vm1").trim().split("\n"), ["applink", "bin/run.sh", "data.bin", "docs/new.md"]);
    const out = join(home, "applied1");
    checkoutBranch(host, "refs/heads/banger/vm1", out);
    for (const rel of ["applink", "bin/run.sh", "data.bin", "docs/new.md"]) assert.deepEqual(viewTree(out).get(rel), viewTree(guest).get(rel), rel);
    assert.equal(lstatSync(join(out, "data.bin")).mode & 0o100, 0o100, "chmod +x survives");
    assert.deepEqual(hostState(host), initial, "the user's working tree, index and branch are untouched");

    // Merging the branch into a checkout with the same work in progress does not collide with it.
    const other = join(home, "host-merge");
    execFileSync("cp", ["-a", host, other]);
    hostGit(other, "merge", "-q", "--ff-only", "banger/vm1");
    assert.equal(readFileSync(join(other, "notes.txt"), "utf8"), "untracked notes\n");
    assert.equal(readFileSync(join(other, "README.md"), "utf8"), "# project\nunstaged edit\n");
    assert.match(hostGit(other, "status", "--porcelain"), /^M {2}src\/app\.js$/m);
    assert.equal(readFileSync(join(other, "docs/new.md"), "utf8"), "new file\n");
  });

  test("exporting twice gives the same bytes; a later export carries old and new changes exactly once", async () => {
    const opts = { vmName: "vm1", workspace: guest, baseCommit: packed.baseCommit, copiedCommit: packed.copiedCommit, hostRepo: host };
    const first = await exportPatch(agent, opts);
    const second = await exportPatch(agent, opts);
    assert.ok(first.patch.length > 0);
    assert.deepEqual(second.patch, first.patch);

    await asGuest("printf 'second round\\n' > docs/later.md && git add docs/later.md && git commit -q -m 'guest: later' && printf 'more\\n' >> bin/run.sh");
    const later = await exportPatch(agent, opts);
    assert.equal(later.commits, 2);
    const text = later.patch.toString("latin1");
    assert.equal(text.match(/^\+new file$/gm)?.length, 1, "the first round's file once");
    assert.equal(text.match(/^\+second round$/gm)?.length, 1, "the new file once");
    assert.equal(text.match(/^\+more$/gm)?.length, 1);
    const applied = await applyPatch(host, later.patch, { branch: "banger/vm1-later", base: later.baseCommit });
    assert.equal(hostGit(host, "show", `${applied.head}:bin/run.sh`), "#!/bin/sh\necho guest run\nmore\n");
  });

  test("an existing branch is refused unless forced", async () => {
    const exported = await exportPatch(agent, { vmName: "vm1", workspace: guest, baseCommit: packed.baseCommit, copiedCommit: packed.copiedCommit, hostRepo: host });
    const tip = hostGit(host, "rev-parse", "banger/vm1");
    await assert.rejects(applyPatch(host, exported.patch, { branch: "banger/vm1", base: exported.baseCommit }), (err: BangerError) => {
      assert.equal(err.code, ErrorCode.AlreadyExists);
      assert.match(err.hint ?? "", /--force/);
      return true;
    });
    assert.equal(hostGit(host, "rev-parse", "banger/vm1"), tip);
    assert.equal(hostGit(host, "worktree", "list", "--porcelain").match(/^worktree /gm)?.length, 1, "no worktree left behind");
    const forced = await applyPatch(host, exported.patch, { branch: "banger/vm1", base: exported.baseCommit, force: true });
    assert.equal(hostGit(host, "rev-parse", "banger/vm1").trim(), forced.head);
  });

  test("nothing the guest puts in .git runs on the host", async () => {
    const marker = join(home, "pwned");
    await asGuest(`mkdir -p .git/hooks && printf '#!/bin/sh\\ntouch ${marker}\\n' > .git/hooks/post-checkout && chmod +x .git/hooks/post-checkout`);
    await asGuest(`printf '[core]\\n\\tfsmonitor = "touch ${marker}"\\n\\thooksPath = .git/hooks\\n[diff]\\n\\texternal = "touch ${marker}"\\n' >> .git/config`);
    await asGuest(`printf '* diff=evil\\n' > .gitattributes && printf '[diff "evil"]\\n\\ttextconv = touch ${marker}\\n' >> .git/config`);
    const exported = await exportPatch(agent, { vmName: "vm1", workspace: guest, baseCommit: packed.baseCommit, copiedCommit: packed.copiedCommit, hostRepo: host });
    await applyPatch(host, exported.patch, { branch: "banger/vm1-evil", base: exported.baseCommit });
    assert.equal(existsSync(marker), false);
  });

  test("history the guest rewrote below the copied commit comes back as one squashed patch", async () => {
    await asGuest("git reset -q --soft HEAD~3 && printf 'after reset\\n' > reset.txt");
    const exported = await exportPatch(agent, { vmName: "vm1", workspace: guest, baseCommit: packed.baseCommit, copiedCommit: packed.copiedCommit, hostRepo: host });
    assert.deepEqual([exported.squashed, exported.commits, exported.hasUncommitted], [true, 0, true]);
    assert.equal(exported.patch.toString("latin1").match(/^From [0-9a-f]{40} /gm)?.length, 1);
    const applied = await applyPatch(host, exported.patch, { branch: "banger/vm1-squashed", base: exported.baseCommit });
    const head = hostGit(host, "rev-parse", "HEAD").trim();
    const names = hostGit(host, "diff", "--name-only", head, applied.head).trim().split("\n");
    // (the guest's reset dropped the submodule's gitlink, so its files come back as files)
    for (const rel of ["applink", "bin/run.sh", "data.bin", "docs/later.md", "docs/new.md", "reset.txt"]) assert.ok(names.includes(rel), rel);
    for (const rel of ["README.md", "notes.txt", "src/app.js", "to-delete.txt"]) assert.ok(!names.includes(rel), `${rel}: the host's own work is not in it`);
  });

  test("releaseWorkspace drops the ref that keeps the copied commit", async () => {
    await releaseWorkspace(host, "vm1");
    assert.throws(() => hostGit(host, "rev-parse", "--verify", "-q", "refs/banger/copied/vm1"));
  });
});

describe("workspace: a guest image without git", () => {
  const { home, cleanup } = makeTempHome();
  const guest = join(home, "guest");
  const noGitBin = join(home, "bin");
  const { agent: client } = useAgent(home);
  after(cleanup);
  let agent: AgentClient;

  before(async () => {
    // The guest's PATH holds the tools a minimal image has, and no git.
    mkdirSync(noGitBin);
    for (const tool of ["sh", "printf", "chmod", "rm", "mkdir", "cat"]) {
      const real = execFileSync("sh", ["-c", `command -v ${tool} || true`], { encoding: "utf8" }).trim();
      if (real.startsWith("/")) symlinkSync(real, join(noGitBin, tool));
    }
    agent = client();
  });

  test("edits made without git are exported and applied from the host", async () => {
    const host = makeHostRepo(home);
    const packed = await packWorkspace(host, { vmName: "nogit" });
    await copyIn(agent, packed.stream, { dest: guest });
    const env = { PATH: noGitBin };
    const probe = await agent.exec({ argv: ["sh", "-c", "git --version"], env, cwd: guest });
    assert.notDeepEqual(await probe.wait(), { exitCode: 0 }, "git is not reachable in this guest");
    await guestSh(agent, "printf 'edited without git\\n' > bin/run.sh && chmod +x .gitignore && printf 'fresh\\n' > fresh.txt && rm data.bin", { cwd: guest, env });

    const exported = await exportPatch(agent, { vmName: "nogit", workspace: guest, baseCommit: packed.baseCommit, copiedCommit: packed.copiedCommit, hostRepo: host });
    assert.equal(exported.commits, 0);
    assert.equal(exported.hasUncommitted, true);
    await applyPatch(host, exported.patch, { branch: "banger/nogit", base: exported.baseCommit });
    const out = join(home, "applied");
    checkoutBranch(host, "refs/heads/banger/nogit", out);
    const changed = [".gitignore", "bin/run.sh", "fresh.txt"];
    for (const rel of changed) assert.deepEqual(viewTree(out).get(rel), viewTree(guest).get(rel), rel);
    assert.equal(existsSync(join(out, "data.bin")), false);
    assert.deepEqual(hostGit(host, "diff", "--name-only", packed.baseCommit!, "banger/nogit").trim().split("\n"), [...changed, "data.bin"].sort());
  });

  test("a guest that lost its .git is compared as plain files against the copied commit", async () => {
    const host = join(home, "host");
    const packed = await packWorkspace(host, { vmName: "nogit2" });
    const dest = join(home, "guest2");
    await copyIn(agent, packed.stream, { dest });
    await guestSh(agent, "rm -rf .git && printf 'x\\n' > added.txt", { cwd: dest, env: { PATH: noGitBin } });
    const exported = await exportPatch(agent, { vmName: "nogit2", workspace: dest, baseCommit: packed.baseCommit, copiedCommit: packed.copiedCommit, hostRepo: host });
    assert.deepEqual([exported.commits, exported.hasUncommitted], [0, true]);
    const text = exported.patch.toString("latin1");
    assert.match(text, /^\+\+\+ b\/added\.txt$/m);
    assert.equal(text.match(/^diff --git/gm)?.length, 1, "only the new file: the copied state is the baseline");
  });
});

describe("workspace: plain directories and empty repositories", () => {
  const { home, cleanup } = makeTempHome();
  const { agent: client } = useAgent(home);
  after(cleanup);
  let agent: AgentClient;
  before(() => {
    agent = client();
  });

  test("a directory outside git is copied whole, ignoring nothing, with no base commit", async () => {
    const dir = join(home, "plain");
    mkdirSync(join(dir, "empty", "nested"), { recursive: true });
    writeFileSync(join(dir, ".hidden"), "h\n");
    writeFileSync(join(dir, "debug.log"), "kept\n");
    writeFileSync(join(dir, ".gitignore"), "*.log\n");
    const packed = await packWorkspace(dir);
    assert.equal(packed.isRepo, false);
    assert.equal(packed.baseCommit, null);
    assert.equal(packed.copiedCommit, null);
    const dest = join(home, "plain-guest");
    await copyIn(agent, packed.stream, { dest });
    assert.deepEqual([...viewTree(dest).keys()].sort(), [".gitignore", ".hidden", "debug.log"]);
    assert.ok(lstatSync(join(dest, "empty", "nested")).isDirectory());
    await assert.rejects(exportPatch(agent, { vmName: "plain", workspace: dest, baseCommit: null, copiedCommit: null, hostRepo: dir }), (err: BangerError) => err.code === ErrorCode.InvalidArgument);
  });

  test("files that shrink or vanish after listing: zero-padded to the listed size, or left out", async () => {
    const dir = join(home, "racy");
    mkdirSync(dir, { recursive: true });
    // Files are read a few entries ahead of what the reader took: with nobody reading yet,
    // the packer stalls within the first 64 KiB files, long before it reaches the z- ones.
    for (let i = 0; i < 64; i++) writeFileSync(join(dir, `a${String(i).padStart(2, "0")}.bin`), Buffer.alloc(64 * 1024, i));
    writeFileSync(join(dir, "z-shrinks.txt"), "0123456789");
    writeFileSync(join(dir, "z-vanishes.txt"), "gone\n");
    writeFileSync(join(dir, "z-stays.txt"), "here\n");
    const packed = await packWorkspace(dir); // lists now, reads lazily
    await new Promise((r) => setTimeout(r, 50));
    writeFileSync(join(dir, "z-shrinks.txt"), "0123");
    rmSync(join(dir, "z-vanishes.txt"));
    const dest = join(home, "racy-guest");
    await copyIn(agent, packed.stream, { dest });
    assert.deepEqual(readFileSync(join(dest, "z-shrinks.txt")), Buffer.concat([Buffer.from("0123"), Buffer.alloc(6)]));
    assert.equal(existsSync(join(dest, "z-vanishes.txt")), false);
    assert.equal(readFileSync(join(dest, "z-stays.txt"), "utf8"), "here\n");
    assert.deepEqual(readFileSync(join(dest, "a63.bin")), Buffer.alloc(64 * 1024, 63));
  });

  test("bad names and cancelled copies fail with clear errors", async () => {
    const repo = committedRepo(join(home, "errs"), { "a.txt": "a\n" }, "first");
    await assert.rejects(packWorkspace(repo, { vmName: "../evil" }), (err: BangerError) => err.code === ErrorCode.InvalidArgument);
    await assert.rejects(packWorkspace(join(home, "missing")), (err: BangerError) => err.code === ErrorCode.InvalidArgument);
    await assert.rejects(packWorkspace(repo, { signal: AbortSignal.abort() }), (err: BangerError) => err.code === ErrorCode.Cancelled);
    const ctl = new AbortController();
    const packed = await packWorkspace(repo, { signal: ctl.signal });
    ctl.abort();
    await assert.rejects(copyIn(agent, packed.stream, { dest: join(home, "errs-guest"), signal: ctl.signal }), (err: BangerError) => err.code === ErrorCode.Cancelled);
    await assert.rejects(applyPatch(repo, "From x\n", { branch: "bad..name", base: "0".repeat(40) }), (err: BangerError) => err.code === ErrorCode.InvalidArgument);
  });

  test("a linked worktree is copied as a plain repository on its own branch", async () => {
    const main = committedRepo(join(home, "wt-main"), { "a.txt": "a\n" }, "first");
    const wt = join(home, "wt-feature");
    hostGit(main, "worktree", "add", "-q", "-b", "feature", wt);
    writeFileSync(join(wt, "dirty.txt"), "dirty\n");
    writeFileSync(join(wt, "a.txt"), "a, staged in the worktree\n");
    hostGit(wt, "add", "a.txt");
    const packed = await packWorkspace(wt, { vmName: "wt" });
    const dest = join(home, "wt-guest");
    await copyIn(agent, packed.stream, { dest });
    assert.ok(lstatSync(join(dest, ".git")).isDirectory());
    assert.equal(existsSync(join(dest, ".git", "worktrees")), false);
    assert.equal(hostGit(dest, "rev-parse", "--abbrev-ref", "HEAD"), "feature\n");
    assert.equal(hostGit(dest, "log", "--format=%s"), "first\n");
    assert.equal(hostGit(dest, "status", "--porcelain"), "M  a.txt\n?? dirty.txt\n", "the worktree's own index and files, not the main checkout's");
    assert.equal(hostGit(main, "rev-parse", "--abbrev-ref", "HEAD"), "main\n");
  });

  test("a base-commit line in a guest's commit message does not move where the patch is applied", async () => {
    const repo = committedRepo(join(home, "forge"), { "a.txt": "a\n" }, "first");
    const forged = hostGit(repo, "rev-parse", "HEAD").trim(); // a real host commit, below the copied one
    writeFileSync(join(repo, "b.txt"), "b\n");
    hostGit(repo, "add", "b.txt");
    hostGit(repo, "commit", "-q", "-m", "second");
    writeFileSync(join(repo, "a.txt"), "a, dirty\n");
    const packed = await packWorkspace(repo, { vmName: "forge" });
    const dest = join(home, "forge-guest");
    await copyIn(agent, packed.stream, { dest });
    await guestSh(agent, `printf 'forge\\n' > forge.txt && git add forge.txt && git commit -q -m 'guest: innocent' -m 'base-commit: ${forged}'`, { cwd: dest, env: { HOME: dest, ...GUEST_GIT_ENV } });
    const exported = await exportPatch(agent, { vmName: "forge", workspace: dest, baseCommit: packed.baseCommit, copiedCommit: packed.copiedCommit, hostRepo: repo });
    const lines = exported.patch.toString("latin1").match(/^base-commit: .*$/gm) ?? [];
    assert.deepEqual(lines, [`base-commit: ${forged}`, `base-commit: ${packed.baseCommit}`], "the guest's line comes first in the mbox");
    // Only the host's record says where the patch goes: without it, nothing is applied.
    await assert.rejects(applyPatch(repo, exported.patch, { branch: "banger/forge" } as never), (err: BangerError) => err.code === ErrorCode.InvalidArgument);
    assert.throws(() => hostGit(repo, "rev-parse", "-q", "--verify", "refs/heads/banger/forge"), "no branch was made");
    const applied = await applyPatch(repo, exported.patch, { branch: "banger/forge", base: exported.baseCommit });
    assert.equal(applied.base, packed.baseCommit);
    assert.equal(hostGit(repo, "rev-parse", `${applied.head}~1`).trim(), packed.baseCommit, "the guest's commit sits on the host's HEAD");
    assert.equal(hostGit(repo, "show", `${applied.head}:a.txt`), "a\n", "the host's uncommitted edit is not carried");
  });

  test("a repository without commits: the guest's branch is unborn too, and its work comes back as a root series", async () => {
    const repo = join(home, "fresh");
    mkdirSync(repo);
    hostGit(repo, "init", "-q", "-b", "main");
    writeFileSync(join(repo, "a.txt"), "a\n");
    const packed = await packWorkspace(repo, { vmName: "fresh" });
    assert.equal(packed.baseCommit, null);
    assert.ok(packed.copiedCommit);
    const dest = join(home, "fresh-guest");
    await copyIn(agent, packed.stream, { dest });
    assert.equal(readFileSync(join(dest, "a.txt"), "utf8"), "a\n");
    assert.equal(existsSync(join(dest, ".git", "refs", "heads", "main")), false);
    assert.equal(hostGit(dest, "status", "--porcelain"), "?? a.txt\n");
    writeFileSync(join(dest, "b.txt"), "b\n");
    const exported = await exportPatch(agent, { vmName: "fresh", workspace: dest, baseCommit: null, copiedCommit: packed.copiedCommit, hostRepo: repo });
    assert.equal(exported.baseCommit, null);
    const applied = await applyPatch(repo, exported.patch, { branch: "banger/fresh", base: exported.baseCommit });
    assert.equal(hostGit(repo, "show", `${applied.head}:b.txt`), "b\n");
    assert.equal(hostGit(repo, "ls-tree", "--name-only", applied.head), "b.txt\n", "the host's untracked a.txt stays the host's");
    assert.throws(() => hostGit(repo, "rev-parse", "-q", "--verify", "HEAD"), "the user's unborn branch stays unborn");
  });
});
