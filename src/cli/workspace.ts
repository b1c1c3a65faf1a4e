// `banger vm workspace export`: the guest's changes as a git patch, computed here with the
// host's git (the image needs none) from the guest's files fetched through the daemon;
// `--apply` puts them on a new branch banger/<vm> without touching the working tree.
// Also `vm run`'s workspace step: the plan (validated and announced before anything boots).
import { writeFile } from "node:fs/promises";
import type { Command } from "commander";
import type { Client } from "../api/index.ts";
import { exportWorkspace as sdkExportWorkspace } from "../sdk/index.ts";
import { validateName } from "../util/names.ts";
import { withClient } from "./daemon-client.ts";
import { printJson } from "./output.ts";
import type { WorkspacePlan } from "../workspace/index.ts";
import { humanBytes } from "../util/human.ts";
import { inert } from "../util/text.ts";

/**
 * `vm run`'s workspace, planned before any VM exists: undefined with --no-workspace. Outside
 * a repository only a directory named with --workspace is copied (workspace/plan.ts).
 */
export async function planRunWorkspace(opts: { workspace?: string | false; include?: string[] }): Promise<WorkspacePlan | undefined> {
  if (opts.workspace === false) return undefined;
  const { planWorkspace } = await import("../workspace/index.ts");
  const plan = await planWorkspace(typeof opts.workspace === "string" ? opts.workspace : process.cwd(), { explicit: typeof opts.workspace === "string", include: opts.include ?? [] });
  process.stderr.write(describePlan(plan));
  return plan;
}

/** What a copy holds, for the terminal: one line, preceded by its heaviest parts when large. Names are the repository's: inert. */
export function describePlan(plan: WorkspacePlan): string {
  const n = (v: number) => v.toLocaleString("en-US");
  const lines: string[] = [];
  if (plan.large) {
    lines.push(`large copy: ${plan.heaviest.map((h) => `${inert(h.name)} ${humanBytes(h.bytes)} (${n(h.files)} entries)`).join(", ")}`);
  }
  let line = `copying ${inert(plan.root)}${plan.isRepo ? " (git: HEAD, index and uncommitted work)" : ""}: ${n(plan.files)} files and directories, ${humanBytes(plan.bytes)}`;
  if (plan.skipped.length > 0) line += `; ${plan.skipped.length} secret path(s) skipped: ${plan.skipped.map((s) => inert(s)).join(", ")} (--include PATH copies one)`;
  if (plan.otherMounts.length > 0) line += `; other file systems not copied: ${plan.otherMounts.map((s) => inert(s)).join(", ")}`;
  lines.push(line);
  return lines.map((l) => `${l}\n`).join("");
}

/** The guest's changes as a patch: the SDK's export (sdk/workspace.ts), the one the MCP server uses too. */
export const exportWorkspace = (client: Client, name: string) => sdkExportWorkspace(client, name);

/**
 * Puts an export on a new branch of the host repository (banger/<vm> unless named); null when
 * the guest changed nothing. `vm run --apply` uses it too.
 */
export async function applyExported(exported: Awaited<ReturnType<typeof exportWorkspace>>, name: string, opts: { branch?: string; force?: boolean } = {}) {
  if (exported.patch.length === 0) return null;
  const { applyPatch } = await import("../workspace/index.ts");
  // The base is the HEAD the daemon recorded at copy-in (checked against the copied commit by
  // the export), never a line of the patch.
  return applyPatch(exported.hostRepo, exported.patch, { branch: opts.branch ?? `banger/${name}`, base: exported.baseCommit, force: opts.force });
}

export function registerWorkspace(vm: Command): void {
  const workspace = vm.command("workspace").description("the repository copy inside a VM");
  workspace
    .command("export")
    .description("the guest's changes since the copy: its commits (format-patch) plus uncommitted work, as one mbox")
    .argument("<vm>", "VM name", (v: string) => validateName("vm", v))
    .option("--out <file>", "write the patch here (default: stdout)")
    .option("--apply", "apply it to the host repository on a new branch banger/<vm> (the working tree is not touched)")
    .option("--branch <branch>", "with --apply: the branch name (default banger/<vm>)")
    .option("--force", "with --apply: replace an existing branch")
    .option("--json", "print a JSON summary")
    .action(async (name: string, opts: { out?: string; apply?: boolean; branch?: string; force?: boolean; json?: boolean }) => {
      await withClient(async (client) => {
        const exported = await exportWorkspace(client, name);
        const summary: Record<string, unknown> = {
          vm: name,
          baseCommit: exported.baseCommit,
          copiedCommit: exported.copiedCommit,
          commits: exported.commits,
          uncommitted: exported.hasUncommitted,
          squashed: exported.squashed,
          bytes: exported.patch.length,
          carried: exported.carried,
        };
        if (opts.out) await writeFile(opts.out, exported.patch);
        if (opts.apply) summary.applied = await applyExported(exported, name, opts);
        if (opts.json) return printJson(summary);
        if (!opts.out && !opts.apply) process.stdout.write(exported.patch);
        const note = exported.patch.length === 0 ? "no changes in the guest" : `${exported.commits} commit(s)${exported.hasUncommitted ? " + uncommitted changes" : ""}`;
        process.stderr.write(`base_commit: ${exported.baseCommit ?? "(none: a root series)"}\n${note}${opts.out ? `, written to ${opts.out}` : ""}\n`);
        if (exported.carried.length > 0) {
          process.stderr.write(`also carries your uncommitted changes (the guest edited the same lines): ${exported.carried.map((p) => inert(p)).join(", ")}\n`);
        }
        const applied = summary.applied as { branch: string; head: string } | undefined | null;
        if (applied) process.stderr.write(`applied on branch ${applied.branch} (${applied.head.slice(0, 12)})\n`);
      });
    });
}
