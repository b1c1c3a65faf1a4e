// Issue 6's number: `banger vm run --timings -- true` in a git repository of 10k files /
// 200 MiB (many small text files, some large binaries, all committed, so .git holds about
// as much again), run as a user runs it with the daemon already up (one warm-up run, then
// BENCH_RUNS runs): the median (and spread) of the total and of each phase the CLI
// reports (create, workspace, command, teardown). Baseline: `tar -C repo -cf - . | tar -C
// dest -xf -` of the same tree (incl. .git) to a local directory, once after every run
// (the host's speed drifts, so each copy is paired with its own baseline); the target is
// workspace copy <= 2x that.
//
// Then the pieces, to see where the time goes:
//   pack        packWorkspace's tar (git snapshot + read every file) into a byte counter;
//   rpc leg     the same tar through `$/input` (Uploader + inputStream, as vm.files.put
//               uses them) to a sink server in another process (no agent);
//   agent leg   the same tar through the agent protocol to `banger-agent serve --unix`
//               on the host (protocol + extraction, no VM);
//   guest leg   the same tar through the agent protocol straight to the VM's agent (the
//               daemon stopped so its socket is free): virtio-serial + guest extraction,
//               with the guest's CPU time by kind (user/system, the agent's own) and,
//               once, the guest copying the same tree itself (busybox tar c | tar x).
//
// The VM's root filesystem is the image's (a clone is not grown in the guest), so the
// bench grows its busybox image to BENCH_IMAGE_SIZE (2G) first: room and inodes.
// Dirty pages are flushed (sync) before every timed copy so writeback of the previous
// one does not land in the next.
//
// Run: node --import tsx bench/vm-run.ts   (BENCH_RUNS=3, BENCH_FILES=10000, BENCH_MIB=200,
//      BENCH_REPO=DIR reuses a repository made by an earlier run and keeps it,
//      BENCH_ONLY=pieces|host|guest measures only some pieces, BENCH_GUEST_CPUS=1)
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { resolvePaths } from "../src/config/index.ts";
import { connectAgent, type AgentClient } from "../src/guest/index.ts";
import { RpcClient, RpcServer } from "../src/rpc/index.ts";
import { packWorkspace } from "../src/workspace/index.ts";
import { Uploader, streamEvents } from "../src/cli/streams.ts";
import { INPUT_WINDOW_BYTES } from "../src/api/index.ts";
import { inputStream } from "../src/daemon/streams.ts";
import { REPO, runBanger } from "../test/helpers.ts";
import { MiB, type BenchHome, benchHome, median, onCleanup, pollConnect, runBench, runChecked, showVm, since, timed } from "./lib.ts";
import { growImage, makeRepo, parseTimings, tarCopyOnce } from "./repo.ts";

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
/** "all" (default), "pieces" (skip the vm run and tar timings), "host" (pieces without a VM), "guest" (only the guest leg). */
const ONLY = process.env.BENCH_ONLY ?? "all";
const FILES = Number(process.env.BENCH_FILES ?? 10_000);
const TOTAL_MIB = Number(process.env.BENCH_MIB ?? 200);
const PHASES = ["create", "workspace", "command", "teardown"] as const;
const TARGET_RATIO = 2;
const IMAGE = "busybox";
const IMAGE_SIZE = process.env.BENCH_IMAGE_SIZE ?? "2G";

if (process.argv[2] === "rpc-sink") await rpcSink(process.argv[3]!);
else await runBench(main);

