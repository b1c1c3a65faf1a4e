// `banger vm run` as users meet it, on real VMs: a repository copied in (exactly the right
// files), the command's exit status passed through, an interactive shell through a PTY, and
// the guest's changes coming back as a patch applied on a new branch.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { spawnOnPty } from "../kits/pty.ts";
import { makeTempHome, mustRun, prepareBootableHome, runBanger, stopDaemon } from "../helpers.ts";

const git = (cwd: string, ...args: string[]) => execFileSync("git", ["-c", "user.email=t@example.com", "-c", "user.name=t", "-c", "protocol.file.allow=always", ...args], { cwd, encoding: "utf8" });

/** A repository with every kind of file a workspace copy must get right. */
function makeRepo(root: string): string {
  const sub = join(root, "sub-origin");
  mkdirSync(sub);
  git(sub, "init", "-q", "-b", "main");
  writeFileSync(join(sub, "lib.txt"), "from the submodule\n");
  git(sub, "add", "-A");
  git(sub, "commit", "-qm", "sub");
  const repo = join(root, "repo");
  mkdirSync(repo);
  git(repo, "init", "-q", "-b", "main");
  writeFileSync(join(repo, "README.md"), "hello\n");
  writeFileSync(join(repo, "tool.sh"), "#!/bin/sh\necho tool\n");
  chmodSync(join(repo, "tool.sh"), 0o755);
  writeFileSync(join(repo, "logo.bin"), Buffer.from([0, 1, 2, 255, 254, 0, 10]));
  writeFileSync(join(repo, ".gitignore"), "*.log\nbuild/\n");
  git(repo, "submodule", "add", "-q", sub, "vendor/sub");
  git(repo, "add", "-A");
  git(repo, "commit", "-qm", "init");
  writeFileSync(join(repo, "notes.txt"), "untracked but not ignored\n");
  writeFileSync(join(repo, "debug.log"), "ignored\n");
  mkdirSync(join(repo, "build"));
  writeFileSync(join(repo, "build", "out.o"), "ignored too\n");
  return repo;
}

