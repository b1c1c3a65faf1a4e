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

  for (const [args, error] of [
    [["vm", "create", "--memory", "10"], /^banger: --memory must be 64M\.\.256G, not "10"/],
    [["vm", "set", "some-vm", "--memory", "300G"], /^banger: --memory must be 64M\.\.256G, not "300G"/],
    [["vm", "run", "--memory", "32M", "--", "true"], /^banger: --memory must be 64M\.\.256G, not "32M"/],
    [["vm", "create", "--disk-size", "0"], /^banger: --disk-size must be more than 0/],
    [["image", "build", "--preset", "busybox", "--size", "0"], /^banger: --size must be more than 0/],
    [["vm", "logs", "some-vm", "--bytes", "100M"], /^banger: --bytes must be 1\.\.16M, not "100M"/],
  ] as const) {
    it(`names the flag and its range in human units: banger ${args.join(" ")}`, async () => {
      const { home: fresh, cleanup: done } = makeTempHome();
      try {
        const r = await runBanger([...args], { home: fresh });
        assert.equal(r.code, 2, r.stderr);
        assert.match(r.stderr, error);
        assert.doesNotMatch(r.stderr, /memoryMib|diskBytes|sizeBytes/);
        const status = await runBanger(["daemon", "status"], { home: fresh });
        assert.match(status.stdout, /not running/, "refused before contacting the daemon (nothing built, nothing booted)");
      } finally {
        done();
      }
    });
  }

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

  it("has one Examples section in the --help of every main command", async () => {
    const main = [
      "vm run",
      "vm create",
      "vm exec",
      "vm shell",
      "vm ls",
      "vm rm",
      "vm stats",
      "vm logs",
      "vm snapshot",
      "vm fork",
      "vm pause",
      "snapshot ls",
      "snapshot show",
      "snapshot rm",
      "image pull",
      "image build",
      "image ls",
      "image rm",
      "kernel pull",
      "kernel import",
      "kernel ls",
      "kernel rm",
      "session start",
      "session attach",
      "session ls",
      "session logs",
      "pool set",
      "pool ls",
      "config",
      "doctor",
      "web",
      "mcp",
    ];
    for (const command of main) {
      const r = await runBanger([...command.split(" "), "--help"], { home });
      assert.equal(r.code, 0, `${command}: ${r.stderr}`);
      assert.equal(r.stdout.match(/^Examples:$/gm)?.length, 1, `banger ${command} --help:\n${r.stdout}`);
      const block = r.stdout
        .slice(r.stdout.indexOf("Examples:\n") + 10)
        .split("\n")
        .filter((l) => l !== "");
      assert.ok(block.length > 0 && block.every((l) => l.startsWith("  ") && l.includes(`banger ${command.split(" ")[0]}`)), `${command}: examples are commands:\n${block.join("\n")}`);
    }
  });
});
