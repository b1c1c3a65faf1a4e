// The guest's serial console log, bounded. The VMM itself writes console.log (QEMU's file
// chardev with append=on, Firecracker's stdout), so it cannot be made a pipe we own without
// losing the console whenever the daemon is down; instead a size watcher, run for as long as
// the VMM lives and restarted when the daemon re-adopts it, copies the file's last
// CONSOLE_LOG_CAP bytes to console.log.1 and truncates console.log whenever it passes the
// cap. The VMM writes with O_APPEND, so it goes on at the new end. On disk a VM keeps at
// most 2 x CONSOLE_LOG_CAP plus what the guest writes in one check interval (and, while no
// daemon runs, whatever it writes until the next daemon adopts it: the first check caps it).
//
// Readers never load the whole file: readConsoleTail reads at most the bytes asked for.
import { open, rename, stat, truncate } from "node:fs/promises";
import { join } from "node:path";
import { CONSOLE_LOG, isAlive } from "./process.ts";

export const CONSOLE_LOG_CAP = 1024 * 1024;
const CHECK_INTERVAL_MS = 250;

export function consoleLogPath(runtimeDir: string): string {
  return join(runtimeDir, CONSOLE_LOG);
}

const rotatedPath = (path: string) => `${path}.1`;

/** Both files of a runtime dir's console log, to clear before a boot (the log holds the current boot only). */
export function consoleLogFiles(runtimeDir: string): string[] {
  const path = consoleLogPath(runtimeDir);
  return [path, rotatedPath(path)];
}

/** Reads `length` bytes at `position` (fewer at the end of the file). */
async function readRange(path: string, position: number, length: number): Promise<Buffer> {
  const fh = await open(path, "r");
  try {
    const buf = Buffer.alloc(Math.max(0, length));
    const { bytesRead } = await fh.read(buf, 0, buf.length, position);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

async function sizeOf(path: string): Promise<number> {
  return stat(path).then(
    (s) => s.size,
    () => 0,
  );
}

/** Rotates the log when it is over the cap: its last `cap` bytes become console.log.1, it restarts empty. */
export async function capConsoleLog(path: string, cap = CONSOLE_LOG_CAP): Promise<boolean> {
  const size = await sizeOf(path);
  if (size <= cap) return false;
  const tail = await readRange(path, size - cap, cap);
  const staged = `${rotatedPath(path)}.tmp`;
  const fh = await open(staged, "w", 0o600);
  try {
    await fh.writeFile(tail);
  } finally {
    await fh.close();
  }
  await rename(staged, rotatedPath(path));
  // Bytes the guest wrote since the read are dropped: the price of not owning the writer.
  await truncate(path, 0);
  return true;
}

const watched = new Map<string, { pid: number; timer: NodeJS.Timeout }>();

/**
 * Keeps `path` capped while `pid` lives (checked every 250 ms; at once for a log that grew
 * while nobody watched). One watcher per path, however many handles name it; a new VMM on
 * the same path (a restart) takes the watcher over.
 */
export function watchConsoleLog(path: string, pid: number, cap = CONSOLE_LOG_CAP): void {
  if (watched.get(path)?.pid === pid) return;
  unwatchConsoleLog(path);
  let busy = false;
  const check = async (): Promise<void> => {
    if (busy) return;
    busy = true;
    const alive = isAlive(pid);
    await capConsoleLog(path, cap).catch(() => undefined); // a missing or removed log: nothing to cap
    busy = false;
    if (!alive && watched.get(path)?.timer === timer) unwatchConsoleLog(path);
  };
  const timer = setInterval(() => void check(), CHECK_INTERVAL_MS);
  timer.unref();
  watched.set(path, { pid, timer });
  void check();
}

export function unwatchConsoleLog(path: string): void {
  clearInterval(watched.get(path)?.timer);
  watched.delete(path);
}

/**
 * The last `maxBytes` of the console: the end of console.log.1 then console.log. When the
 * cut falls inside a line, that partial line is dropped. `offset` is where console.log was
 * read up to (for following it).
 */
export async function readConsoleTail(path: string, maxBytes: number): Promise<{ data: Buffer; offset: number }> {
  const size = await sizeOf(path);
  const fromCurrent = Math.min(size, maxBytes);
  const current = fromCurrent > 0 ? await readRange(path, size - fromCurrent, fromCurrent) : Buffer.alloc(0);
  let older: Buffer = Buffer.alloc(0);
  const want = maxBytes - current.length;
  if (want > 0) {
    const rotated = rotatedPath(path);
    const rsize = await sizeOf(rotated);
    if (rsize > 0) older = await readRange(rotated, Math.max(0, rsize - want), Math.min(rsize, want));
  }
  let data: Buffer = Buffer.concat([older, current]);
  const wholeLog = current.length === size && older.length === (await sizeOf(rotatedPath(path)));
  if (!wholeLog) {
    const nl = data.indexOf(0x0a);
    if (nl >= 0 && nl < data.length - 1) data = data.subarray(nl + 1);
  }
  return { data, offset: size };
}

/**
 * Bytes appended to console.log since `offset` (at most `maxBytes`), and the new offset. A
 * rotation (the file got shorter) restarts at 0; a reader more than two caps behind (the log
 * grew while no daemon capped it) skips to the last cap.
 */
export async function readConsoleFrom(path: string, offset: number, maxBytes: number): Promise<{ data: Buffer; offset: number }> {
  const size = await sizeOf(path);
  let from = size < offset ? 0 : offset;
  if (size - from > 2 * CONSOLE_LOG_CAP) from = size - CONSOLE_LOG_CAP;
  if (size <= from) return { data: Buffer.alloc(0), offset: size };
  const data = await readRange(path, from, Math.min(size - from, maxBytes));
  return { data, offset: from + data.length };
}
