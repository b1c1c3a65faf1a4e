// Planning a copy (no VM, no agent: the plan is what `vm run` checks before it boots
// anything): which directories may be copied, which secrets are left out, what a plan lists,
// and the git config the guest gets.
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, symlinkSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { makeTempHome } from "../../test/helpers.ts";
import { type BangerError, ErrorCode } from "../util/errors.ts";
import { LARGE_COPY, planWorkspace, startCopy, type WorkspacePlan } from "./index.ts";
import { committedRepo, hostGit } from "../../test/kits/workspace.ts";
import { tarMemberNames } from "../../test/kits/tar.ts";

/** The archive's member names (without the "./" root), in order. */
async function copiedNames(plan: WorkspacePlan, vmName?: string): Promise<string[]> {
  const packed = await startCopy(plan, { vmName });
  return (await tarMemberNames(packed.stream)).map((n) => n.replace(/\/$/, ""));
}

/** Asserts a one-line usage error whose message and hint match. */
function refusal(message: RegExp, hint?: RegExp) {
  return (err: BangerError) => {
    assert.equal(err.code, ErrorCode.InvalidArgument, err.message);
    assert.match(err.message, message);
    assert.doesNotMatch(err.message, /\n/);
    if (hint) assert.match(err.hint ?? "", hint);
    return true;
  };
}

/** A directory full of things that must not leave the host, and a few that look alike but may. */
function secretsDir(dir: string): string {
  for (const d of [".ssh", ".aws", ".docker", ".kube", ".gnupg", "src", ".config/gcloud"]) mkdirSync(join(dir, d), { recursive: true });
  const files: Record<string, string> = {
    ".ssh/id_ed25519": "PRIVATE KEY\n",
    ".ssh/known_hosts": "host key\n",
    ".aws/credentials": "[default]\naws_secret_access_key=x\n",
    ".docker/config.json": '{"auths":{}}\n',
    ".docker/daemon.json": "{}\n",
    ".kube/config": "token\n",
    ".gnupg/secring.gpg": "key\n",
    ".config/gcloud/credentials.db": "x\n",
    ".netrc": "machine x password y\n",
    ".env": "TOKEN=1\n",
    ".env.example": "TOKEN=\n",
    "src/.env.local": "TOKEN=2\n",
    "src/main.c": "int main;\n",
    "notes.txt": "notes\n",
  };
  for (const [name, body] of Object.entries(files)) writeFileSync(join(dir, name), body);
  return dir;
}

describe("workspace plan: what may be copied", () => {
  const { home, cleanup } = makeTempHome();
  after(cleanup);

  test("outside a repository nothing is copied unless --workspace names the directory", async () => {
    const dir = join(home, "plain");
    mkdirSync(dir);
    writeFileSync(join(dir, "a.txt"), "a\n");
    await assert.rejects(planWorkspace(dir), refusal(/is not in a git repository; refusing to copy it without --workspace$/, /--workspace \..*--no-workspace/));
    const plan = await planWorkspace(dir, { explicit: true });
    assert.equal(plan.isRepo, false);
    assert.deepEqual(await copiedNames(plan), [".", "a.txt"]);
  });

  test("--workspace is validated: a missing path is 'no such directory', a file is not a directory", async () => {
    await assert.rejects(planWorkspace(join(home, "nope"), { explicit: true }), refusal(/^no such directory: .*nope$/, /--no-workspace/));
    writeFileSync(join(home, "file"), "x\n");
    await assert.rejects(planWorkspace(join(home, "file"), { explicit: true }), refusal(/file is not a directory$/));
    // `--workspace "$DIR"` with DIR unset must not quietly mean the current directory (maybe $HOME).
    await assert.rejects(planWorkspace("", { explicit: true }), refusal(/^--workspace names no directory \(an empty path\)$/, /--workspace \./));
  });

  test("/, /proc, /sys and /dev are refused at once, even when named; nothing is walked", async () => {
    const started = Date.now();
    for (const dir of ["/", "/proc", "/proc/self", "/sys", "/dev"]) {
      await assert.rejects(planWorkspace(dir, { explicit: true }), refusal(/refusing to copy/, /--no-workspace/), dir);
    }
    assert.ok(Date.now() - started < 2000, "refused before any walk");
  });

  test("$HOME is refused unless named, even as a repository", async () => {
    const fakeHome = committedRepo(join(home, "user-home"), { ".bashrc": "# rc\n" }, "dotfiles");
    const saved = process.env.HOME;
    process.env.HOME = fakeHome; // os.homedir() reads $HOME
    try {
      await assert.rejects(planWorkspace(fakeHome), refusal(/your home directory without --workspace/, /--workspace ~/));
      const plan = await planWorkspace(fakeHome, { explicit: true });
      assert.equal(plan.root, fakeHome);
    } finally {
      process.env.HOME = saved;
    }
  });

  test("--include must name a path inside the copy", async () => {
    const dir = join(home, "inc");
    mkdirSync(dir);
    await assert.rejects(planWorkspace(dir, { explicit: true, include: ["../elsewhere"] }), refusal(/--include \.\.\/elsewhere is not inside the workspace/));
  });
});

