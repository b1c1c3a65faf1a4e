// Shared by the fault tests (vm-faults, vm-diskfull): a booted root, `vm show`/`vm ls` as
// JSON, waiting for a state, and the check that nothing is left of VMs that are not listed.
import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { killProcessesMentioning } from "../kits/vm.ts";
import { daemonPid, doctorLeftovers, isAlive, makeTempHome, mustRun, prepareBootableHome, runBanger, stopDaemon } from "../helpers.ts";

export interface VmJson {
  name: string;
  state: string;
  pid: number | null;
  id: string;
  stateReason: string | null;
}

/** A booted root and the helpers the fault tests share. */
export function faultHome() {
  const { home, cleanup } = makeTempHome();
  let env: NodeJS.ProcessEnv = {};
  const banger = (args: string[], input?: string) => runBanger(args, { home, env, input });
  const show = async (name: string): Promise<VmJson> => JSON.parse((await mustRun(banger(["vm", "show", name, "--json"]))).stdout) as VmJson;
  const list = async (): Promise<VmJson[]> => JSON.parse((await mustRun(banger(["vm", "ls", "--json"]))).stdout) as VmJson[];
  /** Polls `vm show` until `done`; returns the VM and when the call that saw it started (ms after `since`). */
  const waitFor = async (name: string, done: (vm: VmJson) => boolean, since: number, timeoutMs = 30_000): Promise<{ vm: VmJson; seenAfterMs: number }> => {
    for (;;) {
      const asked = Date.now();
      const vm = await show(name);
      if (done(vm)) return { vm, seenAfterMs: asked - since };
      if (Date.now() - since > timeoutMs) throw new Error(`vm ${name} still ${vm.state} after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  /** Nothing of VMs that are not listed: no disk dir, no runtime dir, no live VMM; doctor finds no leftovers. */
  const assertNothingLeft = async (pids: number[]) => {
    const listed = await list();
    const dirs = existsSync(join(home, "vms")) ? readdirSync(join(home, "vms")) : [];
    assert.deepEqual(dirs.sort(), listed.map((v) => v.name).sort(), "a disk directory for each listed VM only");
    const runtime = existsSync(join(home, "run", "vms")) ? readdirSync(join(home, "run", "vms")) : [];
    assert.deepEqual(
      runtime.filter((id) => !listed.some((v) => v.id === id)),
      [],
      "no runtime directory of an unlisted VM",
    );
    for (const pid of pids) assert.equal(isAlive(pid), false, `VMM ${pid} is gone`);
    const leftovers = await doctorLeftovers(home, env);
    assert.equal(leftovers.status, "pass", leftovers.detail);
  };
  /** `vm create` of the test image, small. */
  const create = (name: string, extra: string[] = []) => banger(["vm", "create", "--name", name, "--image", "busybox", "--memory", "256M", ...extra]);
  return {
    home,
    create,
    get env() {
      return env;
    },
    banger,
    show,
    list,
    daemonPid: () => daemonPid(home),
    waitFor,
    assertNothingLeft,
    async setup(extra: NodeJS.ProcessEnv = {}) {
      ({ env } = await prepareBootableHome(home, extra));
    },
    async teardown(names: string[]) {
      for (const n of names) await banger(["vm", "rm", "-f", n]).catch(() => undefined);
      await stopDaemon(home);
      await killProcessesMentioning(home); // safety net: a failed test's VMMs
      cleanup();
    },
  };
}

/** The VM's row as the store has it this instant (the test reads the daemon's state file). */
export function storedVm(home: string, name: string): { state: string; id: string } | undefined {
  const db = new Database(join(home, "banger.db"), { readonly: true, fileMustExist: true });
  try {
    return db.prepare("SELECT state, id FROM vms WHERE name = ?").get(name) as { state: string; id: string } | undefined;
  } finally {
    db.close();
  }
}

export async function until(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
