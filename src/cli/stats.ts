// `banger vm stats`: what the dashboard shows for a VM (CPU %, memory used of total, disk,
// uptime), read from two samples of the daemon's vm.stats a second apart (the guest's CPU
// counters are cumulative). `--json` prints one raw sample, unchanged.
import type { Command } from "commander";
import { setTimeout as sleep } from "node:timers/promises";
import { cpuBusyPercent, cpuJiffies, memUsedBytes, type VmStats } from "../api/index.ts";
import { humanBytes, humanDuration } from "../util/human.ts";
import { validateName } from "../util/names.ts";
import { callDaemon } from "./daemon-client.ts";
import { printFields, printJson } from "./output.ts";

/** What the daemon's vm.stats answers. */
export type VmStatsReply = VmStats;

/** How long between the two samples CPU use is measured over. */
const CPU_WINDOW_MS = 1000;

function share(part: number, whole: number): string {
  return whole > 0 ? ` (${Math.round((100 * part) / whole)}%)` : "";
}

/** The human fields of a sample; `cpuPercent` is the share of all CPUs busy over the window (null: unknown). */
export function statsFields(s: VmStatsReply, cpuPercent: number | null): [string, unknown][] {
  const { memory, cpu, disk, load, uptimeSeconds } = s.guest;
  const memUsed = memUsedBytes(memory);
  const diskUsed = Math.max(0, disk.total - disk.free);
  const cpus = `${cpu.count} CPU${cpu.count === 1 ? "" : "s"}`;
  return [
    ["vm", s.name],
    ["uptime", humanDuration(uptimeSeconds)],
    ["cpu", cpuPercent === null ? `- of ${cpus}` : `${cpuPercent.toFixed(0)}% of ${cpus}`],
    ["memory", `${humanBytes(memUsed)} used of ${humanBytes(memory.total)}${share(memUsed, memory.total)}`],
    ["disk", `${humanBytes(diskUsed)} used of ${humanBytes(disk.total)}${share(diskUsed, disk.total)}, ${humanBytes(disk.available)} free on ${disk.path}`],
    ["load", load.length ? load.map((l) => l.toFixed(2)).join(" ") : null],
    ["vmm", `pid ${s.pid}${s.vmmRssBytes === null ? "" : `, ${humanBytes(s.vmmRssBytes)} resident`}`],
  ];
}

export function registerStats(vm: Command): void {
  vm.command("stats")
    .description("CPU (over one second), memory and disk use inside the VM, its uptime, and the VMM's own memory")
    .argument("<name>", "VM name", (v: string) => validateName("vm", v))
    .option("--json", "print one raw sample as JSON (bytes; CPU as cumulative jiffies)")
    .action(async (name: string, opts: { json?: boolean }) => {
      const first = await callDaemon("vm.stats", { name });
      if (opts.json) return printJson(first);
      await sleep(CPU_WINDOW_MS);
      const s = await callDaemon("vm.stats", { name });
      printFields(statsFields(s, cpuBusyPercent(cpuJiffies(first.guest.cpu), cpuJiffies(s.guest.cpu))));
    });
}