describe("workspace plan: secrets", () => {
  const { home, cleanup } = makeTempHome();
  after(cleanup);

  test("a plain directory's secrets are left out, named in the plan, and not walked", async () => {
    const dir = secretsDir(join(home, "plain"));
    const plan = await planWorkspace(dir, { explicit: true });
    assert.deepEqual(plan.skipped, [".aws", ".config/gcloud", ".docker/config.json", ".env", ".gnupg", ".kube", ".netrc", ".ssh", "src/.env.local"]);
    const names = await copiedNames(plan);
    assert.deepEqual(names.filter((n) => !n.endsWith("/") && n !== ".").sort(), [".config", ".docker", ".docker/daemon.json", ".env.example", "notes.txt", "src", "src/main.c"]);
  });

  test("--include copies a secret, or one file inside a secret directory", async () => {
    const dir = secretsDir(join(home, "included"));
    const plan = await planWorkspace(dir, { explicit: true, include: [".env", join(dir, ".ssh/id_ed25519")] });
    const names = await copiedNames(plan);
    assert.ok(names.includes(".env"));
    assert.ok(names.includes(".ssh/id_ed25519"));
    assert.ok(!names.includes(".ssh/known_hosts"), "only what was named");
    assert.ok(plan.skipped.includes(".ssh/known_hosts") && !plan.skipped.includes(".env") && !plan.skipped.includes(".ssh"));
  });

  test("in a repository: untracked secrets are left out (and out of the recorded copy); a tracked .env is the user's choice and copied", async () => {
    const repo = committedRepo(join(home, "repo"), { ".env": "COMMITTED=1\n", "a.txt": "a\n" }, "first");
    mkdirSync(join(repo, ".aws"));
    writeFileSync(join(repo, ".aws", "credentials"), "secret\n");
    mkdirSync(join(repo, "config"));
    writeFileSync(join(repo, "config", ".netrc"), "machine x\n");
    writeFileSync(join(repo, ".env.local"), "LOCAL=1\n");
    writeFileSync(join(repo, "new.txt"), "new\n");
    const status = hostGit(repo, "status", "--porcelain");
    const plan = await planWorkspace(repo);
    assert.deepEqual(plan.skipped, [".aws", ".env.local", "config/.netrc"]);
    const names = await copiedNames(plan, "sec");
    for (const n of [".env", "a.txt", "new.txt", ".git/HEAD"]) assert.ok(names.includes(n), n);
    for (const n of [".aws/credentials", ".env.local", "config/.netrc"]) assert.ok(!names.includes(n), n);
    const recorded = hostGit(repo, "ls-tree", "-r", "--name-only", plan.copiedCommit!).trim().split("\n");
    assert.deepEqual(recorded, [".env", "a.txt", "new.txt"], "a skipped file is not a deletion the guest made");
    assert.equal(hostGit(repo, "status", "--porcelain"), status, "the user's checkout is untouched");
  });
});

