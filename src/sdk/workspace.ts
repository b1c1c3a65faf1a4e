// A workspace VM's changes (one made by `banger vm run` in a repository) as a git patch,
// computed here with the host's git from the guest's files fetched through the daemon (the
// image needs no git): workspace/ does the work, this only wires the daemon's calls to it.
// `banger vm workspace export` and the MCP server's workspace_export both come here.
import type { Client } from "../api/index.ts";
import type { ExportedPatch } from "../workspace/index.ts";
import { guestTar } from "./files.ts";

export type WorkspaceExport = ExportedPatch & { hostRepo: string };

export async function exportWorkspace(client: Client, name: string, signal?: AbortSignal): Promise<WorkspaceExport> {
  const ws = await client.call("vm.workspace.info", { name });
  // Loaded on demand: most callers never export, and workspace/ pulls in git handling.
  const { exportPatch } = await import("../workspace/index.ts");
  const exported = await exportPatch(
    { getFiles: async (path: string) => guestTar(client, name, path, signal) },
    { vmName: name, workspace: ws.guestPath, baseCommit: ws.baseCommit, copiedCommit: ws.copiedCommit, hostRepo: ws.hostRepo, signal },
  );
  return { ...exported, hostRepo: ws.hostRepo };
}