describe("vm run (real VMs under QEMU)", () => {
  const { home, cleanup } = makeTempHome();
  let env: NodeJS.ProcessEnv = {};
  let repo = "";
  const banger = (args: string[], cwd = repo) => runBanger(args, { home, env, cwd });

  before(async () => {
    ({ env } = await prepareBootableHome(home));
    env = { ...env };
    await mustRun(runBanger(["config", "set", "default_image", "busybox"], { home, env }));
    repo = makeRepo(home);
  });
  after(async () => {
    for (const v of JSON.parse((await runBanger(["vm", "ls", "--json"], { home, env })).stdout || "[]") as { name: string }[]) {
      await runBanger(["vm", "rm", "-f", v.name], { home, env });
    }
    await stopDaemon(home);
    cleanup();
  });

  it("copies tracked, untracked and submodule files (not ignored ones) into /workspace, owned by the guest user", async () => {
    const r = await banger([
      "vm",
      "run",
      "--",
      "sh",
      "-c",
      "pwd; id -un; find . -path ./.git -prune -o -type f -print | sort; stat -c '%a %U %n' tool.sh README.md; od -An -tx1 logo.bin; test -f .git/HEAD && echo has-git",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split("\n");
    assert.equal(lines[0], "/workspace");
    assert.equal(lines[1], "dev");
    const files = lines.filter((l) => l.startsWith("./"));
    assert.deepEqual(files, ["./.gitignore", "./.gitmodules", "./README.md", "./logo.bin", "./notes.txt", "./tool.sh", "./vendor/sub/.git", "./vendor/sub/lib.txt"]);
    assert.ok(lines.includes("755 dev tool.sh") && lines.includes("644 dev README.md"), r.stdout);
    assert.ok(
      lines.some((l) => l.trim() === "00 01 02 ff fe 00 0a"),
      "binary bytes arrive intact",
    );
    assert.ok(lines.includes("has-git"));
    assert.deepEqual(JSON.parse((await banger(["vm", "ls", "--json"])).stdout), [], "the VM is removed afterwards");
  });

  it("exits with the command's status, and 128+N when a signal ends it", async () => {
    const three = await banger(["vm", "run", "--no-workspace", "--", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert.equal(three.code, 3);
    assert.equal(three.stdout, "out\n");
    assert.match(three.stderr, /^err$/m);
    const signalled = await banger(["vm", "run", "--no-workspace", "--", "sh", "-c", "kill -KILL $$"]);
    assert.equal(signalled.code, 128 + 9);
  });

  it("gives an interactive shell in /workspace through a PTY", async () => {
    const out = await new Promise<string>((resolve, reject) => {
      const child = spawnOnPty(["vm", "run"], { cwd: repo, env: { ...env, BANGER_HOME: home } });
      let text = "";
      let sent = false;
      child.stdout.on("data", (b) => {
        text += b;
        if (!sent && /\/workspace\$ /.test(text)) {
          sent = true;
          child.stdin.write("echo answer=$((6*7)) in $(pwd)\r");
          setTimeout(() => child.stdin.write("exit\r"), 500);
        }
      });
      child.on("error", reject);
      child.on("close", () => resolve(text));
      setTimeout(() => child.kill(), 60_000).unref();
    });
    assert.match(out, /answer=42 in \/workspace/);
    assert.deepEqual(JSON.parse((await banger(["vm", "ls", "--json"])).stdout), [], "no changes: the VM is removed");
  });

  it("brings the guest's changes back as a patch that applies on a new branch", async () => {
    const run = await banger([
      "vm",
      "run",
      "--name",
      "changer",
      "--keep",
      "--",
      "sh",
      "-c",
      "echo more >> README.md && echo new > added.txt && chmod +x README.md && printf '\\000\\377x' > logo.bin && rm notes.txt",
    ]);
    assert.equal(run.code, 0, run.stderr);
    const first = await banger(["vm", "workspace", "export", "changer", "--out", join(home, "p1.patch"), "--json"]);
    const second = await banger(["vm", "workspace", "export", "changer", "--out", join(home, "p2.patch"), "--json"]);
    assert.equal(first.code, 0, first.stderr);
    assert.equal(second.code, 0, second.stderr);
    const s1 = JSON.parse(first.stdout);
    assert.equal(s1.baseCommit, git(repo, "rev-parse", "HEAD").trim());
    assert.equal(s1.uncommitted, true);
    const { readFileSync } = await import("node:fs");
    assert.deepEqual(readFileSync(join(home, "p1.patch")), readFileSync(join(home, "p2.patch")), "exporting twice gives the same patch");
    const statusBefore = git(repo, "status", "--porcelain");
    const headBefore = git(repo, "rev-parse", "HEAD");
    const applied = await banger(["vm", "workspace", "export", "changer", "--apply", "--json"]);
    assert.equal(applied.code, 0, applied.stderr);
    assert.equal(JSON.parse(applied.stdout).applied.branch, "banger/changer");
    assert.equal(git(repo, "status", "--porcelain"), statusBefore, "the working tree is untouched");
    assert.equal(git(repo, "rev-parse", "HEAD"), headBefore, "HEAD is untouched");
    assert.equal(git(repo, "show", "banger/changer:README.md"), "hello\nmore\n");
    assert.equal(git(repo, "show", "banger/changer:added.txt"), "new\n");
    assert.match(git(repo, "ls-tree", "banger/changer", "README.md"), /^100755 /, "the mode survives");
    assert.deepEqual(execFileSync("git", ["show", "banger/changer:logo.bin"], { cwd: repo }), Buffer.from([0, 255, 0x78]), "binary content survives");
    assert.equal(git(repo, "ls-tree", "--name-only", "banger/changer", "notes.txt"), "", "the deletion survives");
    assert.equal((await banger(["vm", "rm", "-f", "changer"])).code, 0);
    assert.equal(git(repo, "for-each-ref", "refs/banger/"), "", "no banger refs left once the VM is gone");
  });

  it("starts a detached session that outlives the CLI, and keeps the VM", async () => {
    const r = await banger(["vm", "run", "-d", "--name", "detached", "--", "sh", "-c", "while true; do echo tick; sleep 1; done"]);
    assert.equal(r.code, 0, r.stderr);
    const m = /^vm detached, session (\S+)$/m.exec(r.stdout);
    assert.ok(m, r.stdout);
    const sessions = JSON.parse((await banger(["session", "ls", "detached", "--json"])).stdout) as { name: string; state: string }[];
    assert.equal(sessions.find((s) => s.name === m[1])?.state, "running");
    const logs = await banger(["session", "logs", "detached", m[1]!]);
    assert.match(logs.stdout, /tick/);
    assert.equal(JSON.parse((await banger(["vm", "show", "detached", "--json"])).stdout).state, "running");
    assert.equal((await banger(["vm", "rm", "-f", "detached"])).code, 0);
  });
});