describe("workspace plan: what a plan lists and records", () => {
  const { home, cleanup } = makeTempHome();
  after(cleanup);

  test("the plan counts what startCopy streams, and records refs/banger/copied/<vm> only when the copy starts", async () => {
    const repo = committedRepo(join(home, "repo"), { "a.txt": "a\n" }, "first");
    writeFileSync(join(repo, "b.txt"), "bb\n");
    const plan = await planWorkspace(repo);
    assert.equal(plan.large, false);
    assert.throws(() => hostGit(repo, "rev-parse", "-q", "--verify", "refs/banger/copied/vm1"), "no ref before the VM exists");
    const names = await copiedNames(plan, "vm1");
    assert.equal(names.length, plan.files);
    assert.equal(hostGit(repo, "rev-parse", "refs/banger/copied/vm1").trim(), plan.copiedCommit);
    assert.deepEqual(hostGit(repo, "rev-list", "--parents", "-n", "1", plan.copiedCommit!).trim().split(" ").slice(1, 2), [plan.baseCommit], "HEAD is the copied commit's first parent");
  });

  test(`a copy over ${LARGE_COPY.bytes / 1024 / 1024} MiB is flagged with its heaviest parts`, async () => {
    const dir = join(home, "large");
    mkdirSync(join(dir, "data"), { recursive: true });
    writeFileSync(join(dir, "data", "big.img"), "");
    truncateSync(join(dir, "data", "big.img"), LARGE_COPY.bytes + 1); // sparse: costs no disk
    writeFileSync(join(dir, "small.txt"), "s\n");
    symlinkSync("small.txt", join(dir, "link"));
    const plan = await planWorkspace(dir, { explicit: true });
    assert.equal(plan.large, true);
    assert.equal(plan.bytes, LARGE_COPY.bytes + 1 + 2);
    assert.deepEqual(plan.heaviest[0], { name: "data", files: 2, bytes: LARGE_COPY.bytes + 1 });
  });

  test("the guest's .git/config gets the user's effective identity as plain values", async () => {
    const repo = committedRepo(join(home, "ident"), { "a.txt": "a\n" }, "first");
    const global = join(home, "gitconfig");
    const name = 'Ada "the" Lovelace; [x] \\ # not a comment';
    execFileSync("git", ["config", "--file", global, "user.name", name]);
    execFileSync("git", ["config", "--file", global, "user.email", "ada@example.com"]);
    const saved = process.env.GIT_CONFIG_GLOBAL;
    process.env.GIT_CONFIG_GLOBAL = global; // the user's own config, as git on the host reads it
    let plan: WorkspacePlan;
    try {
      plan = await planWorkspace(repo);
    } finally {
      if (saved === undefined) delete process.env.GIT_CONFIG_GLOBAL;
      else process.env.GIT_CONFIG_GLOBAL = saved;
    }
    const dest = join(home, "ident-copy");
    mkdirSync(dest);
    const packed = await startCopy(plan);
    const chunks: Buffer[] = [];
    for await (const c of packed.stream) chunks.push(c as Buffer);
    execFileSync("tar", ["-x", "-C", dest], { input: Buffer.concat(chunks) });
    const read = (key: string) => execFileSync("git", ["config", "--file", join(dest, ".git", "config"), "--get", key], { encoding: "utf8" });
    assert.equal(read("user.name"), `${name}\n`);
    assert.equal(read("user.email"), "ada@example.com\n");
    assert.throws(() => execFileSync("git", ["config", "--file", join(repo, ".git", "config"), "--get", "user.name"], { stdio: "pipe" }), "the host repository's config is not changed");
  });
});
