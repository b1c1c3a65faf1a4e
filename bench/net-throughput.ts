// Issue 8's throughput number: guest → host TCP over the VM's tap and bridge, against the
// same iperf3 run over a plain veth pair between two namespaces, and their ratio. Under
// QEMU TCG (this host) the guest side is CPU-bound, so the ratio is small; it is recorded
// so regressions in the network path show up, not as a target.
//
// Everything with an address lives in namespaces this bench creates and removes: the daemon
// starts inside one (BANGER_NETWORK=on) with the iperf3 server on its gateway address; the
// baseline is two more namespaces on a veth pair. The guest (busybox) has no iperf3, so
// Debian's binary and its shared libraries are copied in through the agent, as
// test/e2e/network.test.ts does with dropbear. Needs root, iproute2 and `apt-get install iperf3`.
//
// Run: node --import tsx bench/net-throughput.ts        (BENCH_RUNS=3, BENCH_SECONDS=5)
import { execFileSync, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { NetnsLab, canUseNetns, waitForLine } from "../test/kits/netns.ts";
import { REPO, prepareBootableHome, stopDaemon, type CliResult } from "../test/helpers.ts";
import { benchHome, median, onCleanup, processArgv, runBench } from "./lib.ts";

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const IPERF = "/usr/bin/iperf3";
const VM = "iperf";
// (Helpers below are function declarations: the top-level await runs before later consts exist.)

interface Rate {
  /** Mbit/s as the client sent it. */
  sender: number;
  /** Mbit/s as the server received it (host clock on the server side). */
  receiver: number;
}

await runBench(async () => {
  if (!(await canUseNetns())) throw new Error("needs root and iproute2 to create network namespaces");
  if (!existsSync(IPERF)) throw new Error(`${IPERF} not found: apt-get install -y iperf3`);

  const lab = new NetnsLab();
  onCleanup(() => lab.cleanup());

  console.log(`baseline: veth pair between two namespaces, ${RUNS} × ${SECONDS}s...`);
  const veth = await vethBaseline(lab);

  console.log("preparing a state root (Debian cloud kernel + busybox image)...");
  const h = await benchHome();
  const env = (await prepareBootableHome(h.home)).env;
  await stopDaemon(h.home); // the next daemon starts inside the namespace, networking on
  const ns = await lab.add("daemon");
  const banger = (args: string[], input?: Buffer) => bangerIn(ns, h.home, env, args, input);
  // Runs before lab.cleanup (cleanups are LIFO): the VM goes, then the daemon and its network.
  onCleanup(async () => {
    await banger(["vm", "rm", "-f", VM]).catch(() => undefined);
    await banger(["daemon", "stop", "--cleanup-network"]).catch(() => undefined);
    await stopDaemon(h.home);
  });

  await banger(["vm", "create", "--name", VM, "--image", "busybox", "--memory", "256M"]);
  const gateway = (JSON.parse((await banger(["net", "status", "--json"])).stdout) as { gateway: string }).gateway;
  await banger(["vm", "exec", VM, "--user", "root", "--", "tar", "-x", "-f", "-", "-C", "/"], iperfTarball());
  await banger(["vm", "exec", VM, "--user", "root", "--", "mkdir", "-p", "/tmp"]);
  await startServer(lab, ns, gateway);
  const { pid } = JSON.parse((await banger(["vm", "show", VM, "--json"])).stdout) as { pid: number };
  const accel = accelOf(processArgv(pid));

  // Untimed: the first seconds of a TCG guest pay for translating the network path.
  await banger(["vm", "exec", VM, "--", "env", "TMPDIR=/tmp", "iperf3", "-c", gateway, "-t", "1", "--json"]);

  console.log(`guest → host over the tap (gateway ${gateway}), ${RUNS} × ${SECONDS}s...`);
  const tap: Rate[] = [];
  for (let i = 0; i < RUNS; i++) {
    const r = await banger(["vm", "exec", VM, "--", "env", "TMPDIR=/tmp", "iperf3", "-c", gateway, "-t", String(SECONDS), "--json"]);
    tap.push(parseClient(r.stdout));
    console.log(`  run ${i + 1}: ${show(tap[i]!)}`);
  }

  const tapRx = median(tap.map((r) => r.receiver));
  const vethRx = median(veth.map((r) => r.receiver));
  console.log(`\nmedians of ${RUNS} runs, ${SECONDS}s each (iperf3 TCP, one stream):`);
  console.log(`  ${`guest → host, tap (-accel ${accel})`.padEnd(32)} ${showMedian(tap)}`);
  console.log(`  ${"veth pair between namespaces".padEnd(32)} ${showMedian(veth)}`);
  console.log(`  ${"ratio tap / veth (receiver)".padEnd(32)} ${(tapRx / vethRx).toFixed(4)}  (1 in ${(vethRx / tapRx).toFixed(0)})`);
});

/** Two namespaces on a veth pair, iperf3 server in one, client in the other. */
async function vethBaseline(lab: NetnsLab): Promise<Rate[]> {
  const a = await lab.add("veth-a");
  const b = await lab.add("veth-b");
  await lab.ip(a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", b);
  await lab.ip(a, "addr", "add", "192.0.2.1/24", "dev", "va");
  await lab.ip(b, "addr", "add", "192.0.2.2/24", "dev", "vb");
  await lab.ip(a, "link", "set", "va", "up");
  await lab.ip(b, "link", "set", "vb", "up");
  await startServer(lab, a, "192.0.2.1");
  await lab.exec(b, [IPERF, "-c", "192.0.2.1", "-t", "1", "--json"], 30_000); // warm-up, untimed
  const rates: Rate[] = [];
  for (let i = 0; i < RUNS; i++) {
    const out = await lab.exec(b, [IPERF, "-c", "192.0.2.1", "-t", String(SECONDS), "--json"], (SECONDS + 30) * 1000);
    rates.push(parseClient(out));
    console.log(`  run ${i + 1}: ${show(rates[i]!)}`);
  }
  return rates;
}

/** A persistent iperf3 server bound to `addr` in `ns`; the lab kills it at cleanup. */
async function startServer(lab: NetnsLab, ns: string, addr: string): Promise<void> {
  const server = lab.spawn(ns, [IPERF, "-s", "-B", addr, "--forceflush"]);
  await waitForLine(server, /Server listening/);
}

/** iperf3 and everything its loader needs (ldd), as a tar for `tar -x -C /` in the guest. */
function iperfTarball(): Buffer {
  const libs = execFileSync("ldd", [IPERF], { encoding: "utf8" })
    .split("\n")
    .map((l) => /(\/\S+) \(0x/.exec(l)?.[1])
    .filter((p): p is string => !!p);
  const files = [IPERF, ...libs].map((p) => p.slice(1));
  return execFileSync("tar", ["-chf", "-", "-C", "/", ...files], { maxBuffer: 64 * 1024 * 1024 });
}

/** bin/banger inside the daemon's namespace with networking on; rejects with stderr on failure. */
function bangerIn(ns: string, home: string, env: NodeJS.ProcessEnv, args: string[], input?: Buffer): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn("ip", ["netns", "exec", ns, join(REPO, "bin/banger"), ...args], {
      env: { ...process.env, ...env, BANGER_HOME: home, BANGER_NETWORK: "on" },
      stdio: ["pipe", "pipe", "pipe"],
      timeout: 180_000,
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b) => (stdout += b));
    child.stderr.on("data", (b) => (stderr += b));
    child.stdin.on("error", () => undefined);
    child.stdin.end(input ?? "");
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve({ code, stdout, stderr }) : reject(new Error(`banger ${args.join(" ")} exited ${code}: ${stderr.trim()} ${stdout.slice(0, 300)}`))));
  });
}

