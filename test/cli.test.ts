// The CLI's contract: exit codes, usage lines, one-line errors, parseable --json.
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { makeTempHome, runBanger, stopDaemon } from "./helpers.ts";

describe("cli", () => {
  const { home, cleanup } = makeTempHome();
  after(async () => {
    await stopDaemon(home);
    cleanup();
  });

  it("prints version, commit and build date", async () => {
    const r = await runBanger(["--version"], { home });
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^banger \d+\.\d+\.\d+ \(commit ([0-9a-f]{7,}(-dirty)?|unknown), built \d{4}-\d\d-\d\dT/);
  });

  for (const [args, usage] of [
    [["vm", "show"], /usage: banger vm show \[options\] <name>/],
    [["vm", "frobnicate"], /usage: banger vm/],
    [["--no-such-flag"], /usage: banger/],
    [["vm", "ls", "--nope"], /usage: banger vm ls/],
  ] as const) {
    it(`exits 2 with a usage line on bad usage: banger ${args.join(" ")}`, async () => {
      const r = await runBanger([...args], { home });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, usage);
      assert.equal(r.stdout, "");
    });
  }

  it("rejects a bad name as usage before contacting the daemon", async () => {
    const { home: fresh, cleanup: done } = makeTempHome();
    try {
      const r = await runBanger(["vm", "show", "../etc"], { home: fresh });
      assert.equal(r.code, 2);
      assert.match(r.stderr, /^banger: invalid vm name "\.\.\/etc"/);
      const status = await runBanger(["daemon", "status"], { home: fresh });
      assert.match(status.stdout, /not running/, "no daemon was started for a bad name");
    } finally {
      done();
    }
  });

  it("reports a failed operation as one line on stderr with exit 1", async () => {
    const r = await runBanger(["vm", "show", "ghost"], { home });
    assert.equal(r.code, 1);
    assert.equal(r.stderr, "banger: vm ghost not found (see `banger vm ls`)\n");
  });

  it("prints JSON that parses for list and show commands", async () => {
    const ls = await runBanger(["vm", "ls", "--json"], { home });
    assert.deepEqual(JSON.parse(ls.stdout), []);
    const status = await runBanger(["daemon", "status", "--json"], { home });
    assert.equal(JSON.parse(status.stdout).running, true);
    const doctor = await runBanger(["doctor", "--json"], { home });
    const report = JSON.parse(doctor.stdout);
    assert.ok(Array.isArray(report.checks) && report.checks.length > 5);
    assert.equal(typeof report.canBoot, "boolean");
    assert.equal(doctor.code, report.canBoot ? 0 : 1);
  });

  it("has --help on every command", async () => {
    for (const args of [["--help"], ["vm", "--help"], ["vm", "ls", "--help"], ["daemon", "logs", "--help"], ["doctor", "--help"]]) {
      const r = await runBanger(args, { home });
      assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stdout, /^Usage: banger/);
    }
  });
});
