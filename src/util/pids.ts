// Whether a process runs: one check for the daemon (VMMs it watches, a daemon it replaces, the
// start-up sweep) and doctor. A SIGKILLed process whose parent never reaps it stays a zombie,
// which kill(pid, 0) still reaches: it counts as gone.
import { readFileSync } from "node:fs";

/** Alive and not a zombie (a zombie has exited; its parent just has not reaped it). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
  return !isZombie(pid);
}

function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state === "Z" || state === "X";
  } catch {
    return false;
  }
}
