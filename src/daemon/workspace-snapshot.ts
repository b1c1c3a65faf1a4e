// A VM's workspace across snapshots. A snapshot of a VM with a workspace slot carries a copy
// of the slot (taken while the guest is paused, like the root disk: sparse, self-contained
// raw) and the VM's workspace record (what `vm workspace export` reads), so a restored VM
// (create --from-snapshot, fork) has the same devices as the snapshotted one (the restore
// needs them) and its own slot file in its own directory, never the parent's:
// - a filled slot (the guest has it mounted, its memory says so): a qcow2 overlay on the
//   snapshot's copy (~0.1 s and ~200 KiB here, against ~1 s and ~200 MiB for a sparse copy
//   of a 16 GiB slot holding 200 MiB); the host never writes into it again (putWorkspace
//   takes the agent for a filled slot);
// - an empty slot: a sparse copy (raw: a later vm.workspace.put can still mkfs into it).
// The copy is sized, not hashed (hashing 16 GiB of mostly holes would cost seconds per snapshot).
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { cloneDisk, snapshotFlatRaw } from "../disk/index.ts";
import type { SnapshotWorkspace } from "../store/index.ts";
import { type WorkspaceSlot, workspaceSlotOf } from "./workspace-disk.ts";

/** The slot's copy in a snapshot's directory. */
const SLOT_COPY = "workspace.raw";

/** While the VM is paused: its slot copied into `dir` (the snapshot's staging), and its record; null without either. */
export async function snapshotWorkspace(config: Record<string, unknown>, dir: string, signal?: AbortSignal): Promise<SnapshotWorkspace | null> {
  const slot = workspaceSlotOf(config);
  const record = config.workspace as Record<string, unknown> | undefined;
  if (!slot && !record) return null;
  const out: SnapshotWorkspace = record ? { record } : {};
  if (slot) {
    const copy = await snapshotFlatRaw({ path: slot.path, format: slot.format ?? "raw" }, join(dir, SLOT_COPY), { signal });
    out.slot = { file: SLOT_COPY, bytes: (await stat(copy.path)).size, serial: slot.serial, ...(slot.mountedAt !== undefined ? { mountedAt: slot.mountedAt } : {}) };
  }
  return out;
}

/** The slot copy among the files verifySnapshot checks (size only: see the header). */
export function slotCopyCheck(ws: SnapshotWorkspace | null): { file: string; what: string; bytes: number; sha256: undefined }[] {
  return ws?.slot ? [{ file: ws.slot.file, what: "workspace disk copy", bytes: ws.slot.bytes, sha256: undefined }] : [];
}

/** A restored VM's own slot in `vmDir` and its workspace record: what its config gains. */
export async function restoreWorkspace(ws: SnapshotWorkspace | null, snapDir: string, vmDir: string, signal?: AbortSignal): Promise<Record<string, unknown>> {
  if (!ws) return {};
  const out: Record<string, unknown> = ws.record ? { workspace: ws.record } : {};
  if (ws.slot) {
    const filled = ws.slot.mountedAt !== undefined;
    const src = join(snapDir, ws.slot.file);
    const disk = filled ? await cloneDisk(src, join(vmDir, "workspace.qcow2"), "qcow2", { signal }) : await cloneDisk(src, join(vmDir, "workspace.img"), "sparse-copy", { signal });
    const slot: WorkspaceSlot = { path: disk.path, serial: ws.slot.serial, format: disk.format, ...(filled ? { mountedAt: ws.slot.mountedAt } : {}) };
    out.workspaceSlot = slot;
  }
  return out;
}
