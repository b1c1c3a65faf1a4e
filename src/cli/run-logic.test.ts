// The pure logic of how `vm run` ends: summarizePatch on patches real git wrote (format-patch
// series, binary files, quoted paths), the fast unchanged check's time comparison, and the
// interrupt policy vm run and vm exec follow.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FORCE_WINDOW_MS, InterruptPolicy, signalStatus } from "./interrupts.ts";
import { changeLine, statLines, summarizePatch } from "./patch-summary.ts";
import { ProbeOutput, allOlder, guestMarkAfter, parseStatTime, type GuestRun } from "./run-probe.ts";

const git = (cwd: string, ...args: string[]) => execFileSync("git", ["-c", "user.email=t@example.com", "-c", "user.name=t", "-c", "core.quotePath=true", ...args], { cwd });

describe("summarizePatch", () => {
  it("counts lines per file across a format-patch series, binary files and quoted paths included", () => {
    const dir = mkdtempSync(join(tmpdir(), "bgr-patch-"));
    try {
      git(dir, "init", "-q", "-b", "main");
      writeFileSync(join(dir, "a.txt"), "one\ntwo\nthree\n");
      writeFileSync(join(dir, "gone.txt"), "bye\n");
      git(dir, "add", "-A");
      git(dir, "commit", "-qm", "base");
      // First commit: a message line that looks like a diff line must not count.
      writeFileSync(join(dir, "a.txt"), "one\n2\nthree\nfour\n");
      git(dir, "commit", "-qam", "edit a\n\n+ not a line of the diff\n- nor this");
      writeFileSync(join(dir, "a.txt"), "one\n2\nthree\nfour\nfive\n");
      writeFileSync(join(dir, "new file é.txt"), "x\n");
      writeFileSync(join(dir, "logo.bin"), Buffer.from([0, 1, 2, 255]));
      git(dir, "rm", "-q", "gone.txt");
      git(dir, "add", "-A");
      git(dir, "commit", "-qm", "more");
      const patch = git(dir, "format-patch", "--stdout", "--binary", "--no-signature", "--no-renames", "HEAD~2..HEAD");
      const s = summarizePatch(patch);
      assert.deepEqual(s.files, [
        { path: "a.txt", added: 3, removed: 1, binary: false },
        { path: "gone.txt", added: 0, removed: 1, binary: false },
        { path: "logo.bin", added: 0, removed: 0, binary: true },
        { path: "new file é.txt", added: 1, removed: 0, binary: false },
      ]);
      assert.equal(changeLine(s), "4 files changed, +4 -2");
      assert.deepEqual(statLines(s, 2), ["a.txt    | +3 -1", "gone.txt | +0 -1", "... and 2 more"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("an empty patch changes nothing", () => {
    assert.deepEqual(summarizePatch(Buffer.alloc(0)), { files: [], added: 0, removed: 0 });
  });
});

describe("InterruptPolicy", () => {
  it("forwards interrupts, and force-stops on a second one within the window", () => {
    const p = new InterruptPolicy();
    assert.equal(p.next("SIGINT", 10_000), "forward");
    assert.equal(p.next("SIGINT", 10_000 + FORCE_WINDOW_MS + 1), "forward", "a second one later is passed on too");
    assert.equal(p.next("SIGTERM", 10_000 + FORCE_WINDOW_MS + 500), "force");
    assert.deepEqual(p.seen, ["SIGINT", "SIGINT", "SIGTERM"]);
  });

  it("exit statuses are 128+N", () => {
    assert.equal(signalStatus("SIGINT"), 130);
    assert.equal(signalStatus("SIGTERM"), 143);
    assert.equal(signalStatus("SIGHUP"), 129);
  });
});

describe("the fast unchanged check", () => {
  const mark = "2026-12-03 18:14:06.686094672 +0000";

  it("reads stat's change times to the nanosecond, in any offset", () => {
    assert.equal(parseStatTime(mark), 1796321646686094672n);
    assert.equal(parseStatTime("2026-12-03 19:14:06.686094672 +0100"), 1796321646686094672n);
    assert.equal(parseStatTime("2026-12-03 18:14:06 +0000"), undefined, "no nanoseconds: no verdict");
    assert.equal(parseStatTime("garbage"), undefined);
  });

  it("says unchanged only when every entry is strictly older than the mark", () => {
    const older = "2026-12-03 18:14:06.686094671 +0000";
    assert.equal(allOlder(`${older}\n${older}\n`, mark), true);
    assert.equal(allOlder(`${older}\n${mark}\n`, mark), false, "the same instant may be a change");
    assert.equal(allOlder(`${older}\n2026-12-03 18:14:07.000000000 +0000\n`, mark), false);
    assert.equal(allOlder(`${older}\nstat: can't stat 'x'\n`, mark), false, "anything unreadable means: look properly");
    assert.equal(allOlder("", mark), false, "no listing at all: look properly");
  });
});

describe("ProbeOutput", () => {
  it("holds a guest's output up to its bound, then nothing, and says it overflowed", () => {
    const out = new ProbeOutput(10);
    out.push(Buffer.from("12345"));
    out.push(Buffer.from("67890"));
    assert.equal(out.text(), "1234567890");
    assert.equal(out.over, false);
    out.push(Buffer.from("x"));
    assert.equal(out.over, true);
    out.push(Buffer.alloc(1024 ** 2, 0x61));
    assert.equal(out.text(), "", "nothing of an overflowing listing is kept or judged");
  });
});

describe("guestMarkAfter (a copy the host wrote)", () => {
  /** A guest whose clock is `skewMs` behind this host's, answering the mark script as stat would (the guest-command seam; no VM here). */
  const guestBehind =
    (skewMs: number): GuestRun =>
    async () => {
      const ns = (BigInt(Date.now() - skewMs) * 1_000_000n).toString();
      const d = new Date(Number(ns.slice(0, -6)));
      const pad = (n: number, w = 2) => String(n).padStart(w, "0");
      const text = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.${ns.slice(-9)} +0000`;
      return { code: 0, stdout: `${text}\n` };
    };

  it("waits until the guest's clock passes the host's copy time, so every host change time is before the mark", async () => {
    const copiedAt = Date.now();
    const mark = await guestMarkAfter(guestBehind(400), copiedAt);
    assert.ok(mark !== undefined);
    assert.ok(parseStatTime(mark)! > BigInt(copiedAt) * 1_000_000n, mark);
    assert.ok(Date.now() - copiedAt >= 390, "it waited for the guest's clock");
  });

  it("gives up (no mark: the end looks properly) when the guest is too far behind", async () => {
    const started = Date.now();
    assert.equal(await guestMarkAfter(guestBehind(60_000), Date.now(), 500), undefined);
    assert.ok(Date.now() - started < 1000, "without waiting for it");
  });
});
