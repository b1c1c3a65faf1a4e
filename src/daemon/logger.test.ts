// The daemon log quotes guests (agent versions, agent errors): its lines must be inert on a terminal.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { makeTempHome } from "../../test/helpers.ts";
import { Logger } from "./logger.ts";

test("log lines escape C0, C1 and bidi controls and parse back to the same fields", async () => {
  const { home, cleanup } = makeTempHome();
  try {
    const hostile = "agent \x1b]52;c;eA==\x07 \u009b2J \u202eevil \x7f";
    const log = new Logger(join(home, "bangerd.log"), false);
    log.info("vm running", { vm: "a", agent: hostile });
    await log.close();
    const text = readFileSync(join(home, "bangerd.log"), "utf8");
    assert.doesNotMatch(text.trimEnd(), /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/);
    assert.equal(JSON.parse(text).agent, hostile);
  } finally {
    cleanup();
  }
});
