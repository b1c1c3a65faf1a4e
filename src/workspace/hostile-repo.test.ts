// A repository is untrusted input: packing, exporting and applying a workspace must run none
// of the programs its config, include files or hooks name (canaryRepo sets every one of
// them), and must copy nothing but its own work tree and git directory.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { makeTempHome } from "../../test/helpers.ts";
import type { AgentClient } from "../guest/index.ts";
import { type BangerError, ErrorCode } from "../util/errors.ts";
import { applyPatch, checkRepoOwner, copyIn, exportPatch, packWorkspace, type PackedWorkspace } from "./index.ts";
import { gitRaw, metadataEnv, METADATA_TIMEOUT_MS } from "./git.ts";
import { canaryRepo, committedRepo, guestSh, hostGit, useAgent, type CanaryRepo } from "../../test/kits/workspace.ts";
import { tarMemberNames } from "../../test/kits/tar.ts";

const FILES = ["a.txt", "b.dat", "c.inc", "d.incif", "new.txt"];

/** A blob's bytes, read without anything that could consult attributes or drivers. */
function blob(repo: string, rev: string): Buffer {
  return execFileSync("git", ["cat-file", "blob", rev], { cwd: repo, env: { ...process.env, GIT_CONFIG_NOSYSTEM: "1" } });
}

describe("workspace: a repository's config, includes and hooks run nothing on the host", () => {
  const { home, cleanup } = makeTempHome();
  const { agent: client } = useAgent(home);
  after(cleanup);
  const guest = join(home, "guest");
  let agent: AgentClient;
  let canary: CanaryRepo;
  let packed: PackedWorkspace;

  before(() => {
    agent = client();
    canary = canaryRepo(home);
  });

  test("pack and copy in: no canary runs; files arrive, and are recorded, exactly as on disk", async () => {
    const copied = await settle(async () => {
      packed = await packWorkspace(canary.repo, { vmName: "canary" });
      await copyIn(agent, packed.stream, { dest: guest });
    });
    assert.deepEqual(canary.ran(), [], "programs the repository named ran on the host");
    copied.rethrow();
    for (const name of FILES) {
      const onDisk = readFileSync(join(canary.repo, name));
      assert.deepEqual(readFileSync(join(guest, name)), onDisk, `${name} in the guest is the host's file`);
      assert.deepEqual(blob(canary.repo, `${packed.copiedCommit}:${name}`), onDisk, `${name} is recorded unfiltered`);
    }
  });

  test("export and apply: no canary runs; the guest's edits land on the branch byte for byte, the host's own work does not", async () => {
    // The guest edits without git: its git would obey the shipped config, which is its own business.
    await guestSh(agent, "printf 'guest line\\n' >> a.txt && printf 'guest data\\n' >> b.dat && printf 'fresh\\n' > e.txt", { cwd: guest, env: { PATH: "/usr/bin:/bin" } });
    let applied: Awaited<ReturnType<typeof applyPatch>> | undefined;
    const outcome = await settle(async () => {
      const exported = await exportPatch(agent, { vmName: "canary", workspace: guest, baseCommit: packed.baseCommit, copiedCommit: packed.copiedCommit, hostRepo: canary.repo });
      applied = await applyPatch(canary.repo, exported.patch, { branch: "banger/canary", base: exported.baseCommit });
    });
    assert.deepEqual(canary.ran(), [], "programs the repository named ran on the host");
    outcome.rethrow();
    assert.ok(applied);
    assert.equal(applied.base, packed.baseCommit);
    // a.txt and b.dat had host edits too and the guest's lines touch them: they come back whole.
    for (const name of ["a.txt", "b.dat", "e.txt"]) {
      assert.deepEqual(blob(canary.repo, `${applied.head}:${name}`), readFileSync(join(guest, name)), `${name} on the branch is the guest's file`);
    }
    for (const name of ["c.inc", "d.incif"]) {
      assert.deepEqual(blob(canary.repo, `${applied.head}:${name}`), blob(canary.repo, `${packed.baseCommit}:${name}`), `${name}: the host's uncommitted edit stays the host's`);
    }
    assert.throws(() => blob(canary.repo, `${applied!.head}:new.txt`), "the host's untracked file stays the host's");
  });
});

describe("workspace: git outside a view", () => {
  const { home, cleanup } = makeTempHome();
  after(cleanup);

  test("only ref and config commands run with the repository's own config; anything else is refused before git starts", async () => {
    const { repo, ran } = canaryRepo(home);
    for (const args of [["add", "-A"], ["status"], ["ls-files"], ["diff"], ["am"], ["checkout", "main"], ["commit-tree", "HEAD^{tree}"]]) {
      await assert.rejects(gitRaw(args, { cwd: repo, env: metadataEnv() }), /must run in a view/);
    }
    assert.deepEqual(ran(), []);
    assert.equal((await gitRaw(["rev-parse", "--show-toplevel"], { cwd: repo, env: metadataEnv() })).code, 0);
  });
});

