// A repository's git directory layout and index are untrusted too: a `commondir` file, an
// index naming "../x", a tracked path under a symlinked directory or a submodule that is a
// symlink must not make the copy read host files outside the repository.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, readdirSync, symlinkSync, truncateSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeTempHome } from "../../test/helpers.ts";
import type { BangerError } from "../util/errors.ts";
import { ErrorCode } from "../util/errors.ts";
import type { AgentClient } from "../guest/index.ts";
import { applyPatch, copyIn, exportPatch, packWorkspace, planWorkspace, type WorkspacePlan } from "./index.ts";
import { MAX_SERIES_COMMITS } from "./series.ts";
import { committedRepo, guestSh, handWrittenIndex, hostGit, useAgent } from "../../test/kits/workspace.ts";

describe("workspace: a repository's layout and index cannot reach other host files", () => {
  const { home, cleanup } = makeTempHome();
  after(cleanup);

  /** What the plan would read from the host for each archive name (files only). */
  const sources = (plan: WorkspacePlan) => plan.entries.flatMap((e) => (e.kind === "file" ? [e.abs] : []));
  const outside = (plan: WorkspacePlan, top: string) => sources(plan).filter((abs) => !abs.startsWith(`${top}/`));

  test("a commondir file naming another repository is refused; that repository is left alone", async () => {
    const victim = committedRepo(join(home, "victim"), { "private.txt": "private history\n" }, "private");
    hostGit(victim, "config", "remote.origin.url", "https://user:TOKEN@example.com/x");
    const refsBefore = hostGit(victim, "for-each-ref");
    const evil = committedRepo(join(home, "evil-commondir"), { "a.txt": "a\n" }, "first");
    writeFileSync(join(evil, ".git", "commondir"), `${join(victim, ".git")}\n`);
    await assert.rejects(planWorkspace(evil), (err: BangerError) => {
      assert.equal(err.code, ErrorCode.InvalidArgument);
      assert.match(err.message, /not the work tree of its git directory|shares its git directory/);
      assert.doesNotMatch(err.message, /\n/);
      return true;
    });
    // The same through a linked-worktree-looking .git file whose gitdir names the work tree back.
    const wt = join(home, "evil-wt");
    mkdirSync(join(wt, "meta"), { recursive: true });
    writeFileSync(join(wt, ".git"), `gitdir: ${join(wt, "meta")}\n`);
    writeFileSync(join(wt, "meta", "gitdir"), `${join(wt, ".git")}\n`);
    writeFileSync(join(wt, "meta", "HEAD"), "ref: refs/heads/main\n");
    writeFileSync(join(wt, "meta", "commondir"), `${join(victim, ".git")}\n`);
    await assert.rejects(planWorkspace(wt), (err: BangerError) => err.code === ErrorCode.InvalidArgument);
    assert.equal(hostGit(victim, "for-each-ref"), refsBefore, "nothing was recorded in the other repository");
  });

  test("a real linked worktree still copies (its common directory is its own repository's)", async () => {
    const main = committedRepo(join(home, "main-repo"), { "a.txt": "a\n" }, "first");
    hostGit(main, "worktree", "add", "-q", join(home, "linked"), "-b", "side");
    const plan = await planWorkspace(join(home, "linked"));
    assert.equal(plan.root, join(home, "linked"));
    assert.ok(plan.entries.some((e) => e.name === ".git/config"));
  });

  test("index entries naming ../ paths or paths under a symlinked directory are never read", async () => {
    const priv = join(home, "private");
    mkdirSync(priv);
    writeFileSync(join(priv, "id_rsa"), "PRIVATE KEY\n");
    const evil = committedRepo(join(home, "evil-index"), { readme: "hi\n" }, "first");
    const oid = hostGit(evil, "rev-parse", "HEAD:readme").trim();
    symlinkSync(priv, join(evil, "dir"));
    writeFileSync(join(evil, ".git", "index"), handWrittenIndex(["readme", "dir/id_rsa", "../private/id_rsa"], oid));
    const plan = await planWorkspace(evil).catch((err: BangerError) => err);
    if (plan instanceof Error) assert.equal(plan.code, ErrorCode.InvalidArgument);
    else assert.deepEqual(outside(plan, evil), []);
  });

  test("a nested repository's index cannot name ../ paths, paths under a symlink, or a symlinked submodule", async () => {
    const priv = committedRepo(join(home, "private-repo"), { "secret.txt": "private source\n" }, "private");
    writeFileSync(join(priv, "id_rsa"), "PRIVATE KEY\n");
    const evil = committedRepo(join(home, "evil-nested"), { readme: "hi\n" }, "first");
    const sub = committedRepo(join(evil, "sub"), { f: "f\n" }, "sub");
    hostGit(evil, "update-index", "--add", "--cacheinfo", `160000,${hostGit(sub, "rev-parse", "HEAD").trim()},sub`);
    symlinkSync(priv, join(sub, "dir"));
    const oid = hostGit(sub, "rev-parse", "HEAD:f").trim();
    writeFileSync(join(sub, ".git", "index"), handWrittenIndex(["f", "dir/id_rsa", "../../private-repo/id_rsa"], oid));
    const plan = await planWorkspace(evil).catch((err: BangerError) => err);
    if (plan instanceof Error) assert.equal(plan.code, ErrorCode.InvalidArgument);
    else assert.deepEqual(outside(plan, evil), []);
    // A gitlink at a symlink to another repository: its files and .git are not copied.
    hostGit(sub, "read-tree", "HEAD");
    hostGit(sub, "update-index", "--add", "--cacheinfo", `160000,${hostGit(priv, "rev-parse", "HEAD").trim()},gl`);
    symlinkSync(priv, join(sub, "gl"));
    const plan2 = await planWorkspace(evil);
    assert.deepEqual(outside(plan2, evil), []);
    assert.ok(!plan2.entries.some((e) => e.name.startsWith("sub/gl/")), "nothing is copied through the symlink");
  });

  test("a submodule's own config (filters, textconv) runs nothing while the copy is planned", async () => {
    const log = join(home, "sub-canary.log");
    const canary = join(home, "sub-canary.sh");
    writeFileSync(canary, `#!/bin/sh\necho ran >> '${log}'\ncat\n`, { mode: 0o755 });
    const evil = committedRepo(join(home, "evil-subconfig"), { readme: "hi\n" }, "first");
    const sub = committedRepo(join(evil, "sub"), { "a.txt": "aaaa\n", ".gitattributes": "*.txt filter=canary diff=canary\n" }, "sub");
    hostGit(sub, "config", "filter.canary.clean", canary);
    hostGit(sub, "config", "diff.canary.textconv", canary);
    // Same bytes, another mtime: git must hash a.txt again to tell whether the submodule is dirty.
    utimesSync(join(sub, "a.txt"), new Date(2001, 1, 1), new Date(2001, 1, 1));
    hostGit(evil, "update-index", "--add", "--cacheinfo", `160000,${hostGit(sub, "rev-parse", "HEAD").trim()},sub`);
    hostGit(evil, "commit", "-q", "-m", "add sub");
    writeFileSync(join(evil, "readme"), "dirty\n");
    const plan = await planWorkspace(evil);
    assert.equal(existsSync(log) ? readFileSync(log, "utf8") : "", "", "the submodule's filter ran on the host");
    assert.ok(
      plan.entries.some((e) => e.name === "sub/a.txt"),
      "the submodule's files are still copied",
    );
  });

  test("a huge (sparse) index is refused at once, before anything copies it", async () => {
    const evil = committedRepo(join(home, "evil-bigindex"), { readme: "hi\n" }, "first");
    truncateSync(join(evil, ".git", "index"), 4 * 1024 ** 3);
    const views = () => readdirSync(tmpdir()).filter((n) => n.startsWith("banger-git-")).length;
    const before = views();
    const started = Date.now();
    await assert.rejects(planWorkspace(evil), (err: BangerError) => {
      assert.equal(err.code, ErrorCode.InvalidArgument);
      assert.match(err.message, /index .* is larger than/);
      return true;
    });
    assert.ok(Date.now() - started < 3000, "refused before copying gigabytes");
    assert.equal(views(), before, "the view was removed");
  });
});

