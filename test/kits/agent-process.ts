// Test support: agents as processes. The real agent (`banger-agent serve --unix SOCK`), and
// any test program that says "ready" on stderr once it listens (the hostile fake agent); and
// either one recorded as a running VM's VMM, for a real bangerd to adopt.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { buildAgent } from "../../src/guest/agentbin.ts";
import { openStore } from "../../src/store/index.ts";

/** Builds the agent if needed (agent/build.sh) and starts `serve --unix sock`; resolves once it is ready. */
export async function startAgent(sock: string): Promise<ChildProcess> {
  return spawnUntilReady(await buildAgent(), ["serve", "--unix", sock]);
}

/** Starts a program and waits (10 s at most) until its stderr says "ready"; kills it if it does not. */
export async function spawnUntilReady(cmd: string, args: string[]): Promise<ChildProcess> {
  const child = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  child.stderr!.on("data", (d: Buffer) => (log += d.toString()));
  const deadline = Date.now() + 10_000;
  while (!log.includes("ready")) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`${cmd} did not start: ${log}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return child;
}

/**
 * Serves `<runtimeDir>/agent.sock` with `serve` and records the server as that runtime dir's
 * running qemu VMM (vmm.json, vmm.pid: what the qemu driver records for adopt()), so a bangerd
 * that starts afterwards adopts it as a VM's agent. Its command line names the socket, which
 * lies in the runtime dir: that is how the daemon tells it from a recycled pid.
 */
export async function adoptableVmm(runtimeDir: string, serve: (sock: string) => Promise<ChildProcess>): Promise<ChildProcess> {
  mkdirSync(runtimeDir, { recursive: true, mode: 0o700 });
  const sock = join(runtimeDir, "agent.sock");
  const proc = await serve(sock);
  const state = { driver: "qemu", pid: proc.pid, controlSocket: join(runtimeDir, "qmp.sock"), agentSocket: sock, sockets: [sock] };
  writeFileSync(join(runtimeDir, "vmm.json"), JSON.stringify(state));
  writeFileSync(join(runtimeDir, "vmm.pid"), `${proc.pid}\n`);
  return proc;
}

/**
 * Records in `<home>/banger.db` (which must exist) a running qemu VM named `name`, booted from
 * `image`, whose agent is served by `serve` (adoptableVmm): a bangerd started afterwards adopts it.
 */
export async function recordFakeVm(home: string, name: string, serve: (sock: string) => Promise<ChildProcess>, image = "none"): Promise<ChildProcess> {
  const id = `id-${name}`;
  const proc = await adoptableVmm(join(home, "run", "vms", id), serve);
  const store = openStore(join(home, "banger.db"));
  try {
    store.insertVm({ name, id, state: "running", image, kernel: "none", vmm: "qemu", cpus: 1, memoryBytes: 64 * 1024 ** 2, diskBytes: 1 << 20, pid: proc.pid!, ip: null, error: null, config: {} });
  } finally {
    store.close();
  }
  return proc;
}
