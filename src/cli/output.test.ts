// ProgressView: each phase ends as its call did. Earlier phases are done (the daemon moved
// on); the last one is done, failed, cancelled, or interrupted when the daemon went away.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { ConnectionLostError } from "../rpc/index.ts";
import { BangerError, ErrorCode, cancelled } from "../util/errors.ts";
import type { Progress } from "../util/progress.ts";
import { ProgressView, jsonRequested } from "./output.ts";

/** A sink standing in for stderr: piped (isTTY false) or a terminal. */
function sink(isTTY: boolean) {
  const writes: string[] = [];
  return {
    isTTY,
    writes,
    write: (s: string) => void writes.push(s),
    lines: () =>
      writes
        .join("")
        .split("\n")
        .filter((l) => l !== ""),
  };
}

/** A call that reports `phases` in turn, then ends with `error` (or succeeds). */
function call(phases: string[], error?: unknown): (progress: Progress) => Promise<string> {
  return async (progress) => {
    for (const phase of phases) progress({ phase, message: `doing ${phase}` });
    if (error !== undefined) throw error;
    return "result";
  };
}

const DURATION = String.raw`\(\d+\.\ds\)`;

describe("ProgressView (piped)", () => {
  it("marks every phase done when the call succeeds", async () => {
    const out = sink(false);
    assert.equal(await new ProgressView(out).track(call(["disk", "boot", "agent"])), "result");
    assert.deepEqual(
      out.lines().map((l) => l.replace(/\(\d+\.\ds\)/, "(T)")),
      ["disk: doing disk...", "disk done (T)", "boot: doing boot...", "boot done (T)", "agent: doing agent...", "agent done (T)"],
    );
  });

  it("marks the phase a failed call was in as failed, the earlier ones done, and prints no error line itself", async () => {
    const out = sink(false);
    const err = new BangerError(ErrorCode.Failed, "ENOSPC: no space left on device");
    await assert.rejects(new ProgressView(out).track(call(["disk", "boot"], err)), (e) => e === err);
    const lines = out.lines();
    assert.match(lines.at(-1)!, new RegExp(`^boot failed ${DURATION}$`));
    assert.ok(
      lines.some((l) => new RegExp(`^disk done ${DURATION}$`).test(l)),
      "the phase before the failing one is done",
    );
    assert.ok(!lines.some((l) => l.startsWith("boot done")), "the failed phase is never done");
    assert.ok(!lines.some((l) => l.includes("ENOSPC")), "the error line is the caller's to print, once");
  });

  it("says failed for any thrown value, cancelled for a cancellation, interrupted when the daemon connection is lost", async () => {
    for (const [error, end] of [
      [new Error("boom"), `disk failed ${DURATION}`],
      ["a string", `disk failed ${DURATION}`],
      [cancelled(), `disk cancelled ${DURATION}`],
      [new ConnectionLostError(), String.raw`disk interrupted \(\d+\.\ds, daemon connection lost\)`],
    ] as const) {
      const out = sink(false);
      await assert.rejects(new ProgressView(out).track(call(["disk"], error)));
      assert.match(out.lines().at(-1)!, new RegExp(`^${end}$`), String(error));
    }
  });

  it("prints nothing for a call that failed before its first phase", async () => {
    const out = sink(false);
    await assert.rejects(new ProgressView(out).track(call([], new Error("refused"))));
    assert.deepEqual(out.writes, []);
  });

  it("makes phase names and messages from the daemon inert, in their done and failed lines too", async () => {
    const out = sink(false);
    await assert.rejects(new ProgressView(out).track(call(["\x1b]0;pwned\x07disk", "boot\x1b[2J"], new Error("x"))));
    assert.ok(!out.writes.join("").includes("\x1b"), JSON.stringify(out.writes));
  });
});

describe("ProgressView (terminal)", () => {
  it("redraws the running phase in place, then ends the failed one on its own line", async () => {
    const out = sink(true);
    await assert.rejects(new ProgressView(out).track(call(["disk", "boot"], new BangerError(ErrorCode.Failed, "qemu exited"))));
    const text = out.writes.join("");
    assert.match(text, new RegExp(`\\r\\x1b\\[2Kdisk done ${DURATION}\\n`));
    assert.match(text, new RegExp(`\\r\\x1b\\[2Kboot failed ${DURATION}\\n$`));
    assert.doesNotMatch(text, /boot done/);
  });

  it("ends the running phase as interrupted when the daemon connection is lost", async () => {
    const out = sink(true);
    await assert.rejects(new ProgressView(out).track(call(["agent"], new ConnectionLostError())));
    assert.match(out.writes.join(""), /\r\x1b\[2Kagent interrupted \(\d+\.\ds, daemon connection lost\)\n$/);
  });
});

describe("ProgressView (piped, long phases)", () => {
  it("prints a heartbeat line with the latest count while a phase runs, counting items in their unit, never a carriage return", async () => {
    const out = sink(false);
    await new ProgressView(out, 40).track(async (progress) => {
      progress({ phase: "debootstrap", message: "checking" });
      progress({ phase: "debootstrap", done: 12, total: 80, unit: "packages", message: "configuring bash" });
      // Until two heartbeats are out (timers run late on a loaded machine; bounded at 5 s).
      for (let t = 0; t < 100 && out.lines().filter((l) => l.startsWith("debootstrap [")).length < 2; t++) await new Promise((r) => setTimeout(r, 50));
    });
    const lines = out.lines();
    assert.equal(lines[0], "debootstrap: checking...");
    const beats = lines.filter((l) => /^debootstrap \[/.test(l));
    assert.ok(beats.length >= 2, `a heartbeat every interval: ${JSON.stringify(lines)}`);
    assert.match(beats[0]!, /^debootstrap \[#{5}\.{25}\] 15% 12\/80 packages configuring bash \(\d+\.\ds\)$/);
    assert.match(lines.at(-1)!, new RegExp(`^debootstrap done ${DURATION}$`));
    assert.ok(!out.writes.join("").includes("\r"), "no carriage returns in a log");
    const count = lines.length;
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(out.lines().length, count, "no heartbeat after the phase ended");
  });

  it("shows bytes in human units when no unit is given", async () => {
    const out = sink(true);
    await new ProgressView(out).track(async (progress) => progress({ phase: "download", done: 3 * 1024 ** 2, total: 12 * 1024 ** 2 }));
    assert.match(out.writes.join(""), /download \[#{8}\.{22}\] 25% 3\.0 MiB\/12 MiB/);
  });
});

describe("jsonRequested", () => {
  it("sees --json among banger's own arguments, not in the guest command after --", () => {
    assert.equal(jsonRequested(["vm", "ls", "--json"]), true);
    assert.equal(jsonRequested(["vm", "ls"]), false);
    assert.equal(jsonRequested(["vm", "exec", "a", "--", "jq", "--json"]), false);
    assert.equal(jsonRequested(["vm", "run", "--json", "--", "true"]), true);
  });
});