async function main(): Promise<void> {
  const repo = process.env.BENCH_REPO ?? mkdtempSync(join(tmpdir(), "bench-repo-"));
  if (!process.env.BENCH_REPO) onCleanup(() => rmSync(repo, { recursive: true, force: true }));
  if (!existsSync(join(repo, ".git"))) {
    console.log(`making a repository of ${FILES} files / ${TOTAL_MIB} MiB in ${repo}...`);
    await makeRepo(repo, FILES, TOTAL_MIB);
  }
  const size = await runChecked(["du", "-sb", "--apparent-size", repo]);
  const count = await runChecked(["sh", "-c", `find ${repo} | wc -l`]);
  console.log(`repository: ${count.trim()} entries, ${(Number(size.split("\t")[0]) / MiB).toFixed(0)} MiB with .git`);

  console.log("preparing a state root (Debian cloud kernel + busybox image)...");
  const h = await benchHome({ bootable: ONLY !== "host" });
  if (ONLY !== "host") await growImage(h, IMAGE, IMAGE_SIZE);
  const runArgs = ["vm", "run", "--timings", "--image", IMAGE, "--", "true"];

  const runs: Array<Record<string, number>> = [];
  const tarTimes: number[] = [];
  for (let i = 0; i <= (ONLY === "all" ? RUNS : -1); i++) {
    await runChecked(["sync"]);
    const t = process.hrtime.bigint();
    const r = await runBanger(runArgs, { home: h.home, env: h.env, cwd: repo, timeoutMs: 900_000 });
    const total = since(t);
    if (r.code !== 0) throw new Error(`banger vm run exited ${r.code}: ${r.stderr.trim()}`);
    const phases = parseTimings(r.stderr);
    console.log(`${i === 0 ? "warm-up" : `run ${i}`}: total ${(total / 1000).toFixed(2)} s, ${PHASES.map((p) => `${p} ${((phases[p] ?? NaN) / 1000).toFixed(2)} s`).join(", ")}`);
    // The baseline right after each run, so both see the host as it is at that moment.
    const tar = await tarCopyOnce(repo);
    console.log(`        tar c | tar x ${(tar / 1000).toFixed(2)} s`);
    if (i > 0) {
      runs.push({ total, ...phases });
      tarTimes.push(tar);
    }
  }
  const pieces = await measurePieces(h, repo);

  const row = (label: string, xs: number[]) =>
    xs.length === 0
      ? `${label.padEnd(22)} -`
      : `${label.padEnd(22)} median ${(median(xs) / 1000).toFixed(2).padStart(6)} s   (min ${(Math.min(...xs) / 1000).toFixed(2)}, max ${(Math.max(...xs) / 1000).toFixed(2)})`;
  console.log("");
  if (runs.length > 0) {
    console.log(`banger vm run -- true, ${runs.length} runs after a warm-up:`);
    console.log(
      row(
        "total",
        runs.map((r) => r.total!),
      ),
    );
    for (const p of PHASES)
      console.log(
        row(
          `  ${p}`,
          runs.map((r) => r[p]!),
        ),
      );
    console.log(row("tar c | tar x (local)", tarTimes));
  }
  for (const [label, xs] of pieces) console.log(row(label, xs));
  if (runs.length === 0) return;
  const ratio = median(runs.map((r) => r.workspace!)) / median(tarTimes);
  console.log(`workspace copy / tar c | tar x = ${ratio.toFixed(2)}x  (target <= ${TARGET_RATIO}: ${ratio <= TARGET_RATIO ? "met" : "NOT met"})`);
}

async function measurePieces(h: BenchHome, repo: string): Promise<Array<[string, number[]]>> {
  const setup: number[] = [];
  const pack: number[] = [];
  const rpc: number[] = [];
  const local: number[] = [];
  for (let i = 0; i < (ONLY === "guest" ? 0 : RUNS); i++) {
    setup.push(await timed(() => packWorkspace(repo).then((p) => p.stream.destroy())));
    pack.push(await timed(() => packTo(repo, new Writable({ write: (_c, _e, cb) => cb() }))));
    rpc.push(await rpcLeg(repo));
    local.push(await localAgentLeg(repo));
  }
  const guest = ONLY === "host" ? [NaN] : await guestLeg(h, repo);
  return [
    ["pack setup (git)", setup],
    ["pack → /dev/null", pack],
    ["pack → rpc sink", rpc],
    ["pack → host agent", local],
    ["pack → guest agent", guest],
  ];
}

async function packTo(repo: string, sink: Writable): Promise<void> {
  const packed = await packWorkspace(repo);
  await pipeline(packed.stream, sink);
}

