// Issue 4's clone number: `vm create` for a 256 MiB and a 4 GiB image (both built with
// `banger image build --preset busybox --size …`), once with --no-start (the disk clone
// and the record) and once in full (clone + boot + agent ready). Runs alternate between the
// sizes; medians; the ratio 4G/256M. Also the bytes each clone really allocated (du of
// <home>/vms/<name>/), which is what "clone is O(1)" means on disk.
// Target: ratio <= 1.1.
//
// Run: node --import tsx bench/vm-create-size.ts     (BENCH_RUNS=5 for --no-start,
// BENCH_BOOT_RUNS=3 for full creates)
import { join } from "node:path";
import { type BenchHome, MiB, benchHome, fmt, median, runBench, runChecked, showVm } from "./lib.ts";

const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const BOOT_RUNS = Number(process.env.BENCH_BOOT_RUNS ?? 3);
const SIZES = [
  { image: "bb256", size: "256M" },
  { image: "bb4g", size: "4G" },
] as const;

await runBench(async () => {
  console.log("preparing a state root (Debian cloud kernel + busybox image)...");
  const h = await benchHome({ bootable: true });
  for (const s of SIZES) {
    const r = await h.banger(["image", "build", "--preset", "busybox", "--name", s.image, "--size", s.size, "--kernel-ref", "debian-6.1-cloud"]);
    console.log(r.stdout.trim());
  }
  // Warm-up, untimed: the daemon's one-off KVM speed probe and the page cache.
  await h.banger(["vm", "create", "--name", "warm", "--image", "bb256"]);
  await h.banger(["vm", "rm", "-f", "warm"]);

  console.log(`\nvm create --no-start (disk clone + record), ${RUNS} runs each, alternating:`);
  const clone = await alternate(h, RUNS, ["--no-start"], true);
  console.log(`\nvm create (clone + boot + agent ready), ${BOOT_RUNS} runs each, alternating:`);
  const full = await alternate(h, BOOT_RUNS, [], false);

  console.log("");
  for (const [what, t] of [
    ["vm create --no-start", clone],
    ["vm create (full)", full],
  ] as const) {
    const ratio = median(t.bb4g) / median(t.bb256);
    console.log(`${what.padEnd(21)} median 256M ${fmt(median(t.bb256))}   4G ${fmt(median(t.bb4g))}   ratio ${ratio.toFixed(2)} (target <= 1.1) -> ${ratio <= 1.1 ? "met" : "NOT met"}`);
  }
});

type Times = { bb256: number[]; bb4g: number[] };

async function alternate(h: BenchHome, runs: number, flags: string[], reportDu: boolean): Promise<Times> {
  const times: Times = { bb256: [], bb4g: [] };
  for (let i = 0; i < runs; i++) {
    const line: string[] = [];
    for (const s of i % 2 ? [...SIZES].reverse() : SIZES) {
      const name = `${s.image}-${flags.length ? "ns" : "full"}${i}`;
      const ms = await h.time(["vm", "create", "--name", name, "--image", s.image, ...flags]);
      times[s.image].push(ms);
      let note = "";
      if (reportDu) {
        const vm = await showVm(h, name);
        note = ` (guest sees ${(vm.diskBytes / MiB).toFixed(0)} MiB, clone allocated ${await duKiB(join(h.home, "vms", name))} KiB)`;
      }
      line.push(`${s.size.padStart(4)} ${fmt(ms)}${note}`);
      await h.banger(["vm", "rm", "-f", name]);
    }
    console.log(`run ${i + 1}: ${line.join("   ")}`);
  }
  return times;
}

async function duKiB(dir: string): Promise<number> {
  return Number((await runChecked(["du", "-sk", dir])).split("\t")[0]);
}
