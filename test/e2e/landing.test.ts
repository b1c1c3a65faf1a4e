// One place to land, on a real VM (QEMU/TCG here): after `vm run --keep` copied a workspace
// in, `vm exec`, `vm shell` (through a PTY), `session start` and the dashboard's terminal
// run as the same user and in the same directory as the command inside `vm run` did;
// --user/-w choose otherwise. And a command that cannot run says why, with a shell's
// status: 127 not found, 126 not executable, one line "no such directory" for a bad -w.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import WebSocket from "ws";
import { spawnOnPty } from "../kits/pty.ts";
import { makeTempHome, mustRun, prepareBootableHome, runBanger, stopDaemon } from "../helpers.ts";

const VM = "land";
/** Prints where a command landed, as `vm run` is asked below. */
const WHERE = ["sh", "-c", "id -un; pwd"];
/** The same for a shell reading a line; the echo of the typed line cannot match (no `<user:dir>` in it). */
const WHERE_LINE = 'echo "<$(id -un):$(pwd)>"; exit\r';

describe("landing: exec, shell, sessions and the web terminal start where vm run does (real VM under QEMU)", () => {
  const { home, cleanup } = makeTempHome();
  let env: NodeJS.ProcessEnv = {};
  let repo = "";
  let inRun = "";
  const banger = (args: string[], cwd = repo) => runBanger(args, { home, env, cwd });

  /** A session's whole output once it has exited (it prints two lines and ends). */
  const sessionOutput = async (name: string): Promise<string> => {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const rows = JSON.parse((await mustRun(banger(["session", "ls", VM, "--json"]))).stdout) as { name: string; state: string }[];
      if (rows.find((r) => r.name === name)?.state === "exited" || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    return (await mustRun(banger(["session", "logs", VM, name]))).stdout;
  };

  before(async () => {
    ({ env } = await prepareBootableHome(home, { BANGER_WEB: "1" }));
    await mustRun(runBanger(["config", "set", "default_image", "busybox"], { home, env }));
    repo = join(home, "repo");
    mkdirSync(repo);
    const git = (...args: string[]) => execFileSync("git", ["-c", "user.email=t@example.com", "-c", "user.name=t", ...args], { cwd: repo });
    git("init", "-q", "-b", "main");
    writeFileSync(join(repo, "README.md"), "not a program\n");
    git("add", "-A");
    git("commit", "-qm", "init");
    const run = await banger(["vm", "run", "--keep", "--name", VM, "--", ...WHERE]);
    assert.equal(run.code, 0, run.stderr);
    inRun = run.stdout;
  });
  after(async () => {
    await runBanger(["vm", "rm", "-f", VM], { home, env }).catch(() => undefined);
    await stopDaemon(home);
    cleanup();
  });

  it("vm run itself lands as the image's dev user in /workspace", () => {
    assert.equal(inRun, "dev\n/workspace\n");
  });

  it("vm exec lands there too, and --user/-w choose otherwise", async () => {
    const same = await banger(["vm", "exec", VM, "--", ...WHERE], home);
    assert.equal(same.code, 0, same.stderr);
    assert.equal(same.stdout, inRun);
    const chosen = await banger(["vm", "exec", VM, "--user", "root", "-w", "/tmp", "--", ...WHERE], home);
    assert.equal(chosen.code, 0, chosen.stderr);
    assert.equal(chosen.stdout, "root\n/tmp\n");
    const rootHere = await banger(["vm", "exec", VM, "--user", "root", "--", ...WHERE], home);
    assert.equal(rootHere.stdout, "root\n/workspace\n", "another user still starts in the workspace");
  });

  it("session start lands there too, and --user/-w choose otherwise", async () => {
    await mustRun(banger(["session", "start", VM, "--name", "where", "--no-tty", "--", ...WHERE]));
    assert.equal(await sessionOutput("where"), inRun);
    await mustRun(banger(["session", "start", VM, "--name", "chosen", "--no-tty", "--user", "root", "-w", "/tmp", "--", ...WHERE]));
    assert.equal(await sessionOutput("chosen"), "root\n/tmp\n");
  });

  it("vm shell (through a PTY) lands there too, and -w chooses otherwise", async () => {
    const shell = (args: string[]) =>
      new Promise<string>((resolve, reject) => {
        const child = spawnOnPty(["vm", "shell", VM, ...args], { env: { ...env, BANGER_HOME: home } });
        let text = "";
        let sent = false;
        child.stdout.on("data", (b) => {
          text += b;
          if (!sent && /[$#] /.test(text)) {
            // the prompt (ash asks for the cursor position after it)
            sent = true;
            child.stdin.write(WHERE_LINE);
          }
        });
        child.on("error", reject);
        child.on("close", () => resolve(text));
        setTimeout(() => child.kill(), 60_000).unref();
      });
    assert.match(await shell([]), /<dev:\/workspace>/);
    assert.match(await shell(["--user", "root", "-w", "/tmp"]), /<root:\/tmp>/);
  });

  it("the dashboard's terminal lands there too (the daemon's default for vm.exec)", async () => {
    const web = JSON.parse((await mustRun(banger(["web", "--json", "--no-open"]))).stdout) as { url: string; token: string };
    const ws = new WebSocket(`${web.url.replace(/^http/, "ws")}/api/vms/${VM}/terminal?rows=24&cols=80`, { headers: { Authorization: `Bearer ${web.token}` } });
    const text = await new Promise<string>((resolve, reject) => {
      let out = "";
      let sent = false;
      ws.on("message", (data, isBinary) => {
        if (!isBinary) return;
        out += data.toString();
        if (!sent && /[$#] /.test(out)) {
          sent = true;
          ws.send(Buffer.from(WHERE_LINE), { binary: true });
        }
      });
      ws.on("close", () => resolve(out));
      ws.on("error", reject);
      setTimeout(() => ws.close(), 60_000).unref();
    });
    assert.match(text, /<dev:\/workspace>/);
  });

  it("a command that is not there exits 127, one that cannot run 126, each saying why in one line", async () => {
    const missing = await banger(["vm", "exec", VM, "--", "nosuch-command"], home);
    assert.equal(missing.code, 127, missing.stderr);
    assert.equal(missing.stderr, "banger: nosuch-command: command not found\n");
    const notExec = await banger(["vm", "exec", VM, "--", "./README.md"], home);
    assert.equal(notExec.code, 126, notExec.stderr);
    assert.equal(notExec.stderr, "banger: ./README.md: permission denied (not executable)\n");
    const dir = await banger(["vm", "exec", VM, "--", "/tmp"], home);
    assert.equal(dir.code, 126, dir.stderr);
    const session = await banger(["session", "start", VM, "--", "nosuch-command"], home);
    assert.equal(session.code, 127, session.stderr);
    assert.equal(session.stderr, "banger: nosuch-command: command not found\n");
    const run = await banger(["vm", "run", "--no-workspace", "--", "nosuch-command"], home);
    assert.equal(run.code, 127, run.stderr);
    assert.match(run.stderr, /^banger: nosuch-command: command not found$/m);
  });

  it("-w to a missing directory says so in one line and exits 1 (not a usage error)", async () => {
    const r = await banger(["vm", "exec", VM, "-w", "/nonexist", "--", "true"], home);
    assert.equal(r.code, 1);
    assert.equal(r.stderr.split("\n").filter(Boolean).length, 1, r.stderr);
    assert.match(r.stderr, /^banger: no such directory: \/nonexist\b/);
    const s = await banger(["session", "start", VM, "-w", "/nonexist", "--", "true"], home);
    assert.equal(s.code, 1);
    assert.match(s.stderr, /^banger: no such directory: \/nonexist\b/);
  });
});