describe("workspace: a guest's objects cannot make host git hold more than the patch may", () => {
  const { home, cleanup } = makeTempHome();
  const { agent: client } = useAgent(home);
  after(cleanup);
  let agent: AgentClient;
  before(() => {
    agent = client();
  });

  test("an object that inflates past the patch bound (a few KiB sent) is refused before git reads it", async () => {
    const repo = committedRepo(join(home, "host"), { "a.txt": "a\n" }, "first");
    const packed = await packWorkspace(repo, { vmName: "bomb" });
    const dest = join(home, "guest");
    await copyIn(agent, packed.stream, { dest });
    // 64 MiB of zeros: about 64 KiB as a loose object, committed then removed from the work tree.
    await guestSh(agent, "head -c 67108864 /dev/zero > big && git add big && git -c user.name=g -c user.email=g@g commit -q -m big && rm big && du -sk .git/objects | cut -f1", {
      cwd: dest,
      env: { HOME: dest },
    });
    await assert.rejects(
      exportPatch(agent, { vmName: "bomb", workspace: dest, baseCommit: packed.baseCommit, copiedCommit: packed.copiedCommit, hostRepo: repo, maxPatchBytes: 1024 * 1024 }),
      (err: BangerError) => {
        assert.match(err.message, /object .* of 67108864 bytes/);
        assert.doesNotMatch(err.message, /\n/);
        return true;
      },
    );
  });

  test("the host's own big objects (shipped in its .git) do not count against the bound", async () => {
    const repo = committedRepo(join(home, "host-big"), { "a.txt": "a\n" }, "first");
    writeFileSync(join(repo, "big"), Buffer.alloc(2 * 1024 * 1024));
    hostGit(repo, "add", "big");
    hostGit(repo, "commit", "-q", "-m", "big");
    const packed = await packWorkspace(repo, { vmName: "hostbig" });
    const dest = join(home, "guest-hostbig");
    await copyIn(agent, packed.stream, { dest });
    writeFileSync(join(dest, "a.txt"), "a, guest\n");
    const exported = await exportPatch(agent, { vmName: "hostbig", workspace: dest, baseCommit: packed.baseCommit, copiedCommit: packed.copiedCommit, hostRepo: repo, maxPatchBytes: 1024 * 1024 });
    assert.match(exported.patch.toString("utf8"), /^\+a, guest$/m);
  });

  test("a guest series that commits a symlink to a host directory, then a file under that name, writes nothing there on apply", async () => {
    const target = join(home, "host-target");
    mkdirSync(target);
    const repo = committedRepo(join(home, "host-symlink"), { "a.txt": "a\n" }, "first");
    const packed = await packWorkspace(repo, { vmName: "through" });
    const dest = join(home, "guest-through");
    await copyIn(agent, packed.stream, { dest });
    const commit = "git -c user.name=g -c user.email=g@g commit -q";
    await guestSh(
      agent,
      `ln -s '${target}' l && git add l && ${commit} -m link && rm l && mkdir l && echo pwned > l/x && git add -A && ${commit} -m through && ln -s '${target}' m && mkdir -p n && echo pwned > n/y`,
      { cwd: dest, env: { HOME: dest } },
    );
    const exported = await exportPatch(agent, { vmName: "through", workspace: dest, baseCommit: packed.baseCommit, copiedCommit: packed.copiedCommit, hostRepo: repo });
    const applied = await applyPatch(repo, exported.patch, { branch: "banger/through", base: exported.baseCommit }).catch((err: Error) => err);
    assert.deepEqual(readdirSync(target), [], "nothing was written through the guest's symlink");
    if (!(applied instanceof Error)) assert.equal(hostGit(repo, "show", `${applied.head}:l/x`), "pwned\n", "the branch holds l/x as a file in the repository");
  });

  test(`a guest history of more than ${MAX_SERIES_COMMITS} commits comes back squashed, in bounded time`, async () => {
    const repo = committedRepo(join(home, "host-many"), { "a.txt": "a\n" }, "first");
    const packed = await packWorkspace(repo, { vmName: "many" });
    const dest = join(home, "guest-many");
    await copyIn(agent, packed.stream, { dest });
    // One fast-import stream on the guest's branch; each commit adds a file, so none is dropped as empty.
    const n = MAX_SERIES_COMMITS + 1;
    const stream = Array.from(
      { length: n },
      (_, k) => `commit refs/heads/main\ncommitter g <g@g> 0 +0000\ndata 2\nc\n${k === 0 ? `from ${packed.baseCommit}\n` : ""}M 100644 inline f${k + 1}\ndata <<END\n${k + 1}\nEND\n\n`,
    ).join("");
    writeFileSync(join(home, "many.fi"), stream);
    await guestSh(agent, `git fast-import --quiet < '${join(home, "many.fi")}' && git reset -q --hard`, { cwd: dest, env: { HOME: dest } });
    const started = Date.now();
    const exported = await exportPatch(agent, { vmName: "many", workspace: dest, baseCommit: packed.baseCommit, copiedCommit: packed.copiedCommit, hostRepo: repo });
    const took = Date.now() - started;
    assert.deepEqual([exported.squashed, exported.commits], [true, 0]);
    assert.match(exported.patch.toString("utf8"), new RegExp(`more than ${MAX_SERIES_COMMITS} commits`));
    assert.match(exported.patch.toString("utf8"), new RegExp(`^\\+${n}$`, "m"));
    assert.ok(took < 20_000, `export took ${took} ms`);
  });
});
