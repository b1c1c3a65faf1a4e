// Issue 8's tap-pool number: `banger vm create` of a networked busybox VM with the tap pool
// (BANGER_TAP_POOL=2, the default) against without it (BANGER_TAP_POOL=0: each boot
// creates its tap). The daemon runs inside a network namespace this bench creates and
// removes (the host's network is never touched). Besides the wall time of `vm create`
// (dominated by the TCG boot), it reads the daemon's own measurement of the network step
// ("vm network attached": tapMs = getting a tap, attachMs = tap + nftables update), which
// is what the pool takes off the critical path.
//
// Run: node --import tsx bench/net-tap-pool.ts        (BENCH_RUNS=5)
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { NetnsLab } from "../test/kits/netns.ts";
import { REPO, prepareBootableHome, stopDaemon, type CliResult } from "../test/helpers.ts";
import { benchHome, fmt, median, onCleanup, runBench, since } from "./lib.ts";

const RUNS = Number(process.env.BENCH_RUNS ?? 5);

await runBench(async () => {
  console.log("preparing a state root (Debian cloud kernel + busybox image)...");
  const h = await benchHome();
  const env = (await prepareBootableHome(h.home)).env;
  await stopDaemon(h.home); // the next daemon starts inside the namespace
  const lab = new NetnsLab();
  onCleanup(() => lab.cleanup());
  const ns = await lab.add("bench");
  onCleanup(async () => {
    await stopDaemon(h.home);
  });

  const banger = (args: string[], pool: number) =>
    new Promise<CliResult>((resolve, reject) => {
      const child = spawn("ip", ["netns", "exec", ns, join(REPO, "bin/banger"), ...args], {
        env: { ...process.env, ...env, BANGER_HOME: h.home, BANGER_NETWORK: "on", BANGER_TAP_POOL: String(pool) },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (b) => (stdout += b));
      child.stderr.on("data", (b) => (stderr += b));
      child.on("error", reject);
      child.on("close", (code) => (code === 0 ? resolve({ code, stdout, stderr }) : reject(new Error(`banger ${args.join(" ")}: ${stderr.trim()}`))));
    });

  const results: Record<string, { create: number[]; tap: number[]; attach: number[] }> = {};
  for (const pool of [2, 0]) {
    const label = pool === 0 ? "no pool (BANGER_TAP_POOL=0)" : `pool of ${pool}`;
    const r = (results[label] = { create: [] as number[], tap: [] as number[], attach: [] as number[] });
    // Warm-up, untimed: starts the daemon with this pool size and brings the network up.
    await banger(["vm", "create", "--name", "warm", "--image", "busybox", "--memory", "256M"], pool);
    await banger(["vm", "rm", "-f", "warm"], pool);
    for (let i = 0; i < RUNS; i++) {
      const t = process.hrtime.bigint();
      await banger(["vm", "create", "--name", `b${i}`, "--image", "busybox", "--memory", "256M"], pool);
      r.create.push(since(t));
      const attached = lastAttach(h.home, `b${i}`);
      r.tap.push(attached.tapMs);
      r.attach.push(attached.attachMs);
      await banger(["vm", "rm", "-f", `b${i}`], pool);
      console.log(`${label} run ${i + 1}: vm create ${fmt(r.create[i]!)}, tap ${attached.tapMs.toFixed(2)} ms, tap + nft ${attached.attachMs.toFixed(2)} ms`);
    }
    await banger(["daemon", "stop", "--cleanup-network"], pool);
  }
  console.log("\nmedians:");
  for (const [label, r] of Object.entries(results)) {
    console.log(`  ${label.padEnd(28)} vm create ${fmt(median(r.create))}   tap ${median(r.tap).toFixed(2).padStart(7)} ms   tap + nft ${median(r.attach).toFixed(2).padStart(7)} ms`);
  }
});

/** The daemon's "vm network attached" log line for this VM (the last one). */
function lastAttach(home: string, vm: string): { tapMs: number; attachMs: number } {
  const lines = readFileSync(join(home, "logs", "bangerd.log"), "utf8")
    .split("\n")
    .filter((l) => l.includes("vm network attached"));
  for (const line of lines.reverse()) {
    const rec = JSON.parse(line) as { vm?: string; tapMs?: number; attachMs?: number; fields?: { vm?: string; tapMs?: number; attachMs?: number } };
    const f = rec.fields ?? rec;
    if (f.vm === vm) return { tapMs: f.tapMs ?? NaN, attachMs: f.attachMs ?? NaN };
  }
  throw new Error(`no "vm network attached" line for ${vm} in the daemon log`);
}
