// vm fork's and vm create --from-snapshot's flag checks (no daemon: pure parsing).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { forkParams, fromSnapshotConflicts, MAX_FORK_COUNT } from "./snapshot.ts";

describe("vm fork flags", () => {
  it("defaults to one child, takes --count, or one child per --name", () => {
    assert.deepEqual(forkParams("dev", {}), { name: "dev", count: 1 });
    assert.deepEqual(forkParams("dev", { count: 3 }), { name: "dev", count: 3 });
    assert.deepEqual(forkParams("dev", { name: ["a", "b"] }), { name: "dev", names: ["a", "b"] });
    assert.deepEqual(forkParams("dev", { name: ["a", "b"], count: 2 }), { name: "dev", names: ["a", "b"] });
  });

  it("refuses a --count that disagrees with the names, bad names and too many", () => {
    assert.throws(() => forkParams("dev", { name: ["a"], count: 2 }), /--count 2 but 1 --name given/);
    assert.throws(() => forkParams("dev", { name: ["-bad"] }), /invalid vm name/);
    const many = Array.from({ length: MAX_FORK_COUNT + 1 }, (_, i) => `c${i}`);
    assert.throws(() => forkParams("dev", { name: many }), /at most 64 children/);
  });
});

describe("vm create --from-snapshot", () => {
  it("names every machine flag given beside it, and none when only --name and --json are", () => {
    assert.deepEqual(fromSnapshotConflicts({ name: "x", json: true, start: true, fromSnapshot: "s" }), []);
    assert.deepEqual(fromSnapshotConflicts({ image: "debian", memory: 1024, start: false, netPeer: true }), ["--image", "--memory", "--net-peer", "--no-start"]);
  });
});
