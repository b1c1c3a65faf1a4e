// Where net's commands run. Every host change goes through one argv prefix so callers (and
// tests) can aim the whole module at a network namespace instead of the host's.
import { run, runChecked, type RunOptions, type RunResult } from "../util/exec.ts";

export interface NetTarget {
  /** Prepended to every command, e.g. `["ip", "netns", "exec", "bgr-test-1"]`. Empty: the host. */
  cmdPrefix?: readonly string[];
  signal?: AbortSignal;
}

/** The argv prefix that runs commands inside the named network namespace. */
export function inNetns(name: string): readonly string[] {
  return ["ip", "netns", "exec", name];
}

function withPrefix(target: NetTarget, argv: readonly string[]): string[] {
  return [...(target.cmdPrefix ?? []), ...argv];
}

const DEFAULTS: RunOptions = { timeoutMs: 15_000, maxOutput: 1024 * 1024 };

export function netRun(target: NetTarget, argv: readonly string[], input?: string): Promise<RunResult> {
  return run(withPrefix(target, argv), { ...DEFAULTS, signal: target.signal, input });
}

export function netRunChecked(target: NetTarget, argv: readonly string[], input?: string): Promise<RunResult> {
  return runChecked(withPrefix(target, argv), { ...DEFAULTS, signal: target.signal, input });
}

/** Runs an `ip -j ...` query and parses its JSON (empty output reads as []). */
export async function ipJson<T>(target: NetTarget, args: readonly string[]): Promise<T[]> {
  const res = await netRunChecked(target, ["ip", "-j", ...args]);
  const text = res.stdout.trim();
  return text === "" ? [] : (JSON.parse(text) as T[]);
}

/** Sets a sysctl in the target's namespace (network sysctls are per namespace). */
export async function setSysctl(target: NetTarget, key: string, value: string): Promise<void> {
  await netRunChecked(target, ["sysctl", "-q", "-w", `${key}=${value}`]);
}
