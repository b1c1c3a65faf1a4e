// Sandboxes (the E2B-compatible API's): one row per sandbox beside its VM's row, which owns it
// (a VM removed by any path takes its sandbox row along: ON DELETE CASCADE).
import type Database from "better-sqlite3";

export interface SandboxRecord {
  id: string;
  vm: string;
  template: string;
  metadata: Record<string, string>;
  envVars: Record<string, string>;
  accessToken: string | null;
  endAt: string;
  autoPause: boolean;
  startedAt: string;
}

type Row = Record<string, unknown>;

function sandboxFromRow(r: Row): SandboxRecord {
  return {
    id: r.id as string,
    vm: r.vm as string,
    template: r.template as string,
    metadata: JSON.parse(r.metadata as string) as Record<string, string>,
    envVars: JSON.parse(r.env_vars as string) as Record<string, string>,
    accessToken: (r.access_token as string | null) ?? null,
    endAt: r.end_at as string,
    autoPause: r.auto_pause === 1,
    startedAt: r.started_at as string,
  };
}

export class SandboxTable {
  constructor(private readonly db: Database.Database) {}

  /** Oldest first. */
  list(): SandboxRecord[] {
    return (this.db.prepare("SELECT * FROM sandboxes ORDER BY started_at, id").all() as Row[]).map(sandboxFromRow);
  }

  get(id: string): SandboxRecord | undefined {
    const r = this.db.prepare("SELECT * FROM sandboxes WHERE id = ?").get(id) as Row | undefined;
    return r && sandboxFromRow(r);
  }

  insert(s: SandboxRecord): void {
    this.db
      .prepare("INSERT INTO sandboxes (id, vm, template, metadata, env_vars, access_token, end_at, auto_pause, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
      .run(s.id, s.vm, s.template, JSON.stringify(s.metadata), JSON.stringify(s.envVars), s.accessToken, s.endAt, s.autoPause ? 1 : 0, s.startedAt);
  }

  setEndAt(id: string, endAt: string): boolean {
    return this.db.prepare("UPDATE sandboxes SET end_at = ? WHERE id = ?").run(endAt, id).changes > 0;
  }

  delete(id: string): boolean {
    return this.db.prepare("DELETE FROM sandboxes WHERE id = ?").run(id).changes > 0;
  }

  /** The earliest expiry, if any sandbox exists. */
  nextEndAt(): string | undefined {
    return (this.db.prepare("SELECT MIN(end_at) AS at FROM sandboxes").get() as { at: string | null }).at ?? undefined;
  }
}
