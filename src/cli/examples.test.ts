// Examples in --help: added from examples.ts by command path, never twice when a command's
// own file already adds a section of its own.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Command } from "commander";
import { EXAMPLES, addExamples } from "./examples.ts";

function helpOf(cmd: Command): string {
  let text = "";
  cmd.configureOutput({ writeOut: (s) => void (text += s) });
  cmd.outputHelp();
  return text;
}

test("each command gets its examples once, by name or alias, and keeps its own when it has them", () => {
  const program = new Command("banger");
  const doctor = program.command("doctor");
  const web = program.command("web").addHelpText("after", "\nExamples:\n  banger web --its-own\n");
  const image = program.command("image");
  const list = image.command("list").alias("ls");
  addExamples(program);
  const count = (cmd: Command) => helpOf(cmd).match(/^Examples:$/gm)?.length ?? 0;
  assert.equal(count(doctor), 1);
  assert.match(helpOf(doctor), new RegExp(`Examples:\\n  ${EXAMPLES.doctor![0]!.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`));
  assert.equal(count(web), 1);
  assert.match(helpOf(web), /banger web --its-own/);
  assert.equal(count(list), 1, "image list found through its alias ls");
});
