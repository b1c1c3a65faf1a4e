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
import { BangerError, ErrorCode } from "../util/errors.ts";
import { applyPatch, copyIn, exportPatch, packWorkspace, releaseWorkspace, type PackedWorkspace } from "./index.ts";
import { BIG, BINARY, committedRepo, EXPECTED_FILES, guestSh, hostGit, makeHostRepo, useAgent, viewTree } from "./testkit.ts";

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
    index: createHash("sha256").update(readFileSync(join(repo, ".git", "index"))).digest("hex"),
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

/** The guest's state as a patch should carry it: no .git, no ignored files, no submodule insides. */
const notInPatch = (rel: string) => rel === ".git" || rel === "sub" || rel === "debug.log" || rel === "build" || rel.endsWith(".log");

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

  const asGuest = (script: string, env: Record<string, string> = {}) =>
    guestSh(agent, script, { cwd: guest, user: GUEST_USER, env: { HOME: guestHome, ...GUEST_GIT_ENV, ...env } });

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

  test("git works in the guest: history is there, the copied state is clean, the submodule resolves", async () => {
    const log = await asGuest("git log --format=%s");
    assert.deepEqual(log.trim().split("\n"), ["banger: uncommitted changes copied into vm1", "add submodule", "initial"]);
    assert.equal(await asGuest("git rev-parse --abbrev-ref HEAD"), "main\n");
    // (the submodule's untracked file is still untracked there, as on the host)
    assert.equal(await asGuest("git status --porcelain --ignore-submodules=untracked"), "", "the guest starts from a clean copy of the user's state");
    assert.equal(await asGuest("git -C sub log --format=%s"), "lib\n");
    assert.equal(await asGuest("git -C sub status --porcelain"), "?? scratch.txt\n");
  });

  test("the guest's commits, edits, new files, chmod and binary changes come back on banger/<vm>", async () => {
    await asGuest(
      [
        "printf 'console.log(\"guest commit\");\\n' > src/app.js",
        "git commit -q -am 'guest: change app'",
        "printf 'guest edit\\n' >> README.md",
        "mkdir -p docs && printf 'new file\\n' > docs/new.md",
        "chmod +x data.bin",
        "printf '\\000\\377binary tail' >> data.bin",
        "rm notes.txt",
        "ln -s src/app.js applink",
        "printf 'ignored\\n' > guest.log",
      ].join(" && "),
    );
    const exported = await exportPatch(agent, { vmName: "vm1", workspace: guest, baseCommit: packed.baseCommit, copiedCommit: packed.copiedCommit, hostRepo: host });
    assert.equal(exported.commits, 1);
    assert.equal(exported.hasUncommitted, true);
    assert.equal(exported.squashed, false);
    assert.equal(exported.copiedCommit, packed.copiedCommit);
    assert.match(exported.patch.toString("latin1"), new RegExp(`^base-commit: ${packed.copiedCommit}$`, "m"));
    assert.doesNotMatch(exported.patch.toString("latin1"), /guest\.log|^\+unstaged edit$|^\+console\.log\('v2 staged'\)/m, "ignored files and the copied state are not in the patch");

    const applied = await applyPatch(host, exported.patch, { branch: "banger/vm1", base: exported.copiedCommit });
    assert.equal(applied.base, packed.copiedCommit);
    assert.equal(applied.commits, 2);
    assert.deepEqual(
      hostGit(host, "log", "--format=%s", `${packed.copiedCommit}..banger/vm1`).trim().split("\n"),
      ["banger: uncommitted changes in vm1", "guest: change app"],
    );
    const out = join(home, "applied1");
    checkoutBranch(host, "refs/heads/banger/vm1", out);
    assert.deepEqual(viewTree(out, notInPatch), viewTree(guest, notInPatch));
    assert.equal(lstatSync(join(out, "data.bin")).mode & 0o100, 0o100, "chmod +x survives");
    assert.deepEqual(hostState(host), initial, "the user's working tree, index and branch are untouched");
  });

  test("exporting twice gives the same bytes; a later export carries old and new changes exactly once", async () => {
    const opts = { vmName: "vm1", workspace: guest, baseCommit: packed.baseCommit, copiedCommit: packed.copiedCommit, hostRepo: host };
    const first = await exportPatch(agent, opts);
    const second = await exportPatch(agent, opts);
    assert.ok(first.patch.length > 0);
    assert.deepEqual(second.patch, first.patch);

    await asGuest("printf 'second round\\n' > docs/later.md && git add docs/later.md && git commit -q -m 'guest: later' && printf 'more\\n' >> README.md");
    const later = await exportPatch(agent, opts);
    assert.equal(later.commits, 2);
    const text = later.patch.toString("latin1");
    assert.equal(text.match(/^\+guest edit$/gm)?.length, 1, "the first round's edit once");
    assert.equal(text.match(/^\+second round$/gm)?.length, 1, "the new file once");
    assert.equal(text.match(/^\+more$/gm)?.length, 1);
    await applyPatch(host, later.patch, { branch: "banger/vm1-later", base: later.copiedCommit });
    const out = join(home, "applied2");
    checkoutBranch(host, "refs/heads/banger/vm1-later", out);
    assert.deepEqual(viewTree(out, notInPatch), viewTree(guest, notInPatch));
  });

  test("an existing branch is refused unless forced", async () => {
    const exported = await exportPatch(agent, { vmName: "vm1", workspace: guest, baseCommit: packed.baseCommit, copiedCommit: packed.copiedCommit, hostRepo: host });
    const tip = hostGit(host, "rev-parse", "banger/vm1");
    await assert.rejects(applyPatch(host, exported.patch, { branch: "banger/vm1", base: exported.copiedCommit }), (err: BangerError) => {
      assert.equal(err.code, ErrorCode.AlreadyExists);
      assert.match(err.hint ?? "", /--force/);
      return true;
    });
    assert.equal(hostGit(host, "rev-parse", "banger/vm1"), tip);
    assert.equal(hostGit(host, "worktree", "list", "--porcelain").match(/^worktree /gm)?.length, 1, "no worktree left behind");
    const forced = await applyPatch(host, exported.patch, { branch: "banger/vm1", base: exported.copiedCommit, force: true });
    assert.equal(hostGit(host, "rev-parse", "banger/vm1").trim(), forced.head);
  });

  test("nothing the guest puts in .git runs on the host", async () => {
    const marker = join(home, "pwned");
    await asGuest(`mkdir -p .git/hooks && printf '#!/bin/sh\\ntouch ${marker}\\n' > .git/hooks/post-checkout && chmod +x .git/hooks/post-checkout`);
    await asGuest(`printf '[core]\\n\\tfsmonitor = "touch ${marker}"\\n\\thooksPath = .git/hooks\\n[diff]\\n\\texternal = "touch ${marker}"\\n' >> .git/config`);
    await asGuest(`printf '* diff=evil\\n' > .gitattributes && printf '[diff "evil"]\\n\\ttextconv = touch ${marker}\\n' >> .git/config`);
    const exported = await exportPatch(agent, { vmName: "vm1", workspace: guest, baseCommit: packed.baseCommit, copiedCommit: packed.copiedCommit, hostRepo: host });
    await applyPatch(host, exported.patch, { branch: "banger/vm1-evil", base: exported.copiedCommit });
    assert.equal(existsSync(marker), false);
  });

  test("history the guest rewrote below the copied commit comes back as one squashed patch", async () => {
    await asGuest("git reset -q --soft HEAD~4 && printf 'after reset\\n' > reset.txt");
    const exported = await exportPatch(agent, { vmName: "vm1", workspace: guest, baseCommit: packed.baseCommit, copiedCommit: packed.copiedCommit, hostRepo: host });
    assert.deepEqual([exported.squashed, exported.commits, exported.hasUncommitted], [true, 0, true]);
    assert.equal(exported.patch.toString("latin1").match(/^From [0-9a-f]{40} /gm)?.length, 1);
    await applyPatch(host, exported.patch, { branch: "banger/vm1-squashed", base: exported.copiedCommit });
    const out = join(home, "applied3");
    checkoutBranch(host, "refs/heads/banger/vm1-squashed", out);
    assert.deepEqual(viewTree(out, notInPatch), viewTree(guest, notInPatch));
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
    await guestSh(agent, "printf 'edited without git\\n' > README.md && chmod +x src/app.js && printf 'fresh\\n' > fresh.txt && rm data.bin", { cwd: guest, env });

    const exported = await exportPatch(agent, { vmName: "nogit", workspace: guest, baseCommit: packed.baseCommit, copiedCommit: packed.copiedCommit, hostRepo: host });
    assert.equal(exported.commits, 0);
    assert.equal(exported.hasUncommitted, true);
    await applyPatch(host, exported.patch, { branch: "banger/nogit", base: exported.copiedCommit });
    const out = join(home, "applied");
    checkoutBranch(host, "refs/heads/banger/nogit", out);
    assert.deepEqual(viewTree(out, notInPatch), viewTree(guest, notInPatch));
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
    await assert.rejects(
      exportPatch(agent, { vmName: "plain", workspace: dest, baseCommit: null, copiedCommit: null, hostRepo: dir }),
      (err: BangerError) => err.code === ErrorCode.InvalidArgument,
    );
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
    const packed = await packWorkspace(wt, { vmName: "wt" });
    const dest = join(home, "wt-guest");
    await copyIn(agent, packed.stream, { dest });
    assert.ok(lstatSync(join(dest, ".git")).isDirectory());
    assert.equal(existsSync(join(dest, ".git", "worktrees")), false);
    assert.equal(hostGit(dest, "rev-parse", "--abbrev-ref", "HEAD"), "feature\n");
    assert.equal(hostGit(dest, "log", "--format=%s"), "banger: uncommitted changes copied into wt\nfirst\n");
    assert.equal(hostGit(dest, "status", "--porcelain"), "");
    assert.equal(hostGit(main, "rev-parse", "--abbrev-ref", "HEAD"), "main\n");
  });

  test("a base-commit line in a guest's commit message does not move where the patch is applied", async () => {
    const repo = committedRepo(join(home, "forge"), { "a.txt": "a\n" }, "first");
    const forged = hostGit(repo, "rev-parse", "HEAD").trim(); // a real host commit, below the copied one
    writeFileSync(join(repo, "a.txt"), "a, dirty\n");
    const packed = await packWorkspace(repo, { vmName: "forge" });
    const dest = join(home, "forge-guest");
    await copyIn(agent, packed.stream, { dest });
    await guestSh(agent, `printf 'forge\\n' > forge.txt && git add forge.txt && git commit -q -m 'guest: innocent' -m 'base-commit: ${forged}'`, { cwd: dest, env: { HOME: dest, ...GUEST_GIT_ENV } });
    const exported = await exportPatch(agent, { vmName: "forge", workspace: dest, baseCommit: packed.baseCommit, copiedCommit: packed.copiedCommit, hostRepo: repo });
    const lines = exported.patch.toString("latin1").match(/^base-commit: .*$/gm) ?? [];
    assert.deepEqual(lines, [`base-commit: ${forged}`, `base-commit: ${packed.copiedCommit}`], "the guest's line comes first in the mbox");
    // Only the host's record says where the patch goes: without it, nothing is applied.
    await assert.rejects(applyPatch(repo, exported.patch, { branch: "banger/forge" } as never), (err: BangerError) => err.code === ErrorCode.InvalidArgument);
    assert.throws(() => hostGit(repo, "rev-parse", "-q", "--verify", "refs/heads/banger/forge"), "no branch was made");
    const applied = await applyPatch(repo, exported.patch, { branch: "banger/forge", base: exported.copiedCommit });
    assert.equal(applied.base, packed.copiedCommit);
    assert.equal(hostGit(repo, "rev-parse", `${applied.head}~1`).trim(), packed.copiedCommit, "the guest's commit sits on the copied commit");
    assert.equal(hostGit(repo, "show", `${applied.head}:a.txt`), "a, dirty\n");
  });

  test("a repository without commits gets a root copied commit and no base", async () => {
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
    assert.equal(readFileSync(join(dest, ".git", "refs", "heads", "main"), "utf8").trim(), packed.copiedCommit);
    writeFileSync(join(dest, "b.txt"), "b\n");
    const exported = await exportPatch(agent, { vmName: "fresh", workspace: dest, baseCommit: null, copiedCommit: packed.copiedCommit, hostRepo: repo });
    const applied = await applyPatch(repo, exported.patch, { branch: "banger/fresh", base: exported.copiedCommit });
    assert.equal(hostGit(repo, "show", `${applied.head}:b.txt`), "b\n");
    assert.throws(() => hostGit(repo, "rev-parse", "-q", "--verify", "HEAD"), "the user's unborn branch stays unborn");
  });
});
