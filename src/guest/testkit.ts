// Test support (not a test file): runs the real agent as a normal process on a Unix socket.
import { spawn, type ChildProcess } from "node:child_process";
import { buildAgent } from "./agentbin.ts";

/** Builds the agent if needed (agent/build.sh) and starts `serve --unix sock`; resolves once it is ready. */
export async function startAgent(sock: string): Promise<ChildProcess> {
  const bin = await buildAgent();
  const child = spawn(bin, ["serve", "--unix", sock], { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  child.stderr!.on("data", (d: Buffer) => (log += d.toString()));
  const deadline = Date.now() + 10_000;
  while (!log.includes("ready")) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`agent did not start: ${log}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return child;
}

