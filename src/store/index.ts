// Package store is banger's state in SQLite (WAL): kernels, images, vms, snapshots
// (snapshots.ts), sessions, operations, warm pools (pools.ts), the E2B API's sandboxes (sandboxes.ts) and daemon-wide settings, with numbered migrations applied when the daemon opens it.
//
// Only the daemon opens the store. Every write is one transaction, so a daemon killed
// mid-write leaves the previous consistent state. The store records what exists; the files
// (disks, kernels, sockets) belong to the modules that make them.
import Database from "better-sqlite3";
import { normalizeArch } from "../util/arch.ts";
import { MIGRATIONS } from "./migrations.ts";
import { SnapshotTable } from "./snapshots.ts";

export type { SnapshotRecord, SnapshotWorkspace } from "./snapshots.ts";
import { PoolTable } from "./pools.ts";

export type { PoolRecord, PoolSpec } from "./pools.ts";
import { SandboxTable } from "./sandboxes.ts";

export type { SandboxRecord } from "./sandboxes.ts";
import {
  type KernelRecord,
  type ImageRecord,
  type VmRecord,
  type SessionRecord,
  type OperationRecord,
  type OperationState,
  type NewVm,
  type Row,
  kernelFromRow,
  imageFromRow,
  vmFromRow,
  sessionFromRow,
  operationFromRow,
  mibFromBytes,
  now,
} from "./records.ts";

export type { KernelRecord, ImageRecord, MachineSpec, VmRecord, SessionRecord, OperationRecord, OperationState, VmState, SessionState, VmNetPolicy } from "./records.ts";
export { machineOf, sameMachine } from "./records.ts";

export class Store {
  readonly db: Database.Database;
  readonly snapshots: SnapshotTable;
  /** Warm pools and their members (pools.ts). */
  readonly pools: PoolTable;
  /** The E2B-compatible API's sandboxes (sandboxes.ts). */
  readonly sandboxes: SandboxTable;

  constructor(path: string) {
    this.db = new Database(path);
    this.db.pragma("journal_mode = WAL");
    // NORMAL is crash-safe in WAL mode against a killed process; only power loss can lose
    // the last transactions, never corrupt the file.
    this.db.pragma("synchronous = NORMAL");
    this.db.pragma("foreign_keys = ON");
    this.db.pragma("busy_timeout = 5000");
    this.migrate();
    this.snapshots = new SnapshotTable(this.db);
    this.pools = new PoolTable(this.db, (r) => vmFromRow(r));
    this.sandboxes = new SandboxTable(this.db);
  }

  /** Applies the migrations the file has not seen yet, each in its own transaction. */
  private migrate(): void {
    const current = this.db.pragma("user_version", { simple: true }) as number;
    if (current > MIGRATIONS.length) {
      throw new Error(`the store is from a newer banger (schema ${current}, this one knows ${MIGRATIONS.length}); upgrade banger`);
    }
    if (current === MIGRATIONS.length) return;
    // A migration may rebuild a table others reference (SQLite's way to change a CHECK):
    // with foreign keys on, its DROP would cascade. The pragma is a no-op inside a
    // transaction, so it is switched here, and each migration proves the keys still hold.
    this.db.pragma("foreign_keys = OFF");
    try {
      for (let v = current; v < MIGRATIONS.length; v++) {
        this.db.transaction(() => {
          this.db.exec(MIGRATIONS[v]!);
          const broken = this.db.pragma("foreign_key_check") as unknown[];
          if (broken.length > 0) throw new Error(`migration ${v + 1} broke ${broken.length} foreign key(s)`);
          this.db.pragma(`user_version = ${v + 1}`);
        })();
      }
    } finally {
      this.db.pragma("foreign_keys = ON");
    }
  }

  get schemaVersion(): number {
    return this.db.pragma("user_version", { simple: true }) as number;
  }

  close(): void {
    this.db.close();
  }

