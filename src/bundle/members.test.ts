import assert from "node:assert/strict";
import { test } from "node:test";
import { type Member, memberType, normaliseMemberPath, placementProblem, symlinkEscapes, symlinkTargetProblem } from "./members.ts";

test("member paths are normalised, and absolute or escaping ones refused", () => {
  assert.equal(normaliseMemberPath("./modules//6.1/kernel/"), "modules/6.1/kernel");
  assert.equal(normaliseMemberPath("./"), "");
  assert.equal(normaliseMemberPath("a/../b"), "b");
  assert.deepEqual(normaliseMemberPath("/etc/passwd"), { refused: "absolute paths are not allowed" });
  assert.deepEqual(normaliseMemberPath("../x"), { refused: "path escapes the bundle" });
  assert.deepEqual(normaliseMemberPath("a/../../x"), { refused: "path escapes the bundle" });
  assert.deepEqual(normaliseMemberPath("a\0b"), { refused: "path contains a NUL byte" });
});

test("only files, directories and symlinks are member types", () => {
  assert.equal(memberType("file"), "file");
  assert.equal(memberType("directory"), "directory");
  assert.equal(memberType("symlink"), "symlink");
  assert.deepEqual(memberType("link"), { refused: "hardlinks are not allowed" });
  assert.deepEqual(memberType("character-device"), { refused: "device nodes are not allowed" });
  assert.deepEqual(memberType("block-device"), { refused: "device nodes are not allowed" });
  assert.deepEqual(memberType("fifo"), { refused: "fifos are not allowed" });
});

test("symlink targets resolve relative to the link's directory", () => {
  assert.equal(symlinkTargetProblem("modules/6.1/build", "../6.1/kernel"), undefined);
  assert.match(symlinkTargetProblem("modules/x", "../../etc") ?? "", /escapes the bundle/);
  assert.match(symlinkTargetProblem("modules/x", "/usr/src/linux") ?? "", /is absolute/);
  assert.match(symlinkTargetProblem("x", "") ?? "", /empty target/);
});

function tree(entries: Array<[string, string?]>): Map<string, Member> {
  return new Map(entries.map(([path, linkTarget]) => [path, linkTarget === undefined ? { path, type: "file" } : { path, type: "symlink", linkTarget }]));
}

test("symlink chains that only escape through another symlink are caught", () => {
  // Lexically "b -> a/.." stays inside, but a -> . makes a/.. the parent of the root.
  const members = tree([["a", "."], ["b", "a/.."]]);
  assert.equal(symlinkTargetProblem("b", "a/.."), undefined);
  assert.equal(symlinkEscapes(members, "b"), true);
  assert.equal(symlinkEscapes(members, "a"), false);
  assert.equal(symlinkEscapes(tree([["x", "y"], ["y", "x"]]), "x"), true, "a loop counts as escaping");
  assert.equal(symlinkEscapes(tree([["d/f"], ["d/l", "f"], ["m", "d/l"]]), "m"), false);
});

test("members may not repeat nor sit beneath a file or symlink", () => {
  const members = tree([["f"], ["l", "d"]]);
  assert.equal(placementProblem(members, "f"), "duplicated member");
  assert.equal(placementProblem(members, "l/x"), 'member is beneath symlink "l"');
  assert.equal(placementProblem(members, "f/x"), 'member is beneath file "f"');
  assert.equal(placementProblem(members, "d/x"), undefined);
});
