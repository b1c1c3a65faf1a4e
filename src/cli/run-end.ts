// How `vm run` ends, one rule for every mode: a VM whose workspace the guest changed is kept
// and banger says what changed and how to get it, unless the user asked for the changes
// (--export FILE, --apply) or for removal (--rm, which says what it discarded). A run
// interrupted mid-way follows the same rule; a run whose daemon or VM went away, or whose
// workspace cannot be looked at, keeps its VM. An unchanged workspace is removed as before.
import { writeFile } from "node:fs/promises";
import type { Client } from "../api/index.ts";
import { ConnectionLostError } from "../rpc/index.ts";
import { BangerError, ErrorCode, errorLine } from "../util/errors.ts";
import { inert } from "../util/text.ts";
import { onInterrupts, type InterruptSignal } from "./interrupts.ts";
import { changeLine, statLines, summarizePatch, type PatchSummary } from "./patch-summary.ts";
import { applyExported, exportWorkspace } from "./workspace.ts";

export interface RunEnd {
  client: Client;
  name: string;
  /** What the user asked for: --keep (or -d), --rm, or the rule above. */
  mode: "keep" | "rm" | "auto";
  /** --export FILE (absolute). */
  exportTo?: string;
  /** --apply. */
  apply: boolean;
  /** The guest command ran (nothing but banger touched the VM before). */
  ran: boolean;
  /** A workspace was copied in; hostRepo when it was a git repository (changes can be told). */
  workspace: boolean;
  hostRepo?: string;
  /** The signal that interrupted the command, if one did. */
  interrupted?: InterruptSignal;
  /** The fast check (run-probe.ts): resolves true when the workspace surely did not change. */
  unchanged?: () => Promise<boolean>;
  /** What ended the run instead of the command's exit status (e.g. the daemon went away), if anything. */
  failure?: unknown;
}

const say = (text: string) => void process.stderr.write(`${text}\n`);

/** Keeps, exports, applies or removes the VM as the rule says, and says so. */
export async function endRun(end: RunEnd): Promise<void> {
  const { name } = end;
  if (end.mode === "keep") return say(`vm ${name} kept (banger vm rm -f ${name} when done)`);
  if (daemonWentAway(end.failure)) return keep(end, "bangerd went away mid-run (it takes the VM back when it runs again)");
  if (!end.ran || !end.workspace) return remove(end);
  if (!end.hostRepo) return endPlainDirectory(end);
  // The fast path first (not when the changes were asked for: those need the export anyway).
  const quick = end.unchanged && !end.exportTo && !end.apply ? end.unchanged : undefined;
  const looked = await interruptible(end.client, async () => ((await quick?.()) ? null : exportWorkspace(end.client, name)));
  if ("interrupted" in looked) return keep(end, `interrupted (${looked.interrupted}) while looking at its workspace`);
  if ("error" in looked && end.mode === "rm") {
    await remove(end);
    return say(`whatever its workspace held was discarded (banger could not look: ${inert(errorLine(looked.error))})`);
  }
  if ("error" in looked) return keep(end, `banger could not tell whether its workspace changed: ${inert(errorLine(looked.error))}`);
  const exported = looked.value;
  if (exported === null) return remove(end);
  const summary = summarizePatch(exported.patch);
  const changed = exported.patch.length > 0;
  if (!changed && !end.exportTo && !end.apply) return remove(end);
  if (end.mode === "rm") {
    await remove(end);
    return say(`its workspace changes were discarded: ${changeLine(summary)}`);
  }
  if (end.exportTo || end.apply) {
    const delivered = await interruptible(end.client, () => deliver(end, exported, summary));
    if ("interrupted" in delivered) return keep(end, `interrupted (${delivered.interrupted}) while exporting its changes`);
    if ("error" in delivered) return keep(end, `its changes were not exported: ${inert(errorLine(delivered.error))}`, summary);
    return remove(end);
  }
  return keep(end, end.interrupted ? `the command was interrupted (${end.interrupted}) and its workspace changed` : "its workspace changed", summary);
}