/** The client's --json report: the sum over streams, as sent and as the server received it. */
function parseClient(json: string): Rate {
  const report = JSON.parse(json) as { error?: string; end?: { sum_sent?: { bits_per_second: number }; sum_received?: { bits_per_second: number } } };
  if (report.error) throw new Error(`iperf3: ${report.error}`);
  const sent = report.end?.sum_sent?.bits_per_second;
  const received = report.end?.sum_received?.bits_per_second;
  if (sent === undefined || received === undefined) throw new Error(`iperf3: no end summary in ${json.slice(0, 200)}`);
  return { sender: sent / 1e6, receiver: received / 1e6 };
}

/** qemu's accelerator (tcg or kvm) from its argv, so the record says what bound the guest. */
function accelOf(argv: string[]): string {
  const i = argv.indexOf("-accel");
  return i >= 0 ? (argv[i + 1] ?? "?").split(",")[0]! : "?";
}

function mbit(x: number): string {
  return `${x.toFixed(1).padStart(9)} Mbit/s`;
}
function show(r: Rate): string {
  return `sender ${mbit(r.sender)}, receiver ${mbit(r.receiver)}`;
}
function showMedian(rs: Rate[]): string {
  return show({ sender: median(rs.map((r) => r.sender)), receiver: median(rs.map((r) => r.receiver)) });
}
