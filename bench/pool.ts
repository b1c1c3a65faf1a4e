// Issue 16's pool number: `banger vm run --no-workspace -- true` taking a ready VM from a
// warm pool, against the same command booting one cold, side by side in one run (the
// daemon already up). Each round: the pool emptied (nothing boots in the background) and a
// cold run timed; then the pool set to 1 and waited on until its VM is ready, and a warm run
// timed (the pool's refill starts during it, as it would for a user). Medians and the ratio.
// Target: warm <= 0.2x cold.
//
// Run: node --import tsx bench/pool.ts   (BENCH_RUNS=5)
import { setTimeout as sleep } from "node:timers/promises";
import type { PoolList } from "../src/api/index.ts";
import { type BenchHome, benchHome, fmt, median, runBench, since } from "./lib.ts";

const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const TARGET_RATIO = 0.2;
const RUN = ["vm", "run", "--timings", "--image", "busybox", "--no-workspace", "--", "true"];

/** One timed `vm run`: wall time, and the phases the CLI reports (--timings). */
async function timedRun(h: BenchHome): Promise<{ ms: number; phases: string }> {
  const t = process.hrtime.bigint();
  const r = await h.banger(RUN);
  const ms = since(t);
  return { ms, phases: /timings: (.*)/.exec(r.stderr)?.[1] ?? "" };
}

async function waitReady(h: BenchHome): Promise<void> {
  const deadline = Date.now() + 300_000;
  for (;;) {
    const list = JSON.parse((await h.banger(["pool", "ls", "--json"])).stdout) as PoolList;
    const p = list.pools.find((x) => x.image === "busybox");
    if (p && p.ready >= 1 && p.warming === 0) return;
    if (p?.lastError) throw new Error(`the pool failed to warm: ${p.lastError}`);
    if (Date.now() > deadline) throw new Error("the pool was not ready within 300 s");
    await sleep(200);
  }
}

await runBench(async () => {
  console.log("preparing a state root (Debian cloud kernel + busybox image)...");
  const h = await benchHome({ bootable: true });
  // Warm-up, untimed: starts the daemon and warms the page cache.
  await h.banger(RUN);

  const cold: number[] = [];
  const warm: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    await h.banger(["pool", "set", "busybox", "--size", "0"]);
    const c = await timedRun(h);
    cold.push(c.ms);
    await h.banger(["pool", "set", "busybox", "--size", "1"]);
    await waitReady(h);
    const w = await timedRun(h);
    warm.push(w.ms);
    console.log(`run ${i + 1}: cold ${fmt(c.ms)} (${c.phases})\n       warm ${fmt(w.ms)} (${w.phases})`);
  }
  await h.banger(["pool", "set", "busybox", "--size", "0"]);

  const ratio = median(warm) / median(cold);
  console.log(`\nvm run -- true (busybox, 1 cpu, 512 MiB, no workspace), ${RUNS} runs each, medians:`);
  console.log(`  cold (boots a VM)     ${fmt(median(cold))}   (${cold.map((x) => x.toFixed(0)).join(", ")})`);
  console.log(`  warm (from the pool)  ${fmt(median(warm))}   (${warm.map((x) => x.toFixed(0)).join(", ")})`);
  console.log(`  ratio warm/cold: ${ratio.toFixed(3)}x (target <= ${TARGET_RATIO}x): ${ratio <= TARGET_RATIO ? "met" : "NOT met"}`);
});
