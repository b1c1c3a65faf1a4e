// The attach detach keys: Ctrl-] then d detaches; everything else reaches the session.
import { test } from "node:test";
import assert from "node:assert/strict";
import { DetachFilter } from "./session.ts";

function run(chunks: string[]): { passed: string; detached: number } {
  let detached = 0;
  const f = new DetachFilter(() => detached++);
  let passed = "";
  f.on("data", (b: Buffer) => (passed += b.toString("latin1")));
  for (const c of chunks) f.write(Buffer.from(c, "latin1"));
  return { passed, detached };
}

test("Ctrl-] d detaches and is not sent, even split across reads", () => {
  assert.deepEqual(run(["ls\r\x1dd"]), { passed: "ls\r", detached: 1 });
  assert.deepEqual(run(["abc\x1d", "d"]), { passed: "abc", detached: 1 });
});

test("Ctrl-] followed by anything else is passed through; Ctrl-] twice sends one", () => {
  assert.deepEqual(run(["\x1dx"]), { passed: "\x1dx", detached: 0 });
  assert.deepEqual(run(["\x1d\x1d", "d"]), { passed: "\x1dd", detached: 0 });
  assert.deepEqual(run(["plain d text"]), { passed: "plain d text", detached: 0 });
});
