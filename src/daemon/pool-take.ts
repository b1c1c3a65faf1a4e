// What a VM taken from a warm pool needs inside: it booted as `pool-…`, so the guest learns
// its new name (and, through the agent's reidentify, a reseeded RNG and the host's clock).
import { randomBytes } from "node:crypto";
import type { AgentClient } from "../guest/index.ts";
import { failed } from "../util/errors.ts";
import { runInGuest } from "./guest-run.ts";

const REIDENTIFY_TIMEOUT_MS = 10_000;

type Reidentify = (p: { hostname: string; seed: Buffer; timeUnixMs: number }) => Promise<void>;

/**
 * Makes the guest `name`: the agent's reidentify when this agent has it, else (an agent
 * without it) `hostname NAME` run as root, which is all a cold-booted member lacks.
 */
export async function reidentifyGuest(agent: AgentClient, name: string): Promise<void> {
  const reidentify = (agent as unknown as { reidentify?: Reidentify }).reidentify;
  if (typeof reidentify === "function") return reidentify.call(agent, { hostname: name, seed: randomBytes(64), timeUnixMs: Date.now() });
  const { status, lastLine } = await runInGuest(agent, ["hostname", name], { timeoutMs: REIDENTIFY_TIMEOUT_MS, what: "setting the guest's hostname" });
  if (!("exitCode" in status) || status.exitCode !== 0) throw failed(`cannot set the guest's hostname to ${name}: ${lastLine || JSON.stringify(status)}`);
}
