// What `vm run` copies in, on real VMs: refusals before anything boots (outside a repository,
// a missing --workspace, system directories), secrets left out, and the guest's repository
// showing the host's work in progress as work in progress; export and --apply then carry only
// what the guest changed. The busybox image has no git: the guest's /workspace is fetched as a
// tar and read with host git, which is what git in the guest would see.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { makeTempHome, mustRun, prepareBootableHome, runBanger, stopDaemon } from "../helpers.ts";

const git = (cwd: string, ...args: string[]) =>
  execFileSync("git", args, {
    cwd,
    encoding: "utf8",
    env: { ...process.env, GIT_CONFIG_GLOBAL: "/dev/null", GIT_AUTHOR_NAME: "t", GIT_AUTHOR_EMAIL: "t@example.com", GIT_COMMITTER_NAME: "t", GIT_COMMITTER_EMAIL: "t@example.com" },
  });

describe("vm run: the workspace copy (real VMs under QEMU)", () => {
  const { home, cleanup } = makeTempHome();
  let env: NodeJS.ProcessEnv = {};
  const banger = (args: string[], cwd: string) => runBanger(args, { home, env, cwd });
  const vms = async () => JSON.parse((await runBanger(["vm", "ls", "--json"], { home, env })).stdout || "[]") as { name: string }[];

  before(async () => {
    ({ env } = await prepareBootableHome(home));
    await mustRun(runBanger(["config", "set", "default_image", "busybox"], { home, env }));
    // The user's own identity, from their global config as git on the host reads it.
    const global = join(home, "user.gitconfig");
    execFileSync("git", ["config", "--file", global, "user.name", "Ada Lovelace"]);
    execFileSync("git", ["config", "--file", global, "user.email", "ada@example.com"]);
    env = { ...env, GIT_CONFIG_GLOBAL: global };
  });
  after(async () => {
    for (const v of await vms()) await runBanger(["vm", "rm", "-f", v.name], { home, env });
    await stopDaemon(home);
    cleanup();
  });

  it("refuses, before booting anything, a directory outside git, a missing --workspace and system directories", async () => {
    const plain = join(home, "plain");
    mkdirSync(join(plain, ".ssh"), { recursive: true });
    writeFileSync(join(plain, ".ssh", "id_ed25519"), "PRIVATE\n");
    const cases: Array<[string[], RegExp]> = [
      [["vm", "run", "--", "true"], /is not in a git repository; refusing to copy it without --workspace \(copy it with --workspace \. or run with --no-workspace; .*\)$/],
      [["vm", "run", "--workspace", join(home, "nonexistent"), "--", "true"], /no such directory: .*nonexistent/],
      [["vm", "run", "--workspace", "/proc", "--", "true"], /refusing to copy \/proc/],
      [["vm", "run", "--workspace", "/", "--", "true"], /refusing to copy the root directory/],
    ];
    for (const [args, message] of cases) {
      const started = Date.now();
      const r = await banger(args, plain);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr.trim(), message);
      assert.equal(r.stderr.trim().split("\n").length, 1, "one line");
      assert.ok(Date.now() - started < 15_000, "nothing booted");
    }
    assert.deepEqual(await vms(), []);
  });

  it("copies a named plain directory without its secrets, and says so", async () => {
    const plain = join(home, "plain");
    writeFileSync(join(plain, "data.txt"), "data\n");
    const r = await banger(["vm", "run", "--workspace", ".", "--", "sh", "-c", "find . -type f | sort"], plain);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "./data.txt\n");
    assert.match(r.stderr, /^copying .*plain: 2 files and directories, 5 B; 1 secret path\(s\) skipped: \.ssh \(--include PATH copies one\)$/m);
    assert.deepEqual(await vms(), [], "an unchanged plain directory's VM is removed");
  });

  it("keeps the VM when a plain directory may have changed, and says how to copy it out; --export needs git", async () => {
    const plain = join(home, "plain");
    const r = await banger(["vm", "run", "--workspace", ".", "--", "sh", "-c", "echo new > made.txt"], plain);
    assert.equal(r.code, 0, r.stderr);
    const kept = (await vms()).map((v) => v.name);
    assert.equal(kept.length, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`^vm ${kept[0]} is kept: its workspace \\(not a git repository\\) may have changed$`, "m"));
    assert.match(r.stderr, new RegExp(`^copy it out: +banger vm exec ${kept[0]} -- tar -C /workspace -c \\. > workspace\\.tar$`, "m"));
    const tar = await banger(["vm", "exec", kept[0]!, "--", "cat", "/workspace/made.txt"], plain);
    assert.equal(tar.stdout, "new\n", "the guest's work is still there");
    await banger(["vm", "rm", "-f", kept[0]!], plain);
    const refused = await banger(["vm", "run", "--workspace", ".", "--export", join(home, "p.patch"), "--", "true"], plain);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /--export and --apply need a git repository/);
    assert.deepEqual(await vms(), []);
  });

  it("the guest's repository is the host's checkout, work in progress included; export and --apply carry only the guest's change", async () => {
    const repo = join(home, "repo");
    mkdirSync(repo);
    git(repo, "init", "-q", "-b", "main");
    writeFileSync(join(repo, "staged.txt"), "v1\n");
    writeFileSync(join(repo, "dirty.txt"), "v1\n");
    writeFileSync(join(repo, "kept.txt"), "v1\n");
    git(repo, "add", "-A");
    git(repo, "commit", "-qm", "init");
    const head = git(repo, "rev-parse", "HEAD").trim();
    writeFileSync(join(repo, "staged.txt"), "v2 staged\n");
    git(repo, "add", "staged.txt");
    writeFileSync(join(repo, "dirty.txt"), "v2 unstaged\n");
    writeFileSync(join(repo, "untracked.txt"), "new on the host\n");
    writeFileSync(join(repo, ".env"), "TOKEN=secret\n");
    const hostStatus = git(repo, "status", "--porcelain");
    assert.equal(hostStatus, " M dirty.txt\nM  staged.txt\n?? .env\n?? untracked.txt\n");

    const run = await banger(["vm", "run", "--name", "wip", "--keep", "--", "sh", "-c", "echo 'guest change' >> kept.txt && echo guest > guest.txt"], repo);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /^copying .*repo \(git: HEAD, index and uncommitted work\): .*; 1 secret path\(s\) skipped: \.env /m);

    // The guest's /workspace, read with host git.
    const tar = await banger(["vm", "exec", "wip", "--", "sh", "-c", "cd /workspace && tar -cf - . | base64"], repo);
    assert.equal(tar.code, 0, tar.stderr);
    const copy = join(home, "guest-copy");
    mkdirSync(copy);
    execFileSync("tar", ["-x", "--no-same-owner", "-C", copy], { input: Buffer.from(tar.stdout.replace(/\s+/g, ""), "base64") });
    assert.equal(git(copy, "rev-parse", "HEAD").trim(), head, "same HEAD");
    assert.equal(git(copy, "symbolic-ref", "HEAD").trim(), "refs/heads/main");
    const guestStatus = git(copy, "status", "--porcelain");
    assert.equal(guestStatus, " M dirty.txt\n M kept.txt\nM  staged.txt\n?? guest.txt\n?? untracked.txt\n", "staged, unstaged and untracked as on the host, plus the guest's change; no .env");
    assert.equal(git(copy, "diff", "--cached", "--name-only"), "staged.txt\n", "staged stays staged");
    assert.equal(git(copy, "config", "user.name"), "Ada Lovelace\n", "the user's identity");
    assert.equal(git(copy, "config", "user.email"), "ada@example.com\n");

    const patchFile = join(home, "wip.patch");
    const exported = await banger(["vm", "workspace", "export", "wip", "--out", patchFile, "--apply", "--json"], repo);
    assert.equal(exported.code, 0, exported.stderr);
    const summary = JSON.parse(exported.stdout) as { baseCommit: string; applied: { branch: string } };
    assert.equal(summary.baseCommit, head);
    const patch = readFileSync(patchFile, "utf8");
    assert.deepEqual(patch.match(/^base-commit: .*$/gm), [`base-commit: ${head}`], "the base printed is the one in the patch");
    assert.doesNotMatch(patch, /v2 staged|v2 unstaged|new on the host|TOKEN/, "none of the host's own work");
    assert.deepEqual(git(repo, "diff", "--name-only", head, summary.applied.branch).trim().split("\n"), ["guest.txt", "kept.txt"]);
    assert.equal(git(repo, "status", "--porcelain"), hostStatus, "the host's checkout is untouched");

    // The branch merges into the checkout with its work in progress still there.
    const merged = join(home, "repo-merge");
    execFileSync("cp", ["-a", repo, merged]);
    git(merged, "merge", "-q", "--ff-only", summary.applied.branch);
    assert.equal(readFileSync(join(merged, "kept.txt"), "utf8"), "v1\nguest change\n");
    assert.equal(readFileSync(join(merged, "untracked.txt"), "utf8"), "new on the host\n");
    assert.equal(git(merged, "diff", "--cached", "--name-only"), "staged.txt\n");
    assert.equal((await banger(["vm", "rm", "-f", "wip"], repo)).code, 0);
  });
});
