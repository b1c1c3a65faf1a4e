// What a guest's raw stats mean to a person: memory in use, the share of the CPUs busy
// between two samples. The dashboard's live list and `banger vm stats` both read them here
// (pure functions over the wire's GuestStats: client-side, so they live in the contract).
import type { GuestStats } from "./vm.ts";

/** Memory in use: total less what the kernel could hand out now (MemAvailable), as `free` shows. */
export function memUsedBytes(memory: Pick<GuestStats["memory"], "total" | "available">): number {
  return Math.max(0, memory.total - memory.available);
}

/** Busy and total jiffies of a cumulative CPU sample; idle counts iowait. */
export function cpuJiffies(cpu: GuestStats["cpu"]): { busy: number; total: number } {
  const idle = cpu.idle + cpu.iowait;
  const total = idle + cpu.user + cpu.nice + cpu.system + cpu.irq + cpu.softirq + cpu.steal;
  return { busy: total - idle, total };
}

/**
 * Share of all the guest's CPUs busy between two samples, 0-100 with one decimal; null when
 * the counters did not move (the same sample twice, or a guest rebooted in between).
 */
export function cpuBusyPercent(prev: { busy: number; total: number }, cur: { busy: number; total: number }): number | null {
  if (cur.total <= prev.total) return null;
  return Math.round((1000 * Math.max(0, cur.busy - prev.busy)) / (cur.total - prev.total)) / 10;
}
