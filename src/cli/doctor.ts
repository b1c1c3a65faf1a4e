// `banger doctor`: runs locally, without the daemon, so it works before anything else does.
import { mkdirSync } from "node:fs";
import type { Command } from "commander";
import { effectiveValue, resolvePaths } from "../config/index.ts";
import { runDoctor } from "../doctor/index.ts";
import { printJson } from "./output.ts";

const MARK = { pass: "ok  ", warn: "warn", fail: "FAIL" } as const;

export function registerDoctor(program: Command): void {
  program
    .command("doctor")
    .description("check this host for everything banger uses; exit 1 when a VM cannot boot here")
    .option("--json", "print JSON")
    .action(async (opts: { json?: boolean }) => {
      const paths = resolvePaths();
      // The probes live with the modules that use them; loaded only for doctor.
      const [{ probeKvm }, { chooseCloneStrategy }, { agentBinary }, { chooseVmm }] = await Promise.all([
        import("../host/index.ts"),
        import("../disk/index.ts"),
        import("../guest/index.ts"),
        import("../vmm/index.ts"),
      ]);
      const report = await runDoctor(paths, {
        // The choice a daemon started from this environment makes for a new VM.
        vmm: (config) => chooseVmm(effectiveValue(config, "vmm")),
        kvmSpeed: async () => {
          const probe = await probeKvm({ cacheDir: paths.hostCacheDir });
          return { fast: probe.fast, detail: probe.fast ? `fast (${probe.detail})` : `slow or unusable: ${probe.detail}; VMs use QEMU TCG` };
        },
        cloneStrategy: async (dir, vmm) => {
          mkdirSync(dir, { recursive: true, mode: 0o700 });
          const choice = await chooseCloneStrategy(vmm, dir);
          return { strategy: choice.strategy, detail: choice.reason };
        },
        agentBinary: () => {
          try {
            return agentBinary();
          } catch {
            return undefined;
          }
        },
      });
      if (opts.json) printJson(report);
      else {
        const width = Math.max(...report.checks.map((c) => c.name.length));
        for (const c of report.checks) {
          process.stdout.write(`${MARK[c.status]}  ${c.name.padEnd(width)}  ${c.detail}\n`);
          if (c.fix && c.status !== "pass") process.stdout.write(`${" ".repeat(width + 8)}fix: ${c.fix}\n`);
        }
        const firstVm = report.checks.find((c) => c.name === "first-vm");
        const next = firstVm?.status === "warn" && firstVm.fix ? `; for a first VM: ${firstVm.fix}` : "";
        process.stdout.write(report.canBoot ? `\nthis host can boot banger VMs${next}\n` : "\nthis host cannot boot banger VMs yet: fix the FAIL lines above\n");
      }
      if (!report.canBoot) process.exitCode = 1;
    });
}
