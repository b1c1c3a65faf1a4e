// The snapshots table (migration 4): one row per snapshot under <root>/snapshots/<name>.
// Kept beside Store (index.ts) as its `snapshots` member so the store's file stays small.
import type Database from "better-sqlite3";
import { type MachineSpec, type Row, machineFromRow } from "./records.ts";

/** The machine it restores is its VM's (MachineSpec), and its files. */
export interface SnapshotRecord extends MachineSpec {
  name: string;
  /** The VM it was taken of (it may be gone since). */
  sourceVm: string;
  /** The source VM had a NIC: restored VMs get one (a new tap, MAC and address). */
  hasNic: boolean;
  /** The disk copy's file name in the snapshot's directory, and its format. */
  diskFile: string;
  diskFormat: "raw" | "qcow2";
  /** Sizes of each file (device state, guest memory, disk copy), checked before a restore. */
  stateBytes: number;
  memoryFileBytes: number;
  diskBytes: number;
  stateSha256: string;
  diskSha256: string;
  /** A fork's base: not listed unless asked, removed with its last child. */
  internal: boolean;
  /** How long the source VM was paused while it was taken. */
  pauseMs: number;
  /** The source VM's workspace slot copy and workspace record, when it had them (daemon/workspace-snapshot.ts). */
  workspace: SnapshotWorkspace | null;
  createdAt: string;
}

/** What a snapshot keeps of its VM's workspace: the slot disk's copy (sized) and the host-side record `vm workspace export` reads. */
export interface SnapshotWorkspace {
  slot?: { file: string; bytes: number; serial: string; mountedAt?: string };
  record?: Record<string, unknown>;
}

function snapshotFromRow(r: Row): SnapshotRecord {
  return {
    name: r.name as string,
    sourceVm: r.source_vm as string,
    ...machineFromRow(r, r.memory_bytes as number),
    hasNic: r.has_nic === 1,
    diskFile: r.disk_file as string,
    diskFormat: r.disk_format as "raw" | "qcow2",
    stateBytes: r.state_bytes as number,
    memoryFileBytes: r.memory_file_bytes as number,
    diskBytes: r.disk_bytes as number,
    stateSha256: r.state_sha256 as string,
    diskSha256: r.disk_sha256 as string,
    internal: r.internal === 1,
    pauseMs: r.pause_ms as number,
    workspace: typeof r.workspace === "string" ? (JSON.parse(r.workspace) as SnapshotWorkspace) : null,
    createdAt: r.created_at as string,
  };
}

export class SnapshotTable {
  constructor(private readonly db: Database.Database) {}

  list(): SnapshotRecord[] {
    return (this.db.prepare("SELECT * FROM snapshots ORDER BY created_at, name").all() as Row[]).map(snapshotFromRow);
  }
  get(name: string): SnapshotRecord | undefined {
    const r = this.db.prepare("SELECT * FROM snapshots WHERE name = ?").get(name) as Row | undefined;
    return r && snapshotFromRow(r);
  }
  insert(s: Omit<SnapshotRecord, "createdAt"> & { createdAt?: string }): void {
    this.db
      .prepare(
        `INSERT INTO snapshots (name, source_vm, image, kernel, vmm, cpus, memory_bytes, net, net_peer, has_nic, disk_file, disk_format, state_bytes,
           memory_file_bytes, disk_bytes, state_sha256, disk_sha256, internal, pause_ms, workspace, created_at)
         VALUES (@name, @sourceVm, @image, @kernel, @vmm, @cpus, @memoryBytes, @net, @netPeer, @hasNic, @diskFile, @diskFormat, @stateBytes,
           @memoryFileBytes, @diskBytes, @stateSha256, @diskSha256, @internal, @pauseMs, @workspace, @createdAt)`,
      )
      .run({
        ...s,
        netPeer: s.netPeer ? 1 : 0,
        hasNic: s.hasNic ? 1 : 0,
        internal: s.internal ? 1 : 0,
        workspace: s.workspace ? JSON.stringify(s.workspace) : null,
        createdAt: s.createdAt ?? new Date().toISOString(),
      });
  }
  delete(name: string): boolean {
    return this.db.prepare("DELETE FROM snapshots WHERE name = ?").run(name).changes > 0;
  }
  /** The VMs restored from a snapshot (their disks are overlays on its disk). */
  vmsUsing(name: string): string[] {
    return (this.db.prepare("SELECT name FROM vms WHERE snapshot = ? ORDER BY name").all(name) as Row[]).map((r) => r.name as string);
  }
}
