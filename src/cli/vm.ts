// `banger vm ...`: VM lifecycle commands.
import type { Command } from "commander";
import type { VmRecord } from "../store/index.ts";
import { validateName } from "../util/names.ts";
import { callDaemon } from "./daemon-client.ts";
import { age, printFields, printJson, printTable } from "./output.ts";

export function registerVm(program: Command): void {
  const vm = program.command("vm").description("create, run and manage microVMs");

  vm.command("ls")
    .alias("list")
    .description("list VMs")
    .option("--json", "print JSON")
    .action(async (opts: { json?: boolean }) => {
      const vms = await callDaemon<VmRecord[]>("vm.list");
      if (opts.json) return printJson(vms);
      if (vms.length === 0) {
        process.stdout.write("no VMs (create one with `banger vm run` or `banger vm create`)\n");
        return;
      }
      printTable(
        ["NAME", "STATE", "IMAGE", "KERNEL", "VMM", "CPUS", "MEMORY", "IP", "AGE"],
        vms.map((v) => [v.name, v.state, v.image, v.kernel, v.vmm, v.cpus, `${v.memoryMib} MiB`, v.ip, age(v.createdAt)]),
      );
    });

  vm.command("show")
    .description("show one VM")
    .argument("<name>", "VM name", (v: string) => validateName("vm", v))
    .option("--json", "print JSON")
    .action(async (name: string, opts: { json?: boolean }) => {
      const v = await callDaemon<VmRecord>("vm.show", { name });
      if (opts.json) return printJson(v);
      printFields([
        ["name", v.name],
        ["state", v.error ? `${v.state} (${v.error})` : v.state],
        ["image", v.image],
        ["kernel", v.kernel],
        ["vmm", v.vmm],
        ["cpus", v.cpus],
        ["memory", `${v.memoryMib} MiB`],
        ["ip", v.ip],
        ["pid", v.pid],
        ["created", v.createdAt],
        ["started", v.startedAt],
      ]);
    });
}
