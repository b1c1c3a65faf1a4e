// Issue 7's number: a cold first `banger vm run` (empty BANGER_HOME; apt's and the
// debootstrap caches as the host has them) to the first command's output, broken into phases:
// the defaults (kernel from Debian's package, image from the preset), VM create, command,
// teardown. Run: node --import tsx bench/first-run.ts   (BENCH_RUNS=3)
import { benchHome, median, runBench } from "./lib.ts";

const RUNS = Number(process.env.BENCH_RUNS ?? 3);

/** "phase done (1.2s)" lines from banger's progress output, in order. */
function progressPhases(stderr: string): [string, number][] {
  return [...stderr.matchAll(/^(\S+) done \((\d+\.\d+)s\)$/gm)].map((m) => [m[1]!, Number(m[2]) * 1000]);
}

/** "timings: create 1.50s, workspace ..." from `vm run --timings`. */
function runPhases(stderr: string): [string, number][] {
  const line = /^timings: (.*)$/m.exec(stderr)?.[1] ?? "";
  return line
    .split(", ")
    .map((p) => p.split(" "))
    .map(([k, v]) => [k!, Number.parseFloat(v!) * 1000]);
}

await runBench(async () => {
  const samples = new Map<string, number[]>();
  const add = (k: string, ms: number) => samples.set(k, [...(samples.get(k) ?? []), ms]);
  for (let i = 0; i < RUNS; i++) {
    const h = await benchHome();
    const started = process.hrtime.bigint();
    const r = await h.banger(["vm", "run", "--yes", "--no-workspace", "--timings", "--", "echo", "ok"], { timeoutMs: 600_000 });
    const total = Number(process.hrtime.bigint() - started) / 1e6;
    if (r.stdout !== "ok\n") throw new Error(`unexpected output: ${JSON.stringify(r.stdout)}`);
    add("total (to exit)", total);
    for (const [k, ms] of runPhases(r.stderr)) add(`run: ${k}`, ms);
    for (const [k, ms] of progressPhases(r.stderr)) add(`  step: ${k}`, ms);
    console.error(`run ${i + 1}/${RUNS}: ${(total / 1000).toFixed(1)} s`);
  }
  console.log(`cold first \`banger vm run --yes -- echo ok\` on an empty BANGER_HOME, ${RUNS} runs (median, ms):`);
  for (const [k, xs] of samples) console.log(`${k.padEnd(24)} ${median(xs).toFixed(0).padStart(7)}   (min ${Math.min(...xs).toFixed(0)}, max ${Math.max(...xs).toFixed(0)})`);
});
