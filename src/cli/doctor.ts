// `banger doctor`: runs locally, without the daemon, so it works before anything else does.
import type { Command } from "commander";
import { resolvePaths } from "../config/index.ts";
import { hostProbes, runDoctor } from "../doctor/index.ts";
import { printJson } from "./output.ts";

const MARK = { pass: "ok  ", warn: "warn", fail: "FAIL" } as const;

export function registerDoctor(program: Command): void {
  program
    .command("doctor")
    .description("check this host for everything banger uses; exit 1 when a VM cannot boot here")
    .option("--json", "print JSON")
    .action(async (opts: { json?: boolean }) => {
      const paths = resolvePaths();
      // The probes live with the modules that use them (doctor/probes.ts); loaded only for doctor.
      const report = await runDoctor(paths, await hostProbes(paths));
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
