// Where the guest agent binaries live and how to (re)build them (agent/build.sh).
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { hostArch } from "../util/arch.ts";
import { BangerError, ErrorCode } from "../util/errors.ts";
import { runChecked } from "../util/exec.ts";

export type AgentArch = "amd64" | "arm64";

export function hostAgentArch(): AgentArch {
  const arch = hostArch();
  if (arch === "amd64" || arch === "arm64") return arch;
  throw new BangerError(ErrorCode.Unavailable, `no guest agent for host architecture ${process.arch}`);
}

/** The repository's (or installed package's) agent/ directory: BANGER_AGENT_DIR, else found upwards. */
export function agentDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.BANGER_AGENT_DIR) return env.BANGER_AGENT_DIR;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, "agent", "build.sh")) || existsSync(join(dir, "agent", "dist"))) return join(dir, "agent");
    dir = dirname(dir);
  }
  throw new BangerError(ErrorCode.NotFound, "guest agent directory not found", "set BANGER_AGENT_DIR to the agent/ folder");
}

/** Path of the static agent binary for an architecture; throws with a hint when not built. */
export function agentBinary(arch: AgentArch = hostAgentArch(), env: NodeJS.ProcessEnv = process.env): string {
  const path = join(agentDir(env), "dist", `banger-agent-${arch}`);
  if (!existsSync(path)) {
    throw new BangerError(ErrorCode.NotFound, `guest agent binary ${path} not found`, "build it: agent/build.sh (needs golang-go)");
  }
  return path;
}

/** Runs agent/build.sh (a no-op when sources are unchanged) and returns the binary path. */
export async function buildAgent(arch: AgentArch = hostAgentArch(), opts: { signal?: AbortSignal } = {}): Promise<string> {
  await runChecked(["sh", join(agentDir(), "build.sh")], { signal: opts.signal, timeoutMs: 300_000 });
  return agentBinary(arch);
}