  /** Runs fn in one transaction: all of its writes land, or none. */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  // --- kernels ---
  listKernels(): KernelRecord[] {
    return (this.db.prepare("SELECT * FROM kernels ORDER BY name").all() as Row[]).map(kernelFromRow);
  }
  getKernel(name: string): KernelRecord | undefined {
    const r = this.db.prepare("SELECT * FROM kernels WHERE name = ?").get(name) as Row | undefined;
    return r && kernelFromRow(r);
  }
  putKernel(k: Omit<KernelRecord, "createdAt"> & { createdAt?: string }): void {
    this.db
      .prepare(
        `INSERT INTO kernels (name, source, kernel_version, distro, arch, vmlinux_sha256, has_initrd, modules, size_bytes, created_at)
         VALUES (@name, @source, @kernelVersion, @distro, @arch, @vmlinuxSha256, @hasInitrd, @modules, @sizeBytes, @createdAt)
         ON CONFLICT(name) DO UPDATE SET source=excluded.source, kernel_version=excluded.kernel_version, distro=excluded.distro,
           arch=excluded.arch, vmlinux_sha256=excluded.vmlinux_sha256, has_initrd=excluded.has_initrd, modules=excluded.modules,
           size_bytes=excluded.size_bytes, created_at=excluded.created_at`,
      )
      .run({ ...k, arch: normalizeArch(k.arch), hasInitrd: k.hasInitrd ? 1 : 0, modules: JSON.stringify(k.modules), createdAt: k.createdAt ?? now() });
  }
  deleteKernel(name: string): boolean {
    return this.db.prepare("DELETE FROM kernels WHERE name = ?").run(name).changes > 0;
  }

  // --- images ---
  listImages(): ImageRecord[] {
    return (this.db.prepare("SELECT * FROM images ORDER BY name").all() as Row[]).map(imageFromRow);
  }
  getImage(name: string): ImageRecord | undefined {
    const r = this.db.prepare("SELECT * FROM images WHERE name = ?").get(name) as Row | undefined;
    return r && imageFromRow(r);
  }
  putImage(i: Omit<ImageRecord, "createdAt"> & { createdAt?: string }): void {
    this.db
      .prepare(
        `INSERT INTO images (name, source, digest, kernel_ref, distro, arch, size_bytes, config, created_at)
         VALUES (@name, @source, @digest, @kernelRef, @distro, @arch, @sizeBytes, @config, @createdAt)
         ON CONFLICT(name) DO UPDATE SET source=excluded.source, digest=excluded.digest, kernel_ref=excluded.kernel_ref,
           distro=excluded.distro, arch=excluded.arch, size_bytes=excluded.size_bytes, config=excluded.config, created_at=excluded.created_at`,
      )
      .run({ ...i, arch: normalizeArch(i.arch), config: JSON.stringify(i.config), createdAt: i.createdAt ?? now() });
  }
  deleteImage(name: string): boolean {
    return this.db.prepare("DELETE FROM images WHERE name = ?").run(name).changes > 0;
  }

  // --- vms ---
  listVms(): VmRecord[] {
    return (this.db.prepare("SELECT * FROM vms ORDER BY created_at, name").all() as Row[]).map(vmFromRow);
  }
  getVm(name: string): VmRecord | undefined {
    const r = this.db.prepare("SELECT * FROM vms WHERE name = ?").get(name) as Row | undefined;
    return r && vmFromRow(r);
  }
  /** The VM holding a tap whose address is `ip` (the guests' DNS asks this per query, so one row rather than the whole table). */
  vmOnTap(ip: string): VmRecord | undefined {
    const r = this.db.prepare("SELECT * FROM vms WHERE ip = ? AND tap IS NOT NULL ORDER BY created_at, name LIMIT 1").get(ip) as Row | undefined;
    return r && vmFromRow(r);
  }
  /** The VM with an address whose name, ASCII-lowercased, is `lowerName` (`<name>.vm` lookups). */
  vmWithAddressNamed(lowerName: string): VmRecord | undefined {
    const r = this.db.prepare("SELECT * FROM vms WHERE lower(name) = ? AND ip IS NOT NULL ORDER BY created_at, name LIMIT 1").get(lowerName) as Row | undefined;
    return r && vmFromRow(r);
  }
  vmsUsingImage(image: string): string[] {
    return (this.db.prepare("SELECT name FROM vms WHERE image = ? ORDER BY name").all(image) as Row[]).map((r) => r.name as string);
  }
  vmsUsingKernel(kernel: string): string[] {
    return (this.db.prepare("SELECT name FROM vms WHERE kernel = ? ORDER BY name").all(kernel) as Row[]).map((r) => r.name as string);
  }
  insertVm(v: NewVm): void {
    this.db
      .prepare(
        `INSERT INTO vms (name, id, state, image, kernel, vmm, cpus, memory_mib, disk_bytes, pid, ip, error, config, created_at, net, net_peer, snapshot, pool)
         VALUES (@name, @id, @state, @image, @kernel, @vmm, @cpus, @memoryMib, @diskBytes, @pid, @ip, @error, @config, @createdAt, @net, @netPeer, @snapshot, @pool)`,
      )
      .run({
        snapshot: null,
        pool: null,
        ...v,
        memoryMib: mibFromBytes(v.memoryBytes),
        config: JSON.stringify(v.config),
        createdAt: v.createdAt ?? now(),
        net: v.net ?? "full",
        netPeer: v.netPeer ? 1 : 0,
      });
  }
  /** Updates the given fields of one VM; returns false when it does not exist. */
  updateVm(name: string, fields: Partial<Pick<VmRecord, "state" | "cpus" | "memoryBytes" | "diskBytes" | "pid" | "ip" | "error" | "config" | "startedAt" | "tap" | "stateReason">>): boolean {
    const columns: Record<string, string> = {
      state: "state",
      cpus: "cpus",
      memoryBytes: "memory_mib",
      diskBytes: "disk_bytes",
      pid: "pid",
      ip: "ip",
      error: "error",
      config: "config",
      startedAt: "started_at",
      tap: "tap",
      stateReason: "state_reason",
    };
    const sets: string[] = [];
    const values: Record<string, unknown> = { name };
    for (const [key, value] of Object.entries(fields)) {
      const col = columns[key];
      if (!col || value === undefined) continue;
      sets.push(`${col} = @${key}`);
      values[key] = key === "config" ? JSON.stringify(value) : key === "memoryBytes" ? mibFromBytes(value as number) : value;
    }
    if (sets.length === 0) return this.getVm(name) !== undefined;
    return this.db.prepare(`UPDATE vms SET ${sets.join(", ")} WHERE name = @name`).run(values).changes > 0;
  }
  deleteVm(name: string): boolean {
    return this.db.prepare("DELETE FROM vms WHERE name = ?").run(name).changes > 0;
  }