describe("workspace: a partial clone's missing object is never fetched", () => {
  const { home, cleanup } = makeTempHome();
  const { agent: client } = useAgent(home);
  after(cleanup);

  test("the promisor remote's transport (ext::, ssh, helpers) never runs; apply fails with one line", async () => {
    const log = join(home, "fetched");
    const transport = join(home, "transport");
    writeFileSync(transport, `#!/bin/sh\necho ran >> '${log}'\n`, { mode: 0o755 });
    const repo = committedRepo(join(home, "partial"), { "a.txt": "a\n", "gone.txt": "promised, not here\n" }, "first");
    for (const [key, value] of [
      ["core.repositoryformatversion", "1"],
      ["extensions.partialClone", "origin"],
      ["remote.origin.promisor", "true"],
      ["remote.origin.url", `ext::${transport}`],
      ["protocol.ext.allow", "always"],
    ])
      hostGit(repo, "config", key!, value!);
    // Not racily clean: packing must take gone.txt from the index, not hash it again.
    utimesSync(join(repo, "gone.txt"), new Date(2020, 0, 1), new Date(2020, 0, 1));
    hostGit(repo, "update-index", "--refresh");
    const gone = hostGit(repo, "rev-parse", "HEAD:gone.txt").trim();
    rmSync(join(repo, ".git", "objects", gone.slice(0, 2), gone.slice(2)));
    writeFileSync(join(repo, "a.txt"), "a, dirty\n");

    const packed = await packWorkspace(repo, { vmName: "partial" });
    const guest = join(home, "guest");
    await copyIn(client(), packed.stream, { dest: guest });
    writeFileSync(join(guest, "a.txt"), "a, from the guest\n");
    const exported = await exportPatch(client(), { vmName: "partial", workspace: guest, baseCommit: packed.baseCommit, copiedCommit: packed.copiedCommit, hostRepo: repo });
    await assert.rejects(applyPatch(repo, exported.patch, { branch: "banger/partial", base: exported.baseCommit }), (err: BangerError) => {
      assert.match(err.message, new RegExp(gone));
      assert.doesNotMatch(err.message, /\n/);
      return true;
    });
    assert.equal(existsSync(log), false, "the repository's remote transport ran on the host");
  });
});

describe("workspace: a repository cannot point the copy at other host files", () => {
  const { home, cleanup } = makeTempHome();
  after(cleanup);

  /** Packs dir, expecting one clear refusal naming the problem; nothing is recorded or copied. */
  async function refused(dir: string, why: RegExp): Promise<void> {
    await assert.rejects(packWorkspace(dir, { vmName: "evil" }), (err: BangerError) => {
      assert.equal(err.code, ErrorCode.InvalidArgument);
      assert.match(err.message, why);
      assert.doesNotMatch(err.message, /\n/);
      return true;
    });
  }

  test("core.worktree naming another directory is refused", async () => {
    const victim = join(home, "victim");
    mkdirSync(victim);
    writeFileSync(join(victim, "secret.txt"), "host secret\n");
    const evil = committedRepo(join(home, "evil-worktree"), { "a.txt": "a\n" }, "first");
    hostGit(evil, "config", "core.worktree", "../../victim");
    await refused(evil, /not the work tree of its git directory/);
    // An ancestor is another directory too: its other files are not the repository's.
    hostGit(evil, "config", "core.worktree", "../..");
    await refused(evil, /not the work tree of its git directory/);
  });

  test("a .git file or symlink naming another repository is refused", async () => {
    const other = committedRepo(join(home, "private"), { "secret.txt": "private history\n" }, "private");
    const gitfile = join(home, "gitfile");
    mkdirSync(gitfile);
    writeFileSync(join(gitfile, ".git"), `gitdir: ${join(other, ".git")}\n`);
    await refused(gitfile, /not the work tree of its git directory/);
    const linked = join(home, "symlinked");
    mkdirSync(linked);
    symlinkSync(join(other, ".git"), join(linked, ".git"));
    await refused(linked, /not the work tree of its git directory/);
  });

  test("an include.path that never ends (a fifo) fails in bounded time, with one line", async () => {
    const repo = committedRepo(join(home, "fifo-include"), { "a.txt": "a\n" }, "first");
    execFileSync("mkfifo", [join(home, "never-ends")]);
    hostGit(repo, "config", "include.path", join(home, "never-ends"));
    const started = Date.now();
    await assert.rejects(packWorkspace(repo, { vmName: "fifo" }), (err: BangerError) => {
      assert.match(err.message, /did not finish in \d+ s$/);
      return true;
    });
    assert.ok(Date.now() - started < METADATA_TIMEOUT_MS + 5000);
  });

  test("objects/info/alternates (host paths) is not shipped", async () => {
    const lender = committedRepo(join(home, "lender"), { "a.txt": "a\n" }, "first");
    const borrower = join(home, "borrower");
    hostGit(home, "clone", "-q", "--shared", lender, borrower);
    const packed = await packWorkspace(borrower, { includeGit: true });
    const names = await tarMemberNames(packed.stream);
    assert.ok(names.includes(".git/objects/info/"), "the directory itself is shipped");
    assert.equal(names.filter((n) => n.endsWith("/alternates")).length, 0);
    assert.ok(existsSync(join(borrower, ".git", "objects", "info", "alternates")), "the host repository keeps its own");
  });
});

/** Runs fn to the end, keeping its failure for later: which canaries ran is the first thing to report. */
async function settle(fn: () => Promise<void>): Promise<{ rethrow: () => void }> {
  const failure = await fn().then(
    () => undefined,
    (err: unknown) => ({ err }),
  );
  return {
    rethrow: () => {
      if (failure) throw failure.err;
    },
  };
}

describe("workspace: a recorded repository is acted on only by its owner", () => {
  const { home, cleanup } = makeTempHome();
  after(cleanup);

  test("another user's repository is refused with one line; the owner and root may act on it", async () => {
    const repo = join(home, "theirs");
    mkdirSync(repo);
    execFileSync("chown", ["65534:65534", repo]);
    await assert.rejects(checkRepoOwner(repo, 1000), (err: BangerError) => {
      assert.equal(err.code, ErrorCode.InvalidArgument);
      assert.match(err.message, /is not yours \(owner uid 65534\)/);
      assert.doesNotMatch(err.message, /\n/);
      return true;
    });
    await checkRepoOwner(repo, 65534);
    await checkRepoOwner(repo, 0);
  });
});
