// Issue 17's command number: `sandbox.commands.run('true')` through the official e2b SDK
// (HTTP + Connect to bangerd's E2B API, envd's Process service, vm.exec in-process) against
// `banger vm exec <vm> -- true` (the CLI as users run it, hyperfine) on the same VM, with
// vm.exec over the daemon socket beside them (`true`, and the SDK's own command line
// `sh -l -c true`: the same guest work without HTTP or CLI start-up), and one envd request
// without an exec (commands.list: HTTP, Connect JSON, the sandbox lookup).
// Medians and the SDK/CLI ratio (target <= 1.5x).
//
// Run: node --import tsx bench/e2b-commands.ts    (BENCH_RUNS=30)
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Sandbox } from "e2b";
import type { Methods } from "../src/api/index.ts";
import { resolvePaths } from "../src/config/index.ts";
import { RpcClient } from "../src/rpc/index.ts";
import { REPO } from "../test/helpers.ts";
import { benchHome, freeLoopbackPort, median, runBench, runChecked, timed } from "./lib.ts";

const RUNS = Number(process.env.BENCH_RUNS ?? 30);
const WARMUP = 5;
const fmt = (ms: number) => `${ms.toFixed(2).padStart(8)} ms`;

await runBench(async () => {
  console.log("preparing a state root (Debian cloud kernel + busybox image), the E2B API and a sandbox...");
  const h = await benchHome({ bootable: true });
  await h.banger(["config", "set", "api.port", String(await freeLoopbackPort())]);
  await h.banger(["config", "set", "api.enabled", "true"]);
  const api = JSON.parse((await h.banger(["api", "env", "--json"])).stdout) as { apiUrl: string; sandboxUrl: string; apiKey: string };
  const sandbox = await Sandbox.create("busybox", { apiKey: api.apiKey, apiUrl: api.apiUrl, sandboxUrl: api.sandboxUrl });
  const vm = sandbox.sandboxId; // the sandbox's VM has its id as name

  const sdk = await repeat(RUNS, async () => {
    const r = await sandbox.commands.run("true");
    if (r.exitCode !== 0) throw new Error(`commands.run true: exit ${r.exitCode}`);
  });
  // The fixed cost of one envd request (HTTP, Connect JSON, the sandbox lookup) without an exec.
  const list = await repeat(RUNS, () => sandbox.commands.list());
  const rpc = await daemonExecTimes(h.home, vm, ["true"]);
  // What the SDK actually runs: a login shell that runs `true` (busybox: /bin/sh for /bin/bash).
  const rpcShell = await daemonExecTimes(h.home, vm, ["/bin/sh", "-l", "-c", "true"]);
  const cli = await hyperfineExec(h.home, h.env, vm);
  await sandbox.kill();

  const ratio = median(sdk) / cli;
  console.log("");
  console.log(`sandbox.commands.run('true') (e2b SDK)  median ${fmt(median(sdk))}   (${sdk.length} runs, one process)`);
  console.log(`banger vm exec ${vm} -- true            median ${fmt(cli)}   (${RUNS} runs, hyperfine)`);
  console.log(`vm.exec true via the daemon socket      median ${fmt(median(rpc))}   (${rpc.length} calls)`);
  console.log(`vm.exec sh -l -c true via the socket    median ${fmt(median(rpcShell))}   (the SDK's command line, no HTTP)`);
  console.log(`sandbox.commands.list() (e2b SDK)       median ${fmt(median(list))}   (one envd request, no exec)`);
  console.log(`ratio SDK / CLI: ${ratio.toFixed(2)}x (target <= 1.5x); SDK / socket (same command line): ${(median(sdk) / median(rpcShell)).toFixed(2)}x`);
});

/** `WARMUP` untimed calls, then `n` timed ones, sequentially. */
async function repeat(n: number, fn: () => Promise<unknown>): Promise<number[]> {
  for (let i = 0; i < WARMUP; i++) await fn();
  const times: number[] = [];
  for (let i = 0; i < n; i++) times.push(await timed(fn));
  return times;
}

async function daemonExecTimes(home: string, vm: string, argv: string[]): Promise<number[]> {
  const client = await RpcClient.connect<Methods>(resolvePaths({ BANGER_HOME: home }).socket);
  try {
    return await repeat(RUNS, async () => {
      const status = await client.call("vm.exec", { name: vm, argv, stdin: false });
      if (!("exitCode" in status) || status.exitCode !== 0) throw new Error(`vm.exec ${argv.join(" ")}: ${JSON.stringify(status)}`);
    });
  } finally {
    client.close();
  }
}

/** The CLI's median in ms (hyperfine -N: no shell between). */
async function hyperfineExec(home: string, env: NodeJS.ProcessEnv, vm: string): Promise<number> {
  const out = join(home, "hyperfine.json");
  const cmd = `${join(REPO, "bin/banger")} vm exec ${vm} -- true`;
  await runChecked(["hyperfine", "-N", "--warmup", String(WARMUP), "--runs", String(RUNS), "--export-json", out, cmd], { env: { ...env, BANGER_HOME: home } });
  const results = JSON.parse(readFileSync(out, "utf8")).results as Array<{ median: number }>;
  return results[0]!.median * 1000;
}