  // --- settings (daemon-wide state such as the bridge subnet) ---
  getSetting(key: string): string | undefined {
    const r = this.db.prepare("SELECT value FROM settings WHERE key = ?").get(key) as Row | undefined;
    return r?.value as string | undefined;
  }
  setSetting(key: string, value: string): void {
    this.db.prepare("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value").run(key, value);
  }
  deleteSetting(key: string): void {
    this.db.prepare("DELETE FROM settings WHERE key = ?").run(key);
  }

  // --- sessions ---
  listSessions(vm?: string): SessionRecord[] {
    const rows =
      vm === undefined
        ? (this.db.prepare("SELECT * FROM sessions ORDER BY vm, created_at").all() as Row[])
        : (this.db.prepare("SELECT * FROM sessions WHERE vm = ? ORDER BY created_at").all(vm) as Row[]);
    return rows.map(sessionFromRow);
  }
  putSession(s: Omit<SessionRecord, "createdAt"> & { createdAt?: string }): void {
    this.db
      .prepare(
        `INSERT INTO sessions (vm, name, command, state, exit_code, created_at) VALUES (@vm, @name, @command, @state, @exitCode, @createdAt)
         ON CONFLICT(vm, name) DO UPDATE SET command=excluded.command, state=excluded.state, exit_code=excluded.exit_code`,
      )
      .run({ ...s, createdAt: s.createdAt ?? now() });
  }
  deleteSession(vm: string, name: string): boolean {
    return this.db.prepare("DELETE FROM sessions WHERE vm = ? AND name = ?").run(vm, name).changes > 0;
  }

  // --- operations ---
  startOperation(kind: string, target: string): number {
    const r = this.db.prepare("INSERT INTO operations (kind, target, state, started_at) VALUES (?, ?, 'running', ?)").run(kind, target, now());
    return Number(r.lastInsertRowid);
  }
  finishOperation(id: number, state: Exclude<OperationState, "running">, error?: string): void {
    this.db.prepare("UPDATE operations SET state = ?, error = ?, finished_at = ? WHERE id = ?").run(state, error ?? null, now(), id);
  }
  listOperations(limit = 50): OperationRecord[] {
    return (this.db.prepare("SELECT * FROM operations ORDER BY id DESC LIMIT ?").all(limit) as Row[]).map(operationFromRow);
  }
  /** Operations a previous daemon left running can never finish: mark them failed. */
  failInterruptedOperations(): number {
    return this.db.prepare("UPDATE operations SET state = 'failed', error = 'interrupted: the daemon stopped', finished_at = ? WHERE state = 'running'").run(now()).changes;
  }
}

export function openStore(path: string): Store {
  return new Store(path);
}
