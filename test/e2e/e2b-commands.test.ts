// The official e2b SDK's commands and PTY API against a real bangerd (E2B API on loopback) and
// a real VM, as an agent harness uses them: commands.run (stdout, stderr, CommandExitError,
// envs, cwd, user, onStdout/onStderr), stdin, background + list + connect + kill, the
// command's timeout, and a PTY session (create, sendInput, resize, kill).
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { CommandExitError, type CommandHandle, Sandbox } from "e2b";
import { type E2bTestBed, startE2bTestBed } from "../kits/e2b.ts";

describe("e2b SDK commands and PTY (real bangerd and VM, QEMU)", () => {
  let bed: E2bTestBed;
  let sandbox: Sandbox;

  before(async () => {
    bed = await startE2bTestBed();
    sandbox = await Sandbox.create(bed.image, { ...bed.opts, envs: { FROM_SANDBOX: "sandbox", SHADOWED: "sandbox" } });
  });
  after(async () => {
    await sandbox?.kill().catch(() => undefined);
    await bed?.cleanup();
  });

  it("runs a command: stdout, stderr, exit code 0", async () => {
    const r = await sandbox.commands.run("echo hello; echo warn >&2");
    assert.equal(r.exitCode, 0);
    assert.equal(r.stdout, "hello\n");
    assert.equal(r.stderr, "warn\n");
  });

  it("throws CommandExitError on a nonzero exit, with the output", async () => {
    await assert.rejects(sandbox.commands.run("echo partial; echo broken >&2; exit 7"), (e: unknown) => {
      assert.ok(e instanceof CommandExitError, String(e));
      assert.equal(e.exitCode, 7);
      assert.equal(e.stdout, "partial\n");
      assert.equal(e.stderr, "broken\n");
      return true;
    });
  });

  it("passes envs over the sandbox's envVars, cwd and user", async () => {
    const r = await sandbox.commands.run('echo "$FROM_SANDBOX $SHADOWED $MINE $(pwd) $(id -u)"', { envs: { SHADOWED: "run", MINE: "mine" }, cwd: "/tmp", user: "root" });
    assert.equal(r.stdout, "sandbox run mine /tmp 0\n");
  });

  it("streams output to onStdout/onStderr as it comes", async () => {
    const out: string[] = [];
    const err: string[] = [];
    await sandbox.commands.run("for i in 1 2 3; do echo out$i; echo err$i >&2; sleep 0.1; done", { onStdout: (d) => void out.push(d), onStderr: (d) => void err.push(d) });
    assert.equal(out.join(""), "out1\nout2\nout3\n");
    assert.equal(err.join(""), "err1\nerr2\nerr3\n");
    assert.ok(out.length >= 2, "more than one callback: streamed, not one blob at the end");
  });

  it("feeds stdin (sendStdin, closeStdin)", async () => {
    const h = await sandbox.commands.run("tr a-z A-Z", { background: true, stdin: true });
    await h.sendStdin("hello ");
    await sandbox.commands.sendStdin(h.pid, "stdin");
    await h.closeStdin();
    const r = await h.wait();
    assert.equal(r.stdout, "HELLO STDIN");
  });

  it("runs in the background: list, connect, kill", async () => {
    const h = await sandbox.commands.run("echo begun; while true; do echo tick; sleep 0.2; done", { background: true, timeoutMs: 0 });
    const listed = await sandbox.commands.list();
    const row = listed.find((p) => p.pid === h.pid);
    assert.ok(row, `pid ${h.pid} in ${JSON.stringify(listed)}`);
    assert.equal(row.cmd, "/bin/bash");
    assert.deepEqual(row.args.slice(0, 2), ["-l", "-c"]);
    await h.disconnect();

    let seen = "";
    const again: CommandHandle = await sandbox.commands.connect(h.pid, { onStdout: (d) => void (seen += d) });
    const deadline = Date.now() + 15_000;
    while (!seen.includes("tick") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.match(seen, /tick/, "connect streams the running command's output");
    assert.equal(await sandbox.commands.kill(h.pid), true);
    await assert.rejects(again.wait(), (e: unknown) => e instanceof CommandExitError && e.exitCode === -1);
    assert.ok(!(await sandbox.commands.list()).some((p) => p.pid === h.pid), "gone from list once ended");
    assert.equal(await sandbox.commands.kill(h.pid), false, "killing it again: not found");
  });

  it("kills a command at its timeoutMs", async () => {
    const t0 = Date.now();
    await assert.rejects(sandbox.commands.run("sleep 30", { timeoutMs: 1500 }));
    assert.ok(Date.now() - t0 < 15_000);
    const deadline = Date.now() + 10_000;
    while ((await sandbox.commands.list()).some((p) => p.args.includes("sleep 30")) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.ok(!(await sandbox.commands.list()).some((p) => p.args.includes("sleep 30")), "killed, not left running");
  });

  it("runs a PTY session: typed input comes back, resize, kill", async () => {
    let screen = "";
    const decoder = new TextDecoder();
    const pty = await sandbox.pty.create({ rows: 24, cols: 80, onData: (d) => void (screen += decoder.decode(d, { stream: true })) });
    const waitFor = async (re: RegExp) => {
      const deadline = Date.now() + 20_000;
      while (!re.test(screen) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      assert.match(screen, re);
    };
    await sandbox.pty.sendInput(pty.pid, new TextEncoder().encode("echo typed-$((40+2))\n"));
    await waitFor(/typed-42/);
    await sandbox.pty.resize(pty.pid, { rows: 33, cols: 101 });
    await sandbox.pty.sendInput(pty.pid, new TextEncoder().encode("stty size\n"));
    await waitFor(/33 101/);
    assert.equal(await sandbox.pty.kill(pty.pid), true);
    await assert.rejects(pty.wait(), (e: unknown) => e instanceof CommandExitError && e.exitCode === -1);
  });
});
