import assert from "node:assert/strict";
import { test } from "node:test";
import { symlinkEscapeProblem } from "../util/paths.ts";
import { type Member, memberType, placementProblem, symlinkEscapes } from "./members.ts";

test("only files, directories and symlinks are member types", () => {
  assert.equal(memberType("file"), "file");
  assert.equal(memberType("directory"), "directory");
  assert.equal(memberType("symlink"), "symlink");
  assert.deepEqual(memberType("link"), { refused: "hardlinks are not allowed" });
  assert.deepEqual(memberType("character-device"), { refused: "device nodes are not allowed" });
  assert.deepEqual(memberType("block-device"), { refused: "device nodes are not allowed" });
  assert.deepEqual(memberType("fifo"), { refused: "fifos are not allowed" });
});

function tree(entries: Array<[string, string?]>): Map<string, Member> {
  return new Map(entries.map(([path, linkTarget]) => [path, linkTarget === undefined ? { path, type: "file" } : { path, type: "symlink", linkTarget }]));
}

test("symlink chains that only escape through another symlink are caught", () => {
  // Lexically "b -> a/.." stays inside, but a -> . makes a/.. the parent of the root.
  const members = tree([
    ["a", "."],
    ["b", "a/.."],
  ]);
  assert.equal(symlinkEscapeProblem("b", "a/.."), undefined);
  assert.equal(symlinkEscapes(members, "b"), true);
  assert.equal(symlinkEscapes(members, "a"), false);
  assert.equal(
    symlinkEscapes(
      tree([
        ["x", "y"],
        ["y", "x"],
      ]),
      "x",
    ),
    true,
    "a loop counts as escaping",
  );
  assert.equal(symlinkEscapes(tree([["d/f"], ["d/l", "f"], ["m", "d/l"]]), "m"), false);
});

test("members may not repeat nor sit beneath a file or symlink", () => {
  const members = tree([["f"], ["l", "d"]]);
  assert.equal(placementProblem(members, "f"), "duplicated member");
  assert.equal(placementProblem(members, "l/x"), 'member is beneath symlink "l"');
  assert.equal(placementProblem(members, "f/x"), 'member is beneath file "f"');
  assert.equal(placementProblem(members, "d/x"), undefined);
  // Names may hold C1 controls (CSI, NEL); the reason reaches a terminal, so it shows them escaped.
  assert.equal(placementProblem(tree([["\u009b2J\u0085"]]), "\u009b2J\u0085/x"), 'member is beneath file "\\u009b2J\\u0085"');
});
