// Issue 16's workspace number: the workspace phase of `banger vm run --timings -- true` in a
// generated git repository of 10k files / 200 MiB (bench/repo.ts; .git about as much again),
// the workspace built on the host as an ext4 in the VM's disk slot (daemon/workspace-disk.ts),
// against `tar c | tar x` of the same tree to a local directory, side by side in one run
// (each run paired with its own baseline: the host's speed drifts), medians. Target: <= 2x.
//
// For comparison, the old path in the same run: the same packed tar through the agent into
// a VM made without a slot (what `vm run` did before: the guest kernel extracts it), timed
// from the copy's start (git snapshot) to the agent's answer, like the workspace phase.
//
// Run: node --import tsx bench/workspace-copy.ts   (BENCH_RUNS=3, BENCH_FILES=10000,
//      BENCH_MIB=200, BENCH_REPO=DIR reuses a repository made by an earlier run and keeps
//      it, BENCH_OLD=0 skips the old path)
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resolvePaths } from "../src/config/index.ts";
import { RpcClient } from "../src/rpc/index.ts";
import { planWorkspace, startCopy } from "../src/workspace/index.ts";
import { Uploader, streamEvents } from "../src/cli/streams.ts";
import { runBanger } from "../test/helpers.ts";
import { type BenchHome, benchHome, median, onCleanup, runBench, timed } from "./lib.ts";
import { growImage, makeRepo, parseTimings, tarCopyOnce } from "./repo.ts";

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const FILES = Number(process.env.BENCH_FILES ?? 10_000);
const TOTAL_MIB = Number(process.env.BENCH_MIB ?? 200);
const OLD = process.env.BENCH_OLD !== "0";
const TARGET_RATIO = 2;
const IMAGE = "busybox";

await runBench(main);

async function main(): Promise<void> {
  const repo = process.env.BENCH_REPO ?? mkdtempSync(join(tmpdir(), "bench-repo-"));
  if (!process.env.BENCH_REPO) onCleanup(() => rmSync(repo, { recursive: true, force: true }));
  if (!existsSync(join(repo, ".git"))) {
    console.log(`making a repository of ${FILES} files / ${TOTAL_MIB} MiB in ${repo}...`);
    await makeRepo(repo, FILES, TOTAL_MIB);
  }
  console.log("preparing a state root (Debian cloud kernel + busybox image)...");
  const h = await benchHome({ bootable: true });
  // Room on the root filesystem for the old path's copy (the disk path uses its own slot).
  if (OLD) await growImage(h, IMAGE, "2G");

  const disk: number[] = [];
  const tar: number[] = [];
  const old: number[] = [];
  for (let i = 0; i <= RUNS; i++) {
    const label = i === 0 ? "warm-up" : `run ${i}`;
    const r = await runBanger(["vm", "run", "--timings", "--image", IMAGE, "--", "true"], { home: h.home, env: h.env, cwd: repo, timeoutMs: 900_000 });
    if (r.code !== 0) throw new Error(`banger vm run exited ${r.code}: ${r.stderr.trim()}`);
    const ws = parseTimings(r.stderr).workspace!;
    const base = await tarCopyOnce(repo);
    const through = OLD ? await throughAgent(h, repo, `old-${i}`) : Number.NaN;
    console.log(`${label}: workspace (disk) ${s(ws)}, tar c | tar x ${s(base)}${OLD ? `, old (tar through the agent) ${s(through)}` : ""}`);
    if (i === 0) continue;
    disk.push(ws);
    tar.push(base);
    old.push(through);
  }
  const row = (label: string, xs: number[]) => `${label.padEnd(34)} median ${s(median(xs)).padStart(7)}   (min ${s(Math.min(...xs))}, max ${s(Math.max(...xs))})`;
  console.log("");
  console.log(`${RUNS} runs after a warm-up:`);
  console.log(row("vm run workspace phase (disk)", disk));
  console.log(row("tar c | tar x (local)", tar));
  if (OLD) console.log(row("old: tar through the agent", old));
  const ratio = median(disk) / median(tar);
  console.log(`workspace (disk) / tar c | tar x = ${ratio.toFixed(2)}x  (target <= ${TARGET_RATIO}: ${ratio <= TARGET_RATIO ? "met" : "NOT met"})`);
  if (OLD) console.log(`old / tar c | tar x = ${(median(old) / median(tar)).toFixed(2)}x; disk is ${(median(old) / median(disk)).toFixed(1)}x faster than the old path`);
}

const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

/**
 * The old path, as `vm run` did it: a VM without a slot, then the packed tar through
 * vm.workspace.put (which, without a slot, hands it to the agent), timed from startCopy
 * (the git snapshot, as in the workspace phase) to the daemon's answer.
 */
async function throughAgent(h: BenchHome, repo: string, name: string): Promise<number> {
  await h.banger(["vm", "create", "--name", name, "--image", IMAGE]);
  try {
    const plan = await planWorkspace(repo, { explicit: true });
    const client = await RpcClient.connect(resolvePaths({ BANGER_HOME: h.home }).socket);
    try {
      return await timed(async () => {
        const packed = await startCopy(plan);
        let uploader: Uploader | undefined;
        const call = client.start("vm.workspace.put", { name, dest: "/workspace", uid: 1000, gid: 1000 }, { onEvent: (e) => streamEvents({ 1: process.stdout, 2: process.stderr }, uploader)(e) });
        uploader = new Uploader(call, packed.stream);
        uploader.start();
        const res = (await call.result) as { via: string };
        if (res.via !== "agent") throw new Error(`the old path went ${res.via}`);
      });
    } finally {
      client.close();
    }
  } finally {
    await h.banger(["vm", "rm", "-f", name]);
  }
}
