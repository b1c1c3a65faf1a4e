// What every VMM's snapshot directory holds (the vmm interface: dir/vmstate, the device
// state; dir/memory, guest RAM, sparse) and the checks that refuse a missing or truncated one
// in one clear line before any VMM starts. Each driver adds its own format check.
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { integrity } from "../util/errors.ts";

export const SNAPSHOT_STATE = "vmstate";
export const SNAPSHOT_MEMORY = "memory";
export const DAMAGED_HINT = "the snapshot is damaged; remove it and take a new one";
const MIB = 1024 * 1024;

/** Bytes a file takes on disk (RAM files are sparse: never-touched pages take none). */
export async function onDisk(path: string): Promise<number> {
  return (await stat(path)).blocks * 512;
}

/** Refuses a snapshot whose files are missing, empty or truncated. */
export async function checkSnapshotFiles(dir: string, memoryMib: number): Promise<void> {
  const state = await stat(join(dir, SNAPSHOT_STATE)).catch(() => undefined);
  const memory = await stat(join(dir, SNAPSHOT_MEMORY)).catch(() => undefined);
  if (!state?.isFile()) throw integrity(`snapshot ${dir} has no device state file (${SNAPSHOT_STATE})`, DAMAGED_HINT);
  if (!memory?.isFile()) throw integrity(`snapshot ${dir} has no memory file (${SNAPSHOT_MEMORY})`, DAMAGED_HINT);
  if (state.size === 0) throw integrity(`snapshot ${dir}: its device state file is empty`, DAMAGED_HINT);
  const want = memoryMib * MIB;
  if (memory.size !== want) {
    throw integrity(
      `snapshot ${dir}: its memory file holds ${memory.size} bytes, a ${memoryMib} MiB VM needs ${want}`,
      "the snapshot is truncated, or the VM asks for other memory than the snapshotted one had",
    );
  }
}
