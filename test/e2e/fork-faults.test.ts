// `vm fork --count K` is all or none, with real VMs under QEMU: K children restored side by
// side all work, and a fork whose third child's QEMU fails leaves no child, overlay, runtime
// directory, RAM file, snapshot row or snapshot directory behind, names the child that
// failed in one line, and the parent keeps running.
//
// The failure is injected as the other fault tests inject theirs, from outside banger: the
// daemon runs with a directory first on PATH whose qemu-system-x86_64 runs the real one,
// except for a VM whose disk lives under the directory named in a control file (the test
// writes it before the fork): that QEMU exits at once, as a QEMU that cannot start does.
import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { resolvePaths } from "../../src/config/index.ts";
import { which } from "../../src/util/exec.ts";
import { isAlive, mustRun } from "../helpers.ts";
import { faultHome } from "./faults.ts";

describe("vm fork --count: all children or none (real VMs under QEMU)", () => {
  const t = faultHome();
  const shim = join(t.home, "shim");
  const control = join(shim, "fail-vm");
  const memoryDir = resolvePaths({ BANGER_HOME: t.home }).memoryDir;
  const json = async <T>(args: string[]): Promise<T> => JSON.parse((await mustRun(t.banger([...args, "--json"]))).stdout) as T;
  const errorLines = (stderr: string) => stderr.split("\n").filter((l) => l.startsWith("banger:"));
  /** The pid of the VMM waiting for `vm`'s next fork (its runtime dir's marker says so), once ready. */
  const forkStandbyPid = (vm: string): number | undefined => {
    const runs = join(t.home, "run", "vms");
    const id = readdirSync(runs).find((d) => existsSync(join(runs, d, "standby")) && readFileSync(join(runs, d, "standby"), "utf8") === `fork:${vm}\n`);
    const log = readFileSync(join(t.home, "logs", "bangerd.log"), "utf8");
    const pid = id && existsSync(join(runs, id, "vmm.pid")) ? Number(readFileSync(join(runs, id, "vmm.pid"), "utf8")) : undefined;
    return pid && log.includes(`"msg":"standby fork ready","vm":"${vm}"`) && log.includes(`"pid":${pid}}`) ? pid : undefined;
  };

  before(async () => {
    const real = which("qemu-system-x86_64");
    assert.ok(real, "qemu-system-x86_64 is on PATH");
    mkdirSync(shim, { recursive: true });
    writeFileSync(
      join(shim, "qemu-system-x86_64"),
      [
        "#!/bin/sh",
        `fail=$(cat '${control}' 2>/dev/null)`,
        `if [ -n "$fail" ]; then case "$*" in *"/vms/$fail/"*) echo "qemu-system-x86_64: injected failure for $fail" >&2; exit 1;; esac; fi`,
        `exec '${real}' "$@"`,
        "",
      ].join("\n"),
    );
    chmodSync(join(shim, "qemu-system-x86_64"), 0o755);
    await t.setup({ PATH: `${shim}:${process.env.PATH}` });
    await mustRun(t.create("p"));
  });
  after(() => t.teardown(["p", "p-1", "p-2", "p-3"]));

  it("a fork whose third child's QEMU fails leaves nothing of any child, and says which failed", async () => {
    const parent = await t.show("p");
    const ramBefore = readdirSync(memoryDir).sort();
    writeFileSync(control, "p-3");
    const r = await t.banger(["vm", "fork", "p", "--count", "3"]);
    rmSync(control);
    assert.equal(r.code, 1, r.stderr);
    const lines = errorLines(r.stderr);
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, /^banger: vm fork of p failed at child p-3: .*injected failure for p-3.*; none of the 3 children were kept/);
    assert.deepEqual(
      (await t.list()).map((v) => v.name),
      ["p"],
    );
    assert.deepEqual(readdirSync(memoryDir).sort(), ramBefore, "no RAM file of a child in /dev/shm");
    assert.deepEqual(readdirSync(join(t.home, "snapshots")), [], "the fork's base is freed");
    assert.deepEqual(await json(["snapshot", "ls", "--all"]), [], "no snapshot row");
    await t.assertNothingLeft([]);
    assert.equal((await t.show("p")).state, "running");
    assert.equal((await mustRun(t.banger(["vm", "exec", "p", "--", "echo", "still"]))).stdout, "still\n");
    assert.equal((await t.show("p")).pid, parent.pid, "the same parent VMM");
  });

  it("--count 3 makes three working children, each its own machine", async () => {
    assert.ok(!existsSync(control));
    const forked = await json<{ snapshot: string; children: { name: string; state: string }[] }>(["vm", "fork", "p", "--count", "3"]);
    assert.deepEqual(
      forked.children.map((c) => [c.name, c.state]),
      [
        ["p-1", "running"],
        ["p-2", "running"],
        ["p-3", "running"],
      ],
    );
    for (const c of ["p-1", "p-2", "p-3"]) {
      assert.equal((await mustRun(t.banger(["vm", "exec", c, "--", "hostname"]))).stdout.trim(), c);
    }
    for (const c of ["p-1", "p-2", "p-3"]) await mustRun(t.banger(["vm", "rm", "-f", c]));
    assert.ok(!readdirSync(join(t.home, "snapshots")).includes(forked.snapshot), "the base goes with its last child");
    // What p keeps is a VMM waiting for its next fork (daemon/standby.ts), on the stand-ins of
    // that fork's base; they go with p.
    for (let i = 0; i < 200 && !forkStandbyPid("p"); i++) await new Promise((r) => setTimeout(r, 50));
    const ahead = forkStandbyPid("p");
    assert.ok(ahead && isAlive(ahead), "a VMM waits for p's next fork");
    assert.equal(readdirSync(join(t.home, "snapshots")).length, 1, "the stand-ins of p's next fork base");
    await mustRun(t.banger(["vm", "rm", "-f", "p"]));
    assert.deepEqual(readdirSync(join(t.home, "snapshots")), [], "gone with p");
    await t.assertNothingLeft([ahead]);
  });
});
