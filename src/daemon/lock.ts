// One daemon per state root. The lock is an SQLite database held in EXCLUSIVE locking mode:
// SQLite takes a POSIX fcntl lock on it, which the kernel drops when the process dies,
// even by SIGKILL, so a crashed daemon never leaves a lock that needs manual removal.
// (Node has no flock(2); this gives the same guarantee with the driver we already ship.)
import Database from "better-sqlite3";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { BangerError, ErrorCode } from "../util/errors.ts";

export interface DaemonLock {
  release(): void;
}

export function acquireDaemonLock(lockFile: string, pidFile: string, root: string): DaemonLock {
  const db = new Database(lockFile, { timeout: 0 });
  try {
    db.pragma("locking_mode = EXCLUSIVE");
    db.pragma("journal_mode = MEMORY");
    // A write takes the exclusive lock, and EXCLUSIVE mode keeps it until close.
    db.exec("CREATE TABLE IF NOT EXISTS holder (pid INTEGER); DELETE FROM holder;");
    db.prepare("INSERT INTO holder (pid) VALUES (?)").run(process.pid);
  } catch (err) {
    db.close();
    if ((err as { code?: string }).code === "SQLITE_BUSY") {
      const other = readPid(pidFile);
      throw new BangerError(ErrorCode.AlreadyExists, `another bangerd${other ? ` (pid ${other})` : ""} is already running for ${root}`, "use `banger daemon status`, or `banger daemon stop` first");
    }
    throw err;
  }
  writeFileSync(pidFile, `${process.pid}\n`);
  return {
    release() {
      rmSync(pidFile, { force: true });
      db.close();
    },
  };
}

export function readPid(pidFile: string): number | undefined {
  try {
    const n = Number.parseInt(readFileSync(pidFile, "utf8").trim(), 10);
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}
