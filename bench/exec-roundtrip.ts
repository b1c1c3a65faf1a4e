// Issue 4's exec number: `banger vm exec VM -- true` on a running VM, the whole CLI process
// as users run it (hyperfine, with `node -e 0` and `banger vm ls` beside it to show the
// fixed cost of starting node and talking to the daemon), and `vm.exec` sent straight to the
// daemon over its socket (the in-daemon cost, no CLI start-up). Baseline: a bare socket echo
// to the same agent: the daemon is stopped (the VM keeps running and its agent socket is
// free), the bench connects to the VM's agent socket itself and times health() round trips,
// then exec of `true` straight through the agent. Medians and ratios.
//
// Run: node --import tsx bench/exec-roundtrip.ts    (BENCH_RUNS=30 CLI runs, BENCH_ECHOS=200)
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { resolvePaths } from "../src/config/index.ts";
import { connectAgent, type AgentClient } from "../src/guest/index.ts";
import type { Methods } from "../src/api/index.ts";
import { RpcClient } from "../src/rpc/index.ts";
import { REPO } from "../test/helpers.ts";
import { benchHome, median, pollConnect, runBench, runChecked, showVm, timed } from "./lib.ts";

const CLI_RUNS = Number(process.env.BENCH_RUNS ?? 30);
const ECHOS = Number(process.env.BENCH_ECHOS ?? 200);
const DIRECT_EXECS = 50;
const VM = "ex";

const fmt = (ms: number) => `${ms.toFixed(2).padStart(8)} ms`;

await runBench(async () => {
  console.log("preparing a state root (Debian cloud kernel + busybox image) and booting a VM...");
  const h = await benchHome({ bootable: true });
  await h.banger(["vm", "create", "--name", VM, "--image", "busybox"]);
  const vm = await showVm(h, VM);

  const cli = await hyperfineCli(h.home, h.env);
  const daemon = await daemonExecTimes(h.home);

  // The daemon holds the VM's one agent connection (virtio-serial takes a single host
  // client); stopping it frees the socket while the VM runs on.
  await h.banger(["daemon", "stop"]);
  const agentSock = join(resolvePaths({ BANGER_HOME: h.home }).runDir, "vms", vm.id, "agent.sock");
  const sock = await pollConnect(agentSock, vm.pid!, 10_000);
  const agent = await connectAgent(sock, { serial: true, client: "bench" });
  let echo: number[];
  let direct: number[];
  try {
    echo = await repeat(ECHOS, 20, () => agent.health());
    direct = await repeat(DIRECT_EXECS, 5, () => execTrue(agent));
  } finally {
    agent.close();
  }
  await h.banger(["daemon", "start"]); // re-adopts the VM, so cleanup's `vm rm -f` works

  const e = median(echo);
  console.log("");
  console.log(`node -e 0                         median ${fmt(cli["node -e 0"]!)}`);
  console.log(`banger vm ls (CLI + daemon RPC)   median ${fmt(cli["banger vm ls"]!)}`);
  console.log(`banger vm exec ${VM} -- true         median ${fmt(cli["banger vm exec true"]!)}   (${CLI_RUNS} runs, hyperfine)`);
  console.log(`vm.exec true via the daemon RPC   median ${fmt(median(daemon))}   (${daemon.length} calls, no CLI start-up)`);
  console.log(`agent exec true, direct           median ${fmt(median(direct))}   (${direct.length} calls, daemon stopped)`);
  console.log(`bare socket echo (agent health)   median ${fmt(e)}   (${echo.length} round trips)`);
  console.log(`ratios to the bare echo: CLI exec ${(cli["banger vm exec true"]! / e).toFixed(0)}x, daemon exec ${(median(daemon) / e).toFixed(1)}x, direct exec ${(median(direct) / e).toFixed(1)}x`);
  console.log(`CLI exec minus vm ls (what exec adds over any CLI call): ${(cli["banger vm exec true"]! - cli["banger vm ls"]!).toFixed(1)} ms`);
});

async function hyperfineCli(home: string, env: NodeJS.ProcessEnv): Promise<Record<string, number>> {
  const banger = join(REPO, "bin/banger");
  const out = join(home, "hyperfine.json");
  await runChecked(
    [
      "hyperfine",
      "-N",
      "--warmup",
      "3",
      "--runs",
      String(CLI_RUNS),
      "--export-json",
      out,
      "-n",
      "node -e 0",
      "node -e 0",
      "-n",
      "banger vm ls",
      `${banger} vm ls`,
      "-n",
      "banger vm exec true",
      `${banger} vm exec ${VM} -- true`,
    ],
    { env: { ...env, BANGER_HOME: home } },
  );
  const results = JSON.parse(readFileSync(out, "utf8")).results as Array<{ command: string; median: number }>;
  return Object.fromEntries(results.map((r) => [r.command, r.median * 1000]));
}

async function daemonExecTimes(home: string): Promise<number[]> {
  const client = await RpcClient.connect<Methods>(resolvePaths({ BANGER_HOME: home }).socket);
  try {
    return await repeat(DIRECT_EXECS, 5, async () => {
      const status = await client.call("vm.exec", { name: VM, argv: ["true"], stdin: false });
      if (!("exitCode" in status) || status.exitCode !== 0) throw new Error(`vm.exec true: ${JSON.stringify(status)}`);
    });
  } finally {
    client.close();
  }
}

async function execTrue(agent: AgentClient): Promise<void> {
  const h = await agent.exec({ argv: ["true"] });
  h.stdin.end();
  h.stdout.resume();
  h.stderr.resume();
  const status = await h.wait();
  if (!("exitCode" in status) || status.exitCode !== 0) throw new Error(`exec true: ${JSON.stringify(status)}`);
}

/** `warmup` untimed calls, then `n` timed ones, sequentially. */
async function repeat(n: number, warmup: number, fn: () => Promise<unknown>): Promise<number[]> {
  for (let i = 0; i < warmup; i++) await fn();
  const times: number[] = [];
  for (let i = 0; i < n; i++) times.push(await timed(fn));
  return times;
}
