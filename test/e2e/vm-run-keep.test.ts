// `vm run` never loses the guest's work, on real VMs: a changed workspace keeps the VM (and
// says what changed and what to do next), --rm / --export / --apply end it on purpose, an
// unchanged run leaves nothing; Ctrl-C, SIGTERM and SIGHUP reach the guest command without a
// terminal, a second Ctrl-C within a second gives up at once (exit 130), and an interrupted
// run with changes keeps its VM.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { spawnOnPty } from "../kits/pty.ts";
import { REPO, assertNoCallLeft, makeTempHome, mustRun, prepareBootableHome, runBanger, stopDaemon } from "../helpers.ts";

const git = (cwd: string, ...args: string[]) => execFileSync("git", ["-c", "user.email=t@example.com", "-c", "user.name=t", ...args], { cwd, encoding: "utf8" });

/**
 * `banger ARGS` on a PTY (as the user's terminal would be): `steps` are [pattern, keys] pairs,
 * each keys string typed once the output matches its pattern.
 */
function inPty(args: string[], steps: [RegExp, string][], opts: { home: string; env: NodeJS.ProcessEnv; cwd: string }): Promise<{ text: string; code: number | null }> {
  return new Promise((resolve, reject) => {
    const child = spawnOnPty(args, { cwd: opts.cwd, env: { BANGER_NETWORK: "off", ...opts.env, BANGER_HOME: opts.home } });
    let text = "";
    let step = 0;
    let waiting = false;
    // Keys go 300 ms apart: two Ctrl-Cs typed at once are one pending SIGINT to banger.
    const advance = () => {
      if (waiting || step >= steps.length || !steps[step]![0].test(text)) return;
      waiting = true;
      setTimeout(
        () => {
          child.stdin.write(steps[step++]![1]);
          waiting = false;
          advance();
        },
        step === 0 ? 0 : 300,
      );
    };
    child.stdout.on("data", (b) => {
      text += b;
      advance();
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ text, code }));
    setTimeout(() => child.kill(), 180_000).unref();
  });
}

/**
 * A guest command that sets `traps`, says "ready" and waits for a background sleep. `wait` is
 * what a trapped signal interrupts at once (POSIX); busybox sh runs a foreground `sleep` inside
 * itself and would hold the trap until the sleep ends (60 s, and racy).
 */
function waiting(traps: string): string {
  return `${traps}; sleep 60 & echo ready; wait $!`;
}

/** A running `banger` (stdin a pipe, not a terminal) to send signals to. */
function startBanger(args: string[], opts: { home: string; env: NodeJS.ProcessEnv; cwd: string }) {
  const child = spawn(join(REPO, "bin", "banger"), args, { cwd: opts.cwd, env: { ...process.env, BANGER_NETWORK: "off", ...opts.env, BANGER_HOME: opts.home }, stdio: ["pipe", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  const waiters: { re: RegExp; resolve: () => void }[] = [];
  child.stdout.on("data", (b) => {
    stdout += b;
    for (const w of waiters.filter((w) => w.re.test(stdout))) w.resolve();
  });
  child.stderr.on("data", (b) => (stderr += b));
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; at: number }>((resolve) =>
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr, at: Date.now() })),
  );
  const kill = setTimeout(() => child.kill("SIGKILL"), 240_000);
  void done.then(() => clearTimeout(kill));
  return {
    child,
    done,
    /** Resolves once stdout matches (the guest command is running); fails after two minutes. */
    stdoutMatches: (re: RegExp) =>
      new Promise<void>((resolve, reject) => {
        if (re.test(stdout)) return resolve();
        waiters.push({ re, resolve });
        setTimeout(() => reject(new Error(`no ${re} on stdout; stderr: ${stderr}`)), 120_000).unref();
      }),
  };
}