/** The CLI→daemon leg: Uploader → `$/input` → inputStream in a sink server (its own process). */
async function rpcLeg(repo: string): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), "bench-rpc-"));
  const sock = join(dir, "sink.sock");
  const server = spawn(process.execPath, ["--import", "tsx", new URL(import.meta.url).pathname, "rpc-sink", sock], { stdio: ["ignore", "pipe", "inherit"], cwd: REPO });
  try {
    await new Promise<void>((resolve, reject) => {
      server.stdout!.once("data", () => resolve());
      server.once("exit", (code) => reject(new Error(`rpc sink exited ${code}`)));
    });
    const client = await RpcClient.connect(sock);
    try {
      return await timed(async () => {
        const packed = await packWorkspace(repo);
        let uploader: Uploader | undefined;
        const call = client.start("sink", {}, { onEvent: (e) => streamEvents({ 1: process.stdout, 2: process.stderr }, uploader)(e) });
        uploader = new Uploader(call, packed.stream);
        uploader.start();
        await call.result;
      });
    } finally {
      client.close();
    }
  } finally {
    stopChild(server);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The sink server (run as `vm-run.ts rpc-sink SOCK`): drains `$/input` as vm.files.put would. */
async function rpcSink(sock: string): Promise<void> {
  const server = new RpcServer({
    sink: async (_p, call) => {
      let bytes = 0;
      for await (const chunk of inputStream(call)) bytes += (chunk as Buffer).length;
      return { bytes };
    },
  });
  await server.listen(sock);
  process.stdout.write("ready\n");
}

/** The agent leg without a VM: the protocol and extraction, host agent in serve mode. */
async function localAgentLeg(repo: string): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), "bench-agent-"));
  const sock = join(dir, "agent.sock");
  const agentBin = join(process.env.BANGER_AGENT_DIR ?? join(REPO, "agent"), "dist", "banger-agent-amd64");
  const child = spawn(agentBin, ["serve", "--unix", sock], { stdio: "ignore" });
  try {
    const s = await pollConnect(sock, child.pid!, 10_000);
    const agent = await connectAgent(s, { client: "bench" });
    try {
      return await timed(() => putRepo(agent, repo, join(dir, "dest")));
    } finally {
      agent.close();
    }
  } finally {
    stopChild(child);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The agent leg into a real VM: the daemon stopped, the bench talks to the VM's agent socket. */
async function guestLeg(h: BenchHome, repo: string): Promise<number[]> {
  await h.banger(["vm", "create", "--name", "wsb", "--image", IMAGE, "--cpus", process.env.BENCH_GUEST_CPUS ?? "1"]);
  const vm = await showVm(h, "wsb");
  await h.banger(["daemon", "stop"]);
  const agentSock = join(resolvePaths({ BANGER_HOME: h.home }).runDir, "vms", vm.id, "agent.sock");
  const agent = await connectAgent(await pollConnect(agentSock, vm.pid!, 10_000), { serial: true, client: "bench" });
  const times: number[] = [];
  try {
    for (let i = 0; i < RUNS; i++) {
      const dest = `/bench-${i}`;
      const before = await guestCpu(agent);
      times.push(await timed(() => putRepo(agent, repo, dest)));
      const after = await guestCpu(agent);
      const d = (k: keyof GuestCpu) => ((after[k] - before[k]) * 10).toFixed(0).padStart(5);
      console.log(
        `guest put ${i + 1}: guest cpu ms: user ${d("user")}, system ${d("system")}, irq+softirq ${d("irq")}, idle+iowait ${d("idle")}; agent (pid 1) user ${d("agentUser")}, system ${d("agentSystem")}`,
      );
      if (i === 0) {
        // The guest's own floor: copying the same tree inside the guest, no link involved.
        const t = await timed(() => execOk(agent, ["sh", "-c", `mkdir /bench-x && tar -C ${dest} -cf - . | tar -C /bench-x -xf -`]));
        console.log(`guest-local tar c | tar x of the copied tree: ${(t / 1000).toFixed(2)} s`);
        await execOk(agent, ["rm", "-rf", "/bench-x"]);
      }
      await execOk(agent, ["rm", "-rf", dest]);
    }
  } finally {
    agent.close();
  }
  await h.banger(["daemon", "start"]);
  await h.banger(["vm", "rm", "-f", "wsb"]);
  return times;
}

/** Packs into the agent through a Node stream, as the daemon's vm.files.put feeds it. */
async function putRepo(agent: AgentClient, repo: string, dest: string): Promise<void> {
  const packed = await packWorkspace(repo);
  const relay = new PassThrough({ highWaterMark: INPUT_WINDOW_BYTES });
  void pipeline(packed.stream, relay).catch((err: unknown) => relay.destroy(err as Error));
  const res = await agent.putFiles(dest, relay);
  if (res.files < FILES) throw new Error(`put only ${res.files} entries`);
}

interface GuestCpu {
  user: number;
  system: number;
  irq: number;
  idle: number;
  agentUser: number;
  agentSystem: number;
}

/** The guest's CPU time (jiffies of 10 ms) by kind, and the agent's own (it is PID 1). */
async function guestCpu(agent: AgentClient): Promise<GuestCpu> {
  const x = await agent.exec({ argv: ["cat", "/proc/stat", "/proc/1/stat"] });
  x.stdin.end();
  x.stderr.resume();
  let out = "";
  for await (const b of x.stdout) out += (b as Buffer).toString();
  await x.wait();
  const cpu = out
    .split("\n")
    .find((l) => l.startsWith("cpu "))!
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number);
  const self = out.trim().split("\n").at(-1)!;
  const fields = self
    .slice(self.lastIndexOf(")") + 2)
    .split(" ")
    .map(Number); // from field 3 (state)
  return { user: cpu[0]! + cpu[1]!, system: cpu[2]!, irq: cpu[5]! + cpu[6]!, idle: cpu[3]! + cpu[4]!, agentUser: fields[11]!, agentSystem: fields[12]! };
}

async function execOk(agent: AgentClient, argv: string[]): Promise<void> {
  const x = await agent.exec({ argv });
  x.stdin.end();
  x.stdout.resume();
  x.stderr.resume();
  const st = await x.wait();
  if (!("exitCode" in st) || st.exitCode !== 0) throw new Error(`${argv.join(" ")}: ${JSON.stringify(st)}`);
}

function stopChild(child: ChildProcess): void {
  if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
}
