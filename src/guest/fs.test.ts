// The host's checks on what the agent's fs.* replies carry: a hostile guest's entry or event
// of the wrong shape, size or range fails the call with a protocol error; good ones pass.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { parseEntry, parseEvent } from "./fs.ts";

const good = {
  name: "a.txt",
  type: "file",
  path: "/home/dev/a.txt",
  size: 5,
  mode: 0o644,
  permissions: "-rw-r--r--",
  owner: "dev",
  group: "dev",
  mtime_sec: 1_700_000_000,
  mtime_nsec: 123,
};

describe("fs replies from the agent", () => {
  it("accepts a well-formed entry and maps it to banger's shape", () => {
    assert.deepEqual(parseEntry(good), {
      name: "a.txt",
      type: "file",
      path: "/home/dev/a.txt",
      sizeBytes: 5,
      mode: 0o644,
      permissions: "-rw-r--r--",
      owner: "dev",
      group: "dev",
      mtime: { seconds: 1_700_000_000, nanos: 123 },
    });
    assert.equal(parseEntry({ ...good, type: "symlink", permissions: "Lrwxrwxrwx", symlink_target: "../x" }).symlinkTarget, "../x");
    assert.equal(parseEntry({ ...good, name: "/", path: "/", type: "dir", permissions: "drwxr-xr-x" }).name, "/");
  });

  it("refuses entries of the wrong shape, size or range", () => {
    const bad: Array<[string, unknown]> = [
      ["not an object", [good]],
      ["unknown type", { ...good, type: "fifo" }],
      ["relative path", { ...good, path: "a.txt" }],
      ["path too long", { ...good, path: `/${"a".repeat(5000)}` }],
      ["NUL in a path", { ...good, path: "/a\0b" }],
      ["slash in a name", { ...good, name: "a/b" }],
      ["name too long", { ...good, name: "n".repeat(256) }],
      ["negative size", { ...good, size: -1 }],
      ["unsafe size", { ...good, size: 2 ** 60 }],
      ["fractional size", { ...good, size: 1.5 }],
      ["mode beyond 0o7777", { ...good, mode: 0o10000 }],
      ["permissions not ls-like", { ...good, permissions: "\x1b[31mred" }],
      ["owner with control bytes", { ...good, owner: "a\x1b]0;x" }],
      ["owner too long", { ...good, owner: "o".repeat(65) }],
      ["nanoseconds out of range", { ...good, mtime_nsec: 1e9 }],
      ["a year past 9999", { ...good, mtime_sec: 300_000_000_000 }],
      ["missing mtime", { ...good, mtime_sec: undefined }],
      ["target on a file", { ...good, symlink_target: "/etc" }],
      ["string size", { ...good, size: "5" }],
    ];
    for (const [why, v] of bad) assert.throws(() => parseEntry(v), /protocol violation/, why);
  });

  it("accepts change events inside the watched directory only", () => {
    assert.deepEqual(parseEvent({ name: "d/f", type: "create" }), { name: "d/f", type: "create" });
    assert.deepEqual(parseEvent({ name: "", type: "remove" }), { name: "", type: "remove" });
    for (const v of [{ name: "/etc/passwd", type: "write" }, { name: "../x", type: "write" }, { name: "a/../../b", type: "write" }, { name: "f", type: "delete" }, { name: 3, type: "write" }, null]) {
      assert.throws(() => parseEvent(v), /protocol violation/, JSON.stringify(v));
    }
  });
});
