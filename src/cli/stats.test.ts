// `vm stats` human fields: the same numbers the dashboard shows (memory used = total less
// available, CPU busy between two samples), in human units.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { cpuBusyPercent, cpuJiffies } from "../api/index.ts";
import { statsFields, type VmStatsReply } from "./stats.ts";

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;

function sample(cpu: Partial<VmStatsReply["guest"]["cpu"]>): VmStatsReply {
  return {
    name: "dev",
    pid: 4242,
    vmmRssBytes: 300 * MiB,
    guest: {
      memory: { total: 2 * GiB, free: GiB, available: 1.5 * GiB, buffers: 0, cached: 0, swapTotal: 0, swapFree: 0 },
      cpu: { count: 2, user: 0, nice: 0, system: 0, idle: 0, iowait: 0, irq: 0, softirq: 0, steal: 0, ...cpu },
      disk: { path: "/", total: 4 * GiB, free: 3 * GiB, available: 2.5 * GiB },
      load: [0.5, 0.25, 0],
      uptimeSeconds: 3725.8,
    },
  };
}

describe("vm stats", () => {
  it("measures CPU between two samples: 50 busy jiffies of 200 is 25%", () => {
    const a = sample({ user: 100, system: 50, idle: 1000, iowait: 50 });
    const b = sample({ user: 130, system: 70, idle: 1140, iowait: 60 });
    assert.equal(cpuBusyPercent(cpuJiffies(a.guest.cpu), cpuJiffies(b.guest.cpu)), 25);
    assert.equal(cpuBusyPercent(cpuJiffies(b.guest.cpu), cpuJiffies(b.guest.cpu)), null, "no time passed: unknown, not 0%");
  });

  it("prints CPU %, memory and disk used of total, uptime and the VMM in human units", () => {
    const fields = Object.fromEntries(statsFields(sample({}), 25));
    assert.deepEqual(fields, {
      vm: "dev",
      uptime: "1h 2m",
      cpu: "25% of 2 CPUs",
      memory: "512 MiB used of 2.0 GiB (25%)",
      disk: "1.0 GiB used of 4.0 GiB (25%), 2.5 GiB free on /",
      load: "0.50 0.25 0.00",
      vmm: "pid 4242, 300 MiB resident",
    });
    assert.equal(Object.fromEntries(statsFields(sample({ count: 1 }), null)).cpu, "- of 1 CPU");
  });
});
