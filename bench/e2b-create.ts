// Issue 17's create number: `Sandbox.create("busybox")` through the official e2b SDK (HTTP to
// bangerd's E2B API, sandbox.create in-process: VM create + sandbox row) against
// `banger vm create --image busybox` (the CLI as users run it: process start, socket, same VM
// create), side by side, alternating, each VM removed after its run. Then the same two with a
// warm pool of the image (pool set --size N, refilled and waited on before every run): both take
// a ready VM. Medians and the SDK/CLI ratio (target <= 1.2x).
//
// Run: node --import tsx bench/e2b-create.ts    (BENCH_RUNS=5, BENCH_POOL=2)
import { Sandbox } from "e2b";
import { type BenchHome, benchHome, fmt, freeLoopbackPort, median, runBench, since, waitPoolReady } from "./lib.ts";

const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const POOL = Number(process.env.BENCH_POOL ?? 2);
const TARGET = 1.2;
const IMAGE = "busybox";

interface Api {
  apiUrl: string;
  sandboxUrl: string;
  apiKey: string;
  requestTimeoutMs: number;
}

async function sdkCreate(h: BenchHome, api: Api): Promise<{ ms: number; fromPool: boolean }> {
  const t = process.hrtime.bigint();
  const sbx = await Sandbox.create(IMAGE, api);
  const ms = since(t);
  const fromPool = await tookFromPool(h, sbx.sandboxId);
  await sbx.kill();
  return { ms, fromPool };
}

async function cliCreate(h: BenchHome, n: number): Promise<{ ms: number; fromPool: boolean }> {
  const name = `cli-${n}`;
  const t = process.hrtime.bigint();
  const r = await h.banger(["vm", "create", "--image", IMAGE, "--name", name, "--json"]);
  const ms = since(t);
  const fromPool = (JSON.parse(r.stdout) as { fromPool?: boolean }).fromPool === true;
  await h.banger(["vm", "rm", "-f", name]);
  return { ms, fromPool };
}

/** Whether the VM was taken from the pool (the daemon logs each take). */
async function tookFromPool(h: BenchHome, vm: string): Promise<boolean> {
  const { readFileSync } = await import("node:fs");
  const log = readFileSync(`${h.home}/logs/bangerd.log`, "utf8");
  return log.split("\n").some((l) => l.includes("vm taken from pool") && l.includes(`"vm":"${vm}"`));
}

await runBench(async () => {
  console.log("preparing a state root (Debian cloud kernel + busybox image) and the E2B API...");
  const h = await benchHome({ bootable: true });
  await h.banger(["config", "set", "api.port", String(await freeLoopbackPort())]);
  await h.banger(["config", "set", "api.enabled", "true"]);
  const env = JSON.parse((await h.banger(["api", "env", "--json"])).stdout) as Omit<Api, "requestTimeoutMs">;
  const api: Api = { ...env, requestTimeoutMs: 300_000 };
  // Warm-up, untimed: page cache, the SDK's first connection.
  await cliCreate(h, 0);
  await sdkCreate(h, api);

  const cold = { sdk: [] as number[], cli: [] as number[] };
  for (let i = 1; i <= RUNS; i++) {
    cold.cli.push((await cliCreate(h, i)).ms);
    cold.sdk.push((await sdkCreate(h, api)).ms);
    console.log(`  cold run ${i}: vm create ${fmt(cold.cli.at(-1)!)}, Sandbox.create ${fmt(cold.sdk.at(-1)!)}`);
  }

  await h.banger(["pool", "set", IMAGE, "--size", String(POOL)]);
  const warm = { sdk: [] as number[], cli: [] as number[] };
  let notPooled = 0;
  for (let i = 1; i <= RUNS; i++) {
    await waitPoolReady(h, IMAGE, POOL);
    const c = await cliCreate(h, 100 + i);
    await waitPoolReady(h, IMAGE, POOL);
    const s = await sdkCreate(h, api);
    if (!c.fromPool || !s.fromPool) notPooled++;
    warm.cli.push(c.ms);
    warm.sdk.push(s.ms);
    console.log(`  pool run ${i}: vm create ${fmt(c.ms)}${c.fromPool ? "" : " (not from the pool!)"}, Sandbox.create ${fmt(s.ms)}${s.fromPool ? "" : " (not from the pool?)"}`);
  }
  await h.banger(["pool", "set", IMAGE, "--size", "0"]);

  const line = (what: string, sdk: number[], cli: number[]) => {
    const ratio = median(sdk) / median(cli);
    console.log(`${what}: Sandbox.create median ${fmt(median(sdk))}, banger vm create median ${fmt(median(cli))}, ratio ${ratio.toFixed(2)}x (target <= ${TARGET}x)`);
  };
  console.log("");
  line(`cold (${RUNS} runs each)`, cold.sdk, cold.cli);
  line(`pool of ${POOL} (${RUNS} runs each)`, warm.sdk, warm.cli);
  if (notPooled) console.log(`note: ${notPooled} pool run(s) did not take a pooled VM`);
});
