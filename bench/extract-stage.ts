// How fast rootfs/extract.ts stages a tar (image build, `vm run`'s workspace disk, kernel
// upload), and how long it holds the daemon's event loop while it does: the generated 10k-file
// / 200 MiB repository (bench/repo.ts) packed once with `tar c`, then extracted into a
// staging directory on the tmpfs (/dev/shm: where a workspace is staged when it fits) and on
// the root filesystem, against `tar x` of the same file into the same place, side by side per
// run. The event loop's delay is sampled (perf_hooks, 1 ms resolution) during each extract:
// its max is the longest a daemon answer, a QMP event or a progress line could wait.
//
// Run: node --import tsx bench/extract-stage.ts   (BENCH_RUNS=5, BENCH_FILES=10000,
//      BENCH_MIB=200, BENCH_REPO=DIR reuses a repository made by an earlier run and keeps it)
import { createReadStream, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { extractRootfsTar } from "../src/rootfs/index.ts";
import { fmt, median, onCleanup, runBench, runChecked, timed } from "./lib.ts";
import { makeRepo } from "./repo.ts";

const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const FILES = Number(process.env.BENCH_FILES ?? 10_000);
const TOTAL_MIB = Number(process.env.BENCH_MIB ?? 200);

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), "bench-extract-"));
  onCleanup(() => rmSync(work, { recursive: true, force: true }));
  const repo = process.env.BENCH_REPO ?? join(work, "repo");
  if (!existsSync(repo)) await makeRepo(repo, FILES, TOTAL_MIB);
  const tarFile = join(work, "repo.tar");
  await runChecked(["tar", "-C", repo, "-cf", tarFile, "."]);
  for (const [where, parent] of [
    ["tmpfs", "/dev/shm"],
    ["root fs", work],
  ] as const) {
    const ours: number[] = [];
    const tars: number[] = [];
    const lagMax: number[] = [];
    const lagP99: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const dest = mkdtempSync(join(parent, "bench-stage-"));
      try {
        await runChecked(["sync"]);
        tars.push(await timed(() => runChecked(["tar", "-C", dest, "-xf", tarFile])));
        rmSync(dest, { recursive: true, force: true });
        await runChecked(["sync"]);
        const lag = monitorEventLoopDelay({ resolution: 1 });
        lag.enable();
        ours.push(await timed(() => extractRootfsTar(createReadStream(tarFile), join(dest, "tree"))));
        lag.disable();
        lagMax.push(lag.max / 1e6);
        lagP99.push(lag.percentile(99) / 1e6);
      } finally {
        rmSync(dest, { recursive: true, force: true });
      }
    }
    const ratio = median(ours) / median(tars);
    console.log(
      `${where}: extractRootfsTar ${fmt(median(ours))}, tar x ${fmt(median(tars))} (${ratio.toFixed(2)}x); event loop delay max ${fmt(median(lagMax))}, p99 ${fmt(median(lagP99))} (medians of ${RUNS})`,
    );
  }
}

await runBench(main);
