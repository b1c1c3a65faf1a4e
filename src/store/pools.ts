// Warm pools: one row per image that should keep N VMs ready (its size and the spec its
// members boot with), and the members themselves, ordinary `vms` rows whose `pool` column
// names the image. Taking a member is one UPDATE (renamed, no longer pooled), so two
// callers can never take the same one.
import type Database from "better-sqlite3";
import type { MachineSpec, VmRecord } from "./records.ts";

/** What a pool's members boot with; kernel null: the image's (or the default) at boot time. */
export type PoolSpec = Pick<MachineSpec, "cpus" | "memoryBytes" | "net" | "netPeer"> & { kernel: string | null };

export interface PoolRecord {
  image: string;
  /** How many ready VMs the pool keeps (0: none; the row stays until removed). */
  size: number;
  spec: PoolSpec;
  createdAt: string;
  updatedAt: string;
}

type Row = Record<string, unknown>;

function poolFromRow(r: Row): PoolRecord {
  return { image: r.image as string, size: r.size as number, spec: JSON.parse(r.spec as string) as PoolSpec, createdAt: r.created_at as string, updatedAt: r.updated_at as string };
}

export class PoolTable {
  constructor(
    private readonly db: Database.Database,
    private readonly vmFromRow: (r: Row) => VmRecord,
  ) {}

  list(): PoolRecord[] {
    return (this.db.prepare("SELECT * FROM pools ORDER BY image").all() as Row[]).map(poolFromRow);
  }

  get(image: string): PoolRecord | undefined {
    const r = this.db.prepare("SELECT * FROM pools WHERE image = ?").get(image) as Row | undefined;
    return r && poolFromRow(r);
  }

  /** Creates or resizes (and re-specs) an image's pool. */
  put(image: string, size: number, spec: PoolSpec): void {
    const at = new Date().toISOString();
    this.db
      .prepare(
        `INSERT INTO pools (image, size, spec, created_at, updated_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT(image) DO UPDATE SET size = excluded.size, spec = excluded.spec, updated_at = excluded.updated_at`,
      )
      .run(image, size, JSON.stringify(spec), at, at);
  }

  delete(image: string): boolean {
    return this.db.prepare("DELETE FROM pools WHERE image = ?").run(image).changes > 0;
  }

  /** The pooled VMs (of one image, or all), oldest first: the oldest is taken first. */
  members(image?: string): VmRecord[] {
    const rows =
      image === undefined
        ? (this.db.prepare("SELECT * FROM vms WHERE pool IS NOT NULL ORDER BY created_at, name").all() as Row[])
        : (this.db.prepare("SELECT * FROM vms WHERE pool = ? ORDER BY created_at, name").all(image) as Row[]);
    return rows.map(this.vmFromRow);
  }

  /**
   * Takes a ready member out of its pool under a new name, in one statement: false when it
   * is no longer there, no longer ready, or the name is taken (the caller tries another).
   */
  take(member: string, newName: string): boolean {
    try {
      return this.db.prepare("UPDATE vms SET name = ?, pool = NULL WHERE name = ? AND pool IS NOT NULL AND state = 'running'").run(newName, member).changes > 0;
    } catch (err) {
      if ((err as { code?: string }).code === "SQLITE_CONSTRAINT_PRIMARYKEY") return false;
      throw err;
    }
  }
}