describe("vm run keeps the guest's work (real VMs under QEMU)", () => {
  const { home, cleanup } = makeTempHome();
  let env: NodeJS.ProcessEnv = {};
  let repo = "";
  const banger = (args: string[]) => runBanger(args, { home, env, cwd: repo });
  const vmNames = async () => (JSON.parse((await mustRun(banger(["vm", "ls", "--json"]))).stdout) as { name: string }[]).map((v) => v.name);

  before(async () => {
    ({ env } = await prepareBootableHome(home));
    await mustRun(runBanger(["config", "set", "default_image", "busybox"], { home, env }));
    repo = join(home, "repo");
    mkdirSync(repo);
    git(repo, "init", "-q", "-b", "main");
    writeFileSync(join(repo, "README.md"), "hello\n");
    git(repo, "add", "-A");
    git(repo, "commit", "-qm", "init");
  });
  after(async () => {
    for (const v of JSON.parse((await runBanger(["vm", "ls", "--json"], { home, env })).stdout || "[]") as { name: string }[]) {
      await runBanger(["vm", "rm", "-f", v.name], { home, env });
    }
    await stopDaemon(home);
    cleanup();
  });

  it("a command that changes the workspace keeps the VM, says what changed and what to do next", async () => {
    const r = await banger(["vm", "run", "--name", "kept", "--", "sh", "-c", "echo hi > new.txt"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^vm kept is kept: its workspace changed \(1 file changed, \+1 -0\)$/m);
    assert.match(r.stderr, /^ {2}new\.txt \| \+1 -0$/m);
    assert.match(r.stderr, /banger vm workspace export kept --apply/);
    assert.match(r.stderr, /banger vm workspace export kept --out FILE/);
    assert.match(r.stderr, /banger vm rm -f kept$/m);
    assert.ok((await vmNames()).includes("kept"), "the VM is still there");
    const exported = await banger(["vm", "workspace", "export", "kept"]);
    assert.match(exported.stdout, /\+\+\+ b\/new\.txt\n@@ -0,0 \+1 @@\n\+hi/, "the change is in it");
    await mustRun(banger(["vm", "rm", "-f", "kept"]));
  });

  it("a change of mode alone (no new content or time) is a change too", async () => {
    const r = await banger(["vm", "run", "--name", "modes", "--", "chmod", "+x", "README.md"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^vm modes is kept: its workspace changed \(1 file changed, \+0 -0\)$/m);
    await mustRun(banger(["vm", "rm", "-f", "modes"]));
  });

  it("an unchanged run removes the VM without a word about it", async () => {
    const r = await banger(["vm", "run", "--", "cat", "README.md"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "hello\n");
    assert.doesNotMatch(r.stderr, /kept|removed/);
    assert.deepEqual(await vmNames(), []);
  });

  it("--rm removes a changed VM and says what was discarded", async () => {
    const r = await banger(["vm", "run", "--rm", "--name", "gone", "--", "sh", "-c", "echo hi > new.txt; echo more >> README.md"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^vm gone removed$/m);
    assert.match(r.stderr, /its workspace changes were discarded: 2 files changed, \+2 -0/);
    assert.deepEqual(await vmNames(), []);
  });

  it("--export FILE writes the patch, then removes the VM; --apply puts it on a branch", async () => {
    const file = join(home, "out.patch");
    const r = await banger(["vm", "run", "--export", file, "--", "sh", "-c", "echo hi > new.txt"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`1 file changed, \\+1 -0: patch written to ${file}`));
    const patch = readFileSync(file, "utf8");
    assert.match(patch, /^diff --git a\/new\.txt b\/new\.txt$/m);
    assert.match(patch, /^\+hi$/m);
    assert.deepEqual(await vmNames(), []);

    const applied = await banger(["vm", "run", "--apply", "--name", "applier", "--", "sh", "-c", "echo fixed >> README.md"]);
    assert.equal(applied.code, 0, applied.stderr);
    assert.match(applied.stderr, /applied on branch banger\/applier/);
    assert.equal(git(repo, "show", "banger/applier:README.md"), "hello\nfixed\n");
    assert.equal(readFileSync(join(repo, "README.md"), "utf8"), "hello\n", "the working tree is untouched");
    assert.deepEqual(await vmNames(), []);
  });

  it("refuses contradictory end flags before booting anything", async () => {
    const r = await banger(["vm", "run", "--rm", "--keep", "--", "true"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--rm goes with none of --keep/);
    const noDir = await banger(["vm", "run", "--export", "/nonexist/x.patch", "--", "true"]);
    assert.equal(noDir.code, 2);
    assert.match(noDir.stderr, /no such directory \/nonexist/);
    assert.deepEqual(await vmNames(), []);
  });

  it("Ctrl-C reaches a command whose stdin is not a terminal", async () => {
    const run = startBanger(["vm", "run", "--no-workspace", "--", "sh", "-c", waiting("trap 'echo got-int; kill $!; exit 7' INT")], { home, env, cwd: repo });
    await run.stdoutMatches(/ready/);
    run.child.kill("SIGINT");
    const sent = Date.now();
    const r = await run.done;
    assert.equal(r.code, 7, r.stderr);
    assert.ok(r.at - sent < 20_000, `the trap ran ${r.at - sent} ms after Ctrl-C (the command sleeps 60 s)`);
    assert.match(r.stdout, /got-int/);
    assert.deepEqual(await vmNames(), []);
  });

  it("SIGTERM and SIGHUP reach it too", async () => {
    const term = startBanger(["vm", "run", "--no-workspace", "--", "sh", "-c", waiting("trap 'echo got-term; kill $!; exit 8' TERM; trap 'echo got-hup; kill $!; exit 9' HUP")], {
      home,
      env,
      cwd: repo,
    });
    await term.stdoutMatches(/ready/);
    term.child.kill("SIGHUP");
    const sent = Date.now();
    const r = await term.done;
    assert.equal(r.code, 9, r.stderr);
    assert.ok(r.at - sent < 20_000, `the trap ran ${r.at - sent} ms after SIGHUP`);
    assert.match(r.stdout, /got-hup/);
  });

  it("a second Ctrl-C within a second gives up on the command: exit 130 at once, nothing left running", async () => {
    const run = startBanger(["vm", "run", "--no-workspace", "--", "sh", "-c", 'trap "" INT; echo ready; exec sleep 600'], { home, env, cwd: repo });
    await run.stdoutMatches(/ready/);
    run.child.kill("SIGINT");
    await new Promise((r) => setTimeout(r, 300));
    run.child.kill("SIGINT");
    const sent = Date.now();
    const r = await run.done;
    assert.equal(r.code, 130, r.stderr);
    assert.ok(r.at - sent < 20_000, `exited ${r.at - sent} ms after the second Ctrl-C`);
    assert.deepEqual(await vmNames(), [], "no workspace: nothing to keep");
    await assertNoCallLeft(home, env);
  });

  it("Ctrl-C typed on a terminal reaches a command run without -t (stdin not forwarded)", async () => {
    const r = await inPty(["vm", "run", "--no-workspace", "--", "sh", "-c", waiting("trap 'echo got-int; kill $!; exit 7' INT")], [[/ready/, "\x03"]], { home, env, cwd: repo });
    assert.match(r.text, /got-int/);
    assert.equal(r.code, 7, r.text);
  });

  it("vm exec does the same: Ctrl-C on a terminal without -t reaches the command; a second one within a second gives up (130)", async () => {
    await mustRun(banger(["vm", "create", "--name", "execs", "--image", "busybox", "--memory", "256M"]));
    const once = await inPty(["vm", "exec", "execs", "--", "sh", "-c", waiting("trap 'echo got-int; kill $!; exit 7' INT")], [[/ready/, "\x03"]], { home, env, cwd: repo });
    assert.match(once.text, /got-int/);
    assert.equal(once.code, 7, once.text);
    const started = Date.now();
    const twice = await inPty(
      ["vm", "exec", "execs", "--", "sh", "-c", 'trap "" INT; echo ready; exec sleep 600'],
      [
        [/ready/, "\x03"],
        [/ready/, "\x03"],
      ],
      { home, env, cwd: repo },
    );
    assert.equal(twice.code, 130, twice.text);
    assert.ok(Date.now() - started < 60_000);
    await assertNoCallLeft(home, env);
    await mustRun(banger(["vm", "rm", "-f", "execs"]));
  });

  it("the interactive shell (a PTY) follows the same rule: changes keep the VM", async () => {
    const r = await inPty(["vm", "run", "--name", "shellwork"], [[/\/workspace\$ /, "echo typed > typed.txt; exit\r"]], { home, env, cwd: repo });
    assert.equal(r.code, 0, r.text);
    assert.match(r.text, /vm shellwork is kept: its workspace changed \(1 file changed, \+1 -0\)/);
    assert.match(r.text, /typed\.txt \| \+1 -0/);
    assert.ok((await vmNames()).includes("shellwork"));
    await mustRun(banger(["vm", "rm", "-f", "shellwork"]));
  });

  it("a run whose daemon stops mid-way keeps its VM and says so", async () => {
    const run = startBanger(["vm", "run", "--name", "orphan", "--", "sh", "-c", "echo wip > wip.txt; echo ready; sleep 60"], { home, env, cwd: repo });
    await run.stdoutMatches(/ready/);
    await mustRun(banger(["daemon", "stop"]));
    const r = await run.done;
    assert.equal(r.code, 1);
    // The daemon cancels the call, or closes the agent's connection and then its own, whichever lands first.
    assert.match(r.stderr, /^vm orphan is kept: (bangerd went away mid-run|banger could not tell whether its workspace changed)/m);
    assert.match(r.stderr, /banger vm workspace export orphan --apply/);
    assert.match(r.stderr, /banger vm rm -f orphan$/m);
    await stopDaemon(home);
    assert.ok((await vmNames()).includes("orphan"), "the next daemon takes it back");
    const exported = await banger(["vm", "workspace", "export", "orphan"]);
    assert.match(exported.stdout, /^\+wip$/m, "and the work is there to export");
    await mustRun(banger(["vm", "rm", "-f", "orphan"]));
  });

  it("an interrupted run whose workspace changed keeps the VM and says so", async () => {
    const run = startBanger(["vm", "run", "--name", "wip", "--", "sh", "-c", "echo half > wip.txt; echo ready; sleep 60"], { home, env, cwd: repo });
    await run.stdoutMatches(/ready/);
    run.child.kill("SIGINT");
    const r = await run.done;
    assert.equal(r.code, 130, r.stderr);
    assert.match(r.stderr, /^vm wip is kept: the command was interrupted \(SIGINT\) and its workspace changed \(1 file changed, \+1 -0\)$/m);
    assert.match(r.stderr, /banger vm workspace export wip --apply/);
    assert.ok((await vmNames()).includes("wip"));
    await mustRun(banger(["vm", "rm", "-f", "wip"]));
  });
});
