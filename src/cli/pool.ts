// `banger pool set|ls`: warm pools, VMs booted ahead per image that `vm run` and `vm create`
// take when they ask for what the pool holds (image, kernel, cpus, memory, net).
import type { Command } from "commander";
import type { PoolView } from "../api/index.ts";
import { humanBytes } from "../util/human.ts";
import { validateName } from "../util/names.ts";
import { parseCount, parseMemory } from "./args.ts";
import { callDaemon } from "./daemon-client.ts";
import { addNetOptions, netParams } from "./net.ts";
import { printJson, printTable } from "./output.ts";

function specText(p: PoolView): string {
  const s = p.spec;
  return `${s.cpus} cpu, ${humanBytes(s.memoryBytes)}, net ${s.net}${s.netPeer ? " (peer)" : ""}${s.kernel ? `, kernel ${s.kernel}` : ""}`;
}

export function registerPool(program: Command): void {
  const pool = program.command("pool").description("warm pools: VMs booted ahead that `vm run` and `vm create` take at once");

  addNetOptions(pool.command("set"))
    .description("keep N VMs of an image booted and ready (0 empties the pool); a create asking for the same spec takes one")
    .argument("<image>", "image", (v: string) => validateName("image", v))
    .requiredOption("--size <n>", "how many ready VMs to keep (0: none)", parseCount("--size", 0, 32))
    .option("--cpus <n>", "virtual CPUs of each (default: 1, as vm create)", parseCount("--cpus", 1, 64))
    .option("--memory <size>", "memory of each, e.g. 512M (default: 512M, as vm create)", parseMemory)
    .option("--kernel <kernel>", "kernel (default: the image's, as vm create)")
    .option("--json", "print JSON")
    .action(async (image: string, opts: { size: number; cpus?: number; memory?: number; kernel?: string; net?: string; netPeer?: boolean; json?: boolean }) => {
      const p = await callDaemon("pool.set", { image, size: opts.size, cpus: opts.cpus, memoryBytes: opts.memory, kernel: opts.kernel, ...netParams(opts) });
      if (opts.json) return printJson(p);
      if (p.size === 0) return void process.stdout.write(`pool ${p.image} emptied\n`);
      process.stdout.write(`pool ${p.image}: ${p.size} VM(s) of ${specText(p)}; ${p.ready} ready, ${p.warming} warming (see banger pool ls)\n`);
    });

  pool
    .command("ls")
    .alias("list")
    .description("list warm pools: ready and warming VMs per image, and the memory they hold")
    .option("--json", "print JSON")
    .action(async (opts: { json?: boolean }) => {
      const list = await callDaemon("pool.list");
      if (opts.json) return printJson(list);
      if (list.pools.length === 0) process.stdout.write("no pools (keep two VMs ready: banger pool set IMAGE --size 2)\n");
      else
        printTable(
          ["IMAGE", "SIZE", "READY", "WARMING", "EACH", "HELD", "LAST ERROR"],
          list.pools.map((p) => [p.image, p.size, p.ready, p.warming, specText(p), humanBytes(p.memoryBytes), p.lastError]),
        );
      process.stdout.write(`memory held: ${humanBytes(list.memoryBytes)} of ${humanBytes(list.maxMemoryBytes)} (pool.max_memory)\n`);
    });
}
