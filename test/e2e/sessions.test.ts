// Detached sessions on a real VM (one boot, QEMU/TCG here), as a user drives them: start,
// ls, logs, send, survive the CLI exiting and a daemon restart, attach through a PTY with
// the scrollback replayed, detach with Ctrl-] d, kill.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnOnPty } from "../kits/pty.ts";
import { makeTempHome, mustRun, prepareBootableHome, runBanger, stopDaemon } from "../helpers.ts";

interface Row {
  vm: string;
  name: string;
  state: string;
  pid?: number;
  live: boolean;
  exit?: { exitCode: number } | { signal: string };
}

describe("sessions (real VM under QEMU)", () => {
  const { home, cleanup } = makeTempHome();
  let env: NodeJS.ProcessEnv = {};
  const banger = (args: string[]) => runBanger(args, { home, env });
  const rows = async (): Promise<Row[]> => JSON.parse((await mustRun(banger(["session", "ls", "sess", "--json"]))).stdout) as Row[];
  const row = async (name: string) => (await rows()).find((r) => r.name === name);
  const logsUntil = async (name: string, re: RegExp): Promise<string> => {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const out = (await mustRun(banger(["session", "logs", "sess", name]))).stdout;
      if (re.test(out) || Date.now() > deadline) return out;
      await new Promise((r) => setTimeout(r, 200));
    }
  };

  before(async () => {
    ({ env } = await prepareBootableHome(home));
    await mustRun(banger(["vm", "create", "--name", "sess", "--image", "busybox", "--memory", "256M"]));
  });
  after(async () => {
    await runBanger(["vm", "rm", "-f", "sess"], { home, env }).catch(() => undefined);
    await stopDaemon(home);
    cleanup();
  });

  it("starts a counter and an echo loop as detached sessions and lists them", async () => {
    const counter = await banger(["session", "start", "sess", "--name", "counter", "--", "sh", "-c", 'i=0; while true; do i=$((i+1)); echo "tick $i"; sleep 0.2; done']);
    assert.equal(counter.code, 0, counter.stderr);
    assert.equal(counter.stdout, "counter\n");
    const echo = await banger(["session", "start", "sess", "--", "sh", "-c", 'echo ready; while read line; do echo "echo:$line"; done']);
    assert.equal(echo.code, 0, echo.stderr);
    assert.equal(echo.stdout, "sh-1\n", "a generated name: the command and a number");
    const listed = await rows();
    assert.deepEqual(
      listed.map((r) => [r.name, r.state, r.live]),
      [
        ["counter", "running", true],
        ["sh-1", "running", true],
      ],
    );
    assert.ok((listed[0]?.pid ?? 0) > 1);
    const dup = await banger(["session", "start", "sess", "--name", "counter", "--", "true"]);
    assert.equal(dup.code, 1);
    assert.match(dup.stderr, /session counter already exists in vm sess/);
  });

  it("logs show the output and send reaches stdin", async () => {
    assert.match(await logsUntil("counter", /tick 3\r?\n/), /^tick 1\r?\ntick 2\r?\n/);
    await mustRun(banger(["session", "send", "sess", "sh-1", "hello there"]));
    assert.match(await logsUntil("sh-1", /echo:hello there/), /echo:hello there/);
  });

  it("survives the CLI exiting and a daemon restart", async () => {
    const { pid } = (await row("counter"))!;
    await mustRun(banger(["daemon", "stop"]));
    await stopDaemon(home); // waits until it is gone
    const again = await row("counter"); // the next command starts a new daemon that re-adopts the VM
    assert.equal(again?.state, "running");
    assert.equal(again?.live, true);
    assert.equal(again?.pid, pid, "the same process, not a restart");
    const before = Number(/tick (\d+)\s*$/.exec(await logsUntil("counter", /tick/))?.[1]);
    const later = await logsUntil("counter", new RegExp(`tick ${before + 2}\\b`));
    assert.match(later, new RegExp(`tick ${before + 2}\\b`), "still counting");
  });

  it("attach replays the scrollback in a PTY, takes input, and detaches on Ctrl-] d", async () => {
    await mustRun(banger(["session", "send", "sess", "sh-1", "before attach"]));
    const out = await new Promise<{ text: string; code: number | null }>((resolve, reject) => {
      const child = spawnOnPty(["session", "attach", "sess", "sh-1"], { env: { ...env, BANGER_HOME: home } });
      let text = "";
      let step = 0;
      child.stdout.on("data", (b) => {
        text += b;
        if (step === 0 && /echo:before attach/.test(text)) {
          step = 1;
          child.stdin.write("typed live\r");
        } else if (step === 1 && /echo:typed live/.test(text)) {
          step = 2;
          child.stdin.write("\x1dd");
        }
      });
      child.on("error", reject);
      child.on("close", (code) => resolve({ text, code }));
      setTimeout(() => child.kill(), 30_000).unref();
    });
    const [ready, hello] = [out.text.indexOf("ready"), out.text.indexOf("echo:hello there")];
    assert.ok(ready >= 0 && hello > ready, "the scrollback from before the attach is replayed first");
    assert.match(out.text, /echo:typed live/);
    assert.match(out.text, /\[attached to session sh-1 in sess; detach: Ctrl-\] d\]\r?\n/, "a banner says where and how to detach");
    assert.ok(out.text.indexOf("[attached to session") < ready, "the banner comes before the scrollback");
    assert.match(out.text, /detached from session sh-1/);
    assert.equal(out.code, 0);
    assert.equal((await row("sh-1"))?.state, "running", "detaching leaves it running");
  });

  it("kill ends a session with its signal; kill again removes it", async () => {
    const killed = await banger(["session", "kill", "sess", "counter", "--json"]);
    assert.equal(killed.code, 0, killed.stderr);
    assert.deepEqual(JSON.parse(killed.stdout).exit, { signal: "SIGTERM", signalNumber: 15 });
    const r = await row("counter");
    assert.equal(r?.state, "exited");
    await mustRun(banger(["session", "kill", "sess", "counter"]));
    assert.equal(await row("counter"), undefined);
    const hup = await banger(["session", "kill", "sess", "sh-1", "--signal", "KILL"]);
    assert.match(hup.stdout, /session sh-1 exited \(SIGKILL\)/);
  });
});