/**
 * A workspace that is not a git repository has no patch to show, but whether it changed can
 * still be told (run-probe.ts): unchanged is removed, changed or unknown is kept.
 */
async function endPlainDirectory(end: RunEnd): Promise<void> {
  if (end.mode === "rm") {
    await remove(end);
    return say("whatever its workspace held was discarded");
  }
  const looked = await interruptible(end.client, async () => (end.unchanged ? end.unchanged() : false));
  if ("value" in looked && looked.value) return remove(end);
  const why = "interrupted" in looked ? `interrupted (${looked.interrupted}) while looking at its workspace` : "its workspace (not a git repository) may have changed";
  keep(end, why);
}

/**
 * A failure that means bangerd went away: the connection dropped (killed, crashed), or the
 * daemon cancelled the call while shutting down. vm run's own cancels (a forced interrupt, a
 * reader gone) end with a status, not an error.
 */
function daemonWentAway(err: unknown): boolean {
  return err instanceof ConnectionLostError || (err instanceof BangerError && err.code === ErrorCode.Cancelled);
}

/** --export FILE and --apply: the changes out of the VM, said as they land. */
async function deliver(end: RunEnd, exported: Awaited<ReturnType<typeof exportWorkspace>>, summary: PatchSummary): Promise<void> {
  const what = exported.patch.length > 0 ? changeLine(summary) : "no changes";
  if (end.exportTo) {
    await writeFile(end.exportTo, exported.patch);
    say(`${what}: patch written to ${inert(end.exportTo)}${exported.patch.length === 0 ? " (empty)" : ""}`);
  }
  if (end.apply) {
    const applied = await applyExported(exported, end.name);
    say(applied ? `${what}: applied on branch ${inert(applied.branch)} (${applied.head.slice(0, 12)}); the working tree is untouched` : "no changes to apply");
  }
}

/** Says why the VM stays, what changed, and the commands that come next. */
function keep(end: RunEnd, why: string, summary?: PatchSummary): void {
  const { name } = end;
  say(`vm ${name} is kept: ${why}${summary ? ` (${changeLine(summary)})` : ""}`);
  for (const line of summary ? statLines(summary) : []) say(`  ${inert(line)}`);
  if (end.hostRepo) {
    say(`get the changes:  banger vm workspace export ${name} --apply      (onto a new branch banger/${name})`);
    say(`              or  banger vm workspace export ${name} --out FILE`);
  } else if (end.workspace) {
    say(`copy it out:      banger vm exec ${name} -- tar -C /workspace -c . > workspace.tar`);
  }
  say(`remove it:        banger vm rm -f ${name}`);
}

async function remove(end: RunEnd): Promise<void> {
  try {
    // Nothing in a removed VM is kept: its VMM is ended at once, not its guest powered off first.
    await end.client.call("vm.rm", { name: end.name, force: true, kill: true });
    if (end.hostRepo) await (await import("../workspace/index.ts")).releaseWorkspace(end.hostRepo, end.name);
  } catch (err) {
    say(`banger: could not remove vm ${end.name}: ${inert(errorLine(err))}\n  banger vm rm -f ${end.name}`);
    return;
  }
  if (end.mode === "rm") say(`vm ${end.name} removed`);
}

/**
 * Runs `fn` with SIGINT/SIGTERM/SIGHUP taken as "stop looking, keep the VM": the connection
 * is closed (every call on it fails at once) and the signal is reported instead of a result.
 */
async function interruptible<T>(client: Client, fn: () => Promise<T>): Promise<{ value: T } | { error: unknown } | { interrupted: InterruptSignal }> {
  let interrupted: InterruptSignal | undefined;
  const stop = onInterrupts((sig) => {
    interrupted ??= sig;
    client.close();
  });
  try {
    const value = await fn();
    return interrupted ? { interrupted } : { value };
  } catch (error) {
    return interrupted ? { interrupted } : { error };
  } finally {
    stop();
  }
}
