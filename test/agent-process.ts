// Test support: agents as processes. The real agent (`banger-agent serve --unix SOCK`), and
// any test program that says "ready" on stderr once it listens (the hostile fake agent).
import { spawn, type ChildProcess } from "node:child_process";
import { buildAgent } from "../src/guest/agentbin.ts";

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
